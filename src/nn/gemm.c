/*
 * gemm.c: single-precision matrix products of the convolution and linear
 * layers. Large products go to the BLAS. Small ones (up to SMALL_MACS
 * multiply-adds, the shapes of small networks and of the convolutions' chunks)
 * run here on a register-tiled kernel that reads both operands in place:
 * OpenBLAS 0.3.21 packs both operands of every product unless its core has
 * small-matrix kernels (only its AVX-512 cores do), and at these shapes the
 * copies cost as much as a fifth of the product.
 *
 * The kernel is compiled for AVX2 with FMA and chosen at run time when the
 * CPU has them; where it would race OpenBLAS's own AVX-512 small-matrix
 * kernels (an AVX-512 CPU whose OpenBLAS runs its AVX-512 kernels), OpenBLAS
 * keeps the product. MIAGRID_GEMM=blas sends every product to the BLAS,
 * MIAGRID_GEMM=own the small ones to the kernel here on any AVX2 CPU.
 * Either way a product's bits depend only on its shape, its operands and
 * the choice, which is made once per process from the CPU and OpenBLAS's
 * core: a node gives the same bits on every rank of one machine type.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <cblas.h>

#include "nn/gemm.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MG_GEMM_X86 1
#include <immintrin.h>
#endif

/* Products up to this many multiply-adds run on the kernel here. */
enum { SMALL_MACS = 4000000 };
/* A B^T products run here while their output has at most this many floats. */
enum { NT_MAX_OUT = 1200 };

static void blas(int transa, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc)
{
    cblas_sgemm(CblasRowMajor, transa ? CblasTrans : CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C,
                ldc);
}

#ifdef MG_GEMM_X86

/* Sanitized builds: ASan's check of each load and store (and UBSan's of
 * each address computed) made these kernels most of the sanitized test
 * suite's time, so they run uninstrumented, and the rows of the operands a
 * product reads and writes are checked once, before it runs (rows_checked):
 * a bad operand is still reported by ASan, at its first bad byte. */
#if defined(__SANITIZE_ADDRESS__)
#define MG_GEMM_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define MG_GEMM_ASAN 1
#endif
#endif
#ifdef MG_GEMM_ASAN
#include <sanitizer/asan_interface.h>
#define NOSAN __attribute__((no_sanitize("address", "undefined")))

/* rows rows of cols floats, ld apart, from p: a poisoned byte among them is
 * read through an instrumented load, which makes ASan report it. */
static void rows_checked(const float *p, size_t ld, int rows, int cols)
{
    for (int r = 0; r < rows && cols > 0; r++) {
        const char *bad = __asan_region_is_poisoned((void *)(p + (size_t)r * ld), (size_t)cols * sizeof(float));
        if (bad)
            (void)*(volatile const char *)bad;
    }
}
#else
#define NOSAN
#endif

#define TGT __attribute__((target("avx2,fma"))) NOSAN
#define INL __attribute__((always_inline)) inline

/* Tiles of MR rows by 16 columns (two vectors of 8): 12 accumulators, two
 * vectors of B and a broadcast of A per step of k. */
enum { MR = 6, NR = 16, KC = 384 };

/* C[0..mr)[0..16) (ldc) = beta C + sum_k a(i,k) B[k][0..16), a(i,k) =
 * A[i*rsa + k*csa]; beta is 0 (C is written) or 1. With masks m0, m1, only
 * the lanes they select are read from B and written to C. */
static INL TGT void tile(int mr, int masked, __m256i m0, __m256i m1, int K, const float *A, size_t rsa, size_t csa,
                         const float *B, size_t ldb, int acc, float *C, size_t ldc)
{
    __m256 c[MR][2];
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
        c[i][0] = c[i][1] = _mm256_setzero_ps();
    for (int k = 0; k < K; k++) {
        const float *b = B + (size_t)k * ldb;
        const __m256 b0 = masked ? _mm256_maskload_ps(b, m0) : _mm256_loadu_ps(b);
        const __m256 b1 = masked ? _mm256_maskload_ps(b + 8, m1) : _mm256_loadu_ps(b + 8);
        const float *a = A + (size_t)k * csa;
#pragma GCC unroll 6
        for (int i = 0; i < MR; i++)
            if (i < mr) {
                const __m256 ai = _mm256_broadcast_ss(a + (size_t)i * rsa);
                c[i][0] = _mm256_fmadd_ps(ai, b0, c[i][0]);
                c[i][1] = _mm256_fmadd_ps(ai, b1, c[i][1]);
            }
    }
#pragma GCC unroll 6
    for (int i = 0; i < MR; i++)
        if (i < mr) {
            float *ci = C + (size_t)i * ldc;
            if (masked) {
                if (acc) {
                    c[i][0] = _mm256_add_ps(c[i][0], _mm256_maskload_ps(ci, m0));
                    c[i][1] = _mm256_add_ps(c[i][1], _mm256_maskload_ps(ci + 8, m1));
                }
                _mm256_maskstore_ps(ci, m0, c[i][0]);
                _mm256_maskstore_ps(ci + 8, m1, c[i][1]);
            } else {
                if (acc) {
                    c[i][0] = _mm256_add_ps(c[i][0], _mm256_loadu_ps(ci));
                    c[i][1] = _mm256_add_ps(c[i][1], _mm256_loadu_ps(ci + 8));
                }
                _mm256_storeu_ps(ci, c[i][0]);
                _mm256_storeu_ps(ci + 8, c[i][1]);
            }
        }
}

/* One column block of 16 (or fewer, masked) over all rows, for a block of k. */
static INL TGT void col_block(int masked, __m256i m0, __m256i m1, int M, int K, const float *A, size_t rsa, size_t csa,
                              const float *B, size_t ldb, int acc, float *C, size_t ldc)
{
    int i = 0;
    for (; i + MR <= M; i += MR)
        tile(MR, masked, m0, m1, K, A + (size_t)i * rsa, rsa, csa, B, ldb, acc, C + (size_t)i * ldc, ldc);
    const float *Ai = A + (size_t)i * rsa;
    float *Ci = C + (size_t)i * ldc;
    switch (M - i) {
    case 5: tile(5, masked, m0, m1, K, Ai, rsa, csa, B, ldb, acc, Ci, ldc); break;
    case 4: tile(4, masked, m0, m1, K, Ai, rsa, csa, B, ldb, acc, Ci, ldc); break;
    case 3: tile(3, masked, m0, m1, K, Ai, rsa, csa, B, ldb, acc, Ci, ldc); break;
    case 2: tile(2, masked, m0, m1, K, Ai, rsa, csa, B, ldb, acc, Ci, ldc); break;
    case 1: tile(1, masked, m0, m1, K, Ai, rsa, csa, B, ldb, acc, Ci, ldc); break;
    default: break;
    }
}

static TGT void gemm_avx2(int transa, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta,
                          float *C, int ldc)
{
#ifdef MG_GEMM_ASAN
    rows_checked(A, (size_t)lda, transa ? K : M, transa ? M : K);
    rows_checked(B, (size_t)ldb, K, N);
    rows_checked(C, (size_t)ldc, M, N);
#endif
    const size_t rsa = transa ? 1 : (size_t)lda, csa = transa ? (size_t)lda : 1;
    const __m256i none = _mm256_setzero_si256();
    /* Blocks of k keep a column block of B (KC x 16) in the first-level
     * cache while every row of A passes over it; the first block applies
     * beta, the rest accumulate. */
    for (int k0 = 0; k0 < K || k0 == 0; k0 += KC) {
        const int kc = K - k0 < KC ? K - k0 : KC;
        const int acc = k0 > 0 || beta != 0.0f;
        const float *Ak = A + (size_t)k0 * csa, *Bk = B + (size_t)k0 * ldb;
        int j = 0;
        for (; j + NR <= N; j += NR)
            col_block(0, none, none, M, kc, Ak, rsa, csa, Bk + j, (size_t)ldb, acc, C + j, (size_t)ldc);
        if (j < N) {
            int32_t lane[NR];
            for (int l = 0; l < NR; l++)
                lane[l] = j + l < N ? -1 : 0;
            const __m256i m0 = _mm256_loadu_si256((const __m256i *)lane);
            const __m256i m1 = _mm256_loadu_si256((const __m256i *)(lane + 8));
            col_block(1, m0, m1, M, kc, Ak, rsa, csa, Bk + j, (size_t)ldb, acc, C + j, (size_t)ldc);
        }
        if (K == 0)
            break;
    }
}

/* The A B^T form as dot products over k, eight at a time: tiles of 4 rows of
 * A by 3 rows of B (12 accumulators, 7 loads per 12 multiply-adds), each
 * accumulator summed across its lanes at the end. */
enum { MRT = 4, NRT = 3 };

static INL TGT float hsum(__m256 v)
{
    const __m128 q = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    const __m128 d = _mm_add_ps(q, _mm_movehl_ps(q, q));
    return _mm_cvtss_f32(_mm_add_ss(d, _mm_movehdup_ps(d)));
}

/* acc[i][j] += a(i) b(j) over one step of eight k, masked in the tail. */
#define NT_STEP(LOAD)                                                                                                  \
    do {                                                                                                               \
        __m256 a[MRT], b[NRT];                                                                                         \
        _Pragma("GCC unroll 4") for (int i = 0; i < MRT; i++) if (i < mr) a[i] = LOAD(A + i * lda + k);               \
        _Pragma("GCC unroll 3") for (int j = 0; j < NRT; j++) if (j < nr) b[j] = LOAD(B + j * ldb + k);               \
        _Pragma("GCC unroll 4") for (int i = 0; i < MRT; i++) _Pragma("GCC unroll 3") for (int j = 0; j < NRT; j++)   \
            if (i < mr && j < nr) c[i][j] = _mm256_fmadd_ps(a[i], b[j], c[i][j]);                                      \
    } while (0)

static INL TGT void tile_nt(int mr, int nr, int K, __m256i tail, const float *A, size_t lda, const float *B, size_t ldb,
                            int acc, float *C, size_t ldc)
{
    __m256 c[MRT][NRT];
#pragma GCC unroll 4
    for (int i = 0; i < MRT; i++)
#pragma GCC unroll 3
        for (int j = 0; j < NRT; j++)
            c[i][j] = _mm256_setzero_ps();
    int k = 0;
#define LOADU(p) _mm256_loadu_ps(p)
#define LOADM(p) _mm256_maskload_ps(p, tail)
    for (; k + 8 <= K; k += 8)
        NT_STEP(LOADU);
    if (k < K)
        NT_STEP(LOADM);
#undef LOADU
#undef LOADM
#pragma GCC unroll 4
    for (int i = 0; i < MRT; i++)
#pragma GCC unroll 3
        for (int j = 0; j < NRT; j++)
            if (i < mr && j < nr) {
                const float v = hsum(c[i][j]);
                C[i * ldc + j] = acc ? C[i * ldc + j] + v : v;
            }
}

#define TILE_NT(mr, nr) tile_nt(mr, nr, K, tail, Ai, lda, Bj, ldb, acc, Cij, ldc)

static TGT void gemm_nt_avx2(int M, int N, int K, const float *A, size_t lda, const float *B, size_t ldb, float beta,
                             float *C, size_t ldc)
{
#ifdef MG_GEMM_ASAN
    rows_checked(A, lda, M, K);
    rows_checked(B, ldb, N, K);
    rows_checked(C, ldc, M, N);
#endif
    int32_t lane[8];
    for (int l = 0; l < 8; l++)
        lane[l] = l < K % 8 ? -1 : 0;
    const __m256i tail = _mm256_loadu_si256((const __m256i *)lane);
    const int acc = beta != 0.0f;
    for (int i = 0; i < M; i += MRT) {
        const int mr = M - i < MRT ? M - i : MRT;
        const float *Ai = A + (size_t)i * lda;
        for (int j = 0; j < N; j += NRT) {
            const int nr = N - j < NRT ? N - j : NRT;
            const float *Bj = B + (size_t)j * ldb;
            float *Cij = C + (size_t)i * ldc + j;
            switch (mr * 4 + nr) {
            case 4 * 4 + 3: TILE_NT(4, 3); break;
            case 4 * 4 + 2: TILE_NT(4, 2); break;
            case 4 * 4 + 1: TILE_NT(4, 1); break;
            case 3 * 4 + 3: TILE_NT(3, 3); break;
            case 3 * 4 + 2: TILE_NT(3, 2); break;
            case 3 * 4 + 1: TILE_NT(3, 1); break;
            case 2 * 4 + 3: TILE_NT(2, 3); break;
            case 2 * 4 + 2: TILE_NT(2, 2); break;
            case 2 * 4 + 1: TILE_NT(2, 1); break;
            case 1 * 4 + 3: TILE_NT(1, 3); break;
            case 1 * 4 + 2: TILE_NT(1, 2); break;
            default: TILE_NT(1, 1); break;
            }
        }
    }
}

/* 1 where the kernel here runs the small products. MIAGRID_GEMM=auto (the
 * default): on an AVX2 CPU whose OpenBLAS does not run AVX-512 kernels
 * (those have small-matrix kernels of their own); own: on any AVX2 CPU;
 * blas: never. */
static int choose_kernel(void)
{
    const int mode = mg_env_mode("MIAGRID_GEMM", "own", "blas");
    if (mode == 0)
        return 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma"))
        return 0;
    return mode == 1 || !mg_blas_runs_avx512();
}

#endif /* MG_GEMM_X86 */

int mg_env_mode(const char *var, const char *on, const char *off)
{
    const char *e = getenv(var);
    if (!e || !*e || strcmp(e, "auto") == 0)
        return -1;
    if (strcmp(e, on) == 0)
        return 1;
    if (strcmp(e, off) == 0)
        return 0;
    fprintf(stderr, "miagrid: %s='%s' is not auto, %s or %s; using auto\n", var, e, on, off);
    return -1;
}

int mg_blas_runs_avx512(void)
{
    const char *core = openblas_get_corename();
    static const char *const avx512_cores[] = {"skylakex", "cooperlake", "sapphirerapids"};
    for (size_t i = 0; core && i < sizeof avx512_cores / sizeof avx512_cores[0]; i++)
        if (strcasecmp(core, avx512_cores[i]) == 0)
            return 1;
    return 0;
}

static int use_kernel = -1;

int mg_gemm_kernel_active(void)
{
#ifdef MG_GEMM_X86
    if (use_kernel < 0)
        use_kernel = choose_kernel();
    return use_kernel;
#else
    return 0;
#endif
}

void mg_gemm(int transa, int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C,
             int ldc)
{
    if (M <= 0 || N <= 0)
        return;
#ifdef MG_GEMM_X86
    if ((beta == 0.0f || beta == 1.0f) && (double)M * N * K <= SMALL_MACS && mg_gemm_kernel_active()) {
        gemm_avx2(transa, M, N, K, A, lda, B, ldb, beta, C, ldc);
        return;
    }
#endif
    blas(transa, M, N, K, A, lda, B, ldb, beta, C, ldc);
}

void mg_gemm_nt(int M, int N, int K, const float *A, int lda, const float *B, int ldb, float beta, float *C, int ldc)
{
    if (M <= 0 || N <= 0)
        return;
#ifdef MG_GEMM_X86
    /* Dot products pay off while the output is small (the weight gradients
     * of narrow layers); OpenBLAS's packed path is faster on wide ones. */
    if ((beta == 0.0f || beta == 1.0f) && (size_t)M * N <= NT_MAX_OUT && (double)M * N * K <= SMALL_MACS &&
        mg_gemm_kernel_active()) {
        gemm_nt_avx2(M, N, K, A, (size_t)lda, B, (size_t)ldb, beta, C, (size_t)ldc);
        return;
    }
#endif
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, M, N, K, 1.0f, A, lda, B, ldb, beta, C, ldc);
}
