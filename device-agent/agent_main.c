/*  agent_main.c — updraft-agent: improves a model on data that stays on this device.
 *
 *    updraft-agent update ...   one update of a .udm on local data (this file)
 *    updraft-agent run ...      the daemon: asks a coordinator for tasks, downloads the round's
 *                               model, updates it, uploads the delta (agent_run.c)
 *
 *  Both run the same update (agent_update.c) through the update engine. docs/agent.md is the
 *  user's description; exit codes: 0 done, 1 failure, 2 usage or a refused option/token,
 *  130 cancelled by SIGINT/SIGTERM.
 */
#include <errno.h>
#include <float.h>
#include <getopt.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "agent.h"
#include "agent_log.h"
#include "agent_update.h"
#include "updraft/ud_delta.h"
#include "updraft/ud_file.h"
#include "updraft/ud_kernels.h"
#include "updraft/ud_num.h"
#include "updraft/ud_udm.h"

void agent_die(int code, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, AGENT_PROG ": ");
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    exit(code);
}

double agent_parse_double(const char *opt, const char *s, double lo, double hi)
{
    struct ud_err e = {0};
    double v;
    if (ud_num_double(opt, s, lo, hi, &v, &e) < 0)
        agent_die(2, "%s", e.msg);
    return v;
}

long long agent_parse_int(const char *opt, const char *s, long long lo, long long hi)
{
    struct ud_err e = {0};
    long long v;
    if (ud_num_ll(opt, s, lo, hi, &v, &e) < 0)
        agent_die(2, "%s", e.msg);
    return v;
}

static int common_option(int c, const char *arg, struct agent_common_opts *o)
{
    switch (c) {
    case AGENT_O_PUBKEY:
        o->pubkey = arg;
        return 1;
    case AGENT_O_MODELKEY:
        o->model_key = arg;
        return 1;
    case AGENT_O_JSON:
        o->log.json = 1;
        return 1;
    case AGENT_O_QUIET:
        o->log.quiet = 1;
        return 1;
    default:
        return 0;
    }
}

int agent_next_option(int argc, char **argv, const struct option *longopts,
                      struct agent_common_opts *common)
{
    int c;
    while ((c = getopt_long(argc, argv, "", longopts, NULL)) != -1 &&
           common_option(c, optarg, common))
        ;
    return c;
}

void agent_keys_load(struct agent_keys *k, const char *pubkey_path, const char *model_key_path)
{
    struct ud_err e = {0};
    memset(k, 0, sizeof *k);
    if (pubkey_path) {
        if (ud_key_read(pubkey_path, UD_KEY_SIGN_PUBLIC, &k->verify, &e) < 0)
            agent_die(2, "--model-pubkey: %s", e.msg);
        k->have_verify = true;
    }
    if (model_key_path) {
        if (ud_key_read(model_key_path, UD_KEY_MODEL, &k->decrypt, &e) < 0)
            agent_die(2, "--model-key: %s", e.msg);
        k->have_decrypt = true;
    }
}

ud_model_t *agent_open_model(const struct agent_keys *k, const char *path,
                             struct ud_seal_info *info, struct ud_err *e)
{
    struct ud_seal_keys sk = {k->have_verify ? &k->verify : NULL,
                              k->have_decrypt ? &k->decrypt : NULL};
    ud_model_t *m = ud_seal_read_model(path, &sk, info, e);
    if (!m && e->code == UD_EWRONGKEY && !sk.decrypt && strstr(e->msg, "no model key"))
        ud_err_prefix(e, "give --model-key");
    return m;
}

int agent_refusal_exit(int code)
{
    return ud_seal_exit_status(code);
}

static void usage(FILE *f)
{
    fprintf(f,
            "usage: " AGENT_PROG " update --model M.udm --data SRC --out M2.udm [--epochs E]\n"
            "       [--lr X] [--batch B] [--seed N] [--delta D.bin] [--threads T] [--json]\n"
            "       [--model-pubkey SIGN.pub] [--model-key MODEL.key] [--quiet]\n"
            "   or: " AGENT_PROG " run --coordinator URL (--token T | --token-file F) --data SRC\n"
            "       --state DIR (--model-pubkey SIGN.pub | --allow-unsigned) [--model-key F]\n"
            "       [--poll SEC] [--threads T] [--max-rounds N] [--json] [--quiet]\n"
            "\n"
            "update: improves a model on local data (a folder of class folders, an IDX file or a\n"
            "CSV) through the update engine: only the layers the model marks updatable change.\n"
            "Epochs, learning rate, batch and seed default to the model's update defaults and\n"
            "must lie in its allowed ranges. --delta writes updated - base over the updatable\n"
            "parameters as raw float32 little-endian. --threads: BLAS threads (default 1).\n"
            "--model-pubkey: the model must be signed by this key (checked before the model is\n"
            "parsed); --model-key: decrypts an encrypted model in memory (--out is then written\n"
            "encrypted with the same key). A refused model exits 3 (unsigned), 4 (another key)\n"
            "or 5 (altered).\n"
            "\n"
            "run: the device daemon (docs/agent.md): polls the coordinator for a round's task,\n"
            "downloads and verifies the model, updates it on SRC, uploads the delta; survives a\n"
            "restart at any moment through the files in --state.\n");
}

/* ------------------------------------------------------------------------ update command */

struct update_opts {
    const char *model, *out, *delta;
    struct agent_update_req req;
    struct agent_common_opts common;
};

static void parse_update(int argc, char **argv, struct update_opts *o)
{
    enum {
        O_MODEL = 256,
        O_DATA,
        O_EPOCHS,
        O_LR,
        O_BATCH,
        O_SEED,
        O_OUT,
        O_DELTA,
        O_THREADS,
    };
    static const struct option longopts[] = {
        {"model", required_argument, 0, O_MODEL},     {"data", required_argument, 0, O_DATA},
        {"epochs", required_argument, 0, O_EPOCHS},   {"lr", required_argument, 0, O_LR},
        {"batch", required_argument, 0, O_BATCH},     {"seed", required_argument, 0, O_SEED},
        {"out", required_argument, 0, O_OUT},         {"delta", required_argument, 0, O_DELTA},
        {"threads", required_argument, 0, O_THREADS}, AGENT_COMMON_LONGOPTS};
    memset(o, 0, sizeof *o);
    o->req.threads = 1;
    int c;
    optind = 1;
    while ((c = agent_next_option(argc, argv, longopts, &o->common)) != -1) {
        switch (c) {
        case O_MODEL:
            o->model = optarg;
            break;
        case O_DATA:
            o->req.data = optarg;
            break;
        case O_EPOCHS:
            o->req.have_epochs = 1;
            o->req.epochs = agent_parse_int("--epochs", optarg, 1, INT64_MAX);
            break;
        case O_LR:
            o->req.have_lr = 1;
            o->req.lr = agent_parse_double("--lr", optarg, -DBL_MAX, DBL_MAX);
            break;
        case O_BATCH:
            o->req.have_batch = 1;
            o->req.batch = agent_parse_int("--batch", optarg, 1, INT64_MAX);
            break;
        case O_SEED:
            o->req.have_seed = 1;
            o->req.seed = (uint64_t)agent_parse_int("--seed", optarg, 0, INT64_MAX);
            break;
        case O_OUT:
            o->out = optarg;
            break;
        case O_DELTA:
            o->delta = optarg;
            break;
        case O_THREADS:
            o->req.threads = (int)agent_parse_int("--threads", optarg, 1, 256);
            break;
        case 'h':
            usage(stdout);
            exit(0);
        default:
            usage(stderr);
            exit(2);
        }
    }
    if (optind < argc)
        agent_die(2, "update: unexpected argument '%s' (try --help)", argv[optind]);
    if (!o->model || !o->req.data || !o->out)
        agent_die(2, "update: --model, --data and --out are required (try --help)");
}

/* Fails before training, not after, when a file could not be written there. */
void agent_check_out_path(const char *opt, const char *path)
{
    struct ud_err e = {0};
    if (ud_file_check_writable(path, &e) < 0)
        agent_die(1, "%s %s", opt, e.msg);
}

int agent_write_delta_file(const char *path, float *d, size_t n, struct ud_err *e)
{
    /* In place, so that no second copy of the delta is needed: a no-op on little-endian hosts. */
    unsigned char *b = (unsigned char *)d;
    for (size_t i = 0; i < n; i++) {
        uint32_t u;
        memcpy(&u, &d[i], 4);
        b[4 * i] = (unsigned char)u;
        b[4 * i + 1] = (unsigned char)(u >> 8);
        b[4 * i + 2] = (unsigned char)(u >> 16);
        b[4 * i + 3] = (unsigned char)(u >> 24);
    }
    return ud_file_write_atomic(path, b, n * 4, e);
}

/* Writes the updated model; encrypted with key when the input was, so that the plaintext of an
   encrypted model never reaches the disk. */
static int write_model(const ud_model_t *m, const char *path, const struct ud_key *key,
                       struct ud_err *e)
{
    if (!key)
        return ud_udm_write(m, path, e);
    char *buf = NULL, *enc = NULL;
    size_t len = 0, enc_len = 0;
    int rc = ud_udm_encode(m, &buf, &len, e);
    if (rc == 0)
        rc = ud_seal_encrypt(buf, len, key, &enc, &enc_len, e);
    if (buf) {
        sodium_memzero(buf, len);
        free(buf);
    }
    if (rc == 0)
        rc = ud_file_write_atomic(path, enc, enc_len, e);
    free(enc);
    return rc;
}

static int cmd_update(int argc, char **argv)
{
    struct update_opts o;
    parse_update(argc, argv, &o);
    ud_kernels_set_threads(o.req.threads);
    agent_update_handle_signals();
    agent_check_out_path("--out", o.out);
    if (o.delta)
        agent_check_out_path("--delta", o.delta);

    struct ud_err e = {0};
    struct agent_keys keys;
    agent_keys_load(&keys, o.common.pubkey, o.common.model_key);
    struct ud_seal_info seal;
    ud_model_t *model = agent_open_model(&keys, o.model, &seal, &e);
    if (!model)
        agent_die(agent_refusal_exit(e.code), "refusing the model: %s", e.msg);
    if (seal.is_signed && keys.have_verify)
        agent_say(&o.common.log, "%s: signed by key %s: the signature verifies%s", o.model,
                  seal.sign_key_id, seal.encrypted ? "; decrypted in memory" : "");
    ud_model_t *base = NULL;
    if (o.delta && !(base = ud_model_clone(model, &e)))
        agent_die(1, "%s", e.msg);

    struct agent_update_result res;
    int rc = agent_update_run(model, &o.req, &o.common.log, &res, &e);
    if (rc == UD_ECANCELLED || (rc < 0 && agent_update_stopping()))
        agent_die(130, "%s; nothing written", e.msg[0] ? e.msg : "cancelled");
    if (rc < 0 && res.bad_params)
        agent_die(2, "%s", e.msg);
    if (rc < 0)
        agent_die(1, "%s", e.msg);

    ud_model_set_metric(model, "update_loss", res.loss);
    ud_model_set_metric(model, "update_accuracy", res.accuracy);
    ud_model_set_metric(model, "update_samples", (double)res.samples);
    ud_model_set_metric(model, "update_epochs", (double)res.epochs);
    size_t nd = 0;
    float *delta = NULL;
    if (base) {
        nd = ud_delta_size(base);
        if (!(delta = malloc((nd + 1) * sizeof *delta)))
            agent_die(1, "out of memory for a delta of %zu floats", nd);
        if (ud_delta_compute(base, model, delta, &e) < 0)
            agent_die(1, "%s", e.msg);
        ud_model_destroy(&base); /* before encoding the output: a lower peak */
    }
    if (agent_update_stopping())
        agent_die(130, "cancelled; nothing written");
    if (write_model(model, o.out, seal.encrypted ? &keys.decrypt : NULL, &e) < 0)
        agent_die(1, "%s", e.msg);
    ud_key_wipe(&keys.decrypt);
    if (delta && agent_write_delta_file(o.delta, delta, nd, &e) < 0)
        agent_die(1, "%s", e.msg);

    double rss = agent_peak_rss_mb();
    agent_json_open(&o.common.log, "completed");
    agent_json_int(&o.common.log, "samples", (long long)res.samples);
    agent_json_int(&o.common.log, "epochs", (long long)res.epochs);
    agent_json_num(&o.common.log, "loss", res.loss);
    agent_json_num(&o.common.log, "accuracy", res.accuracy);
    agent_json_num(&o.common.log, "seconds", res.seconds);
    agent_json_num(&o.common.log, "peak_rss_mb", rss);
    agent_json_str(&o.common.log, "out", o.out);
    if (o.delta) {
        agent_json_str(&o.common.log, "delta", o.delta);
        agent_json_int(&o.common.log, "delta_floats", (long long)nd);
    }
    agent_json_close(&o.common.log);
    agent_say(&o.common.log,
              "wrote %s%s%s (%lld samples, loss %.4f, accuracy %.4f, %.1f s, peak RSS %.1f MB)",
              o.out, o.delta ? " and " : "", o.delta ? o.delta : "", (long long)res.samples,
              res.loss, res.accuracy, res.seconds, rss);
    free(delta);
    ud_model_destroy(&base);
    ud_model_destroy(&model);
    return 0;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 ||
        strcmp(argv[1], "help") == 0) {
        usage(stdout);
        return 0;
    }
    if (strcmp(argv[1], "update") == 0)
        return cmd_update(argc - 1, argv + 1);
    if (strcmp(argv[1], "run") == 0)
        return agent_cmd_run(argc - 1, argv + 1);
    fprintf(stderr, AGENT_PROG ": unknown command '%s' (update or run; try --help)\n", argv[1]);
    return 2;
}
