/*  coord_log.c — timestamped log lines on stderr (coord_log.h). */
#include "coord_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <time.h>

static enum coord_log_level log_level = COORD_LOG_INFO;

void coord_log_set_level(enum coord_log_level level)
{
    log_level = level;
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
    struct timespec ts;
    struct tm tm;
    clock_gettime(CLOCK_REALTIME, &ts);
    gmtime_r(&ts.tv_sec, &tm);
    strftime(stamp, sizeof stamp, "%Y-%m-%dT%H:%M:%S", &tm);
    fprintf(stderr, "%s.%03ldZ coordinator: %s%s\n", stamp, ts.tv_nsec / 1000000L,
            level == COORD_LOG_ERROR ? "error: " : "", msg);
}
