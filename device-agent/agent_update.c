/*  agent_update.c — one on-device update through the update engine (contract: agent_update.h).
 */
#include "agent_update.h"

#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "updraft/ud_clock.h"
#include "updraft/ud_data.h"
#include "updraft/ud_delta.h"
#include "updraft/ud_signal.h"
#include "updraft/ud_update.h"

/* The running task, for the signal handler; the program is single-threaded around it. */
static ud_update_task_t *volatile g_task;
static volatile sig_atomic_t g_stop;

void agent_update_on_signal(int sig)
{
    (void)sig;
    g_stop = 1;
    if (g_task)
        ud_update_task_cancel(g_task);
}

void agent_update_handle_signals(void)
{
    ud_signal_on_stop(agent_update_on_signal);
}

int agent_update_stopping(void)
{
    return g_stop != 0;
}

struct progress {
    const struct agent_log *log;
    const struct agent_update_req *req;
    size_t samples;
    struct ud_update_metrics last;
    int have_last;
};

static void on_progress(struct ud_update_context *ctx, void *user)
{
    struct progress *p = user;
    const struct agent_log *log = p->log;
    const struct ud_update_metrics *m = &ctx->metrics;
    const struct ud_update_params *prm = ctx->parameters;
    if (ctx->event == UD_EVENT_TRAINING_BEGIN) {
        agent_json_open(log, "training_begin");
        agent_json_str(log, "task", ud_update_task_identifier(ctx->task));
        agent_json_int(log, "samples", (long long)p->samples);
        agent_json_int(log, "epochs", (long long)prm->epochs);
        agent_json_int(log, "batch", (long long)prm->mini_batch_size);
        agent_json_num(log, "lr", prm->learning_rate);
        agent_json_int(log, "seed", (long long)prm->seed);
        agent_json_int(log, "steps_per_epoch", (long long)m->steps_per_epoch);
        agent_json_int(log, "params", (long long)ud_model_param_count(ctx->model));
        agent_json_int(log, "updatable_params", (long long)ud_delta_size(ctx->model));
        agent_json_int(log, "threads", p->req->threads);
        agent_json_close(log);
        agent_say(log,
                  "training begins: %zu samples, %lld epochs, batch %lld, %s lr %g, %zu of %zu "
                  "parameters updatable",
                  p->samples, (long long)prm->epochs, (long long)prm->mini_batch_size,
                  ud_optimizer_name(prm->optimizer), prm->learning_rate, ud_delta_size(ctx->model),
                  ud_model_param_count(ctx->model));
        return;
    }
    if (ctx->event != UD_EVENT_EPOCH_END)
        return;
    p->last = *m;
    p->have_last = 1;
    agent_json_open(log, "epoch_end");
    agent_json_int(log, "epoch", (long long)m->epoch_index + 1);
    agent_json_num(log, "loss", m->loss);
    agent_json_num(log, "accuracy", m->accuracy);
    agent_json_num(log, "samples_per_sec", m->samples_per_sec);
    agent_json_num(log, "seconds", m->seconds);
    agent_json_close(log);
    agent_say(log, "epoch %lld/%lld  loss %.4f  accuracy %.4f  %.0f samples/s",
              (long long)m->epoch_index + 1, (long long)prm->epochs, m->loss, m->accuracy,
              m->samples_per_sec);
}

static void on_complete(struct ud_update_context *ctx, void *user)
{
    (void)ctx;
    (void)user;
}

static void on_warn(void *user, const char *msg)
{
    agent_warn(user, "%s", msg);
}

/* Renumbers the data's labels to the model's; a class the model lacks is named. */
static int map_classes(ud_dataset_t *ds, const ud_model_t *m, const char *src, struct ud_err *e)
{
    int C = ud_model_num_classes(m);
    for (int c = 0; c < ud_dataset_num_classes(ds); c++) {
        const char *name = ud_dataset_class_name(ds, c);
        if (ud_model_label_index(m, name) < 0) {
            char known[256] = "";
            size_t at = 0;
            for (int k = 0; k < C && at < sizeof known - 8; k++) {
                int w = snprintf(known + at, sizeof known - at, "%s%s", k ? ", " : "",
                                 ud_model_label(m, k));
                at += w > 0 ? (size_t)w : 0;
            }
            if (at >= sizeof known - 8)
                snprintf(known + sizeof known - 8, 8, ", ...");
            return ud_err_set(e, UD_ENOTFOUND,
                              "%s: class '%s' is not one of the model's labels (%s)", src, name,
                              known);
        }
    }
    return ud_dataset_map_classes(ds, ud_model_labels(m), C, e);
}

int agent_update_run(ud_model_t *model, const struct agent_update_req *req,
                     const struct agent_log *log, struct agent_update_result *res, struct ud_err *e)
{
    memset(res, 0, sizeof *res);
    int rc;
    ud_dataset_t *ds = NULL;
    ud_update_task_t *task = NULL;

    /* Parameters: the model's defaults, then the overrides, checked against its ranges. */
    const struct ud_update_defaults *defs = ud_model_update_defaults_const(model);
    struct ud_update_params p;
    ud_update_params_default(&p);
    ud_update_defaults_to_params(defs, &p);
    if (req->have_epochs)
        p.epochs = req->epochs;
    if (req->have_lr)
        p.learning_rate = req->lr;
    if (req->have_batch)
        p.mini_batch_size = req->batch;
    if (req->have_seed)
        p.seed = req->seed;
    if ((rc = ud_update_params_check_model_ranges(&p, defs, e)) < 0 ||
        (rc = ud_update_params_check_runnable(&p, e)) < 0) {
        res->bad_params = 1;
        return rc;
    }

    struct ud_load_opts lo = {
        .shape = ud_model_arch(model)->input, .warn = on_warn, .warn_user = (void *)log};
    if (!(ds = ud_dataset_load(req->data, &lo, e)))
        return e->code ? e->code : UD_EIO;
    if (ud_dataset_input_size(ds) != ud_model_input_size(model)) {
        rc = ud_err_set(e, UD_ESHAPE, "%s: samples have %zu values but the model takes %zu",
                        req->data, ud_dataset_input_size(ds), ud_model_input_size(model));
        goto out_free_data;
    }
    if ((rc = map_classes(ds, model, req->data, e)) < 0)
        goto out_free_data;

    struct ud_batch_provider prov;
    ud_dataset_provider(ds, NULL, 0, &prov);
    struct progress prog = {.log = log, .req = req, .samples = ud_dataset_count(ds)};
    struct ud_update_config cfg = {.params = p};
    struct ud_update_handlers h = {.events = UD_EVENT_TRAINING_BEGIN | UD_EVENT_EPOCH_END,
                                   .progress = on_progress,
                                   .completion = on_complete,
                                   .user = &prog};
    if (!(task = ud_update_task_new(model, &prov, &cfg, &h, e))) {
        rc = e->code ? e->code : UD_EINTERNAL;
        goto out_free_data;
    }
    double t0 = ud_clock_mono();
    g_task = task;
    if (g_stop) /* a signal before the task existed */
        ud_update_task_cancel(task);
    rc = ud_update_task_run(task);
    g_task = NULL;
    if (rc < 0) {
        const struct ud_err *te = ud_update_task_error(task);
        if (rc == UD_ECANCELLED)
            ud_err_set(e, rc, "update cancelled at epoch %lld",
                       (long long)ud_update_task_metrics(task).epoch_index + 1);
        else
            ud_err_set(e, rc, "update failed: %s", te->msg[0] ? te->msg : ud_strerror(rc));
        goto out_destroy_task;
    }
    res->samples = (int64_t)prog.samples;
    res->epochs = p.epochs;
    res->loss = prog.have_last ? prog.last.loss : NAN;
    res->accuracy = prog.have_last ? prog.last.accuracy : NAN;
    res->seconds = ud_clock_mono() - t0;

out_destroy_task:
    ud_update_task_destroy(&task);
out_free_data:
    ud_dataset_destroy(&ds);
    return rc;
}
