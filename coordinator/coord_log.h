/*  coord_log.h — the coordinator's log: one line per event on stderr, "TIME coordinator: ...".
 *
 *  The service's modules log through here (never printf), so every line has the same shape and
 *  --quiet can silence the routine ones. Lines are written with one fprintf each, so lines from
 *  the REST threads and the main thread do not interleave within a line.
 */
#ifndef COORD_LOG_H
#define COORD_LOG_H

enum coord_log_level { COORD_LOG_ERROR = 0, COORD_LOG_WARN = 1, COORD_LOG_INFO = 2 };

/* Lines above level are skipped (formatting included). Default COORD_LOG_INFO; --quiet sets
 * COORD_LOG_WARN. Set once at start-up, before any thread starts. Also looks whether stderr is
 * systemd's journal (JOURNAL_STREAM names it): then lines go without the timestamp, which the
 * journal adds, and with sd-daemon(3) priority prefixes ("<3>coordinator: error: ..."). */
void coord_log_set_level(enum coord_log_level level);
/* Writes "2026-01-02T03:04:05.678Z coordinator: <message>\n" to stderr when level is enabled
 * ("<6>coordinator: <message>\n" to the journal). Thread-safe. */
void coord_log(enum coord_log_level level, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

#endif
