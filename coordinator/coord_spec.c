/*  coord_spec.c — checking a job spec (JSON) and turning it into worker options.
 *
 *  One table lists every key the spec may hold, its JSON type, its range and the worker option
 *  it becomes; the arguments come out in the table's order, so the same spec always gives the
 *  same command line. Ranges are the worker's own (worker_main.c parse_args), and the assembled
 *  hyper-parameters go through ud_update_params_check_runnable as the worker's do, so a spec the
 *  coordinator accepts is one every rank accepts.
 */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coord_spec.h"
#include "updraft/ud_arch.h"
#include "updraft/ud_model.h"
#include "updraft/ud_optim.h"

enum spec_type { T_STR, T_INT, T_NUM, T_BOOL, T_VALIDATION, T_LAUNCH };

/* Bounds: integers lo..hi; numbers lo..hi with lo_open / hi_open making that end exclusive. */
struct spec_key {
    const char *key;
    enum spec_type type;
    const char *opt; /* worker option; NULL: not passed as such */
    double lo, hi;
    int lo_open, hi_open;
};

#define I40 1099511627776.0 /* 2^40 */
#define I62 4611686018427387904.0

static const struct spec_key KEYS[] = {
    {"name", T_STR, NULL, 0, 0, 0, 0},
    {"data", T_STR, "--data", 0, 0, 0, 0},
    {"test", T_STR, "--test", 0, 0, 0, 0},
    {"arch", T_STR, "--arch", 0, 0, 0, 0},
    {"epochs", T_INT, "--epochs", 1, 1e6, 0, 0},
    {"batch", T_INT, "--batch", 1, 65536, 0, 0},
    {"lr", T_NUM, "--lr", 0, INFINITY, 1, 1},
    {"momentum", T_NUM, "--momentum", 0, 1, 0, 1},
    {"nesterov", T_BOOL, "--nesterov", 0, 0, 0, 0},
    {"weight_decay", T_NUM, "--weight-decay", 0, INFINITY, 0, 1},
    {"optimizer", T_STR, "--optimizer", 0, 0, 0, 0},
    {"beta1", T_NUM, "--beta1", 0, 1, 0, 1},
    {"beta2", T_NUM, "--beta2", 0, 1, 0, 1},
    {"eps", T_NUM, "--eps", 0, INFINITY, 1, 1},
    {"schedule", T_STR, "--schedule", 0, 0, 0, 0},
    {"step_epochs", T_INT, "--step-epochs", 1, 1e6, 0, 0},
    {"gamma", T_NUM, "--gamma", 0, INFINITY, 1, 1},
    {"validation", T_VALIDATION, "--validation", 0, 1, 0, 0},
    {"seed", T_INT, "--seed", 0, I62, 0, 0},
    {"shuffle", T_BOOL, "--no-shuffle", 0, 0, 0, 0}, /* false: --no-shuffle */
    {"threads", T_INT, "--threads", 1, 1024, 0, 0},
    {"input", T_STR, "--input", 0, 0, 0, 0},
    {"max_samples", T_INT, "--max-samples", 1, I40, 0, 0},
    {"skip_bad", T_BOOL, "--skip-bad", 0, 0, 0, 0},
    {"checkpoint_every", T_INT, "--checkpoint-every", 1, I40, 0, 0},
    {"keep_checkpoints", T_INT, "--keep-checkpoints", 1, 1e6, 0, 0},
    {"report_every", T_INT, "--report-every", 1, I40, 0, 0},
    {"bucket_mb", T_NUM, "--bucket-mb", 0, 4096, 1, 0},
    {"peer_timeout", T_NUM, "--peer-timeout", 0.5, 86400, 0, 0},
    {"session", T_STR, NULL, 0, 0, 0, 0},
    {"launch", T_LAUNCH, NULL, 0, 0, 0, 0},
};
#define NKEYS        (sizeof KEYS / sizeof KEYS[0])
#define MAX_PATH_LEN 4096

/* The shortest "%.*g" that reads back as exactly v (so 0.05 prints as "0.05", not
 * "0.050000000000000003"); returns the precision used. */
static int fmt_double(char *buf, size_t n, double v)
{
    if (v == floor(v) && fabs(v) < 1e15) { /* whole: all its digits, never "3e+01" */
        int p = snprintf(buf, n, "%.0f", fabs(v));
        snprintf(buf, n, "%.0f", v);
        return p > 0 ? p : 1;
    }
    for (int p = 1; p < 17; p++) {
        snprintf(buf, n, "%.*g", p, v);
        if (strtod(buf, NULL) == v)
            return p;
    }
    snprintf(buf, n, "%.17g", v);
    return 17;
}

static const char *type_name(const json_t *v)
{
    switch (json_typeof(v)) {
    case JSON_OBJECT:
        return "an object";
    case JSON_ARRAY:
        return "an array";
    case JSON_STRING:
        return "a string";
    case JSON_INTEGER:
        return "an integer";
    case JSON_REAL:
        return "a number";
    case JSON_TRUE:
    case JSON_FALSE:
        return "a boolean";
    default:
        return "null";
    }
}

static int add_arg(struct coord_spec *s, const char *a, struct ud_err *e)
{
    if (s->nargs >= COORD_SPEC_MAX_ARGS)
        return ud_err_set(e, UD_ELIMIT, "job spec: more than %d worker arguments",
                          COORD_SPEC_MAX_ARGS);
    if (!(s->args[s->nargs] = strdup(a)))
        return ud_err_set(e, UD_ENOMEM, "job spec: out of memory");
    s->nargs++;
    return 0;
}

static int add_opt(struct coord_spec *s, const char *opt, const char *val, struct ud_err *e)
{
    int rc = add_arg(s, opt, e);
    return rc ? rc : (val ? add_arg(s, val, e) : 0);
}

static int check_number(const struct spec_key *k, const json_t *v, double *out, struct ud_err *e)
{
    if (!json_is_number(v))
        return ud_err_set(e, UD_EINVAL, "job spec: '%s' must be a number, not %s", k->key,
                          type_name(v));
    double x = json_number_value(v);
    int low_bad = k->lo_open ? !(x > k->lo) : !(x >= k->lo);
    int high_bad = k->hi_open ? !(x < k->hi) : !(x <= k->hi);
    if (!isfinite(x) || low_bad || high_bad) {
        char lo[32], hi[32];
        fmt_double(lo, sizeof lo, k->lo);
        fmt_double(hi, sizeof hi, k->hi);
        return ud_err_set(e, UD_EINVAL, "job spec: '%s' is %g: must be in %s%s, %s%s", k->key, x,
                          k->lo_open ? "(" : "[", lo, isinf(k->hi) ? "inf" : hi,
                          k->hi_open ? ")" : "]");
    }
    *out = x;
    return 0;
}

static int check_integer(const char *key, const json_t *v, double lo, double hi, int64_t *out,
                         struct ud_err *e)
{
    if (!json_is_integer(v))
        return ud_err_set(e, UD_EINVAL, "job spec: '%s' must be a whole number, not %s", key,
                          type_name(v));
    json_int_t x = json_integer_value(v);
    if (x < (json_int_t)lo || x > (json_int_t)hi) /* the bounds are whole and below 2^63 */
        return ud_err_set(e, UD_EINVAL, "job spec: '%s' is %lld: must be in [%.0f, %.0f]", key,
                          (long long)x, lo, hi);
    *out = (int64_t)x;
    return 0;
}

/* s holds only [A-Za-z0-9._-] (a model name, a Slurm partition or account); else UD_EINVAL
 * naming key and the first other character. */
static int check_name_chars(const char *key, const char *s, struct ud_err *e)
{
    for (size_t i = 0; s[i]; i++) {
        char c = s[i];
        if (!((c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') ||
              c == '.' || c == '_' || c == '-'))
            return ud_err_set(e, UD_EINVAL,
                              "job spec: '%s' may hold only letters, digits, '.', '_' and '-'"
                              " (character %zu is not one)",
                              key, i + 1);
    }
    return 0;
}

static int check_name(const char *name, struct ud_err *e)
{
    size_t n = strlen(name);
    if (n < 1 || n > 64)
        return ud_err_set(e, UD_EINVAL, "job spec: 'name' must have 1 to 64 characters, not %zu",
                          n);
    if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0)
        return ud_err_set(e, UD_EINVAL, "job spec: 'name' cannot be '%s'", name);
    return check_name_chars("name", name, e);
}

static int check_input(const char *in, struct coord_spec *s, struct ud_err *e)
{
    int c, h, w, end = 0;
    if (strlen(in) >= sizeof s->input || sscanf(in, "%d,%d,%d%n", &c, &h, &w, &end) != 3 ||
        in[end] != '\0' || c < 1 || c > 4 || h < 1 || h > UD_MAX_DIM || w < 1 || w > UD_MAX_DIM)
        return ud_err_set(e, UD_EINVAL,
                          "job spec: 'input' must be \"C,H,W\" (C 1..4, H and W 1..%d), e.g. "
                          "\"1,28,28\"",
                          UD_MAX_DIM);
    snprintf(s->input, sizeof s->input, "%d,%d,%d", c, h, w);
    return 0;
}

/* A Slurm name (partition, account): 1..63 of [A-Za-z0-9._-], so that it goes into the batch
 * script's #SBATCH lines as it is. */
static int check_slurm_name(const char *key, const json_t *x, char *out, size_t n, struct ud_err *e)
{
    if (!json_is_string(x))
        return ud_err_set(e, UD_EINVAL, "job spec: '%s' must be a string, not %s", key,
                          type_name(x));
    const char *v = json_string_value(x);
    size_t len = strlen(v);
    if (len < 1 || len >= n)
        return ud_err_set(e, UD_EINVAL, "job spec: '%s' must have 1 to %zu characters", key, n - 1);
    int rc = check_name_chars(key, v, e);
    if (rc)
        return rc;
    memcpy(out, v, len + 1);
    return 0;
}

/* launch.time: whole minutes (an integer, 1..525600), or one of Slurm's --time forms as a
 * string: "M", "M:S", "H:M:S", "D-H", "D-H:M", "D-H:M:S" (fields are digits). */
static int check_slurm_time(const json_t *x, char *out, size_t n, struct ud_err *e)
{
    if (json_is_integer(x)) {
        int64_t m;
        int rc = check_integer("launch.time", x, 1, 525600, &m, e);
        if (rc == 0)
            snprintf(out, n, "%lld", (long long)m);
        return rc;
    }
    if (!json_is_string(x))
        return ud_err_set(e, UD_EINVAL,
                          "job spec: 'launch.time' must be minutes (an integer) or a string "
                          "like \"MM:SS\", not %s",
                          type_name(x));
    const char *v = json_string_value(x);
    size_t len = strlen(v), digits = 0;
    int colons = 0, dashes = 0, ok = len > 0 && len < n;
    for (size_t i = 0; ok && i < len; i++) {
        if (v[i] >= '0' && v[i] <= '9') {
            digits++;
            continue;
        }
        ok = digits > 0 && i + 1 < len &&
             ((v[i] == ':' && ++colons <= 2) || (v[i] == '-' && colons == 0 && ++dashes == 1));
        digits = 0;
    }
    if (!ok)
        return ud_err_set(e, UD_EINVAL,
                          "job spec: 'launch.time' \"%.40s\" is not a Slurm time limit (minutes, "
                          "\"MM:SS\", \"HH:MM:SS\" or \"D-HH[:MM[:SS]]\")",
                          v);
    memcpy(out, v, len + 1);
    return 0;
}

/* One key of the launch object. Returns 1 when k is not a launch key. */
static int parse_launch_key(const char *k, const json_t *x, struct coord_spec *s, struct ud_err *e)
{
    int64_t i;
    int rc;
    if (strcmp(k, "np") == 0) {
        if ((rc = check_integer("launch.np", x, 1, 256, &i, e)) != 0)
            return rc;
        s->np = (int)i;
    } else if (strcmp(k, "max_restarts") == 0) {
        if ((rc = check_integer("launch.max_restarts", x, 0, 100, &i, e)) != 0)
            return rc;
        s->max_restarts = (int)i;
    } else if (strcmp(k, "scheduler") == 0) {
        const char *v = json_is_string(x) ? json_string_value(x) : "";
        if (strcmp(v, "local") == 0)
            s->scheduler = COORD_SCHED_LOCAL;
        else if (strcmp(v, "slurm") == 0)
            s->scheduler = COORD_SCHED_SLURM;
        else
            return ud_err_set(e, UD_EINVAL,
                              "job spec: 'launch.scheduler' must be \"local\" or \"slurm\"");
    } else if (strcmp(k, "partition") == 0) {
        return check_slurm_name("launch.partition", x, s->partition, sizeof s->partition, e);
    } else if (strcmp(k, "account") == 0) {
        return check_slurm_name("launch.account", x, s->account, sizeof s->account, e);
    } else if (strcmp(k, "time") == 0) {
        return check_slurm_time(x, s->time, sizeof s->time, e);
    } else {
        return 1;
    }
    return 0;
}

static int parse_launch(const json_t *v, struct coord_spec *s, struct ud_err *e)
{
    if (!json_is_object(v))
        return ud_err_set(e, UD_EINVAL, "job spec: 'launch' must be an object, not %s",
                          type_name(v));
    const char *k;
    json_t *x;
    json_object_foreach((json_t *)v, k, x)
    {
        int rc = parse_launch_key(k, x, s, e);
        if (rc == 1)
            return ud_err_set(e, UD_EINVAL,
                              "job spec: unknown key 'launch.%s' (launch takes np, max_restarts, "
                              "scheduler, and for Slurm partition, time and account)",
                              k);
        if (rc)
            return rc;
    }
    if (s->np <= 0)
        return ud_err_set(e, UD_EINVAL, "job spec: 'launch' needs 'np' (the number of ranks)");
    if (s->scheduler != COORD_SCHED_SLURM && (s->partition[0] || s->account[0] || s->time[0]))
        return ud_err_set(e, UD_EINVAL, "job spec: 'launch.%s' needs \"scheduler\": \"slurm\"",
                          s->partition[0] ? "partition"
                          : s->account[0] ? "account"
                                          : "time");
    return 0;
}

/* A string key: a path the spec owns, the job's name, or an option checked here. */
static int parse_str_key(const struct spec_key *k, const json_t *v, struct coord_spec *s,
                         struct ud_update_params *p, struct ud_err *e)
{
    if (!json_is_string(v))
        return ud_err_set(e, UD_EINVAL, "job spec: '%s' must be a string, not %s", k->key,
                          type_name(v));
    const char *str = json_string_value(v);
    size_t n = json_string_length(v);
    if (n == 0 || n >= MAX_PATH_LEN)
        return ud_err_set(e, UD_EINVAL, "job spec: '%s' must have 1 to %d characters", k->key,
                          MAX_PATH_LEN - 1);
    char **own = NULL;
    int rc;
    if (strcmp(k->key, "name") == 0) {
        if ((rc = check_name(str, e)) != 0)
            return rc;
        snprintf(s->name, sizeof s->name, "%s", str);
        return 0;
    } else if (strcmp(k->key, "data") == 0) {
        own = &s->data;
    } else if (strcmp(k->key, "test") == 0) {
        own = &s->test;
    } else if (strcmp(k->key, "arch") == 0) {
        own = &s->arch;
    } else if (strcmp(k->key, "session") == 0) {
        own = &s->session;
    } else if (strcmp(k->key, "optimizer") == 0) {
        enum ud_optimizer o;
        if (ud_optimizer_parse(str, &o) != 0)
            return ud_err_set(e, UD_EINVAL,
                              "job spec: 'optimizer' must be \"sgd\" or "
                              "\"adam\"");
        p->optimizer = o;
    } else if (strcmp(k->key, "schedule") == 0) {
        enum ud_lr_schedule sc;
        if (ud_lr_schedule_parse(str, &sc) != 0)
            return ud_err_set(e, UD_EINVAL,
                              "job spec: 'schedule' must be \"constant\", "
                              "\"step\" or \"cosine\"");
        p->schedule = sc;
    } else if (strcmp(k->key, "input") == 0) {
        if ((rc = check_input(str, s, e)) != 0)
            return rc;
        return add_opt(s, k->opt, s->input, e);
    }
    if (own && !(*own = strdup(str)))
        return ud_err_set(e, UD_ENOMEM, "job spec: out of memory");
    return k->opt ? add_opt(s, k->opt, str, e) : 0;
}

static int parse_int_key(const struct spec_key *k, const json_t *v, struct coord_spec *s,
                         struct ud_update_params *p, struct ud_err *e)
{
    int64_t i = 0;
    int rc = check_integer(k->key, v, k->lo, k->hi, &i, e);
    if (rc != 0)
        return rc;
    if (strcmp(k->key, "epochs") == 0)
        s->epochs = p->epochs = i;
    else if (strcmp(k->key, "batch") == 0)
        s->batch = p->mini_batch_size = i;
    else if (strcmp(k->key, "step_epochs") == 0)
        p->step_epochs = i;
    else if (strcmp(k->key, "seed") == 0)
        s->seed = p->seed = (uint64_t)i;
    else if (strcmp(k->key, "max_samples") == 0)
        s->max_samples = i;
    char buf[64];
    snprintf(buf, sizeof buf, "%lld", (long long)i);
    return add_opt(s, k->opt, buf, e);
}

static int parse_num_key(const struct spec_key *k, const json_t *v, struct coord_spec *s,
                         struct ud_update_params *p, struct ud_err *e)
{
    double d = 0;
    int rc = check_number(k, v, &d, e);
    if (rc != 0)
        return rc;
    if (strcmp(k->key, "lr") == 0)
        p->learning_rate = d;
    else if (strcmp(k->key, "momentum") == 0)
        p->momentum = d;
    else if (strcmp(k->key, "weight_decay") == 0)
        p->weight_decay = d;
    else if (strcmp(k->key, "beta1") == 0)
        p->beta1 = d;
    else if (strcmp(k->key, "beta2") == 0)
        p->beta2 = d;
    else if (strcmp(k->key, "eps") == 0)
        p->eps = d;
    else if (strcmp(k->key, "gamma") == 0)
        p->gamma = d;
    char buf[64];
    fmt_double(buf, sizeof buf, d);
    return add_opt(s, k->opt, buf, e);
}

/* A flag: its option when true ("shuffle" the other way round: --no-shuffle when false). */
static int parse_bool_key(const struct spec_key *k, const json_t *v, struct coord_spec *s,
                          struct ud_update_params *p, struct ud_err *e)
{
    if (!json_is_boolean(v))
        return ud_err_set(e, UD_EINVAL, "job spec: '%s' must be true or false, not %s", k->key,
                          type_name(v));
    if (strcmp(k->key, "shuffle") == 0) {
        s->shuffle = p->shuffle = json_is_true(v);
        return s->shuffle ? 0 : add_opt(s, k->opt, NULL, e);
    }
    if (strcmp(k->key, "nesterov") == 0)
        p->nesterov = json_is_true(v);
    else if (strcmp(k->key, "skip_bad") == 0)
        s->skip_bad = json_is_true(v);
    return json_is_true(v) ? add_opt(s, k->opt, NULL, e) : 0;
}

static int parse_validation(const struct spec_key *k, const json_t *v, struct coord_spec *s,
                            struct ud_err *e)
{
    if (json_is_string(v) &&
        (strcmp(json_string_value(v), "auto") == 0 || strcmp(json_string_value(v), "none") == 0)) {
        snprintf(s->validation, sizeof s->validation, "%s", json_string_value(v));
    } else if (json_is_number(v)) {
        double d = 0;
        int rc = check_number(k, v, &d, e);
        if (rc != 0)
            return rc;
        fmt_double(s->validation, sizeof s->validation, d);
    } else {
        return ud_err_set(e, UD_EINVAL,
                          "job spec: 'validation' must be \"auto\", \"none\" or a ratio in "
                          "[0, 1]");
    }
    return add_opt(s, k->opt, s->validation, e);
}

/* Checks one key's value, records it in s and p, and appends its worker option. */
static int parse_key(const struct spec_key *k, const json_t *v, struct coord_spec *s,
                     struct ud_update_params *p, struct ud_err *e)
{
    switch (k->type) {
    case T_STR:
        return parse_str_key(k, v, s, p, e);
    case T_INT:
        return parse_int_key(k, v, s, p, e);
    case T_NUM:
        return parse_num_key(k, v, s, p, e);
    case T_BOOL:
        return parse_bool_key(k, v, s, p, e);
    case T_VALIDATION:
        return parse_validation(k, v, s, e);
    case T_LAUNCH:
        return parse_launch(v, s, e);
    }
    return ud_err_set(e, UD_EINTERNAL, "job spec: key '%s' has no handler", k->key);
}

/* The largest precision any real in the document needs to read back exactly (at least 1). */
static int real_precision(const json_t *v)
{
    int p = 1;
    char buf[40];
    if (json_is_real(v)) {
        p = fmt_double(buf, sizeof buf, json_real_value(v));
    } else if (json_is_object(v)) {
        const char *k;
        json_t *x;
        json_object_foreach((json_t *)v, k, x)
        {
            int q = real_precision(x);
            p = q > p ? q : p;
        }
    }
    return p;
}

int coord_spec_parse(const char *json, size_t len, struct coord_spec *s, struct ud_err *e)
{
    memset(s, 0, sizeof *s);
    if (len > COORD_SPEC_MAX_BYTES)
        return ud_err_set(e, UD_ELIMIT, "job spec: %zu bytes is over the limit of %u", len,
                          COORD_SPEC_MAX_BYTES);
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES | JSON_DECODE_ANY, &je);
    if (!root)
        return ud_err_set(e, UD_EFORMAT, "job spec: malformed JSON at line %d, column %d: %s",
                          je.line, je.column, je.text);
    int rc = 0;
    if (!json_is_object(root)) {
        rc = ud_err_set(e, UD_EFORMAT, "job spec: expected a JSON object, not %s", type_name(root));
        goto out_free;
    }

    /* Defaults: the worker's (worker_main.c parse_args). */
    struct ud_update_params p;
    ud_update_params_default(&p);
    p.epochs = 10;
    p.mini_batch_size = 128;
    p.learning_rate = 0.05;
    p.momentum = 0.9;
    s->epochs = p.epochs;
    s->batch = p.mini_batch_size;
    s->seed = p.seed;
    s->shuffle = 1;
    s->max_restarts = 3;
    s->scheduler = COORD_SCHED_LOCAL;
    snprintf(s->validation, sizeof s->validation, "auto");

    /* Every key must be known... */
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val)
    {
        size_t i = 0;
        while (i < NKEYS && strcmp(KEYS[i].key, key) != 0)
            i++;
        if (i == NKEYS) {
            rc = ud_err_set(e, UD_EINVAL, "job spec: unknown key '%.64s'", key);
            goto out_free;
        }
    }
    /* ...then each is checked, and becomes options in the table's order. */
    for (size_t i = 0; i < NKEYS; i++) {
        json_t *v = json_object_get(root, KEYS[i].key);
        if (v && (rc = parse_key(&KEYS[i], v, s, &p, e)) != 0)
            goto out_free;
    }
    if (!s->name[0] || !s->data || !s->arch) {
        rc = ud_err_set(e, UD_EINVAL, "job spec: '%s' is required",
                        !s->name[0] ? "name"
                        : !s->data  ? "data"
                                    : "arch");
        goto out_free;
    }
    if (s->np > 0 && s->batch < s->np) {
        rc = ud_err_set(e, UD_EINVAL,
                        "job spec: 'batch' %lld is smaller than launch.np %d: every rank needs "
                        "at least one sample of each batch",
                        (long long)s->batch, s->np);
        goto out_free;
    }
    struct ud_err pe = {0};
    if (ud_update_params_check_runnable(&p, &pe) != 0) {
        rc = ud_err_set(e, UD_EINVAL, "job spec: %s", pe.msg);
        goto out_free;
    }
    s->canonical =
        json_dumps(root, JSON_COMPACT | JSON_SORT_KEYS | JSON_REAL_PRECISION(real_precision(root)));
    if (!s->canonical) {
        rc = ud_err_set(e, UD_ENOMEM, "job spec: out of memory");
        goto out_free;
    }
    json_decref(root);
    return 0;

out_free:
    json_decref(root);
    coord_spec_deinit(s);
    return rc;
}

void coord_spec_deinit(struct coord_spec *s)
{
    if (!s)
        return;
    free(s->data);
    free(s->test);
    free(s->arch);
    free(s->session);
    free(s->canonical); /* json_dumps uses malloc unless the allocators are replaced */
    for (int i = 0; i < s->nargs; i++)
        free(s->args[i]);
    memset(s, 0, sizeof *s);
}

int coord_spec_check_path(const char *key, const char *path, struct ud_err *e)
{
    struct stat sb;
    if (stat(path, &sb) != 0 || access(path, S_ISDIR(sb.st_mode) ? R_OK | X_OK : R_OK) != 0) {
        int err = errno;
        return ud_err_set(e, err == ENOENT ? UD_ENOTFOUND : UD_EIO,
                          "'%s': %s cannot be read on the coordinator: %s", key, path,
                          strerror(err));
    }
    return 0;
}

int coord_spec_check_paths(const struct coord_spec *s, struct ud_err *e)
{
    if (coord_spec_check_path("data", s->data, e) != 0)
        return e->code;
    if (s->test && coord_spec_check_path("test", s->test, e) != 0)
        return e->code;
    struct ud_arch a;
    int preset = 0;
    struct ud_err ae = {0};
    int rc = ud_arch_from_option(s->arch, &a, &preset, &ae);
    if (rc == UD_ENOTFOUND)
        return ud_err_set(e, rc,
                          "'arch': '%s' is neither a preset (mlp, cnn) nor a spec file the "
                          "coordinator can read",
                          s->arch);
    if (rc)
        return ud_err_set(e, rc, "'arch': %s", ae.msg);
    return 0;
}
