/*  agent_http.h — the daemon's HTTP client (libcurl): bearer-token GET and POST of small bodies,
 *  and resumable file downloads.
 *
 *  Every request: `Authorization: Bearer <token>`, connect timeout 5 s, low-speed limit (below
 *  1 byte/s for 20 s aborts, so a dead server does not hang the agent; a GET of a small body is
 *  also bounded to 60 s in all), no redirects followed,
 *  CURLOPT_NOSIGNAL, and an abort as soon as the stop callback says so (SIGINT/SIGTERM). Any HTTP
 *  status is a response (the caller decides what it means); only the absence of one is an
 *  error. One handle, one thread.
 */
#ifndef AGENT_HTTP_H
#define AGENT_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"

typedef struct agent_http agent_http_t;

/* How an https:// server is verified: cacert (CURLOPT_CAINFO; NULL: the system store) and pin
 * (CURLOPT_PINNEDPUBLICKEY: "sha256//BASE64[;sha256//...]" or a PEM/DER public key file; NULL:
 * none). */
struct agent_http_tls {
    const char *cacert, *pin;
};

/* base_url: "http://host:port" (a trailing '/' is dropped); token: sent as the bearer token;
 * stop: polled during transfers, non-zero aborts (may be NULL); tls: may be NULL. The strings
 * are copied. Returns NULL with e set (UD_ENOMEM, UD_EINTERNAL). */
agent_http_t *agent_http_new(const char *base_url, const char *token, int (*stop)(void),
                             const struct agent_http_tls *tls, struct ud_err *e);
void agent_http_destroy(agent_http_t **h);

struct agent_http_resp {
    long status; /* the HTTP status; 0 when no response arrived */
    char *body;  /* NUL-terminated; owned: agent_http_resp_deinit */
    size_t len;
};
void agent_http_resp_deinit(struct agent_http_resp *r);

/* GET base+path (path starts with '/'). Returns 0 when a response arrived (r->status says
 * which), else UD_ENET (connection refused or reset, DNS), UD_ETIMEOUT (connect or low-speed
 * timeout), UD_ELIMIT (a body over max_body bytes), UD_ECANCELLED (stop), UD_EAUTH (the server
 * failed TLS verification: its certificate is not trusted, its key is not the pinned one, or
 * the CA file is unusable; e reads "TLS: <base url>: ..." with curl's reason). Verification
 * happens before the request (and its token) is sent. */
int agent_http_get(agent_http_t *h, const char *path, size_t max_body, struct agent_http_resp *r,
                   struct ud_err *e);
/* POST body to base+path with the content type and, when idem_key is not NULL, the header
 * `Idempotency-Key: <idem_key>`. Returns as agent_http_get. */
int agent_http_post(agent_http_t *h, const char *path, const char *content_type,
                    const char *idem_key, const void *body, size_t len, size_t max_body,
                    struct agent_http_resp *r, struct ud_err *e);

/* A download into an open file. With from > 0 it asks for `Range: bytes=<from>-` with
 * `If-Range: "<etag>"`: 206 appends at from (the Content-Range must start there), 200 (the file
 * changed, or the server ignores ranges) truncates the file and writes from zero. Any other
 * status writes nothing; its body (up to 4 KiB) lands in err_body. The file may never grow over
 * max_total bytes (UD_ELIMIT, the transfer stops). */
struct agent_download {
    int fd;
    uint64_t from;
    const char *etag; /* the entity tag without quotes (the model's sha256) */
    uint64_t max_total;
    /* out */
    long status;
    uint64_t total; /* bytes in the file when the transfer ended */
    uint64_t received;
    int restarted; /* a 200 answered a range request */
    char err_body[4096];
};
/* Returns 0 when a response arrived and its body was stored in full (d->status may still be an
 * error status), else UD_ENET / UD_ETIMEOUT / UD_ECANCELLED / UD_ELIMIT / UD_EIO (writing the
 * file) / UD_EFORMAT (a 206 whose range does not start at from); the bytes received so far
 * stay in the file, so the next attempt resumes after them. */
int agent_http_download(agent_http_t *h, const char *path, struct agent_download *d,
                        struct ud_err *e);

#endif
