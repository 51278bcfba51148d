/*  ud_kernels.h — the dense linear algebra the layers are built on, and thread control.
 *
 *  ud_sgemm is row-major C = alpha * op(A) op(B) + beta * C. With UD_WITH_OPENBLAS it is
 *  OpenBLAS's cblas_sgemm; without it (small devices) a cache-blocked C kernel. The reference
 *  backend does not use it: its loops are deliberately naive so the two can be compared.
 */
#ifndef UD_KERNELS_H
#define UD_KERNELS_H

#include <stdbool.h>

#ifdef __cplusplus
extern "C" {
#endif

/* C (M, N) = alpha * op(A) (M, K) * op(B) (K, N) + beta * C; ld* are row strides. */
void ud_sgemm(bool trans_a, bool trans_b, int M, int N, int K, float alpha, const float *A, int lda,
              const float *B, int ldb, float beta, float *C, int ldc);

/* Sets the number of threads the BLAS may use (1 per rank in data-parallel runs). Process-wide:
 * call it from a program's main, not from library code. Returns the number now in effect. */
int ud_kernels_set_threads(int n);
/* "OpenBLAS 0.3.21 (Haswell)" or "reference C kernels"; static string. */
const char *ud_kernels_describe(void);

#ifdef __cplusplus
}
#endif
#endif
