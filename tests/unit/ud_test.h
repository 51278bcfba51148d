/*  ud_test.h — shared helpers for the cmocka unit tests (header-only, test code only). */
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
#include <unistd.h>

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

#endif
