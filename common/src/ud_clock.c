/*  ud_clock.c — the monotonic and the wall clock (contract: ud_clock.h). */
#include "updraft/ud_clock.h"

#include <time.h>

static double clock_seconds(clockid_t id)
{
    struct timespec ts;
    clock_gettime(id, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

double ud_clock_mono(void)
{
    return clock_seconds(CLOCK_MONOTONIC);
}

double ud_clock_wall(void)
{
    return clock_seconds(CLOCK_REALTIME);
}
