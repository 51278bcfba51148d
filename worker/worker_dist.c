/*  worker_dist.c — MPI for the data-parallel worker: ring allreduce in buckets overlapped with
 *  backward, small collectives, and waits that never hang (see worker_dist.h).
 */
#include "worker_dist.h"

#include <errno.h>
#include <mpi.h>
#include <sched.h>
#include <signal.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "updraft/ud_clock.h"
#include "updraft/ud_signal.h"

#define DEFAULT_BUCKET_BYTES ((size_t)1 << 20)
#define DEFAULT_TIMEOUT_S    60.0
#define HOST_MAX             64

enum { TAG_PING = 1, TAG_PONG = 2, TAG_BUCKET0 = 100 };

/* What a rank is waiting in, for the roll call's answers. */
enum wait_kind { W_NONE = 0, W_GRAD, W_COLL };

struct bucket {
    size_t off, cnt; /* range of the gradient buffer */
    int nlayers;     /* layers in it */
    int pending;     /* layers not yet reported ready this step */
    int phase;       /* -1 idle; 0 .. 2(w-1)-1 in flight; 2(w-1) done */
    int applied;
    size_t rlo, rn; /* chunk being received in the current phase (bucket-relative) */
    MPI_Request rq[2];
    float *tmp; /* one chunk */
};

struct peer {
    char host[HOST_MAX];
    int32_t pid;
};

/* A roll call answer: what the rank was doing when asked. */
struct status_msg {
    int64_t step;
    int64_t seq;  /* collectives entered so far */
    int32_t kind; /* enum wait_kind */
    int32_t pad;
};

struct worker_dist {
    int rank, world, local_size;
    MPI_Comm comm; /* gradients and collectives */
    MPI_Comm hb;   /* roll call */
    struct peer *peers;
    size_t bucket_cap;
    double timeout;

    struct bucket *b;
    int nb;
    const float *grads_ro;
    float *grads;

    /* roll call */
    MPI_Request ping_rq;
    struct status_msg ping_in, *pong_out; /* pong_out[world] */
    MPI_Request *pong_send;               /* per destination */
    struct status_msg *answers;           /* answers[world] to our own roll call */
    MPI_Request *answer_rq;
    int *answered;
    int rollcall_open;

    int64_t step, seq;
    enum wait_kind waiting;
    struct worker_dist_stats st;
    /* An error of grad_ready (which returns nothing), reported by the next grad_sync. */
    struct ud_err ready_err;

    /* For the signal handler: the program's name and the hint, in two buffers; the handler
     * reads the one published last. */
    char prog[64];
    char hint_buf[2][1024];
    atomic_int hint_cur;
};

int worker_dist_launched(void)
{
    static const char *vars[] = {"OMPI_COMM_WORLD_SIZE", "PMIX_RANK", "PMI_SIZE", "PMI_RANK"};
    for (size_t i = 0; i < sizeof vars / sizeof *vars; i++)
        if (getenv(vars[i]))
            return 1;
    return 0;
}

/* The one file-level variable: a signal handler reaches nothing but globals. Set once, by
 * worker_dist_handle_signals; the handler reads the rank, the name and the hint through it. */
static worker_dist_t *sig_dist;

static int mpi_err(int rc, struct ud_err *e, const char *what)
{
    char s[MPI_MAX_ERROR_STRING];
    int len = 0;
    MPI_Error_string(rc, s, &len);
    return ud_err_set(e, UD_EMPI, "%s: %s", what, s);
}

/* ---------------------------------------------------------------------------- roll call */

static void post_ping_recv(worker_dist_t *d)
{
    MPI_Irecv(&d->ping_in, (int)sizeof d->ping_in, MPI_BYTE, MPI_ANY_SOURCE, TAG_PING, d->hb,
              &d->ping_rq);
}

/* Answers any roll call that has arrived: this rank is alive, and here is what it does. */
static void answer_pings(worker_dist_t *d)
{
    for (;;) {
        int flag = 0;
        MPI_Status s;
        if (MPI_Test(&d->ping_rq, &flag, &s) != MPI_SUCCESS || !flag)
            return;
        int src = s.MPI_SOURCE;
        if (src >= 0 && src < d->world) {
            if (d->pong_send[src] != MPI_REQUEST_NULL) {
                int done = 0;
                MPI_Test(&d->pong_send[src], &done, MPI_STATUS_IGNORE);
                if (!done)
                    MPI_Request_free(&d->pong_send[src]);
            }
            d->pong_out[src] = (struct status_msg){d->step, d->seq, (int32_t)d->waiting, 0};
            MPI_Isend(&d->pong_out[src], (int)sizeof(struct status_msg), MPI_BYTE, src, TAG_PONG,
                      d->hb, &d->pong_send[src]);
        }
        post_ping_recv(d);
    }
}

static void start_rollcall(worker_dist_t *d)
{
    static const struct status_msg ask = {0, 0, 0, 0};
    for (int q = 0; q < d->world; q++) {
        d->answered[q] = q == d->rank;
        if (q == d->rank)
            continue;
        if (d->answer_rq[q] == MPI_REQUEST_NULL)
            MPI_Irecv(&d->answers[q], (int)sizeof(struct status_msg), MPI_BYTE, q, TAG_PONG, d->hb,
                      &d->answer_rq[q]);
        MPI_Request r;
        if (MPI_Isend((void *)&ask, (int)sizeof ask, MPI_BYTE, q, TAG_PING, d->hb, &r) ==
            MPI_SUCCESS)
            MPI_Request_free(&r);
    }
    d->rollcall_open = 1;
}

static void collect_answers(worker_dist_t *d)
{
    for (int q = 0; q < d->world; q++) {
        if (d->answered[q] || d->answer_rq[q] == MPI_REQUEST_NULL)
            continue;
        int flag = 0;
        if (MPI_Test(&d->answer_rq[q], &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag)
            d->answered[q] = 1;
    }
}

/* Whether the process of rank q, on this host, has exited (-1: another host, cannot tell). */
static int peer_gone(const worker_dist_t *d, int q)
{
    if (strcmp(d->peers[q].host, d->peers[d->rank].host) != 0)
        return -1;
    return kill((pid_t)d->peers[q].pid, 0) != 0 && errno == ESRCH;
}

static const char *kind_name(int k)
{
    return k == W_GRAD ? "the gradient allreduce" : k == W_COLL ? "a collective" : "computing";
}

/* The verdict at the deadline: names who did not answer, or who is out of step. Returns 1 if
 * everyone answered from the same wait (slow, not stuck: keep waiting). */
static int verdict(worker_dist_t *d, const char *what, struct ud_err *e)
{
    collect_answers(d);
    char list[1024] = "";
    size_t len = 0;
    int silent = 0, astray = 0;
    for (int q = 0; q < d->world; q++) {
        if (q == d->rank)
            continue;
        const char *state = NULL;
        char buf[256];
        if (!d->answered[q]) {
            int g = peer_gone(d, q);
            state = g == 1   ? "its process has exited"
                    : g == 0 ? "not responding"
                             : "no answer over the network: its process, its host or the link "
                               "to it is down";
            silent++;
        } else if (d->answers[q].seq != d->seq) {
            snprintf(buf, sizeof buf, "out of step: in %s at step %lld",
                     kind_name(d->answers[q].kind), (long long)d->answers[q].step);
            state = buf;
            astray++;
        }
        if (state && len < sizeof list)
            len +=
                (size_t)snprintf(list + len, sizeof list - len, "%srank %d (pid %d on %s: %s)",
                                 len ? ", " : "", q, (int)d->peers[q].pid, d->peers[q].host, state);
    }
    if (!silent && !astray)
        return 1;
    ud_err_set(e, UD_ETIMEOUT, "%s at step %lld made no progress for %.0f s; missing: %s", what,
               (long long)d->step, d->timeout, list);
    return 0;
}

/* --------------------------------------------------------------------------- the wait loop */

typedef int (*done_fn)(worker_dist_t *d, void *arg, struct ud_err *e); /* 1 done, 0 not, <0 error */

/* Polls done() until it reports completion, answering roll calls, with the deadline. */
static int wait_for(worker_dist_t *d, enum wait_kind kind, done_fn done, void *arg,
                    const char *what, struct ud_err *e)
{
    d->waiting = kind;
    double t0 = ud_clock_mono(), start_roll = t0 + d->timeout / 2, deadline = t0 + d->timeout;
    long spins = 0;
    for (;;) {
        int r = done(d, arg, e);
        if (r) {
            d->waiting = W_NONE;
            d->rollcall_open = 0;
            return r < 0 ? r : 0;
        }
        answer_pings(d);
        /* Spin first (the sum is usually a fraction of a millisecond away), then yield the
         * core to anything else runnable (ranks oversubscribing the cores), and only a wait
         * that has become a stall sleeps between polls. */
        if (++spins < 100)
            continue;
        double t = ud_clock_mono();
        if (t - t0 < 0.05) {
            sched_yield();
            continue;
        }
        if (!d->rollcall_open && t >= start_roll)
            start_rollcall(d);
        if (t >= deadline) {
            if (verdict(d, what, e)) {
                /* Every rank waits in the same place: slow, not stuck. Ask again later. */
                start_roll = t + d->timeout / 2;
                deadline = t + d->timeout;
                d->rollcall_open = 0;
                continue;
            }
            d->waiting = W_NONE;
            return e->code;
        }
        struct timespec ts = {0, 50000};
        nanosleep(&ts, NULL);
    }
}

/* One non-blocking MPI request. */
static int req_done(worker_dist_t *d, void *arg, struct ud_err *e)
{
    int flag = 0, rc = MPI_Test((MPI_Request *)arg, &flag, MPI_STATUS_IGNORE);
    (void)d;
    if (rc != MPI_SUCCESS)
        return mpi_err(rc, e, "MPI_Test");
    return flag;
}

static int wait_req(worker_dist_t *d, MPI_Request *r, const char *what, struct ud_err *e)
{
    d->seq++;
    double t0 = ud_clock_mono();
    int rc = wait_for(d, W_COLL, req_done, r, what, e);
    d->st.collective_seconds += ud_clock_mono() - t0;
    return rc;
}

/* ------------------------------------------------------------------------------ set-up */

worker_dist_t *worker_dist_init(int *argc, char ***argv, const struct worker_dist_opts *o,
                                struct ud_err *e)
{
    int provided = 0, rc;
    if ((rc = MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided)) != MPI_SUCCESS) {
        mpi_err(rc, e, "MPI_Init");
        return NULL;
    }
    worker_dist_t *d = calloc(1, sizeof *d);
    if (!d) {
        ud_err_set(e, UD_ENOMEM, "out of memory");
        return NULL;
    }
    atomic_init(&d->hint_cur, -1);
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &d->rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d->world);
    MPI_Comm_dup(MPI_COMM_WORLD, &d->comm);
    MPI_Comm_dup(MPI_COMM_WORLD, &d->hb);
    MPI_Comm_set_errhandler(d->comm, MPI_ERRORS_RETURN);
    MPI_Comm_set_errhandler(d->hb, MPI_ERRORS_RETURN);
    MPI_Comm local;
    MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, d->rank, MPI_INFO_NULL, &local);
    MPI_Comm_size(local, &d->local_size);
    MPI_Comm_free(&local);
    d->bucket_cap = o && o->bucket_bytes ? o->bucket_bytes : DEFAULT_BUCKET_BYTES;
    d->timeout = o && o->timeout_s > 0 ? o->timeout_s : DEFAULT_TIMEOUT_S;

    size_t W = (size_t)d->world;
    d->peers = calloc(W, sizeof *d->peers);
    d->pong_out = calloc(W, sizeof *d->pong_out);
    d->pong_send = malloc(W * sizeof *d->pong_send);
    d->answers = calloc(W, sizeof *d->answers);
    d->answer_rq = malloc(W * sizeof *d->answer_rq);
    d->answered = calloc(W, sizeof *d->answered);
    if (!d->peers || !d->pong_out || !d->pong_send || !d->answers || !d->answer_rq ||
        !d->answered) {
        ud_err_set(e, UD_ENOMEM, "out of memory for %d ranks", d->world);
        worker_dist_finalize(&d);
        return NULL;
    }
    for (size_t q = 0; q < W; q++)
        d->pong_send[q] = d->answer_rq[q] = MPI_REQUEST_NULL;
    struct peer me = {.pid = (int32_t)getpid()};
    if (gethostname(me.host, sizeof me.host) != 0)
        snprintf(me.host, sizeof me.host, "?");
    me.host[HOST_MAX - 1] = '\0';
    post_ping_recv(d);
    MPI_Request r;
    if ((rc = MPI_Iallgather(&me, (int)sizeof me, MPI_BYTE, d->peers, (int)sizeof me, MPI_BYTE,
                             d->comm, &r)) != MPI_SUCCESS ||
        wait_req(d, &r, "start-up (exchanging host names)", e)) {
        if (rc)
            mpi_err(rc, e, "start-up");
        worker_dist_finalize(&d);
        return NULL;
    }
    return d;
}

static void free_buckets(worker_dist_t *d)
{
    for (int i = 0; i < d->nb; i++)
        free(d->b[i].tmp);
    free(d->b);
    d->b = NULL;
    d->nb = 0;
}

void worker_dist_finalize(worker_dist_t **dp)
{
    worker_dist_t *d = *dp;
    if (!d)
        return;
    if (d->ping_rq != MPI_REQUEST_NULL) {
        MPI_Cancel(&d->ping_rq);
        MPI_Wait(&d->ping_rq, MPI_STATUS_IGNORE);
    }
    for (int q = 0; q < d->world; q++) {
        if (d->answer_rq && d->answer_rq[q] != MPI_REQUEST_NULL) {
            MPI_Cancel(&d->answer_rq[q]);
            MPI_Wait(&d->answer_rq[q], MPI_STATUS_IGNORE);
        }
        if (d->pong_send && d->pong_send[q] != MPI_REQUEST_NULL)
            MPI_Wait(&d->pong_send[q], MPI_STATUS_IGNORE);
    }
    /* No rank may leave while another could still ask it something. */
    MPI_Barrier(d->hb);
    if (sig_dist == d)
        sig_dist = NULL;
    free_buckets(d);
    MPI_Comm_free(&d->comm);
    MPI_Comm_free(&d->hb);
    free(d->peers);
    free(d->pong_out);
    free(d->pong_send);
    free(d->answers);
    free(d->answer_rq);
    free(d->answered);
    free(d);
    *dp = NULL;
    MPI_Finalize();
}

int worker_dist_rank(const worker_dist_t *d)
{
    return d->rank;
}
int worker_dist_world(const worker_dist_t *d)
{
    return d->world;
}
int worker_dist_local_size(const worker_dist_t *d)
{
    return d->local_size;
}
void worker_dist_set_step(worker_dist_t *d, int64_t step)
{
    d->step = step;
}
void worker_dist_stats(const worker_dist_t *d, struct worker_dist_stats *s)
{
    *s = d->st;
}

/* ------------------------------------------------------------------------- collectives */

int worker_dist_barrier(worker_dist_t *d, const char *what, struct ud_err *e)
{
    MPI_Request r;
    int rc = MPI_Ibarrier(d->comm, &r);
    return rc ? mpi_err(rc, e, what) : wait_req(d, &r, what, e);
}

int worker_dist_bcast(worker_dist_t *d, void *buf, size_t bytes, int root, const char *what,
                      struct ud_err *e)
{
    /* In pieces of at most 1 GiB: MPI counts are ints. */
    for (size_t off = 0; off < bytes || (bytes == 0 && off == 0);) {
        size_t n = bytes - off < ((size_t)1 << 30) ? bytes - off : ((size_t)1 << 30);
        MPI_Request r;
        int rc = MPI_Ibcast((char *)buf + off, (int)n, MPI_BYTE, root, d->comm, &r);
        if (rc)
            return mpi_err(rc, e, what);
        if ((rc = wait_req(d, &r, what, e)))
            return rc;
        off += n;
        if (bytes == 0)
            break;
    }
    return 0;
}

int worker_dist_sum_f64(worker_dist_t *d, double *v, size_t n, const char *what, struct ud_err *e)
{
    MPI_Request r;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_DOUBLE, MPI_SUM, d->comm, &r);
    return rc ? mpi_err(rc, e, what) : wait_req(d, &r, what, e);
}

int worker_dist_max_i64(worker_dist_t *d, int64_t *v, size_t n, const char *what, struct ud_err *e)
{
    MPI_Request r;
    int rc = MPI_Iallreduce(MPI_IN_PLACE, v, (int)n, MPI_INT64_T, MPI_MAX, d->comm, &r);
    return rc ? mpi_err(rc, e, what) : wait_req(d, &r, what, e);
}

int worker_dist_agree(worker_dist_t *d, int rc, const char *msg, const char *what, struct ud_err *e)
{
    /* Codes first (cheap); the messages only when something failed. */
    int64_t v[2] = {rc ? 1 : 0, rc ? (int64_t)(d->world - d->rank) : 0};
    int r = worker_dist_max_i64(d, v, 2, what, e);
    if (r)
        return r;
    if (!v[0])
        return 0;
    double c = rc ? 1 : 0; /* how many failed */
    if ((r = worker_dist_sum_f64(d, &c, 1, what, e)))
        return r;
    int first = d->world - (int)v[1]; /* the lowest failing rank */
    struct {
        int32_t code;
        char msg[sizeof e->msg];
    } m = {rc, ""};
    if (d->rank == first)
        snprintf(m.msg, sizeof m.msg, "%s", msg ? msg : "");
    if ((r = worker_dist_bcast(d, &m, sizeof m, first, what, e)))
        return r;
    int others = (int)c - 1;
    char more[64] = "";
    if (others > 0)
        snprintf(more, sizeof more, " (and %d other rank%s)", others, others == 1 ? "" : "s");
    return ud_err_set(e, m.code ? m.code : UD_EINTERNAL, "rank %d%s: %s", first, more, m.msg);
}

int worker_dist_agree_err(worker_dist_t *d, int rc, const struct ud_err *local, const char *what,
                          struct ud_err *e)
{
    if (!d) {
        if (rc && e != local)
            *e = *local;
        return rc;
    }
    char msg[sizeof local->msg];
    snprintf(msg, sizeof msg, "%s", rc ? local->msg : "");
    return worker_dist_agree(d, rc, msg, what, e);
}

/* ----------------------------------------------------------------------- ring allreduce */

static size_t chunk_size(const struct bucket *b, int w)
{
    return (b->cnt + (size_t)w - 1) / (size_t)w;
}

static void chunk_range(const struct bucket *b, int w, int c, size_t *lo, size_t *n)
{
    size_t cs = chunk_size(b, w), l = (size_t)c * cs;
    if (l > b->cnt)
        l = b->cnt;
    *lo = l;
    *n = l + cs <= b->cnt ? cs : b->cnt - l;
}

/* Posts the messages of the bucket's current phase. Phases 0 .. w-2 reduce-scatter (receive a
 * chunk into tmp, add it to ours), phases w-1 .. 2w-3 all-gather (receive final chunks in
 * place). */
static int post_phase(worker_dist_t *d, struct bucket *b, int idx, struct ud_err *e)
{
    int w = d->world, r = d->rank, k = b->phase;
    int nxt = (r + 1) % w, prv = (r - 1 + w) % w;
    int sc, rc;
    if (k < w - 1) {
        sc = ((r - k) % w + w) % w;
        rc = ((r - k - 1) % w + w) % w;
    } else {
        int j = k - (w - 1);
        sc = ((r + 1 - j) % w + w) % w;
        rc = ((r - j) % w + w) % w;
    }
    size_t slo, sn;
    chunk_range(b, w, sc, &slo, &sn);
    chunk_range(b, w, rc, &b->rlo, &b->rn);
    float *dst = k < w - 1 ? b->tmp : d->grads + b->off + b->rlo;
    int tag = TAG_BUCKET0 + idx, m;
    if ((m = MPI_Irecv(dst, (int)b->rn, MPI_FLOAT, prv, tag, d->comm, &b->rq[0])) ||
        (m = MPI_Isend(d->grads + b->off + slo, (int)sn, MPI_FLOAT, nxt, tag, d->comm, &b->rq[1])))
        return mpi_err(m, e, "gradient allreduce");
    return 0;
}

static int start_bucket(worker_dist_t *d, int idx, struct ud_err *e)
{
    struct bucket *b = &d->b[idx];
    b->phase = 0;
    if (d->world == 1) {
        b->phase = 0; /* nothing to exchange */
        return 0;
    }
    return post_phase(d, b, idx, e);
}

/* Advances every bucket in flight as far as its messages allow. */
static int progress(worker_dist_t *d, struct ud_err *e)
{
    int w = d->world, last = 2 * (w - 1);
    for (int i = 0; i < d->nb; i++) {
        struct bucket *b = &d->b[i];
        while (b->phase >= 0 && b->phase < last) {
            int flag = 0, rc = MPI_Testall(2, b->rq, &flag, MPI_STATUSES_IGNORE);
            if (rc != MPI_SUCCESS)
                return mpi_err(rc, e, "gradient allreduce");
            if (!flag)
                break;
            if (b->phase < w - 1) {
                float *restrict x = d->grads + b->off + b->rlo;
                const float *restrict y = b->tmp;
                for (size_t j = 0; j < b->rn; j++)
                    x[j] += y[j];
            }
            if (++b->phase < last && (rc = post_phase(d, b, i, e)))
                return rc;
        }
    }
    return 0;
}

void worker_dist_set_bucket_bytes(worker_dist_t *d, size_t bytes)
{
    d->bucket_cap = bytes ? bytes : DEFAULT_BUCKET_BYTES;
}

void worker_dist_set_timeout(worker_dist_t *d, double seconds)
{
    d->timeout = seconds > 0 ? seconds : DEFAULT_TIMEOUT_S;
}

int worker_dist_grad_setup(worker_dist_t *d, ud_model_t *m, struct ud_err *e)
{
    free_buckets(d);
    const struct ud_arch *a = ud_model_arch(m);
    /* From the top layer down, the order backward reports them. */
    struct bucket *bs = calloc((size_t)a->nlayers + 1, sizeof *bs);
    if (!bs)
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    int nb = 0;
    for (int i = a->nlayers - 1; i >= 0; i--) {
        struct ud_span w, bias;
        ud_model_layer_params(m, i, &w, &bias);
        if (!ud_model_layer_updatable(m, i) || w.count == 0)
            continue;
        size_t off = w.offset, cnt = w.count + bias.count;
        struct bucket *cur = nb ? &bs[nb - 1] : NULL;
        /* Join the open bucket when adjacent in memory (below it) and within the cap. */
        if (cur && off + cnt == cur->off && (cur->cnt + cnt) * sizeof(float) <= d->bucket_cap) {
            cur->off = off;
            cur->cnt += cnt;
            cur->nlayers++;
        } else {
            bs[nb++] = (struct bucket){.off = off, .cnt = cnt, .nlayers = 1};
        }
    }
    for (int i = 0; i < nb; i++) {
        bs[i].pending = bs[i].nlayers;
        bs[i].phase = -1;
        bs[i].rq[0] = bs[i].rq[1] = MPI_REQUEST_NULL;
        if (!(bs[i].tmp = malloc((chunk_size(&bs[i], d->world) + 1) * sizeof(float)))) {
            d->b = bs;
            d->nb = i;
            free_buckets(d);
            return ud_err_set(e, UD_ENOMEM, "out of memory");
        }
    }
    d->b = bs;
    d->nb = nb;
    d->grads = ud_model_grads(m);
    d->st.nbuckets = nb;
    d->st.bucket_bytes = d->bucket_cap;
    return 0;
}

static struct bucket *bucket_of(worker_dist_t *d, size_t off, int *idx)
{
    for (int i = 0; i < d->nb; i++)
        if (off >= d->b[i].off && off < d->b[i].off + d->b[i].cnt) {
            *idx = i;
            return &d->b[i];
        }
    return NULL;
}

void worker_dist_grad_ready(void *user, int layer, struct ud_span span)
{
    worker_dist_t *d = user;
    int idx;
    (void)layer;
    struct bucket *b = bucket_of(d, span.offset, &idx);
    if (!b || span.count == 0)
        return;
    if (--b->pending == 0 && !d->ready_err.code)
        start_bucket(d, idx, &d->ready_err);
    if (!d->ready_err.code)
        progress(d, &d->ready_err);
    answer_pings(d);
}

struct sync_arg {
    ud_span_apply_fn apply;
    void *actx;
};

static int buckets_done(worker_dist_t *d, void *arg, struct ud_err *e)
{
    struct sync_arg *a = arg;
    int rc = progress(d, e), last = 2 * (d->world - 1), all = 1;
    if (rc)
        return rc;
    for (int i = 0; i < d->nb; i++) {
        struct bucket *b = &d->b[i];
        if (b->phase >= last && !b->applied) {
            b->applied = 1;
            if (a->apply)
                a->apply(a->actx, (struct ud_span){b->off, b->cnt});
        }
        all &= b->applied;
    }
    return all;
}

int worker_dist_grad_sync(void *user, float *grads, size_t n, ud_span_apply_fn apply, void *actx,
                          struct ud_err *e)
{
    worker_dist_t *d = user;
    (void)n;
    double t0 = ud_clock_mono();
    if (d->ready_err.code) {
        *e = d->ready_err;
        return e->code;
    }
    d->grads = grads;
    /* A bucket whose layers were not all reported (cannot happen with the engine) starts now. */
    for (int i = 0; i < d->nb; i++)
        if (d->b[i].phase < 0) {
            int rc = start_bucket(d, i, e);
            if (rc)
                return rc;
        }
    struct sync_arg a = {apply, actx};
    d->seq++;
    int rc = wait_for(d, W_GRAD, buckets_done, &a, "the gradient allreduce", e);
    for (int i = 0; i < d->nb; i++) {
        d->b[i].pending = d->b[i].nlayers;
        d->b[i].phase = -1;
        d->b[i].applied = 0;
    }
    d->st.steps++;
    for (int i = 0; i < d->nb; i++)
        d->st.bytes += (double)d->b[i].cnt * sizeof(float);
    d->st.wait_seconds += ud_clock_mono() - t0;
    return rc;
}

int worker_dist_metric_sync(void *user, double *v, size_t n, struct ud_err *e)
{
    return worker_dist_sum_f64(user, v, n, "the metrics allreduce", e);
}

int worker_dist_sum_f32(worker_dist_t *d, float *x, size_t n, const char *what, struct ud_err *e)
{
    /* One bucket over x, through the same ring. */
    struct bucket b = {.off = 0, .cnt = n, .nlayers = 1, .phase = -1};
    b.rq[0] = b.rq[1] = MPI_REQUEST_NULL;
    if (!(b.tmp = malloc((chunk_size(&b, d->world) + 1) * sizeof(float))))
        return ud_err_set(e, UD_ENOMEM, "out of memory");
    struct bucket *saved_b = d->b;
    int saved_nb = d->nb;
    float *saved_g = d->grads;
    d->b = &b;
    d->nb = 1;
    d->grads = x;
    int rc = start_bucket(d, 0, e);
    struct sync_arg a = {NULL, NULL};
    if (!rc) {
        d->seq++;
        rc = wait_for(d, W_COLL, buckets_done, &a, what, e);
    }
    d->b = saved_b;
    d->nb = saved_nb;
    d->grads = saved_g;
    free(b.tmp);
    return rc;
}

/* --------------------------------------------------------------------- signal handlers */

static size_t put_str(char *buf, size_t cap, size_t at, const char *s)
{
    while (*s && at + 1 < cap)
        buf[at++] = *s++;
    buf[at < cap ? at : cap - 1] = '\0';
    return at;
}

static size_t put_int(char *buf, size_t cap, size_t at, long v)
{
    char tmp[24];
    int n = 0;
    if (v < 0) {
        at = put_str(buf, cap, at, "-");
        v = -v;
    }
    do {
        tmp[n++] = (char)('0' + v % 10);
        v /= 10;
    } while (v && n < 23);
    while (n > 0 && at + 1 < cap)
        buf[at++] = tmp[--n];
    buf[at < cap ? at : cap - 1] = '\0';
    return at;
}

size_t worker_dist_dead_peers(const worker_dist_t *d, char *buf, size_t cap)
{
    size_t at = 0;
    if (cap)
        buf[0] = '\0';
    for (int q = 0; d && q < d->world; q++) {
        if (q == d->rank || peer_gone(d, q) != 1)
            continue;
        if (at)
            at = put_str(buf, cap, at, ", ");
        at = put_str(buf, cap, at, "rank ");
        at = put_int(buf, cap, at, q);
        at = put_str(buf, cap, at, " (pid ");
        at = put_int(buf, cap, at, d->peers[q].pid);
        at = put_str(buf, cap, at, ")");
    }
    return at;
}

void worker_dist_set_hint(worker_dist_t *d, const char *fmt, ...)
{
    int next = atomic_load(&d->hint_cur) == 0 ? 1 : 0;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(d->hint_buf[next], sizeof d->hint_buf[next], fmt, ap);
    va_end(ap);
    atomic_store(&d->hint_cur, next);
}

static void on_term(int sig)
{
    char buf[2048], dead[768];
    size_t at = 0;
    at = put_str(buf, sizeof buf, at, sig_dist ? sig_dist->prog : "updraft-worker");
    at = put_str(buf, sizeof buf, at, ": rank ");
    at = put_int(buf, sizeof buf, at, sig_dist ? sig_dist->rank : 0);
    at = put_str(buf, sizeof buf, at, ": stopped by signal ");
    at = put_int(buf, sizeof buf, at, sig);
    if (worker_dist_dead_peers(sig_dist, dead, sizeof dead)) {
        at = put_str(buf, sizeof buf, at, " after losing ");
        at = put_str(buf, sizeof buf, at, dead);
        at = put_str(buf, sizeof buf, at, " (the process is gone)");
    } else {
        at = put_str(buf, sizeof buf, at,
                     " (from the launcher: another rank failed, or the job "
                     "was interrupted)");
    }
    int h = sig_dist ? atomic_load(&sig_dist->hint_cur) : -1;
    if (h >= 0) {
        at = put_str(buf, sizeof buf, at, "; ");
        at = put_str(buf, sizeof buf, at, sig_dist->hint_buf[h]);
    }
    at = put_str(buf, sizeof buf, at, "\n");
    ssize_t wr = write(STDERR_FILENO, buf, at);
    (void)wr;
    _exit(128 + sig);
}

void worker_dist_handle_signals(worker_dist_t *d, const char *prog)
{
    snprintf(d->prog, sizeof d->prog, "%s", prog);
    sig_dist = d;
    ud_signal_on_stop(on_term);
    /* A peer that died leaves a TCP connection that fails on the next write: an error for MPI
     * to report (and the launcher to name the dead rank), not a silent death by SIGPIPE of
     * this rank, which the launcher would then blame. */
    signal(SIGPIPE, SIG_IGN);
}
