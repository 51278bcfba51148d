/*  worker_dist.h — the MPI side of data-parallel training (updraft-worker under mpirun).
 *
 *  Gradients: the model's updatable layers are grouped, from the top down, into buckets of at
 *  most bucket_bytes (a layer larger than that is a bucket of its own). During backward, each
 *  layer reports its gradients ready (worker_dist_grad_ready); when a bucket's last layer has, its
 *  ring allreduce (reduce-scatter then all-gather, non-blocking MPI_Isend/MPI_Irecv to the ring
 *  neighbours) starts, and it is driven forward by every later call into this module. After
 *  backward, worker_dist_grad_sync waits for the buckets and hands each one to the update engine
 *  the moment its sum is final, so the optimizer step of one bucket overlaps the communication
 *  of the others. Every element of the sum is computed once, by one rank, and copied to the
 *  others: all replicas receive bitwise the same gradients.
 *
 *  Failure: every wait polls with a deadline (timeout_s). A wait that passes half of it starts a
 *  roll call: it asks every rank what it is doing (ranks answer from inside their own waits).
 *  At the deadline, the ranks that have not answered are named, with their host and pid and
 *  whether that process still exists; ranks that answered from another collective are named as
 *  out of step. Nothing here ever blocks without a deadline.
 */
#ifndef WORKER_DIST_H
#define WORKER_DIST_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_model.h"
#include "updraft/ud_update.h"

typedef struct worker_dist worker_dist_t;

struct worker_dist_opts {
    size_t bucket_bytes; /* gradient bucket cap; 0: 1 MiB */
    double timeout_s;    /* peer timeout; 0: 60 s */
};

/* 1 when this process was started by mpirun (or another PMI launcher), so MPI must be used. */
int worker_dist_launched(void);

/* MPI_Init and the rank table (host, pid of every rank). NULL with e set on failure. */
worker_dist_t *worker_dist_init(int *argc, char ***argv, const struct worker_dist_opts *o,
                                struct ud_err *e);
/* MPI_Finalize after a clean run. */
void worker_dist_finalize(worker_dist_t **d);

int worker_dist_rank(const worker_dist_t *d);
int worker_dist_world(const worker_dist_t *d);
int worker_dist_local_size(const worker_dist_t *d); /* ranks on this host */
/* The step number that failure messages quote (the worker sets it as training advances). */
void worker_dist_set_step(worker_dist_t *d, int64_t step);

/* Collectives; every rank calls them in the same order. what names the call in messages. */
int worker_dist_barrier(worker_dist_t *d, const char *what, struct ud_err *e);
int worker_dist_bcast(worker_dist_t *d, void *buf, size_t bytes, int root, const char *what,
                      struct ud_err *e);
int worker_dist_sum_f64(worker_dist_t *d, double *v, size_t n, const char *what, struct ud_err *e);
int worker_dist_max_i64(worker_dist_t *d, int64_t *v, size_t n, const char *what, struct ud_err *e);
/* Sums n floats in place with the ring allreduce (what the gradient buckets use). */
int worker_dist_sum_f32(worker_dist_t *d, float *x, size_t n, const char *what, struct ud_err *e);
/* Every rank reports how its part of something went (rc 0 or an error with msg). Returns 0
 * when all succeeded; else every rank gets, in e, the first failing rank's code and message
 * prefixed with "rank R" (and how many others failed). */
int worker_dist_agree(worker_dist_t *d, int rc, const char *msg, const char *what,
                      struct ud_err *e);
/* The same with this rank's error as a struct ud_err (local), and also standalone: with d
 * NULL it returns rc, with local copied into e. */
int worker_dist_agree_err(worker_dist_t *d, int rc, const struct ud_err *local, const char *what,
                          struct ud_err *e);

/* Changes the bucket cap for the next worker_dist_grad_setup (0: the default). */
void worker_dist_set_bucket_bytes(worker_dist_t *d, size_t bytes);
/* Changes the peer timeout (0: the default), e.g. once a job's options are known. */
void worker_dist_set_timeout(worker_dist_t *d, double seconds);
/* Gradient buckets for model m (call once, after the model is built). */
int worker_dist_grad_setup(worker_dist_t *d, ud_model_t *m, struct ud_err *e);
/* The update engine's hooks (user = the worker_dist_t). */
void worker_dist_grad_ready(void *user, int layer, struct ud_span span);
int worker_dist_grad_sync(void *user, float *grads, size_t n, ud_span_apply_fn apply, void *actx,
                          struct ud_err *e);
int worker_dist_metric_sync(void *user, double *v, size_t n, struct ud_err *e);

struct worker_dist_stats {
    int nbuckets;
    size_t bucket_bytes;
    int64_t steps;             /* gradient syncs */
    double bytes;              /* gradient bytes summed (per rank, per step: the model's) */
    double wait_seconds;       /* time spent in grad_sync (communication not hidden by backward) */
    double collective_seconds; /* time in other collectives */
};
void worker_dist_stats(const worker_dist_t *d, struct worker_dist_stats *s);

/* For a SIGTERM handler (async-signal-safe): writes into buf a description of the ranks on
 * this host whose process no longer exists ("rank 1 (pid 123)"), or "" if none. */
size_t worker_dist_dead_peers(const worker_dist_t *d, char *buf, size_t cap);

/* Installs handlers for SIGTERM and SIGINT (what mpirun sends the other ranks when one dies, or
 * when it is interrupted): they print "PROG: rank R: stopped by signal S; <dead peers>; <hint>"
 * and exit with 128 + S at once (collectives with a dead peer cannot finish). hint is what
 * worker_dist_set_hint last set (e.g. the checkpoint to resume from). Also ignores SIGPIPE, so
 * that a write to a dead peer's connection is an error, not this rank's death. */
void worker_dist_handle_signals(worker_dist_t *d, const char *prog);
/* Sets the hint the signal handler prints (copied; safe against the handler). */
void worker_dist_set_hint(worker_dist_t *d, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
