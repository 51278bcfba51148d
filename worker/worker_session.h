/*  worker_session.h — a training session directory (Create ML's MLTrainingSession): checkpoints
 *  written by every rank together, and the resume from the newest complete one.
 *
 *  Writing one (a collective; every rank calls worker_session_checkpoint at the same step):
 *    1. rank 0 creates checkpoints/ckpt-<iteration>/ (ud_ckpt_begin); all agree it worked;
 *    2. rank 0 writes model.udm and state.ckpt, every rank writes rank-<r>.ckpt, and every rank
 *       checks that its parameters are bitwise rank 0's (a diverged replica is an error);
 *       all agree that every part worked;
 *    3. rank 0 writes DONE (the completion marker) and prunes to the newest `keep`; all agree.
 *  A rank killed anywhere in this leaves no DONE, so the checkpoint is never resumed from.
 */
#ifndef WORKER_SESSION_H
#define WORKER_SESSION_H

#include <stdint.h>

#include "worker_dist.h"
#include "updraft/ud_ckpt.h"
#include "updraft/ud_error.h"
#include "updraft/ud_model.h"
#include "updraft/ud_update.h"

struct worker_session {
    const char *dir;  /* the session directory */
    int keep;         /* complete checkpoints kept */
    worker_dist_t *d; /* NULL when standalone */
    int rank, world, threads;
    const char *fingerprint; /* the run's identity (see worker_main.c) */
    /* Filled as it goes. */
    char last[4096];      /* newest complete checkpoint (written or resumed from) */
    double write_seconds; /* time spent in checkpoints */
    int written;
    double val_loss, val_accuracy; /* of the last epoch with validation (NaN before) */
};

/* Writes a checkpoint of task t at its current position (all ranks, together). */
int worker_session_checkpoint(struct worker_session *s, ud_update_task_t *t, struct ud_err *e);

/* What a resume restores. */
struct worker_resume {
    struct ud_ckpt_state st; /* the checkpoint's state (owns the optimizer state) */
    struct ud_rng dropout;   /* this rank's stream (reseeded when the world changed) */
    int same_world;
};

/* Finds the newest complete checkpoint of the session, checks it belongs to this run (same
 * fingerprint; a different epoch count is allowed), loads its parameters into m and fills r.
 * Returns UD_ENOTFOUND when there is none (train from the start), another error (with the
 * reason, on every rank) when it cannot be used. */
int worker_session_resume(struct worker_session *s, ud_model_t *m, struct worker_resume *r,
                          struct ud_err *e);

#endif
