/*  ud_jsonw.h — writing JSON values to a stream or a buffer (output only: programs print JSON
 *  lines, the coordinator builds its answers). Parsing JSON is jansson's job, not ours.
 *
 *  Strings always come out as valid JSON in UTF-8: quotes, backslashes and control bytes are
 *  escaped, and bytes that are not valid UTF-8 (stray continuation bytes, overlong forms,
 *  surrogates, past U+10FFFF) become U+FFFD, one per byte. */
#ifndef UD_JSONW_H
#define UD_JSONW_H

#include <stdio.h>

#include "updraft/ud_buf.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Writes s as a JSON string literal (quoted, escaped, invalid UTF-8 as U+FFFD; NULL writes
 * null). */
void ud_json_str(FILE *f, const char *s);
/* The same, appended to b. */
void ud_json_str_buf(struct ud_buf *b, const char *s);
/* Length of the valid UTF-8 sequence at s (1..4), or 0 when the bytes there are not one
 * (overlong forms, surrogates and code points past U+10FFFF included). Reads at most up to
 * the first byte that does not fit, so a NUL-terminated s is never overrun. */
size_t ud_json_utf8_len(const unsigned char *s);
/* Writes v as a JSON number with up to 9 significant digits, or null when not finite. */
void ud_json_num(FILE *f, double v);
/* Writes ,"key":v (v as ud_json_num): one more field of an object already opened. */
void ud_json_field(FILE *f, const char *key, double v);
/* Writes [v0,v1,...] of n strings (each as ud_json_str) or numbers (each as ud_json_num). */
void ud_json_str_array(FILE *f, const char *const *v, int n);
void ud_json_num_array(FILE *f, const double *v, int n);

#ifdef __cplusplus
}
#endif
#endif
