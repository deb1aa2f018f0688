/* test_gemm.c: the engine's matrix products (src/nn/gemm.c) against a
 * double-precision reference, over shapes that take every edge of the
 * kernel's tiles (rows not a multiple of 6 or 4, columns not a multiple of
 * 16 or 3, k not a multiple of 8, k longer than a block of k), transposed A,
 * leading dimensions wider than the matrices, beta 0 and 1, and products too
 * large for the kernel. Floats around C that the product must not touch are
 * checked untouched. MIAGRID_GEMM=own makes the products run on the
 * engine's own kernel wherever the CPU has AVX2 and FMA; the test says
 * which ran. */
#define _POSIX_C_SOURCE 200809L
#include "mg_test.h"
#include "nn/gemm.h"

#include <stdint.h>

static float fill(mg_rng *rng)
{
    return (float)(mg_rng_uniform(rng) * 2.0 - 1.0);
}

/* C (M,N) = beta C + op(A) B, or with nt C = beta C + A B^T, for A, B and C
 * held with leading dimensions a few floats wider than needed. */
static void check_one(mg_rng *rng, int nt, int transa, int M, int N, int K, float beta)
{
    const int pad = 3;
    const int arows = transa ? K : M, acols = transa ? M : K, lda = acols + pad;
    const int brows = nt ? N : K, bcols = nt ? K : N, ldb = bcols + pad, ldc = N + pad;
    float *A = malloc(((size_t)arows * lda + 1) * sizeof(float));
    float *B = malloc(((size_t)brows * ldb + 1) * sizeof(float));
    float *C = malloc(((size_t)M * ldc + 1) * sizeof(float));
    float *C0 = malloc(((size_t)M * ldc + 1) * sizeof(float));
    for (size_t i = 0; i < (size_t)arows * lda; i++)
        A[i] = fill(rng);
    for (size_t i = 0; i < (size_t)brows * ldb; i++)
        B[i] = fill(rng);
    for (size_t i = 0; i < (size_t)M * ldc; i++)
        C[i] = C0[i] = fill(rng);
    if (nt)
        mg_gemm_nt(M, N, K, A, lda, B, ldb, beta, C, ldc);
    else
        mg_gemm(transa, M, N, K, A, lda, B, ldb, beta, C, ldc);
    double worst = 0.0;
    int untouched = 1;
    for (int i = 0; i < M; i++) {
        for (int j = 0; j < N; j++) {
            double acc = beta != 0.0f ? (double)C0[(size_t)i * ldc + j] : 0.0, mag = fabs(acc);
            for (int k = 0; k < K; k++) {
                const double a = transa ? A[(size_t)k * lda + i] : A[(size_t)i * lda + k];
                const double b = nt ? B[(size_t)j * ldb + k] : B[(size_t)k * ldb + j];
                acc += a * b;
                mag += fabs(a * b);
            }
            /* Float rounding of a sum of K products: a few ulps of the sum of magnitudes. */
            const double err = fabs((double)C[(size_t)i * ldc + j] - acc) / (mag * 1e-6 * (1 + K / 64.0) + 1e-30);
            if (err > worst)
                worst = err;
        }
        for (int j = N; j < ldc; j++)
            untouched &= C[(size_t)i * ldc + j] == C0[(size_t)i * ldc + j];
    }
    mg_test_checks_++;
    if (!(worst <= 1.0) || !untouched)
        MG_T_FAIL_("%s M=%d N=%d K=%d transa=%d beta=%g: error %.3g of the bound%s", nt ? "nt" : "nn", M, N, K, transa,
                   beta, worst, untouched ? "" : "; floats past N were written");
    free(A);
    free(B);
    free(C);
    free(C0);
}

int main(void)
{
    /* Set before the first product: the choice is made once per process. */
    if (!getenv("MIAGRID_GEMM"))
        setenv("MIAGRID_GEMM", "own", 1);
    mg_rng rng;
    mg_rng_seed(&rng, 5, "test_gemm", "main");
    printf("small products on the engine's kernel: %s\n", mg_gemm_kernel_active() ? "yes" : "no (the BLAS)");
    static const int Ms[] = {1, 2, 5, 6, 7, 12, 13, 25};
    static const int Ns[] = {1, 3, 6, 8, 15, 16, 17, 33};
    static const int Ks[] = {0, 1, 7, 8, 9, 150, 400, 1000};
    int cases = 0;
    for (size_t a = 0; a < sizeof Ms / sizeof *Ms; a++)
        for (size_t b = 0; b < sizeof Ns / sizeof *Ns; b++)
            for (size_t c = 0; c < sizeof Ks / sizeof *Ks; c++) {
                const int M = Ms[a], N = Ns[b], K = Ks[c];
                const float beta = (a + b + c) % 2 ? 1.0f : 0.0f;
                check_one(&rng, 0, 0, M, N, K, beta);
                check_one(&rng, 0, 1, M, N, K, 1.0f - beta);
                check_one(&rng, 1, 0, M, N, K, beta);
                cases += 3;
            }
    /* The shapes of LeNet-5's convolution chunks and of a product past the
     * kernel's size limit (the BLAS takes it). */
    check_one(&rng, 0, 0, 16, 416, 150, 0.0f);
    check_one(&rng, 0, 1, 150, 416, 16, 0.0f);
    check_one(&rng, 1, 0, 25, 6, 5242, 1.0f);
    check_one(&rng, 0, 0, 64, 256, 576, 1.0f);
    check_one(&rng, 1, 0, 64, 120, 400, 0.0f);
    printf("%d shapes checked\n", cases + 5);
    MG_TEST_MAIN_END();
}
