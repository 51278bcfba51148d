/*  coord_zap.c — the ZAP handler behind CURVE (coord_zap.h).
 *
 *  A ZAP request is [version "1.0"][request id][domain][address][identity][mechanism]
 *  [credentials...]; for CURVE the one credential is the client's 32-byte public key. The
 *  reply is [version][request id][status code][status text][user id][metadata]. Anything
 *  that is not a well-formed CURVE request gets a 400 (libzmq then drops the connection).
 */
#include "coord_zap.h"

#include <dirent.h>
#include <pthread.h>
#include <sodium.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zmq.h>

#include "coord_log.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_file.h"

#define ZAP_ENDPOINT "inproc://zeromq.zap.01"
#define LIST_MAX     (4u << 20) /* a key list file */
#define MAX_FRAMES   8

struct coord_zap {
    void *ctx;
    void *pipe; /* the main thread's end */
    uint8_t (*keys)[32];
    size_t nkeys, cap;
    pthread_t thread;
    int started;
    char pipe_name[64];
};

/* The id ud_keys.h gives a curve public key, into id (17 bytes with the NUL). */
static void key_id(const uint8_t pub[32], char id[17])
{
    uint8_t h[8];
    crypto_generichash(h, sizeof h, pub, 32, NULL, 0); /* as ud_keys.c's key_set_id */
    sodium_bin2hex(id, 17, h, sizeof h);
}

static int add_key(coord_zap_t *z, const uint8_t *pub, struct ud_err *e)
{
    for (size_t i = 0; i < z->nkeys; i++)
        if (memcmp(z->keys[i], pub, 32) == 0)
            return 0;
    if (z->nkeys == z->cap) {
        size_t cap = z->cap ? 2 * z->cap : 16;
        uint8_t(*k)[32] = realloc(z->keys, cap * sizeof *k);
        if (!k)
            return ud_err_set(e, UD_ENOMEM, "out of memory");
        z->keys = k;
        z->cap = cap;
    }
    memcpy(z->keys[z->nkeys++], pub, 32);
    return 0;
}

/* One key from one line of text (what names it in messages). */
static int add_line(coord_zap_t *z, const char *line, size_t len, const char *what,
                    struct ud_err *e)
{
    char buf[512];
    if (len >= sizeof buf)
        return ud_err_set(e, UD_EFORMAT, "%s: a line of %zu bytes is not a key", what, len);
    memcpy(buf, line, len);
    buf[len] = '\0';
    if (strstr(buf, " curve-secret "))
        return ud_err_set(e, UD_EFORMAT,
                          "%s: a curve-secret key; list the workers' public keys only", what);
    struct ud_key k;
    int rc = ud_key_parse(buf, len, what, UD_KEY_CURVE_PUBLIC, &k, e);
    if (rc == 0)
        rc = add_key(z, k.pub, e);
    ud_key_wipe(&k);
    return rc;
}

static int load_file(coord_zap_t *z, const char *path, struct ud_err *e)
{
    char *text = NULL;
    size_t len = 0;
    int rc = ud_file_read(path, LIST_MAX, &text, &len, e);
    if (rc)
        return ud_err_prefix(e, "--curve-clients");
    size_t pos = 0, n = 0;
    int lineno = 0;
    const char *line;
    while (rc == 0 && ud_key_next_line(text, len, &pos, &lineno, &line, &n)) {
        char what[4200];
        snprintf(what, sizeof what, "--curve-clients %s:%d", path, lineno);
        rc = add_line(z, line, n, what, e);
    }
    free(text);
    return rc;
}

static int load_dir(coord_zap_t *z, const char *path, struct ud_err *e)
{
    DIR *d = opendir(path);
    if (!d)
        return ud_err_set(e, UD_EIO, "--curve-clients %s: cannot open the directory", path);
    int rc = 0;
    struct dirent *de;
    while (rc == 0 && (de = readdir(d))) {
        size_t n = strlen(de->d_name);
        if (n < 5 || strcmp(de->d_name + n - 4, ".pub") != 0 || de->d_name[0] == '.')
            continue;
        char file[4200];
        snprintf(file, sizeof file, "%s/%s", path, de->d_name);
        struct ud_key k;
        if ((rc = ud_key_read(file, UD_KEY_CURVE_PUBLIC, &k, e)) == 0)
            rc = add_key(z, k.pub, e);
        else
            ud_err_prefix(e, "--curve-clients");
        ud_key_wipe(&k);
    }
    closedir(d);
    return rc;
}

/* Sends the reply's frames; the last without SNDMORE. */
static void reply(void *rep, zmq_msg_t *version, zmq_msg_t *reqid, const char *code,
                  const char *text)
{
    zmq_send(rep, zmq_msg_data(version), zmq_msg_size(version), ZMQ_SNDMORE);
    zmq_send(rep, zmq_msg_data(reqid), zmq_msg_size(reqid), ZMQ_SNDMORE);
    zmq_send(rep, code, strlen(code), ZMQ_SNDMORE);
    zmq_send(rep, text, strlen(text), ZMQ_SNDMORE);
    zmq_send(rep, "", 0, ZMQ_SNDMORE); /* user id */
    zmq_send(rep, "", 0, 0);           /* metadata */
}

static void answer(coord_zap_t *z, void *rep)
{
    zmq_msg_t f[MAX_FRAMES];
    int n = 0, more = 1;
    while (more) {
        zmq_msg_t m;
        zmq_msg_init(&m);
        if (zmq_msg_recv(&m, rep, 0) < 0) {
            zmq_msg_close(&m);
            break;
        }
        more = zmq_msg_more(&m);
        if (n < MAX_FRAMES)
            f[n++] = m;
        else
            zmq_msg_close(&m);
    }
    if (n < 2) { /* REP must still answer something to go on receiving */
        zmq_send(rep, "", 0, 0);
        goto out;
    }
    char addr[64] = "?";
    if (n > 3) {
        size_t l = zmq_msg_size(&f[3]) < sizeof addr - 1 ? zmq_msg_size(&f[3]) : sizeof addr - 1;
        memcpy(addr, zmq_msg_data(&f[3]), l);
        addr[l] = '\0';
        for (size_t i = 0; i < l; i++)
            if (addr[i] < 0x20 || addr[i] > 0x7e)
                addr[i] = '?';
    }
    int curve = n == 7 && zmq_msg_size(&f[5]) == 5 &&
                memcmp(zmq_msg_data(&f[5]), "CURVE", 5) == 0 && zmq_msg_size(&f[6]) == 32;
    if (!curve) {
        coord_log(COORD_LOG_WARN, "refused a worker connection from %s: not a CURVE handshake",
                  addr);
        reply(rep, &f[0], &f[1], "400", "CURVE only");
        goto out;
    }
    const uint8_t *pub = zmq_msg_data(&f[6]);
    for (size_t i = 0; i < z->nkeys; i++)
        if (sodium_memcmp(z->keys[i], pub, 32) == 0) {
            reply(rep, &f[0], &f[1], "200", "OK");
            goto out;
        }
    char id[17];
    key_id(pub, id);
    coord_log(COORD_LOG_WARN,
              "refused worker CURVE key %s from %s: not in --curve-clients (add its public key "
              "file to allow it)",
              id, addr);
    reply(rep, &f[0], &f[1], "400", "key not allowed");
out:
    for (int i = 0; i < n; i++)
        zmq_msg_close(&f[i]);
}

static void *actor(void *arg)
{
    coord_zap_t *z = arg;
    void *rep = zmq_socket(z->ctx, ZMQ_REP), *pipe = zmq_socket(z->ctx, ZMQ_PAIR);
    int linger = 0, ok = rep && pipe;
    if (ok) {
        zmq_setsockopt(rep, ZMQ_LINGER, &linger, sizeof linger);
        zmq_setsockopt(pipe, ZMQ_LINGER, &linger, sizeof linger);
        ok = zmq_connect(pipe, z->pipe_name) == 0 && zmq_bind(rep, ZAP_ENDPOINT) == 0;
    }
    /* Say whether the handler is up; the main thread waits for it before binding. */
    zmq_send(pipe, ok ? "1" : "0", 1, 0);
    while (ok) {
        zmq_pollitem_t it[2] = {{rep, 0, ZMQ_POLLIN, 0}, {pipe, 0, ZMQ_POLLIN, 0}};
        if (zmq_poll(it, 2, -1) < 0) {
            if (zmq_errno() == EINTR)
                continue;
            break;
        }
        if (it[1].revents & ZMQ_POLLIN)
            break; /* stop */
        if (it[0].revents & ZMQ_POLLIN)
            answer(z, rep);
    }
    if (rep)
        zmq_close(rep);
    if (pipe)
        zmq_close(pipe);
    return NULL;
}

coord_zap_t *coord_zap_new(void *ctx, const char *clients_path, const uint8_t *extra,
                           struct ud_err *e)
{
    coord_zap_t *z = calloc(1, sizeof *z);
    if (!z) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        return NULL;
    }
    z->ctx = ctx;
    if (extra && add_key(z, extra, e) != 0)
        goto out_fail;
    if (clients_path) {
        struct stat st;
        if (stat(clients_path, &st) != 0) {
            ud_err_set(e, UD_ENOTFOUND, "--curve-clients %s: no such file or directory",
                       clients_path);
            goto out_fail;
        }
        if ((S_ISDIR(st.st_mode) ? load_dir(z, clients_path, e) : load_file(z, clients_path, e)) !=
            0)
            goto out_fail;
    }
    if (z->nkeys == 0) {
        ud_err_set(e, UD_EEMPTY, "--curve-clients %s: no curve public key in it",
                   clients_path ? clients_path : "");
        goto out_fail;
    }
    snprintf(z->pipe_name, sizeof z->pipe_name, "inproc://coord-zap-%p", (void *)z);
    int linger = 0;
    if (!(z->pipe = zmq_socket(ctx, ZMQ_PAIR)) ||
        zmq_setsockopt(z->pipe, ZMQ_LINGER, &linger, sizeof linger) != 0 ||
        zmq_bind(z->pipe, z->pipe_name) != 0) {
        ud_err_set(e, UD_ENET, "ZAP handler pipe: %s", zmq_strerror(zmq_errno()));
        goto out_fail;
    }
    if (pthread_create(&z->thread, NULL, actor, z) != 0) {
        ud_err_set(e, UD_ENOMEM, "ZAP handler: cannot start its thread");
        goto out_fail;
    }
    z->started = 1;
    char up = '0';
    int wait_ms = 5000;
    zmq_setsockopt(z->pipe, ZMQ_RCVTIMEO, &wait_ms, sizeof wait_ms);
    if (zmq_recv(z->pipe, &up, 1, 0) != 1 || up != '1') {
        ud_err_set(e, UD_ENET, "ZAP handler: cannot bind %s (another handler in this context?)",
                   ZAP_ENDPOINT);
        goto out_fail;
    }
    return z;

out_fail:
    coord_zap_destroy(&z);
    return NULL;
}

size_t coord_zap_count(const coord_zap_t *z)
{
    return z ? z->nkeys : 0;
}

void coord_zap_destroy(coord_zap_t **zp)
{
    coord_zap_t *z = zp ? *zp : NULL;
    if (!z)
        return;
    if (z->started) {
        zmq_send(z->pipe, "X", 1, ZMQ_DONTWAIT);
        pthread_join(z->thread, NULL);
    }
    if (z->pipe)
        zmq_close(z->pipe);
    if (z->keys)
        sodium_memzero(z->keys, z->cap * sizeof *z->keys);
    free(z->keys);
    free(z);
    *zp = NULL;
}
