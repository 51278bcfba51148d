/*  ud_msg.h — the worker protocol: messages between updraft-worker and updraft-coordinator.
 *
 *  Transport: ZeroMQ. The coordinator binds a ROUTER socket (default tcp://\*:8471); each worker
 *  process connects DEALER sockets. Every ZeroMQ message is one frame (after the ROUTER's
 *  identity frame) holding one msgpack map. Keys are short strings; unknown keys are ignored
 *  (so later minor additions stay compatible), missing required keys are an error.
 *
 *  Every message carries "v" (UD_PROTO_VERSION), "t" (the type name below) and "id" (a request
 *  id chosen by the sender; the reply echoes it). Every worker request gets exactly one reply:
 *  the type of reply named below, or "error" {code, msg}. A decoder refuses a message whose
 *  "v" differs, saying which version each side speaks.
 *
 *    worker → coordinator                         coordinator → worker
 *    register   {job, rank, world, host, pid,     job    {job, name, args[], plan, session,
 *                resume}                                   out, heartbeat_s, resume}
 *    heartbeat  {job, rank, host, pid, step}      ack    {cancel}
 *    progress   {job, rank, step, epoch,          ack    {cancel}
 *                minibatch, steps_per_epoch,
 *                total_steps, metrics{k: v}}
 *    checkpoint {job, rank, step, epoch,          ack    {cancel}
 *                minibatch, path}
 *    model      {job, rank, name, sha256, udm,    model_ack {version, sha256}
 *                metrics{k: v}}
 *    done       {job, rank, status, code, msg}    ack    {cancel}
 *                                                 error  {code, msg}   (to any request)
 *
 *  Field types: job, name, host, path, session, out, status, msg, sha256: strings;
 *  rank, world, pid, step, epoch, minibatch, steps_per_epoch, total_steps, version, code:
 *  integers; resume, cancel: booleans; heartbeat_s: float; metrics: map of string → float;
 *  udm: bin (the model file); args: array of strings (worker options, e.g. "--epochs", "3");
 *  plan: map {samples, classes[], labels_hash (uint64), seed (uint64), batch, shuffle (bool),
 *  world, validation (bin: uint32 little-endian), shards: [bin ...]} (see ud_plan.h).
 *  status is "succeeded", "failed" or "cancelled". code is a UD_E* value (ud_error.h).
 *
 *  Required keys: every key listed above for a type, except "metrics" (progress, model: an
 *  absent map means no metrics; the encoder always sends one) and "msg" of done (optional;
 *  NULL when absent, not sent when NULL). Ranges: rank 0..UD_PLAN_MAX_WORLD-1, world
 *  1..UD_PLAN_MAX_WORLD (register: rank < world), pid, step, epoch, minibatch,
 *  steps_per_epoch, total_steps, version >= 0, code any int32, heartbeat_s finite and > 0,
 *  sha256 64 lowercase hex digits, strings valid UTF-8 without NUL. A key given twice is an
 *  error. Request ids: senders number from 1 (0 means "no id", see ud_msg_decode).
 *
 *  docs/protocol.md is the human description of the same; keep both in step.
 *
 *  Thread-safety: functions touch only their arguments.
 */
#ifndef UD_MSG_H
#define UD_MSG_H

#include <stddef.h>
#include <stdint.h>

#include "updraft/ud_error.h"
#include "updraft/ud_plan.h"

#ifdef __cplusplus
extern "C" {
#endif

#define UD_PROTO_VERSION 1
/* Limits, checked before anything is allocated. */
#define UD_PROTO_MAX_MESSAGE (256u << 20) /* bytes in one message (a model upload) */
#define UD_PROTO_MAX_STRING  4096         /* bytes in any string (paths included) */
#define UD_PROTO_MAX_ARGS    256
#define UD_PROTO_MAX_METRICS 64
#define UD_PROTO_MAX_KEY     64 /* bytes of a metric name, NUL included */

enum ud_msg_type {
    UD_MSG_NONE = 0,
    UD_MSG_REGISTER,
    UD_MSG_JOB,
    UD_MSG_HEARTBEAT,
    UD_MSG_PROGRESS,
    UD_MSG_CHECKPOINT,
    UD_MSG_MODEL,
    UD_MSG_MODEL_ACK,
    UD_MSG_DONE,
    UD_MSG_ACK,
    UD_MSG_ERROR,
};
/* "register", "job", ...; "?" for an unknown value. */
const char *ud_msg_type_name(enum ud_msg_type t);

struct ud_msg_metric {
    char key[UD_PROTO_MAX_KEY];
    double value; /* may be NaN (sent as msgpack float) */
};

/* One message of any type: only the fields its type uses are encoded; the others are ignored
 * by ud_msg_encode and left zero by ud_msg_decode. Strings are NUL-terminated, heap-allocated
 * and owned by the message (NULL when absent); free everything with ud_msg_deinit. */
struct ud_msg {
    enum ud_msg_type type;
    uint64_t id;
    char *job; /* register (may be "" : any job waiting for workers), and every worker message */
    int32_t rank, world;
    char *host; /* register, heartbeat */
    int64_t pid;
    int resume; /* register: the worker was started with --resume; job: resume from session */
    /* heartbeat, progress, checkpoint */
    int64_t step, epoch, minibatch, steps_per_epoch, total_steps;
    struct ud_msg_metric *metrics; /* progress, model; nmetrics entries */
    int nmetrics;
    char *path; /* checkpoint */
    /* model */
    char *name;   /* also job: the model name the job registers */
    char *sha256; /* model, model_ack: hex SHA-256 of udm */
    uint8_t *udm; /* model: the .udm bytes */
    size_t udm_len;
    int64_t version; /* model_ack */
    /* done */
    char *status; /* "succeeded" | "failed" | "cancelled" */
    char *msg;    /* done, error */
    int32_t code; /* error, done (the UD_E* code of a failure) */
    /* ack */
    int cancel;
    /* job */
    char **args; /* nargs worker options */
    int nargs;
    struct ud_plan plan;
    int has_plan;
    char *session, *out;
    double heartbeat_s;
};

/* Sets a string field (copying s; NULL clears). Returns 0 or UD_ENOMEM. */
int ud_msg_set_str(char **field, const char *s);
/* Appends a metric (key truncated to UD_PROTO_MAX_KEY-1). Returns 0, UD_ELIMIT or UD_ENOMEM. */
int ud_msg_add_metric(struct ud_msg *m, const char *key, double value);
/* Appends an argument to a job's args. Returns 0, UD_ELIMIT or UD_ENOMEM. */
int ud_msg_add_arg(struct ud_msg *m, const char *arg);
void ud_msg_deinit(struct ud_msg *m);

/* Encodes m (with v and t). *out is malloc'd, the caller's to free. Returns 0, UD_EINVAL (a
 * required field missing or a value the decoder would refuse, named in e), UD_ELIMIT (over a
 * limit above, the whole message included) or UD_ENOMEM. */
int ud_msg_encode(const struct ud_msg *m, void **out, size_t *len, struct ud_err *e);
/* Decodes one message. m is zeroed first; on error it holds nothing to free. Returns 0,
 * UD_EFORMAT (not msgpack, not a map, wrong type of a field, missing field, unknown "t"),
 * UD_EVERSION (other protocol version: e says both), UD_ELIMIT (a size over the limits
 * above) or UD_ENOMEM; e says which field. A plan is checked with ud_plan_validate.
 * On error m->id (0 when it could not be read) and m->type (UD_MSG_NONE when unknown) stay
 * set, so a receiver can answer with an error and log what it refused. */
int ud_msg_decode(const void *buf, size_t len, struct ud_msg *m, struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif
