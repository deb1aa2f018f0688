/*
 * gemm.h: the engine's matrix product, row-major with alpha 1:
 * C (M,N) = beta C + op(A) B, op(A) = A (M,K) or, with transa, A^T for A
 * (K,M); lda, ldb, ldc are leading dimensions. beta is 0 or 1 on the small
 * products' kernel; any value goes to the BLAS.
 */
#ifndef MIAGRID_NN_GEMM_H
#define MIAGRID_NN_GEMM_H

void mg_gemm(int transa, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C,
             int ldc);

/* C (M,N) = beta C + A B^T for A (M,K) and B (N,K). */
void mg_gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* The choice an environment variable var makes between auto, on and off:
 * -1 for auto (also unset, empty, or anything else, which is reported on
 * stderr), 1 for on, 0 for off. */
int mg_env_mode(const char *var, const char *on, const char *off);

/* 1 if OpenBLAS runs its AVX-512 kernels in this process. */
int mg_blas_runs_avx512(void);

/* 1 if small products run on the engine's own kernel in this process. */
int mg_gemm_kernel_active(void);

#endif
