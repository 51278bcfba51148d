/*  fuzz_rest_json.c — libFuzzer target: the coordinator's parsers of what REST clients send.
 *
 *  First byte (mod 5) picks the parser, the rest is the request body (or header):
 *    0  POST /v1/jobs             coord_spec_parse (then the canonical spec it stores)
 *    1  POST /v1/federations      coord_fed_spec_parse, coord_fed_spec_json
 *    2  POST /v1/devices          coord_fed_enrol_parse
 *    3  POST /v1/rounds/{id}/failures  coord_fed_failure_parse
 *    4  Authorization: Bearer ID.SECRET of a device  coord_device_token_parse
 *  A spec that parses is parsed again from the JSON the coordinator stores, and must parse.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coord_fed.h"
#include "coord_spec.h"

#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const char *body = NULL;
    size_t len = 0;
    struct ud_err e = {0};
    switch (fuzz_pick(data, size, 5, &body, &len)) {
    case 0: {
        struct coord_spec s;
        if (coord_spec_parse(body, len, &s, &e) == 0) {
            struct coord_spec s2;
            if (!s.canonical || coord_spec_parse(s.canonical, strlen(s.canonical), &s2, &e) != 0)
                fuzz_fail(&e); /* the stored spec would not load again */
            coord_spec_deinit(&s2);
        }
        coord_spec_deinit(&s);
        break;
    }
    case 1: {
        struct coord_fed_spec s;
        if (coord_fed_spec_parse(body, len, &s, &e) == 0) {
            /* POST /v1/federations fills what the spec left to the model (any value a .udm
             * allows: epochs up to 10^6, batch up to 65536, lr in [0, 1]), refusing what would
             * not load again, before storing. */
            uint32_t r =
                len >= 4 ? (uint32_t)data[1] << 16 ^ (uint32_t)data[len] << 8 ^ data[2] : 7;
            if (coord_fed_spec_fill(&s, s.epochs ? s.epochs : 1 + r % 1000000,
                                    s.batch ? s.batch : 1 + r % 65536,
                                    s.lr >= 0 ? s.lr : (r % 1000) / 1000.0, 1 + r % 5, &e) != 0)
                break;
            if (!s.name[0])
                snprintf(s.name, sizeof s.name, "federation-1");
            char *j = coord_fed_spec_json(&s);
            struct coord_fed_spec s2;
            if (j && coord_fed_spec_parse(j, strlen(j), &s2, &e) != 0)
                fuzz_fail(&e); /* the stored spec would not load again */
            free(j);
        }
        break;
    }
    case 2: {
        char name[COORD_FED_NAME_MAX];
        int64_t count;
        coord_fed_enrol_parse(body, len, name, &count, &e);
        break;
    }
    case 3: {
        char reason[COORD_FED_REASON_MAX + 1];
        coord_fed_failure_parse(body, len, reason, &e);
        break;
    }
    case 4: {
        int64_t id;
        unsigned char hash[32];
        coord_device_token_parse(body, len, &id, hash);
        break;
    }
    }
    return 0;
}
