/*  agent_state.c — state.json and download.json (contract: agent_state.h).
 */
#include "agent_state.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "updraft/ud_file.h"
#include "updraft/ud_udm.h"

#define STATE_MAX_BYTES (1 << 20)

void agent_state_init(struct agent_state *s)
{
    memset(s, 0, sizeof *s);
    s->round = -1;
}

int agent_is_sha256(const char *s)
{
    if (!s || strlen(s) != 64)
        return 0;
    for (int i = 0; i < 64; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
            return 0;
    return 1;
}

/* Parses data[0..len) (the contents of path) into *root, a JSON object. */
static int parse_json(const char *data, size_t len, const char *path, json_t **root,
                      struct ud_err *e)
{
    json_error_t je;
    *root = json_loadb(data, len, JSON_REJECT_DUPLICATES, &je);
    if (!*root)
        return ud_err_set(e, UD_EFORMAT, "%s: not valid JSON: %s (line %d)", path, je.text,
                          je.line);
    if (!json_is_object(*root)) {
        json_decref(*root);
        *root = NULL;
        return ud_err_set(e, UD_EFORMAT, "%s: not a JSON object", path);
    }
    return 0;
}

static int get_int(json_t *o, const char *key, int64_t lo, int64_t *out, const char *path,
                   struct ud_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_integer(v) || json_integer_value(v) < lo)
        return ud_err_set(e, UD_EFORMAT, "%s: \"%s\" must be an integer >= %lld", path, key,
                          (long long)lo);
    *out = json_integer_value(v);
    return 0;
}

static int get_str(json_t *o, const char *key, char *buf, size_t cap, const char *path,
                   struct ud_err *e)
{
    json_t *v = json_object_get(o, key);
    if (!json_is_string(v) || json_string_length(v) >= cap)
        return ud_err_set(e, UD_EFORMAT, "%s: \"%s\" must be a string of at most %zu bytes", path,
                          key, cap - 1);
    memcpy(buf, json_string_value(v), json_string_length(v) + 1);
    return 0;
}

static int parse_state(json_t *root, struct agent_state *s, const char *path, struct ud_err *e)
{
    int rc;
    json_t *cur = json_object_get(root, "current");
    if (cur && !json_is_null(cur)) {
        if (!json_is_object(cur))
            return ud_err_set(e, UD_EFORMAT, "%s: \"current\" must be an object or null", path);
        json_t *dl = json_object_get(cur, "deadline");
        if ((rc = get_int(cur, "round", 0, &s->round, path, e)) < 0 ||
            (rc = get_str(cur, "key", s->key, sizeof s->key, path, e)) < 0 ||
            (rc = get_str(cur, "upload", s->upload, sizeof s->upload, path, e)) < 0 ||
            (rc = get_int(cur, "base_version", 0, &s->base_version, path, e)) < 0 ||
            (rc = get_str(cur, "model_sha256", s->model_sha256, sizeof s->model_sha256, path, e)) <
                0)
            return rc;
        if (!json_is_number(dl) || !isfinite(json_number_value(dl)))
            return ud_err_set(e, UD_EFORMAT, "%s: \"current.deadline\" must be a number", path);
        s->deadline = json_number_value(dl);
        if (!ud_update_key_valid(s->key, strlen(s->key)))
            return ud_err_set(e, UD_EFORMAT, "%s: \"current.key\" is not a valid key", path);
        if (!agent_is_sha256(s->model_sha256))
            return ud_err_set(e, UD_EFORMAT, "%s: \"current.model_sha256\" is not a sha256", path);
    }
    json_t *done = json_object_get(root, "done");
    if (!json_is_array(done))
        return ud_err_set(e, UD_EFORMAT, "%s: \"done\" must be an array", path);
    size_t n = json_array_size(done);
    size_t first = n > AGENT_DONE_MAX ? n - AGENT_DONE_MAX : 0;
    for (size_t i = first; i < n; i++) {
        json_t *d = json_array_get(done, i);
        int k = s->ndone;
        if (!json_is_object(d) || get_int(d, "round", 0, &s->done[k], path, e) < 0 ||
            get_str(d, "result", s->done_result[k], sizeof s->done_result[k], path, e) < 0)
            return ud_err_set(e, UD_EFORMAT,
                              "%s: \"done\"[%zu] must be {\"round\": integer, \"result\": string}",
                              path, i);
        s->ndone++;
    }
    return 0;
}

int agent_state_parse(const char *data, size_t len, const char *path, struct agent_state *s,
                      struct ud_err *e)
{
    agent_state_init(s);
    if (len > STATE_MAX_BYTES)
        return ud_err_set(e, UD_ELIMIT, "%s: %zu bytes, over the limit of %d", path, len,
                          STATE_MAX_BYTES);
    json_t *root;
    int rc = parse_json(data, len, path, &root, e);
    if (rc < 0)
        return rc;
    rc = parse_state(root, s, path, e);
    json_decref(root);
    if (rc < 0)
        agent_state_init(s);
    return rc;
}

/* Reads dir/name (at most STATE_MAX_BYTES) into *data; path receives the file's path. Returns
 * 0, UD_ENOTFOUND, or the error of an unreadable file. */
static int read_state_file(const char *dir, const char *name, char path[4200], char **data,
                           size_t *len, struct ud_err *e)
{
    snprintf(path, 4200, "%s/%s", dir, name);
    return ud_file_read(path, STATE_MAX_BYTES, data, len, e);
}

int agent_state_load(const char *dir, struct agent_state *s, struct ud_err *e)
{
    agent_state_init(s);
    char path[4200], *data;
    size_t len;
    int rc = read_state_file(dir, "state.json", path, &data, &len, e);
    if (rc < 0)
        return rc;
    rc = agent_state_parse(data, len, path, s, e);
    free(data);
    return rc;
}

int agent_state_save(const char *dir, const struct agent_state *s, struct ud_err *e)
{
    json_t *root = json_object();
    json_t *done = json_array();
    if (!root || !done)
        goto out_nomem;
    json_object_set_new(root, "v", json_integer(1));
    if (s->round >= 0) {
        json_t *cur =
            json_pack("{s:I, s:s, s:s, s:f, s:I, s:s}", "round", (json_int_t)s->round, "key",
                      s->key, "upload", s->upload, "deadline", s->deadline, "base_version",
                      (json_int_t)s->base_version, "model_sha256", s->model_sha256);
        if (!cur)
            goto out_nomem;
        json_object_set_new(root, "current", cur);
    } else {
        json_object_set_new(root, "current", json_null());
    }
    for (int i = 0; i < s->ndone; i++)
        json_array_append_new(done, json_pack("{s:I, s:s}", "round", (json_int_t)s->done[i],
                                              "result", s->done_result[i]));
    if (s->ndone > 0) {
        json_object_set_new(root, "last_round", json_integer(s->done[s->ndone - 1]));
        json_object_set_new(root, "last_result", json_string(s->done_result[s->ndone - 1]));
    }
    json_object_set_new(root, "done", done);
    done = NULL;
    char *text = json_dumps(root, JSON_INDENT(1) | JSON_SORT_KEYS);
    json_decref(root);
    if (!text)
        return ud_err_set(e, UD_ENOMEM, "state.json: out of memory");
    char path[4200];
    snprintf(path, sizeof path, "%s/state.json", dir);
    size_t len = strlen(text);
    text[len] = '\0';
    int rc = ud_file_write_atomic(path, text, len, e);
    free(text);
    return rc;
out_nomem:
    json_decref(done);
    json_decref(root);
    return ud_err_set(e, UD_ENOMEM, "state.json: out of memory");
}

int agent_state_is_done(const struct agent_state *s, int64_t round)
{
    for (int i = 0; i < s->ndone; i++)
        if (s->done[i] == round)
            return 1;
    return 0;
}

void agent_state_finish(struct agent_state *s, int64_t round, const char *result)
{
    if (!agent_state_is_done(s, round)) {
        if (s->ndone == AGENT_DONE_MAX) {
            memmove(s->done, s->done + 1, sizeof s->done[0] * (AGENT_DONE_MAX - 1));
            memmove(s->done_result, s->done_result + 1,
                    sizeof s->done_result[0] * (AGENT_DONE_MAX - 1));
            s->ndone--;
        }
        s->done[s->ndone] = round;
        snprintf(s->done_result[s->ndone], sizeof s->done_result[0], "%s", result);
        s->ndone++;
    }
    if (s->round == round)
        s->round = -1;
}

int agent_download_parse(const char *data, size_t len, const char *path, char sha256[65],
                         uint64_t *size, struct ud_err *e)
{
    json_t *root;
    sha256[0] = '\0';
    *size = 0;
    int rc = parse_json(data, len, path, &root, e);
    if (rc < 0)
        return rc;
    int64_t sz = 0;
    if ((rc = get_str(root, "sha256", sha256, 65, path, e)) == 0 &&
        (rc = get_int(root, "size", 1, &sz, path, e)) == 0 && !agent_is_sha256(sha256))
        rc = ud_err_set(e, UD_EFORMAT, "%s: \"sha256\" is not 64 hex digits", path);
    json_decref(root);
    *size = (uint64_t)sz;
    return rc;
}

int agent_download_load(const char *dir, char sha256[65], uint64_t *size, struct ud_err *e)
{
    char path[4200], *data;
    size_t len;
    int rc = read_state_file(dir, "download.json", path, &data, &len, e);
    if (rc < 0)
        return rc;
    rc = agent_download_parse(data, len, path, sha256, size, e);
    free(data);
    return rc;
}

int agent_download_save(const char *dir, const char *sha256, uint64_t size, struct ud_err *e)
{
    char path[4200], text[256];
    snprintf(path, sizeof path, "%s/download.json", dir);
    int n = snprintf(text, sizeof text, "{\"sha256\": \"%s\", \"size\": %llu}\n", sha256,
                     (unsigned long long)size);
    return ud_file_write_atomic(path, text, (size_t)n, e);
}
