/*
 * layers_norm.c: batch norm (1-d and 2-d, with torch's running statistics)
 * and layer norm. The batch-norm loops work one channel at a time: a
 * channel's N rows of S values are read once for the statistics (unless the
 * convolution before summed them while its output was in cache) and again
 * to normalise. The model calls the fused forms (a ReLU folded into the
 * normalisation, whose mask the backward reads as bits the forward kept,
 * and an overwrite mode that spares zeroing the input gradient) through
 * nn_internal.h.
 */
#include "miagrid/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <stdint.h>
#include <string.h>

#ifdef __SSE2__
#include <emmintrin.h>
#endif

/* Sum of x[0..n) with eight independent partial sums, so that the additions
 * pipeline (and vectorise) instead of waiting on one another. */
static float sum8(const float *restrict x, int n)
{
    float a[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++)
            a[j] += x[i + j];
    float t = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; i++)
        t += x[i];
    return t;
}

/* Sum of (x - m)^2. */
static float sqdev8(const float *restrict x, float m, int n)
{
    float a[8] = {0};
    int i = 0;
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float d = x[i + j] - m;
            a[j] += d * d;
        }
    float t = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    for (; i < n; i++) {
        float d = x[i] - m;
        t += d * d;
    }
    return t;
}

/* Sums of x - k and of (x - k)^2: a batch norm's statistics in one pass.
 * With k one of the values, the shift keeps the sum of squares from
 * cancelling against the squared sum (it would with k = 0 for a mean large
 * against the spread). */
static void shifted8(const float *restrict x, float k, int n, float *s1, float *s2)
{
    float a[8] = {0}, b[8] = {0};
    int i = 0;
#ifdef __SSE2__
    /* The same operations lane for lane, in registers (left to the compiler,
     * the lanes go through memory at every step). */
    const __m128 kv = _mm_set1_ps(k);
    __m128 a0 = _mm_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    for (; i + 8 <= n; i += 8) {
        const __m128 d0 = _mm_sub_ps(_mm_loadu_ps(x + i), kv), d1 = _mm_sub_ps(_mm_loadu_ps(x + i + 4), kv);
        a0 = _mm_add_ps(a0, d0);
        a1 = _mm_add_ps(a1, d1);
        b0 = _mm_add_ps(b0, _mm_mul_ps(d0, d0));
        b1 = _mm_add_ps(b1, _mm_mul_ps(d1, d1));
    }
    _mm_storeu_ps(a, a0);
    _mm_storeu_ps(a + 4, a1);
    _mm_storeu_ps(b, b0);
    _mm_storeu_ps(b + 4, b1);
#endif
    for (; i + 8 <= n; i += 8)
        for (int j = 0; j < 8; j++) {
            float d = x[i + j] - k;
            a[j] += d;
            b[j] += d * d;
        }
    float ta = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    float tb = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
    for (; i < n; i++) {
        float d = x[i] - k;
        ta += d;
        tb += d * d;
    }
    *s1 = ta;
    *s2 = tb;
}

/* Sums of g and g*(x - m) where g = dout, zeroed where out <= 0 when out is
 * given (a fused ReLU). Centring before the product keeps the second sum
 * accurate when the mean is large against the spread. */
static void grad_sums8(const float *restrict d, const float *restrict x, const float *restrict out, float m,
                       int n, float *sg, float *sgx)
{
    float a[8] = {0}, b[8] = {0};
    int i = 0;
    if (out) {
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) {
                float g = mg_mask_pos(out[i + j], d[i + j]);
                a[j] += g;
                b[j] += g * (x[i + j] - m);
            }
    } else {
        for (; i + 8 <= n; i += 8)
            for (int j = 0; j < 8; j++) {
                a[j] += d[i + j];
                b[j] += d[i + j] * (x[i + j] - m);
            }
    }
    float ta = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    float tb = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
    for (; i < n; i++) {
        float g = out ? mg_mask_pos(out[i], d[i]) : d[i];
        ta += g;
        tb += g * (x[i] - m);
    }
    *sg = ta;
    *sgx = tb;
}

/* The fused ReLU's mask, one bit per output (bit j of byte k for output
 * 8k+j of the tensor, in the layout's order), set where the output is
 * positive. The backward reads it instead of the output, a 32nd of the
 * bytes, on loops whose time is memory traffic. It covers layouts whose
 * channels are single rows of whole bytes of it. */
static int keep_ok(mg_layout l, int N, int S)
{
    return l.sn == (size_t)S && l.sc == (size_t)N * S && ((size_t)N * S) % 8 == 0;
}

int mg_bn_keeps_bits(mg_layout l, int N, int S)
{
    return keep_ok(l, N, S);
}

/* keep[i/8] for o[0..n), n a multiple of 8. */
static void keep_bits(uint8_t *restrict keep, const float *restrict o, int n)
{
    int i = 0;
#ifdef __SSE2__
    const __m128 z = _mm_setzero_ps();
    for (; i < n; i += 8) {
        const int lo = _mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(o + i), z));
        const int hi = _mm_movemask_ps(_mm_cmpgt_ps(_mm_loadu_ps(o + i + 4), z));
        keep[i / 8] = (uint8_t)(lo | hi << 4);
    }
#endif
    for (; i < n; i += 8) {
        unsigned b = 0;
        for (int j = 0; j < 8; j++)
            b |= (unsigned)(o[i + j] > 0.0f) << j;
        keep[i / 8] = (uint8_t)b;
    }
}

/* d[j] where bit j of b is set, +0 elsewhere: mg_mask_pos from the bit. */
static inline float keep_pos(unsigned b, int j, float d)
{
    return mg_mask_pos((float)((b >> j) & 1u), d);
}

#ifdef __SSE2__
/* The eight floats of d at i (a multiple of 8), +0 in the lanes whose bit
 * of keep is clear: g0 the first four, g1 the last. */
static inline void keep_ps(const uint8_t *keep, const float *d, int i, __m128 *g0, __m128 *g1)
{
    const __m128i s0 = _mm_setr_epi32(1, 2, 4, 8), s1 = _mm_setr_epi32(16, 32, 64, 128);
    const __m128i k = _mm_set1_epi32(keep[i / 8]);
    *g0 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(k, s0), s0)), _mm_loadu_ps(d + i));
    *g1 = _mm_and_ps(_mm_castsi128_ps(_mm_cmpeq_epi32(_mm_and_si128(k, s1), s1)), _mm_loadu_ps(d + i + 4));
}

/* d[0..8) = v0, v1, or d[0..8) += them when acc is set. */
static inline void store8(float *d, __m128 v0, __m128 v1, int acc)
{
    if (acc) {
        v0 = _mm_add_ps(_mm_loadu_ps(d), v0);
        v1 = _mm_add_ps(_mm_loadu_ps(d + 4), v1);
    }
    _mm_storeu_ps(d, v0);
    _mm_storeu_ps(d + 4, v1);
}
#endif

void mg_keep_grad(float *restrict d, const float *restrict dout, const uint8_t *restrict keep, size_t n, int accumulate)
{
    size_t i = 0;
#ifdef __SSE2__
    for (; i < n; i += 8) {
        __m128 g0, g1;
        keep_ps(keep + i / 8, dout + i, 0, &g0, &g1);
        store8(d + i, g0, g1, accumulate);
    }
#endif
    for (; i < n; i += 8) {
        const unsigned kb = keep[i / 8];
        for (int j = 0; j < 8; j++) {
            const float g = keep_pos(kb, j, dout[i + j]);
            d[i + j] = accumulate ? d[i + j] + g : g;
        }
    }
}

/* grad_sums8 with the ReLU's mask as bits (keep_bits), n a multiple of 8:
 * the same operations lane for lane. */
static void grad_sums8_keep(const float *restrict d, const float *restrict x, const uint8_t *restrict keep, float m,
                            int n, float *sg, float *sgx)
{
    float a[8] = {0}, b[8] = {0};
    int i = 0;
#ifdef __SSE2__
    const __m128 mv = _mm_set1_ps(m);
    __m128 a0 = _mm_setzero_ps(), a1 = a0, b0 = a0, b1 = a0;
    for (; i < n; i += 8) {
        __m128 g0, g1;
        keep_ps(keep, d, i, &g0, &g1);
        a0 = _mm_add_ps(a0, g0);
        a1 = _mm_add_ps(a1, g1);
        b0 = _mm_add_ps(b0, _mm_mul_ps(g0, _mm_sub_ps(_mm_loadu_ps(x + i), mv)));
        b1 = _mm_add_ps(b1, _mm_mul_ps(g1, _mm_sub_ps(_mm_loadu_ps(x + i + 4), mv)));
    }
    _mm_storeu_ps(a, a0);
    _mm_storeu_ps(a + 4, a1);
    _mm_storeu_ps(b, b0);
    _mm_storeu_ps(b + 4, b1);
#endif
    for (; i < n; i += 8) {
        const unsigned kb = keep[i / 8];
        for (int j = 0; j < 8; j++) {
            float g = keep_pos(kb, j, d[i + j]);
            a[j] += g;
            b[j] += g * (x[i + j] - m);
        }
    }
    *sg = ((a[0] + a[1]) + (a[2] + a[3])) + ((a[4] + a[5]) + (a[6] + a[7]));
    *sgx = ((b[0] + b[1]) + (b[2] + b[3])) + ((b[4] + b[5]) + (b[6] + b[7]));
}

/* The sums above in blocks of BLOCK floats added in double, so that a long
 * row (a whole channel of a batch) keeps float sums short. */
enum { BLOCK = 2048 };

static double sum_d(const float *x, int n)
{
    double t = 0.0;
    for (int i = 0; i < n; i += BLOCK)
        t += (double)sum8(x + i, n - i < BLOCK ? n - i : BLOCK);
    return t;
}

static double sqdev_d(const float *x, float m, int n)
{
    double t = 0.0;
    for (int i = 0; i < n; i += BLOCK)
        t += (double)sqdev8(x + i, m, n - i < BLOCK ? n - i : BLOCK);
    return t;
}

/* The same over x[0..n) in pieces of span floats added in double. */
static void shifted_d(const float *x, float k, int n, int span, double *s1, double *s2)
{
    for (int i = 0; i < n; i += span) {
        float a, b;
        shifted8(x + i, k, n - i < span ? n - i : span, &a, &b);
        *s1 += a;
        *s2 += b;
    }
}

/* The statistics sum a channel's values in pieces of BLOCK floats, except
 * that where a channel's samples lie one after another a row of N*S splits
 * into the samples' planes when these are of SPAN_MIN to BLOCK floats: then
 * the producing convolution can sum each plane while it is in cache
 * (mg_bn_plane_sums), in the same pieces and order, so the same bits. */
enum { SPAN_MIN = 64 };

int mg_bn_sums_by_plane(int S)
{
    return S >= SPAN_MIN && S <= BLOCK;
}

void mg_bn_plane_sums(double *sums, const float *plane, int S, int first)
{
    if (first) {
        sums[0] = plane[0];
        sums[1] = sums[2] = 0.0;
    }
    shifted_d(plane, (float)sums[0], S, BLOCK, sums + 1, sums + 2);
}

static void grad_sums_d(const float *d, const float *x, const float *out, const uint8_t *keep, float m, int n,
                        double *sg, double *sgx)
{
    for (int i = 0; i < n; i += BLOCK) {
        float a, b;
        const int len = n - i < BLOCK ? n - i : BLOCK;
        if (keep)
            grad_sums8_keep(d + i, x + i, keep + i / 8, m, len, &a, &b);
        else
            grad_sums8(d + i, x + i, out ? out + i : NULL, m, len, &a, &b);
        *sg += a;
        *sgx += b;
    }
}

/* The rows of channel c: nrows rows of len floats at base + r*step. When the
 * samples of a channel are contiguous it is one row of N*S. */
typedef struct {
    size_t base, step;
    int nrows, len;
} chan_rows;

static chan_rows rows_of(mg_layout l, int c, int N, int S)
{
    chan_rows r = {(size_t)c * l.sc, l.sn, N, S};
    if (l.sn == (size_t)S) {
        r.nrows = 1;
        r.len = N * S;
    }
    return r;
}

/* o = x*scale + shift, then a ReLU when relu is set. */
static void affine(float *restrict o, const float *restrict x, int n, float scale, float shift, int relu)
{
    int i = 0;
    if (relu) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = mg_relu1(x[i + j] * scale + shift);
        for (; i < n; i++)
            o[i] = mg_relu1(x[i] * scale + shift);
    } else {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = x[i + j] * scale + shift;
        for (; i < n; i++)
            o[i] = x[i] * scale + shift;
    }
}

/* o = (x*scale + shift) + r, then a ReLU when relu is set: the batch norm
 * and the residual add after it, the sum rounded as the add rounds it. */
static void affine_add(float *restrict o, const float *restrict x, const float *restrict r, int n, float scale,
                       float shift, int relu)
{
    int i = 0;
    if (relu) {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = mg_relu1((x[i + j] * scale + shift) + r[i + j]);
        for (; i < n; i++)
            o[i] = mg_relu1((x[i] * scale + shift) + r[i]);
    } else {
        for (; i + MG_BLOCK <= n; i += MG_BLOCK)
            for (int j = 0; j < MG_BLOCK; j++)
                o[i + j] = (x[i + j] * scale + shift) + r[i + j];
        for (; i < n; i++)
            o[i] = (x[i] * scale + shift) + r[i];
    }
}

/* di (+)= fa*g - fb*(x - fm) - fc, g = d (masked by o > 0 when masked). The
 * flags are constants at every call, so each call inlines to one plain loop. */
static inline void bn_dx(float *restrict di, const float *restrict d, const float *restrict x,
                         const float *restrict o, int n, float fa, float fb, float fc, float fm, const int masked,
                         const int acc)
{
    int i = 0;
    for (; i + MG_BLOCK <= n; i += MG_BLOCK)
        for (int j = 0; j < MG_BLOCK; j++) {
            float g = masked ? mg_mask_pos(o[i + j], d[i + j]) : d[i + j];
            float v = fa * g - fb * (x[i + j] - fm) - fc;
            di[i + j] = acc ? di[i + j] + v : v;
        }
    for (; i < n; i++) {
        float g = masked ? mg_mask_pos(o[i], d[i]) : d[i];
        float v = fa * g - fb * (x[i] - fm) - fc;
        di[i] = acc ? di[i] + v : v;
    }
}

/* bn_dx masked by the ReLU's bits, n a multiple of 8. */
static void bn_dx_keep(float *restrict di, const float *restrict d, const float *restrict x,
                       const uint8_t *restrict keep, int n, float fa, float fb, float fc, float fm, int acc)
{
    int i = 0;
#ifdef __SSE2__
    const __m128 av = _mm_set1_ps(fa), bv = _mm_set1_ps(fb), cv = _mm_set1_ps(fc), mv = _mm_set1_ps(fm);
    for (; i < n; i += 8) {
        __m128 g0, g1;
        keep_ps(keep, d, i, &g0, &g1);
        __m128 v0 = _mm_sub_ps(_mm_sub_ps(_mm_mul_ps(av, g0), _mm_mul_ps(bv, _mm_sub_ps(_mm_loadu_ps(x + i), mv))), cv);
        __m128 v1 =
            _mm_sub_ps(_mm_sub_ps(_mm_mul_ps(av, g1), _mm_mul_ps(bv, _mm_sub_ps(_mm_loadu_ps(x + i + 4), mv))), cv);
        store8(di + i, v0, v1, acc);
    }
#endif
    for (; i < n; i += 8) {
        const unsigned kb = keep[i / 8];
        for (int j = 0; j < 8; j++) {
            float v = fa * keep_pos(kb, j, d[i + j]) - fb * (x[i + j] - fm) - fc;
            di[i + j] = acc ? di[i + j] + v : v;
        }
    }
}

/* inp, out (N,C,S) with layout l; mean, rstd (C) */
void mg_bn_forward_fused(float *out, float *mean, float *rstd, const float *inp, mg_layout l, const float *gamma,
                         const float *beta, float *run_mean, float *run_var, int N, int C, int S, int train,
                         float momentum, float eps, const float *res, int relu, uint8_t *keep, const double *sums)
{
    const double M = (double)N * S;
    if (!relu || !keep_ok(l, N, S))
        keep = NULL;
    for (int c = 0; c < C; c++) {
        const chan_rows cr = rows_of(l, c, N, S);
        float m, r;
        if (train) {
            /* One pass, shifted by the channel's first value, unless the
             * convolution before made it. */
            const int span = cr.nrows == 1 && mg_bn_sums_by_plane(S) ? S : BLOCK;
            const float k0 = sums ? (float)sums[3 * c] : inp[cr.base];
            double s1 = sums ? sums[3 * c + 1] : 0.0, s2 = sums ? sums[3 * c + 2] : 0.0;
            for (int k = 0; k < cr.nrows && !sums; k++)
                shifted_d(inp + cr.base + k * cr.step, k0, cr.len, span, &s1, &s2);
            const double dm = s1 / M;
            m = (float)((double)k0 + dm);
            double ss = s2 - s1 * dm; /* the sum of squared deviations from the mean */
            if (ss < 0.0)
                ss = 0.0;
            double var = ss / M;
            r = (float)(1.0 / sqrt(var + (double)eps));
            if (run_mean && run_var) {
                double unbiased = M > 1.0 ? ss / (M - 1.0) : var;
                run_mean[c] = (float)((1.0 - momentum) * run_mean[c] + (double)momentum * m);
                run_var[c] = (float)((1.0 - momentum) * run_var[c] + (double)momentum * unbiased);
            }
        } else {
            m = run_mean[c];
            r = (float)(1.0 / sqrt((double)run_var[c] + (double)eps));
        }
        mean[c] = m;
        rstd[c] = r;
        const float scale = r * gamma[c], shift = beta[c] - m * scale;
        /* In spans of BLOCK, whose outputs are still in L1 for their bits. */
        for (int k = 0; k < cr.nrows; k++)
            for (int i = 0; i < cr.len; i += BLOCK) {
                const size_t off = cr.base + k * cr.step + (size_t)i;
                const int len = cr.len - i < BLOCK ? cr.len - i : BLOCK;
                if (res)
                    affine_add(out + off, inp + off, res + off, len, scale, shift, relu);
                else
                    affine(out + off, inp + off, len, scale, shift, relu);
                if (keep)
                    keep_bits(keep + off / 8, out + off, len);
            }
    }
}

/* dx = gamma*rstd * (g - mean(g) - xhat*mean(g*xhat)) in train mode, gamma*rstd*g in eval;
 * written as a*g - b*(x - mean) - c per channel. */
void mg_bn_backward_fused(float *dinp, int overwrite, float *dgamma, float *dbeta, const float *dout, const float *inp,
                          const float *out, const uint8_t *keep, mg_layout l, const float *mean, const float *rstd,
                          const float *gamma, int N, int C, int S, int train)
{
    const double M = (double)N * S;
    if (!out || !keep_ok(l, N, S))
        keep = NULL;
    for (int c = 0; c < C; c++) {
        const chan_rows cr = rows_of(l, c, N, S);
        const float fm = mean[c];
        double sg = 0.0, sgx = 0.0;
        for (int k = 0; k < cr.nrows; k++) {
            const size_t o = cr.base + k * cr.step;
            grad_sums_d(dout + o, inp + o, out ? out + o : NULL, keep ? keep + o / 8 : NULL, fm, cr.len, &sg, &sgx);
        }
        const double r = rstd[c];
        const double sgxhat = sgx * r;   /* sum of g * xhat */
        dgamma[c] += (float)sgxhat;
        dbeta[c] += (float)sg;
        if (!dinp)
            continue;
        const double a = (double)gamma[c] * r;
        double bx = 0.0, c0 = 0.0;
        if (train) {
            bx = a * r * (sgxhat / M);
            c0 = a * (sg / M);
        }
        const float fa = (float)a, fb = (float)bx, fc = (float)c0;
        for (int k = 0; k < cr.nrows; k++) {
            const size_t off = cr.base + k * cr.step;
            const float *o = out ? out + off : NULL;
            if (keep)
                bn_dx_keep(dinp + off, dout + off, inp + off, keep + off / 8, cr.len, fa, fb, fc, fm, !overwrite);
            else if (o && overwrite)
                bn_dx(dinp + off, dout + off, inp + off, o, cr.len, fa, fb, fc, fm, 1, 0);
            else if (o)
                bn_dx(dinp + off, dout + off, inp + off, o, cr.len, fa, fb, fc, fm, 1, 1);
            else if (overwrite)
                bn_dx(dinp + off, dout + off, inp + off, NULL, cr.len, fa, fb, fc, fm, 0, 0);
            else
                bn_dx(dinp + off, dout + off, inp + off, NULL, cr.len, fa, fb, fc, fm, 0, 1);
        }
    }
}

void mg_batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, float *run_mean, float *run_var, int N, int C, int S, int train,
                          float momentum, float eps)
{
    mg_layout l = {(size_t)C * S, (size_t)S};
    mg_bn_forward_fused(out, mean, rstd, inp, l, gamma, beta, run_mean, run_var, N, C, S, train, momentum, eps, NULL, 0,
                        NULL, NULL);
}

void mg_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *mean, const float *rstd, const float *gamma, int N, int C, int S,
                           int train)
{
    mg_layout l = {(size_t)C * S, (size_t)S};
    mg_bn_backward_fused(dinp, 0, dgamma, dbeta, dout, inp, NULL, NULL, l, mean, rstd, gamma, N, C, S, train);
}

/* ---- layer norm ------------------------------------------------------------------ */

/* inp, out (R,E); gamma, beta (E); mean, rstd (R) */
void mg_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, int R, int E, float eps)
{
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * E;
        float *o = out + (size_t)r * E;
        float m = (float)(sum_d(x, E) / E);
        float rs = (float)(1.0 / sqrt(sqdev_d(x, m, E) / E + (double)eps));
        mean[r] = m;
        rstd[r] = rs;
        for (int e = 0; e < E; e++)
            o[e] = (x[e] - m) * rs * gamma[e] + beta[e];
    }
}

/* dx = rstd * (g - mean(g) - xhat*mean(g*xhat)) with g = dout*gamma */
void mg_layernorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *mean, const float *rstd, const float *gamma, int R, int E)
{
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * E, *d = dout + (size_t)r * E;
        const float m = mean[r], rs = rstd[r];
        double sg = 0.0, sgx = 0.0;
        for (int e = 0; e < E; e++) {
            float xh = (x[e] - m) * rs, g = d[e] * gamma[e];
            dgamma[e] += d[e] * xh;
            dbeta[e] += d[e];
            sg += g;
            sgx += (double)g * xh;
        }
        if (!dinp)
            continue;
        const float k1 = (float)(sg / E), k2 = (float)(sgx / E);
        float *di = dinp + (size_t)r * E;
        for (int e = 0; e < E; e++)
            di[e] += rs * (d[e] * gamma[e] - k1 - (x[e] - m) * rs * k2);
    }
}
