/*  ud_signal.h — how every updraft program hears that it should stop: one handler for SIGINT
 *  and SIGTERM, installed without SA_RESTART, so that a blocking call the signal interrupts
 *  returns EINTR and the program reaches its next check.
 */
#ifndef UD_SIGNAL_H
#define UD_SIGNAL_H

#ifdef __cplusplus
extern "C" {
#endif

/* Installs handler for SIGINT and SIGTERM (it must be async-signal-safe: set a flag, cancel a
 * task, write(2), _exit). Returns 0, or -1 with errno set. Process-wide: call it from a
 * program's main-side setup, not from the library. */
int ud_signal_on_stop(void (*handler)(int));

#ifdef __cplusplus
}
#endif
#endif
