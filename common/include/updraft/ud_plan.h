/*  ud_plan.h — the shard plan: which samples each rank of a data-parallel job trains on.
 *
 *  The coordinator computes a plan from a manifest of the dataset (its sample count, class
 *  names and a hash of its labels) and sends it to the job's rank 0, which hands it to every
 *  rank. A worker checks the manifest against the data it loaded (so the indices mean the same
 *  samples) and then trains rank r on shard r only.
 *
 *  The plan for T training samples, global batch B and W ranks:
 *    - validation: the dataset indices held out (the coordinator applies the job's --validation
 *      split, the same ud_split_indices the standalone worker uses);
 *    - the training indices are shuffled once with the job's seed (stream UD_PLAN_RNG_STREAM)
 *      and cut into W consecutive shards; with S = T / B full steps, R = T % B, b_r the size of
 *      rank r's slice of a B batch and q_r that of an R batch (ud_update_rank_slice), shard r
 *      holds S*b_r + q_r samples. Every step, each rank's slice of the global batch then comes
 *      from its own shard, and the last (partial) batch fits too.
 *    - each epoch, every rank visits its shard in its own order (seed, epoch, rank; no shuffle:
 *      shard order), and step s of the epoch takes rank r's b_r samples s*b_r.. of that order.
 *
 *  The engine sees one provider over the concatenated shards (positions 0..T-1, shard 0 first)
 *  and asks ud_plan_epoch_order for the order of positions; ud_update_rank_slice of each batch
 *  then lands inside the rank's own shard.
 *
 *  Thread-safety: plans are plain values; functions touch only their arguments.
 */
#ifndef UD_PLAN_H
#define UD_PLAN_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_data.h"
#include "updraft/ud_error.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD_PLAN_RNG_STREAM  0x504c414eull /* "PLAN": the shard assignment's stream */
#define UD_PLAN_MAX_WORLD   4096
#define UD_PLAN_MAX_SAMPLES (1u << 30)
#define UD_PLAN_MAX_CLASSES 65536

/* What the coordinator knows about a dataset: enough to check a worker loaded the same one. */
struct ud_manifest {
    uint64_t samples;     /* after --max-samples and --skip-bad */
    int nclasses;         /* class names, in the dataset's class order */
    char **classes;       /* owned (each string and the array) */
    uint64_t labels_hash; /* ud_manifest_labels_hash */
};

struct ud_plan {
    struct ud_manifest manifest;
    uint64_t seed;        /* the job's seed */
    int64_t batch;        /* global batch B */
    int shuffle;          /* 0: every rank visits its shard in order each epoch */
    int world;            /* W */
    uint32_t *validation; /* owned: dataset indices held out, ascending */
    size_t nvalidation;
    uint32_t **shards; /* owned: shards[r] holds shard_len[r] dataset indices */
    size_t *shard_len; /* owned: W lengths */
};

/* 64-bit FNV-1a over the int32 labels of samples 0..n-1 (little-endian bytes). */
uint64_t ud_manifest_labels_hash(const ud_dataset_t *ds);
/* Fills m from a loaded dataset (class names copied). Returns 0 or UD_ENOMEM. */
int ud_manifest_from_dataset(const ud_dataset_t *ds, struct ud_manifest *m, struct ud_err *e);
/* 0 if ds matches m; else UD_ECONFLICT with e naming the first difference (sample count,
 * class count, class name i, label hash). */
int ud_manifest_check(const struct ud_manifest *m, const ud_dataset_t *ds, struct ud_err *e);
void ud_manifest_deinit(struct ud_manifest *m);

/* Computes the plan for the training indices train[0..ntrain) and validation indices
 * va[0..nva) (both copied) of a dataset described by m (copied). batch >= world >= 1 and
 * ntrain >= 1 are required (UD_EINVAL otherwise, with the reason). Returns 0, UD_EINVAL or
 * UD_ENOMEM; on error p is left zeroed. */
int ud_plan_make(const struct ud_manifest *m, const uint32_t *train, size_t ntrain,
                 const uint32_t *va, size_t nva, uint64_t seed, int64_t batch, int shuffle,
                 int world, struct ud_plan *p, struct ud_err *e);
/* Structural checks on a plan that came over the network: world in 1..UD_PLAN_MAX_WORLD,
 * batch >= world, shard lengths as specified above, every index < manifest.samples, no index
 * twice (over shards and validation). Returns 0 or UD_EFORMAT naming the first problem. */
int ud_plan_validate(const struct ud_plan *p, struct ud_err *e);
void ud_plan_deinit(struct ud_plan *p);

/* Total training samples (sum of shard lengths). */
size_t ud_plan_train_count(const struct ud_plan *p);
/* The dataset indices of the concatenated shards (shard 0 first): out[0..train_count). */
void ud_plan_train_indices(const struct ud_plan *p, uint32_t *out);
/* The engine's epoch order (ud_update_hooks.epoch_order): perm[0..n) of provider positions
 * (n == ud_plan_train_count), such that rank r's ud_update_rank_slice of every global batch
 * of the epoch is made of positions of shard r. */
void ud_plan_epoch_order(const struct ud_plan *p, int64_t epoch, uint32_t *perm, size_t n);
/* A 64-bit hash of everything in the plan (for run fingerprints). */
uint64_t ud_plan_hash(const struct ud_plan *p);

#ifdef __cplusplus
}
#endif
#endif
