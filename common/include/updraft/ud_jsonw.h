/*  ud_jsonw.h — writing JSON values to a stream (output only: programs print JSON lines).
 *  Parsing JSON is jansson's job, not ours. */
#ifndef UD_JSONW_H
#define UD_JSONW_H

#include <stdio.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Writes s as a JSON string literal (quoted, escaped; NULL writes null). */
void ud_json_str(FILE *f, const char *s);
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
