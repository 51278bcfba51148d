/*  fuzz_seal.c — libFuzzer target: sealed model files and key files, what a device reads before
 *  it trusts anything (ud_seal.h, ud_keys.h). The first byte picks the path:
 *    0: ud_seal_inspect, then ud_seal_open with no keys (a trusted place's reader);
 *    1: ud_seal_decode_model verifying against a fixed public key and decrypting with a fixed
 *       model key (the agent's path: a seed sealed with these keys reaches the .udm parser);
 *    2: ud_key_parse of the rest as a key file, for each key type.
 *  The fixed keys come from constant seeds, so tests/fuzz/corpus/fuzz_seal holds files signed
 *  and encrypted with them (made by gen_corpus).
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "updraft/ud_keys.h"
#include "updraft/ud_model.h"
#include "updraft/ud_seal.h"

/* The fuzzing keys: signing seed 0x01 x 32, model key 0x02 x 32 (gen_corpus uses the same). */
static struct ud_key g_pub, g_model;

static void keys_init(void)
{
    static int done;
    if (done)
        return;
    done = 1;
    if (sodium_init() < 0)
        abort();
    uint8_t seed[32], sk[64];
    memset(seed, 1, sizeof seed);
    memset(&g_pub, 0, sizeof g_pub);
    crypto_sign_seed_keypair(g_pub.pub, sk, seed);
    /* The ids come from the key file parser, as in the product. */
    char hex[65], text[128];
    struct ud_err e = {0};
    sodium_bin2hex(hex, sizeof hex, g_pub.pub, 32);
    snprintf(text, sizeof text, "updraft-key 1 sign-public %s\n", hex);
    if (ud_key_parse(text, strlen(text), "fuzz", UD_KEY_SIGN_PUBLIC, &g_pub, &e))
        abort();
    memset(seed, 2, sizeof seed);
    sodium_bin2hex(hex, sizeof hex, seed, 32);
    snprintf(text, sizeof text, "updraft-key 1 model-key %s\n", hex);
    if (ud_key_parse(text, strlen(text), "fuzz", UD_KEY_MODEL, &g_model, &e))
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    keys_init();
    if (size < 1)
        return 0;
    unsigned mode = data[0] % 3;
    data++;
    size--;
    struct ud_err e = {0};
    if (mode == 0) {
        struct ud_seal_info info;
        ud_seal_inspect(data, size, &info, &e);
        char *plain = NULL;
        size_t n = 0;
        struct ud_seal_keys none = {NULL, NULL};
        if (ud_seal_open(data, size, &none, &plain, &n, &info, &e) == 0)
            free(plain);
    } else if (mode == 1) {
        struct ud_seal_keys keys = {&g_pub, &g_model};
        ud_model_t *m = ud_seal_decode_model(data, size, &keys, NULL, &e);
        ud_model_destroy(&m);
    } else {
        struct ud_key k;
        for (int t = UD_KEY_SIGN_SECRET; t <= UD_KEY_CURVE_PUBLIC; t++)
            if (ud_key_parse((const char *)data, size, "fuzz", (enum ud_key_type)t, &k, &e) == 0)
                ud_key_wipe(&k);
    }
    return 0;
}
