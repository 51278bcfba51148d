/*  ud_ckpt.h — training-session checkpoints (Create ML's MLCheckpoint), written by every rank.
 *
 *  A session directory holds checkpoints/ckpt-<iteration, 12 digits>/, each with:
 *    model.udm        the parameters, as a complete .udm model (rank 0)
 *    state.ckpt       MLCheckpoint's fields plus what continues training bit for bit: position,
 *                     epoch sums, hyper-parameters, optimizer state (rank 0)
 *    rank-NNNNN.ckpt  each rank's own state (its dropout stream) (every rank)
 *    DONE             written last, by rank 0, after every rank has finished its files; it lists
 *                     each file with its size and SHA-256
 *  Every file is written atomically (temporary name, fsync, rename, directory fsync). A checkpoint
 *  without DONE, or whose files do not match DONE, is incomplete and never resumed from.
 *  Formats: docs/checkpoints.md (state.ckpt and the rank files use the .udm envelope: magic
 *  "UDCK" / "UDCR", version, msgpack body, SHA-256; DONE is a short text file). Multi-host runs
 *  need the session directory on a shared file system (every rank writes into it).
 *
 *  Every function is reentrant (no global state; state hangs off the arguments) and returns 0 or
 *  a negative UD_E* code with the reason in e. Messages name the file and the field.
 */
#ifndef UD_CKPT_H
#define UD_CKPT_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_model.h"
#include "updraft/ud_optim.h"
#include "updraft/ud_rng.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD_CKPT_MAX_RANKS 65536
/* The largest optimizer state a checkpoint carries: Adam's two moments of UD_MAX_PARAMS
 * parameters (2 GiB of f32). Readers refuse a larger declared size before allocating. */
#define UD_CKPT_MAX_OPTIM_FLOATS ((size_t)2 * UD_MAX_PARAMS)

/* Metrics at the checkpoint (NaN when unknown). */
struct ud_ckpt_metrics {
    double loss;         /* mean training loss of the current epoch so far */
    double accuracy;     /* training accuracy of the current epoch so far */
    double val_loss;     /* of the last finished epoch with validation */
    double val_accuracy; /* of the last finished epoch with validation */
    double learning_rate;
};

struct ud_ckpt_state {
    /* MLCheckpoint: phase, iteration, date, url (path), metrics. */
    char phase[16];    /* "training" (MLPhase) */
    int64_t iteration; /* optimizer steps taken since training began */
    int64_t date;      /* Unix time, seconds, when written */
    char path[4096];   /* the checkpoint directory (filled by read and list) */
    struct ud_ckpt_metrics metrics;

    /* To continue bit for bit. */
    int64_t epoch, minibatch; /* position of the next step */
    int64_t steps_per_epoch, total_steps;
    double epoch_sums[3]; /* loss sum, correct count, samples of the current epoch (all ranks) */
    int32_t world;        /* ranks that wrote it */
    int32_t threads;      /* compute threads per rank (summation order depends on it) */
    struct ud_update_params params;
    char fingerprint[2048]; /* the run's identity (architecture, data, ...); must match to resume */
    float *optim_state;     /* owned: ud_ckpt_state_deinit frees it (writers may lend a buffer
                               they own and never deinit) */
    size_t optim_floats;    /* floats at optim_state; 0 when not loaded (ud_ckpt_list) */
    int64_t optim_steps;

    /* Filled by ud_ckpt_list and ud_ckpt_read. */
    int complete;      /* DONE present and every file matches it */
    char problem[512]; /* why not complete ("no DONE marker", "state.ckpt: checksum ...") */
};

/* The directory of the checkpoint at `iteration` (>= 0) in session:
 * SESSION/checkpoints/ckpt-%012lld. Returns 0, UD_EINVAL or UD_ELIMIT when it does not fit in
 * cap. */
int ud_ckpt_dir(const char *session, int64_t iteration, char *out, size_t cap, struct ud_err *e);

/* Creates the checkpoint directory (and its parents, SESSION/checkpoints), emptying it first if
 * an incomplete checkpoint of the same iteration was left there (DONE is removed first). Called
 * by rank 0 before the others write (the caller orders this with a barrier). Refuses
 * (UD_ECONFLICT) to touch a complete one. */
int ud_ckpt_begin(const char *dir, struct ud_err *e);

/* Rank 0's files. The state is checked first (path, complete and problem are ignored; the
 * optimizer state is borrowed): a state that would not read back is refused (UD_EINVAL,
 * UD_ERANGE, UD_ENONFINITE, UD_ELIMIT naming the field). */
int ud_ckpt_write_model(const char *dir, const ud_model_t *m, struct ud_err *e);
int ud_ckpt_write_state(const char *dir, const struct ud_ckpt_state *st, struct ud_err *e);
/* Every rank's file: 0 <= rank < world <= UD_CKPT_MAX_RANKS, and the dropout stream's state. */
int ud_ckpt_write_rank(const char *dir, int rank, int world, const struct ud_rng *dropout,
                       struct ud_err *e);
/* Rank 0, after every rank has written: checks that model.udm, state.ckpt and rank files
 * 0..world-1 exist, that state.ckpt and every rank file read back and say `world` ranks (and
 * rank file r says rank r), then writes DONE (file names, sizes, SHA-256) atomically. */
int ud_ckpt_commit(const char *dir, int world, struct ud_err *e);

/* Every checkpoint directory of the session (SESSION/checkpoints/ckpt-<digits>; other names are
 * ignored), oldest first, with path, complete and problem filled and, for those whose
 * state.ckpt could be read, the state (optimizer state not loaded; otherwise iteration comes
 * from the directory name, phase is "" and the metrics NaN). Decides completeness as
 * ud_ckpt_read does (model.udm is hashed, not decoded), so it reads every file once. *list is
 * the caller's to free (ud_ckpt_list_free). An empty or missing session gives n = 0. */
int ud_ckpt_list(const char *session, struct ud_ckpt_state **list, size_t *n, struct ud_err *e);
void ud_ckpt_list_free(struct ud_ckpt_state **list, size_t n);

/* The newest complete checkpoint of session into dir (checked newest first, stopping at the
 * first complete one); UD_ENOTFOUND when there is none (the message names the newest
 * incomplete one and why). */
int ud_ckpt_latest(const char *session, char *dir, size_t cap, struct ud_err *e);

/* Reads a complete checkpoint (verifying DONE and every file's size and SHA-256): the state,
 * with the optimizer state, and, when model is not NULL, a new model from model.udm (the
 * caller's to destroy). st is overwritten (the caller deinits it after success; on failure
 * nothing is left to free). Errors start with dir and name the file and what is wrong: no DONE
 * is UD_ESTATE; a listed file missing UD_ENOTFOUND; a size or SHA-256 that differs from DONE's
 * UD_ECHECKSUM (UD_ETRUNCATED when shorter); a malformed DONE or file UD_EFORMAT (or the
 * file's decoder's code). */
int ud_ckpt_read(const char *dir, struct ud_ckpt_state *st, ud_model_t **model, struct ud_err *e);
/* Reads rank's file of a checkpoint with DONE, checking that file (only) against DONE: the
 * world it was written with and the stream. A rank at or beyond DONE's world is UD_ENOTFOUND;
 * a file whose rank or world disagrees with its name or DONE is UD_EFORMAT. */
int ud_ckpt_read_rank(const char *dir, int rank, int *world, struct ud_rng *dropout,
                      struct ud_err *e);
void ud_ckpt_state_deinit(struct ud_ckpt_state *st);

/* Keeps the newest `keep` (>= 1) complete checkpoints; deletes older complete ones, and
 * incomplete ones older than the newest complete one (leftovers of a crash). Incomplete ones
 * newer than the newest complete one are kept. Never deletes the newest complete one. Each
 * directory loses DONE first, so an interrupted prune leaves an incomplete checkpoint, never a
 * corrupt one; files that vanish meanwhile are fine. Returns 0, UD_EINVAL or UD_EIO (after
 * trying every directory it meant to delete). */
int ud_ckpt_prune(const char *session, int keep, struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif
