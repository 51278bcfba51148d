/*  agent_log.h — what updraft-agent tells its user: one line per step.
 *
 *  Text lines go to stderr ("updraft-agent: ..."), unless --quiet or --json; with --json each
 *  step is one JSON object on its own line on stdout, {"event":"...", ...}, flushed at once so a
 *  supervisor reading the pipe sees it. Warnings and errors always go to stderr as text (and,
 *  under --json, also as {"event":"warning"|"error","message":...}).
 *
 *  A JSON line is built with agent_json_open, fields, agent_json_close; the text line of the same
 *  step is written with agent_say. The program is single-threaded where it prints.
 */
#ifndef AGENT_LOG_H
#define AGENT_LOG_H

#include <stdint.h>

#define AGENT_PROG "updraft-agent"

struct agent_log {
    int json;  /* JSON lines on stdout */
    int quiet; /* no text progress lines (warnings and errors still go to stderr) */
};

/* A text progress line on stderr, when neither json nor quiet. */
void agent_say(const struct agent_log *log, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* A warning: text on stderr always; under json also {"event":"warning","message":...}. */
void agent_warn(const struct agent_log *log, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));
/* An error that does not end the program (e.g. a round given up): like agent_warn, "error". */
void agent_error(const struct agent_log *log, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

/* JSON lines (no-ops unless log->json). */
void agent_json_open(const struct agent_log *log, const char *event);
void agent_json_str(const struct agent_log *log, const char *key, const char *value);
void agent_json_int(const struct agent_log *log, const char *key, long long value);
void agent_json_num(const struct agent_log *log, const char *key, double value); /* NaN: null */
void agent_json_close(const struct agent_log *log);

/* Peak resident memory of this process in MB (VmHWM from /proc/self/status; getrusage's
 * maxrss when that is unreadable). */
double agent_peak_rss_mb(void);

#endif
