/*  ud_arch.c — architectures: presets, the text spec format, shape inference and checks
 *  (contract: ud_arch.h). */
#include "updraft/ud_arch.h"
#include "updraft/ud_file.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const kind_names[] = {
    [UD_LAYER_DENSE] = "dense",       [UD_LAYER_CONV2D] = "conv2d",
    [UD_LAYER_MAXPOOL2D] = "maxpool", [UD_LAYER_RELU] = "relu",
    [UD_LAYER_FLATTEN] = "flatten",   [UD_LAYER_DROPOUT] = "dropout",
    [UD_LAYER_SOFTMAX] = "softmax",
};

const char *ud_layer_kind_name(enum ud_layer_kind k)
{
    if ((int)k >= UD_LAYER_DENSE && (int)k <= UD_LAYER_SOFTMAX)
        return kind_names[k];
    return "unknown";
}

int ud_layer_kind_parse(const char *s, enum ud_layer_kind *out)
{
    for (int k = UD_LAYER_DENSE; k <= UD_LAYER_SOFTMAX; k++)
        if (strcmp(s, kind_names[k]) == 0) {
            *out = (enum ud_layer_kind)k;
            return 0;
        }
    if (strcmp(s, "maxpool2d") == 0) {
        *out = UD_LAYER_MAXPOOL2D;
        return 0;
    }
    return UD_EINVAL;
}

static struct ud_layer_spec dense(int units)
{
    return (struct ud_layer_spec){.kind = UD_LAYER_DENSE, .units = units, .updatable = 1};
}
static struct ud_layer_spec conv(int filters, int k, int pad)
{
    return (struct ud_layer_spec){.kind = UD_LAYER_CONV2D,
                                  .filters = filters,
                                  .kernel = k,
                                  .stride = 1,
                                  .pad = pad,
                                  .updatable = 1};
}
static struct ud_layer_spec simple(enum ud_layer_kind k)
{
    return (struct ud_layer_spec){.kind = k};
}

int ud_arch_preset(const char *name, struct ud_shape input, int nclasses, struct ud_arch *a,
                   struct ud_err *e)
{
    memset(a, 0, sizeof *a);
    a->input = input.c > 0 ? input : (struct ud_shape){1, 28, 28};
    int n = 0;
    if (strcmp(name, "mlp") == 0) {
        a->layer[n++] = dense(512);
        a->layer[n++] = simple(UD_LAYER_RELU);
        a->layer[n++] = dense(256);
        a->layer[n++] = simple(UD_LAYER_RELU);
        a->layer[n++] = dense(nclasses);
        a->layer[n++] = simple(UD_LAYER_SOFTMAX);
    } else if (strcmp(name, "cnn") == 0) {
        a->layer[n++] = conv(32, 3, 1);
        a->layer[n++] = simple(UD_LAYER_RELU);
        a->layer[n++] = (struct ud_layer_spec){.kind = UD_LAYER_MAXPOOL2D, .pool = 2};
        a->layer[n++] = conv(64, 3, 1);
        a->layer[n++] = simple(UD_LAYER_RELU);
        a->layer[n++] = (struct ud_layer_spec){.kind = UD_LAYER_MAXPOOL2D, .pool = 2};
        a->layer[n++] = simple(UD_LAYER_FLATTEN);
        a->layer[n++] = dense(128);
        a->layer[n++] = simple(UD_LAYER_RELU);
        a->layer[n++] = dense(nclasses);
        a->layer[n++] = simple(UD_LAYER_SOFTMAX);
    } else {
        return ud_err_set(e, UD_ENOTFOUND,
                          "unknown architecture preset '%s' (presets: mlp, cnn; or a spec file)",
                          name);
    }
    a->nlayers = n;
    return ud_arch_check(a, nclasses, e);
}

/* Parses a positive int token; returns -1 on anything else. */
static long parse_int(const char *s)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *end || v < 0 || v > 1000000)
        return -1;
    return v;
}

/* "input C H W" (tok[0] is "input"). */
static int arch_parse_input(char **tok, int nt, int lineno, struct ud_shape *in, struct ud_err *e)
{
    long c = nt == 4 ? parse_int(tok[1]) : -1, h = nt == 4 ? parse_int(tok[2]) : -1,
         w = nt == 4 ? parse_int(tok[3]) : -1;
    if (c <= 0 || h <= 0 || w <= 0)
        return ud_err_set(e, UD_EFORMAT, "line %d: expected 'input C H W' with positive integers",
                          lineno);
    *in = (struct ud_shape){(int)c, (int)h, (int)w};
    return 0;
}

/* The options and numbers after a layer's kind (L->kind is set): "frozen", "pad=", "stride=",
 * a dropout rate, up to two positive integers into pos. *positional counts the numbers. */
static int arch_parse_layer_args(char **tok, int nt, int lineno, struct ud_layer_spec *L,
                                 long pos[2], int *positional, struct ud_err *e)
{
    for (int i = 1; i < nt; i++) {
        if (strcmp(tok[i], "frozen") == 0 &&
            (L->kind == UD_LAYER_DENSE || L->kind == UD_LAYER_CONV2D)) {
            L->updatable = -1; /* marker, turned into 0 by the caller */
        } else if (strncmp(tok[i], "pad=", 4) == 0 && L->kind == UD_LAYER_CONV2D) {
            if ((L->pad = (int)parse_int(tok[i] + 4)) < 0)
                return ud_err_set(e, UD_EFORMAT, "line %d: bad '%s'", lineno, tok[i]);
        } else if (strncmp(tok[i], "stride=", 7) == 0 && L->kind == UD_LAYER_CONV2D) {
            if ((L->stride = (int)parse_int(tok[i] + 7)) <= 0)
                return ud_err_set(e, UD_EFORMAT, "line %d: bad '%s'", lineno, tok[i]);
        } else if (L->kind == UD_LAYER_DROPOUT && *positional == 0) {
            char *end;
            double r = strtod(tok[i], &end);
            if (*end || !(r >= 0.0 && r < 1.0))
                return ud_err_set(e, UD_EFORMAT, "line %d: dropout rate '%s' must be in [0, 1)",
                                  lineno, tok[i]);
            L->rate = (float)r;
            (*positional)++;
        } else if (*positional < 2 && (pos[*positional] = parse_int(tok[i])) > 0) {
            (*positional)++;
        } else {
            return ud_err_set(e, UD_EFORMAT, "line %d: unexpected '%s' for %s", lineno, tok[i],
                              tok[0]);
        }
    }
    return 0;
}

/* One layer line: "KIND [numbers] [options]". */
static int arch_parse_layer(char **tok, int nt, int lineno, struct ud_layer_spec *out,
                            struct ud_err *e)
{
    struct ud_layer_spec L = {0};
    if (ud_layer_kind_parse(tok[0], &L.kind) != 0)
        return ud_err_set(e, UD_EFORMAT,
                          "line %d: unknown layer '%s' (dense, conv2d, maxpool, relu, "
                          "flatten, dropout, softmax)",
                          lineno, tok[0]);
    int positional = 0;
    long pos[2] = {-1, -1};
    int rc = arch_parse_layer_args(tok, nt, lineno, &L, pos, &positional, e);
    if (rc < 0)
        return rc;
    int want = L.kind == UD_LAYER_DENSE       ? 1
               : L.kind == UD_LAYER_CONV2D    ? 2
               : L.kind == UD_LAYER_MAXPOOL2D ? 1
               : L.kind == UD_LAYER_DROPOUT   ? 1
                                              : 0;
    if (positional != want)
        return ud_err_set(e, UD_EFORMAT,
                          "line %d: %s takes %d number%s (dense UNITS, conv2d FILTERS KERNEL, "
                          "maxpool SIZE, dropout RATE)",
                          lineno, tok[0], want, want == 1 ? "" : "s");
    switch (L.kind) {
    case UD_LAYER_DENSE:
        L.units = (int)pos[0];
        break;
    case UD_LAYER_CONV2D:
        L.filters = (int)pos[0];
        L.kernel = (int)pos[1];
        if (L.stride == 0)
            L.stride = 1;
        break;
    case UD_LAYER_MAXPOOL2D:
        L.pool = (int)pos[0];
        break;
    default:
        break;
    }
    if (L.kind == UD_LAYER_DENSE || L.kind == UD_LAYER_CONV2D)
        L.updatable = L.updatable == -1 ? 0 : 1;
    *out = L;
    return 0;
}

int ud_arch_parse(const char *text, struct ud_arch *a, struct ud_err *e)
{
    memset(a, 0, sizeof *a);
    int have_input = 0, lineno = 0, rc;
    const char *p = text;
    while (*p) {
        lineno++;
        const char *eol = strchr(p, '\n');
        size_t len = eol ? (size_t)(eol - p) : strlen(p);
        char line[512];
        if (len >= sizeof line)
            return ud_err_set(e, UD_EFORMAT, "line %d: longer than %zu characters", lineno,
                              sizeof line - 1);
        memcpy(line, p, len);
        line[len] = '\0';
        p = eol ? eol + 1 : p + len;
        char *hash = strchr(line, '#');
        if (hash)
            *hash = '\0';
        char *tok[16];
        int nt = 0;
        for (char *s = strtok(line, " \t\r"); s && nt < 16; s = strtok(NULL, " \t\r"))
            tok[nt++] = s;
        if (nt == 0)
            continue;
        if (strcmp(tok[0], "input") == 0) {
            if (have_input || a->nlayers)
                return ud_err_set(e, UD_EFORMAT, "line %d: 'input' must come once, first", lineno);
            if ((rc = arch_parse_input(tok, nt, lineno, &a->input, e)) < 0)
                return rc;
            have_input = 1;
            continue;
        }
        if (!have_input)
            return ud_err_set(e, UD_EFORMAT, "line %d: the first line must be 'input C H W'",
                              lineno);
        if (a->nlayers >= UD_MAX_LAYERS)
            return ud_err_set(e, UD_ELIMIT, "line %d: more than %d layers", lineno, UD_MAX_LAYERS);
        if ((rc = arch_parse_layer(tok, nt, lineno, &a->layer[a->nlayers], e)) < 0)
            return rc;
        a->nlayers++;
    }
    if (!have_input)
        return ud_err_set(e, UD_EFORMAT, "empty architecture: expected 'input C H W' and layers");
    return ud_arch_check(a, 0, e);
}

int ud_arch_load(const char *path, struct ud_arch *a, struct ud_err *e)
{
    char *text = NULL;
    size_t len = 0;
    int rc = ud_file_read(path, 1 << 20, &text, &len, e);
    if (rc)
        return rc; /* the message names the path */
    if (memchr(text, '\0', len)) {
        free(text);
        return ud_err_set(e, UD_EFORMAT, "%s: not a text file", path);
    }
    rc = ud_arch_parse(text, a, e);
    free(text);
    if (rc)
        ud_err_prefix(e, "%s", path);
    return rc;
}

struct ud_shape ud_arch_shape(const struct ud_arch *a, int upto)
{
    struct ud_shape s = a->input;
    for (int i = 0; i <= upto && i < a->nlayers; i++) {
        const struct ud_layer_spec *L = &a->layer[i];
        switch (L->kind) {
        case UD_LAYER_DENSE:
            s = (struct ud_shape){L->units, 1, 1};
            break;
        case UD_LAYER_CONV2D:
            s.h = L->stride > 0 ? (s.h + 2 * L->pad - L->kernel) / L->stride + 1 : 0;
            s.w = L->stride > 0 ? (s.w + 2 * L->pad - L->kernel) / L->stride + 1 : 0;
            s.c = L->filters;
            break;
        case UD_LAYER_MAXPOOL2D:
            s.h = L->pool > 0 ? s.h / L->pool : 0;
            s.w = L->pool > 0 ? s.w / L->pool : 0;
            break;
        case UD_LAYER_FLATTEN:
            s = (struct ud_shape){(int)ud_shape_size(s), 1, 1};
            break;
        default:
            break;
        }
    }
    return s;
}

static int spatial(struct ud_shape s)
{
    return s.h > 1 || s.w > 1;
}

int ud_arch_check(const struct ud_arch *a, int nclasses, struct ud_err *e)
{
    struct ud_shape s = a->input;
    if (s.c <= 0 || s.h <= 0 || s.w <= 0 || s.c > UD_MAX_DIM || s.h > UD_MAX_DIM ||
        s.w > UD_MAX_DIM)
        return ud_err_set(e, UD_ESHAPE, "input shape (%d, %d, %d) must be positive and <= %d", s.c,
                          s.h, s.w, UD_MAX_DIM);
    if (a->nlayers < 2 || a->nlayers > UD_MAX_LAYERS)
        return ud_err_set(e, UD_EINVAL, "a network needs 2 to %d layers, got %d", UD_MAX_LAYERS,
                          a->nlayers);
    size_t nparams = 0;
    int conv_seen = 0; /* a conv or pool output is in a spatial layout until flatten */
    for (int i = 0; i < a->nlayers; i++) {
        const struct ud_layer_spec *L = &a->layer[i];
        const char *name = ud_layer_kind_name(L->kind);
        if (strcmp(name, "unknown") == 0)
            return ud_err_set(e, UD_EINVAL, "layer %d: unknown kind %d", i, (int)L->kind);
        if (L->kind == UD_LAYER_SOFTMAX && i != a->nlayers - 1)
            return ud_err_set(e, UD_EINVAL, "layer %d: softmax must be the last layer", i);
        if (i == a->nlayers - 1 && L->kind != UD_LAYER_SOFTMAX)
            return ud_err_set(e, UD_EINVAL, "the last layer must be softmax, not %s", name);
        switch (L->kind) {
        case UD_LAYER_DENSE:
            if (L->units <= 0 || L->units > UD_MAX_DIM)
                return ud_err_set(e, UD_ESHAPE, "layer %d (dense): units %d not in [1, %d]", i,
                                  L->units, UD_MAX_DIM);
            if (conv_seen && spatial(s))
                return ud_err_set(e, UD_ESHAPE,
                                  "layer %d (dense): input (%d, %d, %d) is spatial; add flatten", i,
                                  s.c, s.h, s.w);
            nparams += ud_shape_size(s) * (size_t)L->units + (size_t)L->units;
            break;
        case UD_LAYER_CONV2D:
            if (L->filters <= 0 || L->filters > UD_MAX_DIM || L->kernel <= 0 || L->kernel > 64 ||
                L->stride <= 0 || L->stride > 64 || L->pad < 0 || L->pad > 64)
                return ud_err_set(e, UD_ESHAPE,
                                  "layer %d (conv2d): filters %d kernel %d stride %d pad %d out of "
                                  "range",
                                  i, L->filters, L->kernel, L->stride, L->pad);
            if (i > 0 && !conv_seen && !spatial(s))
                return ud_err_set(e, UD_ESHAPE, "layer %d (conv2d): input is not spatial", i);
            if (s.h + 2 * L->pad < L->kernel || s.w + 2 * L->pad < L->kernel)
                return ud_err_set(e, UD_ESHAPE,
                                  "layer %d (conv2d): kernel %d larger than input %dx%d (pad %d)",
                                  i, L->kernel, s.h, s.w, L->pad);
            nparams += (size_t)L->filters * s.c * L->kernel * L->kernel + (size_t)L->filters;
            conv_seen = 1;
            break;
        case UD_LAYER_MAXPOOL2D:
            if (L->pool <= 0 || L->pool > s.h || L->pool > s.w)
                return ud_err_set(e, UD_ESHAPE, "layer %d (maxpool): size %d does not fit %dx%d", i,
                                  L->pool, s.h, s.w);
            conv_seen = 1;
            break;
        case UD_LAYER_DROPOUT:
            if (!(L->rate >= 0.0f && L->rate < 1.0f))
                return ud_err_set(e, UD_EINVAL, "layer %d (dropout): rate %g not in [0, 1)", i,
                                  (double)L->rate);
            break;
        case UD_LAYER_FLATTEN:
            conv_seen = 0;
            break;
        default:
            break;
        }
        s = ud_arch_shape(a, i);
        if (s.c <= 0 || s.h <= 0 || s.w <= 0)
            return ud_err_set(e, UD_ESHAPE, "layer %d (%s): output shape (%d, %d, %d) is empty", i,
                              name, s.c, s.h, s.w);
        if (ud_shape_size(s) > (size_t)UD_MAX_DIM * UD_MAX_DIM)
            return ud_err_set(e, UD_ELIMIT, "layer %d (%s): output of %zu values is too large", i,
                              name, ud_shape_size(s));
        if (nparams > UD_MAX_PARAMS)
            return ud_err_set(e, UD_ELIMIT, "more than %u parameters", UD_MAX_PARAMS);
    }
    const struct ud_layer_spec *pre = &a->layer[a->nlayers - 2];
    if (pre->kind != UD_LAYER_DENSE)
        return ud_err_set(e, UD_EINVAL, "the layer before softmax must be dense, not %s",
                          ud_layer_kind_name(pre->kind));
    if (nclasses > 0 && pre->units != nclasses)
        return ud_err_set(e, UD_ESHAPE,
                          "the last dense layer has %d units but there are %d classes", pre->units,
                          nclasses);
    if (pre->units < 2 || pre->units > UD_MAX_CLASSES)
        return ud_err_set(e, UD_ESHAPE, "%d classes: need 2 to %d", pre->units, UD_MAX_CLASSES);
    return 0;
}

int ud_arch_format(const struct ud_arch *a, char *buf, size_t len)
{
    size_t off = 0;
#define OUT(...)                                                                                   \
    do {                                                                                           \
        int n_ = snprintf(buf + off, off < len ? len - off : 0, __VA_ARGS__);                      \
        if (n_ < 0)                                                                                \
            return UD_EINVAL;                                                                      \
        off += (size_t)n_;                                                                         \
    } while (0)
    OUT("input %d %d %d\n", a->input.c, a->input.h, a->input.w);
    for (int i = 0; i < a->nlayers; i++) {
        const struct ud_layer_spec *L = &a->layer[i];
        switch (L->kind) {
        case UD_LAYER_DENSE:
            OUT("dense %d%s\n", L->units, L->updatable ? "" : " frozen");
            break;
        case UD_LAYER_CONV2D:
            OUT("conv2d %d %d pad=%d stride=%d%s\n", L->filters, L->kernel, L->pad, L->stride,
                L->updatable ? "" : " frozen");
            break;
        case UD_LAYER_MAXPOOL2D:
            OUT("maxpool %d\n", L->pool);
            break;
        case UD_LAYER_DROPOUT:
            OUT("dropout %.9g\n", (double)L->rate);
            break;
        default:
            OUT("%s\n", ud_layer_kind_name(L->kind));
            break;
        }
    }
#undef OUT
    return off < len ? 0 : UD_ELIMIT;
}

int ud_arch_from_option(const char *name, struct ud_arch *a, int *preset, struct ud_err *e)
{
    *preset = strcmp(name, "mlp") == 0 || strcmp(name, "cnn") == 0;
    if (*preset)
        return 0;
    int rc = ud_arch_load(name, a, e);
    if (rc == UD_ENOTFOUND)
        ud_err_set(e, rc, "--arch: '%s' is neither a preset (mlp, cnn) nor an existing spec file",
                   name);
    return rc;
}

int ud_arch_fit_data(const char *name, int preset, const char *data, struct ud_shape shape,
                     int nclasses, struct ud_arch *a, struct ud_err *e)
{
    if (preset)
        return ud_arch_preset(name, shape, nclasses, a, e);
    int rc = ud_arch_check(a, nclasses, e);
    if (rc) {
        char msg[UD_ERRMSG_MAX];
        snprintf(msg, sizeof msg, "%s", e->msg);
        return ud_err_set(e, rc, "%s: %s (the data has %d classes)", name, msg, nclasses);
    }
    if (ud_shape_size(a->input) != ud_shape_size(shape))
        return ud_err_set(
            e, UD_ESHAPE, "%s: the network takes (%d, %d, %d) inputs but %s holds (%d, %d, %d)",
            name, a->input.c, a->input.h, a->input.w, data, shape.c, shape.h, shape.w);
    return 0;
}
