/*
 * advreg.c: Nasr, Shokri & Houmansadr's adversarial regularisation ("Machine
 * Learning with Membership Privacy using Adversarial Regularization", CCS
 * 2018, Algorithm 1). Training alternates k steps of an inference model h,
 * which learns to tell the classifier's training members from reference
 * non-members by the classifier's output, with one step of the classifier on
 * its loss plus gamma times the mean log h(member) of its batch, so the
 * classifier learns to make its members look like non-members to the best h
 * found so far. This file holds h, its step and the classifier's term; the
 * caller's training loop alternates them.
 *
 * h sees the softmax of the logits z and the 0/1 one-hot label, 2K values,
 * and gives one logit s, h = sigmoid(s). Architecture (K classes):
 *
 *   softmax(z) (K) -> 512 -> 64 \
 *                                concat (128) -> 256 -> 64 -> 1
 *   onehot(y)  (K) -> 512 -> 64 /
 *
 * ReLU after every layer but the last. The references have a tower per
 * input and a combining MLP: the authors' code (SPIN-UMass/ML-Privacy-
 * Regulization, InferenceAttack_HZ) uses K-1024-512-64 on the prediction,
 * K-128-64 on the label and 128-512-256-128-64-1 to combine; RelaxLoss's
 * reimplementation for Purchase and Texas (DingfanChen/RelaxLoss,
 * source/nonimage/defense/advreg.py), the one the RelaxLoss and WeMem papers
 * compare against, uses K-512-64, K-64 and 128-64-1. The engine has no op
 * that splits its input, so the towers are grouped 1x1 convolutions over the
 * 2K inputs taken as channels: two groups, the first seeing only the softmax
 * and the second only the label. That keeps the towers exactly separate but
 * gives them the same widths: 512-64, RelaxLoss's prediction tower, for both
 * (the authors' label tower is K-128-64). Leaving out the authors' 1024-wide
 * first layer and shortening the combining MLP makes h 4.2 times cheaper at
 * K = 100 (217 against 918 thousand multiply-adds a row). That matters
 * because each classifier step runs h forward and backward k times on twice
 * its batch and once more on the batch: at the authors' widths that
 * outweighs training the Purchase MLP itself, even with k = 1. Both
 * references draw N(0, 0.01) weights and zero biases; h starts from the
 * engine's PyTorch-default initialisation instead (mg_model_init_params; the
 * method prescribes none).
 *
 * The paper's gain is the log-likelihood mean log h(member) + mean
 * log(1 - h(reference)), which h maximises with Adam; the two references'
 * code instead regresses h on the 0/1 membership by mean squared error and
 * penalises the classifier by gamma (mean h - 1/2), and feeds the logits
 * (the authors) or the sorted logits (RelaxLoss) rather than the softmax;
 * RelaxLoss's one-hot is -1/1. This file follows the paper (and defense.h).
 */
#include "miagrid/defense.h"
#include "miagrid/store.h"
#include "nn/nn_internal.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Tower and combining widths (see above). */
enum { TOWER1 = 512, TOWER2 = 64, COMB1 = 256, COMB2 = 64 };
/* A sanity bound on K: 2K inputs per row and 1024 K weights in the first layer. */
enum { MAX_CLASSES = 1 << 16 };

#define ADVREG_FORMAT "miagrid advreg 1"
#define GROUP "advreg"

struct mg_advreg {
    mg_advreg_cfg cfg;
    mg_model *h;
    mg_optim opt;
    int cap;          /* rows the buffers below hold */
    float *x;         /* (cap, 2K) inputs of h */
    float *ds;        /* (cap) gradient of the objective with respect to h's logit */
    double *p;        /* (K) one row's softmax */
};

/* ---- small numerics ------------------------------------------------------------------- */

/* log sigmoid(s) = -log(1 + exp(-s)), without overflow for either sign. */
static double log_sigmoid(double s)
{
    return s >= 0.0 ? -log1p(exp(-s)) : s - log1p(exp(s));
}

static double sigmoid(double s)
{
    if (s >= 0.0)
        return 1.0 / (1.0 + exp(-s));
    double e = exp(s);
    return e / (1.0 + e);
}

/* softmax(z) into p, the largest logit factored out. */
static void softmax_row(double *p, const float *z, int K)
{
    double m = (double)z[0], sum = 0.0;
    for (int k = 1; k < K; k++)
        if ((double)z[k] > m)
            m = (double)z[k];
    for (int k = 0; k < K; k++) {
        p[k] = exp((double)z[k] - m);
        sum += p[k];
    }
    for (int k = 0; k < K; k++)
        p[k] /= sum;
}

/* ---- creation ------------------------------------------------------------------------- */

static mg_status check_cfg(const mg_advreg_cfg *c, mg_error *err)
{
    if (!c)
        return mg_error_set(err, MG_ERR_ARG, "advreg: no configuration given");
    if (c->n_classes < 2 || c->n_classes > MAX_CLASSES)
        return mg_error_set(err, MG_ERR_ARG, "advreg: n_classes %d must be in [2, %d]", c->n_classes, MAX_CLASSES);
    if (c->k_steps < 1)
        return mg_error_set(err, MG_ERR_ARG, "advreg: k_steps %d must be at least 1", c->k_steps);
    if (!(isfinite(c->gamma) && c->gamma >= 0.0))
        return mg_error_set(err, MG_ERR_ARG, "advreg: gamma %g must be finite and >= 0", c->gamma);
    if (!(isfinite(c->lr) && c->lr > 0.0))
        return mg_error_set(err, MG_ERR_ARG, "advreg: lr %g must be finite and > 0", c->lr);
    return MG_OK;
}

/* h as a graph: input (2K, 1, 1), towers as two-group 1x1 convolutions. */
static mg_status build_h(int K, mg_model **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_model *m = NULL;
    MG_CHECK(mg_graph_begin(&m, "advreg-h", 2 * K, 1, 1, 1, 0, err));
    int x = mg_g_fuse_act(m, mg_g_conv(m, "towers.0", 0, 2 * TOWER1, 1, 1, 0, 2, 1), MG_ACT_RELU);
    x = mg_g_fuse_act(m, mg_g_conv(m, "towers.1", x, 2 * TOWER2, 1, 1, 0, 2, 1), MG_ACT_RELU);
    x = mg_g_flatten(m, x);
    x = mg_g_fuse_act(m, mg_g_linear(m, "combine.0", x, COMB1, 1), MG_ACT_RELU);
    x = mg_g_fuse_act(m, mg_g_linear(m, "combine.1", x, COMB2, 1), MG_ACT_RELU);
    x = mg_g_linear(m, "combine.2", x, 1, 1);
    /* finish reports any error of the chain above and frees the model then. */
    MG_CHECK(mg_graph_finish(&m, x, err));
    *out = m;
    m = NULL;
cleanup:
    mg_model_destroy(&m);
    return st;
}

mg_status mg_advreg_create(const mg_advreg_cfg *cfg, uint64_t seed, mg_advreg **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_advreg *a = NULL;
    if (!out)
        return mg_error_set(err, MG_ERR_ARG, "advreg: no place for the result");
    *out = NULL;
    MG_CHECK(check_cfg(cfg, err));
    a = mg_calloc(1, sizeof *a, "advreg", err);
    if (!a)
        MG_CHECK(MG_ERR_NOMEM);
    a->cfg = *cfg;
    st = build_h(cfg->n_classes, &a->h, err);
    if (st != MG_OK) {
        mg_error_prefix(err, "advreg: ");
        goto cleanup;
    }
    mg_rng rng;
    mg_rng_seed(&rng, seed, "mg_advreg", "init");
    mg_model_init_params(a->h, &rng);
    /* torch.optim.Adam's defaults but the rate, as both references. */
    mg_optim_cfg oc = {.kind = MG_OPT_ADAM, .lr = cfg->lr, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    MG_CHECK(mg_optim_init(&a->opt, &oc, mg_model_n_params(a->h), err));
    a->p = mg_malloc((size_t)cfg->n_classes, sizeof(double), "advreg softmax", err);
    if (!a->p)
        MG_CHECK(MG_ERR_NOMEM);
    *out = a;
    a = NULL;
cleanup:
    mg_advreg_destroy(&a);
    return st;
}

void mg_advreg_destroy(mg_advreg **pa)
{
    if (!pa || !*pa)
        return;
    mg_advreg *a = *pa;
    mg_model_destroy(&a->h);
    mg_optim_free(&a->opt);
    free(a->x);
    free(a->ds);
    free(a->p);
    free(a);
    *pa = NULL;
}

const mg_advreg_cfg *mg_advreg_config(const mg_advreg *a)
{
    return a ? &a->cfg : NULL;
}

/* ---- h's inputs ------------------------------------------------------------------------ */

static mg_status ensure_rows(mg_advreg *a, int n, mg_error *err)
{
    if (n <= a->cap)
        return MG_OK;
    const size_t w = 2 * (size_t)a->cfg.n_classes;
    float *x = mg_malloc((size_t)n * w, sizeof(float), "advreg inputs", err);
    float *ds = x ? mg_malloc((size_t)n, sizeof(float), "advreg gradients", err) : NULL;
    if (!ds) {
        free(x);
        return MG_ERR_NOMEM;
    }
    free(a->x);
    free(a->ds);
    a->x = x;
    a->ds = ds;
    a->cap = n;
    return MG_OK;
}

/* Rows [row0, row0 + n) of h's input from n rows of logits and labels:
 * softmax in double, rounded once, then the one-hot label. what names the
 * rows in errors. Finite logits only: a classifier that diverged would
 * otherwise feed NaN into h's weights. */
static mg_status fill_inputs(mg_advreg *a, int row0, const float *logits, const int32_t *y, int n, const char *what,
                             mg_error *err)
{
    const int K = a->cfg.n_classes;
    for (int i = 0; i < n; i++) {
        const float *z = logits + (size_t)i * K;
        if (y[i] < 0 || y[i] >= K)
            return mg_error_set(err, MG_ERR_ARG, "advreg: label %d of %s row %d is outside [0, %d)", (int)y[i], what,
                                i, K);
        for (int k = 0; k < K; k++)
            if (!isfinite(z[k]))
                return mg_error_set(err, MG_ERR_NUMERIC, "advreg: logit %d of %s row %d is %g", k, what, i,
                                    (double)z[k]);
        softmax_row(a->p, z, K);
        float *x = a->x + (size_t)(row0 + i) * 2 * K;
        for (int k = 0; k < K; k++) {
            x[k] = (float)a->p[k];
            x[K + k] = k == y[i] ? 1.0f : 0.0f;
        }
    }
    return MG_OK;
}

/* ---- the inference model's step ------------------------------------------------------ */

mg_status mg_advreg_attack_step(mg_advreg *a, const float *mem_logits, const int32_t *mem_y, int nm,
                                const float *ref_logits, const int32_t *ref_y, int nr, double *gain,
                                mg_error *err)
{
    if (!a || !mem_logits || !mem_y || !ref_logits || !ref_y)
        return mg_error_set(err, MG_ERR_ARG, "advreg attack step: missing %s",
                            !a ? "inference model" : !mem_logits || !mem_y ? "member logits or labels"
                                                                          : "reference logits or labels");
    if (nm < 1 || nr < 1 || nm > INT_MAX - nr)
        return mg_error_set(err, MG_ERR_ARG,
                            "advreg attack step: needs at least one member and one reference (got %d and %d)", nm,
                            nr);
    const int n = nm + nr;
    mg_status st = ensure_rows(a, n, err);
    if (st == MG_OK)
        st = fill_inputs(a, 0, mem_logits, mem_y, nm, "member", err);
    if (st == MG_OK)
        st = fill_inputs(a, nm, ref_logits, ref_y, nr, "reference", err);
    const float *s = NULL;
    if (st == MG_OK)
        st = mg_model_forward(a->h, a->x, n, 1, &s, err);
    if (st != MG_OK)
        return st;

    /* The gain and the gradient of the loss -gain with respect to each s:
     * d/ds of -log sigmoid(s) is -sigmoid(-s), of -log(1 - sigmoid(s)) is sigmoid(s). */
    double gm = 0.0, gr = 0.0;
    for (int i = 0; i < nm; i++) {
        gm += log_sigmoid((double)s[i]);
        a->ds[i] = (float)(-sigmoid(-(double)s[i]) / nm);
    }
    for (int i = nm; i < n; i++) {
        gr += log_sigmoid(-(double)s[i]);
        a->ds[i] = (float)(sigmoid((double)s[i]) / nr);
    }
    const double g = gm / nm + gr / nr;
    if (!isfinite(g))
        return mg_error_set(err, MG_ERR_NUMERIC, "advreg attack step: the inference model's gain is %g", g);

    /* No input gradient: only h's parameters move here. */
    mg_model_set_input_grad(a->h, 0);
    mg_model_zero_grad(a->h);
    st = mg_model_backward_from_dlogits(a->h, a->ds, n, err);
    if (st != MG_OK)
        return st;
    mg_optim_step(&a->opt, mg_model_params(a->h), mg_model_grads(a->h), NULL);
    if (gain)
        *gain = g;
    return MG_OK;
}

/* ---- the classifier's term ------------------------------------------------------------ */

mg_status mg_advreg_penalty(mg_advreg *a, const float *logits, const int32_t *y, int b, float *dlogits,
                            double *value, mg_error *err)
{
    if (!a || !logits || !y || !dlogits || !value)
        return mg_error_set(err, MG_ERR_ARG, "advreg penalty: missing %s",
                            !a ? "inference model" : !logits || !y ? "logits or labels"
                                                   : !dlogits     ? "the logits' gradient"
                                                                  : "a place for the value");
    if (b < 1)
        return mg_error_set(err, MG_ERR_ARG, "advreg penalty: batch of %d rows", b);
    const int K = a->cfg.n_classes;
    mg_status st = ensure_rows(a, b, err);
    if (st == MG_OK)
        st = fill_inputs(a, 0, logits, y, b, "batch", err);
    if (st != MG_OK)
        return st;
    if (a->cfg.gamma == 0.0) {
        /* The term and its gradient are exactly zero: spare h's passes. */
        *value = 0.0;
        return MG_OK;
    }
    /* Eval mode: h is fixed during the classifier's step. */
    const float *s = NULL;
    st = mg_model_forward(a->h, a->x, b, 0, &s, err);
    if (st != MG_OK)
        return st;
    const double gamma = a->cfg.gamma;
    double sum = 0.0;
    for (int i = 0; i < b; i++) {
        sum += log_sigmoid((double)s[i]);
        a->ds[i] = (float)(gamma * sigmoid(-(double)s[i]) / b);
    }
    const double v = gamma * sum / b;
    if (!isfinite(v))
        return mg_error_set(err, MG_ERR_NUMERIC, "advreg penalty: the adversarial term is %g", v);

    /* Back through h to its input; h's parameter gradients are scratch here
     * (zeroed before h's own steps) and its parameters are not stepped. */
    mg_model_set_input_grad(a->h, 1);
    mg_model_zero_grad(a->h);
    st = mg_model_backward_from_dlogits(a->h, a->ds, b, err);
    if (st != MG_OK)
        return st;
    const float *dx = mg_model_input_grad(a->h);
    if (!dx)
        return mg_error_set(err, MG_ERR_INTERNAL, "advreg penalty: the inference model gave no input gradient");

    /* Only the softmax half depends on z; through the softmax's (symmetric)
     * Jacobian diag(p) - p p^T: dz_k = p_k (dp_k - sum_j p_j dp_j). */
    for (int i = 0; i < b; i++) {
        const float *dp = dx + (size_t)i * 2 * K;
        softmax_row(a->p, logits + (size_t)i * K, K);
        double dot = 0.0;
        for (int k = 0; k < K; k++)
            dot += a->p[k] * (double)dp[k];
        float *dz = dlogits + (size_t)i * K;
        for (int k = 0; k < K; k++)
            dz[k] += (float)(a->p[k] * ((double)dp[k] - dot));
    }
    *value = v;
    return MG_OK;
}

/* ---- saving and loading ---------------------------------------------------------------- */

/* The tensor table as text ("towers.0.weight[1024,100,1,1] ..."), stored
 * and compared, so a file is only loaded into the architecture it was
 * written from. */
static void describe_layout(const mg_model *h, mg_strbuf *b)
{
    for (size_t t = 0; t < mg_model_n_tensors(h); t++) {
        const mg_tensor_info *ti = mg_model_tensor(h, t);
        mg_strbuf_printf(b, "%s%s[", t ? " " : "", ti->name);
        for (int d = 0; d < ti->ndim; d++)
            mg_strbuf_printf(b, "%s%d", d ? "," : "", ti->shape[d]);
        mg_strbuf_append(b, "]");
    }
}

static mg_status write_floats(hid_t loc, const char *path, const float *v, size_t n, mg_error *err)
{
    hsize_t dims[1] = {(hsize_t)n};
    return mg_h5_write(loc, path, H5T_NATIVE_FLOAT, 1, dims, v, err);
}

/* Layout in loc: group "advreg" with attributes format, n_classes, layout,
 * adam_step (and k_steps, gamma, lr for readers; the caller's configuration
 * decides those) and float datasets params, adam_m1, adam_m2. */
mg_status mg_advreg_save(const mg_advreg *a, hid_t loc, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t g = H5I_INVALID_HID;
    mg_strbuf layout;
    mg_strbuf_init(&layout);
    if (!a)
        MG_FAIL(MG_ERR_ARG, "no inference model to save");
    describe_layout(a->h, &layout);
    if (layout.oom)
        MG_FAIL(MG_ERR_NOMEM, "out of memory");
    if (H5Lexists(loc, GROUP, H5P_DEFAULT) != 0)
        MG_FAIL(MG_ERR_HDF5, "the group already holds '%s' (or cannot be read)", GROUP);
    g = H5Gcreate2(loc, GROUP, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (g < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot create the HDF5 group '%s'", GROUP);
    MG_CHECK(mg_h5_attr_str(g, "format", ADVREG_FORMAT, err));
    MG_CHECK(mg_h5_attr_i64(g, "n_classes", a->cfg.n_classes, err));
    MG_CHECK(mg_h5_attr_str(g, "layout", layout.s, err));
    MG_CHECK(mg_h5_attr_i64(g, "adam_step", a->opt.step, err));
    MG_CHECK(mg_h5_attr_i64(g, "k_steps", a->cfg.k_steps, err));
    MG_CHECK(mg_h5_attr_f64(g, "gamma", a->cfg.gamma, err));
    MG_CHECK(mg_h5_attr_f64(g, "lr", a->cfg.lr, err));
    /* The model's accessors are not const; these reads do not change it. */
    MG_CHECK(write_floats(g, "params", mg_model_params(a->h), mg_model_n_params(a->h), err));
    MG_CHECK(write_floats(g, "adam_m1", a->opt.m1, a->opt.n, err));
    MG_CHECK(write_floats(g, "adam_m2", a->opt.m2, a->opt.n, err));
cleanup:
    if (g >= 0)
        H5Gclose(g);
    mg_strbuf_free(&layout);
    if (st != MG_OK)
        mg_error_prefix(err, "advreg save: ");
    return st;
}

/* A float dataset of exactly n values. */
static mg_status read_floats(hid_t loc, const char *path, size_t n, float **out, mg_error *err)
{
    hsize_t dims[4];
    int nd = 0;
    void *v = NULL;
    mg_status st = mg_h5_read(loc, path, H5T_NATIVE_FLOAT, &v, dims, &nd, err);
    if (st != MG_OK)
        return st;
    hsize_t have = 1;
    for (int i = 0; i < nd; i++)
        have *= dims[i];
    if (have != (hsize_t)n) {
        free(v);
        return mg_error_set(err, MG_ERR_STATE, "%s has %llu values, this inference model has %zu", path,
                            (unsigned long long)have, n);
    }
    *out = v;
    return MG_OK;
}

mg_status mg_advreg_load(mg_advreg *a, hid_t loc, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t g = H5I_INVALID_HID;
    mg_strbuf layout;
    char *text = NULL;
    float *params = NULL, *m1 = NULL, *m2 = NULL;
    mg_strbuf_init(&layout);
    if (!a)
        MG_FAIL(MG_ERR_ARG, "no inference model to load into");
    if (H5Lexists(loc, GROUP, H5P_DEFAULT) <= 0)
        MG_FAIL(MG_ERR_STATE, "the group holds no inference model (no '%s')", GROUP);
    g = H5Gopen2(loc, GROUP, H5P_DEFAULT);
    if (g < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot open the HDF5 group '%s'", GROUP);
    describe_layout(a->h, &layout);
    if (layout.oom)
        MG_FAIL(MG_ERR_NOMEM, "out of memory");
    /* Room for any layout this file could have written and the format. */
    const size_t cap = layout.len + 4096;
    text = mg_malloc(cap, 1, "advreg layout", err);
    if (!text)
        MG_CHECK(MG_ERR_NOMEM);
    if (mg_h5_get_attr_str(g, "format", text, cap, NULL) != MG_OK || strcmp(text, ADVREG_FORMAT) != 0)
        MG_FAIL(MG_ERR_HDF5, "'%s' is not a miagrid inference model of this version (format \"%.100s\", "
                "expected \"%s\")", GROUP, text, ADVREG_FORMAT);
    double k = 0.0, step = 0.0;
    MG_CHECK(mg_h5_get_attr_f64(g, "n_classes", &k, err));
    if (k != (double)a->cfg.n_classes)
        MG_FAIL(MG_ERR_STATE, "written for %g classes, this inference model has %d", k, a->cfg.n_classes);
    MG_CHECK(mg_h5_get_attr_str(g, "layout", text, cap, err));
    if (strcmp(text, layout.s) != 0)
        MG_FAIL(MG_ERR_STATE, "written for another architecture (file: %.200s; this model: %.200s)", text,
                layout.s);
    MG_CHECK(mg_h5_get_attr_f64(g, "adam_step", &step, err));
    if (!(step >= 0.0 && step <= 4503599627370496.0) || step != floor(step))
        MG_FAIL(MG_ERR_STATE, "adam_step %g is not a step count", step);
    MG_CHECK(read_floats(g, "params", mg_model_n_params(a->h), &params, err));
    MG_CHECK(read_floats(g, "adam_m1", a->opt.n, &m1, err));
    MG_CHECK(read_floats(g, "adam_m2", a->opt.n, &m2, err));

    /* Everything is read and checked: commit. */
    memcpy(mg_model_params(a->h), params, mg_model_n_params(a->h) * sizeof(float));
    memcpy(a->opt.m1, m1, a->opt.n * sizeof(float));
    memcpy(a->opt.m2, m2, a->opt.n * sizeof(float));
    a->opt.step = (long)step;
cleanup:
    if (g >= 0)
        H5Gclose(g);
    mg_strbuf_free(&layout);
    free(text);
    free(params), free(m1), free(m2);
    if (st != MG_OK)
        mg_error_prefix(err, "advreg load: ");
    return st;
}
