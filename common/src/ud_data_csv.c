/*  ud_data_csv.c — tabular data: a CSV file with a header row and a label column.
 *
 *  The reader follows RFC 4180 and what spreadsheets write: fields separated by commas,
 *  optionally quoted ("a,b", "say ""hi""", line breaks inside quotes), LF or CRLF line ends,
 *  an optional UTF-8 byte-order mark, blank lines ignored (so trailing ones are fine).
 *  Unquoted fields are trimmed of spaces and tabs; quoted ones are kept as written.
 *
 *  The label column is opts->label_column, else "label" when present, else the last column;
 *  every other column is a float feature, so a sample is (F, 1, 1) with F <= UD_MAX_DIM.
 *  Numbers are parsed in the C locale whatever the program's locale is. Labels are strings;
 *  the classes are the distinct labels sorted with strcmp.
 *
 *  A row with the wrong number of fields, a feature that is not a finite number, or an empty
 *  label is an error naming file:line (and the column); with skip_bad the row is left out and
 *  reported. An unterminated quote swallows the rest of the file and is always an error.
 */
#include "ud_data_impl.h"

#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct csv {
    const char *path;
    char *p, *end;
    size_t line; /* line the cursor is on, from 1 */
    char **f;    /* fields of the current record, up to fcap */
    size_t fcap;
    size_t nf;     /* fields in the current record (may exceed fcap) */
    size_t rline;  /* line the current record starts on */
    char bad[160]; /* a malformed record: why (the record was still consumed) */
};

static int is_blank(char c)
{
    return c == ' ' || c == '\t';
}

/* Consumes a line end at c->p, if any. */
static void eat_eol(struct csv *c)
{
    if (c->p < c->end && *c->p == '\r')
        c->p++;
    if (c->p < c->end && *c->p == '\n')
        c->p++;
    c->line++;
}

/* Skips lines holding nothing but spaces and tabs. */
static void skip_blank_lines(struct csv *c)
{
    while (c->p < c->end) {
        char *q = c->p;
        while (q < c->end && is_blank(*q))
            q++;
        if (q < c->end && *q != '\n' && *q != '\r')
            return;
        c->p = q;
        if (q == c->end)
            return;
        eat_eol(c);
    }
}

/* Parses the next record in place (fields unquoted and NUL-terminated inside the buffer).
 * Returns 1 for a record, 0 at the end of the data, or UD_EFORMAT (with e set) for an
 * unterminated quote. A record with other damage returns 1 with c->bad set. */
static int csv_next(struct csv *c, struct ud_err *e)
{
    skip_blank_lines(c);
    if (c->p >= c->end)
        return 0;
    c->nf = 0;
    c->bad[0] = '\0';
    c->rline = c->line;
    for (;;) {
        char *p = c->p;
        while (p < c->end && is_blank(*p))
            p++;
        char *start, *w;
        if (p < c->end && *p == '"') {
            size_t qline = c->line;
            start = w = p;
            p++;
            for (;;) {
                if (p >= c->end)
                    return ud_err_set(e, UD_EFORMAT,
                                      "%s:%zu: quoted field never closed (column %zu)", c->path,
                                      qline, c->nf + 1);
                if (*p == '"') {
                    if (p + 1 < c->end && p[1] == '"') {
                        *w++ = '"';
                        p += 2;
                        continue;
                    }
                    p++;
                    break;
                }
                if (*p == '\n')
                    c->line++;
                *w++ = *p++;
            }
            while (p < c->end && is_blank(*p))
                p++;
            if (p < c->end && *p != ',' && *p != '\n' && *p != '\r') {
                if (!c->bad[0])
                    snprintf(c->bad, sizeof c->bad,
                             "column %zu: unexpected text after a closing quote", c->nf + 1);
                while (p < c->end && *p != ',' && *p != '\n' && *p != '\r')
                    p++;
            }
        } else {
            start = p;
            while (p < c->end && *p != ',' && *p != '\n' && *p != '\r')
                p++;
            w = p;
            while (w > start && is_blank(w[-1]))
                w--;
        }
        char term = p < c->end ? *p : '\0';
        *w = '\0'; /* w <= p: never past the terminator we just read */
        if (c->nf < c->fcap)
            c->f[c->nf] = start;
        c->nf++;
        /* The terminator may just have been overwritten: go by term, not by *p. */
        c->p = p < c->end ? p + 1 : p;
        if (term == ',')
            continue;
        if (term == '\r' && c->p < c->end && *c->p == '\n')
            c->p++;
        if (term)
            c->line++;
        return 1;
    }
}

/* 0: a finite float in *out; 1: not a number; 2: not finite (nan, inf, out of float range). */
static int parse_float(const char *s, locale_t loc, float *out)
{
    char *end;
    double v = strtod_l(s, &end, loc);
    if (end == s)
        return 1;
    while (is_blank(*end))
        end++;
    if (*end)
        return 1;
    float f = (float)v;
    if (!isfinite(v) || !isfinite(f))
        return 2;
    *out = f;
    return 0;
}

static int cmp_strp(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* Parses buf[0..len) (buf[len] is a NUL; the text is modified in place, and not freed here);
 * path names it in messages and sources. */
static ud_dataset_t *csv_parse(const char *path, char *buf, size_t len,
                               const struct ud_load_opts *opts, struct ud_err *e)
{
    static const struct ud_load_opts no_opts;
    if (!opts)
        opts = &no_opts;
    ud_dataset_t *ds = NULL;
    char **hdr = NULL, **labs = NULL, **uniq = NULL;
    float *fx = NULL;
    size_t *lines = NULL;
    struct csv c = {.path = path};
    struct ud__sbuf src = {0};
    locale_t loc = (locale_t)0;

    const char *nul = memchr(buf, '\0', len);
    if (nul) {
        ud_err_set(e, UD_EFORMAT, "%s: NUL byte at offset %zu (not a text file)", path,
                   (size_t)(nul - buf));
        goto out_fail;
    }
    loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    c.fcap = UD_DATA_MAX_CSV_COLUMNS + 1;
    c.f = malloc(c.fcap * sizeof *c.f);
    if (!loc || !c.f) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        goto out_fail;
    }
    c.p = buf;
    c.end = buf + len;
    c.line = 1;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        c.p += 3;

    /* Header. */
    int r = csv_next(&c, e);
    if (r < 0)
        goto out_fail;
    if (r == 0) {
        ud_err_set(e, UD_EEMPTY, "%s: empty file (a header row is required)", path);
        goto out_fail;
    }
    if (c.bad[0]) {
        ud_err_set(e, UD_EFORMAT, "%s:%zu: header: %s", path, c.rline, c.bad);
        goto out_fail;
    }
    size_t ncols = c.nf;
    if (ncols > UD_DATA_MAX_CSV_COLUMNS) {
        ud_err_set(e, UD_ELIMIT, "%s: %zu columns, over the limit of %d (%d features + label)",
                   path, ncols, UD_DATA_MAX_CSV_COLUMNS, UD_MAX_DIM);
        goto out_fail;
    }
    if (ncols < 2) {
        ud_err_set(e, UD_EFORMAT,
                   "%s:%zu: the header has %zu column; need a label and at least one feature", path,
                   c.rline, ncols);
        goto out_fail;
    }
    hdr = malloc(ncols * sizeof *hdr);
    if (!hdr) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        goto out_fail;
    }
    memcpy(hdr, c.f, ncols * sizeof *hdr); /* they point into buf, before any later record */
    size_t lc = ncols - 1;
    const char *want = opts->label_column ? opts->label_column : "label";
    size_t k;
    for (k = 0; k < ncols && strcmp(hdr[k], want) != 0; k++)
        ;
    if (k < ncols) {
        lc = k;
    } else if (opts->label_column) {
        ud_err_set(e, UD_ENOTFOUND, "%s: no column named \"%s\" for the labels", path, want);
        goto out_fail;
    }
    size_t nfeat = ncols - 1;

    /* Rows. */
    size_t n = 0, cap = 0;
    size_t limit = opts->max_samples ? opts->max_samples : UD_DATA_MAX_SAMPLES;
    while (n < limit) {
        r = csv_next(&c, e);
        if (r < 0)
            goto out_fail;
        if (r == 0)
            break;
        char why[UD_ERRMSG_MAX];
        int code = 0;
        if (c.bad[0]) {
            code = UD_EFORMAT;
            snprintf(why, sizeof why, "%s:%zu: %s", path, c.rline, c.bad);
        } else if (c.nf != ncols) {
            code = UD_EFORMAT;
            snprintf(why, sizeof why, "%s:%zu: expected %zu fields (as in the header), got %zu",
                     path, c.rline, ncols, c.nf);
        }
        if (!code && n == cap) {
            size_t ncap = cap ? cap * 2 : 256;
            if ((uint64_t)ncap * nfeat * sizeof(float) > UD_DATA_MAX_BYTES) {
                ud_err_set(e, UD_ELIMIT, "%s: too many rows (over %llu bytes of features)", path,
                           (unsigned long long)UD_DATA_MAX_BYTES);
                goto out_fail;
            }
            float *nfx = realloc(fx, ncap * nfeat * sizeof *nfx);
            if (nfx)
                fx = nfx;
            char **nl = realloc(labs, ncap * sizeof *nl);
            if (nl)
                labs = nl;
            size_t *nln = realloc(lines, ncap * sizeof *nln);
            if (nln)
                lines = nln;
            if (!nfx || !nl || !nln) {
                ud_err_set(e, UD_ENOMEM, "%s: out of memory for %zu rows", path, ncap);
                goto out_fail;
            }
            cap = ncap;
        }
        float *row = code ? NULL : fx + n * nfeat;
        for (size_t j = 0, o = 0; !code && j < ncols; j++) {
            if (j == lc)
                continue;
            int pr = parse_float(c.f[j], loc, &row[o++]);
            if (pr) {
                code = pr == 1 ? UD_EFORMAT : UD_ENONFINITE;
                snprintf(why, sizeof why, "%s:%zu:%zu: column \"%.60s\": %s \"%.40s\"", path,
                         c.rline, j + 1, hdr[j], pr == 1 ? "not a number:" : "not finite:", c.f[j]);
            }
        }
        if (!code && c.f[lc][0] == '\0') {
            code = UD_EFORMAT;
            snprintf(why, sizeof why, "%s:%zu:%zu: empty label", path, c.rline, lc + 1);
        }
        if (code) {
            if (!opts->skip_bad) {
                ud_err_set(e, code, "%s", why);
                goto out_fail;
            }
            ud__data_warn(opts, "%s; row skipped", why);
            if (!ds) {
                ds = ud__dataset_alloc(e);
                if (!ds)
                    goto out_fail;
            }
            ds->skipped++;
            continue;
        }
        labs[n] = c.f[lc];
        lines[n] = c.rline;
        n++;
    }
    if (n == 0) {
        ud_err_set(e, UD_EEMPTY, "%s: no data rows (%zu skipped)", path, ds ? ds->skipped : 0);
        goto out_fail;
    }

    /* Classes: the distinct labels, sorted. */
    uniq = malloc(n * sizeof *uniq);
    if (!uniq) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        goto out_fail;
    }
    memcpy(uniq, labs, n * sizeof *uniq);
    qsort(uniq, n, sizeof *uniq, cmp_strp);
    size_t nu = 0;
    for (size_t i = 0; i < n; i++)
        if (nu == 0 || strcmp(uniq[nu - 1], uniq[i]) != 0)
            uniq[nu++] = uniq[i];
    if (nu > UD_MAX_CLASSES) {
        ud_err_set(e, UD_ELIMIT,
                   "%s: %zu distinct labels in column \"%s\", over the limit of %d classes "
                   "(is that the label column?)",
                   path, nu, hdr[lc], UD_MAX_CLASSES);
        goto out_fail;
    }
    if (!ds && !(ds = ud__dataset_alloc(e)))
        goto out_fail;
    ds->shape = (struct ud_shape){(int)nfeat, 1, 1};
    ds->isize = nfeat;
    ds->u8 = 0;
    ds->label = malloc(n * sizeof *ds->label);
    ds->src_off = malloc(n * sizeof *ds->src_off);
    ds->classes = calloc(nu, sizeof *ds->classes);
    if (!ds->label || !ds->src_off || !ds->classes) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        goto out_fail;
    }
    ds->nclasses = (int)nu;
    for (size_t u = 0; u < nu; u++) {
        if (!(ds->classes[u] = strdup(uniq[u]))) {
            ud_err_set(e, UD_ENOMEM, "out of memory");
            goto out_fail;
        }
    }
    for (size_t i = 0; i < n; i++) {
        char **hit = bsearch(&labs[i], uniq, nu, sizeof *uniq, cmp_strp);
        ds->label[i] = (int32_t)(hit - uniq);
        if (ud__sbuf_addf(&src, &ds->src_off[i], "%s:%zu", path, lines[i])) {
            ud_err_set(e, UD_ENOMEM, "out of memory");
            goto out_fail;
        }
    }
    float *shrunk = realloc(fx, n * nfeat * sizeof *fx);
    ds->fx = shrunk ? shrunk : fx;
    fx = NULL;
    ds->n = n;
    ds->src_pool = src.p;
    src.p = NULL;

    free(uniq);
    free(lines);
    free(labs);
    free(hdr);
    free(c.f);
    freelocale(loc);
    return ds;

out_fail:
    ud_dataset_destroy(&ds);
    free(src.p);
    free(uniq);
    free(lines);
    free(labs);
    free(fx);
    free(hdr);
    free(c.f);
    if (loc)
        freelocale(loc);
    return NULL;
}

ud_dataset_t *ud_dataset_load_csv(const char *path, const struct ud_load_opts *opts,
                                  struct ud_err *e)
{
    char *buf;
    size_t len;
    if (ud__data_read_file(path, UD_DATA_MAX_CSV_FILE, &buf, &len, e))
        return NULL;
    ud_dataset_t *ds = csv_parse(path, buf, len, opts, e);
    free(buf);
    return ds;
}

ud_dataset_t *ud__dataset_csv_mem(const void *data, size_t len, const char *name,
                                  const struct ud_load_opts *opts, struct ud_err *e)
{
    if (len > UD_DATA_MAX_CSV_FILE) {
        ud_err_set(e, UD_ELIMIT, "%s: %zu bytes, over the limit of %zu for a CSV file", name, len,
                   UD_DATA_MAX_CSV_FILE);
        return NULL;
    }
    char *buf = malloc(len + 1);
    if (!buf) {
        ud_err_set(e, UD_ENOMEM, "%s: out of memory", name);
        return NULL;
    }
    memcpy(buf, data, len);
    buf[len] = '\0';
    ud_dataset_t *ds = csv_parse(name, buf, len, opts, e);
    free(buf);
    return ds;
}
