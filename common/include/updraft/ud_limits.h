/*  ud_limits.h — the sizes the coordinator's REST API accepts, shared by the server (which
 *  enforces them with 413) and its clients (which refuse to send more, saying so before the
 *  upload). One definition each: change a limit here and both sides follow. docs/limits.md
 *  lists them with what the user sees.
 */
#ifndef UD_LIMITS_H
#define UD_LIMITS_H

/* A job spec (POST /v1/jobs) and any small JSON body: 1 MiB. */
#define UD_LIMIT_JOB_SPEC_BYTES (1u << 20)
/* A federation spec (POST /v1/federations): 64 KiB. */
#define UD_LIMIT_FED_SPEC_BYTES (64u << 10)
/* A model pushed to the registry (POST /v1/models/{name}/versions): 256 MiB. */
#define UD_LIMIT_MODEL_PUSH_BYTES (256u << 20)
/* A device's update (POST /v1/federations/{id}/rounds/{r}/updates), before the round is known:
 * 256 MiB. */
#define UD_LIMIT_UPDATE_BYTES (256u << 20)
/* Other small JSON bodies (enrolment, failure reports): 64 KiB. */
#define UD_LIMIT_SMALL_BODY_BYTES (64u << 10)

#endif
