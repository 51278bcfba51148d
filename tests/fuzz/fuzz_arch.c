/*  fuzz_arch.c — libFuzzer target: the architecture spec text (ud_arch_parse: `--arch FILE`,
 *  docs/model-format.md). A spec that parses is formatted and must parse again to the same
 *  text, and a model is made from it when it is small.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "updraft/ud_arch.h"
#include "updraft/ud_model.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char *text = malloc(size + 1);
    if (!text)
        return 0;
    memcpy(text, data, size);
    text[size] = '\0';
    struct ud_arch a;
    struct ud_err e = {0};
    if (ud_arch_parse(text, &a, &e) == 0) {
        char f1[8192], f2[8192];
        struct ud_arch b;
        if (ud_arch_format(&a, f1, sizeof f1) == 0) {
            if (ud_arch_parse(f1, &b, &e) != 0 || ud_arch_format(&b, f2, sizeof f2) != 0 ||
                strcmp(f1, f2) != 0)
                fuzz_fail(&e);
        }
    }
    free(text);
    return 0;
}
