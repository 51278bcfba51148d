/*  ud_buf.h — a growable byte buffer for building text (JSON answers, reports) in memory.
 *
 *  A zeroed struct ud_buf is an empty buffer. Its text stays NUL-terminated (p is NULL until
 *  the first write). The first failed allocation sets oom; later writes are then dropped, so a
 *  caller checks oom once at the end instead of after every write. Not thread-safe: one buffer
 *  is written by one thread at a time.
 */
#ifndef UD_BUF_H
#define UD_BUF_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

struct ud_buf {
    char *p;    /* the text, NUL-terminated; owned by the buffer */
    size_t len; /* bytes written, without the NUL */
    size_t cap; /* bytes allocated */
    int oom;    /* an allocation failed: the text is incomplete */
};

/* Makes room for extra more bytes (and the NUL). Returns 0, or -1 with oom set. */
int ud_buf_reserve(struct ud_buf *b, size_t extra);
/* Appends n bytes of s. */
void ud_buf_put(struct ud_buf *b, const char *s, size_t n);
/* Appends the string s. */
void ud_buf_puts(struct ud_buf *b, const char *s);
/* Appends printf-formatted text. */
void ud_buf_printf(struct ud_buf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Frees the text and empties the buffer (it can be written again). */
void ud_buf_free(struct ud_buf *b);

#ifdef __cplusplus
}
#endif
#endif
