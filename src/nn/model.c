/*
 * model.c: models as a straight sequence of layer operations (MLP, LeNet-5)
 * over one contiguous parameter block, one gradient block and one mask block,
 * all sliced by the same tensor table. Activation buffers belong to the model
 * and grow with the largest batch seen.
 */
#include "miagrid/nn.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef enum { OP_LINEAR, OP_CONV, OP_POOL, OP_RELU, OP_TANH } op_kind;

/* One operation of the sequence; sizes are floats per sample. */
typedef struct {
    op_kind kind;
    size_t in_size, out_size;
    int I, O;               /* linear: in and out features */
    mg_conv2d_shape conv;   /* conv: N is set per call */
    int C, H, W, k;         /* pool: input geometry and window */
    size_t w_off, b_off;    /* linear and conv: offsets into the parameter block */
} mg_op;

struct mg_model {
    char arch[16];
    int in_c, in_h, in_w, in_dim, n_classes;

    size_t n_params;
    float *params, *grads, *masks;
    mg_tensor_info *tensors;
    int *fan_in;            /* per tensor: the fan-in that bounds its initialisation */
    size_t n_tensors, max_tensors;

    mg_op *ops;
    int n_ops, max_ops;

    /* Per-batch buffers, sized for cap_batch samples. */
    int cap_batch;
    float **acts;           /* acts[i]: output of op i */
    float **dacts;          /* dacts[i]: gradient w.r.t. acts[i] */
    int32_t **argmax;       /* pool ops only */
    float *x, *dx, *probs;  /* copied input, its gradient, softmax cache */
    float *scratch;         /* im2col buffer shared by the convs */
    size_t scratch_size;

    int last_batch;         /* batch of the last forward; 0 before any */
    int input_grad;
    int xavier;             /* cfg->init == "xavier-normal" */
    float smoothing;
    mg_rng *rng;
};

/* ---- construction ---------------------------------------------------------------- */

static void add_tensor(mg_model *m, const char *name, int ndim, const int *shape, int prunable, int fan_in)
{
    mg_tensor_info *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim;
    t->count = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->count *= (size_t)shape[d];
    }
    t->offset = m->n_params;
    t->prunable = prunable;
    m->fan_in[m->n_tensors] = fan_in;
    m->n_params += t->count;
    m->n_tensors++;
}

static mg_op *add_op(mg_model *m, op_kind kind, size_t in_size, size_t out_size)
{
    mg_op *op = &m->ops[m->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->in_size = in_size;
    op->out_size = out_size;
    return op;
}

static void add_linear(mg_model *m, const char *prefix, int I, int O)
{
    char name[64];
    int wshape[2] = {O, I}, bshape[1] = {O};
    mg_op *op = add_op(m, OP_LINEAR, (size_t)I, (size_t)O);
    op->I = I;
    op->O = O;
    op->w_off = m->n_params;
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_tensor(m, name, 2, wshape, 1, I);
    op->b_off = m->n_params;
    snprintf(name, sizeof name, "%s.bias", prefix);
    add_tensor(m, name, 1, bshape, 0, I);
}

static void add_act(mg_model *m, mg_act act, size_t size)
{
    add_op(m, act == MG_ACT_TANH ? OP_TANH : OP_RELU, size, size);
}

/* conv with a square kernel; returns the output geometry through *C, *H, *W. */
static int add_conv(mg_model *m, const char *prefix, int *C, int *H, int *W, int OC, int K, int pad)
{
    mg_conv2d_shape s = {.N = 1, .C = *C, .H = *H, .W = *W, .OC = OC, .KH = K, .KW = K, .stride = 1, .pad = pad};
    if (mg_conv2d_shape_init(&s) != 0)
        return -1;
    mg_op *op = add_op(m, OP_CONV, (size_t)*C * *H * *W, (size_t)OC * s.OH * s.OW);
    op->conv = s;
    char name[64];
    int wshape[4] = {OC, *C, K, K}, bshape[1] = {OC};
    op->w_off = m->n_params;
    snprintf(name, sizeof name, "%s.weight", prefix);
    add_tensor(m, name, 4, wshape, 1, *C * K * K);
    op->b_off = m->n_params;
    snprintf(name, sizeof name, "%s.bias", prefix);
    add_tensor(m, name, 1, bshape, 0, *C * K * K);
    size_t scr = mg_conv2d_scratch(&s);
    if (scr > m->scratch_size)
        m->scratch_size = scr;
    *C = OC;
    *H = s.OH;
    *W = s.OW;
    return 0;
}

static int add_pool(mg_model *m, int C, int *H, int *W, int k)
{
    if (*H / k < 1 || *W / k < 1)
        return -1;
    mg_op *op = add_op(m, OP_POOL, (size_t)C * *H * *W, (size_t)C * (*H / k) * (*W / k));
    op->C = C;
    op->H = *H;
    op->W = *W;
    op->k = k;
    *H /= k;
    *W /= k;
    return 0;
}

mg_status mg_model_create(const mg_model_cfg *cfg, mg_model **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_model *m = NULL;
    *out = NULL;
    if (!cfg || !cfg->arch)
        return mg_error_set(err, MG_ERR_CONFIG, "model: no architecture given (known: mlp, lenet5)");
    int is_mlp = strcmp(cfg->arch, "mlp") == 0, is_lenet = strcmp(cfg->arch, "lenet5") == 0;
    if (!is_mlp && !is_lenet)
        return mg_error_set(err, MG_ERR_CONFIG, "model: unknown architecture '%s' (known: mlp, lenet5)",
                            cfg->arch);
    if (cfg->in_c < 1 || cfg->in_h < 1 || cfg->in_w < 1 || cfg->n_classes < 1)
        return mg_error_set(err, MG_ERR_CONFIG,
                            "model %s: input shape %dx%dx%d and %d classes must all be positive", cfg->arch,
                            cfg->in_c, cfg->in_h, cfg->in_w, cfg->n_classes);
    if ((double)cfg->in_c * cfg->in_h * cfg->in_w > (double)(INT_MAX / 64))
        return mg_error_set(err, MG_ERR_CONFIG, "model %s: input shape %dx%dx%d is too large", cfg->arch,
                            cfg->in_c, cfg->in_h, cfg->in_w);
    if (cfg->act != MG_ACT_RELU && cfg->act != MG_ACT_TANH)
        return mg_error_set(err, MG_ERR_CONFIG, "model %s: unknown activation %d (relu or tanh)", cfg->arch,
                            (int)cfg->act);
    if (cfg->init && strcmp(cfg->init, "default") != 0 && strcmp(cfg->init, "xavier-normal") != 0)
        return mg_error_set(err, MG_ERR_CONFIG, "model %s: unknown init '%s' (default or xavier-normal)", cfg->arch,
                            cfg->init);
    if (is_mlp) {
        if (cfg->n_hidden < 0 || (cfg->n_hidden > 0 && !cfg->hidden))
            return mg_error_set(err, MG_ERR_CONFIG, "model mlp: %d hidden layers but no widths given",
                                cfg->n_hidden);
        for (int i = 0; i < cfg->n_hidden; i++)
            if (cfg->hidden[i] < 1 || cfg->hidden[i] > INT_MAX / 64)
                return mg_error_set(err, MG_ERR_CONFIG, "model mlp: hidden layer %d has width %d (must be positive)",
                                    i + 1, cfg->hidden[i]);
    }

    m = mg_calloc(1, sizeof *m, "model", err);
    if (!m)
        return MG_ERR_NOMEM;
    snprintf(m->arch, sizeof m->arch, "%s", cfg->arch);
    m->in_c = cfg->in_c;
    m->in_h = cfg->in_h;
    m->in_w = cfg->in_w;
    m->in_dim = cfg->in_c * cfg->in_h * cfg->in_w;
    m->n_classes = cfg->n_classes;
    m->xavier = cfg->init && strcmp(cfg->init, "xavier-normal") == 0;
    m->max_ops = is_mlp ? 2 * cfg->n_hidden + 1 : 11;
    m->max_tensors = is_mlp ? 2 * (size_t)cfg->n_hidden + 2 : 10;
    m->ops = mg_calloc((size_t)m->max_ops, sizeof *m->ops, "model layers", err);
    m->tensors = mg_calloc(m->max_tensors, sizeof *m->tensors, "model tensor table", err);
    m->fan_in = mg_calloc(m->max_tensors, sizeof *m->fan_in, "model tensor table", err);
    if (!m->ops || !m->tensors || !m->fan_in)
        MG_FAIL(MG_ERR_NOMEM, "model %s: out of memory building the layer table", cfg->arch);

    if (is_mlp) {
        int prev = m->in_dim;
        char prefix[32];
        for (int i = 0; i < cfg->n_hidden; i++) {
            snprintf(prefix, sizeof prefix, "fc%d", i + 1);
            add_linear(m, prefix, prev, cfg->hidden[i]);
            add_act(m, cfg->act, (size_t)cfg->hidden[i]);
            prev = cfg->hidden[i];
        }
        snprintf(prefix, sizeof prefix, "fc%d", cfg->n_hidden + 1);
        add_linear(m, prefix, prev, cfg->n_classes);
    } else {
        int C = cfg->in_c, H = cfg->in_h, W = cfg->in_w;
        int bad = add_conv(m, "conv1", &C, &H, &W, 6, 5, 2);
        if (!bad) {
            add_act(m, MG_ACT_RELU, (size_t)C * H * W);
            bad = add_pool(m, C, &H, &W, 2);
        }
        if (!bad)
            bad = add_conv(m, "conv2", &C, &H, &W, 16, 5, 0);
        if (!bad) {
            add_act(m, MG_ACT_RELU, (size_t)C * H * W);
            bad = add_pool(m, C, &H, &W, 2);
        }
        if (bad)
            MG_FAIL(MG_ERR_CONFIG, "model lenet5: input %dx%dx%d is too small (height and width must be at least 12)",
                    cfg->in_c, cfg->in_h, cfg->in_w);
        add_linear(m, "fc1", C * H * W, 120);
        add_act(m, MG_ACT_RELU, 120);
        add_linear(m, "fc2", 120, 84);
        add_act(m, MG_ACT_RELU, 84);
        add_linear(m, "fc3", 84, cfg->n_classes);
    }

    m->params = mg_calloc(m->n_params, sizeof(float), "model parameters", err);
    m->grads = mg_calloc(m->n_params, sizeof(float), "model gradients", err);
    m->masks = mg_malloc(m->n_params, sizeof(float), "model masks", err);
    m->acts = mg_calloc((size_t)m->n_ops, sizeof(float *), "model activations", err);
    m->dacts = mg_calloc((size_t)m->n_ops, sizeof(float *), "model activations", err);
    m->argmax = mg_calloc((size_t)m->n_ops, sizeof(int32_t *), "model activations", err);
    if (!m->params || !m->grads || !m->masks || !m->acts || !m->dacts || !m->argmax)
        MG_FAIL(MG_ERR_NOMEM, "model %s: out of memory for %zu parameters", cfg->arch, m->n_params);
    for (size_t i = 0; i < m->n_params; i++)
        m->masks[i] = 1.0f;

    *out = m;
    m = NULL;
cleanup:
    mg_model_destroy(&m);
    return st;
}

static void free_batch_buffers(mg_model *m)
{
    for (int i = 0; i < m->n_ops; i++) {
        if (m->acts) {
            free(m->acts[i]);
            m->acts[i] = NULL;
        }
        if (m->dacts) {
            free(m->dacts[i]);
            m->dacts[i] = NULL;
        }
        if (m->argmax) {
            free(m->argmax[i]);
            m->argmax[i] = NULL;
        }
    }
    free(m->x);
    free(m->dx);
    free(m->probs);
    free(m->scratch);
    m->x = m->dx = m->probs = m->scratch = NULL;
    m->cap_batch = 0;
}

void mg_model_destroy(mg_model **pm)
{
    if (!pm || !*pm)
        return;
    mg_model *m = *pm;
    free_batch_buffers(m);
    free(m->acts);
    free(m->dacts);
    free(m->argmax);
    free(m->params);
    free(m->grads);
    free(m->masks);
    free(m->tensors);
    free(m->fan_in);
    free(m->ops);
    free(m);
    *pm = NULL;
}

/* Make the per-batch buffers hold `batch` samples; contents are not kept. */
static mg_status ensure_batch(mg_model *m, int batch, mg_error *err)
{
    if (batch <= m->cap_batch)
        return MG_OK;
    /* BLAS dimensions and the pooling argmax are int: every buffer must index with one. */
    size_t widest = (size_t)m->in_dim;
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].out_size > widest)
            widest = m->ops[i].out_size;
    if ((size_t)batch > (size_t)INT_MAX / widest)
        return mg_error_set(err, MG_ERR_NOMEM, "model %s: a batch of %d is too large for %zu activations per sample",
                            m->arch, batch, widest);
    free_batch_buffers(m);
    size_t nb = (size_t)batch;
    int ok = 1;
    for (int i = 0; i < m->n_ops && ok; i++) {
        m->acts[i] = malloc(nb * m->ops[i].out_size * sizeof(float));
        m->dacts[i] = malloc(nb * m->ops[i].out_size * sizeof(float));
        ok = m->acts[i] && m->dacts[i];
        if (ok && m->ops[i].kind == OP_POOL) {
            m->argmax[i] = malloc(nb * m->ops[i].out_size * sizeof(int32_t));
            ok = m->argmax[i] != NULL;
        }
    }
    if (ok) {
        m->x = malloc(nb * (size_t)m->in_dim * sizeof(float));
        m->dx = malloc(nb * (size_t)m->in_dim * sizeof(float));
        m->probs = malloc(nb * (size_t)m->n_classes * sizeof(float));
        m->scratch = m->scratch_size ? malloc(m->scratch_size * sizeof(float)) : NULL;
        ok = m->x && m->dx && m->probs && (m->scratch || !m->scratch_size);
    }
    if (!ok) {
        free_batch_buffers(m);
        return mg_error_set(err, MG_ERR_NOMEM, "model %s: out of memory for activations of a batch of %d",
                            m->arch, batch);
    }
    m->cap_batch = batch;
    return MG_OK;
}

/* ---- accessors -------------------------------------------------------------------- */

/* Bounds 1/sqrt(fan_in) drawn in table order, so the same rng gives the same model. */
void mg_model_init_params(mg_model *m, mg_rng *rng)
{
    for (size_t t = 0; t < m->n_tensors; t++) {
        const mg_tensor_info *ti = &m->tensors[t];
        float *p = m->params + ti->offset;
        if (m->xavier) {
            /* torch.nn.init.xavier_normal_: fans from dims 1 and 0 times the receptive field. */
            double sd = 0.0;
            if (ti->prunable) {
                double rf = (double)ti->count / ((double)ti->shape[0] * ti->shape[1]);
                sd = sqrt(2.0 / (rf * ti->shape[1] + rf * ti->shape[0]));
            }
            for (size_t i = 0; i < ti->count; i++)
                p[i] = (float)(sd * mg_rng_normal(rng));
            continue;
        }
        double bound = 1.0 / sqrt((double)m->fan_in[t]);
        for (size_t i = 0; i < ti->count; i++)
            p[i] = (float)((2.0 * mg_rng_uniform(rng) - 1.0) * bound);
    }
}

size_t mg_model_n_params(const mg_model *m) { return m->n_params; }
float *mg_model_params(mg_model *m) { return m->params; }
float *mg_model_grads(mg_model *m) { return m->grads; }
float *mg_model_masks(mg_model *m) { return m->masks; }
size_t mg_model_n_tensors(const mg_model *m) { return m->n_tensors; }
int mg_model_n_classes(const mg_model *m) { return m->n_classes; }
int mg_model_in_dim(const mg_model *m) { return m->in_dim; }

const mg_tensor_info *mg_model_tensor(const mg_model *m, size_t i)
{
    return i < m->n_tensors ? &m->tensors[i] : NULL;
}

void mg_model_zero_grad(mg_model *m)
{
    memset(m->grads, 0, m->n_params * sizeof(float));
}

void mg_model_set_input_grad(mg_model *m, int enable)
{
    m->input_grad = enable != 0;
}

void mg_model_set_label_smoothing(mg_model *m, float eps)
{
    m->smoothing = eps;
}

void mg_model_set_rng(mg_model *m, mg_rng *rng)
{
    m->rng = rng;
}

const float *mg_model_input_grad(const mg_model *m)
{
    return m->input_grad && m->last_batch > 0 ? m->dx : NULL;
}

/* ---- forward and backward --------------------------------------------------------- */

mg_status mg_model_forward(mg_model *m, const float *x, int batch, int train, const float **logits,
                           mg_error *err)
{
    mg_status st = MG_OK;
    if (batch < 1 || !x)
        return mg_error_set(err, MG_ERR_ARG, "model %s: forward needs a batch of at least one sample (got %d)",
                            m->arch, batch);
    MG_CHECK(ensure_batch(m, batch, err));
    memcpy(m->x, x, (size_t)batch * m->in_dim * sizeof(float));
    const float *cur = m->x;
    for (int i = 0; i < m->n_ops; i++) {
        const mg_op *op = &m->ops[i];
        float *o = m->acts[i];
        size_t n = (size_t)batch * op->out_size;
        switch (op->kind) {
        case OP_LINEAR:
            mg_linear_forward(o, cur, m->params + op->w_off, m->params + op->b_off, batch, op->I, op->O);
            break;
        case OP_CONV: {
            mg_conv2d_shape s = op->conv;
            s.N = batch;
            mg_conv2d_forward(o, cur, m->params + op->w_off, m->params + op->b_off, &s, m->scratch);
            break;
        }
        case OP_POOL:
            mg_maxpool_forward(o, m->argmax[i], cur, batch, op->C, op->H, op->W, op->k);
            break;
        case OP_RELU:
            mg_relu_forward(o, cur, n);
            break;
        case OP_TANH:
            mg_tanh_forward(o, cur, n);
            break;
        }
        cur = o;
    }
    m->last_batch = batch;
    if (logits)
        *logits = cur;
cleanup:
    if (st != MG_OK)
        m->last_batch = 0;
    return st;
}

static void backprop(mg_model *m, int batch);

static int argmax_row(const float *z, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best])
            best = k;
    return best;
}

mg_status mg_model_backward(mg_model *m, const int32_t *y, int batch, double *loss, int *n_correct,
                            mg_error *err)
{
    const int K = m->n_classes;
    if (m->last_batch == 0 || batch != m->last_batch)
        return mg_error_set(err, MG_ERR_ARG, "model %s: backward on a batch of %d but the last forward had %d",
                            m->arch, batch, m->last_batch);
    for (int n = 0; n < batch; n++)
        if (y[n] < 0 || y[n] >= K)
            return mg_error_set(err, MG_ERR_ARG, "model %s: label %d of sample %d is outside [0, %d)", m->arch,
                                (int)y[n], n, K);
    const int last = m->n_ops - 1;
    const float *logits = m->acts[last];
    double l = mg_softmax_xent_forward(m->probs, logits, y, batch, K);
    if (loss)
        *loss = l;
    if (n_correct) {
        int c = 0;
        for (int n = 0; n < batch; n++)
            c += argmax_row(logits + (size_t)n * K, K) == y[n];
        *n_correct = c;
    }
    memset(m->dacts[last], 0, (size_t)batch * K * sizeof(float));
    mg_softmax_xent_backward(m->dacts[last], m->probs, y, batch, K);
    backprop(m, batch);
    return MG_OK;
}

static void backprop(mg_model *m, int batch)
{
    const int last = m->n_ops - 1;
    for (int i = last; i >= 0; i--) {
        const mg_op *op = &m->ops[i];
        const float *inp = i > 0 ? m->acts[i - 1] : m->x;
        float *dinp = i > 0 ? m->dacts[i - 1] : (m->input_grad ? m->dx : NULL);
        const float *dout = m->dacts[i];
        size_t n_in = (size_t)batch * op->in_size;
        if (dinp)
            memset(dinp, 0, n_in * sizeof(float));
        switch (op->kind) {
        case OP_LINEAR:
            mg_linear_backward(dinp, m->grads + op->w_off, m->grads + op->b_off, dout, inp, m->params + op->w_off,
                               batch, op->I, op->O);
            break;
        case OP_CONV: {
            mg_conv2d_shape s = op->conv;
            s.N = batch;
            mg_conv2d_backward(dinp, m->grads + op->w_off, m->grads + op->b_off, dout, inp, m->params + op->w_off,
                               &s, m->scratch);
            break;
        }
        case OP_POOL:
            if (dinp)
                mg_maxpool_backward(dinp, dout, m->argmax[i], (int)((size_t)batch * op->out_size));
            break;
        case OP_RELU:
            if (dinp)
                mg_relu_backward(dinp, dout, m->acts[i], n_in);
            break;
        case OP_TANH:
            if (dinp)
                mg_tanh_backward(dinp, dout, m->acts[i], n_in);
            break;
        }
    }
}

mg_status mg_model_predict(mg_model *m, const float *x, size_t n, float *logits, mg_error *err)
{
    enum { PREDICT_BATCH = 256 };
    mg_status st = MG_OK;
    const int K = m->n_classes;
    for (size_t start = 0; start < n; start += PREDICT_BATCH) {
        int b = (int)(n - start < PREDICT_BATCH ? n - start : PREDICT_BATCH);
        const float *z = NULL;
        MG_CHECK(mg_model_forward(m, x + start * (size_t)m->in_dim, b, 0, &z, err));
        memcpy(logits + start * (size_t)K, z, (size_t)b * K * sizeof(float));
    }
cleanup:
    return st;
}

double mg_accuracy(const float *logits, const int32_t *y, size_t n, int n_classes)
{
    if (n == 0)
        return 0.0;
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += argmax_row(logits + i * (size_t)n_classes, n_classes) == y[i];
    return (double)c / (double)n;
}

/* ---- architecture names, presets, buffers ------------------------------------------ */

static const char *const known_archs[] = {"mlp",      "lenet5",      "cnn4",        "vgg16_bn", "resnet18",
                                          "resnet20", "mobilenetv2", "densenet121", "wrn28_2"};

int mg_model_arch_known(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof known_archs / sizeof known_archs[0]; i++)
        if (strcmp(name, known_archs[i]) == 0)
            return 1;
    return 0;
}

const char *mg_model_arch_list(void)
{
    return "mlp, lenet5, cnn4, vgg16_bn, resnet18, resnet20, mobilenetv2, densenet121, wrn28_2";
}

/* The fully connected nets of Nasr et al. (CCS 2018, "Machine learning with
 * membership privacy using adversarial regularization") for Purchase100 and
 * Texas100, reused for Location30 by ML-Privacy-Meter and by WeMem (Shang et
 * al., whose slides only say "FC" for the three tabular sets). */
mg_status mg_mlp_preset(const char *preset, int *hidden, int *n_hidden, mg_act *act, mg_error *err)
{
    static const int widths[] = {1024, 512, 256, 128};
    if (!preset || (strcmp(preset, "location") != 0 && strcmp(preset, "purchase") != 0 &&
                    strcmp(preset, "texas") != 0))
        return mg_error_set(err, MG_ERR_CONFIG, "mlp preset '%s' is unknown (known: location, purchase, texas)",
                            preset ? preset : "(null)");
    for (int i = 0; i < 4; i++)
        hidden[i] = widths[i];
    *n_hidden = 4;
    *act = MG_ACT_TANH;
    return MG_OK;
}

size_t mg_model_n_buffers(const mg_model *m)
{
    (void)m;
    return 0;
}

float *mg_model_buffers(mg_model *m)
{
    (void)m;
    return NULL;
}

mg_status mg_model_backward_soft(mg_model *m, const float *targets, int batch, double *loss, mg_error *err)
{
    const int K = m->n_classes;
    if (m->last_batch == 0 || batch != m->last_batch)
        return mg_error_set(err, MG_ERR_ARG, "model %s: backward on a batch of %d but the last forward had %d",
                            m->arch, batch, m->last_batch);
    const int last = m->n_ops - 1;
    const float *logits = m->acts[last];
    float *d = m->dacts[last];
    double total = 0.0;
    for (int n = 0; n < batch; n++) {
        const float *z = logits + (size_t)n * K, *t = targets + (size_t)n * K;
        float mx = z[0];
        for (int k = 1; k < K; k++)
            if (z[k] > mx)
                mx = z[k];
        double sum = 0.0;
        for (int k = 0; k < K; k++)
            sum += exp((double)z[k] - mx);
        double lse = log(sum) + mx;
        for (int k = 0; k < K; k++) {
            total -= (double)t[k] * ((double)z[k] - lse);
            d[(size_t)n * K + k] = (float)((exp((double)z[k] - lse) - t[k]) / batch);
        }
    }
    if (loss)
        *loss = total / batch;
    backprop(m, batch);
    return MG_OK;
}
