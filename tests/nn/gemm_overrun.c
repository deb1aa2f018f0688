/* gemm_overrun.c (sanitized builds only): the engine's own GEMM kernels run
 * without ASan's per-access checks and check their operands' rows once per
 * product instead. Each run here hands one product an operand one float
 * short at its end (argv[1]: a, b or c of C = A B, ta for A read
 * transposed, nt for B read transposed) and must end in ASan's report of a
 * heap-buffer-overflow; tests/CMakeLists.txt checks for it. Exits 77 (skip)
 * where the kernel does not run (no AVX2). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/gemm.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: gemm_overrun a|b|c|ta|nt\n");
        return 2;
    }
    if (!mg_gemm_kernel_active()) {
        printf("the engine's kernel does not run on this CPU: skipped\n");
        return 77;
    }
    const char *form = argv[1];
    enum { M = 7, N = 19, K = 11 };
    /* Every operand dense (leading dimension = its columns); the chosen one
     * a float short. */
    const size_t na = (size_t)M * K - (strcmp(form, "a") == 0 || strcmp(form, "ta") == 0);
    const size_t nb = (size_t)K * N - (strcmp(form, "b") == 0 || strcmp(form, "nt") == 0);
    const size_t nc = (size_t)M * N - (strcmp(form, "c") == 0);
    float *A = calloc(na, sizeof(float)), *B = calloc(nb, sizeof(float)), *C = calloc(nc, sizeof(float));
    if (!A || !B || !C)
        return 1;
    if (strcmp(form, "nt") == 0)
        mg_gemm_nt(M, N, K, A, K, B, K, 0.0f, C, N);
    else if (strcmp(form, "ta") == 0)
        mg_gemm(1, M, N, K, A, M, B, N, 0.0f, C, N);
    else
        mg_gemm(0, M, N, K, A, K, B, N, 1.0f, C, N);
    printf("no report: the product ran over a short operand unseen\n");
    free(A);
    free(B);
    free(C);
    return 0;
}
