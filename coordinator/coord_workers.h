/*  coord_workers.h — the worker protocol's server side: the ZeroMQ ROUTER socket workers
 *  connect to, and the dispatch of their requests (ud_msg.h) to coord_jobs.h.
 *
 *  Every request that decodes gets exactly one reply: the reply its type calls for, or
 *  `error {code, msg}`. A message that does not decode, one of a type workers do not send, or
 *  one for an unknown job is logged ("dropped message from <peer>: <why>") and answered with
 *  an error when its id could be read; nothing a peer sends stops the loop. The ROUTER refuses
 *  messages over UD_PROTO_MAX_MESSAGE (ZMQ_MAXMSGSIZE: libzmq drops the connection before
 *  allocating); connection events (accepted, closed, failed handshakes, CURVE clients refused)
 *  are logged from a socket monitor.
 *
 *  Thread-safety: belongs to the coordinator's main thread (it owns the sockets).
 */
#ifndef COORD_WORKERS_H
#define COORD_WORKERS_H

#include "coord_jobs.h"
#include "updraft/ud_keys.h"
#include "updraft/ud_error.h"

typedef struct coord_workers coord_workers_t;

/* Creates the ROUTER in ctx (borrowed), binds it to endpoint ("tcp://\*:8471"; a port of "*"
 * takes any free one) and attaches the event monitor. jobs is borrowed. curve_secret: NULL for
 * plain ZMTP, or the coordinator's CURVE keypair (UD_KEY_CURVE_SECRET; copied): the ROUTER is
 * then a CURVE server, and a ZAP handler in ctx, when one runs (coord_zap.h), decides which
 * clients may connect. Returns NULL with e set: UD_ENET (cannot bind: e names the endpoint and
 * the reason), UD_EUNSUPPORTED (libzmq without CURVE), UD_ENOMEM. */
coord_workers_t *coord_workers_new(void *ctx, const char *endpoint, coord_jobs_t *jobs,
                                   const struct ud_key *curve_secret, struct ud_err *e);
/* Closes the sockets (linger 0: unsent replies are dropped). Accepts NULL; NULLs *w. */
void coord_workers_destroy(coord_workers_t **w);

/* The endpoint actually bound ("tcp://0.0.0.0:8471"); borrowed. */
const char *coord_workers_endpoint(const coord_workers_t *w);
/* The sockets to poll for ZMQ_POLLIN: [0] requests, [1] connection events. Borrowed. */
void *coord_workers_socket(coord_workers_t *w);
void *coord_workers_events(coord_workers_t *w);
/* Reads and answers up to max waiting requests without blocking; returns how many were read
 * (so the caller knows whether more may wait). */
int coord_workers_serve(coord_workers_t *w, int max);
/* Logs the waiting connection events; never blocks. */
void coord_workers_drain_events(coord_workers_t *w);

#endif
