/*  agent_task.h — a federated round's task, the JSON the coordinator answers to
 *  GET /v1/devices/{id}/task (docs/agent.md, "Tasks").
 *
 *  A hostile coordinator or a man in the middle is in the threat model: every field is checked
 *  for type and range, strings for length (fixed buffers), paths for shape, before the daemon
 *  acts on the task. Kept apart from agent_run.c so it can be tested and fuzzed on its own.
 */
#ifndef AGENT_TASK_H
#define AGENT_TASK_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"

#define AGENT_TASK_MAX_BYTES (64 * 1024) /* a task's JSON */

/* A task as the coordinator sends it (docs/agent.md, "Tasks"). */
struct agent_task {
    int64_t federation, round, number;
    char model_name[256];
    int64_t model_version;
    char sha256[65];
    uint64_t size;
    char model_url[1024];
    int64_t epochs, batch;
    double lr, max_norm, deadline;
    char upload[512];
};

/* Parses and checks body[0..len) into *t (zeroed first). Returns 0, or UD_EFORMAT with a
 * message starting "task: " naming the field. Touches only its arguments. */
int agent_task_parse(const char *body, size_t len, struct agent_task *t, struct ud_err *e);

#endif
