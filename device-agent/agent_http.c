/*  agent_http.c — libcurl behind the daemon's few requests (contract: agent_http.h).
 */
#include "agent_http.h"

#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include <curl/curl.h>

#include "updraft/ud_net.h"
#include "updraft/ud_net_curl.h"

#define CONNECT_TIMEOUT_S 5L
#define LOW_SPEED_BYTES   1L  /* below this many bytes per second ... */
#define LOW_SPEED_TIME_S  20L /* ... for this long: the server is gone */
#define SMALL_TIMEOUT_S   60L /* a whole GET of a small body */

struct agent_http {
    CURL *curl;
    char *base;
    char *auth; /* "Authorization: Bearer <token>" */
    int (*stop)(void);
    char *cacert, *pin; /* NULL: the system store; no pin */
    char errbuf[CURL_ERROR_SIZE];
};

agent_http_t *agent_http_new(const char *base_url, const char *token, int (*stop)(void),
                             const struct agent_http_tls *tls, struct ud_err *e)
{
    agent_http_t *h = calloc(1, sizeof *h);
    if (!h) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        return NULL;
    }
    size_t n = strlen(base_url);
    while (n > 0 && base_url[n - 1] == '/')
        n--;
    size_t alen = strlen(token) + 32;
    if (!(h->base = strndup(base_url, n)) || !(h->auth = malloc(alen))) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        goto out_free;
    }
    snprintf(h->auth, alen, "Authorization: Bearer %s", token);
    if ((tls && tls->cacert && !(h->cacert = strdup(tls->cacert))) ||
        (tls && tls->pin && !(h->pin = strdup(tls->pin)))) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        goto out_free;
    }
    h->stop = stop;
    if (!(h->curl = curl_easy_init())) {
        ud_err_set(e, UD_EINTERNAL, "libcurl: cannot create a handle");
        goto out_free;
    }
    return h;
out_free:
    free(h->cacert);
    free(h->pin);
    free(h->auth);
    free(h->base);
    free(h);
    return NULL;
}

void agent_http_destroy(agent_http_t **hp)
{
    agent_http_t *h = hp ? *hp : NULL;
    if (!h)
        return;
    curl_easy_cleanup(h->curl);
    free(h->cacert);
    free(h->pin);
    free(h->auth);
    free(h->base);
    free(h);
    *hp = NULL;
}

void agent_http_resp_deinit(struct agent_http_resp *r)
{
    free(r->body);
    memset(r, 0, sizeof *r);
}

static int xferinfo(void *user, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un)
{
    (void)dt, (void)dn, (void)ut, (void)un;
    agent_http_t *h = user;
    return h->stop && h->stop() ? 1 : 0;
}

/* The options every request shares; the URL is base + path. *hdrs gets the headers every
 * request sends (the caller frees them); on failure it is left as it was. */
static int setup(agent_http_t *h, const char *path, struct curl_slist **hdrs, struct ud_err *e)
{
    CURL *c = h->curl;
    curl_easy_reset(c);
    size_t ulen = strlen(h->base) + strlen(path) + 1;
    char *url = malloc(ulen);
    if (!url)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    snprintf(url, ulen, "%s%s", h->base, path);
    curl_easy_setopt(c, CURLOPT_URL, url); /* curl copies it */
    free(url);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, CONNECT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_LIMIT, LOW_SPEED_BYTES);
    curl_easy_setopt(c, CURLOPT_LOW_SPEED_TIME, LOW_SPEED_TIME_S);
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, xferinfo);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, h);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "updraft-agent/" UD_VERSION_STRING);
    /* Verification stays on (libcurl's default, said again after the reset); the CA file and
     * the pin apply to https:// only. */
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
    if (h->cacert)
        curl_easy_setopt(c, CURLOPT_CAINFO, h->cacert);
    if (h->pin)
        curl_easy_setopt(c, CURLOPT_PINNEDPUBLICKEY, h->pin);
    h->errbuf[0] = '\0';
    curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->errbuf);
    *hdrs = curl_slist_append(*hdrs, h->auth);
    *hdrs = curl_slist_append(*hdrs, "Expect:"); /* no 100-continue round trip for uploads */
    return 0;
}

/* Maps a failed transfer to a UD_E* code with curl's words; TLS verification failures are
 * UD_EAUTH with the message of ud_net_tls_message. */
static int curl_fail(agent_http_t *h, CURLcode cc, const char *what, const char *path,
                     struct ud_err *e)
{
    const char *reason = h->errbuf[0] ? h->errbuf : curl_easy_strerror(cc);
    enum ud_tls_failure why;
    int tls = ud_net_curl_tls_failure(cc, &why);
    if (tls) {
        char msg[UD_ERRMSG_MAX];
        ud_net_tls_message(msg, sizeof msg, why, h->base, h->cacert, h->pin, reason);
        return ud_err_set(e, UD_EAUTH, "%s", msg);
    }
    int code = UD_ENET;
    if (cc == CURLE_OPERATION_TIMEDOUT)
        code = UD_ETIMEOUT;
    else if (cc == CURLE_ABORTED_BY_CALLBACK)
        code = UD_ECANCELLED;
    /* curl's generic words, not its error buffer: those carry timings ("after 3 ms") and would
     * make every failure to connect a new message to log. */
    return ud_err_set(e, code, "%s %s: %s", what, path, curl_easy_strerror(cc));
}

struct membuf {
    char *p;
    size_t len, max;
    int over;
};

static size_t mem_write(char *data, size_t size, size_t nmemb, void *user)
{
    struct membuf *m = user;
    size_t n = size * nmemb;
    if (n > m->max - m->len) {
        m->over = 1;
        return 0;
    }
    char *q = realloc(m->p, m->len + n + 1);
    if (!q)
        return 0;
    m->p = q;
    memcpy(m->p + m->len, data, n);
    m->len += n;
    m->p[m->len] = '\0';
    return n;
}

/* A request with a small answer. timeout_s > 0 bounds the whole exchange; uploads pass 0: a
 * slow uplink may take long, and the low-speed limit still catches a server gone silent. */
static int perform_small(agent_http_t *h, const char *what, const char *path,
                         struct curl_slist *hdrs, long timeout_s, size_t max_body,
                         struct agent_http_resp *r, struct ud_err *e)
{
    struct membuf m = {.max = max_body};
    CURL *c = h->curl;
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, mem_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &m);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, timeout_s);
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    memset(r, 0, sizeof *r);
    if (cc != CURLE_OK) {
        free(m.p);
        if (m.over)
            return ud_err_set(e, UD_ELIMIT, "%s %s: the response is over %zu bytes", what, path,
                              max_body);
        return curl_fail(h, cc, what, path, e);
    }
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &r->status);
    if (!m.p && !(m.p = calloc(1, 1)))
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    r->body = m.p;
    r->len = m.len;
    return 0;
}

int agent_http_get(agent_http_t *h, const char *path, size_t max_body, struct agent_http_resp *r,
                   struct ud_err *e)
{
    struct curl_slist *hdrs = NULL;
    int rc = setup(h, path, &hdrs, e);
    if (rc < 0)
        return rc;
    curl_easy_setopt(h->curl, CURLOPT_HTTPGET, 1L);
    return perform_small(h, "GET", path, hdrs, SMALL_TIMEOUT_S, max_body, r, e);
}

int agent_http_post(agent_http_t *h, const char *path, const char *content_type,
                    const char *idem_key, const void *body, size_t len, size_t max_body,
                    struct agent_http_resp *r, struct ud_err *e)
{
    struct curl_slist *hdrs = NULL;
    int rc = setup(h, path, &hdrs, e);
    if (rc < 0)
        return rc;
    char line[512];
    snprintf(line, sizeof line, "Content-Type: %s", content_type);
    hdrs = curl_slist_append(hdrs, line);
    if (idem_key) {
        snprintf(line, sizeof line, "Idempotency-Key: %s", idem_key);
        hdrs = curl_slist_append(hdrs, line);
    }
    curl_easy_setopt(h->curl, CURLOPT_POST, 1L);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDS, body);
    curl_easy_setopt(h->curl, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
    return perform_small(h, "POST", path, hdrs, 0, max_body, r, e);
}

/* ---- downloads ---- */

struct dl {
    agent_http_t *h;
    struct agent_download *d;
    int started;        /* the first body byte was seen: the status is known */
    int64_t range_from; /* from the Content-Range header; -1 if none */
    int bad_range, io_err, too_big;
    size_t err_len;
};

static size_t dl_header(char *data, size_t size, size_t nmemb, void *user)
{
    struct dl *s = user;
    size_t n = size * nmemb;
    static const char key[] = "content-range:";
    if (n > sizeof key && strncasecmp(data, key, sizeof key - 1) == 0) {
        char buf[128];
        size_t m = n - (sizeof key - 1) < sizeof buf - 1 ? n - (sizeof key - 1) : sizeof buf - 1;
        memcpy(buf, data + sizeof key - 1, m);
        buf[m] = '\0';
        unsigned long long lo;
        if (sscanf(buf, " bytes %llu-", &lo) == 1)
            s->range_from = (int64_t)lo;
    }
    /* A new response (after a 1xx) starts over. */
    if (n >= 5 && strncmp(data, "HTTP/", 5) == 0)
        s->range_from = -1;
    return n;
}

static int write_all(int fd, const char *p, size_t n)
{
    while (n > 0) {
        ssize_t w = write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static size_t dl_write(char *data, size_t size, size_t nmemb, void *user)
{
    struct dl *s = user;
    struct agent_download *d = s->d;
    size_t n = size * nmemb;
    if (!s->started) {
        s->started = 1;
        curl_easy_getinfo(s->h->curl, CURLINFO_RESPONSE_CODE, &d->status);
        if (d->status == 206) {
            if (s->range_from != (int64_t)d->from) {
                s->bad_range = 1;
                return 0;
            }
            if (lseek(d->fd, (off_t)d->from, SEEK_SET) < 0) {
                s->io_err = 1;
                return 0;
            }
            d->total = d->from;
        } else if (d->status == 200) {
            if (d->from > 0)
                d->restarted = 1;
            if (ftruncate(d->fd, 0) < 0 || lseek(d->fd, 0, SEEK_SET) < 0) {
                s->io_err = 1;
                return 0;
            }
            d->total = 0;
        }
    }
    if (d->status != 200 && d->status != 206) {
        size_t room = sizeof d->err_body - 1 - s->err_len;
        size_t m = n < room ? n : room;
        memcpy(d->err_body + s->err_len, data, m);
        s->err_len += m;
        d->err_body[s->err_len] = '\0';
        return n;
    }
    if (d->total + n > d->max_total) {
        s->too_big = 1;
        return 0;
    }
    if (write_all(d->fd, data, n) < 0) {
        s->io_err = 1;
        return 0;
    }
    d->total += n;
    d->received += n;
    return n;
}

int agent_http_download(agent_http_t *h, const char *path, struct agent_download *d,
                        struct ud_err *e)
{
    struct curl_slist *hdrs = NULL;
    int rc = setup(h, path, &hdrs, e);
    if (rc < 0)
        return rc;
    d->status = 0;
    d->total = d->from;
    d->received = 0;
    d->restarted = 0;
    d->err_body[0] = '\0';
    char line[256];
    if (d->from > 0) {
        snprintf(line, sizeof line, "Range: bytes=%" PRIu64 "-", d->from);
        hdrs = curl_slist_append(hdrs, line);
        snprintf(line, sizeof line, "If-Range: \"%s\"", d->etag);
        hdrs = curl_slist_append(hdrs, line);
    }
    struct dl s = {.h = h, .d = d, .range_from = -1};
    CURL *c = h->curl;
    curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
    curl_easy_setopt(c, CURLOPT_HEADERFUNCTION, dl_header);
    curl_easy_setopt(c, CURLOPT_HEADERDATA, &s);
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, dl_write);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &s);
    CURLcode cc = curl_easy_perform(c);
    curl_slist_free_all(hdrs);
    if (!s.started)
        curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &d->status);
    if (s.too_big)
        return ud_err_set(e, UD_ELIMIT,
                          "GET %s: the file is larger than the %" PRIu64 " bytes announced", path,
                          d->max_total);
    if (s.bad_range)
        return ud_err_set(e, UD_EFORMAT,
                          "GET %s: asked for bytes from %" PRIu64 ", the server sent a range from "
                          "%lld",
                          path, d->from, (long long)s.range_from);
    if (s.io_err)
        return ud_err_set(e, UD_EIO, "GET %s: writing the file: %s", path, strerror(errno));
    if (cc != CURLE_OK)
        return curl_fail(h, cc, "GET", path, e);
    return 0;
}
