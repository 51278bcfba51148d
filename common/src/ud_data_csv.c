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

/* One CSV parse: the reader, the header, then the rows as they are read (labels and line
 * numbers point into and refer to the text). Every step below returns 0 or a UD_E* code with e
 * set, and leaves what it made here for parse_free. */
struct csv_load {
    const char *path;
    const struct ud_load_opts *opts;
    struct csv c;
    locale_t loc;
    char **hdr;              /* the header's fields (point into the text) */
    size_t ncols, lc, nfeat; /* columns, the label column, feature columns */
    float *fx;               /* (n, nfeat) */
    char **labs;             /* (n) label of each row kept */
    size_t *lines;           /* (n) line each row kept starts on */
    size_t n, cap, skipped;
    char **uniq; /* the distinct labels, sorted (nu of them) */
    size_t nu;
};

static void parse_free(struct csv_load *L)
{
    free(L->uniq);
    free(L->lines);
    free(L->labs);
    free(L->fx);
    free(L->hdr);
    free(L->c.f);
    if (L->loc)
        freelocale(L->loc);
}

/* Sets up the reader on buf[0..len): text only, the C locale, an optional BOM skipped. */
static int parse_begin(struct csv_load *L, char *buf, size_t len, struct ud_err *e)
{
    const char *nul = memchr(buf, '\0', len);
    if (nul)
        return ud_err_set(e, UD_EFORMAT, "%s: NUL byte at offset %zu (not a text file)", L->path,
                          (size_t)(nul - buf));
    L->loc = newlocale(LC_ALL_MASK, "C", (locale_t)0);
    L->c.fcap = UD_DATA_MAX_CSV_COLUMNS + 1;
    L->c.f = malloc(L->c.fcap * sizeof *L->c.f);
    if (!L->loc || !L->c.f)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    L->c.p = buf;
    L->c.end = buf + len;
    L->c.line = 1;
    if (len >= 3 && memcmp(buf, "\xEF\xBB\xBF", 3) == 0)
        L->c.p += 3;
    return 0;
}

/* The header row: the column count and which column holds the labels. */
static int read_header(struct csv_load *L, struct ud_err *e)
{
    struct csv *c = &L->c;
    int r = csv_next(c, e);
    if (r < 0)
        return r;
    if (r == 0)
        return ud_err_set(e, UD_EEMPTY, "%s: empty file (a header row is required)", L->path);
    if (c->bad[0])
        return ud_err_set(e, UD_EFORMAT, "%s:%zu: header: %s", L->path, c->rline, c->bad);
    L->ncols = c->nf;
    if (L->ncols > UD_DATA_MAX_CSV_COLUMNS)
        return ud_err_set(e, UD_ELIMIT,
                          "%s: %zu columns, over the limit of %d (%d features + label)", L->path,
                          L->ncols, UD_DATA_MAX_CSV_COLUMNS, UD_MAX_DIM);
    if (L->ncols < 2)
        return ud_err_set(
            e, UD_EFORMAT,
            "%s:%zu: the header has %zu column; need a label and at least one feature", L->path,
            c->rline, L->ncols);
    L->hdr = malloc(L->ncols * sizeof *L->hdr);
    if (!L->hdr)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    memcpy(L->hdr, c->f,
           L->ncols * sizeof *L->hdr); /* they point into buf, before any later record */
    const char *want = L->opts->label_column ? L->opts->label_column : "label";
    size_t k;
    for (k = 0; k < L->ncols && strcmp(L->hdr[k], want) != 0; k++)
        ;
    if (k == L->ncols && L->opts->label_column)
        return ud_err_set(e, UD_ENOTFOUND, "%s: no column named \"%s\" for the labels", L->path,
                          want);
    L->lc = k < L->ncols ? k : L->ncols - 1;
    L->nfeat = L->ncols - 1;
    return 0;
}

/* Doubles the room for rows when it is full. */
static int grow_rows(struct csv_load *L, struct ud_err *e)
{
    if (L->n < L->cap)
        return 0;
    size_t ncap = L->cap ? L->cap * 2 : 256;
    if ((uint64_t)ncap * L->nfeat * sizeof(float) > UD_DATA_MAX_BYTES)
        return ud_err_set(e, UD_ELIMIT, "%s: too many rows (over %llu bytes of features)", L->path,
                          (unsigned long long)UD_DATA_MAX_BYTES);
    float *nfx = realloc(L->fx, ncap * L->nfeat * sizeof *nfx);
    if (nfx)
        L->fx = nfx;
    char **nl = realloc(L->labs, ncap * sizeof *nl);
    if (nl)
        L->labs = nl;
    size_t *nln = realloc(L->lines, ncap * sizeof *nln);
    if (nln)
        L->lines = nln;
    if (!nfx || !nl || !nln)
        return ud_err_set(e, UD_ENOMEM, "%s: out of memory for %zu rows", L->path, ncap);
    L->cap = ncap;
    return 0;
}

/* Checks the current record and parses its features into row (nfeat floats). Returns 0, or
 * the UD_E* code of what is wrong with the row (why says so, naming file:line[:column]). */
static int parse_row(struct csv_load *L, float *row, char *why, size_t wsz)
{
    const struct csv *c = &L->c;
    for (size_t j = 0, o = 0; j < L->ncols; j++) {
        if (j == L->lc)
            continue;
        int pr = parse_float(c->f[j], L->loc, &row[o++]);
        if (pr) {
            snprintf(why, wsz, "%s:%zu:%zu: column \"%.60s\": %s \"%.40s\"", L->path, c->rline,
                     j + 1, L->hdr[j], pr == 1 ? "not a number:" : "not finite:", c->f[j]);
            return pr == 1 ? UD_EFORMAT : UD_ENONFINITE;
        }
    }
    if (c->f[L->lc][0] == '\0') {
        snprintf(why, wsz, "%s:%zu:%zu: empty label", L->path, c->rline, L->lc + 1);
        return UD_EFORMAT;
    }
    return 0;
}

/* Reads the current record as row n: a bad row fails, or under skip_bad is counted, reported
 * and left out. */
static int read_row(struct csv_load *L, struct ud_err *e)
{
    const struct csv *c = &L->c;
    char why[UD_ERRMSG_MAX];
    int code = 0;
    if (c->bad[0]) {
        code = UD_EFORMAT;
        snprintf(why, sizeof why, "%s:%zu: %s", L->path, c->rline, c->bad);
    } else if (c->nf != L->ncols) {
        code = UD_EFORMAT;
        snprintf(why, sizeof why, "%s:%zu: expected %zu fields (as in the header), got %zu",
                 L->path, c->rline, L->ncols, c->nf);
    } else {
        int rc = grow_rows(L, e);
        if (rc)
            return rc;
        code = parse_row(L, L->fx + L->n * L->nfeat, why, sizeof why);
    }
    if (code) {
        if (!L->opts->skip_bad)
            return ud_err_set(e, code, "%s", why);
        ud__data_warn(L->opts, "%s; row skipped", why);
        L->skipped++;
        return 0;
    }
    L->labs[L->n] = c->f[L->lc];
    L->lines[L->n] = c->rline;
    L->n++;
    return 0;
}

/* The data rows, up to max_samples of them. */
static int read_rows(struct csv_load *L, struct ud_err *e)
{
    size_t limit = L->opts->max_samples ? L->opts->max_samples : UD_DATA_MAX_SAMPLES;
    while (L->n < limit) {
        int r = csv_next(&L->c, e);
        if (r < 0)
            return r;
        if (r == 0)
            break;
        if ((r = read_row(L, e)))
            return r;
    }
    if (L->n == 0)
        return ud_err_set(e, UD_EEMPTY, "%s: no data rows (%zu skipped)", L->path, L->skipped);
    return 0;
}

/* The classes: the distinct labels, sorted. */
static int find_classes(struct csv_load *L, struct ud_err *e)
{
    L->uniq = malloc(L->n * sizeof *L->uniq);
    if (!L->uniq)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    memcpy(L->uniq, L->labs, L->n * sizeof *L->uniq);
    qsort(L->uniq, L->n, sizeof *L->uniq, cmp_strp);
    size_t nu = 0;
    for (size_t i = 0; i < L->n; i++)
        if (nu == 0 || strcmp(L->uniq[nu - 1], L->uniq[i]) != 0)
            L->uniq[nu++] = L->uniq[i];
    L->nu = nu;
    if (nu > UD_MAX_CLASSES)
        return ud_err_set(e, UD_ELIMIT,
                          "%s: %zu distinct labels in column \"%s\", over the limit of %d classes "
                          "(is that the label column?)",
                          L->path, nu, L->hdr[L->lc], UD_MAX_CLASSES);
    return 0;
}

/* Fills ds from the rows read: features (moved), class names, labels and sources. */
static int fill_dataset(struct csv_load *L, ud_dataset_t *ds, struct ud_err *e)
{
    size_t n = L->n;
    struct ud__sbuf src = {0};
    ds->shape = (struct ud_shape){(int)L->nfeat, 1, 1};
    ds->isize = L->nfeat;
    ds->u8 = 0;
    ds->skipped = L->skipped;
    ds->label = malloc(n * sizeof *ds->label);
    ds->src_off = malloc(n * sizeof *ds->src_off);
    ds->classes = calloc(L->nu, sizeof *ds->classes);
    if (!ds->label || !ds->src_off || !ds->classes)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    ds->nclasses = (int)L->nu;
    for (size_t u = 0; u < L->nu; u++)
        if (!(ds->classes[u] = strdup(L->uniq[u])))
            return ud_err_set(e, UD_ENOMEM, "out of memory");
    for (size_t i = 0; i < n; i++) {
        char **hit = bsearch(&L->labs[i], L->uniq, L->nu, sizeof *L->uniq, cmp_strp);
        ds->label[i] = (int32_t)(hit - L->uniq);
        if (ud__sbuf_addf(&src, &ds->src_off[i], "%s:%zu", L->path, L->lines[i])) {
            free(src.p);
            return ud_err_set(e, UD_ENOMEM, "out of memory");
        }
    }
    float *shrunk = realloc(L->fx, n * L->nfeat * sizeof *L->fx);
    ds->fx = shrunk ? shrunk : L->fx;
    L->fx = NULL;
    ds->n = n;
    ds->src_pool = src.p;
    return 0;
}

/* Parses buf[0..len) (buf[len] is a NUL; the text is modified in place, and not freed here);
 * path names it in messages and sources. */
static ud_dataset_t *csv_parse(const char *path, char *buf, size_t len,
                               const struct ud_load_opts *opts, struct ud_err *e)
{
    static const struct ud_load_opts no_opts;
    struct csv_load L = {.path = path, .opts = opts ? opts : &no_opts, .c = {.path = path}};
    ud_dataset_t *ds = NULL;
    if (parse_begin(&L, buf, len, e) || read_header(&L, e) || read_rows(&L, e) ||
        find_classes(&L, e) || !(ds = ud__dataset_alloc(e)) || fill_dataset(&L, ds, e))
        ud_dataset_destroy(&ds);
    parse_free(&L);
    return ds;
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
