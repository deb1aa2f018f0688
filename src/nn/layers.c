/*
 * layers.c: the layer kernels of the training engine. Each layer is a pure
 * forward/backward pair over caller-owned buffers; backward accumulates (+=)
 * into every gradient it is given, so the caller decides when to zero.
 * This file holds the GEMM-backed layers, linear and conv2d (im2col, one
 * sample and group at a time so the column buffer stays in cache and the
 * scratch does not grow with the batch; depthwise convolutions run direct),
 * and the max pool, activations and loss of the first engine. Pooling,
 * normalisation, attention and the other element-wise layers live in the
 * other layers_*.c files.
 */
#include "miagrid/nn.h"

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

size_t mg_conv2d_scratch(const mg_conv2d_shape *s)
{
    if (conv_is_pointwise(s) || conv_is_depthwise(s))
        return 0;
    return (size_t)(s->C / conv_groups(s)) * s->KH * s->KW * (size_t)s->OH * s->OW;
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

/* col (Cg*KH*KW, OH*OW) from the Cg channels of one image img (Cg,H,W). */
static void im2col(float *col, const float *img, int Cg, const mg_conv2d_shape *s)
{
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride, pad = s->pad;
    for (int c = 0; c < Cg; c++) {
        const float *plane = img + (size_t)c * H * W;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                float *row = col + ((size_t)(c * s->KH + kh) * s->KW + kw) * OH * OW;
                int lo, hi;
                valid_range(kw, st, pad, W, OW, &lo, &hi);
                for (int oh = 0; oh < OH; oh++) {
                    float *dst = row + (size_t)oh * OW;
                    int ih = oh * st - pad + kh;
                    if (ih < 0 || ih >= H) {
                        memset(dst, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *src = plane + (size_t)ih * W;
                    const int shift = kw - pad;
                    for (int ow = 0; ow < lo; ow++)
                        dst[ow] = 0.0f;
                    if (st == 1) {
                        if (hi > lo)
                            memcpy(dst + lo, src + lo + shift, (size_t)(hi - lo) * sizeof(float));
                    } else {
                        for (int ow = lo; ow < hi; ow++)
                            dst[ow] = src[ow * st + shift];
                    }
                    for (int ow = hi; ow < OW; ow++)
                        dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* img (Cg,H,W) += the columns of col (Cg*KH*KW, OH*OW) scattered back; padding drops. */
static void col2im_add(float *img, const float *col, int Cg, const mg_conv2d_shape *s)
{
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride, pad = s->pad;
    for (int c = 0; c < Cg; c++) {
        float *plane = img + (size_t)c * H * W;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                const float *row = col + ((size_t)(c * s->KH + kh) * s->KW + kw) * OH * OW;
                int lo, hi;
                valid_range(kw, st, pad, W, OW, &lo, &hi);
                for (int oh = 0; oh < OH; oh++) {
                    int ih = oh * st - pad + kh;
                    if (ih < 0 || ih >= H)
                        continue;
                    const float *srcrow = row + (size_t)oh * OW;
                    float *dst = plane + (size_t)ih * W;
                    const int shift = kw - pad;
                    for (int ow = lo; ow < hi; ow++)
                        dst[ow * st + shift] += srcrow[ow];
                }
            }
        }
    }
}

/* Depthwise forward over one sample: input channel c feeds the OC/C output
 * channels c*mult .. c*mult+mult-1. The window offsets are the outer loops so
 * that the inner loop runs along an output row. */
static void depthwise_forward(float *o, const float *img, const float *w, const float *b, const mg_conv2d_shape *s)
{
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride, pad = s->pad;
    const int mult = s->OC / s->C, KK = s->KH * s->KW;
    for (int oc = 0; oc < s->OC; oc++) {
        const float *plane = img + (size_t)(oc / mult) * H * W;
        float *op = o + (size_t)oc * OH * OW;
        const float bv = b ? b[oc] : 0.0f;
        for (size_t p = 0; p < (size_t)OH * OW; p++)
            op[p] = bv;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                const float wv = w[(size_t)oc * KK + kh * s->KW + kw];
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
}

static void depthwise_backward(float *di, float *dw, const float *d, const float *img, const float *w,
                               const mg_conv2d_shape *s)
{
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW, st = s->stride, pad = s->pad;
    const int mult = s->OC / s->C, KK = s->KH * s->KW;
    for (int oc = 0; oc < s->OC; oc++) {
        const size_t in_off = (size_t)(oc / mult) * H * W;
        const float *plane = img + in_off;
        const float *dp = d + (size_t)oc * OH * OW;
        for (int kh = 0; kh < s->KH; kh++) {
            for (int kw = 0; kw < s->KW; kw++) {
                const size_t wi = (size_t)oc * KK + kh * s->KW + kw;
                const float wv = w[wi];
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
                        float *dst = di + in_off + (size_t)ih * W;
                        for (int ow = lo; ow < hi; ow++)
                            dst[ow * st + shift] += wv * drow[ow];
                    }
                }
                dw[wi] += acc;
            }
        }
    }
}

/* out (N,OC,OH,OW) = conv(inp (N,C,H,W), w (OC,C/g,KH,KW)) + b (OC) */
void mg_conv2d_forward(float *out, const float *inp, const float *w, const float *b,
                       const mg_conv2d_shape *s, float *scratch)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G;
    const int P = s->OH * s->OW, K = Cg * s->KH * s->KW;
    const size_t in_sz = (size_t)s->C * s->H * s->W, out_sz = (size_t)s->OC * P;
    const int pointwise = conv_is_pointwise(s);
    for (int n = 0; n < s->N; n++) {
        const float *img = inp + (size_t)n * in_sz;
        float *o = out + (size_t)n * out_sz;
        if (conv_is_depthwise(s)) {
            depthwise_forward(o, img, w, b, s);
            continue;
        }
        float beta = 0.0f;
        if (b) {
            for (int oc = 0; oc < s->OC; oc++) {
                float *orow = o + (size_t)oc * P;
                float bv = b[oc];
                for (int p = 0; p < P; p++)
                    orow[p] = bv;
            }
            beta = 1.0f;
        }
        for (int g = 0; g < G; g++) {
            const float *gimg = img + (size_t)g * Cg * s->H * s->W;
            const float *col = gimg;
            if (!pointwise) {
                im2col(scratch, gimg, Cg, s);
                col = scratch;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, OCg, P, K, 1.0f, w + (size_t)g * OCg * K, K,
                        col, P, beta, o + (size_t)g * OCg * P, P);
        }
    }
}

/* dout (N,OC,OH,OW); per group dw_g += dout_g @ col_g^T; dinp_g += col2im(w_g^T @ dout_g) */
void mg_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp,
                        const float *w, const mg_conv2d_shape *s, float *scratch)
{
    const int G = conv_groups(s), Cg = s->C / G, OCg = s->OC / G;
    const int P = s->OH * s->OW, K = Cg * s->KH * s->KW;
    const size_t in_sz = (size_t)s->C * s->H * s->W, out_sz = (size_t)s->OC * P;
    const int pointwise = conv_is_pointwise(s);
    for (int n = 0; n < s->N; n++) {
        const float *img = inp + (size_t)n * in_sz;
        const float *d = dout + (size_t)n * out_sz;
        float *di = dinp ? dinp + (size_t)n * in_sz : NULL;
        if (db) {
            for (int oc = 0; oc < s->OC; oc++) {
                const float *drow = d + (size_t)oc * P;
                float acc = 0.0f;
                for (int p = 0; p < P; p++)
                    acc += drow[p];
                db[oc] += acc;
            }
        }
        if (conv_is_depthwise(s)) {
            depthwise_backward(di, dw, d, img, w, s);
            continue;
        }
        for (int g = 0; g < G; g++) {
            const size_t goff = (size_t)g * Cg * s->H * s->W;
            const float *dg = d + (size_t)g * OCg * P, *wg = w + (size_t)g * OCg * K;
            const float *col = img + goff;
            if (!pointwise) {
                im2col(scratch, img + goff, Cg, s);
                col = scratch;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OCg, K, P, 1.0f, dg, P, col, P, 1.0f,
                        dw + (size_t)g * OCg * K, K);
            if (!di)
                continue;
            if (pointwise) {
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, OCg, 1.0f, wg, K, dg, P, 1.0f,
                            di + goff, P);
            } else {
                /* The column buffer is free again once dw has consumed it. */
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, K, P, OCg, 1.0f, wg, K, dg, P, 0.0f,
                            scratch, P);
                col2im_add(di + goff, scratch, Cg, s);
            }
        }
    }
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
    for (size_t i = 0; i < n; i++) {
        uint32_t keep = 0u - (uint32_t)!(inp[i] < 0.0f);
        out[i] = u2f(f2u(inp[i]) & keep);
    }
}

/* The derivative is taken from the output: 1 where out > 0. */
void mg_relu_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        uint32_t keep = 0u - (uint32_t)(out[i] > 0.0f);
        dinp[i] += u2f(f2u(dout[i]) & keep);
    }
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
