/*  coord_workers.c — the ROUTER socket and the dispatch of worker requests (coord_workers.h).
 *
 *  A request arrives as [identity][payload] from a DEALER (or [identity][""][payload] from a
 *  REQ socket, which we also answer); anything else is dropped. The payload goes through
 *  ud_msg_decode, which refuses malformed msgpack, other protocol versions and sizes over the
 *  limits before allocating, and keeps the request id when it could read one, so even a
 *  refused request is answered. Replies go out with ZMQ_DONTWAIT: a peer that stopped reading
 *  loses its reply, the loop never blocks on it.
 */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zmq.h>

#include "coord_log.h"
#include "coord_workers.h"
#include "updraft/ud_msg.h"
#include "updraft/ud_zmq_event.h"

#define COORD_EVENTS_ENDPOINT "inproc://coord-workers-events"
#define MAX_FRAMES            4

struct coord_workers {
    void *router, *events;
    coord_jobs_t *jobs;
    char endpoint[256];
};

coord_workers_t *coord_workers_new(void *ctx, const char *endpoint, coord_jobs_t *jobs,
                                   const struct ud_key *curve_secret, struct ud_err *e)
{
    coord_workers_t *w = calloc(1, sizeof *w);
    if (!w) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        return NULL;
    }
    w->jobs = jobs;
    int linger = 0;
    int64_t maxsize = (int64_t)UD_PROTO_MAX_MESSAGE;
    w->router = zmq_socket(ctx, ZMQ_ROUTER);
    if (!w->router || zmq_setsockopt(w->router, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_setsockopt(w->router, ZMQ_MAXMSGSIZE, &maxsize, sizeof maxsize) != 0) {
        ud_err_set(e, UD_ENET, "ZeroMQ ROUTER socket: %s", zmq_strerror(zmq_errno()));
        goto out_fail;
    }
    if (curve_secret) {
        int server = 1;
        if (!zmq_has("curve")) {
            ud_err_set(e, UD_EUNSUPPORTED, "--curve-secret: this libzmq was built without CURVE");
            goto out_fail;
        }
        if (zmq_setsockopt(w->router, ZMQ_CURVE_SERVER, &server, sizeof server) != 0 ||
            zmq_setsockopt(w->router, ZMQ_CURVE_SECRETKEY, curve_secret->sec, 32) != 0 ||
            zmq_setsockopt(w->router, ZMQ_ZAP_DOMAIN, "updraft", 7) != 0) {
            ud_err_set(e, UD_ENET, "ZeroMQ CURVE server: %s", zmq_strerror(zmq_errno()));
            goto out_fail;
        }
    }
    if (zmq_bind(w->router, endpoint) != 0) {
        ud_err_set(e, UD_ENET, "--zmq %s: cannot bind: %s", endpoint, zmq_strerror(zmq_errno()));
        goto out_fail;
    }
    size_t len = sizeof w->endpoint;
    if (zmq_getsockopt(w->router, ZMQ_LAST_ENDPOINT, w->endpoint, &len) != 0)
        snprintf(w->endpoint, sizeof w->endpoint, "%s", endpoint);
    int events = ZMQ_EVENT_ACCEPTED | ZMQ_EVENT_DISCONNECTED |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    if (zmq_socket_monitor(w->router, COORD_EVENTS_ENDPOINT, events) != 0 ||
        !(w->events = zmq_socket(ctx, ZMQ_PAIR)) ||
        zmq_setsockopt(w->events, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(w->events, COORD_EVENTS_ENDPOINT) != 0) {
        ud_err_set(e, UD_ENET, "ZeroMQ socket monitor: %s", zmq_strerror(zmq_errno()));
        goto out_fail;
    }
    return w;

out_fail:
    coord_workers_destroy(&w);
    return NULL;
}

void coord_workers_destroy(coord_workers_t **w)
{
    if (!w || !*w)
        return;
    if ((*w)->router) {
        zmq_socket_monitor((*w)->router, NULL, 0);
        zmq_close((*w)->router);
    }
    if ((*w)->events)
        zmq_close((*w)->events);
    free(*w);
    *w = NULL;
}

const char *coord_workers_endpoint(const coord_workers_t *w)
{
    return w->endpoint;
}
void *coord_workers_socket(coord_workers_t *w)
{
    return w->router;
}
void *coord_workers_events(coord_workers_t *w)
{
    return w->events;
}

/* "127.0.0.1 [00a1b2c3d4]": the peer's address (when libzmq knows it) and its identity. */
static void peer_name(zmq_msg_t *identity, zmq_msg_t *payload, char *buf, size_t n)
{
    const char *addr = zmq_msg_gets(payload, "Peer-Address");
    const unsigned char *id = zmq_msg_data(identity);
    size_t len = zmq_msg_size(identity), w = 0;
    char hex[2 * 8 + 1] = "";
    for (size_t i = 0; i < len && i < 8; i++)
        w += (size_t)snprintf(hex + w, sizeof hex - w, "%02x", id[i]);
    snprintf(buf, n, "%s [%s]", addr ? addr : "?", hex);
}

/* Cuts s back to whole UTF-8 characters and replaces control bytes, so an error text built
 * from a peer's strings and then truncated still encodes. */
static void text_clean(char *s)
{
    size_t n = strlen(s), i = 0;
    while (i < n) {
        unsigned char c = (unsigned char)s[i];
        size_t k = c < 0x80 ? 1 : (c >> 5) == 6 ? 2 : (c >> 4) == 14 ? 3 : (c >> 3) == 30 ? 4 : 0;
        int ok = k > 0 && i + k <= n;
        for (size_t t = 1; ok && t < k; t++)
            ok = ((unsigned char)s[i + t] >> 6) == 2;
        if (!ok) {
            if (i + 4 >= n) { /* a character cut at the end */
                s[i] = '\0';
                return;
            }
            s[i] = '?';
            k = 1;
        } else if (k == 1 && c < 0x20) {
            s[i] = ' ';
        }
        i += k;
    }
}

/* Sends reply m to the peer whose envelope is frames[0..nenv). */
static void send_reply(coord_workers_t *w, zmq_msg_t *frames, int nenv, const struct ud_msg *m,
                       const char *peer)
{
    void *buf = NULL;
    size_t len = 0;
    struct ud_err e = {0};
    int rc = ud_msg_encode(m, &buf, &len, &e);
    if (rc && m->type == UD_MSG_ERROR) { /* the text would not encode: send a plain one */
        struct ud_msg plain = *m;
        plain.msg = (char *)ud_strerror(m->code);
        rc = ud_msg_encode(&plain, &buf, &len, &e);
    }
    if (rc) {
        coord_log(COORD_LOG_ERROR, "cannot encode the %s reply to %s: %s",
                  ud_msg_type_name(m->type), peer, e.msg);
        return;
    }
    int ok = 1;
    for (int i = 0; i < nenv && ok; i++)
        ok = zmq_send(w->router, zmq_msg_data(&frames[i]), zmq_msg_size(&frames[i]),
                      ZMQ_SNDMORE | ZMQ_DONTWAIT) >= 0;
    if (ok)
        ok = zmq_send(w->router, buf, len, ZMQ_DONTWAIT) >= 0;
    if (!ok)
        coord_log(COORD_LOG_WARN, "reply to %s lost: %s", peer, zmq_strerror(zmq_errno()));
    free(buf);
}

static void send_error(coord_workers_t *w, zmq_msg_t *frames, int nenv, uint64_t id, int code,
                       const char *msg, const char *peer)
{
    char text[UD_ERRMSG_MAX];
    snprintf(text, sizeof text, "%s", msg && *msg ? msg : ud_strerror(code));
    text_clean(text);
    struct ud_msg m;
    memset(&m, 0, sizeof m);
    m.type = UD_MSG_ERROR;
    m.id = id;
    m.code = code;
    m.msg = text;
    send_reply(w, frames, nenv, &m, peer);
}

/* What a request asks of the jobs: reply (register), *version (model) or *cancel (the
 * others). Returns 0 or the error the worker is answered with. */
static int dispatch(coord_workers_t *w, const struct ud_msg *req, struct ud_msg *reply, int *cancel,
                    int64_t *version, struct ud_err *e)
{
    switch (req->type) {
    case UD_MSG_REGISTER:
        return coord_jobs_register(w->jobs, req, reply, e);
    case UD_MSG_HEARTBEAT:
        return coord_jobs_heartbeat(w->jobs, req, cancel, e);
    case UD_MSG_PROGRESS:
        return coord_jobs_progress(w->jobs, req, cancel, e);
    case UD_MSG_CHECKPOINT:
        return coord_jobs_checkpoint(w->jobs, req, cancel, e);
    case UD_MSG_DONE:
        return coord_jobs_done(w->jobs, req, cancel, e);
    case UD_MSG_MODEL:
        return coord_jobs_model(w->jobs, req, version, e);
    default:
        return ud_err_set(e, UD_EFORMAT,
                          "'%s' is a message the coordinator sends, not one it takes",
                          ud_msg_type_name(req->type));
    }
}

/* The acknowledgement of a request that succeeded: a model_ack with the version for a model
 * upload, an ack with the cancel flag for the others. */
static void send_ack(coord_workers_t *w, zmq_msg_t *frames, int nenv, const struct ud_msg *req,
                     int cancel, int64_t version, const char *peer)
{
    struct ud_msg ack;
    memset(&ack, 0, sizeof ack);
    ack.id = req->id;
    if (req->type == UD_MSG_MODEL) {
        ack.type = UD_MSG_MODEL_ACK;
        ack.version = version;
        ack.sha256 = req->sha256;
    } else {
        ack.type = UD_MSG_ACK;
        ack.cancel = cancel;
    }
    send_reply(w, frames, nenv, &ack, peer);
}

static void handle(coord_workers_t *w, zmq_msg_t *frames, int nframes)
{
    char peer[128];
    zmq_msg_t *payload = &frames[nframes - 1];
    peer_name(&frames[0], payload, peer, sizeof peer);
    int nenv = nframes - 1; /* identity, and REQ's empty delimiter */
    if (nframes < 2 || nframes > 3 || (nframes == 3 && zmq_msg_size(&frames[1]) != 0)) {
        coord_log(COORD_LOG_WARN,
                  "dropped message from %s: %d frames (a request is one frame holding one "
                  "msgpack map)",
                  peer, nframes - 1);
        return;
    }

    struct ud_msg req, reply;
    struct ud_err e = {0};
    memset(&reply, 0, sizeof reply);
    int rc = ud_msg_decode(zmq_msg_data(payload), zmq_msg_size(payload), &req, &e);
    if (rc) {
        coord_log(COORD_LOG_WARN, "dropped message from %s: %s%s", peer, e.msg,
                  req.id ? "" : " (no request id: not answered)");
        if (req.id)
            send_error(w, frames, nenv, req.id, rc, e.msg, peer);
        return;
    }

    int cancel = 0;
    int64_t version = 0;
    rc = dispatch(w, &req, &reply, &cancel, &version, &e);
    if (rc) {
        if (rc == UD_ENOTFOUND || rc == UD_EFORMAT)
            coord_log(COORD_LOG_WARN, "dropped message from %s: %s: %s", peer,
                      ud_msg_type_name(req.type), e.msg);
        else
            coord_log(COORD_LOG_WARN, "refused %s from %s (job %s, rank %d): %s",
                      ud_msg_type_name(req.type), peer, req.job ? req.job : "-", req.rank, e.msg);
        send_error(w, frames, nenv, req.id, rc, e.msg, peer);
    } else if (req.type == UD_MSG_REGISTER) {
        send_reply(w, frames, nenv, &reply, peer);
    } else {
        send_ack(w, frames, nenv, &req, cancel, version, peer);
    }
    ud_msg_deinit(&reply);
    ud_msg_deinit(&req);
}

int coord_workers_serve(coord_workers_t *w, int max)
{
    int n = 0;
    for (; n < max; n++) {
        zmq_msg_t frames[MAX_FRAMES];
        int nframes = 0, more = 1, extra = 0;
        while (more) {
            zmq_msg_t f;
            zmq_msg_init(&f);
            if (zmq_msg_recv(&f, w->router, nframes == 0 ? ZMQ_DONTWAIT : 0) < 0) {
                zmq_msg_close(&f);
                if (zmq_errno() != EAGAIN && zmq_errno() != EINTR)
                    coord_log(COORD_LOG_ERROR, "receiving: %s", zmq_strerror(zmq_errno()));
                for (int i = 0; i < nframes; i++)
                    zmq_msg_close(&frames[i]);
                return n;
            }
            more = zmq_msg_more(&f);
            if (nframes < MAX_FRAMES)
                frames[nframes++] = f;
            else {
                zmq_msg_close(&f); /* too many frames: counted, then refused */
                extra++;
            }
        }
        if (extra)
            coord_log(COORD_LOG_WARN, "dropped message: %d frames (a request is one frame)",
                      nframes - 1 + extra);
        else
            handle(w, frames, nframes);
        for (int i = 0; i < nframes; i++)
            zmq_msg_close(&frames[i]);
    }
    return n;
}

/* Why a handshake failed, from a ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL value. */
static const char *handshake_reason(uint32_t v)
{
    switch (v) {
    case ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
        return "the peer uses another security mechanism (a worker without --curve-server-key "
               "talking to a CURVE coordinator, or the other way round)";
    case ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC:
        return "its CURVE hello did not decrypt (the worker has a wrong --curve-server-key)";
    default:
        return v >= ZMQ_PROTOCOL_ERROR_ZMTP_UNEXPECTED_COMMAND &&
                       v < ZMQ_PROTOCOL_ERROR_ZAP_UNSPECIFIED
                   ? "malformed ZMTP (not a worker?)"
                   : "not a worker?";
    }
}

void coord_workers_drain_events(coord_workers_t *w)
{
    uint16_t event;
    uint32_t value;
    char where[256];
    while (ud_zmq_event_recv(w->events, &event, &value, where, sizeof where)) {
        if (event == ZMQ_EVENT_ACCEPTED)
            coord_log(COORD_LOG_INFO, "worker connection accepted on %s", where);
        else if (event == ZMQ_EVENT_DISCONNECTED)
            coord_log(COORD_LOG_INFO,
                      "worker connection on %s closed (the peer left, or sent something libzmq "
                      "refused: a message over %u MiB, a broken frame)",
                      where, UD_PROTO_MAX_MESSAGE >> 20);
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
            coord_log(COORD_LOG_WARN,
                      "connection on %s dropped: the worker's CURVE key is not allowed (ZAP %u)",
                      where, (unsigned)value);
        else if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
            coord_log(COORD_LOG_WARN, "connection on %s dropped: ZeroMQ handshake failed: %s",
                      where, handshake_reason(value));
        else
            coord_log(COORD_LOG_WARN,
                      "connection on %s dropped: ZeroMQ handshake failed (not a worker?)", where);
    }
}
