/*
 * layers_pool.c: pooling kernels with general square windows, strides and
 * zero padding (torch.nn.MaxPool2d / AvgPool2d in floor mode) and the global
 * average pool that ends the residual networks. Pure forward/backward pairs;
 * backward accumulates.
 */
#include "miagrid/nn.h"

#include <math.h>
#include <string.h>

int mg_pool2d_shape_init(mg_pool2d_shape *s)
{
    if (s->N < 0 || s->C < 1 || s->H < 1 || s->W < 1 || s->k < 1 || s->stride < 1 || s->pad < 0 ||
        s->pad > s->k / 2)
        return -1;
    int hp = s->H + 2 * s->pad, wp = s->W + 2 * s->pad;
    if (hp < s->k || wp < s->k)
        return -1;
    s->OH = (hp - s->k) / s->stride + 1;
    s->OW = (wp - s->k) / s->stride + 1;
    return 0;
}

/* The window of output index o along a dimension of size n, clipped to [0, n). */
static void window(int o, const mg_pool2d_shape *s, int n, int *lo, int *hi)
{
    int a = o * s->stride - s->pad, b = a + s->k;
    *lo = a < 0 ? 0 : a;
    *hi = b > n ? n : b;
}

/* inp (N,C,H,W) -> out (N,C,OH,OW); the first maximum in row-major window
 * order wins ties and a NaN wins over numbers, as in torch. */
void mg_maxpool2d_forward(float *out, int32_t *argmax, const float *inp, const mg_pool2d_shape *s)
{
    if (s->pad == 0 && s->stride == s->k && s->H / s->k == s->OH && s->W / s->k == s->OW) {
        mg_maxpool_forward(out, argmax, inp, s->N, s->C, s->H, s->W, s->k);
        return;
    }
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
    for (int nc = 0; nc < s->N * s->C; nc++) {
        const float *plane = inp + (size_t)nc * H * W;
        const int32_t base = (int32_t)((size_t)nc * H * W);
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            window(oh, s, H, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                window(ow, s, W, &w0, &w1);
                int32_t best_i = h0 * W + w0;
                float best = plane[best_i];
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++) {
                        float v = plane[ih * W + iw];
                        if (v > best || (isnan(v) && !isnan(best))) {
                            best = v;
                            best_i = ih * W + iw;
                        }
                    }
                size_t o = ((size_t)nc * OH + oh) * OW + ow;
                out[o] = best;
                argmax[o] = base + best_i;
            }
        }
    }
}

void mg_maxpool2d_backward(float *dinp, const float *dout, const int32_t *argmax, const mg_pool2d_shape *s)
{
    mg_maxpool_backward(dinp, dout, argmax, s->N * s->C * s->OH * s->OW);
}

/* Every floor-mode window lies inside the padded image, so the divisor is k*k. */
void mg_avgpool2d_forward(float *out, const float *inp, const mg_pool2d_shape *s)
{
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
    const float inv = 1.0f / (float)(s->k * s->k);
    for (int nc = 0; nc < s->N * s->C; nc++) {
        const float *plane = inp + (size_t)nc * H * W;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            window(oh, s, H, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                window(ow, s, W, &w0, &w1);
                float acc = 0.0f;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++)
                        acc += plane[ih * W + iw];
                out[((size_t)nc * OH + oh) * OW + ow] = acc * inv;
            }
        }
    }
}

void mg_avgpool2d_backward(float *dinp, const float *dout, const mg_pool2d_shape *s)
{
    const int H = s->H, W = s->W, OH = s->OH, OW = s->OW;
    const float inv = 1.0f / (float)(s->k * s->k);
    for (int nc = 0; nc < s->N * s->C; nc++) {
        float *plane = dinp + (size_t)nc * H * W;
        for (int oh = 0; oh < OH; oh++) {
            int h0, h1;
            window(oh, s, H, &h0, &h1);
            for (int ow = 0; ow < OW; ow++) {
                int w0, w1;
                window(ow, s, W, &w0, &w1);
                float g = dout[((size_t)nc * OH + oh) * OW + ow] * inv;
                for (int ih = h0; ih < h1; ih++)
                    for (int iw = w0; iw < w1; iw++)
                        plane[ih * W + iw] += g;
            }
        }
    }
}

/* out (N,C) = mean_s inp (N,C,S) */
void mg_global_avgpool_forward(float *out, const float *inp, int N, int C, int S)
{
    const float inv = 1.0f / (float)S;
    for (size_t nc = 0; nc < (size_t)N * C; nc++) {
        const float *row = inp + nc * S;
        float acc = 0.0f;
        for (int i = 0; i < S; i++)
            acc += row[i];
        out[nc] = acc * inv;
    }
}

void mg_global_avgpool_backward(float *dinp, const float *dout, int N, int C, int S)
{
    const float inv = 1.0f / (float)S;
    for (size_t nc = 0; nc < (size_t)N * C; nc++) {
        float *row = dinp + nc * S;
        float g = dout[nc] * inv;
        for (int i = 0; i < S; i++)
            row[i] += g;
    }
}
