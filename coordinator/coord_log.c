/*  coord_log.c — timestamped log lines on stderr (coord_log.h). */
#include "coord_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

static enum coord_log_level log_level = COORD_LOG_INFO;
static int log_journal; /* stderr is systemd's journal stream: no timestamps, <N> priorities */

/* systemd sets JOURNAL_STREAM=DEV:INODE for a service whose stderr goes to the journal; the
 * variable is inherited by children, so it counts only when it names stderr itself. */
static int stderr_is_journal(void)
{
    const char *v = getenv("JOURNAL_STREAM");
    unsigned long long dev, ino;
    struct stat st;
    if (!v || sscanf(v, "%llu:%llu", &dev, &ino) != 2 || fstat(STDERR_FILENO, &st) != 0)
        return 0;
    return (unsigned long long)st.st_dev == dev && (unsigned long long)st.st_ino == ino;
}

void coord_log_set_level(enum coord_log_level level)
{
    log_level = level;
    log_journal = stderr_is_journal();
}

void coord_log(enum coord_log_level level, const char *fmt, ...)
{
    if (level > log_level)
        return;
    char msg[2048], stamp[40];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (log_journal) {
        /* sd-daemon(3) priority prefixes: 3 error, 4 warning, 6 info; the journal dates lines. */
        static const char prio[] = {'3', '4', '6'};
        fprintf(stderr, "<%c>coordinator: %s%s\n", prio[level],
                level == COORD_LOG_ERROR ? "error: " : "", msg);
        return;
    }
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ coordinator: %s%s\n", stamp, ts.tv_nsec / 1000000L,
            level == COORD_LOG_ERROR ? "error: " : "", msg);
}
