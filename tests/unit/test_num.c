/*  test_num.c — ud_num, the one number parser of every program's options: the whole text must be
 *  the number, inside [lo, hi]; the message names the option, what it got and what it takes; on
 *  error the output is untouched. And ud_file's directory helpers: mkdir -p with its "created",
 *  the writable-output check, a file's SHA-256, and tree removal with the entry removed first. */
#include "ud_test.h"

#include <sys/stat.h>
#include <unistd.h>

#include "updraft/ud_file.h"
#include "updraft/ud_num.h"

static void test_whole_numbers(void **state)
{
    (void)state;
    struct ud_err e = {0};
    long long v = 7;
    assert_int_equal(ud_num_ll("--epochs", "12", 1, 100, &v, &e), 0);
    assert_int_equal(v, 12);
    assert_int_equal(ud_num_ll("--seed", "-5", -10, 10, &v, &e), 0);
    assert_int_equal(v, -5);
    const char *bad[] = {"", "x", "12x", "1.5", "101", "0", "99999999999999999999999"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        v = 7;
        assert_int_equal(ud_num_ll("--epochs", bad[i], 1, 100, &v, &e), UD_EINVAL);
        assert_int_equal(v, 7); /* untouched */
        assert_msg_has(&e, "--epochs: '");
        assert_msg_has(&e, "must be a whole number between 1 and 100");
    }
    assert_int_equal(ud_num_ll("--epochs", NULL, 1, 100, &v, &e), UD_EINVAL);
    int n = 3;
    assert_int_equal(ud_num_int("--threads", "1024", 1, 1024, &n, &e), 0);
    assert_int_equal(n, 1024);
    assert_int_equal(ud_num_int("--threads", "1025", 1, 1024, &n, &e), UD_EINVAL);
    assert_int_equal(n, 1024);
    assert_msg_has(&e, "--threads: '1025' must be a whole number between 1 and 1024");
}

static void test_real_numbers(void **state)
{
    (void)state;
    struct ud_err e = {0};
    double v = 9;
    assert_int_equal(ud_num_double("--lr", "0.05", 0, 10, &v, &e), 0);
    assert_true(v == 0.05);
    assert_int_equal(ud_num_double("--lr", "1e-3", 0, 10, &v, &e), 0);
    assert_true(v == 1e-3);
    v = 9;
    assert_int_equal(ud_num_double("--lr", "abc", 0, 10, &v, &e), UD_EINVAL);
    assert_msg_has(&e, "--lr: 'abc' is not a number");
    assert_int_equal(ud_num_double("--lr", "nan", 0, 10, &v, &e), UD_EINVAL);
    assert_msg_has(&e, "is not a number");
    assert_int_equal(ud_num_double("--lr", "inf", 0, 10, &v, &e), UD_EINVAL);
    assert_int_equal(ud_num_double("--lr", "0.5x", 0, 10, &v, &e), UD_EINVAL);
    assert_int_equal(ud_num_double("--lr", "20", 0, 10, &v, &e), UD_EINVAL);
    assert_msg_has(&e, "--lr: '20' must be a number between 0 and 10");
    assert_true(v == 9); /* untouched by every refusal */
}

static void test_directories(void **state)
{
    (void)state;
    struct ud_err e = {0};
    const char *top = ud_test_path("num-dirs");
    char deep[1024], file[1100];
    snprintf(deep, sizeof deep, "%s/a/b/c", top);
    bool created = false;
    assert_int_equal(ud_file_mkdirs(deep, &created, &e), 0);
    assert_true(created);
    assert_int_equal(ud_file_mkdirs(deep, &created, &e), 0);
    assert_false(created); /* it was there */
    snprintf(file, sizeof file, "%s/DONE", deep);
    assert_int_equal(ud_file_write_atomic(file, "x", 1, &e), 0);
    char hex[65];
    assert_int_equal(ud_file_sha256(file, hex, &e), 0);
    assert_string_equal(hex, "2d711642b726b04401627ca9fbac32f5c8530fb1903cc4db02258717921a4881");
    assert_int_equal(ud_file_sha256(deep, hex, &e), UD_EIO); /* a directory does not read */
    /* A file where a directory is wanted is refused, naming it. */
    char clash[1200];
    snprintf(clash, sizeof clash, "%s/sub", file);
    assert_int_equal(ud_file_mkdirs(clash, NULL, &e), UD_EIO);
    assert_msg_has(&e, "exists and is not a directory");
    /* The writable-output check. */
    assert_int_equal(ud_file_check_writable(file, &e), 0);
    assert_int_equal(ud_file_check_writable(deep, &e), UD_EIO);
    assert_msg_has(&e, "is a directory");
    char nodir[1200];
    snprintf(nodir, sizeof nodir, "%s/missing/out.udm", top);
    assert_int_equal(ud_file_check_writable(nodir, &e), UD_EIO);
    assert_msg_has(&e, "does not exist");
    /* Emptying keeps the top; removing takes it; a missing tree is fine. */
    assert_int_equal(ud_file_remove_tree(top, true, "DONE", &e), 0);
    struct stat st;
    assert_int_equal(stat(top, &st), 0);
    assert_int_not_equal(stat(deep, &st), 0);
    assert_int_equal(ud_file_remove_tree(top, false, NULL, &e), 0);
    assert_int_not_equal(stat(top, &st), 0);
    assert_int_equal(ud_file_remove_tree(top, false, NULL, &e), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_numbers),
        cmocka_unit_test(test_real_numbers),
        cmocka_unit_test(test_directories),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
