/*  worker_coord.c — a worker's link to the coordinator: synchronous requests on the caller's
 *  socket, heartbeats and posted messages on an actor thread's (see worker_coord.h).
 *
 *  The pipe between the main thread and the actor carries one frame per command: a kind byte
 *  ('B' best effort, 'R' reliable, 'X' stop) followed by an encoded message (for 'X': the flush
 *  budget as a double). Reliable messages wait in `pending` until a reply with their id comes.
 */
#include "worker_coord.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sodium.h>
#include <zmq.h>

#include "updraft/ud_clock.h"
#include "updraft/ud_zmq_event.h"

#define RESEND_S       3.0  /* a request or reliable post without a reply is sent again */
#define MAX_PENDING    256  /* reliable posts kept; beyond this the oldest progress is dropped */
#define WARN_EVERY_S   30.0 /* at most one "cannot reach" warning per this long */
#define HANDSHAKE_MS   5000 /* a ZMTP/CURVE handshake that takes longer fails */
#define HANDSHAKE_CUTS 3    /* connections closed mid-handshake in a row: a wrong server key */

struct pending {
    uint64_t id;
    void *buf;
    size_t len;
    double sent; /* 0: not sent yet */
};

struct worker_coord {
    void *ctx;
    void *req;     /* the caller's DEALER */
    void *monitor; /* the caller's: req's connection events */
    int curve;     /* 1: the keys below are used */
    struct worker_coord_curve keys;
    int connected, cuts; /* the monitor's view: a connection is up; handshakes cut short */
    void *pipe_main;     /* the caller's end of the inproc pipe */
    char endpoint[512];
    int rank;
    char host[256];
    atomic_uint_fast64_t next_id;
    atomic_int_fast64_t step;
    atomic_int cancel;
    pthread_t thread;
    int started;
    /* the actor's own (set before it starts) */
    char job[128];
    double every_s;
    char pipe_name[64];
};

static void *dealer_new(void *ctx, const char *endpoint, const struct worker_coord_curve *curve,
                        struct ud_err *e)
{
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    if (!s) {
        ud_err_set(e, UD_ENET, "zmq_socket: %s", zmq_strerror(zmq_errno()));
        return NULL;
    }
    int linger = 0, immediate = 1, hwm = 64, ivl = 100, ivl_max = 2000;
    int hb_ivl = 2000, hb_timeout = 6000;
    int64_t maxmsg = UD_PROTO_MAX_MESSAGE;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    /* Send only over a live connection: while the coordinator is away a send fails at once
     * (EAGAIN) instead of queueing for a peer that may never take it. */
    zmq_setsockopt(s, ZMQ_IMMEDIATE, &immediate, sizeof immediate);
    zmq_setsockopt(s, ZMQ_SNDHWM, &hwm, sizeof hwm);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL, &ivl, sizeof ivl);
    zmq_setsockopt(s, ZMQ_RECONNECT_IVL_MAX, &ivl_max, sizeof ivl_max);
    /* ZMTP heartbeats: a coordinator that vanished without closing its TCP link is noticed. */
    zmq_setsockopt(s, ZMQ_HEARTBEAT_IVL, &hb_ivl, sizeof hb_ivl);
    zmq_setsockopt(s, ZMQ_HEARTBEAT_TIMEOUT, &hb_timeout, sizeof hb_timeout);
    zmq_setsockopt(s, ZMQ_MAXMSGSIZE, &maxmsg, sizeof maxmsg);
    int handshake = HANDSHAKE_MS;
    zmq_setsockopt(s, ZMQ_HANDSHAKE_IVL, &handshake, sizeof handshake);
    if (curve &&
        (!zmq_has("curve") || zmq_setsockopt(s, ZMQ_CURVE_SERVERKEY, curve->server_pub, 32) != 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_PUBLICKEY, curve->pub, 32) != 0 ||
         zmq_setsockopt(s, ZMQ_CURVE_SECRETKEY, curve->sec, 32) != 0)) {
        ud_err_set(e, UD_EUNSUPPORTED, "--curve-secret: %s",
                   zmq_has("curve") ? zmq_strerror(zmq_errno())
                                    : "this libzmq was built without CURVE");
        zmq_close(s);
        return NULL;
    }
    if (endpoint && zmq_connect(s, endpoint) != 0) {
        ud_err_set(e, UD_EINVAL, "--coordinator %s: %s", endpoint, zmq_strerror(zmq_errno()));
        zmq_close(s);
        return NULL;
    }
    return s;
}

static int monitor_attach(worker_coord_t *c, const char *name, struct ud_err *e)
{
    int events = ZMQ_EVENT_CONNECTED | ZMQ_EVENT_DISCONNECTED | ZMQ_EVENT_HANDSHAKE_SUCCEEDED |
                 ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL | ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL |
                 ZMQ_EVENT_HANDSHAKE_FAILED_AUTH;
    int linger = 0;
    if (zmq_socket_monitor(c->req, name, events) != 0 ||
        !(c->monitor = zmq_socket(c->ctx, ZMQ_PAIR)) ||
        zmq_setsockopt(c->monitor, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_connect(c->monitor, name) != 0)
        return ud_err_set(e, UD_ENET, "ZeroMQ socket monitor: %s", zmq_strerror(zmq_errno()));
    return 0;
}

static int connect_req(worker_coord_t *c, struct ud_err *e)
{
    if (zmq_connect(c->req, c->endpoint) != 0)
        return ud_err_set(e, UD_EINVAL, "--coordinator %s: %s", c->endpoint,
                          zmq_strerror(zmq_errno()));
    return 0;
}

/* "CURVE handshake with tcp://...: failed: ..." for a ZMQ_EVENT_HANDSHAKE_FAILED_* event. */
static int handshake_failed(worker_coord_t *c, uint16_t event, uint32_t value, struct ud_err *e)
{
    const char *mech = c->curve ? "CURVE" : "ZeroMQ";
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_AUTH)
        return ud_err_set(e, UD_EAUTH,
                          "%s handshake with %s failed: the coordinator refused this worker's key "
                          "%s (ZAP status %u): add its public key to the coordinator's "
                          "--curve-clients",
                          mech, c->endpoint, c->keys.id, (unsigned)value);
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
        value == ZMQ_PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH)
        return ud_err_set(e, UD_EAUTH, "%s handshake with %s failed: %s", mech, c->endpoint,
                          c->curve ? "the coordinator does not use CURVE (start it with "
                                     "--curve-secret, or drop --curve-server-key here)"
                                   : "the coordinator requires CURVE: pass --curve-server-key "
                                     "(its STATE/curve-server.pub) and --curve-secret");
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL &&
        value == ZMQ_PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC)
        return ud_err_set(e, UD_EAUTH,
                          "%s handshake with %s failed: a message did not decrypt (a wrong "
                          "--curve-server-key?)",
                          mech, c->endpoint);
    if (event == ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL)
        return ud_err_set(e, UD_EAUTH, "%s handshake with %s failed: protocol error 0x%08x", mech,
                          c->endpoint, (unsigned)value);
    /* No detail: the coordinator closed the connection mid-handshake (EPIPE, ECONNRESET). A
     * CURVE server does that to a hello it cannot decrypt, and to a peer without CURVE. */
    return ud_err_set(e, UD_EAUTH, "%s handshake with %s failed: %s (%s)", mech, c->endpoint,
                      c->curve ? "the coordinator closed the connection: a wrong "
                                 "--curve-server-key (the coordinator's is its "
                                 "STATE/curve-server.pub), or a coordinator without CURVE"
                               : "the coordinator closed the connection: it probably requires "
                                 "CURVE: pass --curve-server-key (its STATE/curve-server.pub) "
                                 "and --curve-secret",
                      value ? zmq_strerror((int)value) : "closed during the handshake");
}

/* Reads the waiting connection events of the caller's socket. Returns 0, or UD_EAUTH when the
 * handshake failed for good (see worker_coord_request). */
static int link_check(worker_coord_t *c, struct ud_err *e)
{
    uint16_t event;
    uint32_t value;
    while (ud_zmq_event_recv(c->monitor, &event, &value, NULL, 0)) {
        switch (event) {
        case ZMQ_EVENT_CONNECTED:
            c->connected = 1;
            break;
        case ZMQ_EVENT_HANDSHAKE_SUCCEEDED:
            c->connected = 0;
            c->cuts = 0;
            break;
        case ZMQ_EVENT_DISCONNECTED:
        case ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL:
            /* Closed before the handshake finished. A CURVE server drops a hello it cannot
             * decrypt (a wrong server key) or a peer without CURVE that way, every time; a
             * coordinator that died mid-handshake does it once. So: fatal when it repeats. */
            if ((c->connected || event == ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL) &&
                ++c->cuts >= HANDSHAKE_CUTS)
                return handshake_failed(c, ZMQ_EVENT_HANDSHAKE_FAILED_NO_DETAIL,
                                        event == ZMQ_EVENT_DISCONNECTED ? 0 : value, e);
            c->connected = 0;
            break;
        case ZMQ_EVENT_HANDSHAKE_FAILED_PROTOCOL:
        case ZMQ_EVENT_HANDSHAKE_FAILED_AUTH:
            return handshake_failed(c, event, value, e);
        default:
            break;
        }
    }
    return 0;
}

worker_coord_t *worker_coord_new(const char *endpoint, int rank,
                                 const struct worker_coord_curve *curve, struct ud_err *e)
{
    worker_coord_t *c = calloc(1, sizeof *c);
    if (!c) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        return NULL;
    }
    snprintf(c->endpoint, sizeof c->endpoint, "%s", endpoint);
    c->rank = rank;
    if (gethostname(c->host, sizeof c->host) != 0)
        snprintf(c->host, sizeof c->host, "unknown");
    c->host[sizeof c->host - 1] = '\0';
    atomic_init(&c->next_id, 1);
    atomic_init(&c->step, 0);
    atomic_init(&c->cancel, 0);
    if (!(c->ctx = zmq_ctx_new())) {
        ud_err_set(e, UD_ENET, "zmq_ctx_new: %s", zmq_strerror(zmq_errno()));
        free(c);
        return NULL;
    }
    if (curve) {
        c->curve = 1;
        c->keys = *curve;
    }
    /* The monitor is attached before the connect, so no event of the first attempt is lost. */
    char mon[64];
    snprintf(mon, sizeof mon, "inproc://coord-client-monitor-%p", (void *)c);
    if (!(c->req = dealer_new(c->ctx, NULL, c->curve ? &c->keys : NULL, e)) ||
        monitor_attach(c, mon, e) != 0 || connect_req(c, e) != 0) {
        if (c->monitor)
            zmq_close(c->monitor);
        if (c->req)
            zmq_close(c->req);
        zmq_ctx_term(c->ctx);
        sodium_memzero(&c->keys, sizeof c->keys);
        free(c);
        return NULL;
    }
    return c;
}

/* ------------------------------------------------------------------ synchronous requests */

static int recv_msg(void *s, void **buf, size_t *len)
{
    zmq_msg_t z;
    zmq_msg_init(&z);
    if (zmq_msg_recv(&z, s, ZMQ_DONTWAIT) < 0) {
        zmq_msg_close(&z);
        return -1;
    }
    int more = zmq_msg_more(&z);
    *len = zmq_msg_size(&z);
    *buf = malloc(*len ? *len : 1);
    if (*buf)
        memcpy(*buf, zmq_msg_data(&z), *len);
    zmq_msg_close(&z);
    /* Replies are one frame; drop the rest of anything longer. */
    while (more) {
        zmq_msg_init(&z);
        if (zmq_msg_recv(&z, s, ZMQ_DONTWAIT) < 0)
            more = 0;
        else
            more = zmq_msg_more(&z);
        zmq_msg_close(&z);
    }
    return *buf ? 0 : -1;
}

/* Numbers m with the next request id and encodes it. */
static int encode_numbered(worker_coord_t *c, struct ud_msg *m, void **buf, size_t *len,
                           struct ud_err *e)
{
    m->id = atomic_fetch_add(&c->next_id, 1);
    return ud_msg_encode(m, buf, len, e);
}

int worker_coord_request(worker_coord_t *c, struct ud_msg *m, struct ud_msg *reply, void **raw,
                         size_t *raw_len, double timeout_s, struct ud_err *e)
{
    memset(reply, 0, sizeof *reply);
    void *buf;
    size_t len;
    int rc = encode_numbered(c, m, &buf, &len, e);
    if (rc)
        return rc;
    double start = ud_clock_mono(), deadline = start + timeout_s, sent = -1e9;
    rc = UD_ETIMEOUT;
    while (ud_clock_mono() < deadline) {
        if (ud_clock_mono() - sent >= RESEND_S) {
            if (zmq_send(c->req, buf, len, ZMQ_DONTWAIT) == (int)len)
                sent = ud_clock_mono();
        }
        zmq_pollitem_t it[2] = {{.socket = c->req, .events = ZMQ_POLLIN},
                                {.socket = c->monitor, .events = ZMQ_POLLIN}};
        double wait = fmin(deadline - ud_clock_mono(), sent > 0 ? RESEND_S : 0.1);
        if (zmq_poll(it, 2, (long)(fmax(wait, 0.01) * 1000)) <= 0)
            continue;
        int lc = (it[1].revents & ZMQ_POLLIN) ? link_check(c, e) : 0;
        if (lc) {
            rc = lc;
            goto out;
        }
        if (!(it[0].revents & ZMQ_POLLIN))
            continue;
        void *rb;
        size_t rl;
        while (recv_msg(c->req, &rb, &rl) == 0) {
            struct ud_err de = {0};
            struct ud_msg r;
            if (ud_msg_decode(rb, rl, &r, &de) != 0 || r.id != m->id) {
                /* A stale reply (to an earlier send of another request) or garbage. */
                if (r.id == m->id && de.code)
                    fprintf(stderr, "updraft-worker: warning: unreadable reply from %s: %s\n",
                            c->endpoint, de.msg);
                free(rb);
                continue;
            }
            if (r.type == UD_MSG_ERROR) {
                rc = ud_err_set(e, r.code ? r.code : UD_EINTERNAL, "the coordinator says: %s",
                                r.msg ? r.msg : "(no message)");
                ud_msg_deinit(&r);
                free(rb);
                goto out;
            }
            *reply = r;
            if (raw) {
                *raw = rb;
                *raw_len = rl;
            } else {
                free(rb);
            }
            rc = 0;
            goto out;
        }
    }
    ud_err_set(e, UD_ETIMEOUT, "no answer from the coordinator at %s to %s in %.0f s", c->endpoint,
               ud_msg_type_name(m->type), timeout_s);
out:
    free(buf);
    return rc;
}

/* ------------------------------------------------------------------------------ the actor */

struct actor {
    worker_coord_t *c;
    void *dealer, *pipe;
    struct pending q[MAX_PENDING];
    int nq;
    double last_warn, last_contact;
};

static void pending_drop(struct actor *a, int i)
{
    free(a->q[i].buf);
    memmove(&a->q[i], &a->q[i + 1], (size_t)(a->nq - i - 1) * sizeof a->q[0]);
    a->nq--;
}

/* Returns 1 if the heartbeat went out (0 while the link is not up yet). */
static int heartbeat(struct actor *a)
{
    worker_coord_t *c = a->c;
    struct ud_msg m = {.type = UD_MSG_HEARTBEAT,
                       .id = atomic_fetch_add(&c->next_id, 1),
                       .job = c->job,
                       .rank = c->rank,
                       .host = c->host,
                       .pid = getpid(),
                       .step = atomic_load(&c->step)};
    void *buf;
    size_t len;
    struct ud_err e = {0};
    int sent = 0;
    if (ud_msg_encode(&m, &buf, &len, &e) == 0) {
        sent = zmq_send(a->dealer, buf, len, ZMQ_DONTWAIT) == (int)len;
        free(buf);
    }
    return sent;
}

static void on_reply(struct actor *a)
{
    void *rb;
    size_t rl;
    while (recv_msg(a->dealer, &rb, &rl) == 0) {
        struct ud_err e = {0};
        struct ud_msg r;
        a->last_contact = ud_clock_mono();
        if (ud_msg_decode(rb, rl, &r, &e) == 0) {
            if (r.type == UD_MSG_ACK && r.cancel)
                atomic_store(&a->c->cancel, 1);
            if (r.type == UD_MSG_ERROR)
                fprintf(stderr, "updraft-worker: warning: the coordinator refused a message: %s\n",
                        r.msg ? r.msg : "(no message)");
            for (int i = 0; i < a->nq; i++)
                if (a->q[i].id == r.id) {
                    pending_drop(a, i);
                    break;
                }
            ud_msg_deinit(&r);
        }
        free(rb);
    }
}

static void send_pending(struct actor *a, double t)
{
    for (int i = 0; i < a->nq; i++) {
        struct pending *p = &a->q[i];
        if (p->sent && t - p->sent < RESEND_S)
            continue;
        if (zmq_send(a->dealer, p->buf, p->len, ZMQ_DONTWAIT) == (int)p->len) {
            p->sent = t;
        } else {
            if (t - a->last_warn > WARN_EVERY_S) {
                a->last_warn = t;
                fprintf(stderr,
                        "updraft-worker: warning: cannot reach the coordinator at %s; training "
                        "goes on, %d message%s wait%s to be delivered\n",
                        a->c->endpoint, a->nq, a->nq == 1 ? "" : "s", a->nq == 1 ? "s" : "");
            }
            break;
        }
    }
}

/* Returns 1 when told to stop (with *flush_s the budget for what is still pending). */
static int on_pipe(struct actor *a, double *flush_s)
{
    void *buf;
    size_t len;
    int stop = 0;
    while (recv_msg(a->pipe, &buf, &len) == 0) {
        if (len < 1) {
            free(buf);
            continue;
        }
        char kind = ((char *)buf)[0];
        if (kind == 'X') {
            if (len >= 1 + sizeof(double))
                memcpy(flush_s, (char *)buf + 1, sizeof(double));
            stop = 1;
        } else if (kind == 'B') {
            zmq_send(a->dealer, (char *)buf + 1, len - 1, ZMQ_DONTWAIT);
        } else if (kind == 'R' && len >= 1 + sizeof(uint64_t)) {
            if (a->nq == MAX_PENDING)
                pending_drop(a, 0);
            struct pending *p = &a->q[a->nq++];
            memcpy(&p->id, (char *)buf + 1, sizeof p->id);
            p->len = len - 1 - sizeof p->id;
            p->buf = malloc(p->len ? p->len : 1);
            p->sent = 0;
            if (!p->buf)
                a->nq--;
            else
                memcpy(p->buf, (char *)buf + 1 + sizeof p->id, p->len);
        }
        free(buf);
    }
    return stop;
}

static void *actor_main(void *arg)
{
    worker_coord_t *c = arg;
    struct ud_err e = {0};
    struct actor a = {.c = c};
    a.dealer = dealer_new(c->ctx, c->endpoint, c->curve ? &c->keys : NULL, &e);
    a.pipe = zmq_socket(c->ctx, ZMQ_PAIR);
    if (!a.dealer || !a.pipe || zmq_connect(a.pipe, c->pipe_name) != 0) {
        fprintf(stderr, "updraft-worker: warning: coordinator link not started: %s\n",
                e.msg[0] ? e.msg : zmq_strerror(zmq_errno()));
        goto out;
    }
    double next_hb = 0, flush_s = 0, stop_at = 0;
    for (;;) {
        double t = ud_clock_mono();
        if (!stop_at && t >= next_hb) {
            /* Until the link is up (ZMQ_IMMEDIATE refuses), try again soon. */
            next_hb = t + (heartbeat(&a) ? c->every_s : 0.05);
        }
        send_pending(&a, t);
        if (stop_at && (a.nq == 0 || t >= stop_at))
            break;
        zmq_pollitem_t it[2] = {{.socket = a.dealer, .events = ZMQ_POLLIN},
                                {.socket = a.pipe, .events = ZMQ_POLLIN}};
        double wait = stop_at ? 0.05 : fmin(fmax(next_hb - t, 0.01), 0.25);
        if (zmq_poll(it, stop_at ? 1 : 2, (long)(wait * 1000)) < 0)
            continue;
        if (it[0].revents & ZMQ_POLLIN)
            on_reply(&a);
        if (!stop_at && (it[1].revents & ZMQ_POLLIN) && on_pipe(&a, &flush_s)) {
            stop_at = ud_clock_mono() + flush_s;
            send_pending(&a, 0 /* now, whatever the resend clock says */);
        }
    }
    if (a.nq)
        fprintf(stderr,
                "updraft-worker: warning: %d message%s to the coordinator at %s could "
                "not be delivered\n",
                a.nq, a.nq == 1 ? "" : "s", c->endpoint);
out:
    while (a.nq)
        pending_drop(&a, a.nq - 1);
    if (a.dealer)
        zmq_close(a.dealer);
    if (a.pipe)
        zmq_close(a.pipe);
    return NULL;
}

int worker_coord_start(worker_coord_t *c, const char *job, double every_s, struct ud_err *e)
{
    if (c->started)
        return 0;
    snprintf(c->job, sizeof c->job, "%s", job);
    c->every_s = every_s > 0.05 ? every_s : 0.05;
    snprintf(c->pipe_name, sizeof c->pipe_name, "inproc://coord-client-%p", (void *)c);
    c->pipe_main = zmq_socket(c->ctx, ZMQ_PAIR);
    int linger = 0;
    if (!c->pipe_main)
        return ud_err_set(e, UD_ENET, "zmq_socket: %s", zmq_strerror(zmq_errno()));
    zmq_setsockopt(c->pipe_main, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_bind(c->pipe_main, c->pipe_name) != 0)
        return ud_err_set(e, UD_ENET, "zmq_bind %s: %s", c->pipe_name, zmq_strerror(zmq_errno()));
    if (pthread_create(&c->thread, NULL, actor_main, c) != 0)
        return ud_err_set(e, UD_ENOMEM, "cannot start the coordinator link's thread");
    c->started = 1;
    return 0;
}

void worker_coord_set_step(worker_coord_t *c, int64_t step)
{
    atomic_store(&c->step, step);
}

int worker_coord_post(worker_coord_t *c, struct ud_msg *m, int reliable, struct ud_err *e)
{
    if (!c->started)
        return 0;
    void *buf;
    size_t len;
    int rc = encode_numbered(c, m, &buf, &len, e);
    if (rc)
        return rc;
    size_t head = reliable ? 1 + sizeof m->id : 1;
    char *frame = malloc(head + len);
    if (!frame) {
        free(buf);
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    }
    frame[0] = reliable ? 'R' : 'B';
    if (reliable)
        memcpy(frame + 1, &m->id, sizeof m->id);
    memcpy(frame + head, buf, len);
    zmq_send(c->pipe_main, frame, head + len, 0);
    free(frame);
    free(buf);
    return 0;
}

int worker_coord_cancelled(const worker_coord_t *c)
{
    return atomic_load(&((worker_coord_t *)c)->cancel);
}

void worker_coord_destroy(worker_coord_t **pc, double flush_s)
{
    worker_coord_t *c = pc ? *pc : NULL;
    if (!c)
        return;
    if (c->started) {
        char frame[1 + sizeof(double)];
        frame[0] = 'X';
        memcpy(frame + 1, &flush_s, sizeof flush_s);
        zmq_send(c->pipe_main, frame, sizeof frame, 0);
        pthread_join(c->thread, NULL);
    }
    if (c->pipe_main)
        zmq_close(c->pipe_main);
    zmq_socket_monitor(c->req, NULL, 0);
    zmq_close(c->monitor);
    zmq_close(c->req);
    zmq_ctx_term(c->ctx);
    sodium_memzero(&c->keys, sizeof c->keys);
    free(c);
    *pc = NULL;
}
