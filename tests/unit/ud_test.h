/*  ud_test.h — shared helpers for the cmocka unit tests (header-only, test code only): assertions
 *  on error messages and numbers, a scratch directory with file helpers, a small model from an
 *  architecture spec, and the path of a built program. Every unit test includes it; a helper
 *  that two test files need goes here, not into a copy. */
#ifndef UD_TEST_H
#define UD_TEST_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <math.h>
#include <unistd.h>

#include <msgpack.h>

#include "updraft/ud_error.h"
#include "updraft/ud_file.h"
#include "updraft/ud_model.h"

/* Fails unless the message of the struct ud_err at e contains s. */
#define assert_msg_has(e, s)                                                                       \
    do {                                                                                           \
        if (!strstr((e)->msg, (s)))                                                                \
            fail_msg("message \"%s\" lacks \"%s\"", (e)->msg, (s));                                \
    } while (0)

/* Fails unless the string hay contains s. */
#define assert_str_has(hay, s)                                                                     \
    do {                                                                                           \
        if (!strstr((hay), (s)))                                                                   \
            fail_msg("\"%s\" lacks \"%s\"", (hay), (s));                                           \
    } while (0)

/* Fails unless a and b are both NULL or equal strings. */
static inline void assert_str_eq_or_null(const char *a, const char *b)
{
    if (!a || !b)
        assert_ptr_equal(a, b);
    else
        assert_string_equal(a, b);
}

/* Packs the string s (the tests that write a format by hand, apart from the library's
 * encoders). */
static inline void pk_str(msgpack_packer *pk, const char *s)
{
    msgpack_pack_str_with_body(pk, s, strlen(s));
}

/* Fails unless |a - b| <= tol, in double (cmocka's assert_float_equal works in float). */
#define assert_near(a, b, tol)                                                                     \
    do {                                                                                           \
        double a_ = (a), b_ = (b);                                                                 \
        if (!(fabs(a_ - b_) <= (tol)))                                                             \
            fail_msg("%s = %.12g, expected %.12g (tolerance %g)", #a, a_, b_, (double)(tol));      \
    } while (0)

/* A fresh scratch directory for this test program: $UD_TEST_SCRATCH (set by ctest) or
 * /tmp/ud-test-<pid>. Created with parents; returns a static string. */
static inline const char *ud_test_scratch(void)
{
    static char dir[512];
    if (dir[0])
        return dir;
    const char *env = getenv("UD_TEST_SCRATCH");
    if (env && *env)
        snprintf(dir, sizeof dir, "%s", env);
    else
        snprintf(dir, sizeof dir, "/tmp/ud-test-%d", (int)getpid());
    char tmp[600];
    snprintf(tmp, sizeof tmp, "rm -rf '%s' && mkdir -p '%s'", dir, dir);
    if (system(tmp) != 0)
        fail_msg("cannot create scratch directory %s", dir);
    return dir;
}

/* Writes len bytes to scratch/name and returns the full path (static buffer, rotated 8 ways). */
static inline const char *ud_test_write(const char *name, const void *data, size_t len)
{
    static char paths[8][640];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 640, "%s/%s", ud_test_scratch(), name);
    FILE *f = fopen(p, "wb");
    assert_non_null(f);
    assert_int_equal(fwrite(data, 1, len, f), len);
    fclose(f);
    return p;
}

/* scratch/name as a path (static buffer, rotated 8 ways). */
static inline const char *ud_test_path(const char *name)
{
    static char paths[8][640];
    static int next;
    char *p = paths[next++ % 8];
    snprintf(p, 640, "%s/%s", ud_test_scratch(), name);
    return p;
}

/* One row of a table of hostile inputs: what it is, its n bytes, and the words the refusal's
 * message must hold. */
struct ud_test_bytes {
    const char *what;
    const char *bytes;
    size_t n;
    const char *has;
};

/* Fails, naming the row, unless a decoder returned want (rc) with a message that holds has. */
#define assert_refused(what, rc, want, e, has)                                                     \
    do {                                                                                           \
        int rc_ = (rc);                                                                            \
        if (rc_ != (want) || !strstr((e)->msg, (has)))                                             \
            fail_msg("%s: %s (%s)", (what), ud_err_name(rc_), (e)->msg);                           \
    } while (0)

/* scratch/name as a path with nothing at it: whatever a previous run left there is removed.
 * Static buffer, rotated 8 ways (as ud_test_path). */
static inline const char *ud_test_fresh_path(const char *name)
{
    const char *p = ud_test_path(name);
    struct ud_err e = {0};
    if (ud_file_remove_tree(p, false, NULL, &e) != 0)
        fail_msg("remove %s: %s", p, e.msg);
    return p;
}

/* mkdir -p path. */
static inline void ud_test_mkdirs(const char *path)
{
    struct ud_err e = {0};
    if (ud_file_mkdirs(path, NULL, &e) != 0)
        fail_msg("mkdir %s: %s", path, e.msg);
}

/* Writes len bytes to path (any path, replacing what is there). */
static inline void ud_test_write_file(const char *path, const void *data, size_t len)
{
    FILE *f = fopen(path, "wb");
    if (!f)
        fail_msg("cannot write %s: %s", path, strerror(errno));
    assert_int_equal(fwrite(data, 1, len, f), len);
    assert_int_equal(fclose(f), 0);
}

/* The whole file at path in a fresh buffer (caller frees), NUL-terminated; *len its size.
 * Not inlined: GCC 12+ then mistakes the returned buffer for a pointer to the local. */
__attribute__((noinline, unused)) static char *ud_test_read(const char *path, size_t *len)
{
    char *buf = NULL;
    struct ud_err e = {0};
    if (ud_file_read(path, (size_t)1 << 30, &buf, len, &e) != 0)
        fail_msg("read %s: %s", path, e.msg);
    return buf;
}

/* A model of the architecture spec (ud_arch_parse's text), parameters not initialised. */
static inline ud_model_t *ud_test_model_new(const char *spec)
{
    struct ud_arch a;
    struct ud_err e = {0};
    if (ud_arch_parse(spec, &a, &e) != 0)
        fail_msg("ud_arch_parse: %s", e.msg);
    ud_model_t *m = ud_model_new(&a, &e);
    if (!m)
        fail_msg("ud_model_new: %s", e.msg);
    return m;
}

/* A model of the preset architecture name (ud_arch_preset: "mlp", "cnn") for input shape in
 * ({0} for the preset's own) and classes classes, parameters initialised from seed. */
static inline ud_model_t *ud_test_preset(const char *name, struct ud_shape in, int classes,
                                         uint64_t seed)
{
    struct ud_arch a;
    struct ud_err e = {0};
    if (ud_arch_preset(name, in, classes, &a, &e) != 0)
        fail_msg("ud_arch_preset: %s", e.msg);
    ud_model_t *m = ud_model_new(&a, &e);
    if (!m)
        fail_msg("ud_model_new: %s", e.msg);
    ud_model_init_params(m, seed);
    return m;
}

/* A model of the architecture spec with parameters initialised from seed. */
static inline ud_model_t *ud_test_model(const char *spec, uint64_t seed)
{
    ud_model_t *m = ud_test_model_new(spec);
    ud_model_init_params(m, seed);
    return m;
}

/* Fails unless models a and b hold the same parameters: count, bytes and SHA-256. */
static inline void assert_same_params(const ud_model_t *a, const ud_model_t *b)
{
    assert_int_equal(ud_model_param_count(a), ud_model_param_count(b));
    assert_memory_equal(ud_model_params_const(a), ud_model_params_const(b),
                        ud_model_param_count(a) * sizeof(float));
    char ha[65], hb[65];
    ud_model_params_sha256(a, ha);
    ud_model_params_sha256(b, hb);
    assert_string_equal(ha, hb);
}

/* Runs the shell command cmd; its standard output (at most cap - 1 bytes) goes into out,
 * NUL-terminated. Returns its exit code, or -1 when it did not exit normally. */
static inline int ud_test_run(const char *cmd, char *out, size_t cap)
{
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t n = fread(out, 1, cap - 1, p);
    out[n] = '\0';
    int status = pclose(p);
    return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* The path of the built program $UD_BIN_DIR/name in out (cap bytes); skips the test, saying
 * why, when it is not there (ctest sets UD_BIN_DIR; a bare run of the test binary may not). */
static inline const char *ud_test_bin(const char *name, char *out, size_t cap)
{
    const char *bindir = getenv("UD_BIN_DIR");
    snprintf(out, cap, "%s/%s", bindir ? bindir : "", name);
    if (!bindir || access(out, X_OK) != 0) {
        print_message("skipped: no %s binary (set UD_BIN_DIR)\n", name);
        skip();
    }
    return out;
}

#endif
