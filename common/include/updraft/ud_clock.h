/*  ud_clock.h — the two clocks updraft reads: a monotonic one for durations and timeouts, and
 *  the wall clock for timestamps that people and other hosts see. Never mix them: a duration
 *  taken from the wall clock jumps when the clock is set.
 */
#ifndef UD_CLOCK_H
#define UD_CLOCK_H

#ifdef __cplusplus
extern "C" {
#endif

/* Seconds on CLOCK_MONOTONIC: only differences mean anything. Thread-safe. */
double ud_clock_mono(void);
/* Seconds since the Unix epoch (CLOCK_REALTIME), with sub-second precision. Thread-safe. */
double ud_clock_wall(void);

#ifdef __cplusplus
}
#endif
#endif
