/*
 * perex.c: per-example gradient norms and the DP-SGD gradient (Abadi et al.
 * 2016; Opacus's ghost clipping). The norms come from each parameterised
 * layer's cached input and its output gradient, which the backward keeps once
 * mg_model_enable_per_example has given those gradients buffers of their own;
 * the clipped sum comes from a second backward whose logit gradients are
 * scaled row by row. Norms are over unmasked parameters: the optimiser
 * discards the masked entries' gradients, so they must not count against the
 * clipping bound.
 *
 * The kept gradient of a linear or convolution with a fused activation is
 * already the pre-activation one: the backward applies the activation's
 * derivative to it in place before the layer's own backward (model.c), so
 * every kept gradient is the d of the layer's d a^T.
 *
 * Activations are channel-major, (C, N, H, W) (nn_internal.h): sample n's
 * rows of a linear layer over (c, h, I) are rows (c*N + n)*h + k of the
 * (C*N*h, I) matrix, and its plane of channel c of an image value starts at
 * (c*N + n)*H*W.
 */
#include "miagrid/nn.h"
#include "nn/nn_internal.h"

#include <cblas.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* OpenBLAS's cblas.h pulls in <complex.h>, whose macro I would rewrite the
 * dimension names below. */
#undef I

static float *value_act(const mg_model *m, int v)
{
    return m->act[m->values[v].root];
}

static const float *value_grad(const mg_model *m, int v)
{
    return m->grad[m->values[v].root];
}

/* Operations whose parameter gradients need their output gradient. */
static int has_params(const mg_op *op)
{
    return op->kind == MG_OP_LINEAR || op->kind == MG_OP_CONV || op->kind == MG_OP_LN || op->kind == MG_OP_MHA;
}

static mg_status refuse_batch_norm(const mg_model *m, mg_error *err)
{
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].kind == MG_OP_BN)
            return mg_error_set(err, MG_ERR_ARG,
                                "model %s: batch norm is not compatible with per-example gradients (use layer "
                                "norm or a model without batch norm)",
                                m->arch);
    return MG_OK;
}

/* users[k] (n_values entries, zeroed): the root values whose gradient lives in slot k. */
static void count_slot_users(const mg_model *m, int *users)
{
    for (int v = 0; v < m->n_values; v++)
        if (m->values[v].root == v)
            users[m->gslot[v]]++;
}

/* Moving a value out of a shared slot into a new one keeps the plan valid:
 * the values left in the old slot still never live at the same time. The
 * slot arrays hold n_values entries and every slot keeps at least one user,
 * so the new slots always fit. */
mg_status mg_model_enable_per_example(mg_model *m, mg_error *err)
{
    mg_status st = MG_OK;
    const int nv = m->n_values;
    int *users = NULL, *moved = NULL, n_new = 0;
    float **bufs = NULL;
    MG_CHECK(refuse_batch_norm(m, err));
    users = mg_calloc((size_t)nv, sizeof(int), "per-example gradient plan", err);
    moved = mg_calloc((size_t)m->n_ops + 1, sizeof(int), "per-example gradient plan", err);
    bufs = mg_calloc((size_t)m->n_ops + 1, sizeof(float *), "per-example gradient plan", err);
    if (!users || !moved || !bufs)
        MG_FAIL(MG_ERR_NOMEM, "model %s: out of memory planning the per-example gradients", m->arch);
    count_slot_users(m, users);
    for (int i = 0; i < m->n_ops; i++) {
        if (!has_params(&m->ops[i]))
            continue;
        const int v = m->values[m->ops[i].out].root;
        if (users[m->gslot[v]] > 1) {
            users[m->gslot[v]]--;
            moved[n_new++] = v;
        }
    }
    if (n_new == 0)
        goto cleanup;
    if (m->n_slots + n_new > nv)
        MG_FAIL(MG_ERR_INTERNAL, "model %s: %d gradient buffers for %d values", m->arch, m->n_slots + n_new, nv);
    for (int j = 0; j < n_new && m->cap_grad > 0; j++) {
        bufs[j] = mg_malloc((size_t)m->cap_grad * m->values[moved[j]].size, sizeof(float),
                            "per-example gradients", err);
        if (!bufs[j])
            MG_FAIL(MG_ERR_NOMEM, "model %s: out of memory for the per-example gradients of a batch of %d",
                    m->arch, m->cap_grad);
    }
    for (int j = 0; j < n_new; j++) {
        const int v = moved[j], k = m->n_slots++;
        m->slot_size[k] = m->values[v].size;
        m->slots[k] = bufs[j];
        bufs[j] = NULL;
        m->gslot[v] = k;
        if (m->cap_grad > 0)
            m->grad[v] = m->slots[k];
    }
cleanup:
    for (int j = 0; bufs && j < n_new; j++)
        free(bufs[j]);
    free(bufs);
    free(moved);
    free(users);
    return st;
}

/* MG_ERR_ARG unless every parameterised operation's output gradient survives a backward. */
static mg_status check_kept(const mg_model *m, mg_error *err)
{
    int *users = mg_calloc((size_t)m->n_values, sizeof(int), "per-example gradient plan", err);
    if (!users)
        return MG_ERR_NOMEM;
    count_slot_users(m, users);
    int kept = 1;
    for (int i = 0; i < m->n_ops; i++)
        if (has_params(&m->ops[i]) && users[m->gslot[m->values[m->ops[i].out].root]] != 1)
            kept = 0;
    free(users);
    if (!kept)
        return mg_error_set(err, MG_ERR_ARG,
                            "model %s: per-example gradient norms need mg_model_enable_per_example before the "
                            "backward",
                            m->arch);
    return MG_OK;
}

/* g[i] where mask[i] is not 0 (or mask is NULL), else 0 */
static inline double masked_value(const float *g, const float *mask, size_t i)
{
    return mask && mask[i] == 0.0f ? 0.0 : (double)g[i];
}

/* sum of g^2 over the entries whose mask is not 0 (all when mask is NULL),
 * in four partial sums: one running double sum is a chain of dependent
 * additions, and these sums over whole activations and weight gradients are
 * a good part of the norms' time on the MLPs. */
static double sumsq(const float *g, const float *mask, size_t n)
{
    double s0 = 0.0, s1 = 0.0, s2 = 0.0, s3 = 0.0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        const double v0 = masked_value(g, mask, i), v1 = masked_value(g, mask, i + 1);
        const double v2 = masked_value(g, mask, i + 2), v3 = masked_value(g, mask, i + 3);
        s0 += v0 * v0;
        s1 += v1 * v1;
        s2 += v2 * v2;
        s3 += v3 * v3;
    }
    for (; i < n; i++) {
        const double v = masked_value(g, mask, i);
        s0 += v * v;
    }
    return (s0 + s1) + (s2 + s3);
}

/* Blocks with a fixed trip count and no early exit inside vectorise
 * (MG_BLOCK); an unpruned layer's mask is read in full on every call. */
static int any_masked(const float *mask, size_t n)
{
    size_t i = 0;
    for (; i + 32 * MG_BLOCK <= n; i += 32 * MG_BLOCK) {
        int z = 0;
        for (int j = 0; j < 32 * MG_BLOCK; j++)
            z |= mask[i + j] == 0.0f;
        if (z)
            return 1;
    }
    for (; i < n; i++)
        if (mask[i] == 0.0f)
            return 1;
    return 0;
}

static float *scratch_floats(const mg_model *m, size_t n, mg_error *err)
{
    float *p = mg_malloc(n ? n : 1, sizeof(float), "per-example gradient scratch", err);
    if (!p)
        mg_error_set(err, MG_ERR_NOMEM, "model %s: out of memory for %zu floats of per-example scratch", m->arch, n);
    return p;
}

/* Linear (c,h,I) -> (c,h,O), w (O,I), b (O), R = c*h rows per sample a_r,
 * output gradients d_r: sample n's weight gradient is sum_r d_r a_r^T.
 * R == 1: its squared norm is |a|^2 |d|^2, or with a mask M
 * sum_{o,j} M_oj d_o^2 a_j^2, one GEMM (d^2) M for the batch followed by a
 * dot with a^2. R > 1: the Gram form sum_{r,s} (a_r.a_s)(d_r.d_s) costs
 * R^2 (I + O), the gradient itself R I O; the cheaper, and the gradient
 * whenever a mask applies. */
static mg_status linear_sq(const mg_model *m, const mg_op *op, int N, double *sq, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_shape3 si = m->values[op->in[0]].shape;
    const int In = op->I, Out = op->O, R = si.c * si.h;
    const float *a = value_act(m, op->in[0]), *d = value_grad(m, op->out);
    const float *wm = m->masks + op->w, *bm = op->b == MG_NO_PARAM ? NULL : m->masks + op->b;
    const int masked = any_masked(wm, (size_t)Out * In);
    float *buf = NULL;
    if (R == 1) {
        if (masked) {
            buf = scratch_floats(m, (size_t)N * Out + (size_t)N * In, err);
            if (!buf)
                return MG_ERR_NOMEM;
            float *d2 = buf, *t = buf + (size_t)N * Out;
            for (size_t k = 0; k < (size_t)N * Out; k++)
                d2[k] = d[k] * d[k];
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, N, In, Out, 1.0f, d2, Out, wm, In, 0.0f, t, In);
            for (int n = 0; n < N; n++) {
                const float *an = a + (size_t)n * In, *tn = t + (size_t)n * In;
                double s = 0.0;
                for (int j = 0; j < In; j++)
                    s += (double)tn[j] * an[j] * an[j];
                sq[n] += s;
            }
        } else {
            for (int n = 0; n < N; n++)
                sq[n] += sumsq(a + (size_t)n * In, NULL, (size_t)In) * sumsq(d + (size_t)n * Out, NULL, (size_t)Out);
        }
        for (int n = 0; bm && n < N; n++)
            sq[n] += sumsq(d + (size_t)n * Out, bm, (size_t)Out);
        goto cleanup;
    }
    const int gram = !masked && (double)R * (In + Out) < (double)In * Out;
    const size_t work = gram ? 2 * (size_t)R * R : (size_t)Out * In;
    buf = scratch_floats(m, (size_t)R * In + (size_t)R * Out + work, err);
    if (!buf)
        return MG_ERR_NOMEM;
    float *A = buf, *D = A + (size_t)R * In, *W = D + (size_t)R * Out;
    for (int n = 0; n < N; n++) {
        for (int c = 0; c < si.c; c++)
            for (int h = 0; h < si.h; h++) {
                const size_t r = (size_t)c * si.h + h, row = ((size_t)c * N + n) * si.h + h;
                memcpy(A + r * In, a + row * In, (size_t)In * sizeof(float));
                memcpy(D + r * Out, d + row * Out, (size_t)Out * sizeof(float));
            }
        if (gram) {
            float *ga = W, *gd = W + (size_t)R * R;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, R, In, 1.0f, A, In, A, In, 0.0f, ga, R);
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, R, R, Out, 1.0f, D, Out, D, Out, 0.0f, gd, R);
            double s = 0.0;
            for (size_t k = 0; k < (size_t)R * R; k++)
                s += (double)ga[k] * gd[k];
            sq[n] += s;
        } else {
            cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, Out, In, R, 1.0f, D, Out, A, In, 0.0f, W, In);
            sq[n] += sumsq(W, masked ? wm : NULL, (size_t)Out * In);
        }
        if (bm) {
            double s = 0.0;
            for (int o = 0; o < Out; o++) {
                double col = 0.0;
                for (int r = 0; r < R; r++)
                    col += D[(size_t)r * Out + o];
                s += bm[o] != 0.0f ? col * col : 0.0;
            }
            sq[n] += s;
        }
    }
cleanup:
    free(buf);
    return st;
}

/* ceil(a / b) for b > 0 and any a */
static int ceil_div(int a, int b)
{
    return a >= 0 ? (a + b - 1) / b : -(-a / b);
}

/* col (Cg*KH*KW, OH*OW) = the unfolded window of one sample's Cg channels,
 * channel c's (H, W) plane at in + c*chan_stride; zero outside the input.
 * The columns [lo, hi) whose input column is inside are found once per
 * filter column, so the copy loop has no test. */
static void im2col_sample(float *col, const float *in, size_t chan_stride, int Cg, const mg_conv2d_shape *s)
{
    const int P = s->OH * s->OW, OW = s->OW, st = s->stride;
    for (int kw = 0; kw < s->KW; kw++) {
        const int shift = kw - s->pad;
        int lo = ceil_div(-shift, st), hi = ceil_div(s->W - shift, st);
        lo = lo < 0 ? 0 : lo > OW ? OW : lo;
        hi = hi < lo ? lo : hi > OW ? OW : hi;
        for (int c = 0; c < Cg; c++) {
            const float *plane = in + (size_t)c * chan_stride;
            for (int kh = 0; kh < s->KH; kh++) {
                float *row = col + ((size_t)(c * s->KH + kh) * s->KW + kw) * P;
                for (int oh = 0; oh < s->OH; oh++) {
                    const int ih = oh * st - s->pad + kh;
                    float *dst = row + (size_t)oh * OW;
                    if (ih < 0 || ih >= s->H) {
                        memset(dst, 0, (size_t)OW * sizeof(float));
                        continue;
                    }
                    const float *src = plane + (size_t)ih * s->W;
                    for (int ow = 0; ow < lo; ow++)
                        dst[ow] = 0.0f;
                    if (st == 1)
                        memcpy(dst + lo, src + lo + shift, (size_t)(hi - lo) * sizeof(float));
                    else
                        for (int ow = lo; ow < hi; ow++)
                            dst[ow] = src[ow * st + shift];
                    for (int ow = hi; ow < OW; ow++)
                        dst[ow] = 0.0f;
                }
            }
        }
    }
}

/* Convolution, per sample and group: U (K, P) the unfolded input (K =
 * Cg*KH*KW, P = OH*OW) and D (OCg, P) the output gradient; the weight
 * gradient is D U^T. The Gram form <U^T U, D^T D> costs P^2 (K + OCg), the
 * gradient OCg K P: the Gram form wins only when P < OCg K / (K + OCg), the
 * small late maps of deep networks, and never applies with a mask. */
static mg_status conv_sq(const mg_model *m, const mg_op *op, int N, double *sq, mg_error *err)
{
    const mg_conv2d_shape *s = &op->conv;
    const int G = s->groups > 1 ? s->groups : 1, Cg = s->C / G, OCg = s->OC / G;
    const int K = Cg * s->KH * s->KW, P = s->OH * s->OW, ld = N * P;
    const size_t HW = (size_t)s->H * s->W;
    const float *in = value_act(m, op->in[0]), *d = value_grad(m, op->out);
    const float *wm = m->masks + op->w, *bm = op->b == MG_NO_PARAM ? NULL : m->masks + op->b;
    const int masked = any_masked(wm, (size_t)s->OC * K);
    const int gram = !masked && (double)P * (K + OCg) < (double)OCg * K;
    float *buf = scratch_floats(m, (size_t)K * P + (gram ? 2 * (size_t)P * P : (size_t)OCg * K), err);
    if (!buf)
        return MG_ERR_NOMEM;
    float *U = buf, *W = buf + (size_t)K * P;
    for (int n = 0; n < N; n++) {
        double acc = 0.0;
        for (int g = 0; g < G; g++) {
            im2col_sample(U, in + ((size_t)g * Cg * N + n) * HW, (size_t)N * HW, Cg, s);
            const float *D = d + ((size_t)g * OCg * N + n) * P;
            if (gram) {
                float *gu = W, *gd = W + (size_t)P * P;
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, P, K, 1.0f, U, P, U, P, 0.0f, gu, P);
                cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, P, P, OCg, 1.0f, D, ld, D, ld, 0.0f, gd, P);
                for (size_t k = 0; k < (size_t)P * P; k++)
                    acc += (double)gu[k] * gd[k];
            } else {
                cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, OCg, K, P, 1.0f, D, ld, U, P, 0.0f, W, K);
                acc += sumsq(W, masked ? wm + (size_t)g * OCg * K : NULL, (size_t)OCg * K);
            }
            for (int oc = 0; bm && oc < OCg; oc++) {
                if (bm[g * OCg + oc] == 0.0f)
                    continue;
                double t = 0.0;
                for (int p = 0; p < P; p++)
                    t += D[(size_t)oc * ld + p];
                acc += t * t;
            }
        }
        sq[n] += acc;
    }
    free(buf);
    return MG_OK;
}

/* Layer norm over (c,h,E): sample n's gamma gradient is sum_r d_r * xhat_r
 * and its beta gradient sum_r d_r, both of size E: formed directly. */
static mg_status ln_sq(const mg_model *m, int i, int N, double *sq, mg_error *err)
{
    const mg_op *op = &m->ops[i];
    const mg_shape3 si = m->values[op->in[0]].shape;
    const int E = op->C;
    const float *x = value_act(m, op->in[0]), *d = value_grad(m, op->out);
    const float *mean = m->cache[i], *rstd = m->cache[i] + (size_t)N * op->S;
    const float *gm = m->masks + op->w, *bm = m->masks + op->b;
    double *dg = mg_calloc(2 * (size_t)E, sizeof(double), "per-example gradient scratch", err);
    if (!dg)
        return MG_ERR_NOMEM;
    double *db = dg + E;
    for (int n = 0; n < N; n++) {
        memset(dg, 0, 2 * (size_t)E * sizeof(double));
        for (int c = 0; c < si.c; c++)
            for (int h = 0; h < si.h; h++) {
                const size_t row = ((size_t)c * N + n) * si.h + h;
                const float *xr = x + row * E, *dr = d + row * E;
                for (int e = 0; e < E; e++) {
                    const float xh = (xr[e] - mean[row]) * rstd[row];
                    dg[e] += (double)dr[e] * xh;
                    db[e] += dr[e];
                }
            }
        double s = 0.0;
        for (int e = 0; e < E; e++)
            s += (gm[e] != 0.0f ? dg[e] * dg[e] : 0.0) + (bm[e] != 0.0f ? db[e] * db[e] : 0.0);
        sq[n] += s;
    }
    free(dg);
    return MG_OK;
}

/* Self-attention: each sample's gradient through the batch kernel run on
 * that sample alone (its sequence is contiguous: the value has one channel). */
static mg_status mha_sq(const mg_model *m, int i, int N, double *sq, mg_error *err)
{
    const mg_op *op = &m->ops[i];
    const int L = op->L, E = op->E, H = op->H;
    const size_t nw = 3 * (size_t)E * E, nb = 3 * (size_t)E, nw2 = (size_t)E * E, nb2 = (size_t)E;
    const size_t ng = nw + nb + nw2 + nb2;
    float *buf = scratch_floats(m, ng + mg_mha_scratch(1, L, E, H), err);
    if (!buf)
        return MG_ERR_NOMEM;
    const float *x = value_act(m, op->in[0]), *d = value_grad(m, op->out);
    const float *qkv = m->cache[i], *att = qkv + (size_t)N * L * 3 * E, *ctx = att + (size_t)N * H * L * L;
    float *gw = buf, *gb = gw + nw, *gw2 = gb + nb, *gb2 = gw2 + nw2, *scratch = buf + ng;
    for (int n = 0; n < N; n++) {
        memset(buf, 0, ng * sizeof(float));
        const size_t le = (size_t)n * L * E;
        mg_mha_backward(NULL, gw, gb, gw2, gb2, d + le, x + le, qkv + 3 * le, att + (size_t)n * H * L * L, ctx + le,
                        m->params + op->w, m->params + op->w2, 1, L, E, H, scratch);
        sq[n] += sumsq(gw, m->masks + op->w, nw) + sumsq(gb, m->masks + op->b, nb) +
                 sumsq(gw2, m->masks + op->w2, nw2) + sumsq(gb2, m->masks + op->b2, nb2);
    }
    free(buf);
    return MG_OK;
}

mg_status mg_model_per_example_grad_norms(mg_model *m, double *norms, mg_error *err)
{
    mg_status st = MG_OK;
    MG_CHECK(refuse_batch_norm(m, err));
    const int N = m->last_batch;
    if (N < 1 || m->cap_grad < N || !m->ready[m->values[m->logits].root])
        MG_FAIL(MG_ERR_ARG, "model %s: per-example gradient norms need a forward and a backward first", m->arch);
    MG_CHECK(check_kept(m, err));
    for (int n = 0; n < N; n++)
        norms[n] = 0.0;
    for (int i = 0; i < m->n_ops; i++) {
        const mg_op *op = &m->ops[i];
        switch (op->kind) {
        case MG_OP_LINEAR:
            MG_CHECK(linear_sq(m, op, N, norms, err));
            break;
        case MG_OP_CONV:
            MG_CHECK(conv_sq(m, op, N, norms, err));
            break;
        case MG_OP_LN:
            MG_CHECK(ln_sq(m, i, N, norms, err));
            break;
        case MG_OP_MHA:
            MG_CHECK(mha_sq(m, i, N, norms, err));
            break;
        default:
            break;
        }
    }
    for (int n = 0; n < N; n++)
        norms[n] = sqrt(norms[n]);
cleanup:
    return st;
}

/* ---- DP-SGD ------------------------------------------------------------------------------- */

mg_status mg_model_dp_backward(mg_model *m, const int32_t *y, int batch, double clip, double *loss,
                               double *norms_out, mg_error *err)
{
    mg_status st = MG_OK;
    const int K = m->n_classes;
    float *dl = NULL, *sink = NULL, *grads = m->grads;
    double *nrm = NULL;
    MG_CHECK(refuse_batch_norm(m, err));
    if (m->last_batch == 0 || batch != m->last_batch)
        MG_FAIL(MG_ERR_ARG, "model %s: DP backward on a batch of %d but the last forward had %d", m->arch, batch,
                m->last_batch);
    if (!(clip > 0.0) || !isfinite(clip))
        MG_FAIL(MG_ERR_ARG, "model %s: the DP clipping bound must be positive and finite (got %g)", m->arch, clip);
    for (int n = 0; n < batch; n++)
        if (y[n] < 0 || y[n] >= K)
            MG_FAIL(MG_ERR_ARG, "model %s: label %d of sample %d is outside [0, %d)", m->arch, (int)y[n], n, K);
    MG_CHECK(mg_model_enable_per_example(m, err));
    dl = mg_calloc((size_t)batch * K, sizeof(float), "DP logit gradients", err);
    sink = mg_malloc(m->n_params ? m->n_params : 1, sizeof(float), "DP first-pass gradients", err);
    nrm = mg_malloc((size_t)batch, sizeof(double), "DP norms", err);
    if (!dl || !sink || !nrm)
        MG_FAIL(MG_ERR_NOMEM, "model %s: out of memory for the DP gradients of a batch of %d", m->arch, batch);

    /* Row by row with N = 1: each row is its own sample's loss gradient, undivided. */
    const float *logits = value_act(m, m->logits);
    const float eps = m->smoothing;
    const double l = eps > 0.0f ? mg_softmax_xent_smooth_forward(m->probs, logits, y, batch, K, eps)
                                : mg_softmax_xent_forward(m->probs, logits, y, batch, K);
    for (int n = 0; n < batch; n++) {
        const size_t o = (size_t)n * K;
        if (eps > 0.0f)
            mg_softmax_xent_smooth_backward(dl + o, m->probs + o, y + n, 1, K, eps);
        else
            mg_softmax_xent_backward(dl + o, m->probs + o, y + n, 1, K);
    }

    /* The first backward only has to leave the output gradients behind: its
     * parameter gradients go to a block nobody reads (never initialised:
     * only added to), which spares two copies of the gradients. */
    m->grads = sink;
    MG_CHECK(mg_model_backward_from_dlogits(m, dl, batch, err));
    MG_CHECK(mg_model_per_example_grad_norms(m, nrm, err));
    m->grads = grads;
    for (int n = 0; n < batch; n++)
        if (!isfinite(nrm[n]))
            MG_FAIL(MG_ERR_NUMERIC, "model %s: the gradient norm of sample %d of the batch is not finite", m->arch,
                    n);
    for (int n = 0; n < batch; n++) {
        if (nrm[n] <= clip)
            continue;
        const float c = (float)(clip / nrm[n]);
        for (int k = 0; k < K; k++)
            dl[(size_t)n * K + k] *= c;
    }
    MG_CHECK(mg_model_backward_from_dlogits(m, dl, batch, err));
    if (loss)
        *loss = l;
    if (norms_out)
        memcpy(norms_out, nrm, (size_t)batch * sizeof(double));
cleanup:
    m->grads = grads;
    free(dl);
    free(sink);
    free(nrm);
    return st;
}

void mg_dp_add_noise(float *grads, const float *masks, size_t n, double sigma_times_clip, double batch,
                     mg_rng *rng)
{
    const int draw = sigma_times_clip > 0.0;
    for (size_t i = 0; i < n; i++) {
        const double z = draw ? sigma_times_clip * mg_rng_normal(rng) : 0.0;
        grads[i] = masks && masks[i] == 0.0f ? 0.0f : (float)(((double)grads[i] + z) / batch);
    }
}
