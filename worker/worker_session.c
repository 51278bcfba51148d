/*  worker_session.c — checkpoints written by all ranks together, and resume (see worker_session.h).
 */
#include "worker_session.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "updraft/ud_clock.h"

/* The parameters' SHA-256 as four words, for the replica check. */
static void params_words(const ud_model_t *m, int64_t w[4])
{
    char hex[65];
    ud_model_params_sha256(m, hex);
    for (int i = 0; i < 4; i++) {
        char part[17];
        memcpy(part, hex + 16 * i, 16);
        part[16] = '\0';
        w[i] = (int64_t)strtoull(part, NULL, 16);
    }
}

int worker_session_checkpoint(struct worker_session *s, ud_update_task_t *t, struct ud_err *e)
{
    double t0 = ud_clock_mono();
    ud_model_t *m = ud_update_task_model(t);
    struct ud_update_metrics mt = ud_update_task_metrics(t);
    char dir[4096];
    struct ud_err le = {0};
    int rc;

    if ((rc = ud_ckpt_dir(s->dir, mt.step, dir, sizeof dir, e)))
        return rc;
    /* 1. rank 0 prepares the directory. */
    rc = s->rank == 0 ? ud_ckpt_begin(dir, &le) : 0;
    if ((rc = worker_dist_agree_err(s->d, rc, &le, "preparing the checkpoint", e)))
        return ud_err_prefix(e, "checkpoint at step %lld", (long long)mt.step);

    /* 2. every rank its part. */
    if (s->rank == 0) {
        struct ud_ckpt_state st;
        memset(&st, 0, sizeof st);
        snprintf(st.phase, sizeof st.phase, "training");
        st.iteration = mt.step;
        st.date = (int64_t)time(NULL);
        ud_update_task_position(t, &st.epoch, &st.minibatch);
        ud_update_task_epoch_sums(t, st.epoch_sums);
        st.steps_per_epoch = mt.steps_per_epoch;
        st.world = s->world;
        st.threads = s->threads;
        st.params = *ud_update_task_parameters(t);
        st.total_steps = st.params.epochs * mt.steps_per_epoch;
        snprintf(st.fingerprint, sizeof st.fingerprint, "%s", s->fingerprint);
        st.metrics.loss = st.epoch_sums[2] > 0 ? st.epoch_sums[0] / st.epoch_sums[2] : NAN;
        st.metrics.accuracy = st.epoch_sums[2] > 0 ? st.epoch_sums[1] / st.epoch_sums[2] : NAN;
        st.metrics.val_loss = s->val_loss;
        st.metrics.val_accuracy = s->val_accuracy;
        st.metrics.learning_rate = mt.learning_rate;
        ud_optim_t *o = ud_update_task_optim(t);
        st.optim_state = ud_optim_state(o, &st.optim_floats);
        st.optim_steps = ud_optim_steps(o);
        rc = ud_ckpt_write_model(dir, m, &le);
        if (!rc)
            rc = ud_ckpt_write_state(dir, &st, &le);
    }
    if (!rc)
        rc = ud_ckpt_write_rank(dir, s->rank, s->world, ud_model_rng(m), &le);
    if (!rc && s->d) {
        /* Every replica must hold rank 0's parameters, bit for bit. */
        int64_t mine[4], ref[4];
        params_words(m, mine);
        memcpy(ref, mine, sizeof ref);
        if ((rc = worker_dist_bcast(s->d, ref, sizeof ref, 0, "the replica check", e)))
            return rc;
        if (memcmp(ref, mine, sizeof ref) != 0)
            rc = ud_err_set(&le, UD_EINTERNAL,
                            "its parameters differ from rank 0's at step %lld (the replicas "
                            "diverged)",
                            (long long)mt.step);
    }
    if ((rc = worker_dist_agree_err(s->d, rc, &le, "writing the checkpoint", e)))
        return ud_err_prefix(e, "checkpoint at step %lld", (long long)mt.step);

    /* 3. rank 0 marks it complete and prunes. */
    if (s->rank == 0) {
        rc = ud_ckpt_commit(dir, s->world, &le);
        if (!rc)
            rc = ud_ckpt_prune(s->dir, s->keep, &le);
    }
    if ((rc = worker_dist_agree_err(s->d, rc, &le, "completing the checkpoint", e)))
        return ud_err_prefix(e, "checkpoint at step %lld", (long long)mt.step);
    snprintf(s->last, sizeof s->last, "%s", dir);
    s->written++;
    s->write_seconds += ud_clock_mono() - t0;
    if (s->d)
        worker_dist_set_hint(s->d, "resume from %s with --resume", dir);
    return 0;
}

/* The first line where two fingerprints differ, for the message. */
static void first_difference(const char *a, const char *b, char *out, size_t cap)
{
    while (*a && *b) {
        const char *ea = strchr(a, '\n'), *eb = strchr(b, '\n');
        size_t la = ea ? (size_t)(ea - a) : strlen(a), lb = eb ? (size_t)(eb - b) : strlen(b);
        if (la != lb || memcmp(a, b, la) != 0) {
            snprintf(out, cap, "checkpoint has '%.*s', this run '%.*s'", (int)la, a, (int)lb, b);
            return;
        }
        a += la + (ea ? 1 : 0);
        b += lb + (eb ? 1 : 0);
    }
    snprintf(out, cap, "checkpoint has '%.200s', this run '%.200s'", a, b);
}

/* The fingerprint without its epochs line (a resume may raise or lower the epoch count). */
static void strip_epochs(const char *in, char *out, size_t cap)
{
    size_t o = 0;
    while (*in && o + 1 < cap) {
        const char *eol = strchr(in, '\n');
        size_t l = eol ? (size_t)(eol - in) + 1 : strlen(in);
        if (strncmp(in, "epochs ", 7) != 0) {
            size_t c = l < cap - 1 - o ? l : cap - 1 - o;
            memcpy(out + o, in, c);
            o += c;
        }
        in += l;
    }
    out[o] = '\0';
}

int worker_session_resume(struct worker_session *s, ud_model_t *m, struct worker_resume *r,
                          struct ud_err *e)
{
    struct ud_err le = {0};
    char dir[4096] = "";
    memset(r, 0, sizeof *r);
    /* Rank 0 chooses; everyone uses its choice (a file system may show files late). */
    int rc = s->rank == 0 ? ud_ckpt_latest(s->dir, dir, sizeof dir, &le) : 0;
    int none = rc == UD_ENOTFOUND;
    if (none)
        rc = 0;
    if ((rc = worker_dist_agree_err(s->d, rc, &le, "finding the newest checkpoint", e)))
        return rc;
    if (s->d) {
        int64_t flag = none;
        if ((rc = worker_dist_max_i64(s->d, &flag, 1, "finding the newest checkpoint", e)) ||
            (rc = worker_dist_bcast(s->d, dir, sizeof dir, 0, "finding the newest checkpoint", e)))
            return rc;
        none = (int)flag;
    }
    if (none)
        return ud_err_set(e, UD_ENOTFOUND, "no complete checkpoint in %s", s->dir);

    ud_model_t *cm = NULL;
    rc = ud_ckpt_read(dir, &r->st, &cm, &le);
    if (!rc) {
        char a[sizeof r->st.fingerprint], b[sizeof r->st.fingerprint];
        strip_epochs(r->st.fingerprint, a, sizeof a);
        strip_epochs(s->fingerprint, b, sizeof b);
        if (strcmp(a, b) != 0) {
            char diff[700];
            first_difference(a, b, diff, sizeof diff);
            rc = ud_err_set(&le, UD_ECONFLICT,
                            "%s belongs to another run (%s); start a new --session, or run with "
                            "the same settings",
                            dir, diff);
        } else if (ud_model_param_count(cm) != ud_model_param_count(m)) {
            rc = ud_err_set(&le, UD_ESHAPE, "%s: the model has %zu parameters, this run's %zu", dir,
                            ud_model_param_count(cm), ud_model_param_count(m));
        } else {
            memcpy(ud_model_params(m), ud_model_params_const(cm),
                   ud_model_param_count(m) * sizeof(float));
        }
    }
    ud_model_destroy(&cm);
    if (!rc) {
        r->same_world = r->st.world == s->world;
        if (r->same_world) {
            int w = 0;
            rc = ud_ckpt_read_rank(dir, s->rank, &w, &r->dropout, &le);
        } else {
            /* A new world: fresh dropout streams, one per rank, from the seed and the step. */
            ud_rng_seed(&r->dropout, r->st.params.seed ^ (uint64_t)r->st.iteration,
                        (uint64_t)UD_RNG_DROPOUT + 0x100u * (uint64_t)(s->rank + 1));
        }
    }
    if ((rc = worker_dist_agree_err(s->d, rc, &le, "reading the checkpoint", e))) {
        ud_ckpt_state_deinit(&r->st);
        return rc;
    }
    snprintf(s->last, sizeof s->last, "%s", dir);
    s->val_loss = r->st.metrics.val_loss;
    s->val_accuracy = r->st.metrics.val_accuracy;
    if (s->d)
        worker_dist_set_hint(s->d, "resume from %s with --resume", dir);
    return 0;
}
