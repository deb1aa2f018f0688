/*
 * layers.c: the layer kernels of the training engine. Each layer is a pure
 * forward/backward pair over caller-owned buffers; backward accumulates (+=)
 * into every gradient it is given, so the caller decides when to zero.
 * This file holds the GEMM-backed layers, linear and conv2d, and the max
 * pool, activations and losses of the first engine; pooling, normalisation,
 * attention and the other element-wise layers live in the other layers_*.c.
 *
 * conv2d runs im2col + sgemm over chunks of about 256 output positions, so
 * the column buffer and OpenBLAS's packed copy of it stay in cache and the
 * scratch does not grow with the batch; with the model's channel-major layout
 * a chunk runs across samples. The input gradient of a stride-1 convolution
 * is the convolution of the output gradient with the flipped filters, whose
 * im2col also yields the weight gradient; depthwise convolutions run direct.
 */
#include "miagrid/nn.h"
#include "nn/nn_internal.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* OpenBLAS's cblas.h pulls in <complex.h>, whose macro I would rewrite the
 * dimension names below. */
#undef I

/* ---- linear ------------------------------------------------------------------ */

/* out (N,O) = inp (N,I) @ w (O,I)^T + b (O) */
void mg_linear_forward(float *out, const float *inp, const float *w, const float *b, int N, int I, int O)
{
    float beta = 0.0f;
    if (b) {
        for (int n = 0; n < N; n++)
            memcpy(out + (size_t)n * O, b, (size_t)O * sizeof(float));
        beta = 1.0f;
    }
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, N, O, I, 1.0f, inp, I, w, I, beta, out, O);
}

/* dout (N,O), inp (N,I), w (O,I) */
void mg_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, int N, int I, int O)
{
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, I, O, 1.0f, dout, O, w, I, 1.0f, dinp, I);
    cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, O, I, N, 1.0f, dout, O, inp, I, 1.0f, dw, I);
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

/* Output columns per GEMM: enough for the kernel to run at speed, few enough
 * that the column buffer and OpenBLAS's packed copy of it stay in cache.
 * Chunks are whole output rows and may run across samples when the layout
 * keeps a channel's samples contiguous. */
enum { CHUNK_COLS = 256 };

static size_t col_cols(const mg_conv2d_shape *s)
{
    size_t c = CHUNK_COLS;
    if ((size_t)s->OW > c)
        c = (size_t)s->OW;
    if ((size_t)s->W > c)
        c = (size_t)s->W;
    return c;
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
    return n;
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

/* col (Cg*KH*KW, nr*OW): row (c,kh,kw), columns the output rows r0 .. r0+nr-1
 * of the flattened (n, oh) index, read from the planes in + n*l.sn + c*l.sc. */
static void im2col(float *col, const float *in, mg_layout l, int Cg, int r0, int nr, const col_geom *g)
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
                int lo, hi;
                valid_range(kw, st, pad, W, OW, &lo, &hi);
                const int shift = kw - pad;
                for (int rr = 0; rr < nr; rr++) {
                    const int r = r0 + rr, n = r / OH, oh = r % OH;
                    float *dst = row + (size_t)rr * OW;
                    const int ih = oh * st - pad + kh;
                    if (ih < 0 || ih >= H) {
                        memset(dst, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *src = in + (size_t)n * l.sn + (size_t)c * l.sc + (size_t)ih * W;
                    for (int ow = 0; ow < lo; ow++)
                        dst[ow] = 0.0f;
                    for (int ow = lo; ow < hi; ow++)
                        dst[ow] = src[ow * st + shift];
                    for (int ow = hi; ow < OW; ow++)
                        dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* The planes of im2col += the columns of col scattered back; padding drops. */
static void col2im_add(float *in, mg_layout l, const float *col, int Cg, int r0, int nr, const col_geom *g)
{
    const int H = g->H, W = g->W, OH = g->OH, OW = g->OW, st = g->stride, pad = g->pad;
    const size_t ld = (size_t)nr * OW;
    for (int c = 0; c < Cg; c++) {
        for (int kh = 0; kh < g->KH; kh++) {
            for (int kw = 0; kw < g->KW; kw++) {
                const float *row = col + ((size_t)(c * g->KH + kh) * g->KW + kw) * ld;
                int lo, hi;
                valid_range(kw, st, pad, W, OW, &lo, &hi);
                const int shift = kw - pad;
                for (int rr = 0; rr < nr; rr++) {
                    const int r = r0 + rr, n = r / OH, oh = r % OH;
                    const int ih = oh * st - pad + kh;
                    if (ih < 0 || ih >= H)
                        continue;
                    const float *srcrow = row + (size_t)rr * OW;
                    float *dst = in + (size_t)n * l.sn + (size_t)c * l.sc + (size_t)ih * W;
                    for (int ow = lo; ow < hi; ow++)
                        dst[ow * st + shift] += srcrow[ow];
                }
            }
        }
    }
}

/* Chunks of output rows of the flattened (n, oh) index for planes of `rows`
 * rows of `cols` columns: at most max(1, CHUNK_COLS/cols) rows, and within one
 * sample unless `cross` (the layouts keep a channel's samples contiguous). */
typedef struct {
    int rows, cols, total, per, cross;
} row_chunks;

static row_chunks chunks_of(int N, int rows, int cols, int cross)
{
    row_chunks c = {rows, cols, N * rows, CHUNK_COLS / cols > 1 ? CHUNK_COLS / cols : 1, cross};
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

/* out (N,OC,OH,OW) = conv(inp (N,C,H,W), w (OC,C/g,KH,KW)) + b (OC), with the
 * sample and channel strides of inp and out given by li and lo. */
void mg_conv2d_forward_lay(float *out, mg_layout lo, const float *inp, mg_layout li, const float *w,
                           const float *b, const mg_conv2d_shape *s, float *scratch)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G, N = s->N;
    const int K = Cg * s->KH * s->KW, OW = s->OW;
    const col_geom geom = geom_of(s);
    if (conv_is_depthwise(s)) {
        const int mult = s->OC / s->C, KK = s->KH * s->KW;
        for (int n = 0; n < N; n++)
            for (int oc = 0; oc < s->OC; oc++)
                depthwise_plane_forward(out + (size_t)n * lo.sn + (size_t)oc * lo.sc,
                                        inp + (size_t)n * li.sn + (size_t)(oc / mult) * li.sc, w + (size_t)oc * KK,
                                        b ? b[oc] : 0.0f, s);
        return;
    }
    const int pw = conv_is_pointwise(s);
    const row_chunks rc = chunks_of(N, s->OH, OW,
                                    samples_contiguous(lo, N, s->OH * OW) &&
                                        (!pw || samples_contiguous(li, N, s->H * s->W)));
    for (int r0 = 0; r0 < rc.total;) {
        const int nr = chunk_len(&rc, r0), ncols = nr * OW;
        const size_t ooff = row_off(lo, &rc, r0), ioff = row_off(li, &rc, r0);
        float beta = 0.0f;
        if (b) {
            for (int oc = 0; oc < s->OC; oc++) {
                float *orow = out + (size_t)oc * lo.sc + ooff;
                const float bv = b[oc];
                for (int p = 0; p < ncols; p++)
                    orow[p] = bv;
            }
            beta = 1.0f;
        }
        for (int g = 0; g < G; g++) {
            const float *col;
            int ldb;
            if (pw) {
                col = inp + (size_t)g * Cg * li.sc + ioff;
                ldb = (int)li.sc;
            } else {
                im2col(scratch, inp + (size_t)g * Cg * li.sc, li, Cg, r0, nr, &geom);
                col = scratch;
                ldb = ncols;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OCg, ncols, K, 1.0f, w + (size_t)g * OCg * K, K,
                        col, ldb, beta, out + (size_t)g * OCg * lo.sc + ooff, (int)lo.sc);
        }
        r0 += nr;
    }
}

/* Per group: dw_g += dout_g col_g^T (accumulated transposed, as col dout^T,
 * which runs faster); dinp_g (+)= col2im(w_g^T dout_g), or for stride 1 the
 * convolution of dout_g with the flipped, transposed filters. overwrite:
 * dinp is written instead of added to. */
void mg_conv2d_backward_lay(float *dinp, mg_layout li, int overwrite, float *dw, float *db, const float *dout,
                            mg_layout lo, const float *inp, const float *w, const mg_conv2d_shape *s,
                            float *scratch)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G, N = s->N;
    const int P = s->OH * s->OW, HW = s->H * s->W, KK = s->KH * s->KW, K = Cg * KK, OW = s->OW;
    const col_geom geom = geom_of(s);
    if (db) {
        for (int oc = 0; oc < s->OC; oc++) {
            float acc = 0.0f;
            for (int n = 0; n < N; n++) {
                const float *drow = dout + (size_t)n * lo.sn + (size_t)oc * lo.sc;
                for (int p = 0; p < P; p++)
                    acc += drow[p];
            }
            db[oc] += acc;
        }
    }
    /* The flipped-filter path needs the input gradient to pay off, and its
     * im2col of dout has OC/C times the rows of an im2col of the input: a
     * first layer, or one that widens much, takes the plain path. */
    const int pw = conv_is_pointwise(s), as_conv = conv_grad_as_conv(s) && dinp && OCg <= 2 * Cg;
    if (dinp && overwrite && !(as_conv || pw)) {
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
    const float beta = overwrite ? 0.0f : 1.0f;
    if (as_conv) {
        /* One im2col of dout over the input positions (the flipped geometry,
         * padding KH-1-pad) serves both gradients: dinp = wflip col and
         * dw[oc][c][flip k] = (col in^T)[oc,k][c], with the input read in place. */
        const col_geom tg = {s->OH, s->OW, s->H, s->W, s->KH, s->KW, 1, s->KH - 1 - s->pad};
        const row_chunks ic = chunks_of(N, s->H, s->W, samples_contiguous(li, N, HW));
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
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OCg * KK, Cg, ncols, 1.0f, col, ncols, ing + ioff,
                            (int)li.sc, 1.0f, dwt, Cg);
                if (dig)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, Cg, ncols, OCg * KK, 1.0f, wflip, OCg * KK,
                                col, ncols, beta, dig + ioff, (int)li.sc);
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
        chunks_of(N, s->OH, OW, samples_contiguous(lo, N, P) && (!pw || samples_contiguous(li, N, HW)));
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
            } else {
                im2col(col, ing, li, Cg, r0, nr, &geom);
                a = col;
                lda = ncols;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, K, OCg, ncols, 1.0f, a, lda, dg + ooff, (int)lo.sc,
                        1.0f, dwt, OCg);
            if (dig && pw) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Cg, ncols, OCg, 1.0f, wg, K, dg + ooff,
                            (int)lo.sc, beta, dig + ioff, (int)li.sc);
            } else if (dig) {
                /* The column buffer is free again once dw has consumed it. */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, ncols, OCg, 1.0f, wg, K, dg + ooff,
                            (int)lo.sc, 0.0f, col, ncols);
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

/* The 2x2 window of LeNet as a two-level tournament: each row's winner, then
 * the second row's only if strictly larger, which keeps the first maximum. */
static void maxpool2_forward(float *out, int32_t *argmax, const float *inp, int NC, int H, int W)
{
    const int OH = H / 2, OW = W / 2;
    for (int nc = 0; nc < NC; nc++) {
        const float *plane = inp + (size_t)nc * H * W;
        const int32_t base = (int32_t)((size_t)nc * H * W);
        for (int oh = 0; oh < OH; oh++) {
            float *o = out + ((size_t)nc * OH + oh) * OW;
            int32_t *a = argmax + ((size_t)nc * OH + oh) * OW;
            for (int ow = 0; ow < OW; ow++) {
                const int32_t i0 = 2 * oh * W + 2 * ow, i1 = i0 + W;
                float p0 = plane[i0], p1 = plane[i0 + 1], p2 = plane[i1], p3 = plane[i1 + 1];
                uint32_t t0 = pool_take(p1, p0), t1 = pool_take(p3, p2);
                float m0 = fsel(t0, p1, p0), m1 = fsel(t1, p3, p2);
                int32_t j0 = i0 + (int32_t)t0, j1 = i1 + (int32_t)t1;
                uint32_t t = pool_take(m1, m0);
                o[ow] = fsel(t, m1, m0);
                a[ow] = base + j0 + ((int32_t)(0u - t) & (j1 - j0));
            }
        }
    }
}

/* inp (N,C,H,W) -> out (N,C,H/k,W/k); ties keep the first maximum in row-major
 * window order, and a NaN wins so that it reaches the loss. For general k the
 * window offsets are the outer loops so that the innermost loop runs along an
 * output row with independent iterations. */
void mg_maxpool_forward(float *out, int32_t *argmax, const float *inp, int N, int C, int H, int W, int k)
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

/* Written as "negative -> 0" so that a NaN passes through to the loss, as in torch.relu. */
void mg_relu_forward(float *out, const float *inp, size_t n)
{
    size_t i = 0;
    for (; i + MG_BLOCK <= n; i += MG_BLOCK)
        for (int j = 0; j < MG_BLOCK; j++)
            out[i + j] = mg_relu1(inp[i + j]);
    for (; i < n; i++)
        out[i] = mg_relu1(inp[i]);
}

/* The derivative is taken from the output: 1 where out > 0. */
void mg_relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    mg_vec_grad(dinp, dout, out, n, 1);
}

void mg_tanh_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = tanhf(inp[i]);
}

void mg_tanh_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
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
