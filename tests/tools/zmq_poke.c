/*  zmq_poke.c — a tiny worker-protocol client for the coordinator's tests.
 *
 *  zmq_poke ENDPOINT [--timeout MS] REQUEST...
 *
 *  Sends each REQUEST in turn on one DEALER socket and prints one JSON line per request: the
 *  decoded reply ({"req": "register", "t": "job", ...}), or {"t": "none"} when nothing came
 *  within the timeout (default 2000 ms). A REQUEST is TYPE,key=value,... built with
 *  ud_msg_encode, ids numbered from 1:
 *    register,job=ID,world=2,rank=0,host=h,pid=1,resume=0
 *    heartbeat,job=ID,rank=0,step=3      progress,job=ID,step=5,epoch=0,m.loss=0.5,...
 *    checkpoint,job=ID,step=5,path=/p    done,job=ID,status=failed,code=-20,msg=text
 *    model,job=ID,name=N,udm=tiny:SEED|junk|FILE,sha256=auto|zero|HEX,m.test_accuracy=0.9
 *    ack,cancel=0                        (a type only the coordinator sends)
 *  or one of these misbehaviours:
 *    garbage          bytes that are not msgpack (no id: expect no reply)
 *    raw:HEX          the given bytes
 *    trunc:REQUEST    REQUEST encoded, then cut in half
 *    version:N:REQUEST  REQUEST encoded with protocol version N
 *    frames:REQUEST   REQUEST sent as two frames (itself and an empty one)
 *    sleep:SECONDS
 *  Exit status: 0 when everything was sent, 2 on a usage error.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <zmq.h>

#include <sodium.h>

#include "updraft/ud_arch.h"
#include "updraft/ud_model.h"
#include "updraft/ud_msg.h"
#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"

static uint64_t next_id = 1;

static void json_str(const char *s)
{
    putchar('"');
    for (; s && *s; s++) {
        unsigned char c = (unsigned char)*s;
        if (c == '"' || c == '\\')
            printf("\\%c", c);
        else if (c < 0x20)
            printf("\\u%04x", c);
        else
            putchar(c);
    }
    putchar('"');
}

static void usage(void)
{
    fprintf(stderr, "usage: zmq_poke ENDPOINT [--timeout MS] REQUEST... (see the source)\n");
    exit(2);
}

/* A small valid .udm (an MLP on 1x4x4 inputs, 2 classes) whose parameters depend on seed. */
static int tiny_udm(uint64_t seed, uint8_t **buf, size_t *len)
{
    struct ud_arch a;
    struct ud_err e = {0};
    struct ud_shape in = {.c = 1, .h = 4, .w = 4};
    if (ud_arch_preset("mlp", in, 2, &a, &e))
        return -1;
    ud_model_t *m = ud_model_new(&a, &e);
    if (!m)
        return -1;
    ud_model_init_params(m, seed);
    ud_model_set_metric(m, "test_accuracy", 0.5);
    char *b = NULL;
    int rc = ud_udm_encode(m, &b, len, &e);
    ud_model_destroy(&m);
    *buf = (uint8_t *)b;
    return rc;
}

/* Sets the field k of m to v (text; numbers in base 10). sha256= and udm= are kept in *sha and
 * *udm_src for attach_model. Returns 0, or -1 for an unknown key. */
static int set_field(struct ud_msg *m, const char *k, const char *v, const char **sha,
                     char **udm_src)
{
    long long n = strtoll(v, NULL, 10);
    if (strcmp(k, "job") == 0)
        ud_msg_set_str(&m->job, v);
    else if (strcmp(k, "rank") == 0)
        m->rank = (int32_t)n;
    else if (strcmp(k, "world") == 0)
        m->world = (int32_t)n;
    else if (strcmp(k, "host") == 0)
        ud_msg_set_str(&m->host, v);
    else if (strcmp(k, "pid") == 0)
        m->pid = n;
    else if (strcmp(k, "resume") == 0)
        m->resume = (int)n;
    else if (strcmp(k, "step") == 0)
        m->step = n;
    else if (strcmp(k, "epoch") == 0)
        m->epoch = n;
    else if (strcmp(k, "minibatch") == 0)
        m->minibatch = n;
    else if (strcmp(k, "steps_per_epoch") == 0)
        m->steps_per_epoch = n;
    else if (strcmp(k, "total_steps") == 0)
        m->total_steps = n;
    else if (strcmp(k, "path") == 0)
        ud_msg_set_str(&m->path, v);
    else if (strcmp(k, "name") == 0)
        ud_msg_set_str(&m->name, v);
    else if (strcmp(k, "status") == 0)
        ud_msg_set_str(&m->status, v);
    else if (strcmp(k, "code") == 0)
        m->code = (int32_t)n;
    else if (strcmp(k, "msg") == 0)
        ud_msg_set_str(&m->msg, v);
    else if (strcmp(k, "cancel") == 0)
        m->cancel = (int)n;
    else if (strcmp(k, "sha256") == 0)
        *sha = v;
    else if (strcmp(k, "udm") == 0) {
        free(*udm_src);
        *udm_src = strdup(v);
    } else if (strncmp(k, "m.", 2) == 0)
        ud_msg_add_metric(m, k + 2, strtod(v, NULL));
    else {
        fprintf(stderr, "zmq_poke: unknown key '%s'\n", k);
        return -1;
    }
    return 0;
}

/* The model of a "model" message: udm_src "tiny[:SEED]" (default), "junk" (64 bytes of 0x5a)
 * or a file; sha "auto" (its SHA-256), "zero" or the digest to send. Returns 0 or -1. */
static int attach_model(struct ud_msg *m, const char *udm_src, const char *sha)
{
    int rc = 0;
    if (!udm_src || strncmp(udm_src, "tiny", 4) == 0) {
        rc = tiny_udm(udm_src && udm_src[4] == ':' ? strtoull(udm_src + 5, NULL, 10) : 1, &m->udm,
                      &m->udm_len);
    } else if (strcmp(udm_src, "junk") == 0) {
        m->udm_len = 64;
        m->udm = malloc(64);
        memset(m->udm, 0x5a, 64);
    } else {
        char *data = NULL;
        struct ud_err e = {0};
        rc = ud_file_read(udm_src, UD_UDM_MAX_BYTES, &data, &m->udm_len, &e);
        m->udm = (uint8_t *)data;
        if (rc)
            fprintf(stderr, "zmq_poke: %s\n", e.msg);
    }
    if (rc)
        return -1;
    char hex[65];
    if (strcmp(sha, "auto") == 0) {
        unsigned char d[crypto_hash_sha256_BYTES];
        crypto_hash_sha256(d, m->udm, m->udm_len);
        sodium_bin2hex(hex, sizeof hex, d, sizeof d);
    } else if (strcmp(sha, "zero") == 0) {
        memset(hex, '0', 64);
        hex[64] = '\0';
    } else {
        snprintf(hex, sizeof hex, "%s", sha);
    }
    ud_msg_set_str(&m->sha256, hex);
    if (!m->name)
        ud_msg_set_str(&m->name, "poked");
    return 0;
}

/* Builds a message from "type,key=value,...". Returns 0 or -1 (with a message on stderr). */
static int build(const char *spec, struct ud_msg *m)
{
    memset(m, 0, sizeof *m);
    char *copy = strdup(spec), *save = NULL;
    char *type = strtok_r(copy, ",", &save);
    static const struct {
        const char *name;
        enum ud_msg_type t;
    } T[] = {{"register", UD_MSG_REGISTER},
             {"heartbeat", UD_MSG_HEARTBEAT},
             {"progress", UD_MSG_PROGRESS},
             {"checkpoint", UD_MSG_CHECKPOINT},
             {"model", UD_MSG_MODEL},
             {"done", UD_MSG_DONE},
             {"ack", UD_MSG_ACK},
             {"job", UD_MSG_JOB},
             {"model_ack", UD_MSG_MODEL_ACK},
             {"error", UD_MSG_ERROR}};
    for (size_t i = 0; type && i < sizeof T / sizeof T[0]; i++)
        if (strcmp(type, T[i].name) == 0)
            m->type = T[i].t;
    if (!m->type) {
        fprintf(stderr, "zmq_poke: unknown request type in '%s'\n", spec);
        free(copy);
        return -1;
    }
    m->id = next_id++;
    /* Defaults that make a valid message of each type. */
    ud_msg_set_str(&m->job, "");
    ud_msg_set_str(&m->host, "poke-host");
    m->pid = (int64_t)getpid();
    m->world = 1;
    ud_msg_set_str(&m->status, "failed");
    const char *sha = "auto";
    char *udm_src = NULL;
    int rc = 0;
    for (char *kv = strtok_r(NULL, ",", &save); kv && rc == 0; kv = strtok_r(NULL, ",", &save)) {
        char *eq = strchr(kv, '=');
        if (!eq) {
            fprintf(stderr, "zmq_poke: '%s' is not key=value\n", kv);
            rc = -1;
            break;
        }
        *eq = '\0';
        rc = set_field(m, kv, eq + 1, &sha, &udm_src);
    }
    if (rc == 0 && m->type == UD_MSG_MODEL)
        rc = attach_model(m, udm_src, sha);
    if (m->type == UD_MSG_CHECKPOINT && !m->path)
        ud_msg_set_str(&m->path, "/nonexistent/ckpt");
    if (m->type == UD_MSG_ERROR && !m->msg)
        ud_msg_set_str(&m->msg, "poke");
    free(udm_src);
    free(copy);
    return rc;
}

static void print_reply(const char *req, const void *buf, size_t len)
{
    struct ud_msg m;
    struct ud_err e = {0};
    printf("{\"req\": ");
    json_str(req);
    if (ud_msg_decode(buf, len, &m, &e) != 0) {
        printf(", \"t\": \"undecodable\", \"why\": ");
        json_str(e.msg);
        printf("}\n");
        return;
    }
    printf(", \"t\": \"%s\", \"id\": %llu", ud_msg_type_name(m.type), (unsigned long long)m.id);
    switch (m.type) {
    case UD_MSG_ERROR:
        printf(", \"code\": %d, \"code_name\": \"%s\", \"msg\": ", m.code, ud_err_name(m.code));
        json_str(m.msg);
        break;
    case UD_MSG_ACK:
        printf(", \"cancel\": %s", m.cancel ? "true" : "false");
        break;
    case UD_MSG_MODEL_ACK:
        printf(", \"version\": %lld, \"sha256\": ", (long long)m.version);
        json_str(m.sha256);
        break;
    case UD_MSG_JOB:
        printf(", \"job\": ");
        json_str(m.job);
        printf(", \"name\": ");
        json_str(m.name);
        printf(", \"session\": ");
        json_str(m.session);
        printf(", \"out\": ");
        json_str(m.out);
        printf(", \"heartbeat_s\": %g, \"resume\": %s, \"args\": [", m.heartbeat_s,
               m.resume ? "true" : "false");
        for (int i = 0; i < m.nargs; i++) {
            printf(i ? ", " : "");
            json_str(m.args[i]);
        }
        printf("], \"world\": %d, \"samples\": %llu, \"nvalidation\": %zu, \"shards\": [",
               m.plan.world, (unsigned long long)m.plan.manifest.samples, m.plan.nvalidation);
        for (int r = 0; r < m.plan.world; r++)
            printf("%s%zu", r ? ", " : "", m.plan.shard_len[r]);
        printf("]");
        break;
    default:
        break;
    }
    printf("}\n");
    ud_msg_deinit(&m);
}

static int hexval(char c)
{
    return c >= '0' && c <= '9' ? c - '0' : c >= 'a' && c <= 'f' ? c - 'a' + 10 : -1;
}

int main(int argc, char **argv)
{
    if (argc < 3)
        usage();
    if (sodium_init() < 0)
        return 1;
    int timeout = 2000, first = 2;
    if (strcmp(argv[2], "--timeout") == 0) {
        if (argc < 5)
            usage();
        timeout = atoi(argv[3]);
        first = 4;
    }
    void *ctx = zmq_ctx_new();
    void *s = zmq_socket(ctx, ZMQ_DEALER);
    int linger = 1000;
    zmq_setsockopt(s, ZMQ_LINGER, &linger, sizeof linger);
    if (zmq_connect(s, argv[1]) != 0) {
        fprintf(stderr, "zmq_poke: %s: %s\n", argv[1], zmq_strerror(zmq_errno()));
        return 2;
    }
    for (int a = first; a < argc; a++) {
        const char *req = argv[a];
        void *buf = NULL;
        size_t len = 0;
        int two_frames = 0;
        if (strncmp(req, "sleep:", 6) == 0) {
            usleep((useconds_t)(atof(req + 6) * 1e6));
            continue;
        } else if (strcmp(req, "garbage") == 0) {
            static const char g[] = "this is not msgpack";
            buf = malloc(sizeof g);
            memcpy(buf, g, sizeof g);
            len = sizeof g - 1;
        } else if (strncmp(req, "raw:", 4) == 0) {
            size_t n = strlen(req + 4) / 2;
            buf = malloc(n + 1);
            for (size_t i = 0; i < n; i++)
                ((uint8_t *)buf)[i] =
                    (uint8_t)(hexval(req[4 + 2 * i]) * 16 + hexval(req[5 + 2 * i]));
            len = n;
        } else {
            const char *inner = req;
            int version = -1, trunc = 0;
            if (strncmp(inner, "trunc:", 6) == 0) {
                trunc = 1;
                inner += 6;
            } else if (strncmp(inner, "frames:", 7) == 0) {
                two_frames = 1;
                inner += 7;
            } else if (strncmp(inner, "version:", 8) == 0) {
                version = atoi(inner + 8);
                inner = strchr(inner + 8, ':');
                if (!inner)
                    usage();
                inner++;
            }
            struct ud_msg m;
            struct ud_err e = {0};
            if (build(inner, &m) != 0)
                return 2;
            if (ud_msg_encode(&m, &buf, &len, &e) != 0) {
                fprintf(stderr, "zmq_poke: encoding '%s': %s\n", inner, e.msg);
                return 2;
            }
            ud_msg_deinit(&m);
            if (trunc)
                len /= 2;
            if (version >= 0) { /* "v" then a positive fixint: patch the fixint */
                uint8_t *p = buf;
                for (size_t i = 0; i + 2 < len; i++)
                    if (p[i] == 0xa1 && p[i + 1] == 'v' && p[i + 2] < 0x80) {
                        p[i + 2] = (uint8_t)(version & 0x7f);
                        break;
                    }
            }
        }
        zmq_send(s, buf, len, two_frames ? ZMQ_SNDMORE : 0);
        if (two_frames)
            zmq_send(s, "", 0, 0);
        free(buf);
        zmq_pollitem_t it = {s, 0, ZMQ_POLLIN, 0};
        if (zmq_poll(&it, 1, timeout) == 1) {
            zmq_msg_t r;
            zmq_msg_init(&r);
            zmq_msg_recv(&r, s, 0);
            print_reply(req, zmq_msg_data(&r), zmq_msg_size(&r));
            zmq_msg_close(&r);
        } else {
            printf("{\"req\": ");
            json_str(req);
            printf(", \"t\": \"none\"}\n");
        }
        fflush(stdout);
    }
    zmq_close(s);
    zmq_ctx_term(ctx);
    return 0;
}
