/*
 * net.c: the attack models of the classifier attacks, built from the
 * engine's public layer kernels because the engine's model registry has
 * neither dropout in its MLP nor a transformer over class tokens:
 *   - an MLP with ReLU and per-layer dropout (Yuan & Zhang's MIAFC, Gonon et
 *     al.'s perceptrons);
 *   - SAMIA's transformer (Yuan & Zhang's transformer.py; attack.h states
 *     the architecture).
 * Parameters and gradients each live in one block sliced by a small tensor
 * table, as in the engine. Activations are sized for the largest batch seen.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"

enum { NET_MLP = 0, NET_SAMIA = 1 };

/* SAMIA's fixed sizes (their Transformer defaults). */
enum { SA_E = 64, SA_HEADS = 4, SA_FF = 128, SA_LAYERS = 3, SA_HID = 64 };
#define SA_DROP 0.2f
#define SA_LN_EPS 1e-5f
#define SA_BN_EPS 1e-5f
#define SA_BN_MOMENTUM 0.1f

typedef enum { INIT_ZERO, INIT_ONE, INIT_XAVIER_NORMAL, INIT_XAVIER_UNIFORM, INIT_TORCH_LINEAR } init_kind;

typedef struct {
    size_t off, count;
    int fan_in, fan_out;
    init_kind init;
} tensor;

#define MAX_TENSORS 64

/* One encoder layer's parameter offsets and activations. */
typedef struct {
    size_t in_w, in_b, out_w, out_b, l1_w, l1_b, l2_w, l2_b, ln1_g, ln1_b, ln2_g, ln2_b;
    float *qkv, *att, *ctx, *m, *md, *mmask, *r1, *x1, *mean1, *rstd1;
    float *f1, *f1g, *f1d, *f1mask, *f2, *f2d, *f2mask, *r2, *mean2, *rstd2;
} enc_layer;

struct mg_atk_net {
    int kind;
    int in_dim, out_dim;
    size_t n_params;
    float *params, *grads;
    tensor t[MAX_TENSORS];
    int n_t;
    int cap;          /* batch the activations are sized for */
    int last_n, last_train;
    float *x;         /* (cap, in_dim) copy of the last input */
    float *logits;    /* (cap, out_dim) */
    float *dout_buf;  /* scratch for the training loop: (cap, out_dim) */
    float *probs;     /* (cap, out_dim) */

    /* mlp */
    int n_hidden;
    int width[MG_ATK_MLP_MAX_HIDDEN + 2];
    float drop[MG_ATK_MLP_MAX_HIDDEN];
    size_t w_off[MG_ATK_MLP_MAX_HIDDEN + 1], b_off[MG_ATK_MLP_MAX_HIDDEN + 1];
    float *pre[MG_ATK_MLP_MAX_HIDDEN], *act[MG_ATK_MLP_MAX_HIDDEN], *mask[MG_ATK_MLP_MAX_HIDDEN],
        *hout[MG_ATK_MLP_MAX_HIDDEN];
    float *ga, *gb;   /* gradient scratch (cap, max width) */
    int max_w;

    /* samia */
    int K;
    size_t bn_g, bn_b, fc1_w, fc1_b, fc2_w, fc2_b, fc3_w, fc3_b;
    enc_layer L[SA_LAYERS];
    float *run_mean, *run_var;           /* (3K) batch-norm running statistics */
    float *bn, *bn_mean, *bn_rstd, *tok, *h0;
    float *a[SA_LAYERS + 1];             /* encoder inputs/outputs (T, E) */
    float *h2, *h2r;
    float *dA, *dR, *dX1, *dE, *dF1, *dF2, *dTok, *dBn, *dH2r, *dH2, *mha_scratch;
};

/* ---- construction ------------------------------------------------------------------- */

static size_t add_tensor(mg_atk_net *n, size_t count, int fan_in, int fan_out, init_kind init)
{
    tensor *t = &n->t[n->n_t++];
    t->off = n->n_params;
    t->count = count;
    t->fan_in = fan_in;
    t->fan_out = fan_out;
    t->init = init;
    n->n_params += count;
    return t->off;
}

static mg_status alloc_params(mg_atk_net *n, mg_error *err)
{
    n->params = mg_calloc(n->n_params, sizeof(float), "attack model parameters", err);
    n->grads = mg_calloc(n->n_params, sizeof(float), "attack model gradients", err);
    return n->params && n->grads ? MG_OK : MG_ERR_NOMEM;
}

mg_status mg_atk_net_mlp(const mg_atk_mlp_cfg *cfg, mg_atk_net **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_atk_net *n = NULL;
    *out = NULL;
    if (cfg->in_dim < 1 || cfg->n_hidden < 0 || cfg->n_hidden > MG_ATK_MLP_MAX_HIDDEN ||
        (cfg->out_dim != 1 && cfg->out_dim != 2))
        MG_FAIL(MG_ERR_ARG, "attack MLP: bad shape (in %d, %d hidden layers, out %d)", cfg->in_dim, cfg->n_hidden,
                cfg->out_dim);
    n = mg_calloc(1, sizeof *n, "attack MLP", err);
    if (!n)
        MG_FAIL(MG_ERR_NOMEM, "attack MLP: out of memory");
    n->kind = NET_MLP;
    n->in_dim = cfg->in_dim;
    n->out_dim = cfg->out_dim;
    n->n_hidden = cfg->n_hidden;
    n->width[0] = cfg->in_dim;
    n->max_w = cfg->in_dim > cfg->out_dim ? cfg->in_dim : cfg->out_dim;
    for (int l = 0; l < cfg->n_hidden; l++) {
        if (cfg->hidden[l] < 1 || cfg->dropout[l] < 0.0f || cfg->dropout[l] >= 1.0f)
            MG_FAIL(MG_ERR_ARG, "attack MLP: hidden layer %d has width %d and dropout %g", l + 1, cfg->hidden[l],
                    (double)cfg->dropout[l]);
        n->width[l + 1] = cfg->hidden[l];
        n->drop[l] = cfg->dropout[l];
        if (cfg->hidden[l] > n->max_w)
            n->max_w = cfg->hidden[l];
    }
    n->width[cfg->n_hidden + 1] = cfg->out_dim;
    init_kind wi = cfg->xavier ? INIT_XAVIER_NORMAL : INIT_TORCH_LINEAR;
    init_kind bi = cfg->xavier ? INIT_ZERO : INIT_TORCH_LINEAR;
    for (int l = 0; l <= cfg->n_hidden; l++) {
        int I = n->width[l], O = n->width[l + 1];
        n->w_off[l] = add_tensor(n, (size_t)I * O, I, O, wi);
        n->b_off[l] = add_tensor(n, (size_t)O, I, O, bi);
    }
    MG_CHECK(alloc_params(n, err));
    *out = n;
    n = NULL;
cleanup:
    mg_atk_net_destroy(&n);
    return st;
}

mg_status mg_atk_net_samia(int n_classes, mg_atk_net **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_atk_net *n = NULL;
    *out = NULL;
    if (n_classes < 1 || n_classes > 1 << 16)
        MG_FAIL(MG_ERR_ARG, "attack samia: %d classes", n_classes);
    n = mg_calloc(1, sizeof *n, "attack transformer", err);
    if (!n)
        MG_FAIL(MG_ERR_NOMEM, "attack samia: out of memory");
    const int K = n_classes, E = SA_E;
    n->kind = NET_SAMIA;
    n->K = K;
    n->in_dim = 3 * K;
    n->out_dim = 2;
    n->bn_g = add_tensor(n, (size_t)3 * K, 0, 0, INIT_ONE);
    n->bn_b = add_tensor(n, (size_t)3 * K, 0, 0, INIT_ZERO);
    n->fc1_w = add_tensor(n, (size_t)E * 3, 3, E, INIT_XAVIER_NORMAL);
    n->fc1_b = add_tensor(n, (size_t)E, 3, E, INIT_ZERO);
    for (int l = 0; l < SA_LAYERS; l++) {
        enc_layer *L = &n->L[l];
        /* torch's MultiheadAttention._reset_parameters: xavier-uniform packed
         * in-projection, zero biases; the out-projection keeps Linear's
         * default weight (the attack's weight_init skips it: its class is
         * not "Linear"). */
        L->in_w = add_tensor(n, (size_t)3 * E * E, E, 3 * E, INIT_XAVIER_UNIFORM);
        L->in_b = add_tensor(n, (size_t)3 * E, 0, 0, INIT_ZERO);
        L->out_w = add_tensor(n, (size_t)E * E, E, E, INIT_TORCH_LINEAR);
        L->out_b = add_tensor(n, (size_t)E, 0, 0, INIT_ZERO);
        L->l1_w = add_tensor(n, (size_t)SA_FF * E, E, SA_FF, INIT_XAVIER_NORMAL);
        L->l1_b = add_tensor(n, (size_t)SA_FF, 0, 0, INIT_ZERO);
        L->l2_w = add_tensor(n, (size_t)E * SA_FF, SA_FF, E, INIT_XAVIER_NORMAL);
        L->l2_b = add_tensor(n, (size_t)E, 0, 0, INIT_ZERO);
        L->ln1_g = add_tensor(n, (size_t)E, 0, 0, INIT_ONE);
        L->ln1_b = add_tensor(n, (size_t)E, 0, 0, INIT_ZERO);
        L->ln2_g = add_tensor(n, (size_t)E, 0, 0, INIT_ONE);
        L->ln2_b = add_tensor(n, (size_t)E, 0, 0, INIT_ZERO);
    }
    n->fc2_w = add_tensor(n, (size_t)SA_HID * K * E, K * E, SA_HID, INIT_XAVIER_NORMAL);
    n->fc2_b = add_tensor(n, (size_t)SA_HID, 0, 0, INIT_ZERO);
    n->fc3_w = add_tensor(n, (size_t)2 * SA_HID, SA_HID, 2, INIT_XAVIER_NORMAL);
    n->fc3_b = add_tensor(n, 2, 0, 0, INIT_ZERO);
    MG_CHECK(alloc_params(n, err));
    n->run_mean = mg_calloc((size_t)3 * K, sizeof(float), "batch-norm running mean", err);
    n->run_var = mg_calloc((size_t)3 * K, sizeof(float), "batch-norm running variance", err);
    if (!n->run_mean || !n->run_var)
        MG_FAIL(MG_ERR_NOMEM, "attack samia: out of memory");
    for (int i = 0; i < 3 * K; i++)
        n->run_var[i] = 1.0f;
    *out = n;
    n = NULL;
cleanup:
    mg_atk_net_destroy(&n);
    return st;
}

static void free_acts(mg_atk_net *n)
{
    free(n->x);
    free(n->logits);
    free(n->dout_buf);
    free(n->probs);
    for (int l = 0; l < MG_ATK_MLP_MAX_HIDDEN; l++) {
        free(n->pre[l]);
        free(n->act[l]);
        free(n->mask[l]);
        free(n->hout[l]);
    }
    free(n->ga);
    free(n->gb);
    for (int l = 0; l < SA_LAYERS; l++) {
        enc_layer *L = &n->L[l];
        float **bufs[] = {&L->qkv, &L->att,  &L->ctx, &L->m,      &L->md,  &L->mmask, &L->r1,
                          &L->x1,  &L->mean1, &L->rstd1, &L->f1, &L->f1g, &L->f1d,  &L->f1mask,
                          &L->f2,  &L->f2d,  &L->f2mask, &L->r2, &L->mean2, &L->rstd2};
        for (size_t i = 0; i < sizeof bufs / sizeof bufs[0]; i++) {
            free(*bufs[i]);
            *bufs[i] = NULL;
        }
    }
    float **sb[] = {&n->bn,  &n->bn_mean, &n->bn_rstd, &n->tok, &n->h0,  &n->h2,  &n->h2r,  &n->dA,
                    &n->dR,  &n->dX1,     &n->dE,      &n->dF1, &n->dF2, &n->dTok, &n->dBn, &n->dH2r,
                    &n->dH2, &n->mha_scratch};
    for (size_t i = 0; i < sizeof sb / sizeof sb[0]; i++) {
        free(*sb[i]);
        *sb[i] = NULL;
    }
    for (int l = 0; l <= SA_LAYERS; l++) {
        free(n->a[l]);
        n->a[l] = NULL;
    }
    n->x = n->logits = n->dout_buf = n->probs = n->ga = n->gb = NULL;
    memset(n->pre, 0, sizeof n->pre);
    memset(n->act, 0, sizeof n->act);
    memset(n->mask, 0, sizeof n->mask);
    memset(n->hout, 0, sizeof n->hout);
    n->cap = 0;
}

void mg_atk_net_destroy(mg_atk_net **net)
{
    if (!net || !*net)
        return;
    mg_atk_net *n = *net;
    free_acts(n);
    free(n->params);
    free(n->grads);
    free(n->run_mean);
    free(n->run_var);
    free(n);
    *net = NULL;
}

/* Size every activation for batches of up to N rows. */
static mg_status ensure_cap(mg_atk_net *n, int N, mg_error *err)
{
    if (N <= n->cap)
        return MG_OK;
    free_acts(n);
    size_t Nn = (size_t)N;
    int ok = 1;
#define ALLOC(p, count)                                                      \
    do {                                                                     \
        (p) = mg_malloc((count), sizeof(float), "attack model activations", err); \
        ok = ok && (p) != NULL;                                              \
    } while (0)
    ALLOC(n->x, Nn * n->in_dim);
    ALLOC(n->logits, Nn * n->out_dim);
    ALLOC(n->dout_buf, Nn * n->out_dim);
    ALLOC(n->probs, Nn * n->out_dim);
    if (n->kind == NET_MLP) {
        for (int l = 0; l < n->n_hidden; l++) {
            size_t c = Nn * n->width[l + 1];
            ALLOC(n->pre[l], c);
            ALLOC(n->act[l], c);
            ALLOC(n->mask[l], c);
            ALLOC(n->hout[l], c);
        }
        ALLOC(n->ga, Nn * n->max_w);
        ALLOC(n->gb, Nn * n->max_w);
    } else {
        const size_t K = (size_t)n->K, E = SA_E, T = Nn * K;
        ALLOC(n->bn, Nn * 3 * K);
        ALLOC(n->bn_mean, 3 * K);
        ALLOC(n->bn_rstd, 3 * K);
        ALLOC(n->tok, T * 3);
        ALLOC(n->h0, T * E);
        for (int l = 0; l <= SA_LAYERS; l++)
            ALLOC(n->a[l], T * E);
        for (int l = 0; l < SA_LAYERS; l++) {
            enc_layer *L = &n->L[l];
            ALLOC(L->qkv, T * 3 * E);
            ALLOC(L->att, Nn * SA_HEADS * K * K);
            ALLOC(L->ctx, T * E);
            ALLOC(L->m, T * E);
            ALLOC(L->md, T * E);
            ALLOC(L->mmask, T * E);
            ALLOC(L->r1, T * E);
            ALLOC(L->x1, T * E);
            ALLOC(L->mean1, T);
            ALLOC(L->rstd1, T);
            ALLOC(L->f1, T * SA_FF);
            ALLOC(L->f1g, T * SA_FF);
            ALLOC(L->f1d, T * SA_FF);
            ALLOC(L->f1mask, T * SA_FF);
            ALLOC(L->f2, T * E);
            ALLOC(L->f2d, T * E);
            ALLOC(L->f2mask, T * E);
            ALLOC(L->r2, T * E);
            ALLOC(L->mean2, T);
            ALLOC(L->rstd2, T);
        }
        ALLOC(n->h2, Nn * SA_HID);
        ALLOC(n->h2r, Nn * SA_HID);
        ALLOC(n->dA, T * E);
        ALLOC(n->dR, T * E);
        ALLOC(n->dX1, T * E);
        ALLOC(n->dE, T * E);
        ALLOC(n->dF1, T * SA_FF);
        ALLOC(n->dF2, T * SA_FF);
        ALLOC(n->dTok, T * 3);
        ALLOC(n->dBn, Nn * 3 * K);
        ALLOC(n->dH2r, Nn * SA_HID);
        ALLOC(n->dH2, Nn * SA_HID);
        ALLOC(n->mha_scratch, mg_mha_scratch(N, n->K, SA_E, SA_HEADS));
    }
#undef ALLOC
    if (!ok) {
        free_acts(n);
        return MG_ERR_NOMEM;
    }
    n->cap = N;
    return MG_OK;
}

size_t mg_atk_net_n_params(const mg_atk_net *net)
{
    return net->n_params;
}

float *mg_atk_net_params(mg_atk_net *net)
{
    return net->params;
}

float *mg_atk_net_grads(mg_atk_net *net)
{
    return net->grads;
}

int mg_atk_net_in_dim(const mg_atk_net *net)
{
    return net->in_dim;
}

int mg_atk_net_out_dim(const mg_atk_net *net)
{
    return net->out_dim;
}

void mg_atk_net_init(mg_atk_net *net, mg_rng *rng)
{
    for (int i = 0; i < net->n_t; i++) {
        const tensor *t = &net->t[i];
        float *p = net->params + t->off;
        double fan_sum = (double)t->fan_in + (double)t->fan_out;
        for (size_t j = 0; j < t->count; j++) {
            double v = 0.0;
            switch (t->init) {
            case INIT_ZERO:
                v = 0.0;
                break;
            case INIT_ONE:
                v = 1.0;
                break;
            case INIT_XAVIER_NORMAL:
                v = sqrt(2.0 / fan_sum) * mg_rng_normal(rng);
                break;
            case INIT_XAVIER_UNIFORM: {
                double b = sqrt(6.0 / fan_sum);
                v = (2.0 * mg_rng_uniform(rng) - 1.0) * b;
                break;
            }
            case INIT_TORCH_LINEAR: {
                double b = 1.0 / sqrt((double)t->fan_in);
                v = (2.0 * mg_rng_uniform(rng) - 1.0) * b;
                break;
            }
            }
            p[j] = (float)v;
        }
    }
    if (net->kind == NET_SAMIA) {
        /* torch's TransformerEncoder deep-copies one layer, and the attack's
         * weight_init redraws only Linear and norm modules: the attention
         * projections of all layers start equal, as layer 0's. */
        const enc_layer *L0 = &net->L[0];
        for (int l = 1; l < SA_LAYERS; l++) {
            const enc_layer *L = &net->L[l];
            memcpy(net->params + L->in_w, net->params + L0->in_w, (size_t)3 * SA_E * SA_E * sizeof(float));
            memcpy(net->params + L->out_w, net->params + L0->out_w, (size_t)SA_E * SA_E * sizeof(float));
        }
    }
    if (net->run_mean) {
        for (int i = 0; i < 3 * net->K; i++) {
            net->run_mean[i] = 0.0f;
            net->run_var[i] = 1.0f;
        }
    }
}

/* ---- MLP ------------------------------------------------------------------------- */

/* x (N, width[0]) -> hidden layers -> logits (N, out). */
static void mlp_forward(mg_atk_net *n, int N, int train, mg_rng *drop)
{
    const float *h = n->x;
    for (int l = 0; l < n->n_hidden; l++) {
        size_t c = (size_t)N * n->width[l + 1];
        mg_linear_forward(n->pre[l], h, n->params + n->w_off[l], n->params + n->b_off[l], N, n->width[l],
                          n->width[l + 1]);
        mg_relu_forward(n->act[l], n->pre[l], c);
        mg_dropout_forward(n->hout[l], n->mask[l], n->act[l], c, n->drop[l], train, drop);
        h = n->hout[l];
    }
    int L = n->n_hidden;
    mg_linear_forward(n->logits, h, n->params + n->w_off[L], n->params + n->b_off[L], N, n->width[L], n->out_dim);
}

static void mlp_backward(mg_atk_net *n, const float *dout)
{
    const int N = n->last_n, L = n->n_hidden;
    const float *g = dout;
    float *dh = n->ga, *other = n->gb;
    for (int l = L; l >= 0; l--) {
        int I = n->width[l], O = n->width[l + 1];
        const float *inp = l == 0 ? n->x : n->hout[l - 1];
        float *dinp = NULL;
        if (l > 0) {
            dinp = dh;
            memset(dinp, 0, (size_t)N * I * sizeof(float));
        }
        mg_linear_backward(dinp, n->grads + n->w_off[l], n->grads + n->b_off[l], g, inp,
                           n->params + n->w_off[l], N, I, O);
        if (l == 0)
            break;
        /* through dropout then ReLU of hidden layer l-1, into `other` */
        size_t c = (size_t)N * I;
        int dropped = n->last_train && n->drop[l - 1] > 0.0f;
        memset(other, 0, c * sizeof(float));
        mg_dropout_backward(other, dinp, dropped ? n->mask[l - 1] : NULL, c);
        memset(dinp, 0, c * sizeof(float));
        mg_relu_backward(dinp, other, n->act[l - 1], c);
        g = dinp;
        float *tmp = dh;
        dh = other;
        other = tmp;
    }
}

/* ---- SAMIA's transformer --------------------------------------------------------------- */

static void samia_forward(mg_atk_net *n, int N, int train, mg_rng *drop)
{
    const int K = n->K, E = SA_E, T = N * K, C = 3 * K;
    const size_t TE = (size_t)T * E, TF = (size_t)T * SA_FF;
    float *P = n->params;
    mg_batchnorm_forward(n->bn, n->bn_mean, n->bn_rstd, n->x, P + n->bn_g, P + n->bn_b, n->run_mean, n->run_var,
                         N, C, 1, train, SA_BN_MOMENTUM, SA_BN_EPS);
    /* Token k of sample s is (p_k, sens_k, onehot_k): columns k, K+k, 2K+k. */
    for (int s = 0; s < N; s++)
        for (int k = 0; k < K; k++)
            for (int c = 0; c < 3; c++)
                n->tok[((size_t)s * K + k) * 3 + c] = n->bn[(size_t)s * C + (size_t)c * K + k];
    mg_linear_forward(n->h0, n->tok, P + n->fc1_w, P + n->fc1_b, T, 3, E);
    mg_gelu_forward(n->a[0], n->h0, TE);
    for (int l = 0; l < SA_LAYERS; l++) {
        enc_layer *L = &n->L[l];
        /* post-norm encoder layer: x = LN1(x + drop(attn(x))); x = LN2(x + drop(ff(x))) */
        mg_mha_forward(L->m, L->qkv, L->att, L->ctx, n->a[l], P + L->in_w, P + L->in_b, P + L->out_w, P + L->out_b,
                       N, K, E, SA_HEADS);
        mg_dropout_forward(L->md, L->mmask, L->m, TE, SA_DROP, train, drop);
        mg_add_forward(L->r1, n->a[l], L->md, TE);
        mg_layernorm_forward(L->x1, L->mean1, L->rstd1, L->r1, P + L->ln1_g, P + L->ln1_b, T, E, SA_LN_EPS);
        mg_linear_forward(L->f1, L->x1, P + L->l1_w, P + L->l1_b, T, E, SA_FF);
        mg_gelu_forward(L->f1g, L->f1, TF);
        mg_dropout_forward(L->f1d, L->f1mask, L->f1g, TF, SA_DROP, train, drop);
        mg_linear_forward(L->f2, L->f1d, P + L->l2_w, P + L->l2_b, T, SA_FF, E);
        mg_dropout_forward(L->f2d, L->f2mask, L->f2, TE, SA_DROP, train, drop);
        mg_add_forward(L->r2, L->x1, L->f2d, TE);
        mg_layernorm_forward(n->a[l + 1], L->mean2, L->rstd2, L->r2, P + L->ln2_g, P + L->ln2_b, T, E, SA_LN_EPS);
    }
    /* a[SA_LAYERS] (N, K, E) is already the flattened (N, K*E) of torch's view. */
    mg_linear_forward(n->h2, n->a[SA_LAYERS], P + n->fc2_w, P + n->fc2_b, N, K * E, SA_HID);
    mg_relu_forward(n->h2r, n->h2, (size_t)N * SA_HID);
    mg_linear_forward(n->logits, n->h2r, P + n->fc3_w, P + n->fc3_b, N, SA_HID, 2);
}

static void zero(float *p, size_t count)
{
    memset(p, 0, count * sizeof(float));
}

static void samia_backward(mg_atk_net *n, const float *dout)
{
    const int N = n->last_n, K = n->K, E = SA_E, T = N * K, C = 3 * K;
    const size_t TE = (size_t)T * E, TF = (size_t)T * SA_FF;
    float *P = n->params, *G = n->grads;
    const int dropped = n->last_train;

    zero(n->dH2r, (size_t)N * SA_HID);
    mg_linear_backward(n->dH2r, G + n->fc3_w, G + n->fc3_b, dout, n->h2r, P + n->fc3_w, N, SA_HID, 2);
    zero(n->dH2, (size_t)N * SA_HID);
    mg_relu_backward(n->dH2, n->dH2r, n->h2r, (size_t)N * SA_HID);
    zero(n->dA, TE);
    mg_linear_backward(n->dA, G + n->fc2_w, G + n->fc2_b, n->dH2, n->a[SA_LAYERS], P + n->fc2_w, N, K * E, SA_HID);

    for (int l = SA_LAYERS - 1; l >= 0; l--) {
        enc_layer *L = &n->L[l];
        /* dA holds d a[l+1]. */
        zero(n->dR, TE);
        mg_layernorm_backward(n->dR, G + L->ln2_g, G + L->ln2_b, n->dA, L->r2, L->mean2, L->rstd2, P + L->ln2_g, T,
                              E);
        memcpy(n->dX1, n->dR, TE * sizeof(float));
        zero(n->dE, TE);
        mg_dropout_backward(n->dE, n->dR, dropped ? L->f2mask : NULL, TE);
        zero(n->dF2, TF);
        mg_linear_backward(n->dF2, G + L->l2_w, G + L->l2_b, n->dE, L->f1d, P + L->l2_w, T, SA_FF, E);
        zero(n->dF1, TF);
        mg_dropout_backward(n->dF1, n->dF2, dropped ? L->f1mask : NULL, TF);
        zero(n->dF2, TF);
        mg_gelu_backward(n->dF2, n->dF1, L->f1, TF);
        mg_linear_backward(n->dX1, G + L->l1_w, G + L->l1_b, n->dF2, L->x1, P + L->l1_w, T, E, SA_FF);
        zero(n->dR, TE);
        mg_layernorm_backward(n->dR, G + L->ln1_g, G + L->ln1_b, n->dX1, L->r1, L->mean1, L->rstd1, P + L->ln1_g, T,
                              E);
        memcpy(n->dA, n->dR, TE * sizeof(float));
        zero(n->dE, TE);
        mg_dropout_backward(n->dE, n->dR, dropped ? L->mmask : NULL, TE);
        mg_mha_backward(n->dA, G + L->in_w, G + L->in_b, G + L->out_w, G + L->out_b, n->dE, n->a[l], L->qkv, L->att,
                        L->ctx, P + L->in_w, P + L->out_w, N, K, E, SA_HEADS, n->mha_scratch);
    }
    zero(n->dR, TE);
    mg_gelu_backward(n->dR, n->dA, n->h0, TE);
    zero(n->dTok, (size_t)T * 3);
    mg_linear_backward(n->dTok, G + n->fc1_w, G + n->fc1_b, n->dR, n->tok, P + n->fc1_w, T, 3, E);
    for (int s = 0; s < N; s++)
        for (int k = 0; k < K; k++)
            for (int c = 0; c < 3; c++)
                n->dBn[(size_t)s * C + (size_t)c * K + k] = n->dTok[((size_t)s * K + k) * 3 + c];
    mg_batchnorm_backward(NULL, G + n->bn_g, G + n->bn_b, n->dBn, n->x, n->bn_mean, n->bn_rstd, P + n->bn_g, N, C, 1,
                          n->last_train);
}

/* ---- dispatch --------------------------------------------------------------------- */

mg_status mg_atk_net_forward(mg_atk_net *net, const float *x, int N, int train, mg_rng *drop, const float **out,
                             mg_error *err)
{
    if (N < 1)
        return mg_error_set(err, MG_ERR_ARG, "attack model: batch of %d", N);
    if (train && net->kind == NET_SAMIA && N < 2)
        return mg_error_set(err, MG_ERR_ARG, "attack samia: a training batch needs two samples for batch norm");
    if (train && !drop)
        return mg_error_set(err, MG_ERR_ARG, "attack model: a training forward needs a dropout generator");
    mg_status st = ensure_cap(net, N, err);
    if (st != MG_OK)
        return st;
    memcpy(net->x, x, (size_t)N * net->in_dim * sizeof(float));
    net->last_n = N;
    net->last_train = train;
    if (net->kind == NET_MLP)
        mlp_forward(net, N, train, drop);
    else
        samia_forward(net, N, train, drop);
    *out = net->logits;
    return MG_OK;
}

void mg_atk_net_backward(mg_atk_net *net, const float *dout)
{
    if (net->kind == NET_MLP)
        mlp_backward(net, dout);
    else
        samia_backward(net, dout);
}

/* ---- training ------------------------------------------------------------------------ */

/* Mean binary cross-entropy of logits s against y, stably:
 * softplus(s) - y s; dlogits = (sigmoid(s) - y) / N. */
static double bce(float *dlogits, const float *s, const int32_t *y, int N)
{
    double total = 0.0;
    for (int i = 0; i < N; i++) {
        double v = (double)s[i];
        double sp = v > 0.0 ? v + log1p(exp(-v)) : log1p(exp(v));
        total += sp - (y[i] ? v : 0.0);
        double sig = v >= 0.0 ? 1.0 / (1.0 + exp(-v)) : exp(v) / (1.0 + exp(v));
        dlogits[i] = (float)((sig - (double)y[i]) / N);
    }
    return total / N;
}

mg_status mg_atk_net_train(mg_atk_net *net, const float *x, const uint8_t *y, size_t n, const mg_atk_train_cfg *tc,
                           mg_rng *rng, const char *name, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *perm = NULL;
    float *xb = NULL;
    int32_t *yb = NULL;
    mg_optim opt;
    memset(&opt, 0, sizeof opt);
    const int D = net->in_dim;
    if (tc->epochs < 1 || tc->batch < 1 || !(tc->optim.lr > 0.0))
        MG_FAIL(MG_ERR_ARG, "attack %s: epochs %d, batch %d and learning rate %g must be positive", name, tc->epochs,
                tc->batch, tc->optim.lr);
    if (n < 2 || n > UINT32_MAX)
        MG_FAIL(MG_ERR_ARG, "attack %s: %zu training samples", name, n);
    uint64_t seed = mg_rng_next(rng);
    mg_rng shuffle, drop;
    mg_rng_seed(&shuffle, seed, "attack-train", "shuffle");
    mg_rng_seed(&drop, seed, "attack-train", "dropout");
    int B = tc->batch;
    if ((size_t)B > n)
        B = (int)n;
    perm = mg_malloc(n, sizeof *perm, "attack shuffle", err);
    xb = mg_malloc((size_t)B * D, sizeof *xb, "attack batch", err);
    yb = mg_malloc((size_t)B, sizeof *yb, "attack batch labels", err);
    if (!perm || !xb || !yb)
        MG_FAIL(MG_ERR_NOMEM, "attack %s: out of memory for training batches", name);
    MG_CHECK(mg_optim_init(&opt, &tc->optim, net->n_params, err));
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    for (int e = 0; e < tc->epochs; e++) {
        double lr = tc->optim.lr;
        for (int k = 0; k < tc->n_milestones; k++)
            if (tc->milestones[k] > 0 && e >= tc->milestones[k])
                lr *= tc->gamma;
        opt.cfg.lr = lr;
        mg_rng_shuffle_u32(&shuffle, perm, n);
        for (size_t b0 = 0; b0 < n; b0 += (size_t)B) {
            int nb = (int)((n - b0) < (size_t)B ? (n - b0) : (size_t)B);
            /* Batch norm cannot train on one sample. */
            if (nb < 2 && net->kind == NET_SAMIA)
                continue;
            for (int i = 0; i < nb; i++) {
                size_t src = perm[b0 + (size_t)i];
                memcpy(xb + (size_t)i * D, x + src * D, (size_t)D * sizeof(float));
                yb[i] = y[src] ? 1 : 0;
            }
            const float *logits = NULL;
            MG_CHECK(mg_atk_net_forward(net, xb, nb, 1, &drop, &logits, err));
            double loss;
            if (net->out_dim == 2) {
                loss = mg_softmax_xent_forward(net->probs, logits, yb, nb, 2);
                zero(net->dout_buf, (size_t)nb * 2);
                mg_softmax_xent_backward(net->dout_buf, net->probs, yb, nb, 2);
            } else {
                loss = bce(net->dout_buf, logits, yb, nb);
            }
            if (!isfinite(loss))
                MG_FAIL(MG_ERR_NUMERIC, "attack %s: the attack model's training loss is %g in epoch %d", name, loss,
                        e + 1);
            zero(net->grads, net->n_params);
            mg_atk_net_backward(net, net->dout_buf);
            mg_optim_step(&opt, net->params, net->grads, NULL);
        }
    }
cleanup:
    mg_optim_free(&opt);
    free(perm);
    free(xb);
    free(yb);
    return st;
}

mg_status mg_atk_net_score(mg_atk_net *net, const float *x, size_t n, double *score, mg_error *err)
{
    /* The training batch when there was one: SAMIA's activations grow with
     * batch x K^2 (attention) and batch x K x 128, so a larger scoring batch
     * would only cost memory. */
    const size_t B = net->cap > 0 ? (size_t)net->cap : 256;
    for (size_t b0 = 0; b0 < n; b0 += B) {
        int nb = (int)((n - b0) < B ? (n - b0) : B);
        const float *z = NULL;
        mg_status st = mg_atk_net_forward(net, x + b0 * net->in_dim, nb, 0, NULL, &z, err);
        if (st != MG_OK)
            return st;
        for (int i = 0; i < nb; i++)
            score[b0 + (size_t)i] =
                net->out_dim == 2 ? (double)z[2 * i + 1] - (double)z[2 * i] : (double)z[i];
    }
    return MG_OK;
}
