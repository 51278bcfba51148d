/*  agent_task.c — parsing a round's task (contract: agent_task.h).
 */
#include "agent_task.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include <jansson.h>

#include "agent_state.h"
#include "updraft/ud_udm.h"

static int path_ok(const char *s)
{
    if (s[0] != '/')
        return 0;
    for (const char *p = s; *p; p++)
        if ((unsigned char)*p <= 0x20 || (unsigned char)*p >= 0x7f)
            return 0;
    return 1;
}

static int task_int(json_t *o, const char *where, const char *key, int64_t lo, int64_t *out,
                    struct ud_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v))
        return ud_err_set(e, UD_EFORMAT, "task: %s\"%s\" must be an integer", where, key);
    if (json_integer_value(v) < lo)
        return ud_err_set(e, UD_EFORMAT, "task: %s\"%s\" is %lld, it must be >= %lld", where, key,
                          (long long)json_integer_value(v), (long long)lo);
    *out = json_integer_value(v);
    return 0;
}

static int task_num(json_t *o, const char *key, double lo, double *out, struct ud_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return ud_err_set(e, UD_EFORMAT, "task: \"%s\" must be a number", key);
    if (json_number_value(v) < lo)
        return ud_err_set(e, UD_EFORMAT, "task: \"%s\" is %g, it must be >= %g", key,
                          json_number_value(v), lo);
    *out = json_number_value(v);
    return 0;
}

static int task_str(json_t *o, const char *where, const char *key, char *buf, size_t cap,
                    struct ud_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) == 0 || json_string_length(v) >= cap)
        return ud_err_set(e, UD_EFORMAT, "task: %s\"%s\" must be a string of 1 to %zu bytes", where,
                          key, cap - 1);
    memcpy(buf, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

int agent_task_parse(const char *body, size_t len, struct agent_task *t, struct ud_err *e)
{
    memset(t, 0, sizeof *t);
    if (len > AGENT_TASK_MAX_BYTES)
        return ud_err_set(e, UD_ELIMIT, "task: %zu bytes, over the limit of %d", len,
                          AGENT_TASK_MAX_BYTES);
    json_error_t je;
    json_t *root = json_loadb(body, len, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return ud_err_set(e, UD_EFORMAT, "task: not valid JSON: %s", je.text);
    int rc;
    int64_t size = 0;
    json_t *m = json_object_get(root, "model");
    if (!json_is_object(root)) {
        rc = ud_err_set(e, UD_EFORMAT, "task: not a JSON object");
    } else if (!json_is_object(m)) {
        rc = ud_err_set(e, UD_EFORMAT, "task: \"model\" must be an object");
    } else if ((rc = task_int(root, "", "federation", 0, &t->federation, e)) < 0 ||
               (rc = task_int(root, "", "round", 0, &t->round, e)) < 0 ||
               (rc = task_int(root, "", "number", 0, &t->number, e)) < 0 ||
               (rc = task_str(m, "model.", "name", t->model_name, sizeof t->model_name, e)) < 0 ||
               (rc = task_int(m, "model.", "version", 0, &t->model_version, e)) < 0 ||
               (rc = task_str(m, "model.", "sha256", t->sha256, sizeof t->sha256, e)) < 0 ||
               (rc = task_int(m, "model.", "size", 1, &size, e)) < 0 ||
               (rc = task_str(m, "model.", "url", t->model_url, sizeof t->model_url, e)) < 0 ||
               (rc = task_int(root, "", "epochs", 1, &t->epochs, e)) < 0 ||
               (rc = task_int(root, "", "batch", 1, &t->batch, e)) < 0 ||
               (rc = task_num(root, "lr", 0, &t->lr, e)) < 0 ||
               (rc = task_num(root, "max_norm", 0, &t->max_norm, e)) < 0 ||
               (rc = task_num(root, "deadline", 0, &t->deadline, e)) < 0 ||
               (rc = task_str(root, "", "upload", t->upload, sizeof t->upload, e)) < 0) {
        /* rc and e set */
    } else if (!agent_is_sha256(t->sha256)) {
        rc = ud_err_set(e, UD_EFORMAT, "task: \"model.sha256\" must be 64 lowercase hex digits");
    } else if ((uint64_t)size > UD_UDM_MAX_BYTES) {
        rc = ud_err_set(e, UD_EFORMAT, "task: \"model.size\" %lld is over the model limit %zu",
                        (long long)size, UD_UDM_MAX_BYTES);
    } else if (!path_ok(t->model_url) || !path_ok(t->upload)) {
        rc = ud_err_set(e, UD_EFORMAT,
                        "task: \"model.url\" and \"upload\" must be paths starting with '/', "
                        "without spaces or control characters");
    }
    t->size = (uint64_t)size;
    json_decref(root);
    return rc;
}
