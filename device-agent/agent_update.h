/*  agent_update.h — one on-device update: the code `updraft-agent update` and the daemon share.
 *
 *  Given a model (updated in place) and a data source, it loads the data at the model's input
 *  shape, maps the data's classes onto the model's labels, starts from the model's update
 *  defaults, applies the overrides the caller has (command line or the coordinator's task),
 *  checks them against the model's allowed ranges, and runs the update engine (ud_update.h) on
 *  this thread, reporting training begin and every epoch end through agent_log. The engine
 *  touches only the layers the model marks updatable.
 *
 *  SIGINT/SIGTERM: a program installs agent_update_on_signal for them; it cancels the running
 *  task (at its next mini-batch boundary) and remembers the request (agent_update_stopping).
 */
#ifndef AGENT_UPDATE_H
#define AGENT_UPDATE_H

#include <stdint.h>

#include "agent_log.h"
#include "updraft/ud_error.h"
#include "updraft/ud_model.h"

struct agent_update_req {
    const char *data; /* a directory of class folders, an IDX images file or a CSV */
    /* Overrides of the model's update defaults; each applies only when its have_* is set. */
    int have_epochs, have_lr, have_batch, have_seed;
    int64_t epochs, batch;
    double lr;
    uint64_t seed;
    int threads; /* reported in training_begin only (the program pins the BLAS itself) */
};

struct agent_update_result {
    int64_t samples; /* training samples (every one is used each epoch) */
    int64_t epochs;
    double loss, accuracy; /* the final epoch's mean loss and training accuracy */
    double seconds;        /* training time */
    int bad_params;        /* set when the error is an override outside the model's ranges */
};

/* Runs the update of model on req->data. Returns 0 with *res filled, or:
 *   UD_ERANGE with res->bad_params set: an override outside the model's allowed range (or not
 *     valid at all), the message naming the key, the value and the range ("learningRate 5 is
 *     outside the model's allowed range [0, 1]");
 *   the loader's error (bad directory, unreadable image ...), naming the path;
 *   UD_ENOTFOUND: a class of the data that the model does not know, named with the model's
 *     labels; UD_ESHAPE: samples of another size than the model takes;
 *   UD_ECANCELLED after a signal; the engine's error otherwise (UD_ENONFINITE ...).
 * On error the model may hold partly updated parameters: the caller discards it. */
int agent_update_run(ud_model_t *model, const struct agent_update_req *req,
                     const struct agent_log *log, struct agent_update_result *res,
                     struct ud_err *e);

/* A signal handler for SIGINT and SIGTERM: cancels the running update, sets the stop flag. */
void agent_update_on_signal(int sig);
/* Installs agent_update_on_signal for SIGINT and SIGTERM (no SA_RESTART: sleeps wake). */
void agent_update_handle_signals(void);
/* True once SIGINT or SIGTERM arrived. */
int agent_update_stopping(void);

#endif
