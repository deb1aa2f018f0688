/*
 * layers_norm.c: batch norm (1-d and 2-d, with torch's running statistics)
 * and layer norm. The batch-norm loops work one channel at a time: a
 * channel's N rows of S values are read once for the statistics and again,
 * from cache, to normalise. The model calls the fused forms (a ReLU folded
 * into the normalisation, and an overwrite mode that spares zeroing the
 * input gradient) through nn_internal.h.
 */
#include "miagrid/nn.h"
#include "nn/nn_internal.h"

#include <math.h>
#include <string.h>

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
                float g = out[i + j] > 0.0f ? d[i + j] : 0.0f;
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
        float g = d[i];
        if (out && !(out[i] > 0.0f))
            g = 0.0f;
        ta += g;
        tb += g * (x[i] - m);
    }
    *sg = ta;
    *sgx = tb;
}

/* inp, out (N,C,S); mean, rstd (C) */
void mg_bn_forward_fused(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                         const float *beta, float *run_mean, float *run_var, int N, int C, int S, int train,
                         float momentum, float eps, int relu)
{
    const size_t cs = (size_t)C * S;
    const double M = (double)N * S;
    for (int c = 0; c < C; c++) {
        const float *xc = inp + (size_t)c * S;
        float m, r;
        if (train) {
            double sum = 0.0;
            for (int n = 0; n < N; n++)
                sum += (double)sum8(xc + n * cs, S);
            m = (float)(sum / M);
            double ss = 0.0;
            for (int n = 0; n < N; n++)
                ss += (double)sqdev8(xc + n * cs, m, S);
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
        for (int n = 0; n < N; n++) {
            const float *restrict x = xc + n * cs;
            float *restrict o = out + (size_t)c * S + n * cs;
            if (relu) {
                for (int i = 0; i < S; i++) {
                    float v = x[i] * scale + shift;
                    o[i] = v > 0.0f ? v : 0.0f;
                }
            } else {
                for (int i = 0; i < S; i++)
                    o[i] = x[i] * scale + shift;
            }
        }
    }
}

/* dx = gamma*rstd * (g - mean(g) - xhat*mean(g*xhat)) in train mode, gamma*rstd*g in eval;
 * written as a*g - b*(x - mean) - c per channel. */
void mg_bn_backward_fused(float *dinp, int overwrite, float *dgamma, float *dbeta, const float *dout,
                          const float *inp, const float *out, const float *mean, const float *rstd,
                          const float *gamma, int N, int C, int S, int train)
{
    const size_t cs = (size_t)C * S;
    const double M = (double)N * S;
    for (int c = 0; c < C; c++) {
        const size_t off = (size_t)c * S;
        const float fm = mean[c];
        double sg = 0.0, sgx = 0.0;
        for (int n = 0; n < N; n++) {
            float a, b;
            grad_sums8(dout + off + n * cs, inp + off + n * cs, out ? out + off + n * cs : NULL, fm, S, &a, &b);
            sg += a;
            sgx += b;
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
        for (int n = 0; n < N; n++) {
            const float *restrict d = dout + off + n * cs, *restrict x = inp + off + n * cs;
            const float *restrict o = out ? out + off + n * cs : NULL;
            float *restrict di = dinp + off + n * cs;
            if (o) {
                if (overwrite)
                    for (int i = 0; i < S; i++)
                        di[i] = fa * (o[i] > 0.0f ? d[i] : 0.0f) - fb * (x[i] - fm) - fc;
                else
                    for (int i = 0; i < S; i++)
                        di[i] += fa * (o[i] > 0.0f ? d[i] : 0.0f) - fb * (x[i] - fm) - fc;
            } else {
                if (overwrite)
                    for (int i = 0; i < S; i++)
                        di[i] = fa * d[i] - fb * (x[i] - fm) - fc;
                else
                    for (int i = 0; i < S; i++)
                        di[i] += fa * d[i] - fb * (x[i] - fm) - fc;
            }
        }
    }
}

void mg_batchnorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, float *run_mean, float *run_var, int N, int C, int S, int train,
                          float momentum, float eps)
{
    mg_bn_forward_fused(out, mean, rstd, inp, gamma, beta, run_mean, run_var, N, C, S, train, momentum, eps, 0);
}

void mg_batchnorm_backward(float *dinp, float *dgamma, float *dbeta, const float *dout, const float *inp,
                           const float *mean, const float *rstd, const float *gamma, int N, int C, int S,
                           int train)
{
    mg_bn_backward_fused(dinp, 0, dgamma, dbeta, dout, inp, NULL, mean, rstd, gamma, N, C, S, train);
}

/* ---- layer norm ------------------------------------------------------------------ */

/* inp, out (R,E); gamma, beta (E); mean, rstd (R) */
void mg_layernorm_forward(float *out, float *mean, float *rstd, const float *inp, const float *gamma,
                          const float *beta, int R, int E, float eps)
{
    for (int r = 0; r < R; r++) {
        const float *x = inp + (size_t)r * E;
        float *o = out + (size_t)r * E;
        float m = (float)((double)sum8(x, E) / E);
        float rs = (float)(1.0 / sqrt((double)sqdev8(x, m, E) / E + (double)eps));
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
