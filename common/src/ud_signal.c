/*  ud_signal.c — one stop handler for SIGINT and SIGTERM (contract: ud_signal.h). */
#include "updraft/ud_signal.h"

#include <signal.h>
#include <string.h>

int ud_signal_on_stop(void (*handler)(int))
{
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = handler;
    sigemptyset(&sa.sa_mask);
    if (sigaction(SIGINT, &sa, NULL) < 0 || sigaction(SIGTERM, &sa, NULL) < 0)
        return -1;
    return 0;
}
