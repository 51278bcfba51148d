/*  test_net.c — loopback addresses and URL hosts (ud_net.h): every loopback spelling the
 *  warnings must stay quiet for, the wildcards and real addresses they must not, and the host
 *  taken out of URLs with ports, users, paths and IPv6 brackets.
 */
#include "ud_test.h"

#include "updraft/ud_net.h"

static void test_loopback_hosts(void **state)
{
    (void)state;
    const char *yes[] = {
        "127.0.0.1",  "127.1.2.3", "127.255.255.255", "localhost",       "LocalHost",
        "localhost.", "::1",       "[::1]",           "0:0:0:0:0:0:0:1", "::ffff:127.0.0.1"};
    for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
        if (!ud_net_host_is_loopback(yes[i]))
            fail_msg("'%s' should be loopback", yes[i]);
    const char *no[] = {"0.0.0.0",
                        "*",
                        "::",
                        "[::]",
                        "",
                        "10.0.0.1",
                        "128.0.0.1",
                        "192.168.1.1",
                        "example.com",
                        "localhost.evil",
                        "::2",
                        "[::1",
                        "126.255.0.1",
                        "::ffff:10.0.0.1",
                        "127.0.0.1x"};
    for (size_t i = 0; i < sizeof no / sizeof *no; i++)
        if (ud_net_host_is_loopback(no[i]))
            fail_msg("'%s' should not be loopback", no[i]);
    assert_false(ud_net_host_is_loopback(NULL));
}

static void test_url_host(void **state)
{
    (void)state;
    char h[64];
    assert_int_equal(ud_net_url_host("http://127.0.0.1:8470", h, sizeof h), 0);
    assert_string_equal(h, "127.0.0.1");
    assert_int_equal(ud_net_url_host("https://coord.example.org/v1/status", h, sizeof h), 0);
    assert_string_equal(h, "coord.example.org");
    assert_int_equal(ud_net_url_host("http://[::1]:8470/x", h, sizeof h), 0);
    assert_string_equal(h, "::1");
    assert_int_equal(ud_net_url_host("http://user:pw@10.1.2.3:80", h, sizeof h), 0);
    assert_string_equal(h, "10.1.2.3");
    assert_int_equal(ud_net_url_host("http://host?x=1", h, sizeof h), 0);
    assert_string_equal(h, "host");
    assert_int_equal(ud_net_url_host("127.0.0.1:8470", h, sizeof h), -1);
    assert_int_equal(ud_net_url_host("http://:8470", h, sizeof h), -1);
    assert_int_equal(ud_net_url_host("http://[::1", h, sizeof h), -1);
    assert_int_equal(ud_net_url_host("http://a-rather-long-host-name.example", h, 8), -1);
}

static void test_plain_remote(void **state)
{
    (void)state;
    assert_false(ud_net_url_is_plain_remote("http://127.0.0.1:8470"));
    assert_false(ud_net_url_is_plain_remote("http://localhost:8470/"));
    assert_false(ud_net_url_is_plain_remote("HTTP://[::1]:8470"));
    assert_false(ud_net_url_is_plain_remote("https://10.0.0.5:8470"));
    assert_true(ud_net_url_is_plain_remote("http://10.0.0.5:8470"));
    assert_true(ud_net_url_is_plain_remote("http://coord.example.org"));
    assert_true(ud_net_url_is_plain_remote("http://0.0.0.0:8470"));
    assert_true(ud_net_url_is_plain_remote("http://"));
}

static void test_tls_message(void **state)
{
    (void)state;
    char m[512];
    ud_net_tls_message(m, sizeof m, UD_TLS_UNTRUSTED, "https://127.0.0.1:8470", "ca-wrong.pem",
                       NULL, "SSL certificate problem: unable to get local issuer certificate");
    assert_string_equal(m, "TLS: https://127.0.0.1:8470: server certificate not trusted by CA "
                           "file ca-wrong.pem (SSL certificate problem: unable to get local "
                           "issuer certificate)");
    ud_net_tls_message(m, sizeof m, UD_TLS_UNTRUSTED, "https://h", NULL, NULL, "");
    assert_non_null(strstr(m, "the system's CA store"));
    assert_non_null(strstr(m, "(no detail)"));
    ud_net_tls_message(m, sizeof m, UD_TLS_PIN, "https://h", NULL, "sha256//abc=", "mismatch");
    assert_string_equal(m, "TLS: https://h: server public key does not match the pin "
                           "sha256//abc= (mismatch)");
    ud_net_tls_message(m, 16, UD_TLS_CAFILE, "https://h", "ca.pem", NULL, "x");
    assert_int_equal(strlen(m), 15); /* truncated, still terminated */
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_loopback_hosts),
        cmocka_unit_test(test_url_host),
        cmocka_unit_test(test_plain_remote),
        cmocka_unit_test(test_tls_message),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
