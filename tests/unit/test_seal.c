/*  test_seal.c — key files (ud_keys.h) and sealed model files (ud_seal.h): generate/write/read
 *  round trips and refusals (wrong type, bad hex, mismatched halves, a world-readable secret);
 *  sign/verify; encrypt/decrypt; encrypt-then-sign; each failure with its own code: unsigned,
 *  signed by another key, a flipped byte anywhere in a signed file, another model key, a
 *  flipped byte in an encrypted file, truncation, trailing bytes and forged lengths.
 */
#include "ud_test.h"

#include <stdio.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

#include "updraft/ud_arch.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_model.h"
#include "updraft/ud_seal.h"
#include "updraft/ud_udm.h"

static const char *const SPEC = "input 1 4 4\nflatten\ndense 8\nrelu\ndense 3\nsoftmax\n";

static void encode(ud_model_t *m, char **buf, size_t *len)
{
    struct ud_err e = {0};
    if (ud_udm_encode(m, buf, len, &e))
        fail_msg("ud_udm_encode: %s", e.msg);
}

static void test_key_files(void **state)
{
    (void)state;
    const char *dir = ud_test_fresh_path("keys");
    ud_test_mkdirs(dir);
    char path[700], pub[700];
    snprintf(path, sizeof path, "%s/sign.key", dir);
    snprintf(pub, sizeof pub, "%s/sign.pub", dir);
    struct ud_err e = {0};
    struct ud_key k, p, r;
    assert_int_equal(ud_key_generate(UD_KEY_SIGN_SECRET, &k, &e), 0);
    assert_int_equal(strlen(k.id), UD_KEY_ID_LEN);
    assert_int_equal(ud_key_write(path, &k, false, &e), 0);
    assert_int_equal(ud_key_write(path, &k, false, &e), UD_ECONFLICT);
    struct stat st;
    assert_int_equal(stat(path, &st), 0);
    assert_int_equal(st.st_mode & 0777, 0600);
    assert_int_equal(ud_key_public(&k, &p, &e), 0);
    assert_int_equal(ud_key_write(pub, &p, false, &e), 0);

    /* Round trips; a secret file also gives its public half. */
    assert_int_equal(ud_key_read(path, UD_KEY_SIGN_SECRET, &r, &e), 0);
    assert_memory_equal(r.sec, k.sec, 64);
    assert_string_equal(r.id, k.id);
    assert_int_equal(ud_key_read(path, UD_KEY_SIGN_PUBLIC, &r, &e), 0);
    assert_int_equal(r.type, UD_KEY_SIGN_PUBLIC);
    assert_memory_equal(r.pub, k.pub, 32);
    assert_true(r.sec[0] == 0 && memcmp(r.sec, r.sec + 1, 63) == 0);
    assert_int_equal(ud_key_read(pub, UD_KEY_SIGN_PUBLIC, &r, &e), 0);
    assert_string_equal(r.id, k.id);

    /* The wrong kind of key is named. */
    assert_int_equal(ud_key_read(pub, UD_KEY_SIGN_SECRET, &r, &e), UD_EINVAL);
    assert_msg_has(&e, "is a sign-public key, not a sign-secret key");
    assert_int_equal(ud_key_read(pub, UD_KEY_MODEL, &r, &e), UD_EINVAL);

    /* A secret others can read is refused. */
    assert_int_equal(chmod(path, 0644), 0);
    assert_int_equal(ud_key_read(path, UD_KEY_SIGN_SECRET, &r, &e), UD_EAUTH);
    assert_msg_has(&e, "chmod 600");

    /* Curve: the public half must match the secret. */
    struct ud_key c;
    assert_int_equal(ud_key_generate(UD_KEY_CURVE_SECRET, &c, &e), 0);
    char hs[65], hp[65], text[300];
    sodium_bin2hex(hs, sizeof hs, c.sec, 32);
    sodium_bin2hex(hp, sizeof hp, c.pub, 32);
    snprintf(text, sizeof text, "# comment\n\nupdraft-key 1 curve-secret %s%s\n", hs, hp);
    assert_int_equal(ud_key_parse(text, strlen(text), "t", UD_KEY_CURVE_SECRET, &r, &e), 0);
    assert_memory_equal(r.pub, c.pub, 32);
    hp[0] = hp[0] == '0' ? '1' : '0';
    snprintf(text, sizeof text, "updraft-key 1 curve-secret %s%s\n", hs, hp);
    assert_int_equal(ud_key_parse(text, strlen(text), "t", UD_KEY_CURVE_SECRET, &r, &e),
                     UD_EFORMAT);
    assert_msg_has(&e, "does not match");

    /* Malformed lines. */
    const char *bad[] = {"",
                         "# only a comment\n",
                         "updraft-key 2 model-key 00\n",
                         "updraft-key 1 model-key 0011\n",
                         "updraft-key 1 nonsense 00\n",
                         "ssh-ed25519 AAAA\n"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        assert_true(ud_key_parse(bad[i], strlen(bad[i]), "t", UD_KEY_MODEL, &r, &e) < 0);
    /* A key field longer than any key (sscanf's bound, not the buffer, must stop it). */
    char longline[700];
    int w = snprintf(longline, sizeof longline, "updraft-key 1 sign-secret ");
    memset(longline + w, 'a', 600);
    longline[w + 600] = '\n';
    longline[w + 601] = '\0';
    assert_int_equal(ud_key_parse(longline, strlen(longline), "t", UD_KEY_SIGN_SECRET, &r, &e),
                     UD_EFORMAT);

    unlink(path);
    unlink(pub);
    rmdir(dir);
}

static void test_sign_verify(void **state)
{
    (void)state;
    struct ud_err e = {0};
    struct ud_key sk, pk, other, other_pk;
    assert_int_equal(ud_key_generate(UD_KEY_SIGN_SECRET, &sk, &e), 0);
    assert_int_equal(ud_key_public(&sk, &pk, &e), 0);
    assert_int_equal(ud_key_generate(UD_KEY_SIGN_SECRET, &other, &e), 0);
    assert_int_equal(ud_key_public(&other, &other_pk, &e), 0);
    ud_model_t *m = ud_test_model(SPEC, 7);
    char *udm, *s, *s2;
    size_t n, sn, sn2;
    encode(m, &udm, &n);
    assert_int_equal(ud_seal_sign(udm, n, &sk, &s, &sn, &e), 0);
    assert_int_equal(sn, n + UD_SEAL_HEADER_BYTES + UD_SEAL_SIG_BYTES);
    struct ud_seal_info info;
    assert_int_equal(ud_seal_verify(s, sn, &pk, &info, &e), 0);
    assert_true(info.is_signed && !info.encrypted);
    assert_string_equal(info.sign_key_id, pk.id);

    struct ud_seal_keys keys = {&pk, NULL};
    ud_model_t *back = ud_seal_decode_model(s, sn, &keys, NULL, &e);
    assert_non_null(back);
    assert_same_params(m, back);
    ud_model_destroy(&back);

    /* Unsigned: the plain file, when a key is required. */
    assert_int_equal(ud_seal_verify(udm, n, &pk, NULL, &e), UD_EUNSIGNED);
    assert_null(ud_seal_decode_model(udm, n, &keys, NULL, &e));
    assert_int_equal(e.code, UD_EUNSIGNED);
    /* ... without a required key, the plain file opens. */
    struct ud_seal_keys none = {NULL, NULL};
    back = ud_seal_decode_model(udm, n, &none, NULL, &e);
    assert_non_null(back);
    ud_model_destroy(&back);

    /* Signed by another key. */
    assert_int_equal(ud_seal_verify(s, sn, &other_pk, NULL, &e), UD_EWRONGKEY);
    assert_msg_has(&e, pk.id);
    assert_msg_has(&e, other_pk.id);

    /* A flipped bit anywhere in the payload or signature: tampered. In the header: tampered or
       a format error, never accepted. */
    for (size_t i = 0; i < sn; i += (i < 80 ? 1 : 97)) {
        s[i] ^= 0x10;
        int rc = ud_seal_verify(s, sn, &pk, NULL, &e);
        if (i >= UD_SEAL_HEADER_BYTES && !(i >= 56 && i < 64))
            assert_int_equal(rc, UD_ETAMPERED);
        else
            assert_true(rc < 0);
        s[i] ^= 0x10;
    }
    assert_int_equal(ud_seal_verify(s, sn, &pk, NULL, &e), 0);

    /* Truncated, with trailing bytes, and a forged huge length: refused before reading. */
    assert_int_equal(ud_seal_verify(s, sn - 1, &pk, NULL, &e), UD_ETRUNCATED);
    assert_int_equal(ud_seal_inspect(s, 20, NULL, &e), UD_ETRUNCATED);
    char *longer = malloc(sn + 1);
    memcpy(longer, s, sn);
    longer[sn] = 0;
    assert_int_equal(ud_seal_inspect(longer, sn + 1, NULL, &e), UD_EFORMAT);
    free(longer);
    memset(s + 16, 0xff, 8);
    assert_int_equal(ud_seal_inspect(s, sn, NULL, &e), UD_ELIMIT);

    /* Re-signing a signed file with another key replaces the signature. */
    free(s);
    assert_int_equal(ud_seal_sign(udm, n, &sk, &s, &sn, &e), 0);
    assert_int_equal(ud_seal_sign(s, sn, &other, &s2, &sn2, &e), 0);
    assert_int_equal(sn2, sn);
    assert_int_equal(ud_seal_verify(s2, sn2, &other_pk, NULL, &e), 0);
    assert_int_equal(ud_seal_verify(s2, sn2, &pk, NULL, &e), UD_EWRONGKEY);

    /* ud_udm_decode names a sealed buffer instead of calling it foreign garbage. */
    assert_null(ud_udm_decode(s, sn, &e));
    assert_msg_has(&e, "sealed");

    free(s);
    free(s2);
    free(udm);
    ud_model_destroy(&m);
}

static void test_encrypt(void **state)
{
    (void)state;
    struct ud_err e = {0};
    struct ud_key k, k2, sk, pk;
    assert_int_equal(ud_key_generate(UD_KEY_MODEL, &k, &e), 0);
    assert_int_equal(ud_key_generate(UD_KEY_MODEL, &k2, &e), 0);
    assert_string_not_equal(k.id, k2.id);
    assert_int_equal(ud_key_generate(UD_KEY_SIGN_SECRET, &sk, &e), 0);
    assert_int_equal(ud_key_public(&sk, &pk, &e), 0);
    ud_model_t *m = ud_test_model(SPEC, 11);
    char *udm, *c, *c2, *cs;
    size_t n, cn, cn2, csn;
    encode(m, &udm, &n);
    assert_int_equal(ud_seal_encrypt(udm, n, &k, &c, &cn, &e), 0);
    assert_int_equal(cn, n + UD_SEAL_HEADER_BYTES + UD_SEAL_TAG_BYTES);
    /* The ciphertext does not contain the model's bytes (spot check a 32-byte window). */
    assert_null(memmem(c, cn, udm + n / 2, 32));
    /* Two encryptions differ (fresh nonce). */
    assert_int_equal(ud_seal_encrypt(udm, n, &k, &c2, &cn2, &e), 0);
    assert_memory_not_equal(c, c2, cn);
    free(c2);

    struct ud_seal_keys keys = {NULL, &k};
    ud_model_t *back = ud_seal_decode_model(c, cn, &keys, NULL, &e);
    assert_non_null(back);
    assert_same_params(m, back);
    ud_model_destroy(&back);

    /* No key, another key: wrong key; a flipped byte: tampered. Distinct codes. */
    struct ud_seal_keys nokey = {NULL, NULL}, wrong = {NULL, &k2};
    assert_null(ud_seal_decode_model(c, cn, &nokey, NULL, &e));
    assert_int_equal(e.code, UD_EWRONGKEY);
    assert_null(ud_seal_decode_model(c, cn, &wrong, NULL, &e));
    assert_int_equal(e.code, UD_EWRONGKEY);
    assert_msg_has(&e, k.id);
    for (size_t i = UD_SEAL_HEADER_BYTES; i < cn; i += 61) {
        c[i] ^= 1;
        assert_null(ud_seal_decode_model(c, cn, &keys, NULL, &e));
        assert_int_equal(e.code, UD_ETAMPERED);
        c[i] ^= 1;
    }
    /* The nonce is authenticated too (it is in the header). */
    c[40] ^= 1;
    assert_null(ud_seal_decode_model(c, cn, &keys, NULL, &e));
    assert_int_equal(e.code, UD_ETAMPERED);
    c[40] ^= 1;
    /* Encrypting a sealed file is refused. */
    assert_int_equal(ud_seal_encrypt(c, cn, &k, &c2, &cn2, &e), UD_EINVAL);

    /* Encrypt, then sign: verification first, then decryption. */
    assert_int_equal(ud_seal_sign(c, cn, &sk, &cs, &csn, &e), 0);
    struct ud_seal_keys both = {&pk, &k};
    struct ud_seal_info info;
    back = ud_seal_decode_model(cs, csn, &both, &info, &e);
    assert_non_null(back);
    assert_true(info.encrypted && info.is_signed);
    assert_same_params(m, back);
    ud_model_destroy(&back);
    /* Signed but encrypted with another key: the signature passes, the key is wrong. */
    struct ud_seal_keys both_wrong = {&pk, &k2};
    assert_null(ud_seal_decode_model(cs, csn, &both_wrong, NULL, &e));
    assert_int_equal(e.code, UD_EWRONGKEY);
    /* A flipped ciphertext byte in a signed file is caught by the signature first. */
    cs[UD_SEAL_HEADER_BYTES + 5] ^= 1;
    assert_null(ud_seal_decode_model(cs, csn, &both, NULL, &e));
    assert_int_equal(e.code, UD_ETAMPERED);
    assert_msg_has(&e, "signature");

    free(cs);
    free(c);
    free(udm);
    ud_model_destroy(&m);
}

static void test_read_model_file(void **state)
{
    (void)state;
    struct ud_err e = {0};
    struct ud_key sk;
    assert_int_equal(ud_key_generate(UD_KEY_SIGN_SECRET, &sk, &e), 0);
    ud_model_t *m = ud_test_model(SPEC, 3);
    char *udm, *s;
    size_t n, sn;
    encode(m, &udm, &n);
    assert_int_equal(ud_seal_sign(udm, n, &sk, &s, &sn, &e), 0);
    char path[] = "/tmp/ud-test-seal-model-XXXXXX";
    int fd = mkstemp(path);
    assert_true(fd >= 0);
    assert_int_equal(write(fd, s, sn), (ssize_t)sn);
    close(fd);
    /* ud_udm_read reads a signed file from a trusted place like a plain one. */
    ud_model_t *back = ud_udm_read(path, &e);
    assert_non_null(back);
    assert_same_params(m, back);
    ud_model_destroy(&back);
    unlink(path);
    free(s);
    free(udm);
    ud_model_destroy(&m);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_key_files),
        cmocka_unit_test(test_sign_verify),
        cmocka_unit_test(test_encrypt),
        cmocka_unit_test(test_read_model_file),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
