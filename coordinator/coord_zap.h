/*  coord_zap.h — who may speak the worker protocol under CURVE: a ZAP handler (ZeroMQ's
 *  authentication protocol, RFC 27) that answers libzmq's questions about each connecting
 *  worker's CURVE public key.
 *
 *  The handler is an actor: one thread that owns a REP socket bound to inproc://zeromq.zap.01
 *  in the coordinator's ZeroMQ context (libzmq asks there on every CURVE handshake of every
 *  socket of that context) and a pipe to stop it. It answers 200 for the public keys it was
 *  given and 400 for any other, logging each refusal with the key's id (the ud_keys.h id: 16
 *  hex digits, BLAKE2b of the key) and the peer's address. The allowed set is fixed at start.
 *
 *  Thread-safety: coord_zap_new/destroy on the coordinator's main thread; the actor runs alone.
 */
#ifndef COORD_ZAP_H
#define COORD_ZAP_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"

typedef struct coord_zap coord_zap_t;

/* Starts the handler in ctx (borrowed; must be started before any CURVE socket of ctx binds).
 * Allowed keys: those in clients_path (NULL: none) — a file of key lines (`updraft-key 1
 * curve-public <hex>`, '#' comments; one key per line) or a directory whose `*.pub` files each
 * hold one key — plus extra (NULL, or one 32-byte public key: the launched workers' own).
 * Returns NULL with e set: UD_EIO / UD_ENOTFOUND (unreadable), UD_EFORMAT (a line that is not
 * a curve public key: names the file and line; a secret key line is refused too), UD_EEMPTY
 * (no key at all), UD_ENET (the inproc endpoint is taken), UD_ENOMEM. */
coord_zap_t *coord_zap_new(void *ctx, const char *clients_path, const uint8_t *extra,
                           struct ud_err *e);
/* How many distinct keys are allowed. */
size_t coord_zap_count(const coord_zap_t *z);
/* Stops the actor, closes its sockets and frees it. Accepts NULL; NULLs *z. */
void coord_zap_destroy(coord_zap_t **z);

#endif
