/*
 * layers.c: the layer kernels of the training engine. Each layer is a pure
 * forward/backward pair over caller-owned buffers; backward accumulates (+=)
 * into every gradient it is given, so the caller decides when to zero.
 * This file holds the GEMM-backed layers, linear and conv2d, and the max
 * pool, activations and losses of the first engine; pooling, normalisation,
 * attention and the other element-wise layers live in the other layers_*.c.
 *
 * conv2d runs im2col + sgemm over chunks of output positions sized so that
 * each GEMM stays on OpenBLAS's small-matrix kernels (chunk_target), with
 * the column buffer in cache and a scratch that does not grow with the
 * batch; with the model's channel-major layout a chunk runs across samples.
 * The input gradient of a stride-1 convolution is the convolution of the
 * output gradient with the flipped filters, whose im2col also yields the
 * weight gradient. Convolutions that keep the image size run by kernel
 * columns instead, building a third of the columns from shifted copies of
 * whole blocks of rows (conv_cols_forward); stride-2 3x3 ones (the
 * downsampling of ResNets) likewise over the even and odd rows and columns
 * of the input (conv_par_forward); depthwise convolutions run direct. A
 * fused ReLU or Tanh and the bias are applied to each chunk while it is in
 * cache. Where the direct AVX-512 kernels of conv3.c are active, they take
 * the 3x3 stride-1 convolutions over planes 8, 16 or a multiple of 16 wide
 * (the backward only for the latter) ahead of all of these.
 */
#include "miagrid/nn.h"
#include "nn/conv3.h"
#include "nn/gemm.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

#ifdef __SSE__
#include <xmmintrin.h>
#endif

/* ---- linear ------------------------------------------------------------------ */

/* o = act(o + b) over n floats (b may be NULL, act MG_NO_ACT, MG_ACT_RELU or
 * MG_ACT_TANH): the epilogue of a GEMM, run while its output is in cache. */
static void bias_act(float *restrict o, const float *restrict b, size_t n, int act)
{
    size_t i = 0;
    if (b && act == MG_ACT_RELU) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = mg_relu1(o[i + j] + b[i + j]);
        for (; i < n; i++)
            o[i] = mg_relu1(o[i] + b[i]);
    } else if (b && act == MG_ACT_TANH) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = mg_tanh1(o[i + j] + b[i + j]);
        for (; i < n; i++)
            o[i] = mg_tanh1(o[i] + b[i]);
    } else if (b) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = o[i + j] + b[i + j];
        for (; i < n; i++)
            o[i] = o[i] + b[i];
    } else if (act == MG_ACT_RELU) {
        mg_relu_forward(o, o, n);
    } else if (act == MG_ACT_TANH) {
        mg_tanh_forward(o, o, n);
    }
}

/* The same with one bias value for the whole row. */
static void bias1_act(float *restrict o, float b, size_t n, int act)
{
    size_t i = 0;
    if (act == MG_ACT_RELU) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = mg_relu1(o[i + j] + b);
        for (; i < n; i++)
            o[i] = mg_relu1(o[i] + b);
    } else if (act == MG_ACT_TANH) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = mg_tanh1(o[i + j] + b);
        for (; i < n; i++)
            o[i] = mg_tanh1(o[i] + b);
    } else {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = o[i + j] + b;
        for (; i < n; i++)
            o[i] = o[i] + b;
    }
}

/* out (N,O) = act(inp (N,I) @ w (O,I)^T + b (O)) */
void mg_linear_forward_act(float *out, const float *inp, const float *w, const float *b, int N, int I, int O,
                           int act)
{
    mg_gemm_nt(N, O, I, inp, I, w, I, 0.0f, out, O);
    if (!b && act == MG_NO_ACT)
        return;
    for (int n = 0; n < N; n++)
        bias_act(out + (size_t)n * O, b, (size_t)O, act);
}

/* out (N,O) = inp (N,I) @ w (O,I)^T + b (O) */
void mg_linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int I, int O)
{
    mg_linear_forward_act(out, inp, w, b, N, I, O, MG_NO_ACT);
}

/* dout (N,O), inp (N,I), w (O,I) */
void mg_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int N, int I, int O)
{
    if (dinp)
        mg_gemm(0, N, I, O, dout, O, w, I, 1.0f, dinp, I);
    mg_gemm(1, O, I, N, dout, O, inp, I, 1.0f, dw, I);
    if (db) {
        for (int n = 0; n < N; n++) {
            const float *row = dout + (size_t)n * O;
            for (int o = 0; o < O; o++)
                db[o] += row[o];
        }
    }
}

/* ---- conv2d ------------------------------------------------------------------- */

static int conv_groups(const mg_conv2d_shape *s)
{
    return s->groups > 1 ? s->groups : 1;
}

int mg_conv2d_shape_init(mg_conv2d_shape *s)
{
    int g = conv_groups(s);
    if (s->C < 1 || s->H < 1 || s->W < 1 || s->OC < 1 || s->KH < 1 || s->KW < 1 || s->stride < 1 ||
        s->pad < 0 || s->N < 0 || s->groups < 0 || s->C % g != 0 || s->OC % g != 0)
        return -1;
    int hp = s->H + 2 * s->pad, wp = s->W + 2 * s->pad;
    if (hp < s->KH || wp < s->KW)
        return -1;
    s->OH = (hp - s->KH) / s->stride + 1;
    s->OW = (wp - s->KW) / s->stride + 1;
    return 0;
}

/* A 1x1 kernel with stride 1 and no padding reads the image as its own column matrix. */
static int conv_is_pointwise(const mg_conv2d_shape *s)
{
    return s->KH == 1 && s->KW == 1 && s->stride == 1 && s->pad == 0;
}

/* One input channel per group: a direct loop beats GEMMs with a single row. */
static int conv_is_depthwise(const mg_conv2d_shape *s)
{
    return conv_groups(s) > 1 && s->C == conv_groups(s);
}

/* The input gradient of a stride-1 convolution is the convolution of the
 * output gradient with the flipped, transposed filters (padding KH-1-pad),
 * which runs as im2col + GEMM and spares the scatter of col2im. */
static int conv_grad_as_conv(const mg_conv2d_shape *s)
{
    return s->stride == 1 && !conv_is_pointwise(s) && !conv_is_depthwise(s) && s->pad <= s->KH - 1 &&
           s->pad <= s->KW - 1 && s->KH - 1 - s->pad == s->KW - 1 - s->pad;
}

/* Output columns per chunk of GEMMs. OpenBLAS runs products of up to 10^6
 * multiply-adds on kernels that skip its packing copies, about a third faster
 * here than its packed path at these shapes (105 against 80 GFLOP/s). Every
 * GEMM of a chunk, forward or backward, has OCg * Cg * kk multiply-adds per
 * column (kk = KH*KW, or KW by kernel columns), so a chunk takes as many
 * columns as keep it under 10^6; where that is fewer than CHUNK_MIN the
 * packed path runs anyway and CHUNK_MIN columns keep its buffers in cache.
 * The column buffer stays under CHUNK_MAX_FLOATS. Chunks are whole output
 * rows and run across samples when the layout keeps a channel's samples
 * contiguous. */
enum { SMALL_GEMM_MACS = 1000000, CHUNK_MIN = 128, CHUNK_MAX_FLOATS = 1 << 17 };

static int chunk_target(const mg_conv2d_shape *s, int kk)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G;
    long c = (long)((double)SMALL_GEMM_MACS / ((double)OCg * Cg * kk));
    if (c < CHUNK_MIN)
        c = CHUNK_MIN;
    const long rows = (long)(Cg > OCg ? Cg : OCg) * kk;
    if (c * rows > CHUNK_MAX_FLOATS)
        c = CHUNK_MAX_FLOATS / rows;
    return c > 1 ? (int)c : 1;
}

static size_t col_cols(const mg_conv2d_shape *s)
{
    size_t c = (size_t)chunk_target(s, s->KH * s->KW);
    if ((size_t)s->OW > c)
        c = (size_t)s->OW;
    if ((size_t)s->W > c)
        c = (size_t)s->W;
    return c;
}

/* A stride-1 convolution that keeps the image size (a square kernel of
 * 2*pad+1) runs by kernel columns (see conv_cols_forward) when the GEMMs that
 * leaves, over C*KW rows, are still long enough to run at speed, and a
 * sample's plane holds enough positions for the GEMMs, which stay within one
 * sample (8x8 and up). */
enum { COLS_MIN_K = 32, COLS_MIN_PLANE = 64 };

static int conv_same_size(const mg_conv2d_shape *s)
{
    return s->stride == 1 && s->KH == s->KW && s->KH == 2 * s->pad + 1 && s->KH > 1 && !conv_is_depthwise(s) &&
           s->W > 2 * s->pad && s->H * s->W >= COLS_MIN_PLANE;
}

static int conv_cols_forward_ok(const mg_conv2d_shape *s)
{
    return conv_same_size(s) && s->C / conv_groups(s) * s->KW >= COLS_MIN_K;
}

/* The backward by kernel columns replaces the flipped-filter path (it needs
 * the input gradient and no great widening) and pairs its rows with the input
 * channels in the weight gradient's GEMMs, which want a few of them. */
static int conv_cols_backward_ok(const mg_conv2d_shape *s)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G;
    return conv_same_size(s) && OCg <= 2 * Cg && OCg * s->KW >= COLS_MIN_K && Cg >= 8;
}

/* Output rows per chunk of the by-columns path: as many as chunk_target
 * allows, at most a plane, split evenly over the plane's chunks. */
static int cols_rows_per_chunk(const mg_conv2d_shape *s)
{
    int r = chunk_target(s, s->KW) / s->W;
    if (r < 1)
        r = 1;
    if (r > s->H)
        r = s->H;
    const int chunks = (s->H + r - 1) / r;
    return (s->H + chunks - 1) / chunks;
}

/* n floats, or a few more when n is a multiple of 128: rows of a buffer a
 * power of two of floats apart would share a handful of cache sets. */
static size_t ld_apart(size_t n)
{
    return n % 128 == 0 ? n + 16 : n;
}

/* The floats of one buffer row (the chunk's rows and pad rows either side)
 * and of one row of the GEMMs' output. */
static size_t cols_ld(const mg_conv2d_shape *s)
{
    return ld_apart((size_t)(cols_rows_per_chunk(s) + 2 * s->pad) * s->W);
}

static size_t cols_out_ld(const mg_conv2d_shape *s)
{
    return ld_apart((size_t)cols_rows_per_chunk(s) * s->W);
}

/* A stride-2 3x3 convolution with padding 1 over planes of even size (the
 * downsampling convolutions of ResNets) runs by parity (conv_par_forward):
 * its windows read the even and the odd input rows and columns, so it runs
 * like the by-columns path over quarter planes, with no 9-fold im2col and no
 * col2im scatter. The same conditions on the GEMMs' sizes hold. */
static int conv_par_ok(const mg_conv2d_shape *s)
{
    return s->stride == 2 && s->KH == 3 && s->KW == 3 && s->pad == 1 && s->H % 2 == 0 && s->W % 2 == 0 &&
           !conv_is_depthwise(s) && s->C / conv_groups(s) * s->KW >= COLS_MIN_K && s->OH * s->OW >= COLS_MIN_PLANE;
}

/* The parity path's chunks: output rows of one sample, as cols_rows_per_chunk. */
typedef struct {
    int per, chunks; /* output rows per chunk (the last may have fewer), chunks per plane */
    size_t ldo, lde; /* floats per buffer row: odd input rows (one more; also the
                        output gradient's rows of the backward), even ones */
} par_geom;

static par_geom par_geom_of(const mg_conv2d_shape *s)
{
    par_geom p;
    int r = chunk_target(s, s->KW) / s->OW;
    if (r < 1)
        r = 1;
    if (r > s->OH)
        r = s->OH;
    p.chunks = (s->OH + r - 1) / r;
    p.per = (s->OH + p.chunks - 1) / p.chunks;
    p.ldo = ld_apart((size_t)(p.per + 1) * s->OW);
    p.lde = ld_apart((size_t)p.per * s->OW);
    return p;
}

/* Floats of one chunk's buffers: C*KW rows over the odd input rows, then
 * as many over the even ones. */
static size_t par_chunk_floats(const mg_conv2d_shape *s, const par_geom *p)
{
    return (size_t)(s->C / conv_groups(s)) * s->KW * (p->ldo + p->lde);
}

static size_t par_scratch(const mg_conv2d_shape *s)
{
    const par_geom p = par_geom_of(s);
    const size_t Cg = (size_t)(s->C / conv_groups(s)), OCg = (size_t)(s->OC / conv_groups(s));
    const size_t Kc = Cg * s->KW, ncols = (size_t)p.per * s->OW, R = par_chunk_floats(s, &p);
    const size_t fwd = R + 9 * OCg * Cg + OCg * p.lde;
    const size_t bwd = R + ncols * OCg + 2 * OCg * p.ldo + 4 * Cg * p.lde + 9 * Cg * OCg + 3 * Kc * OCg;
    return fwd > bwd ? fwd : bwd;
}

size_t mg_conv2d_scratch(const mg_conv2d_shape *s)
{
    if (conv_is_depthwise(s))
        return 0;
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G, KK = s->KH * s->KW;
    size_t rows = conv_is_pointwise(s) ? 0 : (size_t)Cg * KK;
    if (conv_grad_as_conv(s) && (size_t)OCg * KK > rows)
        rows = (size_t)OCg * KK;
    size_t n = rows * col_cols(s) + (size_t)Cg * KK * OCg;   /* columns, and dw transposed */
    if (conv_grad_as_conv(s))
        n += (size_t)Cg * OCg * KK;                           /* the flipped filters */
    n += col_cols(s) * (size_t)(OCg > Cg ? OCg : Cg);          /* a transposed GEMM operand */
    if (conv_par_ok(s) && par_scratch(s) > n)
        n = par_scratch(s);
    if (conv_same_size(s)) {
        const size_t cols = (size_t)cols_rows_per_chunk(s) * s->W, KH = (size_t)s->KH;
        const size_t KWC = (size_t)Cg * s->KW, KWO = (size_t)OCg * s->KW, ldo = cols_out_ld(s);
        const size_t fwd = KWC * cols_ld(s) + KH * OCg * KWC + (size_t)OCg * ldo;
        const size_t bwd = KWO * cols_ld(s) + cols * Cg + 2 * KH * Cg * KWO;
        if (fwd > n)
            n = fwd;
        if (bwd > n)
            n = bwd;
    }
    const size_t direct = mg_conv3_scratch(s);
    return direct > n ? direct : n;
}

/* The output columns [*lo, *hi) whose input column ow*stride - pad + k lies
 * inside [0, W); outside it the padding reads zeros. */
static void valid_range(int k, int stride, int pad, int W, int OW, int *lo, int *hi)
{
    int a = pad - k;
    int l = a <= 0 ? 0 : (a + stride - 1) / stride;
    int t = W - 1 + pad - k;
    int h = t < 0 ? 0 : t / stride + 1;
    if (h > OW)
        h = OW;
    if (l > h)
        l = h;
    *lo = l;
    *hi = h;
}

/* Geometry of one im2col: planes of H x W read through a KH x KW window
 * into OH x OW output positions. */
typedef struct {
    int H, W, OH, OW, KH, KW, stride, pad;
} col_geom;

static col_geom geom_of(const mg_conv2d_shape *s)
{
    col_geom g = {s->H, s->W, s->OH, s->OW, s->KH, s->KW, s->stride, s->pad};
    return g;
}

/* One column-buffer row of a stride-1 convolution that keeps the width
 * (OW == W): the valid output rows of a sample are one shifted copy of the
 * plane, after which the columns the window pushes past the left or right
 * edge are zeroed. dst has nr rows of OW from output row oh0 of this sample. */
static void im2col_same_rows(float *dst, const float *plane, int oh0, int nr, int kh, int kw, const col_geom *g)
{
    const int H = g->H, W = g->W, pad = g->pad;
    int lo, hi;
    valid_range(kw, 1, pad, W, W, &lo, &hi);
    int a = pad - kh - oh0, b = H + pad - kh - oh0;   /* valid rows [a, b) of this block */
    if (a < 0)
        a = 0;
    if (b > nr)
        b = nr;
    if (b <= a || hi <= lo) {
        memset(dst, 0, (size_t)nr * W * sizeof(float));
        return;
    }
    if (a > 0)
        memset(dst, 0, (size_t)a * W * sizeof(float));
    if (b < nr)
        memset(dst + (size_t)b * W, 0, (size_t)(nr - b) * W * sizeof(float));
    const long shift = (long)(kh - pad) * W + (kw - pad);
    const size_t first = (size_t)(oh0 + a) * W;     /* output index of the first valid row */
    const size_t from = (size_t)a * W + lo, to = (size_t)(b - 1) * W + hi;
    memcpy(dst + from, plane + (long)(first - (size_t)a * W) + (long)from + shift, (to - from) * sizeof(float));
    for (int r = a; r < b; r++) {
        float *row = dst + (size_t)r * W;
        for (int ow = 0; ow < lo; ow++)
            row[ow] = 0.0f;
        for (int ow = hi; ow < W; ow++)
            row[ow] = 0.0f;
    }
}

/* d[0..n) = s[0..n) for the short rows of small images (a call to memcpy
 * costs more than the copy), in blocks of four that compile to vector moves. */
static inline void copy_short(float *restrict d, const float *restrict s, int n)
{
    int k = 0;
    for (; k + 4 <= n; k += 4)
        for (int j = 0; j < 4; j++)
            d[k + j] = s[k + j];
    for (; k < n; k++)
        d[k] = s[k];
}

/* d[0..n) = s[0], s[2], s[4], ...: the windows of a stride-2 convolution.
 * The compiler leaves this gather scalar, so SSE shuffles do it: a block of
 * four reads eight floats, the last block (ending at n, overlapping the one
 * before) the seven it needs. */
static inline void copy_stride2(float *restrict d, const float *restrict s, int n)
{
    int k = 0;
#ifdef __SSE__
    if (n >= 4) {
        for (; k + 4 < n; k += 4)
            _mm_storeu_ps(
                d + k, _mm_shuffle_ps(_mm_loadu_ps(s + 2 * k), _mm_loadu_ps(s + 2 * k + 4), _MM_SHUFFLE(2, 0, 2, 0)));
        const float *t = s + 2 * (n - 4);
        _mm_storeu_ps(d + n - 4, _mm_shuffle_ps(_mm_loadu_ps(t), _mm_loadu_ps(t + 3), _MM_SHUFFLE(3, 1, 2, 0)));
        return;
    }
#endif
    for (; k < n; k++)
        d[k] = s[2 * k];
}

/* d[0], d[2], d[4], ... += s[0..n): the scatter of a stride-2 convolution.
 * Blocks of four read eight floats and write them back, the odd ones
 * unchanged, in SSE shuffles (the compiler leaves the loop scalar); a block
 * stops short of the last even float so that it never touches a float past
 * it. */
static inline void add_stride2(float *restrict d, const float *restrict s, int n)
{
    int k = 0;
#ifdef __SSE__
    for (; k + 5 <= n; k += 4) {
        const __m128 a = _mm_loadu_ps(d + 2 * k), b = _mm_loadu_ps(d + 2 * k + 4);
        const __m128 e = _mm_add_ps(_mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)), _mm_loadu_ps(s + k));
        const __m128 o = _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        _mm_storeu_ps(d + 2 * k, _mm_unpacklo_ps(e, o));
        _mm_storeu_ps(d + 2 * k + 4, _mm_unpackhi_ps(e, o));
    }
#endif
    for (; k + 5 <= n; k += 4)
        for (int j = 0; j < 4; j++) {
            const float e = d[2 * (k + j)] + s[k + j], o = d[2 * (k + j) + 1];
            d[2 * (k + j)] = e;
            d[2 * (k + j) + 1] = o;
        }
    for (; k < n; k++)
        d[2 * k] += s[k];
}

/* The same for n >= 4 without a scalar tail: the last block of four ends at
 * n and may overlap the one before it. */
static inline void copy_row(float *restrict d, const float *restrict s, int n)
{
    if (n < 4) {
        copy_short(d, s, n);
        return;
    }
    int k = 0;
    for (; k + 4 < n; k += 4)
        for (int j = 0; j < 4; j++)
            d[k + j] = s[k + j];
    for (int j = 0; j < 4; j++)
        d[n - 4 + j] = s[n - 4 + j];
}

/* d[0..n) += s[0..n), likewise. */
static inline void add_short(float *restrict d, const float *restrict s, int n)
{
    int k = 0;
    for (; k + 4 <= n; k += 4)
        for (int j = 0; j < 4; j++)
            d[k + j] += s[k + j];
    for (; k < n; k++)
        d[k] += s[k];
}

/* col (Cg*KH*KW, nr*OW): row (c,kh,kw), columns the output rows r0 .. r0+nr-1
 * of the flattened (n, oh) index, read from the planes in + n*l.sn + c*l.sc.
 * The sample and row of each output row are stepped, not divided out. */
static void im2col(float *restrict col, const float *restrict in, mg_layout l, int Cg, int r0, int nr,
                   const col_geom *g)
{
    const int H = g->H, W = g->W, OH = g->OH, OW = g->OW, st = g->stride, pad = g->pad;
    const size_t ld = (size_t)nr * OW;
    const int same = st == 1 && OW == W && OH == H;
    for (int c = 0; c < Cg; c++) {
        for (int kh = 0; kh < g->KH; kh++) {
            for (int kw = 0; kw < g->KW; kw++) {
                float *row = col + ((size_t)(c * g->KH + kh) * g->KW + kw) * ld;
                if (same) {
                    /* One block per sample the chunk touches. */
                    for (int rr = 0; rr < nr;) {
                        const int r = r0 + rr, n = r / OH, oh = r % OH;
                        const int len = OH - oh < nr - rr ? OH - oh : nr - rr;
                        im2col_same_rows(row + (size_t)rr * OW, in + (size_t)n * l.sn + (size_t)c * l.sc, oh, len, kh,
                                         kw, g);
                        rr += len;
                    }
                    continue;
                }
                int n = r0 / OH, oh = r0 % OH;
                if (st == 1 && pad == 0) {
                    /* Every window lies inside the image: rows of OW from rows of W. */
                    const size_t base = (size_t)c * l.sc + (size_t)kh * W + kw;
                    size_t so = base + (size_t)n * l.sn + (size_t)oh * W;
                    float *dst = row;
                    for (int rr = 0; rr < nr; rr++, dst += OW) {
                        copy_row(dst, in + so, OW);
                        so += (size_t)W;
                        if (++oh == OH) {
                            oh = 0;
                            so = base + (size_t)++n * l.sn;
                        }
                    }
                    continue;
                }
                int lo, hi;
                valid_range(kw, st, pad, W, OW, &lo, &hi);
                const int shift = kw - pad;
                for (int rr = 0; rr < nr; rr++) {
                    float *dst = row + (size_t)rr * OW;
                    const int ih = oh * st - pad + kh;
                    if (ih < 0 || ih >= H || hi <= lo) {
                        memset(dst, 0, (size_t)OW * sizeof(float));
                    } else {
                        const float *src = in + (size_t)n * l.sn + (size_t)c * l.sc + (size_t)ih * W;
                        for (int ow = 0; ow < lo; ow++)
                            dst[ow] = 0.0f;
                        if (st == 1) {
                            copy_short(dst + lo, src + lo + shift, hi - lo);
                        } else if (st == 2) {
                            copy_stride2(dst + lo, src + 2 * lo + shift, hi - lo);
                        } else {
                            for (int ow = lo; ow < hi; ow++)
                                dst[ow] = src[ow * st + shift];
                        }
                        for (int ow = hi; ow < OW; ow++)
                            dst[ow] = 0.0f;
                    }
                    if (++oh == OH) {
                        oh = 0;
                        n++;
                    }
                }
            }
        }
    }
}

/* For a 1x1 kernel without padding, whose windows do not overlap: the planes
 * written whole from col (Cg rows), input (ih, iw) taking output (ih/st,
 * iw/st) where both divide, zero elsewhere. Each chunk's output rows write
 * the input rows from theirs to the next output row's (the last to the
 * plane's end), so the chunks together cover every input row once. */
static void col2im_write_k1(float *in, mg_layout l, const float *col, int Cg, int r0, int nr, const col_geom *g)
{
    const int H = g->H, W = g->W, OH = g->OH, OW = g->OW, st = g->stride;
    const size_t ld = (size_t)nr * OW;
    for (int c = 0; c < Cg; c++) {
        int n = r0 / OH, oh = r0 % OH;
        for (int rr = 0; rr < nr; rr++) {
            float *plane = in + (size_t)n * l.sn + (size_t)c * l.sc;
            const float *v = col + (size_t)c * ld + (size_t)rr * OW;
            const int ih0 = oh * st, ih1 = oh == OH - 1 ? H : ih0 + st;
            float *d = plane + (size_t)ih0 * W;
            memset(d, 0, (size_t)W * sizeof(float));
            for (int ow = 0; ow < OW; ow++)
                d[ow * st] = v[ow];
            if (ih1 > ih0 + 1)
                memset(d + W, 0, (size_t)(ih1 - ih0 - 1) * W * sizeof(float));
            if (++oh == OH) {
                oh = 0;
                n++;
            }
        }
    }
}

/* The planes of im2col += the columns of col scattered back; padding drops. */
static void col2im_add(float *restrict in, mg_layout l, const float *restrict col, int Cg, int r0, int nr,
                       const col_geom *g)
{
    const int H = g->H, W = g->W, OH = g->OH, OW = g->OW, st = g->stride, pad = g->pad;
    const size_t ld = (size_t)nr * OW;
    for (int c = 0; c < Cg; c++) {
        for (int kh = 0; kh < g->KH; kh++) {
            for (int kw = 0; kw < g->KW; kw++) {
                const float *row = col + ((size_t)(c * g->KH + kh) * g->KW + kw) * ld;
                int n = r0 / OH, oh = r0 % OH;
                if (st == 1 && pad == 0) {
                    const size_t base = (size_t)c * l.sc + (size_t)kh * W + kw;
                    size_t so = base + (size_t)n * l.sn + (size_t)oh * W;
                    const float *src = row;
                    for (int rr = 0; rr < nr; rr++, src += OW) {
                        add_short(in + so, src, OW);
                        so += (size_t)W;
                        if (++oh == OH) {
                            oh = 0;
                            so = base + (size_t)++n * l.sn;
                        }
                    }
                    continue;
                }
                int lo, hi;
                valid_range(kw, st, pad, W, OW, &lo, &hi);
                const int shift = kw - pad;
                for (int rr = 0; rr < nr; rr++) {
                    const int ih = oh * st - pad + kh;
                    if (ih >= 0 && ih < H && lo < hi) {
                        const float *srcrow = row + (size_t)rr * OW;
                        float *dst = in + (size_t)n * l.sn + (size_t)c * l.sc + (size_t)ih * W;
                        if (st == 1) {
                            add_short(dst + lo + shift, srcrow + lo, hi - lo);
                        } else if (st == 2) {
                            add_stride2(dst + 2 * lo + shift, srcrow + lo, hi - lo);
                        } else {
                            for (int ow = lo; ow < hi; ow++)
                                dst[ow * st + shift] += srcrow[ow];
                        }
                    }
                    if (++oh == OH) {
                        oh = 0;
                        n++;
                    }
                }
            }
        }
    }
}

/* Chunks of output rows of the flattened (n, oh) index for planes of `rows`
 * rows of `cols` columns: at most max(1, target/cols) rows, and within one
 * sample unless `cross` (the layouts keep a channel's samples contiguous). */
typedef struct {
    int rows, cols, total, per, cross;
} row_chunks;

static row_chunks chunks_of(int N, int rows, int cols, int cross, int target)
{
    row_chunks c = {rows, cols, N * rows, target / cols > 1 ? target / cols : 1, cross};
    return c;
}

static int chunk_len(const row_chunks *c, int r0)
{
    int n = c->total - r0 < c->per ? c->total - r0 : c->per;
    if (!c->cross && n > c->rows - r0 % c->rows)
        n = c->rows - r0 % c->rows;
    return n;
}

/* 1 if a channel's samples follow one another in l (planes of `plane` floats),
 * so that one GEMM row can run across samples. */
static int samples_contiguous(mg_layout l, int N, int plane)
{
    return l.sn == (size_t)plane && l.sc >= (size_t)N * plane;
}

/* Offset of output row r (of the flattened (n, row) index) in a tensor of layout l. */
static size_t row_off(mg_layout l, const row_chunks *c, int r)
{
    return (size_t)(r / c->rows) * l.sn + (size_t)(r % c->rows) * c->cols;
}

/* Depthwise forward over one input plane: input channel c feeds the output
 * channels c*mult .. c*mult+mult-1. The window offsets are the outer loops so
 * that the inner loop runs along an output row. */
static void depthwise_plane_forward(float *op, const float *plane, const float *wk, float bv,
                                    const mg_conv2d_shape *s)
{
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride, pad = s->pad;
    for (size_t p = 0; p < (size_t)OH * OW; p++)
        op[p] = bv;
    for (int kh = 0; kh < s->KH; kh++) {
        for (int kw = 0; kw < s->KW; kw++) {
            const float wv = wk[kh * s->KW + kw];
            const int shift = kw - pad;
            int lo, hi;
            valid_range(kw, st, pad, W, OW, &lo, &hi);
            for (int oh = 0; oh < OH; oh++) {
                int ih = oh * st - pad + kh;
                if (ih < 0 || ih >= H)
                    continue;
                const float *src = plane + (size_t)ih * W;
                float *dst = op + (size_t)oh * OW;
                if (st == 1) {
                    for (int ow = lo; ow < hi; ow++)
                        dst[ow] += wv * src[ow + shift];
                } else {
                    for (int ow = lo; ow < hi; ow++)
                        dst[ow] += wv * src[ow * st + shift];
                }
            }
        }
    }
}

static void depthwise_plane_backward(float *di, float *dwk, const float *dp, const float *plane, const float *wk,
                                     const mg_conv2d_shape *s)
{
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride, pad = s->pad;
    for (int kh = 0; kh < s->KH; kh++) {
        for (int kw = 0; kw < s->KW; kw++) {
            const float wv = wk[kh * s->KW + kw];
            const int shift = kw - pad;
            int lo, hi;
            valid_range(kw, st, pad, W, OW, &lo, &hi);
            float acc = 0.0f;
            for (int oh = 0; oh < OH; oh++) {
                int ih = oh * st - pad + kh;
                if (ih < 0 || ih >= H)
                    continue;
                const float *src = plane + (size_t)ih * W;
                const float *drow = dp + (size_t)oh * OW;
                for (int ow = lo; ow < hi; ow++)
                    acc += drow[ow] * src[ow * st + shift];
                if (di) {
                    float *dst = di + (size_t)ih * W;
                    for (int ow = lo; ow < hi; ow++)
                        dst[ow * st + shift] += wv * drow[ow];
                }
            }
            dwk[kh * s->KW + kw] += acc;
        }
    }
}

/* ---- stride-1 convolutions that keep the size, by kernel columns -------------------------
 *
 * A chunk is a block of nr output rows of one sample. For input channel c
 * and kernel column kw it gets one buffer row R[c,kw]: the input rows
 * h0-pad .. h0+nr+pad-1 (zeros outside the plane), each shifted by kw-pad
 * with the columns pushed past an edge zeroed, one after another. Output
 * position j (row-major in the chunk) reads R[c,kw][j + kh*W] through kernel
 * row kh, so the column matrix of kernel row kh is R itself seen from offset
 * kh*W: KH GEMMs over the C*KW rows of R, accumulating, replace one GEMM over
 * the C*KH*KW rows of the column matrix, whose building wrote KH times the
 * data, and each row of R is a shifted copy of a block of the plane. The
 * GEMMs cover exactly the chunk's output positions, whose rows are also
 * contiguous in the output, so the result leaves as one run per channel.
 * Backward, the input gradient is the same convolution of the output
 * gradient with the flipped filters, and the weight gradient pairs the rows
 * of R built from the output gradient with the input's rows of the chunk.
 */

/* R (CH*KW rows of ld floats): row (c,kw) for rows h0-pad .. h0+nr+pad-1 of
 * channel c of sample n of src (planes of H x W), as above. */
static void cols_build(float *R, size_t ld, const float *src, mg_layout l, int CH, int n, int h0, int nr, int H,
                       int W, int KW, int pad)
{
    const int rows = nr + 2 * pad;
    int a = pad - h0, b = H + pad - h0;   /* the buffer rows [a, b) lie inside the plane */
    if (a < 0)
        a = 0;
    if (b > rows)
        b = rows;
    const size_t len = (size_t)(b - a) * W;
    for (int c = 0; c < CH; c++) {
        const float *plane = src + (size_t)n * l.sn + (size_t)c * l.sc + (size_t)(h0 - pad + a) * W;
        for (int kw = 0; kw < KW; kw++) {
            float *row = R + (size_t)(c * KW + kw) * ld, *d = row + (size_t)a * W;
            if (a > 0)
                memset(row, 0, (size_t)a * W * sizeof(float));
            if (b < rows)
                memset(row + (size_t)b * W, 0, (size_t)(rows - b) * W * sizeof(float));
            /* d[i] = plane[i + sh]; the sh columns at the end of each row
             * (the start, for sh < 0) would read a neighbouring row. */
            const int sh = kw - pad;
            if (sh >= 0) {
                memcpy(d, plane + sh, (len - (size_t)sh) * sizeof(float));
                for (int r = a; r < b; r++, d += W)
                    for (int q = W - sh; q < W; q++)
                        d[q] = 0.0f;
            } else {
                memcpy(d - sh, plane, (len - (size_t)-sh) * sizeof(float));
                for (int r = a; r < b; r++, d += W)
                    for (int q = 0; q < -sh; q++)
                        d[q] = 0.0f;
            }
        }
    }
}

/* o[0..n) = act(v + b) for the activations a convolution fuses. */
static inline void store_act(float *restrict o, const float *restrict v, int n, float b, int act)
{
    int i = 0;
    if (act == MG_ACT_RELU) {
        for (; i + 4 <= n; i += 4)
            for (int j = 0; j < 4; j++)
                o[i + j] = mg_relu1(v[i + j] + b);
        for (; i < n; i++)
            o[i] = mg_relu1(v[i] + b);
    } else if (act == MG_ACT_TANH) {
        for (; i < n; i++)
            o[i] = mg_tanh1(v[i] + b);
    } else {
        for (; i + 4 <= n; i += 4)
            for (int j = 0; j < 4; j++)
                o[i + j] = v[i + j] + b;
        for (; i < n; i++)
            o[i] = v[i] + b;
    }
}

/* wk[kh] (OCg, Cg*KW), kh < KH: the weights of kernel row kh of group g,
 * the left operands of the by-columns and parity forwards. */
static void kernel_row_weights(float *wk, const float *w, int g, int OCg, int Cg, int KH, int KW)
{
    const int Kc = Cg * KW;
    for (int kh = 0; kh < KH; kh++)
        for (int oc = 0; oc < OCg; oc++)
            for (int c = 0; c < Cg; c++)
                for (int kw = 0; kw < KW; kw++)
                    wk[((size_t)kh * OCg + oc) * Kc + c * KW + kw] =
                        w[((((size_t)g * OCg + oc) * Cg + c) * KH + kh) * KW + kw];
}

/* The end of one chunk of a forward by kernel columns or by parity, whose
 * GEMMs wrote group g's OCg output rows in place (no bias, no activation) or
 * into wide (rows ldw apart): there the bias and activation go to out; then
 * each plane is summed for the batch norm after the convolution (sums, when
 * given: the chunks are whole planes). at: the chunk's first output
 * position in channel 0 of the group (sample and row offsets). */
static void chunk_out(float *out, mg_layout lo, size_t at, const float *wide, size_t ldw, int g, int OCg, int ncols,
                      const float *b, int act, double *sums, int first)
{
    for (int oc = 0; oc < OCg; oc++) {
        float *o = out + at + (size_t)(g * OCg + oc) * lo.sc;
        if (b || act != MG_NO_ACT)
            store_act(o, wide + (size_t)oc * ldw, ncols, b ? b[g * OCg + oc] : 0.0f, act);
        if (sums)
            mg_bn_plane_sums(sums + 3 * (size_t)(g * OCg + oc), o, ncols, first);
    }
}

static void conv_cols_forward(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w, const float *b,
                              const mg_conv2d_shape *s, float *scratch, int act, double *sums)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G, KH = s->KH, KW = s->KW, pad = s->pad;
    const int H = s->H, W = s->W, per = cols_rows_per_chunk(s), Kc = Cg * KW;
    const size_t ld = cols_ld(s), ldo = cols_out_ld(s);
    float *R = scratch, *wk = R + (size_t)Kc * ld, *wide = wk + (size_t)KH * OCg * Kc;
    /* Without bias or activation the GEMMs write the output in place. */
    const int direct = !b && act == MG_NO_ACT;
    const int ldc = direct ? (int)lo.sc : (int)ldo;
    for (int g = 0; g < G; g++) {
        kernel_row_weights(wk, w, g, OCg, Cg, KH, KW);
        for (int n = 0; n < s->N; n++)
            for (int h0 = 0; h0 < H; h0 += per) {
                const int nr = H - h0 < per ? H - h0 : per, ncols = nr * W;
                const size_t at = (size_t)n * lo.sn + (size_t)h0 * W;
                cols_build(R, ld, inp + (size_t)g * Cg * li.sc, li, Cg, n, h0, nr, H, W, KW, pad);
                float *c0 = direct ? out + at + (size_t)g * OCg * lo.sc : wide;
                for (int kh = 0; kh < KH; kh++)
                    mg_gemm(0, OCg, ncols, Kc, wk + (size_t)kh * OCg * Kc, Kc, R + (size_t)kh * W, (int)ld,
                            kh ? 1.0f : 0.0f, c0, ldc);
                chunk_out(out, lo, at, wide, ldo, g, OCg, ncols, b, act, sums, n == 0);
            }
    }
}

/* t (n, C) = the C rows of n floats at s, sc apart, transposed. The rows
 * lie a channel apart, often a power of two of floats, so they share cache
 * sets, and the hardware prefetcher does not follow that many of them:
 * blocks of 16 positions (a cache line of each row) are read once each,
 * 4 x 4 at a time through SSE registers, with the line four blocks ahead of
 * each row prefetched. The eight positions at a time of the plain loop (the
 * lines of t being written stay few) take the rest. */
static void transpose_rows(float *restrict t, const float *restrict s, size_t sc, int C, int n)
{
    int q0 = 0;
#ifdef __SSE__
    if (C % 4 == 0)
        for (; q0 + 16 <= n; q0 += 16)
            for (int c = 0; c < C; c += 4) {
                const float *r = s + (size_t)c * sc + q0;
                for (int i = 0; i < 4; i++)
                    __builtin_prefetch(r + (size_t)i * sc + 64);
                for (int j = 0; j < 16; j += 4) {
                    __m128 r0 = _mm_loadu_ps(r + j), r1 = _mm_loadu_ps(r + sc + j);
                    __m128 r2 = _mm_loadu_ps(r + 2 * sc + j), r3 = _mm_loadu_ps(r + 3 * sc + j);
                    _MM_TRANSPOSE4_PS(r0, r1, r2, r3);
                    float *d = t + (size_t)(q0 + j) * C + c;
                    _mm_storeu_ps(d, r0);
                    _mm_storeu_ps(d + C, r1);
                    _mm_storeu_ps(d + 2 * C, r2);
                    _mm_storeu_ps(d + 3 * C, r3);
                }
            }
#endif
    for (; q0 < n; q0 += 8) {
        const int qn = n - q0 < 8 ? n - q0 : 8;
        for (int c = 0; c < C; c++)
            for (int j = 0; j < qn; j++)
                t[(size_t)(q0 + j) * C + c] = s[(size_t)c * sc + q0 + j];
    }
}

/* dinp (+)= the convolution of dout with the flipped filters and
 * dw += the weight gradient, both by kernel columns (the padding of the
 * flipped geometry, KH-1-pad, is pad again). */
static void conv_cols_backward(float *dinp, mg_layout li, int overwrite, float *dw, const float *dout, mg_layout lo,
                               const float *inp, const float *w, const mg_conv2d_shape *s, float *scratch)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G, KH = s->KH, KW = s->KW, pad = s->pad;
    const int H = s->H, W = s->W, per = cols_rows_per_chunk(s), Kc = OCg * KW;
    const size_t ld = cols_ld(s), cols = (size_t)per * W;
    float *R = scratch, *inT = R + (size_t)Kc * ld, *wf = inT + cols * Cg, *dwk = wf + (size_t)KH * Cg * Kc;
    for (int g = 0; g < G; g++) {
        /* wf[kh] (Cg, OCg*KW): wf[kh][c][oc,kw] = w[oc][c][KH-1-kh][KW-1-kw]. */
        for (int kh = 0; kh < KH; kh++)
            for (int c = 0; c < Cg; c++)
                for (int oc = 0; oc < OCg; oc++)
                    for (int kw = 0; kw < KW; kw++)
                        wf[((size_t)kh * Cg + c) * Kc + oc * KW + kw] =
                            w[((((size_t)g * OCg + oc) * Cg + c) * KH + (KH - 1 - kh)) * KW + (KW - 1 - kw)];
        memset(dwk, 0, (size_t)KH * Kc * Cg * sizeof(float));
        for (int n = 0; n < s->N; n++)
            for (int h0 = 0; h0 < H; h0 += per) {
                const int nr = H - h0 < per ? H - h0 : per, ncols = nr * W;
                cols_build(R, ld, dout + (size_t)g * OCg * lo.sc, lo, OCg, n, h0, nr, H, W, KW, pad);
                transpose_rows(inT, inp + (size_t)n * li.sn + (size_t)g * Cg * li.sc + (size_t)h0 * W, li.sc, Cg,
                               ncols);
                /* The input gradient's GEMMs write (or add to) dinp in place. */
                float *d0 = dinp ? dinp + (size_t)n * li.sn + (size_t)g * Cg * li.sc + (size_t)h0 * W : NULL;
                for (int kh = 0; kh < KH; kh++) {
                    mg_gemm(0, Kc, Cg, ncols, R + (size_t)kh * W, (int)ld, inT, Cg, 1.0f, dwk + (size_t)kh * Kc * Cg,
                            Cg);
                    if (dinp)
                        mg_gemm(0, Cg, ncols, Kc, wf + (size_t)kh * Cg * Kc, Kc, R + (size_t)kh * W, (int)ld,
                                kh || !overwrite ? 1.0f : 0.0f, d0, (int)li.sc);
                }
            }
        float *dwg = dw + (size_t)g * OCg * Cg * KH * KW;
        for (int kh = 0; kh < KH; kh++)
            for (int oc = 0; oc < OCg; oc++)
                for (int kw = 0; kw < KW; kw++)
                    for (int c = 0; c < Cg; c++)
                        dwg[(((size_t)oc * Cg + c) * KH + (KH - 1 - kh)) * KW + (KW - 1 - kw)] +=
                            dwk[((size_t)kh * Kc + oc * KW + kw) * Cg + c];
    }
}

/* ---- stride-2 3x3 convolutions by parity ---- */

/* The three buffer rows (kw = 0, 1, 2) of one input row src (W = 2*OW
 * floats) at d, ld apart: kw = 1 reads the even columns, kw = 2 the odd
 * ones, kw = 0 the odd ones a column later (the padding's zero first). */
static void par_row(float *d, size_t ld, const float *src, int OW)
{
    float *restrict d0 = d, *restrict d1 = d + ld, *restrict d2 = d + 2 * ld;
    int k = 0;
    d0[0] = 0.0f;
#ifdef __SSE__
    /* Eight floats give four even and four odd ones; the odd ones go to kw = 2
     * and, a column later, to kw = 0, whose last block stops at OW. */
    for (; k + 4 <= OW; k += 4) {
        const __m128 a = _mm_loadu_ps(src + 2 * k), b = _mm_loadu_ps(src + 2 * k + 4);
        const __m128 odd = _mm_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1));
        _mm_storeu_ps(d1 + k, _mm_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0)));
        _mm_storeu_ps(d2 + k, odd);
        if (k + 4 < OW) {
            _mm_storeu_ps(d0 + k + 1, odd);
        } else {
            float t[4];
            _mm_storeu_ps(t, odd);
            d0[k + 1] = t[0], d0[k + 2] = t[1], d0[k + 3] = t[2];
        }
    }
#endif
    for (; k < OW; k++) {
        d1[k] = src[2 * k];
        d2[k] = src[2 * k + 1];
        if (k + 1 < OW)
            d0[k + 1] = src[2 * k + 1];
    }
}

/* The chunk's buffers from the Cg planes at in (channel stride sc, planes of
 * H x W): Ro, rows (c,kw) of ldo floats, holds input rows 2*h0-1 .. 2*(h0+nr)-1
 * (odd; row -1 is the padding), Re, rows of lde, rows 2*h0 .. 2*(h0+nr)-2. */
static void par_build(float *Ro, float *Re, const par_geom *p, const float *in, size_t sc, int Cg, int h0, int nr,
                      int W, int OW)
{
    for (int c = 0; c < Cg; c++) {
        const float *plane = in + (size_t)c * sc;
        float *o = Ro + (size_t)c * 3 * p->ldo, *e = Re + (size_t)c * 3 * p->lde;
        for (int r = 0; r <= nr; r++) {
            const int ir = 2 * (h0 + r) - 1;
            if (ir < 0)
                for (int kw = 0; kw < 3; kw++)
                    memset(o + kw * p->ldo + (size_t)r * OW, 0, (size_t)OW * sizeof(float));
            else
                par_row(o + (size_t)r * OW, p->ldo, plane + (size_t)ir * W, OW);
        }
        for (int r = 0; r < nr; r++)
            par_row(e + (size_t)r * OW, p->lde, plane + (size_t)(2 * (h0 + r)) * W, OW);
    }
}

/* out (+bias, activation) by parity: out row oh reads input rows 2*oh-1
 * (kh = 0), 2*oh (kh = 1) and 2*oh+1 (kh = 2), that is odd buffer row j,
 * even row j and odd row j+1 of the chunk: three GEMMs over C*KW rows each,
 * with the per-kernel-row weights of the by-columns path. */
static void conv_par_forward(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w, const float *b,
                             const mg_conv2d_shape *s, float *scratch, int act, double *sums)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G, OH = s->OH, OW = s->OW, Kc = Cg * 3;
    const par_geom p = par_geom_of(s);
    float *R = scratch, *wk = R + par_chunk_floats(s, &p), *wide = wk + (size_t)9 * OCg * Cg;
    const int direct = !b && act == MG_NO_ACT, ldc = direct ? (int)lo.sc : (int)p.lde;
    for (int g = 0; g < G; g++) {
        kernel_row_weights(wk, w, g, OCg, Cg, 3, 3);
        for (int n = 0; n < s->N; n++)
            for (int h0 = 0; h0 < OH; h0 += p.per) {
                const int nr = OH - h0 < p.per ? OH - h0 : p.per, ncols = nr * OW;
                const size_t at = (size_t)n * lo.sn + (size_t)h0 * OW;
                float *Ro = R, *Re = Ro + (size_t)Kc * p.ldo;
                par_build(Ro, Re, &p, inp + (size_t)n * li.sn + (size_t)g * Cg * li.sc, li.sc, Cg, h0, nr, s->W, OW);
                float *c0 = direct ? out + at + (size_t)g * OCg * lo.sc : wide;
                mg_gemm(0, OCg, ncols, Kc, wk + (size_t)OCg * Kc, Kc, Re, (int)p.lde, 0.0f, c0, ldc);
                mg_gemm(0, OCg, ncols, Kc, wk, Kc, Ro, (int)p.ldo, 1.0f, c0, ldc);
                mg_gemm(0, OCg, ncols, Kc, wk + (size_t)2 * OCg * Kc, Kc, Ro + OW, (int)p.ldo, 1.0f, c0, ldc);
                chunk_out(out, lo, at, wide, p.lde, g, OCg, ncols, b, act, sums, n == 0);
            }
    }
}

/* d[0..2n) = e[0], o[0], e[1], o[1], ... (+= when acc): an input row from
 * its even and odd columns. */
static inline void interleave2(float *restrict d, const float *restrict e, const float *restrict o, int n, int acc)
{
    int k = 0;
#ifdef __SSE__
    for (; k + 4 <= n; k += 4) {
        const __m128 a = _mm_loadu_ps(e + k), c = _mm_loadu_ps(o + k);
        __m128 lo = _mm_unpacklo_ps(a, c), hi = _mm_unpackhi_ps(a, c);
        if (acc) {
            lo = _mm_add_ps(_mm_loadu_ps(d + 2 * k), lo);
            hi = _mm_add_ps(_mm_loadu_ps(d + 2 * k + 4), hi);
        }
        _mm_storeu_ps(d + 2 * k, lo);
        _mm_storeu_ps(d + 2 * k + 4, hi);
    }
#endif
    for (; k < n; k++) {
        d[2 * k] = acc ? d[2 * k] + e[k] : e[k];
        d[2 * k + 1] = acc ? d[2 * k + 1] + o[k] : o[k];
    }
}

/* The input-gradient weights of the parity path, each (Cg, OCg) or (Cg,
 * 2*OCg) over the output gradient's buffer rows (s, oc), s = 0 the gradient
 * itself and s = 1 it a column later (see conv_par_backward), in this order:
 * even rows and columns (kh,kw) = (1,1); even rows, odd columns (1,2 | 1,0);
 * odd rows, even columns (0,1) and (2,1); odd rows and columns (0,2 | 0,0)
 * and (2,2 | 2,0). */
static void par_dinp_weights(float *wq, const float *wg, int Cg, int OCg)
{
    static const int taps[6][2][2] = {{{1, 1}, {-1, -1}}, {{1, 2}, {1, 0}}, {{0, 1}, {-1, -1}},
                                      {{2, 1}, {-1, -1}}, {{0, 2}, {0, 0}}, {{2, 2}, {2, 0}}};
    for (int t = 0; t < 6; t++) {
        const int K = taps[t][1][0] < 0 ? OCg : 2 * OCg;
        for (int c = 0; c < Cg; c++)
            for (int k = 0; k < K; k++) {
                const int sh = k / OCg, oc = k % OCg, kh = taps[t][sh][0], kw = taps[t][sh][1];
                wq[(size_t)c * K + k] = wg[(((size_t)oc * Cg + c) * 3 + kh) * 3 + kw];
            }
        wq += (size_t)Cg * K;
    }
}

/* dw += the weight gradient and dinp (+)= the input gradient by parity. The
 * weight gradient's GEMMs pair the forward's three buffers (built again)
 * with the chunk's output gradient transposed. The input gradient
 * comes whole for input rows 2*h0 .. 2*(h0+nr)-1 from the output rows h0 ..
 * h0+nr (the last one the next chunk's, or zeros): input row 2a reads output
 * row a (kh = 1), row 2a+1 output rows a+1 (kh = 0) and a (kh = 2); column
 * 2b output column b (kw = 1), column 2b+1 columns b+1 (kw = 0) and b
 * (kw = 2). So each of the four parities of the input gradient is one or two
 * GEMMs over a buffer D of the output gradient's rows (s, oc) (s = 1: a
 * column later), and one pass interleaves them into dinp. */
static void conv_par_backward(float *dinp, mg_layout li, int overwrite, float *dw, const float *dout, mg_layout lo,
                              const float *inp, const float *w, const mg_conv2d_shape *s, float *scratch)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G, OH = s->OH, OW = s->OW, W = s->W, Kc = Cg * 3;
    const par_geom p = par_geom_of(s);
    const size_t ncmax = (size_t)p.per * OW, cs = (size_t)Cg * OCg;
    float *R = scratch, *dT = R + par_chunk_floats(s, &p), *D = dT + ncmax * OCg, *P = D + 2 * (size_t)OCg * p.ldo;
    float *wq = P + 4 * (size_t)Cg * p.lde, *dwk = wq + 9 * cs;
    float *pee = P, *peo = P + (size_t)Cg * p.lde, *poe = peo + (size_t)Cg * p.lde, *poo = poe + (size_t)Cg * p.lde;
    const float *wee = wq, *weo = wee + cs, *woe0 = weo + 2 * cs, *woe2 = woe0 + cs, *woo0 = woe2 + cs;
    const float *woo2 = woo0 + 2 * cs;
    const int ldd = (int)p.ldo, lde = (int)p.lde;
    for (int g = 0; g < G; g++) {
        const float *wg = w + (size_t)g * OCg * Cg * 9;
        if (dinp)
            par_dinp_weights(wq, wg, Cg, OCg);
        memset(dwk, 0, (size_t)3 * Kc * OCg * sizeof(float));
        for (int n = 0; n < s->N; n++)
            for (int h0 = 0; h0 < OH; h0 += p.per) {
                const int nr = OH - h0 < p.per ? OH - h0 : p.per, ncols = nr * OW;
                float *Ro = R, *Re = R + (size_t)Kc * p.ldo;
                par_build(Ro, Re, &p, inp + (size_t)n * li.sn + (size_t)g * Cg * li.sc, li.sc, Cg, h0, nr, W, OW);
                const float *dch = dout + (size_t)n * lo.sn + (size_t)g * OCg * lo.sc + (size_t)h0 * OW;
                transpose_rows(dT, dch, lo.sc, OCg, ncols);
                mg_gemm(0, Kc, OCg, ncols, Ro, (int)p.ldo, dT, OCg, 1.0f, dwk, OCg);
                mg_gemm(0, Kc, OCg, ncols, Re, lde, dT, OCg, 1.0f, dwk + (size_t)Kc * OCg, OCg);
                mg_gemm(0, Kc, OCg, ncols, Ro + OW, (int)p.ldo, dT, OCg, 1.0f, dwk + (size_t)2 * Kc * OCg, OCg);
                if (!dinp)
                    continue;
                for (int oc = 0; oc < OCg; oc++)
                    for (int r = 0; r <= nr; r++) {
                        float *d0 = D + (size_t)oc * ldd + (size_t)r * OW, *d1 = d0 + (size_t)OCg * ldd;
                        if (h0 + r >= OH) {
                            memset(d0, 0, (size_t)OW * sizeof(float));
                            memset(d1, 0, (size_t)OW * sizeof(float));
                            continue;
                        }
                        const float *src = dch + (size_t)oc * lo.sc + (size_t)r * OW;
                        memcpy(d0, src, (size_t)OW * sizeof(float));
                        memcpy(d1, src + 1, (size_t)(OW - 1) * sizeof(float));
                        d1[OW - 1] = 0.0f;
                    }
                mg_gemm(0, Cg, ncols, OCg, wee, OCg, D, ldd, 0.0f, pee, lde);
                mg_gemm(0, Cg, ncols, 2 * OCg, weo, 2 * OCg, D, ldd, 0.0f, peo, lde);
                mg_gemm(0, Cg, ncols, OCg, woe0, OCg, D + OW, ldd, 0.0f, poe, lde);
                mg_gemm(0, Cg, ncols, OCg, woe2, OCg, D, ldd, 1.0f, poe, lde);
                mg_gemm(0, Cg, ncols, 2 * OCg, woo0, 2 * OCg, D + OW, ldd, 0.0f, poo, lde);
                mg_gemm(0, Cg, ncols, 2 * OCg, woo2, 2 * OCg, D, ldd, 1.0f, poo, lde);
                for (int c = 0; c < Cg; c++) {
                    float *dp = dinp + (size_t)n * li.sn + (size_t)(g * Cg + c) * li.sc + (size_t)2 * h0 * W;
                    const size_t q = (size_t)c * p.lde;
                    for (int r = 0; r < nr; r++, dp += 2 * W) {
                        interleave2(dp, pee + q + (size_t)r * OW, peo + q + (size_t)r * OW, OW, !overwrite);
                        interleave2(dp + W, poe + q + (size_t)r * OW, poo + q + (size_t)r * OW, OW, !overwrite);
                    }
                }
            }
        float *dwg = dw + (size_t)g * OCg * Cg * 9;
        for (int kh = 0; kh < 3; kh++)
            for (int k = 0; k < Kc; k++)
                for (int oc = 0; oc < OCg; oc++)
                    dwg[((size_t)oc * Cg + k / 3) * 9 + kh * 3 + k % 3] += dwk[((size_t)kh * Kc + k) * OCg + oc];
    }
}

/* The columns a strided convolution's forward gathers (the im2col path in
 * both directions: stride-1 convolutions run pointwise, by kernel columns or
 * with flipped filters, depthwise ones without columns) are the ones its
 * backward needs for the weight gradient, and gathering them costs more than
 * reading them back. A stride-1 gather is a few row copies from an input
 * still in cache, cheaper than writing the columns out and reading them back
 * (LeNet-5's step took 4 % longer so), and keeps no columns; nor does the
 * parity path, whose buffers (1.5 floats per input float, im2col's 2.25)
 * cost about as much to build again as to write out and read back. */
size_t mg_conv2d_cols_floats(const mg_conv2d_shape *s)
{
    if (s->stride == 1 || conv_is_depthwise(s) || conv_par_ok(s))
        return 0;
    return (size_t)s->C * s->KH * s->KW * s->N * s->OH * s->OW;
}

/* Where group g's columns of the chunk from output row r0 lie in the kept
 * buffer: the chunks of a group one after another, each (Cg*KH*KW, its
 * columns), as im2col writes them. */
static size_t cols_off(const mg_conv2d_shape *s, int g, int r0)
{
    const size_t K = (size_t)(s->C / conv_groups(s)) * s->KH * s->KW;
    return K * ((size_t)g * s->N * s->OH * s->OW + (size_t)r0 * s->OW);
}

/* out (N,OC,OH,OW) = act(conv(inp (N,C,H,W), w (OC,C/g,KH,KW)) + b (OC)),
 * with the sample and channel strides of inp and out given by li and lo. The
 * GEMMs write each chunk of output positions and the bias and activation
 * follow on that chunk while it is in cache. */
void mg_conv2d_forward_act(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w,
                           const float *b, const mg_conv2d_shape *s, float *scratch, int act)
{
    mg_conv2d_forward_kept(out, lo, inp, li, w, b, s, scratch, act, NULL);
}

void mg_conv2d_forward_kept(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w, const float *b,
                            const mg_conv2d_shape *s, float *scratch, int act, float *kept)
{
    mg_conv2d_forward_sums(out, lo, inp, li, w, b, s, scratch, act, kept, NULL);
}

/* The paths whose chunks are whole output planes of one sample (by kernel
 * columns, by parity) sum each plane for the batch norm after them while it
 * is in cache. */
static int conv_plane_chunks(const mg_conv2d_shape *s)
{
    if (conv_cols_forward_ok(s))
        return cols_rows_per_chunk(s) == s->H;
    if (conv_par_ok(s))
        return par_geom_of(s).per == s->OH;
    return 0;
}

int mg_conv2d_forward_sums(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w, const float *b,
                           const mg_conv2d_shape *s, float *scratch, int act, float *kept, double *sums)
{
    if (mg_conv3_ok(s) && (act == MG_NO_ACT || act == MG_ACT_RELU))
        return mg_conv3_forward(out, lo, inp, li, w, b, s, scratch, act, sums);
    if (sums && !(conv_plane_chunks(s) && mg_bn_sums_by_plane(s->OH * s->OW)))
        sums = NULL;
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G, N = s->N;
    const int K = Cg * s->KH * s->KW, OW = s->OW;
    const col_geom geom = geom_of(s);
    if (conv_is_depthwise(s)) {
        const int mult = s->OC / s->C, KK = s->KH * s->KW;
        const size_t P = (size_t)s->OH * OW;
        for (int n = 0; n < N; n++)
            for (int oc = 0; oc < s->OC; oc++) {
                float *op = out + (size_t)n * lo.sn + (size_t)oc * lo.sc;
                depthwise_plane_forward(op, inp + (size_t)n * li.sn + (size_t)(oc / mult) * li.sc,
                                        w + (size_t)oc * KK, b ? b[oc] : 0.0f, s);
                if (act != MG_NO_ACT)
                    bias_act(op, NULL, P, act);
            }
        return 0;
    }
    if (conv_cols_forward_ok(s)) {
        conv_cols_forward(out, lo, inp, li, w, b, s, scratch, act, sums);
        return sums != NULL;
    }
    if (conv_par_ok(s)) {
        conv_par_forward(out, lo, inp, li, w, b, s, scratch, act, sums);
        return sums != NULL;
    }
    const int pw = conv_is_pointwise(s);
    const row_chunks rc = chunks_of(N, s->OH, OW,
                                    samples_contiguous(lo, N, s->OH * OW) &&
                                        (!pw || samples_contiguous(li, N, s->H * s->W)),
                                    chunk_target(s, s->KH * s->KW));
    for (int r0 = 0; r0 < rc.total;) {
        const int nr = chunk_len(&rc, r0), ncols = nr * OW;
        const size_t ooff = row_off(lo, &rc, r0), ioff = row_off(li, &rc, r0);
        for (int g = 0; g < G; g++) {
            const float *col;
            int ldb;
            if (pw) {
                col = inp + (size_t)g * Cg * li.sc + ioff;
                ldb = (int)li.sc;
            } else {
                float *dst = kept ? kept + cols_off(s, g, r0) : scratch;
                im2col(dst, inp + (size_t)g * Cg * li.sc, li, Cg, r0, nr, &geom);
                col = dst;
                ldb = ncols;
            }
            mg_gemm(0, OCg, ncols, K, w + (size_t)g * OCg * K, K, col, ldb, 0.0f, out + (size_t)g * OCg * lo.sc + ooff,
                    (int)lo.sc);
        }
        if (b || act != MG_NO_ACT)
            for (int oc = 0; oc < s->OC; oc++) {
                float *orow = out + (size_t)oc * lo.sc + ooff;
                if (b)
                    bias1_act(orow, b[oc], (size_t)ncols, act);
                else
                    bias_act(orow, NULL, (size_t)ncols, act);
            }
        r0 += nr;
    }
    return 0;
}

void mg_conv2d_forward_lay(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w,
                           const float *b, const mg_conv2d_shape *s, float *scratch)
{
    mg_conv2d_forward_act(out, lo, inp, li, w, b, s, scratch, MG_NO_ACT);
}

/* c (M,N) += a (M,K) b^T for b (N,K) with leading dimension ldb: the weight
 * gradients' GEMMs, K the output positions of a chunk. OpenBLAS runs small
 * products on kernels that skip its packing copies, but takes this
 * transposed form there only while M*N <= 1200; for the larger ones up to
 * 10^6 multiply-adds (LeNet's second convolution among them) the plain form
 * c += a bt, with b transposed into bt (K,N) here, which costs a copy of the
 * narrow operand only, stays on them and runs about a third faster. */
static void gemm_abt_acc(float *c, const float *a, int lda, const float *b, int ldb, int M, int N, int K,
                         float *bt)
{
    if ((size_t)M * N > 1200 && (double)M * N * K <= SMALL_GEMM_MACS) {
        transpose_rows(bt, b, (size_t)ldb, N, K);
        mg_gemm(0, M, N, K, a, lda, bt, N, 1.0f, c, N);
        return;
    }
    mg_gemm_nt(M, N, K, a, lda, b, ldb, 1.0f, c, N);
}

/* Per group: dw_g += dout_g col_g^T (accumulated transposed, as col dout^T,
 * which runs faster); dinp_g (+)= col2im(w_g^T dout_g), or for stride 1 the
 * convolution of dout_g with the flipped, transposed filters. overwrite:
 * dinp is written instead of added to. */
void mg_conv2d_backward_lay(float *dinp, mg_layout li, int overwrite, float *dw, float *db, const float *dout,
                            mg_layout lo, const float *inp, const float *w, const mg_conv2d_shape *s,
                            float *scratch)
{
    mg_conv2d_backward_kept(dinp, li, overwrite, dw, db, dout, lo, inp, w, s, scratch, NULL);
}

void mg_conv2d_backward_kept(float *dinp, mg_layout li, int overwrite, float *dw, float *db, const float *dout,
                             mg_layout lo, const float *inp, const float *w, const mg_conv2d_shape *s, float *scratch,
                             const float *kept)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G, N = s->N;
    const int P = s->OH * s->OW, HW = s->H * s->W, KK = s->KH * s->KW, K = Cg * KK, OW = s->OW;
    const col_geom geom = geom_of(s);
    if (db) {
        const int whole = samples_contiguous(lo, N, P);   /* a channel's samples form one row */
        for (int oc = 0; oc < s->OC; oc++) {
            double acc = 0.0;
            for (int n = 0; n < (whole ? 1 : N); n++)
                acc += mg_sum(dout + (size_t)n * lo.sn + (size_t)oc * lo.sc, whole ? (size_t)N * P : (size_t)P);
            db[oc] += (float)acc;
        }
    }
    /* The flipped-filter path needs the input gradient to pay off, and its
     * im2col of dout has OC/C times the rows of an im2col of the input: a
     * first layer, or one that widens much, takes the plain path. */
    const int pw = conv_is_pointwise(s), as_conv = conv_grad_as_conv(s) && dinp && OCg <= 2 * Cg;
    if (mg_conv3_backward_ok(s)) {
        mg_conv3_backward(dinp, li, overwrite, dw, dout, lo, inp, w, s, scratch);
        return;
    }
    if (dinp && conv_cols_backward_ok(s)) {
        conv_cols_backward(dinp, li, overwrite, dw, dout, lo, inp, w, s, scratch);
        return;
    }
    if (conv_par_ok(s)) {
        conv_par_backward(dinp, li, overwrite, dw, dout, lo, inp, w, s, scratch);
        return;
    }
    /* A strided 1x1 convolution writes its input gradient whole (col2im_write_k1). */
    const int k1 = s->KH == 1 && s->KW == 1 && s->pad == 0 && !pw && !conv_is_depthwise(s);
    if (dinp && overwrite && !(as_conv || pw || k1)) {
        for (int n = 0; n < N; n++)
            for (int c = 0; c < s->C; c++)
                memset(dinp + (size_t)n * li.sn + (size_t)c * li.sc, 0, (size_t)HW * sizeof(float));
        overwrite = 0;
    }
    if (conv_is_depthwise(s)) {
        const int mult = s->OC / s->C;
        for (int n = 0; n < N; n++)
            for (int oc = 0; oc < s->OC; oc++) {
                const size_t ii = (size_t)n * li.sn + (size_t)(oc / mult) * li.sc;
                depthwise_plane_backward(dinp ? dinp + ii : NULL, dw + (size_t)oc * KK,
                                         dout + (size_t)n * lo.sn + (size_t)oc * lo.sc, inp + ii, w + (size_t)oc * KK,
                                         s);
            }
        return;
    }
    size_t rows = pw ? 0 : (size_t)K;
    if (as_conv && (size_t)OCg * KK > rows)
        rows = (size_t)OCg * KK;
    float *col = scratch, *dwt = col + rows * col_cols(s), *wflip = dwt + (size_t)K * OCg;
    float *bt = wflip + (conv_grad_as_conv(s) ? (size_t)Cg * OCg * KK : 0);
    const float beta = overwrite ? 0.0f : 1.0f;
    if (as_conv) {
        /* One im2col of dout over the input positions (the flipped geometry,
         * padding KH-1-pad) serves both gradients: dinp = wflip col and
         * dw[oc][c][flip k] = (col in^T)[oc,k][c], with the input read in place. */
        const col_geom tg = {s->OH, s->OW, s->H, s->W, s->KH, s->KW, 1, s->KH - 1 - s->pad};
        const row_chunks ic = chunks_of(N, s->H, s->W, samples_contiguous(li, N, HW), chunk_target(s, KK));
        for (int g = 0; g < G; g++) {
            const float *wg = w + (size_t)g * OCg * K, *dg = dout + (size_t)g * OCg * lo.sc;
            const float *ing = inp + (size_t)g * Cg * li.sc;
            float *dig = dinp ? dinp + (size_t)g * Cg * li.sc : NULL;
            /* wflip (Cg, OCg*KH*KW): wflip[c][oc][kh][kw] = w[oc][c][KH-1-kh][KW-1-kw]. */
            for (int oc = 0; oc < OCg && dig; oc++)
                for (int c = 0; c < Cg; c++)
                    for (int k = 0; k < KK; k++)
                        wflip[((size_t)c * OCg + oc) * KK + k] = wg[((size_t)oc * Cg + c) * KK + (KK - 1 - k)];
            memset(dwt, 0, (size_t)K * OCg * sizeof(float));
            for (int r0 = 0; r0 < ic.total;) {
                const int nr = chunk_len(&ic, r0), ncols = nr * s->W;
                const size_t ioff = row_off(li, &ic, r0);
                im2col(col, dg, lo, OCg, r0, nr, &tg);
                gemm_abt_acc(dwt, col, ncols, ing + ioff, (int)li.sc, OCg * KK, Cg, ncols, bt);
                if (dig)
                    mg_gemm(0, Cg, ncols, OCg * KK, wflip, OCg * KK, col, ncols, beta, dig + ioff, (int)li.sc);
                r0 += nr;
            }
            float *dwg = dw + (size_t)g * OCg * K;
            for (int oc = 0; oc < OCg; oc++)
                for (int c = 0; c < Cg; c++)
                    for (int k = 0; k < KK; k++)
                        dwg[((size_t)oc * Cg + c) * KK + (KK - 1 - k)] += dwt[((size_t)oc * KK + k) * Cg + c];
        }
        return;
    }
    const row_chunks rc =
        chunks_of(N, s->OH, OW, samples_contiguous(lo, N, P) && (!pw || samples_contiguous(li, N, HW)),
                  chunk_target(s, KK));
    for (int g = 0; g < G; g++) {
        const float *wg = w + (size_t)g * OCg * K, *dg = dout + (size_t)g * OCg * lo.sc;
        const float *ing = inp + (size_t)g * Cg * li.sc;
        float *dig = dinp ? dinp + (size_t)g * Cg * li.sc : NULL;
        memset(dwt, 0, (size_t)K * OCg * sizeof(float));
        for (int r0 = 0; r0 < rc.total;) {
            const int nr = chunk_len(&rc, r0), ncols = nr * OW;
            const size_t ooff = row_off(lo, &rc, r0), ioff = row_off(li, &rc, r0);
            const float *a;
            int lda;
            if (pw) {
                a = ing + ioff;
                lda = (int)li.sc;
            } else if (kept) {
                a = kept + cols_off(s, g, r0);
                lda = ncols;
            } else {
                im2col(col, ing, li, Cg, r0, nr, &geom);
                a = col;
                lda = ncols;
            }
            gemm_abt_acc(dwt, a, lda, dg + ooff, (int)lo.sc, K, OCg, ncols, bt);
            if (dig && pw) {
                mg_gemm(1, Cg, ncols, OCg, wg, K, dg + ooff, (int)lo.sc, beta, dig + ioff, (int)li.sc);
            } else if (dig) {
                /* The column buffer is free again once dw has consumed it. */
                mg_gemm(1, K, ncols, OCg, wg, K, dg + ooff, (int)lo.sc, 0.0f, col, ncols);
                if (k1 && overwrite)
                    col2im_write_k1(dig, li, col, Cg, r0, nr, &geom);
                else
                    col2im_add(dig, li, col, Cg, r0, nr, &geom);
            }
            r0 += nr;
        }
        float *dwg = dw + (size_t)g * OCg * K;
        for (int oc = 0; oc < OCg; oc++)
            for (int k = 0; k < K; k++)
                dwg[(size_t)oc * K + k] += dwt[(size_t)k * OCg + oc];
    }
}

/* out (N,OC,OH,OW) = conv(inp (N,C,H,W), w (OC,C/g,KH,KW)) + b (OC) */
void mg_conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                       const mg_conv2d_shape *s, float *scratch)
{
    mg_layout li = {(size_t)s->C * s->H * s->W, (size_t)s->H * s->W};
    mg_layout lo = {(size_t)s->OC * s->OH * s->OW, (size_t)s->OH * s->OW};
    mg_conv2d_forward_lay(out, lo, inp, li, w, b, s, scratch);
}

void mg_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const mg_conv2d_shape *s, float *scratch)
{
    mg_layout li = {(size_t)s->C * s->H * s->W, (size_t)s->H * s->W};
    mg_layout lo = {(size_t)s->OC * s->OH * s->OW, (size_t)s->OH * s->OW};
    mg_conv2d_backward_lay(dinp, li, 0, dw, db, dout, lo, inp, w, s, scratch);
}

/* ---- branch-free selection ----------------------------------------------------------- */

/* The activation and pooling comparisons are data-dependent coin flips; a
 * branch per element mispredicts half the time and costs more than the GEMMs,
 * so the hot loops select through bit masks instead. */
static inline uint32_t f2u(float f)
{
    uint32_t u;
    memcpy(&u, &f, sizeof u);
    return u;
}

static inline float u2f(uint32_t u)
{
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

/* c ? a : b for c in {0, 1}, without a branch. */
static inline float fsel(uint32_t c, float a, float b)
{
    uint32_t m = 0u - c;
    return u2f((f2u(a) & m) | (f2u(b) & ~m));
}

/* ---- max pool ------------------------------------------------------------------- */

/* 1 if v replaces best: v > best, or v is a NaN and best is not. */
static inline uint32_t pool_take(float v, float best)
{
    return (uint32_t)!(v <= best) & (uint32_t)(best == best);
}

/* Output ow of a 2x2 pool over input rows r0, r1 (flat index of r0[0]: i0)
 * as a two-level tournament: each row's winner, then the second row's only
 * if strictly larger, which keeps the first maximum. */
static inline void pool2_window(float *restrict o, int32_t *restrict a, const float *restrict r0,
                                const float *restrict r1, int32_t i0, int W, int ow)
{
    const float p0 = r0[2 * ow], p1 = r0[2 * ow + 1], p2 = r1[2 * ow], p3 = r1[2 * ow + 1];
    const uint32_t t0 = pool_take(p1, p0), t1 = pool_take(p3, p2);
    const float m0 = fsel(t0, p1, p0), m1 = fsel(t1, p3, p2);
    const int32_t j0 = i0 + 2 * ow + (int32_t)t0, j1 = i0 + W + 2 * ow + (int32_t)t1;
    const uint32_t t = pool_take(m1, m0);
    o[ow] = fsel(t, m1, m0);
    a[ow] = j0 + ((int32_t)(0u - t) & (j1 - j0));
}

/* The windows along an output row run in blocks of four (the rows of the
 * small networks are 5 to 16 windows wide) that compile to SIMD code. */
enum { POOL_BLOCK = 4 };

static void maxpool2_forward(float *restrict out, int32_t *restrict argmax, const float *restrict inp, int NC, int H,
                             int W)
{
    const int OH = H / 2, OW = W / 2;
    for (int nc = 0; nc < NC; nc++) {
        const float *plane = inp + (size_t)nc * H * W;
        const int32_t base = (int32_t)((size_t)nc * H * W);
        for (int oh = 0; oh < OH; oh++) {
            float *o = out + ((size_t)nc * OH + oh) * OW;
            int32_t *a = argmax + ((size_t)nc * OH + oh) * OW;
            const float *r0 = plane + (size_t)2 * oh * W, *r1 = r0 + W;
            const int32_t i0 = base + 2 * oh * W;
            int ow = 0;
            for (; ow + POOL_BLOCK <= OW; ow += POOL_BLOCK)
                for (int j = 0; j < POOL_BLOCK; j++)
                    pool2_window(o, a, r0, r1, i0, W, ow + j);
            for (; ow < OW; ow++)
                pool2_window(o, a, r0, r1, i0, W, ow);
        }
    }
}

/* g where the flat index i is the window's argmax, else 0. */
static inline float pool_grad(int32_t arg, int32_t i, float g)
{
    return u2f(f2u(g) & (0u - (uint32_t)(arg == i)));
}

/* The gradient of window ow into its two inputs on one input row d, whose
 * first float has flat index i: written, or added. */
static inline void pool2_row_grad(float *restrict d, const float *restrict g, const int32_t *restrict a, int32_t i,
                                  int ow, const int acc)
{
    const float v0 = pool_grad(a[ow], i + 2 * ow, g[ow]), v1 = pool_grad(a[ow], i + 2 * ow + 1, g[ow]);
    d[2 * ow] = acc ? d[2 * ow] + v0 : v0;
    d[2 * ow + 1] = acc ? d[2 * ow + 1] + v1 : v1;
}

static inline void pool2_row(float *restrict d, const float *restrict g, const int32_t *restrict a, int32_t i, int OW,
                      const int acc)
{
    int ow = 0;
    for (; ow + POOL_BLOCK <= OW; ow += POOL_BLOCK)
        for (int j = 0; j < POOL_BLOCK; j++)
            pool2_row_grad(d, g, a, i, ow + j, acc);
    for (; ow < OW; ow++)
        pool2_row_grad(d, g, a, i, ow, acc);
}

void mg_maxpool2_backward_cover(float *restrict dinp, int overwrite, const float *restrict dout,
                                const int32_t *restrict argmax, int NC, int H, int W)
{
    const int OH = H / 2, OW = W / 2;
    for (int nc = 0; nc < NC; nc++) {
        float *plane = dinp + (size_t)nc * H * W;
        const int32_t base = (int32_t)((size_t)nc * H * W);
        for (int oh = 0; oh < OH; oh++) {
            const float *g = dout + ((size_t)nc * OH + oh) * OW;
            const int32_t *a = argmax + ((size_t)nc * OH + oh) * OW;
            for (int r = 0; r < 2; r++) {
                float *d = plane + (size_t)(2 * oh + r) * W;
                const int32_t i = base + (2 * oh + r) * W;
                if (overwrite)
                    pool2_row(d, g, a, i, OW, 0);
                else
                    pool2_row(d, g, a, i, OW, 1);
            }
        }
    }
}

/* inp (N,C,H,W) -> out (N,C,H/k,W/k); ties keep the first maximum in row-major
 * window order, and a NaN wins so that it reaches the loss. For general k the
 * window offsets are the outer loops so that the innermost loop runs along an
 * output row with independent iterations. */
void mg_maxpool_forward(float *restrict out, int32_t *restrict argmax, const float *restrict inp, int N, int C, int H,
                        int W, int k)
{
    if (k == 2) {
        maxpool2_forward(out, argmax, inp, N * C, H, W);
        return;
    }
    const int OH = H / k, OW = W / k;
    for (int nc = 0; nc < N * C; nc++) {
        const float *plane = inp + (size_t)nc * H * W;
        const int32_t base = (int32_t)((size_t)nc * H * W);
        for (int oh = 0; oh < OH; oh++) {
            float *o = out + ((size_t)nc * OH + oh) * OW;
            int32_t *a = argmax + ((size_t)nc * OH + oh) * OW;
            const int32_t row0 = oh * k * W;
            for (int ow = 0; ow < OW; ow++) {
                o[ow] = plane[row0 + ow * k];
                a[ow] = row0 + ow * k;
            }
            for (int dh = 0; dh < k; dh++) {
                const int32_t row = row0 + dh * W;
                for (int dw = dh == 0 ? 1 : 0; dw < k; dw++) {
                    for (int ow = 0; ow < OW; ow++) {
                        const int32_t i = row + ow * k + dw;
                        float v = plane[i], best = o[ow];
                        uint32_t take = pool_take(v, best);
                        o[ow] = fsel(take, v, best);
                        a[ow] += (int32_t)(0u - take) & (i - a[ow]);
                    }
                }
            }
            for (int ow = 0; ow < OW; ow++)
                a[ow] += base;
        }
    }
}

void mg_maxpool_backward(float *dinp, const float *dout, const int32_t *argmax, int n_out)
{
    for (int i = 0; i < n_out; i++)
        dinp[argmax[i]] += dout[i];
}

/* ---- activations ----------------------------------------------------------------- */

/* Written as "negative -> 0" so that a NaN passes through to the loss, as in
 * torch.relu. The in-place and the out-of-place forms are separate loops:
 * each vectorises, where one loop over two pointers that may alias would not. */
static void relu_inplace(float *x, size_t n)
{
    size_t i = 0;
    for (; i + MG_BLOCK <= n; i += MG_BLOCK)
        for (int j = 0; j < MG_BLOCK; j++)
            x[i + j] = mg_relu1(x[i + j]);
    for (; i < n; i++)
        x[i] = mg_relu1(x[i]);
}

/* In place (out == inp) is allowed. */
void mg_relu_forward(float *out, const float *inp, size_t n)
{
    if (out == inp) {
        relu_inplace(out, n);
        return;
    }
    float *restrict o = out;
    const float *restrict x = inp;
    size_t i = 0;
    for (; i + MG_BLOCK <= n; i += MG_BLOCK)
        for (int j = 0; j < MG_BLOCK; j++)
            o[i + j] = mg_relu1(x[i + j]);
    for (; i < n; i++)
        o[i] = mg_relu1(x[i]);
}

/* The derivative is taken from the output: 1 where out > 0. */
void mg_relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    mg_vec_grad(dinp, dout, out, n, 1);
}

static void tanh_inplace(float *x, size_t n)
{
    size_t i = 0;
    for (; i + MG_BLOCK <= n; i += MG_BLOCK)
        for (int j = 0; j < MG_BLOCK; j++)
            x[i + j] = mg_tanh1(x[i + j]);
    for (; i < n; i++)
        x[i] = mg_tanh1(x[i]);
}

/* In place (out == inp) is allowed. */
void mg_tanh_forward(float *out, const float *inp, size_t n)
{
    if (out == inp) {
        tanh_inplace(out, n);
        return;
    }
    float *restrict o = out;
    const float *restrict x = inp;
    size_t i = 0;
    for (; i + MG_BLOCK <= n; i += MG_BLOCK)
        for (int j = 0; j < MG_BLOCK; j++)
            o[i + j] = mg_tanh1(x[i + j]);
    for (; i < n; i++)
        o[i] = mg_tanh1(x[i]);
}

void mg_tanh_backward(float *restrict dinp, const float *restrict dout, const float *restrict out, size_t n)
{
    size_t i = 0;
    for (; i + MG_BLOCK <= n; i += MG_BLOCK)
        for (int j = 0; j < MG_BLOCK; j++)
            dinp[i + j] += dout[i + j] * (1.0f - out[i + j] * out[i + j]);
    for (; i < n; i++)
        dinp[i] += dout[i] * (1.0f - out[i] * out[i]);
}

/* ---- softmax cross-entropy ----------------------------------------------------------- */

/* loss_n = log(sum_k exp(z_k - max)) + max - z_y, the log-sum-exp form that
 * neither overflows nor loses the small probabilities. */
double mg_softmax_xent_forward(float *probs, const float *logits, const int32_t *y, int N, int K)
{
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K;
        float *p = probs + (size_t)n * K;
        float mx = z[0];
        for (int k = 1; k < K; k++)
            if (z[k] > mx || isnan(z[k]))
                mx = z[k];
        double sum = 0.0;
        for (int k = 0; k < K; k++) {
            float e = expf(z[k] - mx);
            p[k] = e;
            sum += (double)e;
        }
        float inv = (float)(1.0 / sum);
        for (int k = 0; k < K; k++)
            p[k] *= inv;
        total += log(sum) + (double)mx - (double)z[y[n]];
    }
    return N > 0 ? total / N : 0.0;
}

void mg_softmax_xent_backward(float *dlogits, const float *probs, const int32_t *y, int N, int K)
{
    const float inv_n = 1.0f / (float)N;
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * K;
        float *d = dlogits + (size_t)n * K;
        for (int k = 0; k < K; k++)
            d[k] += (p[k] - (k == y[n] ? 1.0f : 0.0f)) * inv_n;
    }
}

/* Softmax of one row into p; returns log(sum exp(z - max)) + max, the log-partition. */
static double softmax_row(float *p, const float *z, int K)
{
    float mx = z[0];
    for (int k = 1; k < K; k++)
        if (z[k] > mx || isnan(z[k]))
            mx = z[k];
    double sum = 0.0;
    for (int k = 0; k < K; k++) {
        float e = expf(z[k] - mx);
        p[k] = e;
        sum += (double)e;
    }
    float inv = (float)(1.0 / sum);
    for (int k = 0; k < K; k++)
        p[k] *= inv;
    return log(sum) + (double)mx;
}

/* loss_n = lse - (1-eps) z_y - (eps/K) sum_k z_k, which is -sum_k t_k log p_k. */
double mg_softmax_xent_smooth_forward(float *probs, const float *logits, const int32_t *y, int N, int K,
                                      float eps)
{
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K;
        double lse = softmax_row(probs + (size_t)n * K, z, K);
        double zsum = 0.0;
        for (int k = 0; k < K; k++)
            zsum += (double)z[k];
        total += lse - (1.0 - (double)eps) * (double)z[y[n]] - (double)eps / K * zsum;
    }
    return N > 0 ? total / N : 0.0;
}

void mg_softmax_xent_smooth_backward(float *dlogits, const float *probs, const int32_t *y, int N, int K,
                                     float eps)
{
    const float inv_n = 1.0f / (float)N, off = eps / (float)K, on = 1.0f - eps + eps / (float)K;
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * K;
        float *d = dlogits + (size_t)n * K;
        for (int k = 0; k < K; k++)
            d[k] += (p[k] - (k == y[n] ? on : off)) * inv_n;
    }
}

double mg_softmax_xent_soft_forward(float *probs, const float *logits, const float *targets, int N, int K)
{
    double total = 0.0;
    for (int n = 0; n < N; n++) {
        const float *z = logits + (size_t)n * K, *t = targets + (size_t)n * K;
        double lse = softmax_row(probs + (size_t)n * K, z, K);
        for (int k = 0; k < K; k++)
            if (t[k] != 0.0f)
                total += (double)t[k] * (lse - (double)z[k]);
    }
    return N > 0 ? total / N : 0.0;
}

void mg_softmax_xent_soft_backward(float *dlogits, const float *probs, const float *targets, int N, int K)
{
    const float inv_n = 1.0f / (float)N;
    for (int n = 0; n < N; n++) {
        const float *p = probs + (size_t)n * K, *t = targets + (size_t)n * K;
        float *d = dlogits + (size_t)n * K;
        float tsum = 0.0f;
        for (int k = 0; k < K; k++)
            tsum += t[k];
        for (int k = 0; k < K; k++)
            d[k] += (p[k] * tsum - t[k]) * inv_n;
    }
}
