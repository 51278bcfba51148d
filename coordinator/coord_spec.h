/*  coord_spec.h — a job spec: the JSON a client POSTs to /v1/jobs, checked and turned into the
 *  worker options every rank runs with.
 *
 *  {
 *    "name": "fashion-mlp",          required: the model name ([A-Za-z0-9._-], 1..64 chars)
 *    "data": "/path/train-images-idx3-ubyte.gz",   required: image folder, IDX or CSV (absolute
 *                                                   or relative to the coordinator's cwd)
 *    "test": "/path/t10k-images-idx3-ubyte.gz",    optional: scored at the end
 *    "arch": "mlp",                  required: mlp | cnn | path of a spec file (data, test and
 *                                     a spec file must be readable by the coordinator at submit:
 *                                     coord_spec_check_paths)
 *    "epochs": 10, "batch": 128, "lr": 0.05, "momentum": 0.9, "nesterov": false,
 *    "weight_decay": 0, "optimizer": "sgd"|"adam", "beta1": 0.9, "beta2": 0.999, "eps": 1e-8,
 *    "schedule": "constant"|"step"|"cosine", "step_epochs": N, "gamma": G,
 *    "validation": "auto" | "none" | 0.1,  "seed": 0, "shuffle": true, "threads": T,
 *    "input": "1,28,28", "max_samples": N, "skip_bad": false,
 *    "checkpoint_every": N, "keep_checkpoints": 3, "report_every": 20,
 *    "bucket_mb": 1, "peer_timeout": 60,
 *    "session": "/shared/dir",       optional: checkpoint directory (default STATE/jobs/ID/session)
 *    "launch": {"np": 2, "max_restarts": 3}   optional: the coordinator runs mpirun itself;
 *                                     max_restarts (default 3) relaunches with --resume
 *      also "scheduler": "local" (the default) | "slurm" (sbatch of a generated script,
 *      docs/slurm.md), and for Slurm "partition", "account" and "time" (minutes, or "MM:SS"...)
 *  }
 *
 *  Every key is optional unless marked; an unknown key, a value of the wrong JSON type or out of
 *  range is refused naming the key (so typos never pass silently). Defaults are the worker's.
 *  Ranges: epochs 1..1e6, batch 1..65536 (and >= launch.np), lr > 0, np 1..256,
 *  max_restarts 0..100, report_every >= 1, ...: the same checks the worker makes
 *  (ud_update_params_check_runnable) happen here, so a spec that is accepted starts.
 */
#ifndef COORD_SPEC_H
#define COORD_SPEC_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_limits.h"

#define COORD_SPEC_MAX_BYTES UD_LIMIT_JOB_SPEC_BYTES /* a spec (a REST body) */
#define COORD_SPEC_MAX_ARGS  96

/* Who starts the workers of a spec with "launch" (jobs.launch stores it; 0: no launch). */
#define COORD_SCHED_LOCAL 1 /* the coordinator runs mpirun on its own host */
#define COORD_SCHED_SLURM 2 /* the coordinator submits a batch script with sbatch */

struct coord_spec {
    char name[65];
    char *data, *test, *arch, *session; /* owned; test and session may be NULL */
    char *canonical;                    /* owned: the spec as stored (compact JSON, sorted keys) */
    int np;                             /* launch.np; 0: no launch, workers come on their own */
    int max_restarts;
    int scheduler; /* launch.scheduler: COORD_SCHED_LOCAL or _SLURM */
    /* Slurm only ("" when not given): launch.partition, launch.account ([A-Za-z0-9._-]) and
     * launch.time (Slurm's --time syntax, checked: minutes, "M:S", "H:M:S", "D-H[:M[:S]]") */
    char partition[64], account[64], time[32];
    /* what the shard plan needs (the same values are in args) */
    int64_t epochs, batch, max_samples; /* max_samples 0: all */
    uint64_t seed;
    int shuffle, skip_bad;
    char validation[32]; /* "auto", "none" or the ratio as given */
    char input[32];      /* "" or "C,H,W" */
    /* worker options, in order, e.g. "--data", "/x", "--epochs", "3" (not --coordinator,
     * --job, --session, --out or --resume: the coordinator adds those) */
    char *args[COORD_SPEC_MAX_ARGS];
    int nargs;
};

/* Parses and checks a spec. Returns 0; UD_EFORMAT (not JSON or not an object: e gives line and
 * column), UD_EINVAL (a key is unknown, of the wrong type or out of range: e names it),
 * UD_ELIMIT (over COORD_SPEC_MAX_BYTES) or UD_ENOMEM. On error s holds nothing to free.
 * Does not look at the file system. */
int coord_spec_parse(const char *json, size_t len, struct coord_spec *s, struct ud_err *e);
void coord_spec_deinit(struct coord_spec *s);

/* Can the coordinator read path, the value of spec key key: a readable file, or a directory it
 * may list (an image folder)? Returns 0, or UD_ENOTFOUND / UD_IO with e naming the key, the
 * path and the reason ("'data': /x cannot be read on the coordinator: No such file or
 * directory"). */
int coord_spec_check_path(const char *key, const char *path, struct ud_err *e);
/* The paths of a parsed spec, as the coordinator sees them at submit (it plans from the data,
 * and workers on one file system see the same): data, test when given, and arch when it is not
 * a preset (a spec file that must also parse). Returns 0 or the first failure, e naming the
 * key and the path (coord_spec_check_path). */
int coord_spec_check_paths(const struct coord_spec *s, struct ud_err *e);

#endif
