/*
 * layers_act.c: the element-wise layers beyond ReLU and Tanh (ReLU6, exact
 * GELU, inverted dropout) and the graph plumbing of residual networks:
 * residual add and channel concatenation. Pure forward/backward pairs over
 * caller-owned buffers; backward accumulates.
 */
#include "miagrid/nn.h"

#include <math.h>
#include <string.h>

void mg_relu6_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float v = inp[i];
        v = v < 0.0f ? 0.0f : v;
        out[i] = v > 6.0f ? 6.0f : v;
    }
}

void mg_relu6_backward(float *dinp, const float *dout, const float *out, size_t n)
{
    for (size_t i = 0; i < n; i++)
        dinp[i] += out[i] > 0.0f && out[i] < 6.0f ? dout[i] : 0.0f;
}

/* gelu(x) = x * Phi(x), Phi(x) = (1 + erf(x / sqrt 2)) / 2 */
void mg_gelu_forward(float *out, const float *inp, size_t n)
{
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        out[i] = 0.5f * x * (1.0f + erff(x * 0.70710678118654752440f));
    }
}

/* d gelu / dx = Phi(x) + x * phi(x) */
void mg_gelu_backward(float *dinp, const float *dout, const float *inp, size_t n)
{
    const float inv_sqrt_2pi = 0.39894228040143267794f;
    for (size_t i = 0; i < n; i++) {
        float x = inp[i];
        float cdf = 0.5f * (1.0f + erff(x * 0.70710678118654752440f));
        float pdf = inv_sqrt_2pi * expf(-0.5f * x * x);
        dinp[i] += dout[i] * (cdf + x * pdf);
    }
}

void mg_dropout_forward(float *out, float *mask, const float *inp, size_t n, float p, int train, mg_rng *rng)
{
    if (!train || p <= 0.0f) {
        if (out != inp)
            memmove(out, inp, n * sizeof(float));
        return;
    }
    const float keep = 1.0f / (1.0f - p);
    for (size_t i = 0; i < n; i++) {
        mask[i] = mg_rng_uniform(rng) < (double)p ? 0.0f : keep;
        out[i] = inp[i] * mask[i];
    }
}

void mg_dropout_backward(float *dinp, const float *dout, const float *mask, size_t n)
{
    if (!mask) {
        for (size_t i = 0; i < n; i++)
            dinp[i] += dout[i];
        return;
    }
    for (size_t i = 0; i < n; i++)
        dinp[i] += dout[i] * mask[i];
}

void mg_add_forward(float *out, const float *a, const float *b, size_t n)
{
    for (size_t i = 0; i < n; i++)
        out[i] = a[i] + b[i];
}

void mg_add_backward(float *da, float *db, const float *dout, size_t n)
{
    for (size_t i = 0; i < n; i++)
        da[i] += dout[i];
    for (size_t i = 0; i < n; i++)
        db[i] += dout[i];
}

/* inp[i] (N, C[i], S) -> out (N, sum C, S) */
void mg_concat_forward(float *out, const float *const *inp, const int *C, int k, int N, int S)
{
    size_t total = 0;
    for (int i = 0; i < k; i++)
        total += (size_t)C[i] * S;
    for (int n = 0; n < N; n++) {
        float *o = out + (size_t)n * total;
        for (int i = 0; i < k; i++) {
            size_t sz = (size_t)C[i] * S;
            memcpy(o, inp[i] + (size_t)n * sz, sz * sizeof(float));
            o += sz;
        }
    }
}

void mg_concat_backward(float *const *dinp, const float *dout, const int *C, int k, int N, int S)
{
    size_t total = 0;
    for (int i = 0; i < k; i++)
        total += (size_t)C[i] * S;
    for (int n = 0; n < N; n++) {
        const float *d = dout + (size_t)n * total;
        for (int i = 0; i < k; i++) {
            size_t sz = (size_t)C[i] * S;
            if (dinp[i]) {
                float *di = dinp[i] + (size_t)n * sz;
                for (size_t j = 0; j < sz; j++)
                    di[j] += d[j];
            }
            d += sz;
        }
    }
}
