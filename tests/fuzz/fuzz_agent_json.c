/*  fuzz_agent_json.c — libFuzzer target: what updraft-agent parses from a coordinator (which may
 *  be hostile, or a man in the middle) and from its own state directory.
 *
 *  First byte (mod 3) picks the parser, the rest is the text:
 *    0  the task of GET /v1/devices/{id}/task   agent_task_parse
 *    1  STATE/state.json                         agent_state_parse
 *    2  STATE/download.json                      agent_download_parse
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent_state.h"
#include "agent_task.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = NULL;
    size_t len = 0;
    struct ud_err e = {0};
    switch (fuzz_pick(data, size, 3, &body, &len)) {
    case 0: {
        struct agent_task t;
        agent_task_parse(body, len, &t, &e);
        break;
    }
    case 1: {
        struct agent_state s;
        if (agent_state_parse(body, len, "state.json", &s, &e) == 0 &&
            (s.ndone < 0 || s.ndone > AGENT_DONE_MAX))
            fuzz_fail(&e);
        break;
    }
    case 2: {
        char sha[65];
        uint64_t sz;
        agent_download_parse(body, len, "download.json", sha, &sz, &e);
        break;
    }
    }
    return 0;
}
