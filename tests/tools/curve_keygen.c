/*  curve_keygen.c — a CURVE keypair for tests: `curve_keygen SECRET.key PUBLIC.pub` writes a
 *  fresh curve-secret key file (mode 0600) and its curve-public half (ud_keys.h format).
 *  `updraft keys generate` is the operator's tool; this keeps the tests independent of it.
 */
#include <stdio.h>

#include "updraft/ud_keys.h"

int main(int argc, char **argv)
{
    if (argc != 3) {
        fprintf(stderr, "usage: curve_keygen SECRET.key PUBLIC.pub\n");
        return 2;
    }
    struct ud_key k, p;
    struct ud_err e = {0};
    if (ud_key_generate(UD_KEY_CURVE_SECRET, &k, &e) || ud_key_write(argv[1], &k, false, &e) ||
        ud_key_public(&k, &p, &e) || ud_key_write(argv[2], &p, false, &e)) {
        fprintf(stderr, "curve_keygen: %s\n", e.msg);
        return 1;
    }
    printf("%s\n", k.id);
    ud_key_wipe(&k);
    return 0;
}
