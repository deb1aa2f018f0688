/*
 * layers_attn.c: multi-head self-attention with the parameter layout and
 * arithmetic of torch.nn.MultiheadAttention (batch_first, packed in-projection,
 * biases, no masks, no dropout). Each head is a strided view into the packed
 * q|k|v rows, so the products run as sgemm calls with leading dimension 3E.
 */
#include "miagrid/nn.h"

#include <cblas.h>
#include <math.h>
#include <string.h>

/* x (N,L,E) -> out (N,L,E); caches qkv (N,L,3E), att (N,H,L,L), ctx (N,L,E). */
void mg_mha_forward(float *out, float *qkv, float *att, float *ctx, const float *x, const float *in_w,
                    const float *in_b, const float *out_w, const float *out_b, int N, int L, int E, int H)
{
    const int d = E / H, E3 = 3 * E;
    const float scale = 1.0f / sqrtf((float)d);
    mg_linear_forward(qkv, x, in_w, in_b, N * L, E, E3);
    for (int n = 0; n < N; n++) {
        const float *q = qkv + (size_t)n * L * E3;
        for (int h = 0; h < H; h++) {
            float *a = att + ((size_t)n * H + h) * L * L;
            const float *qh = q + h * d, *kh = q + E + h * d, *vh = q + 2 * E + h * d;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, d, scale, qh, E3, kh, E3, 0.0f, a, L);
            for (int i = 0; i < L; i++) {
                float *row = a + (size_t)i * L;
                float mx = row[0];
                for (int j = 1; j < L; j++)
                    if (row[j] > mx)
                        mx = row[j];
                float sum = 0.0f;
                for (int j = 0; j < L; j++) {
                    row[j] = expf(row[j] - mx);
                    sum += row[j];
                }
                float inv = 1.0f / sum;
                for (int j = 0; j < L; j++)
                    row[j] *= inv;
            }
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, d, L, 1.0f, a, L, vh, E3, 0.0f,
                        ctx + (size_t)n * L * E + h * d, E);
        }
    }
    mg_linear_forward(out, ctx, out_w, out_b, N * L, E, E);
}

size_t mg_mha_scratch(int N, int L, int E, int H)
{
    (void)H;
    return (size_t)N * L * E + (size_t)N * L * 3 * E + (size_t)L * L;
}

/* scratch: dctx (N,L,E), dqkv (N,L,3E), dP (L,L) */
void mg_mha_backward(float *dx, float *din_w, float *din_b, float *dout_w, float *dout_b, const float *dout,
                     const float *x, const float *qkv, const float *att, const float *ctx, const float *in_w,
                     const float *out_w, int N, int L, int E, int H, float *scratch)
{
    const int d = E / H, E3 = 3 * E;
    const float scale = 1.0f / sqrtf((float)d);
    float *dctx = scratch, *dqkv = dctx + (size_t)N * L * E, *dp = dqkv + (size_t)N * L * E3;
    memset(dctx, 0, (size_t)N * L * E * sizeof(float));
    memset(dqkv, 0, (size_t)N * L * E3 * sizeof(float));
    mg_linear_backward(dctx, dout_w, dout_b, dout, ctx, out_w, N * L, E, E);
    for (int n = 0; n < N; n++) {
        const float *q = qkv + (size_t)n * L * E3;
        float *dq = dqkv + (size_t)n * L * E3;
        for (int h = 0; h < H; h++) {
            const float *a = att + ((size_t)n * H + h) * L * L;
            const float *qh = q + h * d, *kh = q + E + h * d, *vh = q + 2 * E + h * d;
            const float *dc = dctx + (size_t)n * L * E + h * d;
            /* dV = P^T dctx; dP = dctx V^T */
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, d, L, 1.0f, a, L, dc, E, 1.0f,
                        dq + 2 * E + h * d, E3);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, L, L, d, 1.0f, dc, E, vh, E3, 0.0f, dp, L);
            /* softmax backward: dS = P * (dP - rowsum(dP * P)), then the 1/sqrt(d) scale */
            for (int i = 0; i < L; i++) {
                const float *pr = a + (size_t)i * L;
                float *dr = dp + (size_t)i * L;
                float dot = 0.0f;
                for (int j = 0; j < L; j++)
                    dot += dr[j] * pr[j];
                for (int j = 0; j < L; j++)
                    dr[j] = pr[j] * (dr[j] - dot) * scale;
            }
            /* dQ = dS K; dK = dS^T Q */
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, L, d, L, 1.0f, dp, L, kh, E3, 1.0f, dq + h * d,
                        E3);
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, L, d, L, 1.0f, dp, L, qh, E3, 1.0f,
                        dq + E + h * d, E3);
        }
    }
    mg_linear_backward(dx, din_w, din_b, dqkv, x, in_w, N * L, E, E3);
}
