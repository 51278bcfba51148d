/*  test_jsonw.c — ud_jsonw's one string policy, the same into a stream and into a ud_buf:
 *  quotes, backslashes and control bytes escaped, valid UTF-8 kept, each byte of an invalid
 *  sequence (stray continuation, overlong, surrogate, past U+10FFFF, truncated) as U+FFFD;
 *  and ud_buf's growth past its first allocation. */
#include "ud_test.h"

#include "updraft/ud_buf.h"
#include "updraft/ud_jsonw.h"

/* s escaped both ways: the two must agree, and equal want. */
static void check(const char *s, const char *want)
{
    char out[512] = "";
    FILE *f = fmemopen(out, sizeof out - 1, "w");
    assert_non_null(f);
    ud_json_str(f, s);
    fclose(f);
    struct ud_buf b = {0};
    ud_json_str_buf(&b, s);
    assert_false(b.oom);
    assert_string_equal(b.p, want);
    assert_string_equal(out, want);
    ud_buf_free(&b);
}

static void test_escapes(void **state)
{
    check(NULL, "null");
    check("", "\"\"");
    check("plain text", "\"plain text\"");
    check("a\"b\\c", "\"a\\\"b\\\\c\"");
    check("l1\nl2\r\t\x01\x1f", "\"l1\\nl2\\r\\t\\u0001\\u001f\"");
    check("caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80",
          "\"caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80\"");
}

static void test_invalid_utf8(void **state)
{
    check("a\xff"
          "b",
          "\"a\\ufffdb\"");
    check("\x80", "\"\\ufffd\"");                                  /* a stray continuation byte */
    check("\xc0\xaf", "\"\\ufffd\\ufffd\"");                       /* overlong '/' */
    check("\xed\xa0\x80", "\"\\ufffd\\ufffd\\ufffd\"");            /* a surrogate */
    check("\xf4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""); /* past U+10FFFF */
    check("\xe2\x82", "\"\\ufffd\\ufffd\"");                       /* cut short by the end */
    assert_int_equal(ud_json_utf8_len((const unsigned char *)"\xe2\x82\xac"), 3);
    assert_int_equal(ud_json_utf8_len((const unsigned char *)"\xe2"), 0);
}

static void test_buf_grows(void **state)
{
    struct ud_buf b = {0};
    for (int i = 0; i < 1000; i++)
        ud_buf_printf(&b, "%04d,", i);
    ud_buf_puts(&b, "end");
    assert_false(b.oom);
    assert_int_equal(b.len, 5003);
    assert_int_equal(strlen(b.p), b.len);
    assert_memory_equal(b.p + 4995, "0999,end", 8);
    char big[600];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    ud_buf_printf(&b, "%s", big); /* longer than the formatting scratch */
    assert_int_equal(b.len, 5003 + 599);
    ud_buf_free(&b);
    assert_null(b.p);
    assert_int_equal(b.len, 0);
}

/* Numbers: whole values as integers, others in %.9g, non-finite as null; a huge finite value
 * is range-checked before it is cast to an integer (the cast would be undefined). */
static void test_numbers(void **state)
{
    (void)state;
    const struct {
        double v;
        const char *want;
    } cases[] = {{3, "3"},          {-2, "-2"},          {0.5, "0.5"},
                 {1e300, "1e+300"}, {-1e300, "-1e+300"}, {1e15, "1e+15"},
                 {NAN, "null"},     {INFINITY, "null"}};
    for (size_t i = 0; i < sizeof cases / sizeof *cases; i++) {
        char out[64] = "";
        FILE *f = fmemopen(out, sizeof out - 1, "w");
        assert_non_null(f);
        ud_json_num(f, cases[i].v);
        fclose(f);
        assert_string_equal(out, cases[i].want);
    }
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_escapes),
        cmocka_unit_test(test_invalid_utf8),
        cmocka_unit_test(test_buf_grows),
        cmocka_unit_test(test_numbers),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
