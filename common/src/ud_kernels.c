/*  ud_kernels.c — sgemm (OpenBLAS or a blocked fallback) and BLAS thread control. */
#include "updraft/ud_kernels.h"

#include <stdio.h>
#include <string.h>

#ifdef UD_WITH_OPENBLAS
#include <cblas.h>

void ud_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
}

int ud_kernels_set_threads(int n)
{
    if (n < 1)
        n = 1;
    openblas_set_num_threads(n);
    return openblas_get_num_threads();
}

const char *ud_kernels_describe(void)
{
    static char buf[128];
    if (!buf[0])
        snprintf(buf, sizeof buf, "%s (%s)", openblas_get_config(), openblas_get_corename());
    return buf;
}

#else /* the fallback for builds without OpenBLAS */

/* C += alpha * A' B' over one block, A' and B' already materialised row-major. */
void ud_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc)
{
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        if (beta == 0.0f)
            memset(c, 0, sizeof(float) * (size_t)N);
        else if (beta != 1.0f)
            for (int j = 0; j < N; j++)
                c[j] *= beta;
    }
    enum { KB = 256, NB = 512 };
    for (int k0 = 0; k0 < K; k0 += KB) {
        int k1 = k0 + KB < K ? k0 + KB : K;
        for (int j0 = 0; j0 < N; j0 += NB) {
            int j1 = j0 + NB < N ? j0 + NB : N;
            for (int i = 0; i < M; i++) {
                float *restrict c = C + (size_t)i * ldc;
                for (int k = k0; k < k1; k++) {
                    float a = alpha * (trans_a ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k]);
                    if (a == 0.0f)
                        continue;
                    if (!trans_b) {
                        const float *restrict b = B + (size_t)k * ldb;
                        for (int j = j0; j < j1; j++)
                            c[j] += a * b[j];
                    } else {
                        for (int j = j0; j < j1; j++)
                            c[j] += a * B[(size_t)j * ldb + k];
                    }
                }
            }
        }
    }
}

int ud_kernels_set_threads(int n)
{
    (void)n;
    return 1;
}

const char *ud_kernels_describe(void)
{
    return "reference C kernels (built without OpenBLAS)";
}
#endif
