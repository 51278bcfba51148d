/*  bench_allreduce.c — updraft's gradient allreduce next to a raw MPI_Allreduce of the same size.
 *
 *  mpirun -np N bench_allreduce [FLOATS...] (default: the mlp's 535818 gradients, then 1, 4 and
 *  16 MiB). For each size: updraft's ring (the non-blocking Isend/Irecv reduce-scatter and
 *  all-gather the worker's gradient buckets use, through the same watchdog-polled waits) and
 *  MPI_Allreduce (OpenMPI's own choice of algorithm), interleaved, best of several rounds. Prints
 *  time per call, algorithm bandwidth (bytes / time) and bus bandwidth (x 2(n-1)/n, NCCL-tests'
 *  convention), and the ratio.
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "worker_dist.h"

static double best_of(int rounds, int iters, worker_dist_t *d, float *x, size_t n, int ours)
{
    double best = 1e30;
    for (int r = 0; r < rounds; r++) {
        MPI_Barrier(MPI_COMM_WORLD);
        double t0 = MPI_Wtime();
        for (int i = 0; i < iters; i++) {
            if (ours) {
                struct ud_err e = {0};
                if (worker_dist_sum_f32(d, x, n, "bench", &e)) {
                    fprintf(stderr, "bench_allreduce: %s\n", e.msg);
                    MPI_Abort(MPI_COMM_WORLD, 1);
                }
            } else {
                MPI_Allreduce(MPI_IN_PLACE, x, (int)n, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
            }
            /* Keep the values finite and the memory warm, as gradients are. */
            x[i % n] = 1.0f;
        }
        double t = (MPI_Wtime() - t0) / iters, tmax;
        MPI_Allreduce(&t, &tmax, 1, MPI_DOUBLE, MPI_MAX, MPI_COMM_WORLD);
        if (tmax < best)
            best = tmax;
    }
    return best;
}

int main(int argc, char **argv)
{
    struct ud_err e = {0};
    worker_dist_t *d = worker_dist_init(&argc, &argv, NULL, &e);
    if (!d) {
        fprintf(stderr, "bench_allreduce: %s\n", e.msg);
        return 1;
    }
    int rank = worker_dist_rank(d), w = worker_dist_world(d);
    size_t defaults[] = {535818, 262144, 1048576, 4194304};
    size_t nsizes = argc > 1 ? (size_t)(argc - 1) : sizeof defaults / sizeof *defaults;
    if (rank == 0)
        printf("%-10s %10s %12s %12s %12s %12s %8s\n", "floats", "bytes", "updraft ms", "MPI ms",
               "updraft GB/s", "MPI GB/s", "ratio");
    for (size_t s = 0; s < nsizes; s++) {
        size_t n = argc > 1 ? (size_t)strtoull(argv[s + 1], NULL, 10) : defaults[s];
        float *x = malloc(n * sizeof *x);
        for (size_t i = 0; i < n; i++)
            x[i] = 1.0f / (float)(1 + (i % 97));
        int iters = n > 2000000 ? 20 : 100;
        double ours = 1e30, mpi = 1e30;
        for (int round = 0; round < 3; round++) {
            double a = best_of(1, iters, d, x, n, 1), b = best_of(1, iters, d, x, n, 0);
            ours = a < ours ? a : ours;
            mpi = b < mpi ? b : mpi;
        }
        double bytes = (double)n * sizeof(float), bus = 2.0 * (w - 1) / w;
        if (rank == 0)
            printf("%-10zu %10.0f %12.3f %12.3f %12.2f %12.2f %8.2f   (bus GB/s %.2f vs %.2f)\n", n,
                   bytes, ours * 1e3, mpi * 1e3, bytes / ours / 1e9, bytes / mpi / 1e9, mpi / ours,
                   bytes / ours / 1e9 * bus, bytes / mpi / 1e9 * bus);
        free(x);
    }
    worker_dist_finalize(&d);
    return 0;
}
