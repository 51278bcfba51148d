/*  agent_run.c — the device daemon (being written). */
#include <stdio.h>

#include "agent.h"
#include "agent_log.h"

int agent_cmd_run(int argc, char **argv)
{
    (void)argc;
    (void)argv;
    fprintf(stderr, AGENT_PROG ": run: not implemented yet\n");
    return 2;
}
