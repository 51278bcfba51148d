/*  ud_buf.c — a growable byte buffer (see ud_buf.h). */
#include "updraft/ud_buf.h"

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int ud_buf_reserve(struct ud_buf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (extra > SIZE_MAX / 2 - b->len) {
        b->oom = 1;
        return -1;
    }
    size_t need = b->len + extra + 1;
    if (need <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap * 2 : 1024;
    while (cap < need)
        cap *= 2;
    char *p = realloc(b->p, cap);
    if (!p) {
        b->oom = 1;
        return -1;
    }
    b->p = p;
    b->cap = cap;
    return 0;
}

void ud_buf_put(struct ud_buf *b, const char *s, size_t n)
{
    if (ud_buf_reserve(b, n))
        return;
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

void ud_buf_puts(struct ud_buf *b, const char *s)
{
    ud_buf_put(b, s, strlen(s));
}

void ud_buf_printf(struct ud_buf *b, const char *fmt, ...)
{
    char tmp[256];
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(tmp, sizeof tmp, fmt, ap);
    va_end(ap);
    if (n < 0)
        return;
    if ((size_t)n < sizeof tmp) {
        ud_buf_put(b, tmp, (size_t)n);
        return;
    }
    if (ud_buf_reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->p + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void ud_buf_free(struct ud_buf *b)
{
    free(b->p);
    memset(b, 0, sizeof *b);
}
