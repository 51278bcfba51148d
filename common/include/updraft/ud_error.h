/*  ud_error.h — updraft's one table of error codes.
 *
 *  Every library function returns 0 or a negative UD_E* code. Foreign errors (errno, msgpack,
 *  zlib, libpng, MPI, zmq, curl, sqlite) are mapped to these where they enter. The human detail
 *  (what and where: file, line, layer, key) goes into a struct ud_err the caller passes in, so
 *  the library never prints.
 */
#ifndef UD_ERROR_H
#define UD_ERROR_H

#include <stddef.h>

#ifdef __cplusplus
extern "C" {
#endif

#define UD_ERRNO_MAP(X)                                                                            \
    X(NOMEM, -1, "out of memory")                                                                  \
    X(INVAL, -2, "invalid argument")                                                               \
    X(IO, -3, "input/output error")                                                                \
    X(FORMAT, -4, "malformed or corrupt data")                                                     \
    X(VERSION, -5, "unsupported format or protocol version")                                       \
    X(FOREIGN, -6, "not an updraft file")                                                          \
    X(CHECKSUM, -7, "checksum mismatch")                                                           \
    X(TRUNCATED, -8, "data ends early")                                                            \
    X(SHAPE, -9, "shape mismatch")                                                                 \
    X(RANGE, -10, "value outside its allowed range")                                               \
    X(PARAMETERS, -11, "unknown or unsupported parameter")                                         \
    X(CANCELLED, -12, "cancelled")                                                                 \
    X(NONFINITE, -13, "non-finite value (NaN or infinity)")                                        \
    X(NOTFOUND, -14, "not found")                                                                  \
    X(UNSUPPORTED, -15, "not supported")                                                           \
    X(EMPTY, -16, "no data")                                                                       \
    X(LIMIT, -17, "size over the limit")                                                           \
    X(STATE, -18, "operation not valid in the current state")                                      \
    X(BUSY, -19, "resource busy")                                                                  \
    X(MPI, -20, "MPI error")                                                                       \
    X(NET, -21, "network error")                                                                   \
    X(TIMEOUT, -22, "timed out")                                                                   \
    X(AUTH, -23, "authentication failed")                                                          \
    X(CONFLICT, -24, "conflict")                                                                   \
    X(INTERNAL, -25, "internal error")                                                             \
    X(UNSIGNED, -26, "not signed")                                                                 \
    X(WRONGKEY, -27, "wrong key")                                                                  \
    X(TAMPERED, -28, "altered after it was signed or encrypted")

enum ud_errno {
    UD_OK = 0,
#define UD__ERR_ENUM(name, val, msg) UD_E##name = (val),
    UD_ERRNO_MAP(UD__ERR_ENUM)
#undef UD__ERR_ENUM
};

/* Returns a static English description of code ("unknown error" for codes not in the table). */
const char *ud_strerror(int code);
/* Returns the static symbolic name ("UD_EFORMAT") of code, or "UD_E?" when unknown. */
const char *ud_err_name(int code);

#define UD_ERRMSG_MAX 512

/* Where a failing call explains itself. Plain data, caller-owned; may live on the stack. */
struct ud_err {
    int code;                /* 0 or a UD_E* code */
    char msg[UD_ERRMSG_MAX]; /* "file.udm: layer 3: shape (64, 32) does not match ..." */
};

/* Records code and a printf-style message in e (which may be NULL: then only code is returned).
 * Returns code, so that `return ud_err_set(e, UD_EIO, "...")` reads naturally. */
int ud_err_set(struct ud_err *e, int code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));
/* Prefixes e->msg with "prefix: " (used to add a file name to an inner error). Returns e->code,
 * or 0 when e is NULL. */
int ud_err_prefix(struct ud_err *e, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Clears e (code 0, empty message). NULL is fine. */
void ud_err_clear(struct ud_err *e);

#ifdef __cplusplus
}
#endif
#endif
