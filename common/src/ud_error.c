/*  ud_error.c — the error table and the bounded message helpers. */
#include "updraft/ud_error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *ud_strerror(int code)
{
    switch (code) {
    case UD_OK:
        return "success";
#define UD__ERR_STR(name, val, msg)                                                                \
    case UD_E##name:                                                                               \
        return msg;
        UD_ERRNO_MAP(UD__ERR_STR)
#undef UD__ERR_STR
    }
    return "unknown error";
}

const char *ud_err_name(int code)
{
    switch (code) {
    case UD_OK:
        return "UD_OK";
#define UD__ERR_NAME(name, val, msg)                                                               \
    case UD_E##name:                                                                               \
        return "UD_E" #name;
        UD_ERRNO_MAP(UD__ERR_NAME)
#undef UD__ERR_NAME
    }
    return "UD_E?";
}

int ud_err_set(struct ud_err *e, int code, const char *fmt, ...)
{
    if (!e)
        return code;
    e->code = code;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->msg, sizeof e->msg, fmt, ap);
    va_end(ap);
    return code;
}

int ud_err_prefix(struct ud_err *e, const char *fmt, ...)
{
    if (!e)
        return 0;
    char head[UD_ERRMSG_MAX], old[UD_ERRMSG_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(head, sizeof head, fmt, ap);
    va_end(ap);
    memcpy(old, e->msg, sizeof old);
    snprintf(e->msg, sizeof e->msg, "%s: %s", head, old[0] ? old : ud_strerror(e->code));
    return e->code;
}

void ud_err_clear(struct ud_err *e)
{
    if (e) {
        e->code = 0;
        e->msg[0] = '\0';
    }
}
