/*  ud_jsonw.c — JSON string escaping and number formatting for program output. */
#include "updraft/ud_jsonw.h"

#include <math.h>

void ud_json_str(FILE *f, const char *s)
{
    if (!s) {
        fputs("null", f);
        return;
    }
    fputc('"', f);
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        switch (*p) {
        case '"':
            fputs("\\\"", f);
            break;
        case '\\':
            fputs("\\\\", f);
            break;
        case '\n':
            fputs("\\n", f);
            break;
        case '\r':
            fputs("\\r", f);
            break;
        case '\t':
            fputs("\\t", f);
            break;
        default:
            if (*p < 0x20)
                fprintf(f, "\\u%04x", *p);
            else
                fputc(*p, f);
        }
    }
    fputc('"', f);
}

void ud_json_num(FILE *f, double v)
{
    if (!isfinite(v))
        fputs("null", f);
    else if (v == (double)(long long)v && fabs(v) < 1e15)
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
