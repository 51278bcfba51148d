/*  agent_state.h — the daemon's state directory (docs/agent.md, "The state directory").
 *
 *    state.json              the round in progress (its idempotency key, upload path,
 *                            deadline, base model) and the rounds finished, with results
 *    download.json           the model being downloaded: {"sha256", "size"}
 *    model.part              its bytes so far
 *    model-<sha256>.udm      the verified model of the current round (only the newest is kept)
 *    upload-<round>.msgpack  the encoded update, written before the first send
 *
 *  Every write is temporary file + fsync + rename + fsync of the directory (ud_file_write_atomic),
 *  so a kill -9 at any moment leaves either the old or the new file. Reading refuses anything
 *  malformed with a message naming the file and what is wrong.
 */
#ifndef AGENT_STATE_H
#define AGENT_STATE_H

#include <stdint.h>

#include "updraft/ud_update_msg.h"
#include "updraft/ud_error.h"

#define AGENT_DONE_MAX 64 /* finished rounds remembered */

struct agent_state {
    /* The round in progress; round < 0: none. */
    int64_t round;
    char key[UD_UPDATE_KEY_MAX + 1]; /* "<device>-<round>-<16 hex>", made once per round */
    char upload[512];                /* the task's upload path */
    double deadline;                 /* the task's deadline, Unix seconds */
    int64_t base_version;
    char model_sha256[65];
    /* Finished rounds, oldest first; the last one is also last_round/last_result. */
    int ndone;
    int64_t done[AGENT_DONE_MAX];
    char done_result[AGENT_DONE_MAX][16];
};

/* A fresh state: no round in progress, none finished. */
void agent_state_init(struct agent_state *s);
/* Reads DIR/state.json. Returns 0, UD_ENOTFOUND (no file: *s is fresh), or UD_EFORMAT (UD_EIO,
 * UD_ELIMIT) with a message naming the file and the problem (*s is fresh then too). */
int agent_state_load(const char *dir, struct agent_state *s, struct ud_err *e);
/* The same from the file's bytes data[0..len) (path only names it in messages). */
int agent_state_parse(const char *data, size_t len, const char *path, struct agent_state *s,
                      struct ud_err *e);
/* Writes DIR/state.json atomically. Returns 0 or UD_EIO/UD_ENOMEM. */
int agent_state_save(const char *dir, const struct agent_state *s, struct ud_err *e);
/* True when round is among the finished ones. */
int agent_state_is_done(const struct agent_state *s, int64_t round);
/* Records round as finished with result ("accepted", "duplicate", "stale", ...), and clears the
 * round in progress when it is that one. */
void agent_state_finish(struct agent_state *s, int64_t round, const char *result);

/* DIR/download.json: which model DIR/model.part belongs to. load returns 0, UD_ENOTFOUND or
 * UD_EFORMAT. */
int agent_download_load(const char *dir, char sha256[65], uint64_t *size, struct ud_err *e);
int agent_download_parse(const char *data, size_t len, const char *path, char sha256[65],
                         uint64_t *size, struct ud_err *e);
int agent_download_save(const char *dir, const char *sha256, uint64_t size, struct ud_err *e);

/* True when s is 64 lowercase hex digits. */
int agent_is_sha256(const char *s);

#endif
