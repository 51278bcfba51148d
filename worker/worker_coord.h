/*  worker_coord.h — a worker's link to updraft-coordinator (the worker protocol, ud_msg.h).
 *
 *  Two sockets, each owned by one thread (STYLE.md rule 10):
 *    - the caller's DEALER, for the synchronous requests that the run cannot go on without
 *      (register at the start, the model upload at the end): worker_coord_request re-sends
 *      with the same id until a reply comes or its time is up, so a coordinator that is
 *      restarting is simply waited for;
 *    - an actor thread's DEALER, for everything that must never hold training up: this rank's
 *      heartbeats, and the messages the main thread posts through an inproc pipe (progress:
 *      best effort; checkpoint and done: re-sent until acknowledged). Replies' `cancel` flags
 *      are kept for worker_coord_cancelled.
 *  A coordinator that is down costs nothing but warnings; ZeroMQ reconnects by itself.
 *
 *  Thread-safety: one thread (the worker's main thread) calls these functions; the actor runs
 *  on its own.
 */
#ifndef WORKER_COORD_H
#define WORKER_COORD_H

#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_msg.h"

typedef struct worker_coord worker_coord_t;

/* CURVE for the link: the coordinator's public key and this worker's keypair (32 bytes each,
 * as ZMQ_CURVE_SERVERKEY / PUBLICKEY / SECRETKEY take them) and the keypair's id for messages. */
struct worker_coord_curve {
    uint8_t server_pub[32], pub[32], sec[32];
    char id[17];
};

/* Connects to endpoint ("tcp://HOST:PORT") as rank `rank`; curve NULL for plain ZMTP, else the
 * keys (copied). Returns NULL with e set. */
worker_coord_t *worker_coord_new(const char *endpoint, int rank,
                                 const struct worker_coord_curve *curve, struct ud_err *e);
/* Stops the actor after trying (at most flush_s seconds) to deliver the messages still
 * waiting for an acknowledgement. Accepts NULL; NULLs *c. */
void worker_coord_destroy(worker_coord_t **c, double flush_s);

/* Sends m (its id is set here) and waits for the reply, re-sending every few seconds, at most
 * timeout_s in all. On success *reply holds the decoded reply (free with ud_msg_deinit) and,
 * when raw is not NULL, *raw and *raw_len its bytes (malloc'd, the caller's). An `error` reply is
 * returned as its code with e holding the coordinator's message. UD_ETIMEOUT when no reply
 * came in time. UD_EAUTH, at once, when the connection's handshake failed in a way waiting
 * cannot mend (watched through a socket monitor; handshakes time out after a few seconds):
 * the coordinator refused this worker's CURVE key (at once), the server key is wrong or one
 * side uses CURVE and the other not (the coordinator closes the connection during the
 * handshake three times running, or libzmq reports the mismatch); e says "CURVE handshake with
 * tcp://... failed: <why>" ("ZeroMQ handshake ..." for a worker without CURVE). */
int worker_coord_request(worker_coord_t *c, struct ud_msg *m, struct ud_msg *reply, void **raw,
                         size_t *raw_len, double timeout_s, struct ud_err *e);

/* Starts this rank's heartbeats for job, every every_s seconds. */
int worker_coord_start(worker_coord_t *c, const char *job, double every_s, struct ud_err *e);
/* The step heartbeats report (cheap: an atomic store). */
void worker_coord_set_step(worker_coord_t *c, int64_t step);
/* Hands m to the actor (its id is set here). reliable: re-sent until acknowledged (checkpoint,
 * done); else sent once if the link is up (progress). Never blocks on the network. Returns 0,
 * or an encoding error. */
int worker_coord_post(worker_coord_t *c, struct ud_msg *m, int reliable, struct ud_err *e);
/* 1 once any reply from the coordinator asked this job to stop. */
int worker_coord_cancelled(const worker_coord_t *c);

#endif
