/*  ud_jsonw.c — JSON string escaping (one policy, into a stream or a buffer) and number
 *  formatting for program output. */
#include "updraft/ud_jsonw.h"

#include <math.h>

size_t ud_json_utf8_len(const unsigned char *s)
{
    unsigned c = s[0];
    if (c < 0x80)
        return 1;
    if (c >= 0xC2 && c <= 0xDF)
        return (s[1] & 0xC0) == 0x80 ? 2 : 0;
    if (c >= 0xE0 && c <= 0xEF) {
        unsigned lo = c == 0xE0 ? 0xA0 : 0x80, hi = c == 0xED ? 0x9F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 ? 3 : 0;
    }
    if (c >= 0xF0 && c <= 0xF4) {
        unsigned lo = c == 0xF0 ? 0x90 : 0x80, hi = c == 0xF4 ? 0x8F : 0xBF;
        return s[1] >= lo && s[1] <= hi && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 ? 4 : 0;
    }
    return 0;
}

/* Where the escaper writes: a stream or a buffer. */
typedef void (*json_put_fn)(void *to, const char *s, size_t n);

static void put_file(void *to, const char *s, size_t n)
{
    fwrite(s, 1, n, (FILE *)to);
}

static void put_buf(void *to, const char *s, size_t n)
{
    ud_buf_put((struct ud_buf *)to, s, n);
}

/* The one escaper: quotes, backslashes and control bytes escaped (\n \r \t short, the rest
 * \u00XX), valid UTF-8 kept, every byte of an invalid sequence replaced by U+FFFD. */
static void json_str(json_put_fn put, void *to, const char *s)
{
    if (!s) {
        put(to, "null", 4);
        return;
    }
    static const char hex[] = "0123456789abcdef";
    const unsigned char *p = (const unsigned char *)s;
    put(to, "\"", 1);
    while (*p) {
        const unsigned char *run = p;
        while (*p >= 0x20 && *p < 0x80 && *p != '"' && *p != '\\')
            p++;
        if (p > run)
            put(to, (const char *)run, (size_t)(p - run));
        if (!*p)
            break;
        size_t n = *p >= 0x80 ? ud_json_utf8_len(p) : 1;
        if (*p == '"' || *p == '\\') {
            char esc[2] = {'\\', (char)*p};
            put(to, esc, 2);
        } else if (*p == '\n' || *p == '\r' || *p == '\t') {
            char esc[2] = {'\\', *p == '\n' ? 'n' : *p == '\r' ? 'r' : 't'};
            put(to, esc, 2);
        } else if (*p < 0x20) {
            char esc[6] = {'\\', 'u', '0', '0', hex[*p >> 4], hex[*p & 15]};
            put(to, esc, 6);
        } else if (n) {
            put(to, (const char *)p, n);
        } else {
            put(to, "\\ufffd", 6);
            n = 1;
        }
        p += n;
    }
    put(to, "\"", 1);
}

void ud_json_str(FILE *f, const char *s)
{
    json_str(put_file, f, s);
}

void ud_json_str_buf(struct ud_buf *b, const char *s)
{
    json_str(put_buf, b, s);
}

void ud_json_num(FILE *f, double v)
{
    if (!isfinite(v))
        fputs("null", f);
    else if (fabs(v) < 1e15 && v == (double)(long long)v) /* in range before the cast */
        fprintf(f, "%lld", (long long)v);
    else
        fprintf(f, "%.9g", v);
}

void ud_json_str_array(FILE *f, const char *const *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        ud_json_str(f, v[i]);
    }
    fputc(']', f);
}

void ud_json_num_array(FILE *f, const double *v, int n)
{
    fputc('[', f);
    for (int i = 0; i < n; i++) {
        if (i)
            fputc(',', f);
        ud_json_num(f, v[i]);
    }
    fputc(']', f);
}

void ud_json_field(FILE *f, const char *key, double v)
{
    fputc(',', f);
    ud_json_str(f, key);
    fputc(':', f);
    ud_json_num(f, v);
}
