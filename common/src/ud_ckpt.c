/*  ud_ckpt.c — training-session checkpoints (contract: ud_ckpt.h; formats: docs/checkpoints.md).
 *
 *  A checkpoint is a directory of four kinds of file, each written atomically by
 *  ud_file_write_atomic: model.udm (ud_udm_write), state.ckpt and rank-NNNNN.ckpt (msgpack
 *  bodies in the .udm envelope, ud_envelope.c, with magics "UDCK" and "UDCR"), and DONE, a
 *  short text file that lists every other file with its size and SHA-256 and is written last.
 *
 *  Completeness is decided by one function, ckpt_inspect, used by list, latest, read, begin and
 *  prune alike: DONE present and well formed, every file it lists present with the listed size
 *  and hash, state.ckpt and every rank file decoding and agreeing on the world. Files that are
 *  decoded (the state, the rank files, the model when asked for) are read once into memory and
 *  hashed from that buffer, so what is checked is what is used; the model is otherwise hashed
 *  as a stream. Every size read from a file is bounded before anything is allocated for it.
 */
#include "updraft/ud_ckpt.h"

#include "ud_ckpt_impl.h"
#include "ud_envelope_impl.h"
#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include <msgpack.h>
#include <sodium.h>

#define CKPT_MODEL_FILE "model.udm"
#define CKPT_STATE_FILE "state.ckpt"
#define CKPT_DONE_FILE  "DONE"
#define CKPT_NAME_MAX   32 /* "rank-65535.ckpt" and the others, with room */
#define CKPT_PATH_MAX   4096

#define CKPT_STATE_MAX_BYTES (UD_CKPT_MAX_OPTIM_FLOATS * 4 + ((size_t)1 << 20))
#define CKPT_RANK_MAX_BYTES  4096
#define CKPT_DONE_MAGIC      "updraft-checkpoint-done"
#define CKPT_DONE_VERSION    1
/* A DONE line: "file rank-00000.ckpt 18446744073709551615 <64 hex>\n" is under 128 bytes. */
#define CKPT_DONE_MAX_BYTES ((size_t)(UD_CKPT_MAX_RANKS + 8) * 128)
#define CKPT_MAX_THREADS    65536
#define CKPT_HASH_CHUNK     ((size_t)1 << 20)

#define CKPT_NO_DONE "no DONE marker (incomplete: a rank died or the write was interrupted)"

static const struct ud__env_format ckpt_state_format = {
    .magic = "UDCK",
    .version = 1,
    .what = "updraft checkpoint state file",
    .noun = "checkpoint state",
    .max_bytes = CKPT_STATE_MAX_BYTES,
};

static const struct ud__env_format ckpt_rank_format = {
    .magic = "UDCR",
    .version = 1,
    .what = "updraft checkpoint rank file",
    .noun = "rank file",
    .max_bytes = CKPT_RANK_MAX_BYTES,
};

/* ------------------------------------------------------------------------------------------ */
/* Paths and names                                                                            */
/* ------------------------------------------------------------------------------------------ */

static void ckpt_rank_name(int rank, char name[CKPT_NAME_MAX])
{
    snprintf(name, CKPT_NAME_MAX, "rank-%05d.ckpt", rank);
}

/* dir/name into out (CKPT_PATH_MAX bytes). Returns 0 or UD_ELIMIT / UD_EINVAL. */
static int ckpt_join(char *out, const char *dir, const char *name, struct ud_err *e)
{
    if (!dir || !*dir)
        return ud_err_set(e, UD_EINVAL, "no checkpoint directory given");
    int n = snprintf(out, CKPT_PATH_MAX, "%s/%s", dir, name);
    if (n < 0 || n >= CKPT_PATH_MAX)
        return ud_err_set(e, UD_ELIMIT, "%.200s...: the path is over %d bytes", dir,
                          CKPT_PATH_MAX - 1);
    return 0;
}

/* The iteration a directory name ("ckpt-000000000120", 12 to 18 digits) stands for, or -1. */
static int64_t ckpt_name_iteration(const char *name)
{
    if (strncmp(name, "ckpt-", 5) != 0)
        return -1;
    const char *d = name + 5;
    size_t n = strlen(d);
    if (n < 12 || n > 18)
        return -1;
    int64_t v = 0;
    for (size_t i = 0; i < n; i++) {
        if (d[i] < '0' || d[i] > '9')
            return -1;
        v = v * 10 + (d[i] - '0');
    }
    return v;
}

/* The iteration the last component of path names, or -1 (path need not be a checkpoint's). */
static int64_t ckpt_path_iteration(const char *path)
{
    char tmp[CKPT_PATH_MAX];
    snprintf(tmp, sizeof tmp, "%s", path);
    size_t n = strlen(tmp);
    while (n > 1 && tmp[n - 1] == '/')
        tmp[--n] = '\0';
    const char *base = strrchr(tmp, '/');
    return ckpt_name_iteration(base ? base + 1 : tmp);
}

/* ------------------------------------------------------------------------------------------ */
/* Hashing and loading files                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* Size and SHA-256 of dir/name, read as a stream. Returns 0, UD_ENOTFOUND, UD_ELIMIT (over
 * max bytes), UD_EIO; messages start with name. */
static int ckpt_hash_file(const char *dir, const char *name, uint64_t max, uint64_t *size,
                          unsigned char sha[UD__ENV_SUM_LEN], struct ud_err *e)
{
    char path[CKPT_PATH_MAX];
    int rc = ckpt_join(path, dir, name, e);
    if (rc < 0)
        return rc;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return ud_err_set(e, UD_ENOTFOUND, "%s: missing", name);
        return ud_err_set(e, UD_EIO, "%s: cannot open: %s", name, strerror(errno));
    }
    unsigned char *buf = NULL;
    struct stat st;
    if (fstat(fd, &st) < 0 || !S_ISREG(st.st_mode)) {
        rc = ud_err_set(e, UD_EIO, "%s: not a regular file", name);
        goto out_close;
    }
    buf = malloc(CKPT_HASH_CHUNK);
    if (!buf) {
        rc = ud_err_set(e, UD_ENOMEM, "%s: out of memory", name);
        goto out_close;
    }
    crypto_hash_sha256_state hs;
    crypto_hash_sha256_init(&hs);
    uint64_t n = 0;
    for (;;) {
        ssize_t r = read(fd, buf, CKPT_HASH_CHUNK);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            rc = ud_err_set(e, UD_EIO, "%s: read failed: %s", name, strerror(errno));
            goto out_close;
        }
        if (r == 0)
            break;
        n += (uint64_t)r;
        if (n > max) {
            rc = ud_err_set(e, UD_ELIMIT, "%s: over the limit of %llu bytes", name,
                            (unsigned long long)max);
            goto out_close;
        }
        crypto_hash_sha256_update(&hs, buf, (unsigned long long)r);
    }
    crypto_hash_sha256_final(&hs, sha);
    *size = n;
    rc = 0;
out_close:
    free(buf);
    close(fd);
    return rc;
}

/* Reads dir/name (at most max bytes) into a fresh buffer. Messages start with name. */
static int ckpt_load(const char *dir, const char *name, size_t max, char **buf, size_t *len,
                     struct ud_err *e)
{
    char path[CKPT_PATH_MAX];
    int rc = ckpt_join(path, dir, name, e);
    if (rc < 0)
        return rc;
    rc = ud_file_read(path, max, buf, len, e);
    if (rc == UD_ENOTFOUND)
        return ud_err_set(e, UD_ENOTFOUND, "%s: missing", name);
    if (rc == UD_ELIMIT)
        return ud_err_set(e, UD_ELIMIT, "%s: over the limit of %zu bytes", name, max);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* The state: check, encode, decode                                                           */
/* ------------------------------------------------------------------------------------------ */

/* A C string held in a fixed buffer: NUL-terminated inside it, valid UTF-8, non-empty when
 * asked. */
static int ckpt_check_cbuf(const char *s, size_t cap, bool nonempty, const char *field,
                           struct ud_err *e)
{
    const char *nul = memchr(s, '\0', cap);
    if (!nul)
        return ud_err_set(e, UD_ELIMIT, "%s: not NUL-terminated within its %zu bytes", field, cap);
    size_t n = (size_t)(nul - s);
    if (nonempty && n == 0)
        return ud_err_set(e, UD_EINVAL, "%s: empty", field);
    if (!ud__mpk_utf8_ok((const unsigned char *)s, n))
        return ud_err_set(e, UD_EINVAL, "%s: not valid UTF-8", field);
    return 0;
}

static int ckpt_check_nonneg(int64_t v, const char *field, struct ud_err *e)
{
    if (v < 0)
        return ud_err_set(e, UD_ERANGE, "%s: %lld is negative", field, (long long)v);
    return 0;
}

/* Everything the format requires of a state (docs/checkpoints.md), except the optimizer
 * state's values, which check_optim covers. Codes are the writer's; the reader maps them. */
static int ckpt_check_state(const struct ud_ckpt_state *st, bool check_optim, struct ud_err *e)
{
    int rc;
    if ((rc = ckpt_check_cbuf(st->phase, sizeof st->phase, true, "phase", e)) < 0 ||
        (rc = ckpt_check_cbuf(st->fingerprint, sizeof st->fingerprint, false, "fingerprint", e)) <
            0 ||
        (rc = ckpt_check_nonneg(st->iteration, "iteration", e)) < 0 ||
        (rc = ckpt_check_nonneg(st->epoch, "epoch", e)) < 0 ||
        (rc = ckpt_check_nonneg(st->minibatch, "minibatch", e)) < 0 ||
        (rc = ckpt_check_nonneg(st->steps_per_epoch, "steps_per_epoch", e)) < 0 ||
        (rc = ckpt_check_nonneg(st->total_steps, "total_steps", e)) < 0 ||
        (rc = ckpt_check_nonneg(st->optim_steps, "optim_steps", e)) < 0)
        return rc;
    for (int i = 0; i < 3; i++)
        if (!isfinite(st->epoch_sums[i]) || st->epoch_sums[i] < 0)
            return ud_err_set(e, isfinite(st->epoch_sums[i]) ? UD_ERANGE : UD_ENONFINITE,
                              "epoch_sums[%d]: %g (must be finite and >= 0)", i, st->epoch_sums[i]);
    if (st->world < 1 || st->world > UD_CKPT_MAX_RANKS)
        return ud_err_set(e, UD_ERANGE, "world: %d ranks, allowed 1 to %d", (int)st->world,
                          UD_CKPT_MAX_RANKS);
    if (st->threads < 0 || st->threads > CKPT_MAX_THREADS)
        return ud_err_set(e, UD_ERANGE, "threads: %d, allowed 0 to %d", (int)st->threads,
                          CKPT_MAX_THREADS);
    /* Also refuses an optimizer or a schedule that has no name. */
    if ((rc = ud_update_params_check_runnable(&st->params, e)) < 0)
        return ud_err_prefix(e, "params");
    if (!isfinite(st->params.gamma))
        return ud_err_set(e, UD_ENONFINITE, "params.gamma: %g is not finite", st->params.gamma);
    if (st->params.step_epochs < 0)
        return ud_err_set(e, UD_ERANGE, "params.step_epochs: %lld is negative",
                          (long long)st->params.step_epochs);
    if (st->optim_floats > UD_CKPT_MAX_OPTIM_FLOATS)
        return ud_err_set(e, UD_ELIMIT, "optim_floats: %zu, the limit is %zu", st->optim_floats,
                          UD_CKPT_MAX_OPTIM_FLOATS);
    if (check_optim) {
        if (st->optim_floats && !st->optim_state)
            return ud_err_set(e, UD_EINVAL, "optim_state: NULL for %zu floats", st->optim_floats);
        for (size_t i = 0; i < st->optim_floats; i++)
            if (!isfinite(st->optim_state[i]))
                return ud_err_set(e, UD_ENONFINITE, "optim_state[%zu] is %g: not finite", i,
                                  (double)st->optim_state[i]);
    }
    return 0;
}

/* The body of state.ckpt, keys in the order of docs/checkpoints.md. */
static void ckpt_pack_state(msgpack_packer *pk, const void *ctx)
{
    const struct ud_ckpt_state *st = ctx;
    const struct ud_update_params *p = &st->params;
    msgpack_pack_map(pk, 16);
    ud__mpk_pack_key_str(pk, "phase", st->phase);
    ud__mpk_pack_key_int(pk, "iteration", st->iteration);
    ud__mpk_pack_key_int(pk, "date", st->date);
    ud__mpk_pack_str(pk, "metrics");
    msgpack_pack_map(pk, 5);
    ud__mpk_pack_key_double(pk, "loss", st->metrics.loss);
    ud__mpk_pack_key_double(pk, "accuracy", st->metrics.accuracy);
    ud__mpk_pack_key_double(pk, "val_loss", st->metrics.val_loss);
    ud__mpk_pack_key_double(pk, "val_accuracy", st->metrics.val_accuracy);
    ud__mpk_pack_key_double(pk, "learning_rate", st->metrics.learning_rate);
    ud__mpk_pack_key_int(pk, "epoch", st->epoch);
    ud__mpk_pack_key_int(pk, "minibatch", st->minibatch);
    ud__mpk_pack_key_int(pk, "steps_per_epoch", st->steps_per_epoch);
    ud__mpk_pack_key_int(pk, "total_steps", st->total_steps);
    ud__mpk_pack_str(pk, "epoch_sums");
    msgpack_pack_array(pk, 3);
    for (int i = 0; i < 3; i++)
        msgpack_pack_double(pk, st->epoch_sums[i]);
    ud__mpk_pack_key_int(pk, "world", st->world);
    ud__mpk_pack_key_int(pk, "threads", st->threads);

    ud__mpk_pack_str(pk, "params");
    msgpack_pack_map(pk, 15);
    ud__mpk_pack_key_str(pk, "optimizer", ud_optimizer_name(p->optimizer));
    ud__mpk_pack_key_double(pk, "learning_rate", p->learning_rate);
    ud__mpk_pack_key_double(pk, "momentum", p->momentum);
    ud__mpk_pack_key_bool(pk, "nesterov", p->nesterov);
    ud__mpk_pack_key_double(pk, "weight_decay", p->weight_decay);
    ud__mpk_pack_key_double(pk, "beta1", p->beta1);
    ud__mpk_pack_key_double(pk, "beta2", p->beta2);
    ud__mpk_pack_key_double(pk, "eps", p->eps);
    ud__mpk_pack_key_int(pk, "mini_batch_size", p->mini_batch_size);
    ud__mpk_pack_key_int(pk, "epochs", p->epochs);
    ud__mpk_pack_key_bool(pk, "shuffle", p->shuffle);
    ud__mpk_pack_key_uint(pk, "seed", p->seed);
    ud__mpk_pack_key_str(pk, "schedule", ud_lr_schedule_name(p->schedule));
    ud__mpk_pack_key_int(pk, "step_epochs", p->step_epochs);
    ud__mpk_pack_key_double(pk, "gamma", p->gamma);

    ud__mpk_pack_key_str(pk, "fingerprint", st->fingerprint);
    ud__mpk_pack_key_uint(pk, "optim_floats", st->optim_floats);
    ud__mpk_pack_key_f32_bin(pk, "optim_state", st->optim_state, st->optim_floats);
    ud__mpk_pack_key_int(pk, "optim_steps", st->optim_steps);
}

static void ckpt_metrics_nan(struct ud_ckpt_metrics *m)
{
    m->loss = m->accuracy = m->val_loss = m->val_accuracy = m->learning_rate = NAN;
}

static int ckpt_parse_params(const msgpack_object *o, struct ud_update_params *p, struct ud_err *e)
{
    char opt[32], sched[32];
    const struct ud__mpk_field f[] = {
        UD__MPK_STRBUF("optimizer", opt, sizeof opt),
        UD__MPK_DOUBLE("learning_rate", &p->learning_rate),
        UD__MPK_DOUBLE("momentum", &p->momentum),
        UD__MPK_BOOL("nesterov", &p->nesterov),
        UD__MPK_DOUBLE("weight_decay", &p->weight_decay),
        UD__MPK_DOUBLE("beta1", &p->beta1),
        UD__MPK_DOUBLE("beta2", &p->beta2),
        UD__MPK_DOUBLE("eps", &p->eps),
        UD__MPK_INT("mini_batch_size", &p->mini_batch_size, 0, INT64_MAX),
        UD__MPK_INT("epochs", &p->epochs, 0, INT64_MAX),
        UD__MPK_BOOL("shuffle", &p->shuffle),
        UD__MPK_U64("seed", &p->seed),
        UD__MPK_STRBUF("schedule", sched, sizeof sched),
        UD__MPK_INT("step_epochs", &p->step_epochs, 0, INT64_MAX),
        UD__MPK_DOUBLE("gamma", &p->gamma),
    };
    int rc = ud__mpk_read_map(o, "params", "params", f, sizeof f / sizeof f[0], e);
    if (rc < 0)
        return rc;
    /* Enums by name, through ud_optim's own names. */
    if (ud_optimizer_parse(opt, &p->optimizer) < 0)
        return ud_err_set(e, UD_EFORMAT, "params.optimizer: unknown optimizer \"%s\" (sgd, adam)",
                          opt);
    if (ud_lr_schedule_parse(sched, &p->schedule) < 0)
        return ud_err_set(e, UD_EFORMAT,
                          "params.schedule: unknown schedule \"%s\" (constant, step, cosine)",
                          sched);
    return 0;
}

/* Fills st from the body of state.ckpt. The optimizer state is allocated (load_optim) only
 * after its declared size has been bounded and matched against the bytes present. */
static int ckpt_parse_state(const msgpack_object *body, struct ud_ckpt_state *st, bool load_optim,
                            struct ud_err *e)
{
    int64_t w = 0, t = 0, nf = 0;
    const msgpack_object *metrics = NULL, *sums = NULL, *params = NULL, *os = NULL;
    const struct ud__mpk_field f[] = {
        UD__MPK_STRBUF("phase", st->phase, sizeof st->phase),
        UD__MPK_INT("iteration", &st->iteration, 0, INT64_MAX),
        UD__MPK_INT("date", &st->date, INT64_MIN, INT64_MAX),
        UD__MPK_OBJ("metrics", &metrics),
        UD__MPK_INT("epoch", &st->epoch, 0, INT64_MAX),
        UD__MPK_INT("minibatch", &st->minibatch, 0, INT64_MAX),
        UD__MPK_INT("steps_per_epoch", &st->steps_per_epoch, 0, INT64_MAX),
        UD__MPK_INT("total_steps", &st->total_steps, 0, INT64_MAX),
        UD__MPK_OBJ("epoch_sums", &sums),
        UD__MPK_INT("world", &w, 1, UD_CKPT_MAX_RANKS),
        UD__MPK_INT("threads", &t, 0, CKPT_MAX_THREADS),
        UD__MPK_OBJ("params", &params),
        UD__MPK_STRBUF("fingerprint", st->fingerprint, sizeof st->fingerprint),
        UD__MPK_INT("optim_floats", &nf, 0, (int64_t)UD_CKPT_MAX_OPTIM_FLOATS),
        UD__MPK_OBJ("optim_state", &os),
        UD__MPK_INT("optim_steps", &st->optim_steps, 0, INT64_MAX),
    };
    int rc = ud__mpk_read_map(body, "body", NULL, f, sizeof f / sizeof f[0], e);
    if (rc < 0)
        return rc;
    st->world = (int32_t)w;
    st->threads = (int32_t)t;

    const struct ud__mpk_field mf[] = {
        UD__MPK_DOUBLE("loss", &st->metrics.loss),
        UD__MPK_DOUBLE("accuracy", &st->metrics.accuracy),
        UD__MPK_DOUBLE("val_loss", &st->metrics.val_loss),
        UD__MPK_DOUBLE("val_accuracy", &st->metrics.val_accuracy),
        UD__MPK_DOUBLE("learning_rate", &st->metrics.learning_rate),
    };
    if ((rc = ud__mpk_read_map(metrics, "metrics", "metrics", mf, sizeof mf / sizeof mf[0], e)) < 0)
        return rc;
    char field[48];
    if (sums->type != MSGPACK_OBJECT_ARRAY || sums->via.array.size != 3)
        return ud_err_set(e, UD_EFORMAT, "epoch_sums: expected an array of 3 numbers");
    for (int i = 0; i < 3; i++) {
        snprintf(field, sizeof field, "epoch_sums[%d]", i);
        if ((rc = ud__mpk_get_double(&sums->via.array.ptr[i], field, &st->epoch_sums[i], e)) < 0)
            return rc;
    }
    if ((rc = ckpt_parse_params(params, &st->params, e)) < 0)
        return rc;

    if (os->type != MSGPACK_OBJECT_BIN)
        return ud__mpk_type_err(os, "optim_state", "bin (f32 little-endian)", e);
    if ((uint64_t)os->via.bin.size != (uint64_t)nf * 4)
        return ud_err_set(e, UD_ESHAPE, "optim_state: %u bytes, optim_floats says %lld floats",
                          os->via.bin.size, (long long)nf);
    if (load_optim && nf > 0) {
        st->optim_state = malloc((size_t)nf * sizeof(float));
        if (!st->optim_state)
            return ud_err_set(e, UD_ENOMEM, "optim_state: cannot allocate %lld floats",
                              (long long)nf);
        st->optim_floats = (size_t)nf;
        ud__mpk_f32_from_le(st->optim_state, (const unsigned char *)os->via.bin.ptr, (size_t)nf);
    }
    /* The rules the writer enforces hold for what was read. */
    if ((rc = ckpt_check_state(st, load_optim, e)) < 0 && rc != UD_ENONFINITE && rc != UD_ENOMEM)
        e->code = UD_EFORMAT;
    return rc;
}

/* Decodes a state.ckpt buffer into st (whose path/complete/problem are kept). On failure the
 * state fields are reset (metrics NaN) and nothing is left allocated. */
static int ckpt_state_decode(const void *buf, size_t len, struct ud_ckpt_state *st, bool load_optim,
                             struct ud_err *e)
{
    const unsigned char *body = NULL;
    size_t body_len = 0;
    int rc = ud__env_open(&ckpt_state_format, buf, len, &body, &body_len, e);
    if (rc < 0)
        return rc;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    if ((rc = ud__env_unpack(body, body_len, &up, e)) == 0)
        rc = ckpt_parse_state(&up.data, st, load_optim, e);
    msgpack_unpacked_destroy(&up);
    if (rc < 0) {
        ud_ckpt_state_deinit(st);
        char path[sizeof st->path];
        int complete = st->complete;
        memcpy(path, st->path, sizeof path);
        memset(st, 0, sizeof *st);
        memcpy(st->path, path, sizeof path);
        st->complete = complete;
        ckpt_metrics_nan(&st->metrics);
    }
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Rank files                                                                                 */
/* ------------------------------------------------------------------------------------------ */

struct ckpt_rank {
    int rank, world;
    struct ud_rng rng;
};

static void ckpt_pack_rank(msgpack_packer *pk, const void *ctx)
{
    const struct ckpt_rank *r = ctx;
    msgpack_pack_map(pk, 3);
    ud__mpk_pack_key_int(pk, "rank", r->rank);
    ud__mpk_pack_key_int(pk, "world", r->world);
    ud__mpk_pack_str(pk, "dropout");
    msgpack_pack_array(pk, 4);
    for (int i = 0; i < 4; i++)
        msgpack_pack_uint64(pk, r->rng.s[i]);
}

static int ckpt_rank_decode(const void *buf, size_t len, struct ckpt_rank *r, struct ud_err *e)
{
    const unsigned char *body = NULL;
    size_t body_len = 0;
    int rc = ud__env_open(&ckpt_rank_format, buf, len, &body, &body_len, e);
    if (rc < 0)
        return rc;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);
    if ((rc = ud__env_unpack(body, body_len, &up, e)) < 0)
        goto out;
    static const char *const keys[] = {"rank", "world", "dropout"};
    const msgpack_object *v[3];
    int64_t rank = 0, world = 0;
    if ((rc = ud__mpk_fields(&up.data, "body", keys, 3, v, e)) < 0 ||
        (rc = ud__mpk_get_int(v[1], "world", 1, UD_CKPT_MAX_RANKS, &world, e)) < 0 ||
        (rc = ud__mpk_get_int(v[0], "rank", 0, world - 1, &rank, e)) < 0)
        goto out;
    if (v[2]->type != MSGPACK_OBJECT_ARRAY || v[2]->via.array.size != 4) {
        rc = ud_err_set(e, UD_EFORMAT, "dropout: expected an array of 4 unsigned integers");
        goto out;
    }
    uint64_t any = 0;
    for (int i = 0; i < 4 && rc == 0; i++) {
        char field[24];
        snprintf(field, sizeof field, "dropout[%d]", i);
        rc = ud__mpk_get_u64(&v[2]->via.array.ptr[i], field, &r->rng.s[i], e);
        any |= r->rng.s[i];
    }
    if (rc == 0 && !any)
        rc = ud_err_set(e, UD_EFORMAT, "dropout: all zero, not a xoshiro256** state");
    r->rank = (int)rank;
    r->world = (int)world;
out:
    msgpack_unpacked_destroy(&up);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* DONE                                                                                       */
/* ------------------------------------------------------------------------------------------ */

struct ckpt_entry {
    uint64_t size;
    unsigned char sha[UD__ENV_SUM_LEN];
    bool seen;
};

/* What DONE lists: file 0 is model.udm, 1 state.ckpt, 2 + r rank r's file. */
struct ckpt_done {
    int world;
    struct ckpt_entry *f; /* world + 2 entries */
};

static void ckpt_done_deinit(struct ckpt_done *d)
{
    free(d->f);
    d->f = NULL;
}

/* The name of entry i and the largest size such a file may have. */
static void ckpt_entry_name(size_t i, char name[CKPT_NAME_MAX], uint64_t *max)
{
    if (i == 0) {
        snprintf(name, CKPT_NAME_MAX, CKPT_MODEL_FILE);
        *max = UD_UDM_MAX_BYTES;
    } else if (i == 1) {
        snprintf(name, CKPT_NAME_MAX, CKPT_STATE_FILE);
        *max = CKPT_STATE_MAX_BYTES;
    } else {
        ckpt_rank_name((int)(i - 2), name);
        *max = CKPT_RANK_MAX_BYTES;
    }
}

/* The entry index a file name stands for in a world of `world` ranks, or -1. */
static long ckpt_entry_index(const char *name, int world)
{
    if (strcmp(name, CKPT_MODEL_FILE) == 0)
        return 0;
    if (strcmp(name, CKPT_STATE_FILE) == 0)
        return 1;
    if (strlen(name) != 15 || strncmp(name, "rank-", 5) != 0 || strcmp(name + 10, ".ckpt") != 0)
        return -1;
    long r = 0;
    for (int i = 5; i < 10; i++) {
        if (name[i] < '0' || name[i] > '9')
            return -1;
        r = r * 10 + (name[i] - '0');
    }
    return r < world ? r + 2 : -1;
}

static void ckpt_hex(const unsigned char *sha, size_t n, char *out, size_t cap)
{
    sodium_bin2hex(out, cap, sha, n);
}

/* Splits a line at single spaces into at most max tokens. Returns the count, or -1 for an
 * empty token (a leading, trailing or doubled space) or more than max tokens. */
static int ckpt_split(char *line, char **tok, int max)
{
    int n = 0;
    for (char *p = line;;) {
        char *sp = strchr(p, ' ');
        if (n == max || (sp ? sp == p : *p == '\0'))
            return -1;
        tok[n++] = p;
        if (!sp)
            return n;
        *sp = '\0';
        p = sp + 1;
    }
}

/* A decimal number: 1 to 20 digits, no sign, no overflow. */
static bool ckpt_parse_u64(const char *s, uint64_t *v)
{
    size_t n = strlen(s);
    if (n == 0 || n > 20)
        return false;
    uint64_t x = 0;
    for (size_t i = 0; i < n; i++) {
        if (s[i] < '0' || s[i] > '9')
            return false;
        unsigned d = (unsigned)(s[i] - '0');
        if (x > (UINT64_MAX - d) / 10)
            return false;
        x = x * 10 + d;
    }
    *v = x;
    return true;
}

/* One "file NAME SIZE SHA256" line (already split) into its entry of d. */
static int ckpt_done_file(char **tok, int lineno, struct ckpt_done *d, struct ud_err *e)
{
    long i = ckpt_entry_index(tok[1], d->world);
    if (i < 0)
        return ud_err_set(e, UD_EFORMAT,
                          "DONE: line %d: \"%.40s\" is not a file of a checkpoint of %d ranks",
                          lineno, tok[1], d->world);
    char name[CKPT_NAME_MAX];
    uint64_t max = 0, size = 0;
    ckpt_entry_name((size_t)i, name, &max);
    struct ckpt_entry *f = &d->f[i];
    size_t hexlen = 0;
    if (f->seen)
        return ud_err_set(e, UD_EFORMAT, "DONE: line %d: %s is listed twice", lineno, name);
    if (!ckpt_parse_u64(tok[2], &size))
        return ud_err_set(e, UD_EFORMAT, "DONE: line %d: %s: size \"%.24s\" is not a number",
                          lineno, name, tok[2]);
    if (size > max)
        return ud_err_set(e, UD_EFORMAT, "DONE: line %d: %s: %llu bytes, the limit is %llu", lineno,
                          name, (unsigned long long)size, (unsigned long long)max);
    if (strlen(tok[3]) != 2 * UD__ENV_SUM_LEN ||
        sodium_hex2bin(f->sha, sizeof f->sha, tok[3], strlen(tok[3]), NULL, &hexlen, NULL) != 0 ||
        hexlen != sizeof f->sha)
        return ud_err_set(e, UD_EFORMAT, "DONE: line %d: %s: the SHA-256 is not 64 hex digits",
                          lineno, name);
    f->size = size;
    f->seen = true;
    return 0;
}

/* Parses DONE's text (len bytes, NUL-terminated; modified in place). Messages start with
 * "DONE". The format (docs/checkpoints.md):
 *     updraft-checkpoint-done 1
 *     world W
 *     file NAME SIZE SHA256       (one per file: model.udm, state.ckpt, rank-00000.ckpt, ...)
 *     end
 * every line ending in a newline, nothing after "end". */
static int ckpt_done_parse(char *text, size_t len, struct ckpt_done *d, struct ud_err *e)
{
    memset(d, 0, sizeof *d);
    if (strlen(text) != len)
        return ud_err_set(e, UD_EFORMAT, "DONE: contains a NUL byte");
    int lineno = 0, rc = 0;
    size_t nfiles = 0;
    bool ended = false;
    char *next = text;
    while (rc == 0 && *next) {
        char *line = next, *nl = strchr(line, '\n'), *tok[5];
        lineno++;
        if (!nl) {
            rc = ud_err_set(e, UD_EFORMAT, "DONE: line %d does not end (truncated?)", lineno);
            break;
        }
        *nl = '\0';
        next = nl + 1;
        char shown[64];
        snprintf(shown, sizeof shown, "%s", line);
        int nt = ckpt_split(line, tok, 5);
        uint64_t v = 0;
        if (ended) {
            rc = ud_err_set(e, UD_EFORMAT, "DONE: line %d: text after \"end\"", lineno);
        } else if (lineno == 1) {
            if (nt != 2 || strcmp(tok[0], CKPT_DONE_MAGIC) != 0 || !ckpt_parse_u64(tok[1], &v))
                rc = ud_err_set(e, UD_EFORMAT,
                                "DONE: not an updraft checkpoint marker (the first line is "
                                "\"%s\", expected \"" CKPT_DONE_MAGIC " %d\")",
                                shown, CKPT_DONE_VERSION);
            else if (v > CKPT_DONE_VERSION)
                rc = ud_err_set(e, UD_EVERSION,
                                "DONE: written by a newer updraft (format version %llu, this "
                                "build reads %d): upgrade updraft",
                                (unsigned long long)v, CKPT_DONE_VERSION);
            else if (v < 1)
                rc = ud_err_set(e, UD_EVERSION, "DONE: format version 0 is not a valid version");
        } else if (lineno == 2) {
            if (nt != 2 || strcmp(tok[0], "world") != 0 || !ckpt_parse_u64(tok[1], &v) || v < 1 ||
                v > UD_CKPT_MAX_RANKS)
                rc = ud_err_set(e, UD_EFORMAT,
                                "DONE: line 2: expected \"world N\" with N in [1, %d], found "
                                "\"%s\"",
                                UD_CKPT_MAX_RANKS, shown);
            else if (!(d->f = calloc((size_t)v + 2, sizeof *d->f)))
                rc = ud_err_set(e, UD_ENOMEM, "DONE: out of memory for %llu ranks",
                                (unsigned long long)v);
            else
                d->world = (int)v;
        } else if (nt == 1 && strcmp(tok[0], "end") == 0) {
            ended = true;
        } else if (nt == 4 && strcmp(tok[0], "file") == 0) {
            if ((rc = ckpt_done_file(tok, lineno, d, e)) == 0)
                nfiles++;
        } else {
            rc = ud_err_set(e, UD_EFORMAT,
                            "DONE: line %d: expected \"file NAME SIZE SHA256\" or \"end\", "
                            "found \"%s\"",
                            lineno, shown);
        }
    }
    if (rc == 0 && lineno < 2)
        rc = ud_err_set(e, UD_EFORMAT, "DONE: %s", lineno ? "no world line" : "empty");
    if (rc == 0 && !ended)
        rc = ud_err_set(e, UD_EFORMAT, "DONE: no \"end\" line (truncated?)");
    for (size_t i = 0; rc == 0 && i < (size_t)d->world + 2; i++) {
        if (!d->f[i].seen) {
            char name[CKPT_NAME_MAX];
            uint64_t max;
            ckpt_entry_name(i, name, &max);
            rc = ud_err_set(e, UD_EFORMAT, "DONE: does not list %s (%zu of %d files listed)", name,
                            nfiles, d->world + 2);
        }
    }
    if (rc < 0)
        ckpt_done_deinit(d);
    return rc;
}

/* Reads and parses dir/DONE. No DONE is UD_ESTATE with CKPT_NO_DONE. */
static int ckpt_done_read(const char *dir, struct ckpt_done *d, struct ud_err *e)
{
    memset(d, 0, sizeof *d);
    char *text = NULL;
    size_t len = 0;
    int rc = ckpt_load(dir, CKPT_DONE_FILE, CKPT_DONE_MAX_BYTES, &text, &len, e);
    if (rc == UD_ENOTFOUND)
        return ud_err_set(e, UD_ESTATE, CKPT_NO_DONE);
    if (rc < 0)
        return rc;
    rc = ckpt_done_parse(text, len, d, e);
    free(text);
    return rc;
}

/* A file's measured size and hash against its DONE entry. */
static int ckpt_entry_match(const char *name, const struct ckpt_entry *f, uint64_t size,
                            const unsigned char *sha, struct ud_err *e)
{
    if (size != f->size)
        return ud_err_set(e, size < f->size ? UD_ETRUNCATED : UD_ECHECKSUM,
                          "%s: %llu bytes, DONE lists %llu (%s)", name, (unsigned long long)size,
                          (unsigned long long)f->size,
                          size < f->size ? "truncated" : "changed after it was written");
    if (sodium_memcmp(sha, f->sha, UD__ENV_SUM_LEN) != 0) {
        char want[17], got[17];
        ckpt_hex(f->sha, 8, want, sizeof want);
        ckpt_hex(sha, 8, got, sizeof got);
        return ud_err_set(e, UD_ECHECKSUM,
                          "%s: checksum mismatch (DONE lists sha256 %s..., the file hashes to "
                          "%s...): the file is corrupt",
                          name, want, got);
    }
    return 0;
}

static int ckpt_buffer_match(const char *name, const struct ckpt_entry *f, const void *buf,
                             size_t len, struct ud_err *e)
{
    unsigned char sha[UD__ENV_SUM_LEN];
    crypto_hash_sha256(sha, buf, len);
    return ckpt_entry_match(name, f, len, sha, e);
}

/* ------------------------------------------------------------------------------------------ */
/* Inspecting a checkpoint                                                                    */
/* ------------------------------------------------------------------------------------------ */

/* Reads state.ckpt (when it can) and checks the whole checkpoint: DONE, every listed file's
 * size and SHA-256, the state's and the rank files' world, rank and iteration. Fills st (path,
 * the state's fields, complete, problem); with load_optim the optimizer state too, and with
 * model (not NULL) a new model from model.udm. Returns 0 when complete, else the first problem
 * (also in st->problem), whose message does not start with dir. */
static int ckpt_inspect(const char *dir, struct ud_ckpt_state *st, bool load_optim,
                        ud_model_t **model, struct ud_err *e)
{
    memset(st, 0, sizeof *st);
    ckpt_metrics_nan(&st->metrics);
    if (model)
        *model = NULL;
    if (!dir || !*dir)
        return ud_err_set(e, UD_EINVAL, "no checkpoint directory given");
    if (strlen(dir) >= sizeof st->path - CKPT_NAME_MAX)
        return ud_err_set(e, UD_ELIMIT, "%.200s...: the path is over %zu bytes", dir,
                          sizeof st->path - CKPT_NAME_MAX);
    snprintf(st->path, sizeof st->path, "%s", dir);
    int64_t name_iter = ckpt_path_iteration(dir);
    st->iteration = name_iter > 0 ? name_iter : 0;

    /* The state, for what it says, even when the checkpoint turns out incomplete. */
    struct ud_err se = {0};
    char *sbuf = NULL;
    size_t slen = 0;
    int src = ckpt_load(dir, CKPT_STATE_FILE, CKPT_STATE_MAX_BYTES, &sbuf, &slen, &se);
    if (src == 0) {
        src = ckpt_state_decode(sbuf, slen, st, load_optim, &se);
        if (src < 0)
            ud_err_prefix(&se, CKPT_STATE_FILE);
        if (src < 0 && name_iter > 0)
            st->iteration = name_iter;
    }

    struct ckpt_done d;
    int rc = ckpt_done_read(dir, &d, e);
    if (rc < 0)
        goto out;
    /* state.ckpt: what DONE lists, then what it says. */
    if (!sbuf)
        rc = ud_err_set(e, se.code, "%s", se.msg);
    else if ((rc = ckpt_buffer_match(CKPT_STATE_FILE, &d.f[1], sbuf, slen, e)) == 0 && src < 0)
        rc = ud_err_set(e, se.code, "%s", se.msg);
    if (rc == 0 && st->world != d.world)
        rc = ud_err_set(e, UD_EFORMAT, CKPT_STATE_FILE ": world %d, DONE lists %d ranks",
                        (int)st->world, d.world);
    if (rc == 0 && name_iter >= 0 && st->iteration != name_iter)
        rc = ud_err_set(e, UD_EFORMAT,
                        CKPT_STATE_FILE ": iteration %lld, the directory name says %lld",
                        (long long)st->iteration, (long long)name_iter);
    free(sbuf);
    sbuf = NULL;

    /* model.udm: decoded when asked for, else hashed as a stream. */
    if (rc == 0 && model) {
        char *mbuf = NULL;
        size_t mlen = 0;
        rc = ckpt_load(dir, CKPT_MODEL_FILE, UD_UDM_MAX_BYTES, &mbuf, &mlen, e);
        if (rc == 0 && (rc = ckpt_buffer_match(CKPT_MODEL_FILE, &d.f[0], mbuf, mlen, e)) == 0) {
            *model = ud_udm_decode(mbuf, mlen, e);
            if (!*model)
                rc = ud_err_prefix(e, CKPT_MODEL_FILE);
        }
        free(mbuf);
    } else if (rc == 0) {
        uint64_t size = 0;
        unsigned char sha[UD__ENV_SUM_LEN];
        rc = ckpt_hash_file(dir, CKPT_MODEL_FILE, UD_UDM_MAX_BYTES, &size, sha, e);
        if (rc == 0)
            rc = ckpt_entry_match(CKPT_MODEL_FILE, &d.f[0], size, sha, e);
    }

    /* Every rank's file: as listed, and saying its own rank and DONE's world. */
    for (int r = 0; rc == 0 && r < d.world; r++) {
        char name[CKPT_NAME_MAX], *rbuf = NULL;
        size_t rlen = 0;
        struct ckpt_rank cr;
        ckpt_rank_name(r, name);
        rc = ckpt_load(dir, name, CKPT_RANK_MAX_BYTES, &rbuf, &rlen, e);
        if (rc == 0)
            rc = ckpt_buffer_match(name, &d.f[2 + r], rbuf, rlen, e);
        if (rc == 0 && (rc = ckpt_rank_decode(rbuf, rlen, &cr, e)) < 0)
            ud_err_prefix(e, "%s", name);
        if (rc == 0 && (cr.rank != r || cr.world != d.world))
            rc = ud_err_set(e, UD_EFORMAT,
                            "%s: written by rank %d of a world of %d, DONE lists %d ranks", name,
                            cr.rank, cr.world, d.world);
        free(rbuf);
    }
    ckpt_done_deinit(&d);

out:
    free(sbuf);
    if (rc < 0) {
        snprintf(st->problem, sizeof st->problem, "%s", e->msg);
        if (model)
            ud_model_destroy(model);
        return rc;
    }
    st->complete = 1;
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Writing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

int ud_ckpt_dir(const char *session, int64_t iteration, char *out, size_t cap, struct ud_err *e)
{
    if (!session || !*session || !out || cap == 0)
        return ud_err_set(e, UD_EINVAL, "ud_ckpt_dir: no session or no output buffer");
    if (iteration < 0)
        return ud_err_set(e, UD_EINVAL, "ud_ckpt_dir: negative iteration %lld",
                          (long long)iteration);
    /* Room is left for the file names inside it (and the state's path field). */
    size_t limit = cap < CKPT_PATH_MAX - CKPT_NAME_MAX ? cap : CKPT_PATH_MAX - CKPT_NAME_MAX;
    int n = snprintf(out, cap, "%s/checkpoints/ckpt-%012lld", session, (long long)iteration);
    if (n < 0 || (size_t)n >= limit) {
        out[0] = '\0';
        return ud_err_set(e, UD_ELIMIT, "%.200s: the checkpoint path does not fit in %zu bytes",
                          session, limit);
    }
    return 0;
}

int ud_ckpt_begin(const char *dir, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    if (!dir || !*dir)
        return ud_err_set(e, UD_EINVAL, "ud_ckpt_begin: no directory");
    if (ud__env_sodium(e) < 0)
        return e->code;
    bool created = false;
    int rc = ud_file_mkdirs(dir, &created, e);
    if (rc < 0)
        return rc;
    if (!created) {
        struct ud_ckpt_state st;
        struct ud_err ie = {0};
        if (ckpt_inspect(dir, &st, false, NULL, &ie) == 0)
            return ud_err_set(e, UD_ECONFLICT,
                              "%s: already holds a complete checkpoint; refusing to overwrite it",
                              dir);
        /* A leftover of an interrupted write (or a damaged one): start it afresh. */
        if ((rc = ud_file_remove_tree(dir, true, CKPT_DONE_FILE, e)) < 0)
            return rc;
        return ud_file_sync_dir(dir, e);
    }
    return 0;
}

/* Seals what pack(ctx) packs in an envelope of format f and writes it atomically to path.
 * Errors start with path. */
static int ckpt_write_sealed(const char *path, const struct ud__env_format *f, ud__mpk_pack_fn pack,
                             const void *ctx, struct ud_err *e)
{
    char *buf = NULL;
    size_t len = 0;
    int rc = ud__env_seal(f, f->version, pack, ctx, NULL, 0, &buf, &len, e);
    if (rc < 0)
        return ud_err_prefix(e, "%s", path);
    rc = ud_file_write_atomic(path, buf, len, e);
    free(buf);
    return rc;
}

int ud_ckpt_write_model(const char *dir, const ud_model_t *m, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    char path[CKPT_PATH_MAX];
    int rc = ckpt_join(path, dir, CKPT_MODEL_FILE, e);
    if (rc < 0)
        return rc;
    if (!m)
        return ud_err_set(e, UD_EINVAL, "%s: no model", path);
    return ud_udm_write(m, path, e);
}

int ud_ckpt_write_state(const char *dir, const struct ud_ckpt_state *st, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    char path[CKPT_PATH_MAX];
    int rc = ckpt_join(path, dir, CKPT_STATE_FILE, e);
    if (rc < 0)
        return rc;
    if (!st)
        return ud_err_set(e, UD_EINVAL, "%s: no state", path);
    if ((rc = ckpt_check_state(st, true, e)) < 0)
        return ud_err_prefix(e, "%s", path);
    return ckpt_write_sealed(path, &ckpt_state_format, ckpt_pack_state, st, e);
}

int ud_ckpt_write_rank(const char *dir, int rank, int world, const struct ud_rng *dropout,
                       struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    char name[CKPT_NAME_MAX], path[CKPT_PATH_MAX];
    if (world < 1 || world > UD_CKPT_MAX_RANKS || rank < 0 || rank >= world)
        return ud_err_set(e, UD_EINVAL,
                          "rank file: rank %d of world %d (need 0 <= rank < world "
                          "<= %d)",
                          rank, world, UD_CKPT_MAX_RANKS);
    ckpt_rank_name(rank, name);
    int rc = ckpt_join(path, dir, name, e);
    if (rc < 0)
        return rc;
    if (!dropout || !(dropout->s[0] | dropout->s[1] | dropout->s[2] | dropout->s[3]))
        return ud_err_set(e, UD_EINVAL, "%s: no dropout stream (or the all-zero state)", path);
    struct ckpt_rank r = {.rank = rank, .world = world, .rng = *dropout};
    return ckpt_write_sealed(path, &ckpt_rank_format, ckpt_pack_rank, &r, e);
}

/* Appends "file NAME SIZE SHA256\n" to DONE's text. */
static void ckpt_done_line(char *text, size_t *at, size_t cap, const char *name, uint64_t size,
                           const unsigned char *sha)
{
    char hex[2 * UD__ENV_SUM_LEN + 1];
    ckpt_hex(sha, UD__ENV_SUM_LEN, hex, sizeof hex);
    int n =
        snprintf(text + *at, cap - *at, "file %s %llu %s\n", name, (unsigned long long)size, hex);
    if (n > 0)
        *at += (size_t)n;
}

int ud_ckpt_commit(const char *dir, int world, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    char path[CKPT_PATH_MAX];
    int rc = ckpt_join(path, dir, CKPT_DONE_FILE, e);
    if (rc < 0)
        return rc;
    if (world < 1 || world > UD_CKPT_MAX_RANKS)
        return ud_err_set(e, UD_EINVAL, "%s: world %d (need 1 to %d ranks)", dir, world,
                          UD_CKPT_MAX_RANKS);
    if ((rc = ud__env_sodium(e)) < 0)
        return rc;
    size_t cap = 64 + ((size_t)world + 2) * 128, at = 0;
    char *text = malloc(cap);
    if (!text)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory", path);
    at += (size_t)snprintf(text, cap, CKPT_DONE_MAGIC " %d\nworld %d\n", CKPT_DONE_VERSION, world);

    unsigned char sha[UD__ENV_SUM_LEN];
    uint64_t size = 0;
    char *buf = NULL;
    size_t len = 0;
    /* model.udm: present (ud_udm_write only writes models that read back). */
    if ((rc = ckpt_hash_file(dir, CKPT_MODEL_FILE, UD_UDM_MAX_BYTES, &size, sha, e)) < 0)
        goto out;
    ckpt_done_line(text, &at, cap, CKPT_MODEL_FILE, size, sha);

    /* state.ckpt: reads back and says this world and the directory's iteration. */
    if ((rc = ckpt_load(dir, CKPT_STATE_FILE, CKPT_STATE_MAX_BYTES, &buf, &len, e)) < 0)
        goto out;
    struct ud_ckpt_state st;
    memset(&st, 0, sizeof st);
    if ((rc = ckpt_state_decode(buf, len, &st, false, e)) < 0) {
        ud_err_prefix(e, CKPT_STATE_FILE);
        goto out;
    }
    int64_t name_iter = ckpt_path_iteration(dir);
    if (st.world != world) {
        rc = ud_err_set(e, UD_ECONFLICT, CKPT_STATE_FILE ": world %d, committing %d ranks",
                        (int)st.world, world);
        goto out;
    }
    if (name_iter >= 0 && st.iteration != name_iter) {
        rc = ud_err_set(e, UD_ECONFLICT,
                        CKPT_STATE_FILE ": iteration %lld, the directory name says %lld",
                        (long long)st.iteration, (long long)name_iter);
        goto out;
    }
    crypto_hash_sha256(sha, (const unsigned char *)buf, len);
    ckpt_done_line(text, &at, cap, CKPT_STATE_FILE, len, sha);
    free(buf);
    buf = NULL;

    /* Every rank's file: reads back and says its rank and this world. */
    for (int r = 0; r < world; r++) {
        char name[CKPT_NAME_MAX];
        struct ckpt_rank cr;
        ckpt_rank_name(r, name);
        if ((rc = ckpt_load(dir, name, CKPT_RANK_MAX_BYTES, &buf, &len, e)) < 0)
            goto out;
        if ((rc = ckpt_rank_decode(buf, len, &cr, e)) < 0) {
            ud_err_prefix(e, "%s", name);
            goto out;
        }
        if (cr.rank != r || cr.world != world) {
            rc = ud_err_set(e, UD_ECONFLICT,
                            "%s: written by rank %d of a world of %d, committing %d ranks", name,
                            cr.rank, cr.world, world);
            goto out;
        }
        crypto_hash_sha256(sha, (const unsigned char *)buf, len);
        ckpt_done_line(text, &at, cap, name, len, sha);
        free(buf);
        buf = NULL;
    }
    at += (size_t)snprintf(text + at, cap - at, "end\n");
    rc = ud_file_write_atomic(path, text, at, e);
    free(text);
    return rc;

out:
    free(buf);
    free(text);
    return ud_err_prefix(e, "%s", dir);
}

/* ------------------------------------------------------------------------------------------ */
/* Reading                                                                                    */
/* ------------------------------------------------------------------------------------------ */

int ud_ckpt_read(const char *dir, struct ud_ckpt_state *st, ud_model_t **model, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    if (!st)
        return ud_err_set(e, UD_EINVAL, "ud_ckpt_read: no state to fill");
    if (ud__env_sodium(e) < 0)
        return e->code;
    int rc = ckpt_inspect(dir, st, true, model, e);
    if (rc < 0) {
        ud_ckpt_state_deinit(st);
        return ud_err_prefix(e, "%s", dir ? dir : "(null)");
    }
    return 0;
}

int ud_ckpt_read_rank(const char *dir, int rank, int *world, struct ud_rng *dropout,
                      struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    if (!world || !dropout || rank < 0)
        return ud_err_set(e, UD_EINVAL, "ud_ckpt_read_rank: bad argument (rank %d)", rank);
    if (ud__env_sodium(e) < 0)
        return e->code;
    struct ckpt_done d;
    int rc = ckpt_done_read(dir, &d, e);
    if (rc < 0)
        return ud_err_prefix(e, "%s", dir ? dir : "(null)");
    char name[CKPT_NAME_MAX], *buf = NULL;
    size_t len = 0;
    struct ckpt_rank cr;
    if (rank >= d.world) {
        rc = ud_err_set(e, UD_ENOTFOUND,
                        "no file for rank %d: the checkpoint was written by %d "
                        "rank%s",
                        rank, d.world, d.world == 1 ? "" : "s");
        goto out;
    }
    ckpt_rank_name(rank, name);
    if ((rc = ckpt_load(dir, name, CKPT_RANK_MAX_BYTES, &buf, &len, e)) < 0 ||
        (rc = ckpt_buffer_match(name, &d.f[2 + rank], buf, len, e)) < 0)
        goto out;
    if ((rc = ckpt_rank_decode(buf, len, &cr, e)) < 0) {
        ud_err_prefix(e, "%s", name);
        goto out;
    }
    if (cr.rank != rank || cr.world != d.world) {
        rc = ud_err_set(e, UD_EFORMAT,
                        "%s: written by rank %d of a world of %d, DONE lists %d "
                        "ranks",
                        name, cr.rank, cr.world, d.world);
        goto out;
    }
    *world = cr.world;
    *dropout = cr.rng;
out:
    free(buf);
    ckpt_done_deinit(&d);
    return rc < 0 ? ud_err_prefix(e, "%s", dir) : 0;
}

void ud_ckpt_state_deinit(struct ud_ckpt_state *st)
{
    if (!st)
        return;
    free(st->optim_state);
    st->optim_state = NULL;
    st->optim_floats = 0;
}

/* ------------------------------------------------------------------------------------------ */
/* The session's checkpoints                                                                  */
/* ------------------------------------------------------------------------------------------ */

struct ckpt_name {
    int64_t iteration;
    char name[CKPT_NAME_MAX];
};

static int ckpt_name_cmp(const void *a, const void *b)
{
    const struct ckpt_name *x = a, *y = b;
    if (x->iteration != y->iteration)
        return x->iteration < y->iteration ? -1 : 1;
    return strcmp(x->name, y->name);
}

/* The checkpoint directories of session, oldest first (*names caller frees; NULL when none).
 * *root gets SESSION/checkpoints. A missing directory is no checkpoints. */
static int ckpt_scan(const char *session, char root[CKPT_PATH_MAX], struct ckpt_name **names,
                     size_t *n, struct ud_err *e)
{
    *names = NULL;
    *n = 0;
    int rc = ckpt_join(root, session, "checkpoints", e);
    if (rc < 0)
        return rc;
    if (strlen(root) >= CKPT_PATH_MAX - 2 * CKPT_NAME_MAX)
        return ud_err_set(e, UD_ELIMIT, "%.200s...: the path is too long", root);
    DIR *d = opendir(root);
    if (!d) {
        if (errno == ENOENT || errno == ENOTDIR)
            return 0;
        return ud_err_set(e, UD_EIO, "%s: cannot list: %s", root, strerror(errno));
    }
    size_t cap = 0;
    struct dirent *de;
    while ((de = readdir(d)) != NULL) {
        int64_t it = ckpt_name_iteration(de->d_name);
        if (it < 0)
            continue;
        char path[CKPT_PATH_MAX];
        struct stat sb;
        snprintf(path, sizeof path, "%s/%s", root, de->d_name);
        if (stat(path, &sb) < 0 || !S_ISDIR(sb.st_mode))
            continue; /* vanished, or not a directory */
        if (*n == cap) {
            size_t ncap = cap ? cap * 2 : 16;
            struct ckpt_name *nn = realloc(*names, ncap * sizeof *nn);
            if (!nn) {
                rc = ud_err_set(e, UD_ENOMEM, "%s: out of memory listing checkpoints", root);
                break;
            }
            *names = nn;
            cap = ncap;
        }
        (*names)[*n].iteration = it;
        snprintf((*names)[*n].name, CKPT_NAME_MAX, "%s", de->d_name);
        (*n)++;
    }
    closedir(d);
    if (rc < 0) {
        free(*names);
        *names = NULL;
        *n = 0;
        return rc;
    }
    if (*n > 1)
        qsort(*names, *n, sizeof **names, ckpt_name_cmp);
    return 0;
}

int ud_ckpt_list(const char *session, struct ud_ckpt_state **list, size_t *n, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    if (!list || !n)
        return ud_err_set(e, UD_EINVAL, "ud_ckpt_list: NULL argument");
    *list = NULL;
    *n = 0;
    if (ud__env_sodium(e) < 0)
        return e->code;
    char root[CKPT_PATH_MAX];
    struct ckpt_name *names = NULL;
    size_t count = 0;
    int rc = ckpt_scan(session, root, &names, &count, e);
    if (rc < 0 || count == 0)
        return rc;
    struct ud_ckpt_state *v = calloc(count, sizeof *v);
    if (!v) {
        free(names);
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory listing %zu checkpoints", root, count);
    }
    for (size_t i = 0; i < count; i++) {
        char dir[CKPT_PATH_MAX];
        struct ud_err ie = {0};
        snprintf(dir, sizeof dir, "%s/%s", root, names[i].name);
        ckpt_inspect(dir, &v[i], false, NULL, &ie);
    }
    free(names);
    *list = v;
    *n = count;
    return 0;
}

void ud_ckpt_list_free(struct ud_ckpt_state **list, size_t n)
{
    if (!list || !*list)
        return;
    for (size_t i = 0; i < n; i++)
        ud_ckpt_state_deinit(&(*list)[i]);
    free(*list);
    *list = NULL;
}

/* What latest and prune start with: the session's checkpoint names, and a state buffer for
 * ckpt_inspect. Returns 0 or a negative error (nothing to free then). */
static int ckpt_scan_for_inspection(const char *session, char root[CKPT_PATH_MAX],
                                    struct ckpt_name **names, size_t *count,
                                    struct ud_ckpt_state **st, struct ud_err *e)
{
    if (ud__env_sodium(e) < 0)
        return e->code;
    int rc = ckpt_scan(session, root, names, count, e);
    if (rc < 0)
        return rc;
    if (!(*st = malloc(sizeof **st))) {
        free(*names);
        *names = NULL;
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    }
    return 0;
}

int ud_ckpt_latest(const char *session, char *dir, size_t cap, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    if (!dir || cap == 0)
        return ud_err_set(e, UD_EINVAL, "ud_ckpt_latest: no output buffer");
    dir[0] = '\0';
    char root[CKPT_PATH_MAX];
    struct ckpt_name *names = NULL;
    size_t count = 0;
    struct ud_ckpt_state *st = NULL;
    int rc = ckpt_scan_for_inspection(session, root, &names, &count, &st, e);
    if (rc < 0)
        return rc;
    char first_problem[sizeof st->problem + CKPT_NAME_MAX + 4] = "";
    rc = UD_ENOTFOUND;
    for (size_t i = count; i-- > 0;) {
        char path[CKPT_PATH_MAX];
        struct ud_err ie = {0};
        snprintf(path, sizeof path, "%s/%s", root, names[i].name);
        if (ckpt_inspect(path, st, false, NULL, &ie) == 0) {
            if (strlen(path) >= cap) {
                rc = ud_err_set(e, UD_ELIMIT, "%s: does not fit in %zu bytes", path, cap);
            } else {
                snprintf(dir, cap, "%s", path);
                rc = 0;
            }
            break;
        }
        if (!first_problem[0])
            snprintf(first_problem, sizeof first_problem, "; %s: %s", names[i].name, st->problem);
    }
    free(st);
    free(names);
    if (rc == UD_ENOTFOUND && count == 0)
        ud_err_set(e, UD_ENOTFOUND, "no checkpoint in %s", root);
    else if (rc == UD_ENOTFOUND)
        ud_err_set(e, UD_ENOTFOUND, "no complete checkpoint in %s (%zu incomplete%s)", root, count,
                   first_problem);
    return rc;
}

int ud_ckpt_prune(const char *session, int keep, struct ud_err *e)
{
    struct ud_err local;
    if (!e)
        e = &local;
    if (keep < 1)
        return ud_err_set(e, UD_EINVAL, "ud_ckpt_prune: keep %d (must be >= 1)", keep);
    char root[CKPT_PATH_MAX];
    struct ckpt_name *names = NULL;
    size_t count = 0;
    struct ud_ckpt_state *st = NULL;
    int rc = ckpt_scan_for_inspection(session, root, &names, &count, &st, e);
    if (rc < 0)
        return rc;
    /* Newest first: incomplete ones before the first complete one stay (one may be being
     * written); after it, incomplete ones go; after `keep` complete ones, everything goes. */
    int complete = 0, first_rc = 0;
    for (size_t i = count; i-- > 0;) {
        char path[CKPT_PATH_MAX];
        snprintf(path, sizeof path, "%s/%s", root, names[i].name);
        bool remove = complete >= keep;
        if (!remove) {
            struct ud_err ie = {0};
            if (ckpt_inspect(path, st, false, NULL, &ie) == 0)
                complete++;
            else
                remove = complete > 0;
        }
        if (remove) {
            struct ud_err re = {0};
            int r = ud_file_remove_tree(path, false, CKPT_DONE_FILE, &re);
            if (r < 0 && first_rc == 0) {
                first_rc = r;
                ud_err_set(e, r, "%s", re.msg);
            }
        }
    }
    free(st);
    free(names);
    return first_rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Decoders on memory (ud_ckpt_impl.h)                                                        */
/* ------------------------------------------------------------------------------------------ */

int ud__ckpt_decode_mem(enum ud__ckpt_file kind, const void *buf, size_t len, struct ud_err *e)
{
    int rc;
    switch (kind) {
    case UD__CKPT_STATE: {
        if (len > CKPT_STATE_MAX_BYTES)
            return ud_err_set(e, UD_ELIMIT, "state.ckpt: %zu bytes, over the limit of %zu", len,
                              (size_t)CKPT_STATE_MAX_BYTES);
        struct ud_ckpt_state st = {0};
        rc = ckpt_state_decode(buf, len, &st, true, e);
        ud_ckpt_state_deinit(&st);
        return rc;
    }
    case UD__CKPT_RANK: {
        if (len > CKPT_RANK_MAX_BYTES)
            return ud_err_set(e, UD_ELIMIT, "rank file: %zu bytes, over the limit of %d", len,
                              CKPT_RANK_MAX_BYTES);
        struct ckpt_rank r = {0};
        return ckpt_rank_decode(buf, len, &r, e);
    }
    case UD__CKPT_DONE: {
        if (len > CKPT_DONE_MAX_BYTES)
            return ud_err_set(e, UD_ELIMIT, "DONE: %zu bytes, over the limit of %zu", len,
                              (size_t)CKPT_DONE_MAX_BYTES);
        char *text = malloc(len + 1);
        if (!text)
            return ud_err_set(e, UD_ENOMEM, "DONE: out of memory");
        memcpy(text, buf, len);
        text[len] = '\0';
        struct ckpt_done d;
        rc = ckpt_done_parse(text, len, &d, e);
        ckpt_done_deinit(&d);
        free(text);
        return rc;
    }
    }
    return ud_err_set(e, UD_EINVAL, "no such checkpoint file kind %d", (int)kind);
}
