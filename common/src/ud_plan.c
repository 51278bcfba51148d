/*  ud_plan.c — shard plans: which samples each rank of a data-parallel job trains on
 *  (contract and the plan's arithmetic: ud_plan.h; for people: docs/protocol.md, "Shard plans").
 *
 *  Layout. The engine sees the concatenated shards as positions 0..T-1 (shard r at offset
 *  off_r = len_0 + ... + len_{r-1}). With S = T / B full steps and R = T % B, step s < S takes
 *  global batch positions [s*B, (s+1)*B) of the epoch order and rank r the slice
 *  [s*B + lo_r, s*B + lo_r + b_r) (ud_update_rank_slice(B, r, W)); the partial step S takes
 *  [S*B + lq_r, S*B + lq_r + q_r) (ud_update_rank_slice(R, r, W)). Rank r's j-th "slot" of the
 *  epoch is therefore the order position
 *      slot(r, j) = (j / b_r) * B + lo_r + j % b_r       for j < S*b_r
 *                 = S*B + lq_r + (j - S*b_r)             for the q_r slots of the partial step,
 *  and ud_plan_epoch_order writes off_r + o_r[j] there, o_r being rank r's order of its shard
 *  for the epoch. Because shard r holds exactly S*b_r + q_r samples, the slots of all ranks
 *  tile 0..T-1 and every slice lands in its rank's shard.
 *
 *  Orders. o_r is ud_rng_permutation's permutation of 0..len_r-1 from (seed, stream(epoch, r))
 *  when shuffling, the identity otherwise. The permutation is built in place through slot()
 *  (the same Fisher-Yates swaps ud_rng_permutation makes, so o_r is exactly its output), which
 *  needs no scratch memory: ud_plan_epoch_order cannot fail.
 *
 *  Streams. The shard assignment uses UD_PLAN_RNG_STREAM; the order of rank r in epoch e uses
 *  UD_PLAN_RNG_STREAM ^ (x * K) with x = e * UD_PLAN_MAX_WORLD + r + 1 and K the engine's odd
 *  epoch multiplier (0x9e3779b97f4a7c15, ud_update.c). x is never 0 and distinct for every
 *  (epoch < 2^52, rank < UD_PLAN_MAX_WORLD), and multiplying by an odd K and XOR-ing are both
 *  bijections modulo 2^64, so no two (epoch, rank) pairs share a stream and none reuses the
 *  assignment's. Changing any of this changes every planned run: it is part of the contract.
 */
#include "updraft/ud_plan.h"

#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "updraft/ud_rng.h"
#include "updraft/ud_strv.h"
#include "updraft/ud_update.h"

#define PLAN_EPOCH_MIX 0x9e3779b97f4a7c15ULL
#define FNV_OFFSET     0xcbf29ce484222325ULL
#define FNV_PRIME      0x100000001b3ULL

/* ------------------------------------------------------------------------------------------ */
/* Hashing                                                                                    */
/* ------------------------------------------------------------------------------------------ */

static uint64_t fnv_bytes(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= FNV_PRIME;
    }
    return h;
}

/* v as 8 little-endian bytes, whatever the host. */
static uint64_t fnv_u64(uint64_t h, uint64_t v)
{
    unsigned char b[8];
    for (int i = 0; i < 8; i++)
        b[i] = (unsigned char)(v >> (8 * i));
    return fnv_bytes(h, b, sizeof b);
}

static uint64_t fnv_u32(uint64_t h, uint32_t v)
{
    unsigned char b[4] = {(unsigned char)v, (unsigned char)(v >> 8), (unsigned char)(v >> 16),
                          (unsigned char)(v >> 24)};
    return fnv_bytes(h, b, sizeof b);
}

uint64_t ud_manifest_labels_hash(const ud_dataset_t *ds)
{
    uint64_t h = FNV_OFFSET;
    size_t n = ud_dataset_count(ds);
    for (size_t i = 0; i < n; i++)
        h = fnv_u32(h, (uint32_t)ud_dataset_label(ds, i));
    return h;
}

/* ------------------------------------------------------------------------------------------ */
/* Manifests                                                                                  */
/* ------------------------------------------------------------------------------------------ */

/* The manifest's class count as an array length (a count read from a peer may be negative). */
static size_t nclasses_of(const struct ud_manifest *m)
{
    return m->nclasses > 0 ? (size_t)m->nclasses : 0;
}

void ud_manifest_deinit(struct ud_manifest *m)
{
    if (!m)
        return;
    ud_strv_free(m->classes, nclasses_of(m));
    memset(m, 0, sizeof *m);
}

int ud_manifest_from_dataset(const ud_dataset_t *ds, struct ud_manifest *m, struct ud_err *e)
{
    memset(m, 0, sizeof *m);
    int n = ud_dataset_num_classes(ds);
    if (n > 0) {
        if (ud_strv_dup(ud_dataset_classes(ds), (size_t)n, &m->classes))
            return ud_err_set(e, UD_ENOMEM, "manifest: out of memory for %d class names", n);
        m->nclasses = n;
    }
    m->samples = ud_dataset_count(ds);
    m->labels_hash = ud_manifest_labels_hash(ds);
    return 0;
}

int ud_manifest_check(const struct ud_manifest *m, const ud_dataset_t *ds, struct ud_err *e)
{
    uint64_t n = ud_dataset_count(ds);
    if (n != m->samples)
        return ud_err_set(e, UD_ECONFLICT,
                          "the dataset has %llu samples, the plan's manifest says %llu (same "
                          "data, --max-samples and --skip-bad as the coordinator?)",
                          (unsigned long long)n, (unsigned long long)m->samples);
    int k = ud_dataset_num_classes(ds);
    if (k != m->nclasses)
        return ud_err_set(e, UD_ECONFLICT,
                          "the dataset has %d classes, the plan's manifest says %d", k,
                          m->nclasses);
    for (int c = 0; c < k; c++) {
        const char *name = ud_dataset_class_name(ds, c);
        const char *want = m->classes && m->classes[c] ? m->classes[c] : "";
        if (strcmp(name ? name : "", want) != 0)
            return ud_err_set(e, UD_ECONFLICT,
                              "class %d is \"%.100s\" in the dataset, \"%.100s\" in the plan's "
                              "manifest",
                              c, name ? name : "", want);
    }
    uint64_t h = ud_manifest_labels_hash(ds);
    if (h != m->labels_hash)
        return ud_err_set(e, UD_ECONFLICT,
                          "the dataset's labels hash to %016llx, the plan's manifest says %016llx "
                          "(same samples in a different order, or relabelled?)",
                          (unsigned long long)h, (unsigned long long)m->labels_hash);
    return 0;
}

/* ------------------------------------------------------------------------------------------ */
/* Plan arithmetic                                                                            */
/* ------------------------------------------------------------------------------------------ */

/* Rank r's share of the steps: b (of a full batch B), q (of the partial batch R), and where
 * its slices start within those batches. */
struct rank_geom {
    size_t b, lo, q, lq;
};

static struct rank_geom geom(size_t B, size_t R, int r, int w)
{
    struct rank_geom g;
    size_t hi;
    ud_update_rank_slice(B, r, w, &g.lo, &hi);
    g.b = hi - g.lo;
    ud_update_rank_slice(R, r, w, &g.lq, &hi);
    g.q = hi - g.lq;
    return g;
}

/* The order position of rank r's j-th slot (see the top of the file). */
static size_t slot(const struct rank_geom *g, size_t S, size_t B, size_t j)
{
    if (j < S * g->b)
        return (j / g->b) * B + g->lo + j % g->b;
    return S * B + g->lq + (j - S * g->b);
}

static uint64_t order_stream(int64_t epoch, int r)
{
    uint64_t x = (uint64_t)epoch * UD_PLAN_MAX_WORLD + (uint64_t)r + 1;
    return UD_PLAN_RNG_STREAM ^ (x * PLAN_EPOCH_MIX);
}

size_t ud_plan_train_count(const struct ud_plan *p)
{
    size_t t = 0;
    for (int r = 0; r < p->world; r++)
        t += p->shard_len[r];
    return t;
}

void ud_plan_train_indices(const struct ud_plan *p, uint32_t *out)
{
    for (int r = 0; r < p->world; r++) {
        if (p->shard_len[r])
            memcpy(out, p->shards[r], p->shard_len[r] * sizeof *out);
        out += p->shard_len[r];
    }
}

void ud_plan_epoch_order(const struct ud_plan *p, int64_t epoch, uint32_t *perm, size_t n)
{
    size_t T = ud_plan_train_count(p);
    if (n != T || p->batch < 1) { /* a caller's mistake: keep the order well defined */
        for (size_t i = 0; i < n; i++)
            perm[i] = (uint32_t)i;
        return;
    }
    size_t B = (size_t)p->batch, S = T / B, R = T % B, off = 0;
    for (int r = 0; r < p->world; r++) {
        struct rank_geom g = geom(B, R, r, p->world);
        size_t len = p->shard_len[r];
        for (size_t j = 0; j < len; j++)
            perm[slot(&g, S, B, j)] = (uint32_t)(off + j);
        if (p->shuffle && len > 1) {
            /* ud_rng_permutation's swaps, through slot(). */
            struct ud_rng rng;
            ud_rng_seed(&rng, p->seed, order_stream(epoch, r));
            for (size_t i = len; i > 1; i--) {
                size_t j = (size_t)ud_rng_below(&rng, i);
                size_t a = slot(&g, S, B, i - 1), c = slot(&g, S, B, j);
                uint32_t t = perm[a];
                perm[a] = perm[c];
                perm[c] = t;
            }
        }
        off += len;
    }
}

uint64_t ud_plan_hash(const struct ud_plan *p)
{
    const struct ud_manifest *m = &p->manifest;
    uint64_t h = FNV_OFFSET;
    h = fnv_u64(h, m->samples);
    h = fnv_u64(h, (uint64_t)(int64_t)m->nclasses);
    for (int c = 0; c < m->nclasses; c++) {
        const char *s = m->classes && m->classes[c] ? m->classes[c] : "";
        size_t n = strlen(s);
        h = fnv_u64(h, n);
        h = fnv_bytes(h, s, n);
    }
    h = fnv_u64(h, m->labels_hash);
    h = fnv_u64(h, p->seed);
    h = fnv_u64(h, (uint64_t)p->batch);
    h = fnv_u64(h, p->shuffle ? 1 : 0);
    h = fnv_u64(h, (uint64_t)(int64_t)p->world);
    h = fnv_u64(h, p->nvalidation);
    for (size_t i = 0; i < p->nvalidation; i++)
        h = fnv_u32(h, p->validation[i]);
    for (int r = 0; r < p->world; r++) {
        h = fnv_u64(h, p->shard_len[r]);
        for (size_t i = 0; i < p->shard_len[r]; i++)
            h = fnv_u32(h, p->shards[r][i]);
    }
    return h;
}

/* ------------------------------------------------------------------------------------------ */
/* Checks                                                                                     */
/* ------------------------------------------------------------------------------------------ */

/* The plan's scalars and arrays: world, batch, manifest, and that the arrays are there. */
static int validate_fields(const struct ud_plan *p, struct ud_err *e)
{
    const struct ud_manifest *m = &p->manifest;
    if (p->world < 1 || p->world > UD_PLAN_MAX_WORLD)
        return ud_err_set(e, UD_EFORMAT, "plan: world %d is outside 1..%d", p->world,
                          UD_PLAN_MAX_WORLD);
    if (p->batch < p->world)
        return ud_err_set(e, UD_EFORMAT, "plan: batch %lld is smaller than the world (%d ranks)",
                          (long long)p->batch, p->world);
    if (m->samples > UD_PLAN_MAX_SAMPLES)
        return ud_err_set(e, UD_EFORMAT, "plan: manifest says %llu samples, the limit is %u",
                          (unsigned long long)m->samples, UD_PLAN_MAX_SAMPLES);
    if (m->nclasses < 0 || m->nclasses > UD_PLAN_MAX_CLASSES)
        return ud_err_set(e, UD_EFORMAT, "plan: manifest says %d classes, expected 0..%d",
                          m->nclasses, UD_PLAN_MAX_CLASSES);
    for (int c = 0; c < m->nclasses; c++)
        if (!m->classes || !m->classes[c])
            return ud_err_set(e, UD_EFORMAT, "plan: manifest class %d has no name", c);
    if (!p->shards || !p->shard_len)
        return ud_err_set(e, UD_EFORMAT, "plan: no shards");
    if (p->nvalidation && !p->validation)
        return ud_err_set(e, UD_EFORMAT, "plan: %zu validation indices but no array",
                          p->nvalidation);
    return 0;
}

/* Shard r holds S*b_r + q_r indices (each length bounded first, so the sum cannot overflow),
 * and the training and validation indices fit in the dataset. */
static int validate_lengths(const struct ud_plan *p, struct ud_err *e)
{
    const struct ud_manifest *m = &p->manifest;
    uint64_t T = 0;
    for (int r = 0; r < p->world; r++) {
        if (p->shard_len[r] > UD_PLAN_MAX_SAMPLES)
            return ud_err_set(e, UD_EFORMAT, "plan: shard %d has %zu indices, the limit is %u", r,
                              p->shard_len[r], UD_PLAN_MAX_SAMPLES);
        if (p->shard_len[r] && !p->shards[r])
            return ud_err_set(e, UD_EFORMAT, "plan: shard %d has %zu indices but no array", r,
                              p->shard_len[r]);
        T += p->shard_len[r];
    }
    if (T == 0)
        return ud_err_set(e, UD_EFORMAT, "plan: no training samples in any shard");
    uint64_t B = (uint64_t)p->batch, S = T / B, R = T % B;
    for (int r = 0; r < p->world; r++) {
        struct rank_geom g = geom((size_t)B, (size_t)R, r, p->world);
        uint64_t want = S * g.b + g.q;
        if (p->shard_len[r] != want)
            return ud_err_set(e, UD_EFORMAT,
                              "plan: shard %d has %zu indices, expected %llu (%llu training "
                              "samples, batch %llu, %d ranks)",
                              r, p->shard_len[r], (unsigned long long)want, (unsigned long long)T,
                              (unsigned long long)B, p->world);
    }
    if (T + p->nvalidation > m->samples)
        return ud_err_set(e, UD_EFORMAT,
                          "plan: %llu training and %zu validation indices, but the dataset has "
                          "only %llu samples",
                          (unsigned long long)T, p->nvalidation, (unsigned long long)m->samples);
    return 0;
}

/* Every index inside the dataset, validation ascending, none twice. */
static int validate_indices(const struct ud_plan *p, struct ud_err *e)
{
    const struct ud_manifest *m = &p->manifest;
    for (size_t i = 0; i < p->nvalidation; i++) {
        if (p->validation[i] >= m->samples)
            return ud_err_set(e, UD_EFORMAT,
                              "plan: validation index %zu is %u, the dataset has %llu samples", i,
                              p->validation[i], (unsigned long long)m->samples);
        if (i && p->validation[i] <= p->validation[i - 1])
            return ud_err_set(e, UD_EFORMAT,
                              "plan: validation indices are not ascending (%u after %u at %zu)",
                              p->validation[i], p->validation[i - 1], i);
    }
    /* The bitmap is sized from samples (at most 128 MiB at the limit); calloc maps it lazily,
     * so only the pages the indices touch cost memory. */
    unsigned char *seen = calloc((size_t)(m->samples + 7) / 8, 1);
    if (!seen)
        return ud_err_set(e, UD_ENOMEM, "plan: out of memory checking %llu samples",
                          (unsigned long long)m->samples);
    for (size_t i = 0; i < p->nvalidation; i++)
        seen[p->validation[i] >> 3] |= (unsigned char)(1u << (p->validation[i] & 7));
    int rc = 0;
    for (int r = 0; r < p->world && !rc; r++)
        for (size_t i = 0; i < p->shard_len[r]; i++) {
            uint32_t x = p->shards[r][i];
            if (x >= m->samples) {
                rc = ud_err_set(e, UD_EFORMAT,
                                "plan: shard %d index %zu is %u, the dataset has %llu samples", r,
                                i, x, (unsigned long long)m->samples);
                break;
            }
            unsigned char bit = (unsigned char)(1u << (x & 7));
            if (seen[x >> 3] & bit) {
                rc =
                    ud_err_set(e, UD_EFORMAT,
                               "plan: sample %u appears twice (again in shard %d at %zu)", x, r, i);
                break;
            }
            seen[x >> 3] |= bit;
        }
    free(seen);
    return rc;
}

int ud_plan_validate(const struct ud_plan *p, struct ud_err *e)
{
    int rc = validate_fields(p, e);
    if (rc == 0)
        rc = validate_lengths(p, e);
    if (rc == 0)
        rc = validate_indices(p, e);
    return rc;
}

/* ------------------------------------------------------------------------------------------ */
/* Making and freeing                                                                         */
/* ------------------------------------------------------------------------------------------ */

void ud_plan_deinit(struct ud_plan *p)
{
    if (!p)
        return;
    ud_manifest_deinit(&p->manifest);
    free(p->validation);
    if (p->shards)
        for (int r = 0; r < p->world; r++)
            free(p->shards[r]);
    free(p->shards);
    free(p->shard_len);
    memset(p, 0, sizeof *p);
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

int ud_plan_make(const struct ud_manifest *m, const uint32_t *train, size_t ntrain,
                 const uint32_t *va, size_t nva, uint64_t seed, int64_t batch, int shuffle,
                 int world, struct ud_plan *p, struct ud_err *e)
{
    memset(p, 0, sizeof *p);
    if (world < 1 || world > UD_PLAN_MAX_WORLD)
        return ud_err_set(e, UD_EINVAL, "shard plan: %d ranks, expected 1..%d", world,
                          UD_PLAN_MAX_WORLD);
    if (batch < world)
        return ud_err_set(e, UD_EINVAL,
                          "shard plan: batch %lld is smaller than the world (%d ranks): every "
                          "rank needs at least one sample per step",
                          (long long)batch, world);
    if (ntrain < 1)
        return ud_err_set(e, UD_EINVAL, "shard plan: no training samples");
    if (ntrain > UD_PLAN_MAX_SAMPLES || nva > UD_PLAN_MAX_SAMPLES)
        return ud_err_set(e, UD_EINVAL, "shard plan: more than %u samples", UD_PLAN_MAX_SAMPLES);

    int rc = UD_ENOMEM;
    uint32_t *perm = malloc(ntrain * sizeof *perm);
    p->world = world;
    p->shards = calloc((size_t)world, sizeof *p->shards);
    p->shard_len = calloc((size_t)world, sizeof *p->shard_len);
    if (nva)
        p->validation = malloc(nva * sizeof *p->validation);
    if (!perm || !p->shards || !p->shard_len || (nva && !p->validation))
        goto out_nomem;
    if (ud_strv_dup((const char *const *)m->classes, nclasses_of(m), &p->manifest.classes))
        goto out_nomem;
    p->manifest.nclasses = (int)nclasses_of(m);
    p->manifest.samples = m->samples;
    p->manifest.labels_hash = m->labels_hash;
    p->seed = seed;
    p->batch = batch;
    p->shuffle = shuffle ? 1 : 0;
    if (nva) {
        memcpy(p->validation, va, nva * sizeof *va);
        qsort(p->validation, nva, sizeof *p->validation, cmp_u32);
    }
    p->nvalidation = nva;

    /* One shuffle of the training indices with the job's seed, cut into consecutive shards. */
    struct ud_rng rng;
    ud_rng_seed(&rng, seed, UD_PLAN_RNG_STREAM);
    ud_rng_permutation(&rng, perm, ntrain);
    size_t B = (size_t)batch, S = ntrain / B, R = ntrain % B, at = 0;
    for (int r = 0; r < world; r++) {
        struct rank_geom g = geom(B, R, r, world);
        size_t len = S * g.b + g.q;
        p->shards[r] = malloc((len ? len : 1) * sizeof **p->shards);
        if (!p->shards[r])
            goto out_nomem;
        for (size_t i = 0; i < len; i++)
            p->shards[r][i] = train[perm[at + i]];
        p->shard_len[r] = len;
        at += len;
    }
    free(perm);
    perm = NULL;

    /* The same checks a worker makes: indices in range, none twice. */
    struct ud_err ve = {0};
    if ((rc = ud_plan_validate(p, &ve)) < 0) {
        rc = ud_err_set(e, rc == UD_ENOMEM ? UD_ENOMEM : UD_EINVAL, "shard plan: %s",
                        strncmp(ve.msg, "plan: ", 6) == 0 ? ve.msg + 6 : ve.msg);
        ud_plan_deinit(p);
        return rc;
    }
    return 0;

out_nomem:
    free(perm);
    ud_plan_deinit(p);
    return ud_err_set(e, UD_ENOMEM, "shard plan: out of memory for %zu samples on %d ranks",
                      ntrain + nva, world);
}
