/*  coord_http.h — the coordinator's REST API (libmicrohttpd, jansson); docs/rest.md is its
 *  reference.
 *
 *  The server runs on libmicrohttpd's own threads (a pool, epoll). GET handlers read the
 *  database through per-thread read-only connections; POST /v1/jobs and /v1/jobs/{id}/cancel
 *  write short transactions (a new PENDING row; cancel_requested = 1, or CANCELLED directly for
 *  a job with no workers) and leave the rest to the main loop, which polls for them.
 */
#ifndef COORD_HTTP_H
#define COORD_HTTP_H

#include "coord_store.h"
#include "updraft/ud_error.h"

typedef struct coord_http coord_http_t;

struct coord_http_config {
    const char *state_dir;
    const char *listen;       /* "HOST:PORT", e.g. "127.0.0.1:8470"; port 0: any free port */
    const char *admin_token;  /* Bearer token for every call (mutating ones need it) */
    const char *reader_token; /* Bearer token for the read-only calls (NULL: none) */
    double heartbeat_timeout; /* seconds: a rank heard from within this is a live worker */
    double started;           /* unix time the coordinator started (uptime) */
    int threads;              /* libmicrohttpd thread pool size (0: 2) */
    const struct coord_model_keys *keys; /* seal registered versions (NULL: as given) */
    /* HTTPS: both set (PEM text, checked by coord_tls_creds_load; borrowed, valid until
     * coord_http_stop), or both NULL for plain HTTP. */
    const char *tls_cert_pem, *tls_key_pem;
};

/* Starts serving. Returns NULL with e set (UD_EINVAL bad listen address, UD_ENET cannot bind:
 * e names the address and the reason). */
coord_http_t *coord_http_start(const struct coord_http_config *cfg, struct ud_err *e);
/* The port actually bound (useful with port 0). */
int coord_http_port(const coord_http_t *h);
/* Stops the server and frees it. Accepts NULL; NULLs *h. */
void coord_http_stop(coord_http_t **h);

#endif
