/*  agent_log.c — text and JSON progress lines (contract: agent_log.h). */
#include "agent_log.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "updraft/ud_jsonw.h"

static void vline(const char *kind, const char *fmt, va_list ap)
{
    fprintf(stderr, AGENT_PROG ": %s", kind);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    fflush(stderr);
}

void agent_say(const struct agent_log *log, const char *fmt, ...)
{
    if (log->json || log->quiet)
        return;
    va_list ap;
    va_start(ap, fmt);
    vline("", fmt, ap);
    va_end(ap);
}

/* A warning or an error: on stderr always, and as a JSON event too under --json. */
static void vreport(const struct agent_log *log, const char *event, const char *fmt, va_list ap)
{
    va_list json_ap;
    va_copy(json_ap, ap);
    char kind[16];
    snprintf(kind, sizeof kind, "%s: ", event);
    vline(kind, fmt, ap);
    if (log->json) {
        char msg[2048];
        vsnprintf(msg, sizeof msg, fmt, json_ap);
        agent_json_open(log, event);
        agent_json_str(log, "message", msg);
        agent_json_close(log);
    }
    va_end(json_ap);
}

void agent_warn(const struct agent_log *log, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(log, "warning", fmt, ap);
    va_end(ap);
}

void agent_error(const struct agent_log *log, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vreport(log, "error", fmt, ap);
    va_end(ap);
}

void agent_json_open(const struct agent_log *log, const char *event)
{
    if (!log->json)
        return;
    fputs("{\"event\":", stdout);
    ud_json_str(stdout, event);
}

void agent_json_str(const struct agent_log *log, const char *key, const char *value)
{
    if (!log->json)
        return;
    fputc(',', stdout);
    ud_json_str(stdout, key);
    fputc(':', stdout);
    ud_json_str(stdout, value);
}

void agent_json_int(const struct agent_log *log, const char *key, long long value)
{
    if (!log->json)
        return;
    fputc(',', stdout);
    ud_json_str(stdout, key);
    printf(":%lld", value);
}

void agent_json_num(const struct agent_log *log, const char *key, double value)
{
    if (log->json)
        ud_json_field(stdout, key, value);
}

void agent_json_close(const struct agent_log *log)
{
    if (!log->json)
        return;
    fputs("}\n", stdout);
    fflush(stdout);
}

double agent_peak_rss_mb(void)
{
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long kb = -1;
    while (f && fgets(line, sizeof line, f))
        if (strncmp(line, "VmHWM:", 6) == 0 && sscanf(line + 6, "%ld", &kb) == 1)
            break;
    if (f)
        fclose(f);
    if (kb < 0) {
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        kb = ru.ru_maxrss;
    }
    return (double)kb / 1024.0;
}
