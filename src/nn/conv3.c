/*
 * conv3.c: 3x3 convolutions of stride 1 and padding 1 over planes whose rows
 * are whole AVX-512 vectors (W a multiple of 16: the 32x32 and 16x16 stages
 * of the CIFAR networks) or half ones (W = 8), computed directly rather than
 * through GEMMs.
 *
 * The GEMM paths of layers.c copy each input plane once per kernel column,
 * shifted, so that a BLAS product can read the columns, and transpose the
 * input for the weight gradient; at these shapes those passes, and the small
 * products' own losses, cost a fifth of the time (ResNet20's 16-channel
 * 32x32 convolution over a batch of 128, forward and backward: 15.7 ms on
 * the GEMM path, 12.9 ms here; a ResNet20 step about 9 % less). Here each
 * sample's planes are copied once into slots with zero rows above and below
 * (the padding) and every shifted window is read from there in place: kernel
 * row kh is a pointer (kh-1)*W floats away, and kernel column kw a shift by
 * one lane (valignd) of two aligned vectors, with the lane that would wrap
 * into the neighbouring row masked to zero.
 *
 * forward: tiles of MR output channels by NV vectors of positions, the
 *   accumulators held in registers over every input channel and tap;
 * input gradient: the same kernel over the output gradient with the flipped
 *   filters (the padding of the flipped geometry is 1 again);
 * weight gradient: for DR output channels and one input channel, the
 *   products of the nine taps summed lane by lane over the positions of a
 *   chunk of samples, then across the lanes; the next chunk's planes are
 *   fetched into cache meanwhile.
 *
 * Rows of 8 (the 8x8 stage) hold two rows to a vector, so every window is a
 * lane shift (window8); their forward runs here, 12 % faster than on the
 * GEMM path, but their weight gradient, with eight shifts for every 18
 * multiply-adds, would run slower than there, so their backward stays on
 * the GEMM path.
 *
 * Bits: every sum runs in an order fixed by the shape alone. The kernels
 * run where OpenBLAS runs its own AVX-512 kernels, so that the
 * OPENBLAS_CORETYPE a mixed cluster sets for equal bits everywhere (README)
 * turns them off as well; MIAGRID_CONV=direct runs them on any AVX-512 CPU,
 * MIAGRID_CONV=gemm never.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <string.h>

#include "nn/conv3.h"
#include "nn/gemm.h"
#include "nn/nn_internal.h"

#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MG_CONV3_X86 1
#include <immintrin.h>
#endif

/* Tiles of MR channels by NV vectors of VL positions (forward, input
 * gradient) and of DR output channels by the 9 taps (weight gradient); a
 * backward chunk holds the slots of as many samples as fit in CHUNK_FLOATS. */
enum { MR = 8, NV = 2, VL = 16, DR = 2, CHUNK_FLOATS = 128 * 1024 };

static int shape_ok(const mg_conv2d_shape *s)
{
    return s->stride == 1 && s->KH == 3 && s->KW == 3 && s->pad == 1 && s->groups <= 1 &&
           (s->W % VL == 0 || s->W == VL / 2) && (s->H * s->W) % (NV * VL) == 0 && s->OH == s->H && s->OW == s->W &&
           s->N > 0 && s->C > 0 && s->OC > 0;
}

/* The slot of one plane: at least W + VL zeros, the plane, as many zeros;
 * the plane starts at front(s), a whole number of vectors in. */
static size_t front(const mg_conv2d_shape *s)
{
    return ((size_t)s->W + 2 * VL - 1) / VL * VL;
}

static size_t slot(const mg_conv2d_shape *s)
{
    return (size_t)s->H * s->W + 2 * front(s);
}

static int blocks(int n)
{
    return (n + MR - 1) / MR;
}

/* Floats of packed weights for rows outputs of K channels, rounded up to a
 * whole vector so that the slots after them start aligned. */
static size_t packed(int rows, int K)
{
    return ((size_t)blocks(rows) * MR * K * 9 + VL - 1) / VL * VL;
}

/* Samples per backward chunk: their input and output-gradient slots. */
static int chunk_samples(const mg_conv2d_shape *s)
{
    const size_t per = ((size_t)s->C + (size_t)blocks(s->OC) * MR) * slot(s);
    size_t n = CHUNK_FLOATS / per;
    if (n < 1)
        n = 1;
    if (n > (size_t)s->N)
        n = (size_t)s->N;
    return (int)n;
}

size_t mg_conv3_scratch(const mg_conv2d_shape *s)
{
    if (!shape_ok(s))
        return 0;
    const size_t L = slot(s), C = (size_t)s->C;
    const size_t fwd = packed(s->OC, s->C) + C * L;
    if (s->W % VL != 0) /* the forward only */
        return fwd + VL;
    const size_t bwd = packed(s->C, s->OC) + (size_t)chunk_samples(s) * (C + (size_t)blocks(s->OC) * MR) * L;
    return (fwd > bwd ? fwd : bwd) + VL; /* + VL: alignment */
}

#ifdef MG_CONV3_X86

#define TGT __attribute__((target("avx512f")))
#define INL __attribute__((always_inline)) inline

/* wp[((b*K + k)*9 + t)*MR + i] = the weight of output row r = b*MR+i (0 for
 * r >= rows) against input channel k at tap t: w[r][k][t], or with flip (the
 * input gradient's filters, rows the input channels, K the output channels)
 * w[k][r][8-t]. */
static void pack(float *wp, const float *w, int rows, int K, int flip)
{
    const int C = flip ? rows : K; /* w is (OC, C, 3, 3) */
    for (int b = 0; b < blocks(rows); b++)
        for (int k = 0; k < K; k++)
            for (int t = 0; t < 9; t++)
                for (int i = 0; i < MR; i++) {
                    const int r = b * MR + i;
                    float v = 0.0f;
                    if (r < rows)
                        v = flip ? w[((size_t)k * C + r) * 9 + (8 - t)] : w[((size_t)r * C + k) * 9 + t];
                    wp[(((size_t)b * K + k) * 9 + t) * MR + i] = v;
                }
}

static float *aligned(float *p)
{
    return (float *)(((uintptr_t)p + 63) & ~(uintptr_t)63);
}

/* Zero the pads of n slots from base. */
static void zero_pads(float *base, size_t n, const mg_conv2d_shape *s)
{
    const size_t L = slot(s), F = front(s), P = (size_t)s->H * s->W;
    for (size_t j = 0; j < n; j++) {
        memset(base + j * L, 0, F * sizeof(float));
        memset(base + j * L + F + P, 0, F * sizeof(float));
    }
}

/* The masks of the vector at column col of a row of W: kernel column 0 reads
 * nothing left of column 0, kernel column 2 nothing right of column W-1. */
static inline __mmask16 mask_left(int col)
{
    return col == 0 ? (__mmask16)0xFFFE : (__mmask16)0xFFFF;
}

static inline __mmask16 mask_right(int col, int W)
{
    return col == W - VL ? (__mmask16)0x7FFF : (__mmask16)0xFFFF;
}

/* shifted left by one lane (the window of kernel column 0) and right (column 2). */
static INL TGT __m512 lane_prev(__mmask16 m, __m512 cur, __m512 prev)
{
    return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m, _mm512_castps_si512(cur), _mm512_castps_si512(prev), 15));
}

static INL TGT __m512 lane_next(__mmask16 m, __m512 next, __m512 cur)
{
    return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m, _mm512_castps_si512(next), _mm512_castps_si512(cur), 1));
}

/* The end of a tile: out[i][p0 + q] = relu?(bias[i] + (add ? out : 0) +
 * acc[i]) for i < mr. */
static INL TGT void store_tile(float *out, size_t osc, int mr, __m512 acc[MR][NV], int p0, const float *bias, int relu,
                               int add)
{
    for (int i = 0; i < mr; i++)
        for (int v = 0; v < NV; v++) {
            float *o = out + (size_t)i * osc + p0 + v * VL;
            __m512 y = acc[i][v];
            if (bias)
                y = _mm512_add_ps(y, _mm512_set1_ps(bias[i]));
            if (add)
                y = _mm512_add_ps(_mm512_loadu_ps(o), y);
            if (relu)
                y = _mm512_max_ps(y, _mm512_setzero_ps());
            _mm512_storeu_ps(o, y);
        }
}

/* Rows of 8 (the 8x8 stage): a vector holds two rows, so every window,
 * the kernel rows' included, is a lane shift of the vector (cur) and the one
 * before (prev) or after (next) it: window t = kh*3 + kw reads the position
 * (kh-1)*8 + kw-1 away; lanes at column 0 (kw = 0) or 7 (kw = 2) read
 * the padding, zero. */
static INL TGT __m512 window8(int t, __m512 prev, __m512 cur, __m512 next)
{
    const __m512i p = _mm512_castps_si512(prev), c = _mm512_castps_si512(cur), n = _mm512_castps_si512(next);
    const __mmask16 m0 = 0xFEFE, m2 = 0x7F7F;
    switch (t) {
    case 0:
        return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m0, c, p, 7));
    case 1:
        return _mm512_castsi512_ps(_mm512_alignr_epi32(c, p, 8));
    case 2:
        return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m2, c, p, 9));
    case 3:
        return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m0, c, p, 15));
    case 4:
        return cur;
    case 5:
        return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m2, n, c, 1));
    case 6:
        return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m0, n, c, 7));
    case 7:
        return _mm512_castsi512_ps(_mm512_alignr_epi32(n, c, 8));
    default:
        return _mm512_castsi512_ps(_mm512_maskz_alignr_epi32(m2, n, c, 9));
    }
}

/* acc[i][v] += wt[i] * x[v]: one tap of a tile. */
static INL TGT void tile_tap(__m512 acc[MR][NV], const __m512 x[NV], const float *wt)
{
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++) {
        const __m512 wi = _mm512_set1_ps(wt[i]);
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = _mm512_fmadd_ps(wi, x[v], acc[i][v]);
    }
}

/* out[i][p0 + q] (rows osc apart, i < mr; q < NV*VL) = relu?(bias[i] +
 * (add ? out : 0) + sum over k < K, taps t of wk[(k*9 + t)*MR + i] *
 * window t of plane k at p0), plane k at src + k*L (its slot's plane).
 * rows8: W is 8 (a constant at each call, so that one loop remains). */
static INL TGT void tile(float *out, size_t osc, int mr, const float *src, size_t L, int K, int W, int rows8,
                         const float *wk, int p0, const float *bias, int relu, int add)
{
    __mmask16 m0[NV], m2[NV];
    for (int v = 0; v < NV; v++) {
        const int col = (p0 + v * VL) % W;
        m0[v] = mask_left(col);
        m2[v] = mask_right(col, W);
    }
    __m512 acc[MR][NV];
#pragma GCC unroll 8
    for (int i = 0; i < MR; i++)
#pragma GCC unroll 4
        for (int v = 0; v < NV; v++)
            acc[i][v] = _mm512_setzero_ps();
    for (int k = 0; k < K; k++, wk += 9 * MR) {
        const float *plane = src + (size_t)k * L + p0;
        __m512 a[NV + 2], x[NV];
        if (rows8) {
#pragma GCC unroll 4
            for (int v = 0; v < NV + 2; v++)
                a[v] = _mm512_load_ps(plane + (v - 1) * VL);
#pragma GCC unroll 9
            for (int t = 0; t < 9; t++) {
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    x[v] = window8(t, a[v], a[v + 1], a[v + 2]);
                tile_tap(acc, x, wk + t * MR);
            }
            continue;
        }
#pragma GCC unroll 3
        for (int kh = 0; kh < 3; kh++) {
            const float *r = plane + (ptrdiff_t)(kh - 1) * W;
#pragma GCC unroll 4
            for (int v = 0; v < NV + 2; v++)
                a[v] = _mm512_load_ps(r + (v - 1) * VL);
#pragma GCC unroll 3
            for (int kw = 0; kw < 3; kw++) {
#pragma GCC unroll 4
                for (int v = 0; v < NV; v++)
                    x[v] = kw == 0   ? lane_prev(m0[v], a[v + 1], a[v])
                           : kw == 1 ? a[v + 1]
                                     : lane_next(m2[v], a[v + 2], a[v + 1]);
                tile_tap(acc, x, wk + (kh * 3 + kw) * MR);
            }
        }
    }
    store_tile(out, osc, mr, acc, p0, bias, relu, add);
}

/* The planes a coming copy will read (up to two tensors: channels planes
 * of each of samples samples), fetched a few cache lines at a time while
 * the present sample or chunk computes, so that the copy finds them in L2
 * rather than waiting on memory plane after plane. */
typedef struct {
    const float *base[2];
    size_t sn[2], sc[2];
    int channels[2], tensors, samples, lines; /* lines per plane */
    int t, j, c, l;                           /* the next line */
} ahead;

/* Nothing yet to fetch, for samples samples of planes of lines lines. */
static ahead ahead_of(int samples, int lines)
{
    ahead a;
    memset(&a, 0, sizeof a);
    a.samples = samples;
    a.lines = lines;
    return a;
}

static void ahead_add(ahead *a, const float *base, mg_layout lay, int channels)
{
    a->base[a->tensors] = base;
    a->sn[a->tensors] = lay.sn;
    a->sc[a->tensors] = lay.sc;
    a->channels[a->tensors] = channels;
    a->tensors++;
}

/* Lines in all. */
static size_t ahead_total(const ahead *a)
{
    size_t n = 0;
    for (int t = 0; t < a->tensors; t++)
        n += (size_t)a->channels[t] * a->samples * a->lines;
    return n;
}

static void ahead_fetch(ahead *a, int count)
{
    for (; count > 0 && a->t < a->tensors; count--) {
        _mm_prefetch(
            (const char *)(a->base[a->t] + (size_t)a->j * a->sn[a->t] + (size_t)a->c * a->sc[a->t] + (size_t)a->l * VL),
            _MM_HINT_T1);
        if (++a->l < a->lines)
            continue;
        a->l = 0;
        if (++a->c < a->channels[a->t])
            continue;
        a->c = 0;
        if (++a->j < a->samples)
            continue;
        a->j = 0;
        a->t++;
    }
}

/* rows (outputs) of one sample: out channel r at out + r*osc, r < rows, from
 * the K planes of src (slots L apart) through packed weights wp. */
static TGT void sample_conv(float *out, size_t osc, int rows, const float *src, size_t L, int K, int P, int W,
                            const float *wp, const float *bias, int relu, int add, ahead *next)
{
    const int tiles = blocks(rows) * (P / (NV * VL));
    const int per = (int)((ahead_total(next) + (size_t)tiles - 1) / (size_t)tiles);
    for (int b = 0; b < blocks(rows); b++) {
        const int mr = rows - b * MR < MR ? rows - b * MR : MR;
        for (int p0 = 0; p0 < P; p0 += NV * VL) {
            ahead_fetch(next, per);
            float *o = out + (size_t)b * MR * osc;
            const float *wk = wp + (size_t)b * K * 9 * MR, *bb = bias ? bias + b * MR : NULL;
            if (W == VL / 2)
                tile(o, osc, mr, src, L, K, VL / 2, 1, wk, p0, bb, relu, add);
            else
                tile(o, osc, mr, src, L, K, W, 0, wk, p0, bb, relu, add);
        }
    }
}

/* dw[i*C9 + t] += sum over samples j < ns and positions p of d_j[i][p] *
 * window t of x_j at p, for i < mr (at most DR) and the 9 taps t: x_j the
 * plane at xs + j*xstep, d_j[i] the planes at ds + j*dstep + i*L. */
static TGT void dw_tile(float *dw, size_t C9, int mr, const float *xs, size_t xstep, const float *ds, size_t dstep,
                        size_t L, int ns, int P, int W)
{
    __m512 acc[DR][9];
#pragma GCC unroll 4
    for (int i = 0; i < DR; i++)
#pragma GCC unroll 9
        for (int t = 0; t < 9; t++)
            acc[i][t] = _mm512_setzero_ps();
    for (int j = 0; j < ns; j++) {
        const float *x = xs + (size_t)j * xstep, *d = ds + (size_t)j * dstep;
        int col = 0;
        for (int p = 0; p < P; p += VL) {
            const __mmask16 m0 = mask_left(col), m2 = mask_right(col, W);
            __m512 g[DR];
#pragma GCC unroll 4
            for (int i = 0; i < DR; i++)
                g[i] = _mm512_load_ps(d + (size_t)i * L + p);
#pragma GCC unroll 3
            for (int kh = 0; kh < 3; kh++) {
                const float *r = x + p + (ptrdiff_t)(kh - 1) * W;
                const __m512 prev = _mm512_load_ps(r - VL), cur = _mm512_load_ps(r), next = _mm512_load_ps(r + VL);
                const __m512 x0 = lane_prev(m0, cur, prev), x2 = lane_next(m2, next, cur);
#pragma GCC unroll 4
                for (int i = 0; i < DR; i++) {
                    acc[i][kh * 3] = _mm512_fmadd_ps(g[i], x0, acc[i][kh * 3]);
                    acc[i][kh * 3 + 1] = _mm512_fmadd_ps(g[i], cur, acc[i][kh * 3 + 1]);
                    acc[i][kh * 3 + 2] = _mm512_fmadd_ps(g[i], x2, acc[i][kh * 3 + 2]);
                }
            }
            col = col + VL == W ? 0 : col + VL;
        }
    }
    for (int i = 0; i < mr; i++)
        for (int t = 0; t < 9; t++)
            dw[(size_t)i * C9 + t] += _mm512_reduce_add_ps(acc[i][t]);
}

/* MIAGRID_CONV=auto (the default): on an AVX-512 CPU whose OpenBLAS runs its
 * AVX-512 kernels; direct: on any AVX-512 CPU; gemm: never. */
static int choose(void)
{
    const int mode = mg_env_mode("MIAGRID_CONV", "direct", "gemm");
    if (mode == 0)
        return 0;
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("avx512f"))
        return 0;
    return mode == 1 || mg_blas_runs_avx512();
}

static int active = -1;

#endif /* MG_CONV3_X86 */

int mg_conv3_active(void)
{
#ifdef MG_CONV3_X86
    if (active < 0)
        active = choose();
    return active;
#else
    return 0;
#endif
}

int mg_conv3_ok(const mg_conv2d_shape *s)
{
    return shape_ok(s) && mg_conv3_active();
}

int mg_conv3_backward_ok(const mg_conv2d_shape *s)
{
    return mg_conv3_ok(s) && s->W % VL == 0;
}

int mg_conv3_forward(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w, const float *b,
                     const mg_conv2d_shape *s, float *scratch, int act, double *sums)
{
#ifdef MG_CONV3_X86
    const int C = s->C, OC = s->OC, P = s->H * s->W;
    const size_t L = slot(s), F = front(s);
    if (sums && !mg_bn_sums_by_plane(P))
        sums = NULL;
    float *wp = aligned(scratch), *buf = wp + packed(OC, C);
    pack(wp, w, OC, C, 0);
    zero_pads(buf, (size_t)C, s);
    for (int n = 0; n < s->N; n++) {
        for (int c = 0; c < C; c++)
            memcpy(buf + (size_t)c * L + F, inp + (size_t)n * li.sn + (size_t)c * li.sc, (size_t)P * sizeof(float));
        float *on = out + (size_t)n * lo.sn;
        ahead next = ahead_of(1, P / VL);
        if (n + 1 < s->N)
            ahead_add(&next, inp + (size_t)(n + 1) * li.sn, li, C);
        sample_conv(on, lo.sc, OC, buf + F, L, C, P, s->W, wp, b, act == MG_ACT_RELU, 0, &next);
        for (int oc = 0; sums && oc < OC; oc++)
            mg_bn_plane_sums(sums + 3 * (size_t)oc, on + (size_t)oc * lo.sc, P, n == 0);
    }
    return sums != NULL;
#else
    (void)out, (void)lo, (void)inp, (void)li, (void)w, (void)b, (void)s, (void)scratch, (void)act, (void)sums;
    return 0;
#endif
}

void mg_conv3_backward(float *dinp, mg_layout li, int overwrite, float *dw, const float *dout, mg_layout lo,
                       const float *inp, const float *w, const mg_conv2d_shape *s, float *scratch)
{
#ifdef MG_CONV3_X86
    const int C = s->C, OC = s->OC, OCp = blocks(OC) * MR, P = s->H * s->W, S = chunk_samples(s);
    const size_t L = slot(s), F = front(s), C9 = (size_t)C * 9;
    float *wf = aligned(scratch), *xb = wf + packed(C, OC), *db = xb + (size_t)S * C * L;
    if (dinp)
        pack(wf, w, C, OC, 1);
    zero_pads(xb, (size_t)S * C, s);
    zero_pads(db, (size_t)S * OCp, s);
    /* The slots of channels OC .. OCp-1 stay zero: dw_tile reads whole blocks. */
    for (int j = 0; j < S; j++)
        for (int oc = OC; oc < OCp; oc++)
            memset(db + ((size_t)j * OCp + oc) * L + F, 0, (size_t)P * sizeof(float));
    for (int n0 = 0; n0 < s->N; n0 += S) {
        const int ns = s->N - n0 < S ? s->N - n0 : S;
        for (int j = 0; j < ns; j++) {
            const size_t n = (size_t)(n0 + j);
            for (int c = 0; c < C; c++)
                memcpy(xb + ((size_t)j * C + c) * L + F, inp + n * li.sn + (size_t)c * li.sc,
                       (size_t)P * sizeof(float));
            for (int oc = 0; oc < OC; oc++)
                memcpy(db + ((size_t)j * OCp + oc) * L + F, dout + n * lo.sn + (size_t)oc * lo.sc,
                       (size_t)P * sizeof(float));
        }
        /* The next chunk's planes are fetched while this one computes. */
        ahead next = ahead_of(s->N - n0 - ns < S ? s->N - n0 - ns : S, P / VL);
        if (n0 + ns < s->N) {
            ahead_add(&next, inp + (size_t)(n0 + ns) * li.sn, li, C);
            ahead_add(&next, dout + (size_t)(n0 + ns) * lo.sn, lo, OC);
        }
        ahead none = ahead_of(0, 0);
        for (int j = 0; dinp && j < ns; j++)
            sample_conv(dinp + (size_t)(n0 + j) * li.sn, li.sc, C, db + (size_t)j * OCp * L + F, L, OC, P, s->W, wf,
                        NULL, 0, !overwrite, &none);
        const int calls = (OC + DR - 1) / DR * C, per = (int)((ahead_total(&next) + (size_t)calls - 1) / (size_t)calls);
        for (int o = 0; o < OC; o += DR)
            for (int c = 0; c < C; c++) {
                ahead_fetch(&next, per);
                dw_tile(dw + ((size_t)o * C + c) * 9, C9, OC - o < DR ? OC - o : DR, xb + (size_t)c * L + F,
                        (size_t)C * L, db + (size_t)o * L + F, (size_t)OCp * L, L, ns, P, s->W);
            }
    }
#else
    (void)dinp, (void)li, (void)overwrite, (void)dw, (void)dout, (void)lo, (void)inp, (void)w, (void)s, (void)scratch;
#endif
}
