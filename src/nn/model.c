/*
 * model.c: the model graph engine. A model is a list of operations over
 * per-sample values (nn_internal.h) with one contiguous parameter block, one
 * gradient block, one mask block and one buffer block (batch-norm running
 * statistics), all sliced by the tensor table. Activations, per-operation
 * caches and gradient buffers belong to the model and grow with the largest
 * batch seen; gradient buffers are shared between values whose gradients are
 * never alive at the same time, which keeps the deep networks' memory close
 * to their activations alone.
 */
#define _DEFAULT_SOURCE
#include "miagrid/nn.h"
#include "nn/nn_internal.h"

#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

/* ---- building ------------------------------------------------------------------------ */

static int graph_fail(mg_model *m, mg_status st, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static int graph_fail(mg_model *m, mg_status st, const char *fmt, ...)
{
    if (m->build_st == MG_OK) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(m->build_msg, sizeof m->build_msg, fmt, ap);
        va_end(ap);
        m->build_st = st;
    }
    return -1;
}

/* The array p of *cap elements of size sz, grown (doubling) to hold at least
 * n, with *cap updated; NULL when out of memory, p then unchanged and valid. */
static void *grow(void *p, size_t *cap, size_t n, size_t sz)
{
    if (n <= *cap)
        return p;
    size_t c = *cap ? *cap : 16;
    while (c < n)
        c *= 2;
    void *q = realloc(p, c * sz);
    if (q)
        *cap = c;
    return q;
}

static int valid_value(mg_model *m, int v)
{
    return v >= 0 && v < m->n_values && m->build_st == MG_OK;
}

static size_t shape_size(mg_shape3 s)
{
    return (size_t)s.c * (size_t)s.h * (size_t)s.w;
}

/* A new value of shape s; root -1 makes it own its buffers. */
static int new_value(mg_model *m, mg_shape3 s, int root)
{
    size_t cap = (size_t)m->cap_values;
    mg_value *vals = grow(m->values, &cap, (size_t)m->n_values + 1, sizeof *m->values);
    if (!vals)
        return graph_fail(m, MG_ERR_NOMEM, "out of memory building the graph");
    m->values = vals;
    m->cap_values = (int)cap;
    if (s.c < 1 || s.h < 1 || s.w < 1 || shape_size(s) > (size_t)INT_MAX / 4)
        return graph_fail(m, MG_ERR_CONFIG, "a layer's output %dx%dx%d is empty or too large", s.c, s.h, s.w);
    int id = m->n_values++;
    mg_value *v = &m->values[id];
    v->shape = s;
    v->size = shape_size(s);
    v->root = root < 0 ? id : m->values[root].root;
    return id;
}

/* A new operation on inputs in[0..n_in) producing a new value of shape s. */
static mg_op *new_op(mg_model *m, mg_op_kind kind, int n_in, const int *in, mg_shape3 s, int alias)
{
    size_t cap = (size_t)m->cap_ops;
    mg_op *ops = grow(m->ops, &cap, (size_t)m->n_ops + 1, sizeof *m->ops);
    if (!ops) {
        graph_fail(m, MG_ERR_NOMEM, "out of memory building the graph");
        return NULL;
    }
    m->ops = ops;
    m->cap_ops = (int)cap;
    int out = new_value(m, s, alias);
    if (out < 0)
        return NULL;
    mg_op *op = &m->ops[m->n_ops++];
    memset(op, 0, sizeof *op);
    op->kind = kind;
    op->n_in = n_in;
    for (int i = 0; i < n_in; i++)
        op->in[i] = in[i];
    op->out = out;
    op->act = MG_NO_ACT;
    op->w = op->b = op->w2 = op->b2 = op->rm = op->rv = MG_NO_PARAM;
    return op;
}

/* Append a tensor "prefix.leaf"; returns its offset into params (or buffers). */
static size_t add_tensor(mg_model *m, const char *prefix, const char *leaf, int ndim, const int *shape,
                         int prunable, int buffer, mg_init_info init)
{
    /* The tensor table and the init table grow in step. */
    size_t cap = m->cap_tensors, cap_init = m->cap_tensors;
    mg_tensor_info *tab = grow(m->tensors, &cap, m->n_tensors + 1, sizeof *m->tensors);
    if (tab)
        m->tensors = tab;
    mg_init_info *ini = tab ? grow(m->init, &cap_init, m->n_tensors + 1, sizeof *m->init) : NULL;
    if (ini)
        m->init = ini;
    if (!tab || !ini)
        return graph_fail(m, MG_ERR_NOMEM, "out of memory building the tensor table"), MG_NO_PARAM;
    m->cap_tensors = cap;
    mg_tensor_info *t = &m->tensors[m->n_tensors];
    memset(t, 0, sizeof *t);
    int len = snprintf(t->name, sizeof t->name, "%s%s%s", prefix ? prefix : "", prefix ? "." : "", leaf);
    if (len < 0 || (size_t)len >= sizeof t->name)
        return graph_fail(m, MG_ERR_INTERNAL, "tensor name %s.%s is too long", prefix ? prefix : "", leaf),
               MG_NO_PARAM;
    t->ndim = ndim;
    t->count = 1;
    for (int d = 0; d < ndim; d++) {
        t->shape[d] = shape[d];
        t->count *= (size_t)shape[d];
    }
    t->prunable = prunable;
    t->buffer = buffer;
    size_t *counter = buffer ? &m->n_buffers : &m->n_params;
    t->offset = *counter;
    *counter += t->count;
    m->init[m->n_tensors] = init;
    m->n_tensors++;
    return t->offset;
}

static mg_init_info init_fan_in(int fan_in, int fan_out, int is_bias)
{
    mg_init_info i = {MG_INIT_FAN_IN, fan_in, fan_out, is_bias};
    return i;
}

static mg_init_info init_const(mg_init_kind k)
{
    mg_init_info i = {k, 1, 1, 0};
    return i;
}

mg_shape3 mg_graph_shape(const mg_model *m, int v)
{
    mg_shape3 none = {0, 0, 0};
    return v >= 0 && v < m->n_values ? m->values[v].shape : none;
}

mg_status mg_graph_begin(mg_model **out, const char *arch, int in_c, int in_h, int in_w, int n_classes,
                         int xavier, mg_error *err)
{
    *out = NULL;
    mg_model *m = mg_calloc(1, sizeof *m, "model", err);
    if (!m)
        return MG_ERR_NOMEM;
    snprintf(m->arch, sizeof m->arch, "%s", arch);
    m->in_c = in_c;
    m->in_h = in_h;
    m->in_w = in_w;
    m->in_dim = in_c * in_h * in_w;
    m->n_classes = n_classes;
    m->xavier = xavier;
    m->logits = -1;
    mg_shape3 s = {in_c, in_h, in_w};
    if (new_value(m, s, -1) != 0) {
        mg_status st = mg_error_set(err, m->build_st, "model %s: %s", arch, m->build_msg);
        mg_model_destroy(&m);
        return st;
    }
    *out = m;
    return MG_OK;
}

/* (c,h,I) -> (c,h,O); weight (O,I), bias (O) */
int mg_g_linear(mg_model *m, const char *name, int x, int O, int bias)
{
    if (!valid_value(m, x))
        return -1;
    mg_shape3 s = m->values[x].shape;
    if (O < 1)
        return graph_fail(m, MG_ERR_CONFIG, "%s: a linear layer needs at least one output (got %d)", name, O);
    int I = s.w;
    mg_shape3 os = {s.c, s.h, O};
    mg_op *op = new_op(m, MG_OP_LINEAR, 1, &x, os, -1);
    if (!op)
        return -1;
    int oi = (int)(op - m->ops);
    int ws[2] = {O, I}, bs[1] = {O};
    size_t w = add_tensor(m, name, "weight", 2, ws, 1, 0, init_fan_in(I, O, 0));
    size_t b = bias ? add_tensor(m, name, "bias", 1, bs, 0, 0, init_fan_in(I, O, 1)) : MG_NO_PARAM;
    op = &m->ops[oi];
    op->I = I;
    op->O = O;
    op->w = w;
    op->b = b;
    return m->build_st == MG_OK ? op->out : -1;
}

int mg_g_conv(mg_model *m, const char *name, int x, int OC, int k, int stride, int pad, int groups, int bias)
{
    if (!valid_value(m, x))
        return -1;
    mg_shape3 s = m->values[x].shape;
    mg_conv2d_shape cs = {.N = 1, .C = s.c, .H = s.h, .W = s.w, .OC = OC, .KH = k, .KW = k,
                          .stride = stride, .pad = pad, .groups = groups};
    if (mg_conv2d_shape_init(&cs) != 0)
        return graph_fail(m, MG_ERR_CONFIG,
                          "%s: a %dx%d convolution (stride %d, padding %d, %d groups, %d outputs) does not fit "
                          "its %dx%dx%d input",
                          name, k, k, stride, pad, groups, OC, s.c, s.h, s.w);
    mg_shape3 os = {OC, cs.OH, cs.OW};
    mg_op *op = new_op(m, MG_OP_CONV, 1, &x, os, -1);
    if (!op)
        return -1;
    int oi = (int)(op - m->ops);
    int g = groups > 1 ? groups : 1;
    int ws[4] = {OC, s.c / g, k, k}, bs[1] = {OC};
    int fan_in = s.c / g * k * k, fan_out = OC * k * k;
    size_t w = add_tensor(m, name, "weight", 4, ws, 1, 0, init_fan_in(fan_in, fan_out, 0));
    size_t b = bias ? add_tensor(m, name, "bias", 1, bs, 0, 0, init_fan_in(fan_in, fan_out, 1)) : MG_NO_PARAM;
    op = &m->ops[oi];
    op->conv = cs;
    op->w = w;
    op->b = b;
    return m->build_st == MG_OK ? op->out : -1;
}

/* BatchNorm2d over the channels of (C,H,W); BatchNorm1d over the features of (1,1,F). */
int mg_g_bn(mg_model *m, const char *name, int x, int relu)
{
    if (!valid_value(m, x))
        return -1;
    mg_shape3 s = m->values[x].shape;
    int C = s.c, S = s.h * s.w;
    if (s.c == 1 && s.h == 1) {
        C = s.w;
        S = 1;
    }
    mg_op *op = new_op(m, MG_OP_BN, 1, &x, s, -1);
    if (!op)
        return -1;
    int oi = (int)(op - m->ops);
    int cs[1] = {C};
    size_t w = add_tensor(m, name, "weight", 1, cs, 0, 0, init_const(MG_INIT_ONE));
    size_t b = add_tensor(m, name, "bias", 1, cs, 0, 0, init_const(MG_INIT_ZERO));
    size_t rm = add_tensor(m, name, "running_mean", 1, cs, 0, 1, init_const(MG_INIT_ZERO));
    size_t rv = add_tensor(m, name, "running_var", 1, cs, 0, 1, init_const(MG_INIT_ONE));
    op = &m->ops[oi];
    op->C = C;
    op->S = S;
    op->w = w;
    op->b = b;
    op->rm = rm;
    op->rv = rv;
    op->act = relu ? MG_ACT_RELU : MG_NO_ACT;
    op->cache_fixed = 2 * (size_t)C;
    if (S > 1)
        op->cache_ps = MG_BN_KEEP_FLOATS(C, S);
    return m->build_st == MG_OK ? op->out : -1;
}

int mg_g_layernorm(mg_model *m, const char *name, int x)
{
    if (!valid_value(m, x))
        return -1;
    mg_shape3 s = m->values[x].shape;
    mg_op *op = new_op(m, MG_OP_LN, 1, &x, s, -1);
    if (!op)
        return -1;
    int oi = (int)(op - m->ops);
    int es[1] = {s.w};
    size_t w = add_tensor(m, name, "weight", 1, es, 0, 0, init_const(MG_INIT_ONE));
    size_t b = add_tensor(m, name, "bias", 1, es, 0, 0, init_const(MG_INIT_ZERO));
    op = &m->ops[oi];
    op->C = s.w;
    op->S = s.c * s.h;
    op->w = w;
    op->b = b;
    op->cache_ps = 2 * (size_t)op->S;
    return m->build_st == MG_OK ? op->out : -1;
}

int mg_g_act(mg_model *m, int x, mg_act act)
{
    if (!valid_value(m, x))
        return -1;
    if (act != MG_ACT_RELU && act != MG_ACT_TANH && act != MG_ACT_RELU6 && act != MG_ACT_GELU)
        return graph_fail(m, MG_ERR_CONFIG, "unknown activation %d (relu, tanh, relu6 or gelu)", (int)act);
    mg_op *op = new_op(m, MG_OP_ACT, 1, &x, m->values[x].shape, -1);
    if (!op)
        return -1;
    op->act = (int)act;
    return op->out;
}

int mg_g_fuse_act(mg_model *m, int x, mg_act act)
{
    if (!valid_value(m, x))
        return -1;
    mg_op *last = m->n_ops > 0 ? &m->ops[m->n_ops - 1] : NULL;
    if (last && last->out == x && (last->kind == MG_OP_LINEAR || last->kind == MG_OP_CONV) &&
        last->act == MG_NO_ACT && (act == MG_ACT_RELU || act == MG_ACT_TANH)) {
        last->act = (int)act;
        return x;
    }
    return mg_g_act(m, x, act);
}

static int pool(mg_model *m, mg_op_kind kind, int x, int k, int stride, int pad)
{
    if (!valid_value(m, x))
        return -1;
    mg_shape3 s = m->values[x].shape;
    mg_pool2d_shape ps = {.N = 1, .C = s.c, .H = s.h, .W = s.w, .k = k, .stride = stride, .pad = pad};
    if (mg_pool2d_shape_init(&ps) != 0)
        return graph_fail(m, MG_ERR_CONFIG, "a %dx%d pool (stride %d, padding %d) does not fit its %dx%dx%d input",
                          k, k, stride, pad, s.c, s.h, s.w);
    mg_shape3 os = {s.c, ps.OH, ps.OW};
    mg_op *op = new_op(m, kind, 1, &x, os, -1);
    if (!op)
        return -1;
    op->pool = ps;
    op->argmax = kind == MG_OP_MAXPOOL;
    return op->out;
}

int mg_g_maxpool(mg_model *m, int x, int k, int stride, int pad)
{
    return pool(m, MG_OP_MAXPOOL, x, k, stride, pad);
}

int mg_g_avgpool(mg_model *m, int x, int k, int stride, int pad)
{
    return pool(m, MG_OP_AVGPOOL, x, k, stride, pad);
}

int mg_g_gap(mg_model *m, int x)
{
    if (!valid_value(m, x))
        return -1;
    mg_shape3 s = m->values[x].shape, os = {1, 1, s.c};
    mg_op *op = new_op(m, MG_OP_GAP, 1, &x, os, -1);
    if (!op)
        return -1;
    op->C = s.c;
    op->S = s.h * s.w;
    return op->out;
}

int mg_g_dropout(mg_model *m, int x, float p)
{
    if (!valid_value(m, x))
        return -1;
    if (!(p >= 0.0f && p < 1.0f))
        return graph_fail(m, MG_ERR_CONFIG, "dropout probability %g must be in [0, 1)", (double)p);
    mg_op *op = new_op(m, MG_OP_DROPOUT, 1, &x, m->values[x].shape, -1);
    if (!op)
        return -1;
    op->p = p;
    op->cache_ps = m->values[x].size;
    return op->out;
}

int mg_g_add(mg_model *m, int a, int b, int relu)
{
    if (!valid_value(m, a) || !valid_value(m, b))
        return -1;
    mg_shape3 sa = m->values[a].shape, sb = m->values[b].shape;
    if (sa.c != sb.c || sa.h != sb.h || sa.w != sb.w)
        return graph_fail(m, MG_ERR_CONFIG, "residual add of %dx%dx%d and %dx%dx%d: the shapes differ", sa.c, sa.h,
                          sa.w, sb.c, sb.h, sb.w);
    int in[2] = {a, b};
    mg_op *op = new_op(m, MG_OP_ADD, 2, in, sa, -1);
    if (!op)
        return -1;
    op->act = relu ? MG_ACT_RELU : MG_NO_ACT;
    return op->out;
}

int mg_g_concat(mg_model *m, int k, const int *xs)
{
    if (k < 1 || k > MG_OP_MAX_IN)
        return graph_fail(m, MG_ERR_INTERNAL, "concatenation of %d inputs (1 to %d)", k, MG_OP_MAX_IN);
    for (int i = 0; i < k; i++)
        if (!valid_value(m, xs[i]))
            return -1;
    mg_shape3 s = m->values[xs[0]].shape;
    int C = 0;
    for (int i = 0; i < k; i++) {
        mg_shape3 si = m->values[xs[i]].shape;
        if (si.h != s.h || si.w != s.w)
            return graph_fail(m, MG_ERR_CONFIG, "concatenation of %dx%d and %dx%d maps: the sizes differ", s.h, s.w,
                              si.h, si.w);
        C += si.c;
    }
    mg_shape3 os = {C, s.h, s.w};
    mg_op *op = new_op(m, MG_OP_CONCAT, k, xs, os, -1);
    if (!op)
        return -1;
    op->S = s.h * s.w;
    return op->out;
}

int mg_g_flatten(mg_model *m, int x)
{
    if (!valid_value(m, x))
        return -1;
    mg_shape3 s = m->values[x].shape, os = {1, 1, (int)m->values[x].size};
    /* With one channel the channel-major layout already is (N, size): no copy. */
    mg_op *op = new_op(m, MG_OP_FLATTEN, 1, &x, os, s.c == 1 ? x : -1);
    if (!op)
        return -1;
    op->C = s.c;
    op->S = s.h * s.w;
    return op->out;
}

int mg_g_mha(mg_model *m, const char *name, int x, int heads)
{
    if (!valid_value(m, x))
        return -1;
    mg_shape3 s = m->values[x].shape;
    int L = s.h, E = s.w;
    if (s.c != 1 || heads < 1 || E % heads != 0)
        return graph_fail(m, MG_ERR_CONFIG,
                          "%s: self-attention needs a (1, L, E) sequence with E divisible by the %d heads (got "
                          "%dx%dx%d)",
                          name, heads, s.c, s.h, s.w);
    mg_op *op = new_op(m, MG_OP_MHA, 1, &x, s, -1);
    if (!op)
        return -1;
    int oi = (int)(op - m->ops);
    int in_ws[2] = {3 * E, E}, in_bs[1] = {3 * E}, out_ws[2] = {E, E}, out_bs[1] = {E};
    mg_init_info xu = {MG_INIT_XAVIER_UNIF, E, 3 * E, 0};
    size_t w = add_tensor(m, name, "in_proj_weight", 2, in_ws, 1, 0, xu);
    size_t b = add_tensor(m, name, "in_proj_bias", 1, in_bs, 0, 0, init_const(MG_INIT_ZERO));
    size_t w2 = add_tensor(m, name, "out_proj.weight", 2, out_ws, 1, 0, init_fan_in(E, E, 0));
    size_t b2 = add_tensor(m, name, "out_proj.bias", 1, out_bs, 0, 0, init_const(MG_INIT_ZERO));
    op = &m->ops[oi];
    op->L = L;
    op->E = E;
    op->H = heads;
    op->w = w;
    op->b = b;
    op->w2 = w2;
    op->b2 = b2;
    op->cache_ps = (size_t)L * 3 * E + (size_t)heads * L * L + (size_t)L * E;
    return m->build_st == MG_OK ? op->out : -1;
}

/* Parameters first, buffers after, each group in creation order. */
static void order_tensors(mg_model *m)
{
    size_t n = m->n_tensors, j = 0;
    mg_tensor_info *t = malloc(n * sizeof *t);
    mg_init_info *in = malloc(n * sizeof *in);
    if (!t || !in) {
        /* The table stays in creation order: still valid, only less tidy. */
        free(t);
        free(in);
        return;
    }
    for (int pass = 0; pass < 2; pass++)
        for (size_t i = 0; i < n; i++)
            if (m->tensors[i].buffer == pass) {
                t[j] = m->tensors[i];
                in[j] = m->init[i];
                j++;
            }
    memcpy(m->tensors, t, n * sizeof *t);
    memcpy(m->init, in, n * sizeof *in);
    free(t);
    free(in);
}

static void reset_buffers(mg_model *m)
{
    for (size_t t = 0; t < m->n_tensors; t++) {
        const mg_tensor_info *ti = &m->tensors[t];
        if (!ti->buffer)
            continue;
        float v = m->init[t].kind == MG_INIT_ONE ? 1.0f : 0.0f;
        for (size_t i = 0; i < ti->count; i++)
            m->buffers[ti->offset + i] = v;
    }
}

/* A batch norm without a fused ReLU whose output only a residual add reads
 * takes its output gradient straight from the add: the add's output gradient
 * masked by the add's ReLU (its output > 0), which is what the add would have
 * copied into the batch norm's gradient buffer, and which the batch norm's
 * fused-ReLU backward computes from the same two arrays, value for value. The
 * add then skips that copy, a pass over the block's output each step. The
 * later of such batch norms of an add (the other input is ready when it runs)
 * also writes the add's output in its forward, relu(bn(x) + other), the same
 * operations in the same order as the add's, which spares writing the batch
 * norm's own output (nothing reads it now) and reading it back. */
static void plan_deferred_grads(mg_model *m)
{
    const int nv = m->n_values;
    int *uses = calloc((size_t)nv, sizeof(int)), *producer = malloc((size_t)nv * sizeof(int));
    for (int i = 0; i < m->n_ops; i++) {
        m->ops[i].defer = m->ops[i].fuse_add = -1;
        m->ops[i].skip = m->ops[i].fused = 0;
    }
    if (!uses || !producer) {   /* an optimisation only: without memory, none */
        free(uses);
        free(producer);
        return;
    }
    for (int v = 0; v < nv; v++)
        producer[v] = -1;
    for (int i = 0; i < m->n_ops; i++) {
        const mg_op *op = &m->ops[i];
        producer[op->out] = i;
        for (int j = 0; j < op->n_in; j++)
            uses[m->values[op->in[j]].root]++;
    }
    for (int i = 0; i < m->n_ops; i++) {
        mg_op *op = &m->ops[i];
        if (op->kind != MG_OP_ADD || m->values[op->in[0]].root == m->values[op->in[1]].root)
            continue;
        for (int j = 0; j < 2; j++) {
            const int v = op->in[j], p = producer[v];
            if (v == 0 || v == m->logits || m->values[v].root != v || uses[v] != 1 || p < 0 ||
                m->ops[p].kind != MG_OP_BN || m->ops[p].act != MG_NO_ACT)
                continue;
            m->ops[p].defer = i;
            op->skip |= 1 << j;
        }
        /* The forward fuses into the deferred batch norm that runs last, if the
         * add's other input comes before it. */
        for (int j = 1; j >= 0; j--) {
            const int p = producer[op->in[j]], q = producer[m->values[op->in[1 - j]].root];
            if ((op->skip & (1 << j)) && q < p && !op->fused) {
                m->ops[p].fuse_add = i;
                op->fused = 1;
            }
        }
    }
    free(uses);
    free(producer);
}

/* Gradient buffers are shared between values whose gradients are never alive
 * together. Backward runs the operations last to first; the gradient of a
 * value is first written by its last consumer and last read by its producer
 * (an add's output, by the batch norms that take their gradient from it,
 * plan_deferred_grads), so it lives over that interval of steps. Walking the
 * steps, each value takes the smallest free slot that fits (or a new one)
 * when it comes alive and frees it once its last reader has run. The input's
 * gradient keeps a slot of its own. */
static mg_status plan_grad_slots(mg_model *m, mg_error *err)
{
    mg_status st = MG_OK;
    const int nv = m->n_values, no = m->n_ops;
    int *first = NULL, *producer = NULL, *is_free = NULL, *last = NULL;
    first = mg_malloc((size_t)nv, sizeof(int), "gradient plan", err);
    producer = mg_malloc((size_t)nv, sizeof(int), "gradient plan", err);
    last = mg_malloc((size_t)nv, sizeof(int), "gradient plan", err);
    m->gslot = mg_malloc((size_t)nv, sizeof(int), "gradient plan", err);
    m->slot_size = mg_calloc((size_t)nv, sizeof(size_t), "gradient plan", err);
    is_free = mg_calloc((size_t)nv, sizeof(int), "gradient plan", err);
    m->slots = mg_calloc((size_t)nv, sizeof(float *), "gradient plan", err);
    if (!first || !producer || !last || !m->gslot || !m->slot_size || !is_free || !m->slots)
        MG_FAIL(MG_ERR_NOMEM, "model %s: out of memory planning the gradient buffers", m->arch);
    for (int v = 0; v < nv; v++) {
        first[v] = -1;
        producer[v] = -1;
        m->gslot[v] = -1;
    }
    for (int i = 0; i < no; i++) {
        const mg_op *op = &m->ops[i];
        const int ro = m->values[op->out].root;
        if (ro == op->out)
            producer[ro] = i;
        if (op->kind == MG_OP_FLATTEN && ro != op->out)
            continue;   /* shares its input's buffers and writes nothing */
        for (int j = 0; j < op->n_in; j++)
            first[m->values[op->in[j]].root] = i;   /* ops run in order: the last write wins */
    }
    first[m->values[m->logits].root] = no;
    for (int v = 0; v < nv; v++)
        last[v] = producer[v];
    for (int i = 0; i < no; i++)
        if (m->ops[i].kind == MG_OP_BN && m->ops[i].defer >= 0) {
            const int ro = m->values[m->ops[m->ops[i].defer].out].root;
            if (last[ro] < 0 || i < last[ro])
                last[ro] = i;
        }
    m->n_slots = 1;
    m->gslot[0] = 0;
    m->slot_size[0] = m->values[0].size;
    for (int i = no; i >= 0; i--) {
        /* Values that come alive at step i (written by operation i, or the logits before any). */
        for (int v = 1; v < nv; v++) {
            if (m->values[v].root != v || m->gslot[v] >= 0)
                continue;
            int starts = first[v] == i || (first[v] < 0 && producer[v] == i);
            if (!starts)
                continue;
            int best = -1;
            for (int k = 1; k < m->n_slots; k++)
                if (is_free[k] && m->slot_size[k] >= m->values[v].size &&
                    (best < 0 || m->slot_size[k] < m->slot_size[best]))
                    best = k;
            if (best < 0) {
                best = m->n_slots++;
                m->slot_size[best] = m->values[v].size;
            }
            is_free[best] = 0;
            m->gslot[v] = best;
        }
        /* Gradients last read at step i are dead once it has run. */
        for (int v = 1; v < nv && i < no; v++)
            if (m->values[v].root == v && last[v] == i && m->gslot[v] > 0)
                is_free[m->gslot[v]] = 1;
    }
    for (int v = 0; v < nv; v++)
        if (m->values[v].root == v && m->gslot[v] < 0)
            MG_FAIL(MG_ERR_INTERNAL, "model %s: value %d has no gradient buffer", m->arch, v);
cleanup:
    free(first);
    free(producer);
    free(last);
    free(is_free);
    return st;
}

mg_status mg_graph_finish(mg_model **pm, int logits, mg_error *err)
{
    mg_status st = MG_OK;
    mg_model *m = *pm;
    if (m->build_st != MG_OK)
        MG_FAIL(m->build_st, "model %s: %s", m->arch, m->build_msg);
    if (m->n_ops < 1 || logits != m->ops[m->n_ops - 1].out)
        MG_FAIL(MG_ERR_INTERNAL, "model %s: the logits must be the output of the last layer", m->arch);
    if (m->values[logits].size != (size_t)m->n_classes)
        MG_FAIL(MG_ERR_CONFIG, "model %s: the last layer has %zu outputs for %d classes", m->arch,
                m->values[logits].size, m->n_classes);
    m->logits = logits;
    order_tensors(m);
    size_t nv = (size_t)m->n_values, no = (size_t)m->n_ops;
    m->params = mg_calloc(m->n_params ? m->n_params : 1, sizeof(float), "model parameters", err);
    m->grads = mg_calloc(m->n_params ? m->n_params : 1, sizeof(float), "model gradients", err);
    m->masks = mg_malloc(m->n_params ? m->n_params : 1, sizeof(float), "model masks", err);
    m->buffers = m->n_buffers ? mg_calloc(m->n_buffers, sizeof(float), "model buffers", err) : NULL;
    m->act = mg_calloc(nv, sizeof(float *), "model activations", err);
    m->grad = mg_calloc(nv, sizeof(float *), "model activations", err);
    m->ready = mg_calloc(nv, 1, "model activations", err);
    m->cache = mg_calloc(no, sizeof(float *), "model activations", err);
    m->argmax = mg_calloc(no, sizeof(int32_t *), "model activations", err);
    m->cols = mg_calloc(no, sizeof(float *), "model activations", err);
    size_t bn_c = 1;
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].kind == MG_OP_BN && (size_t)m->ops[i].C > bn_c)
            bn_c = (size_t)m->ops[i].C;
    m->bn_sums = mg_calloc(3 * bn_c, sizeof(double), "model activations", err);
    m->bn_sums_op = -1;
    if (!m->params || !m->grads || !m->masks || (m->n_buffers && !m->buffers) || !m->act || !m->grad || !m->ready ||
        !m->cache || !m->argmax || !m->cols || !m->bn_sums)
        MG_FAIL(MG_ERR_NOMEM, "model %s: out of memory for %zu parameters", m->arch, m->n_params);
    for (size_t i = 0; i < m->n_params; i++)
        m->masks[i] = 1.0f;
    reset_buffers(m);
    plan_deferred_grads(m);
    MG_CHECK(plan_grad_slots(m, err));
cleanup:
    if (st != MG_OK)
        mg_model_destroy(pm);
    return st;
}

/* ---- creation and destruction ------------------------------------------------------------ */

mg_status mg_model_create(const mg_model_cfg *cfg, mg_model **out, mg_error *err)
{
    *out = NULL;
    if (!cfg || !cfg->arch)
        return mg_error_set(err, MG_ERR_CONFIG, "model: no architecture given (known: %s)", mg_model_arch_list());
    if (!mg_model_arch_known(cfg->arch))
        return mg_error_set(err, MG_ERR_CONFIG, "model: unknown architecture '%s' (known: %s)", cfg->arch,
                            mg_model_arch_list());
    if (cfg->in_c < 1 || cfg->in_h < 1 || cfg->in_w < 1 || cfg->n_classes < 1)
        return mg_error_set(err, MG_ERR_CONFIG,
                            "model %s: input shape %dx%dx%d and %d classes must all be positive", cfg->arch,
                            cfg->in_c, cfg->in_h, cfg->in_w, cfg->n_classes);
    if ((double)cfg->in_c * cfg->in_h * cfg->in_w > (double)(INT_MAX / 64))
        return mg_error_set(err, MG_ERR_CONFIG, "model %s: input shape %dx%dx%d is too large", cfg->arch,
                            cfg->in_c, cfg->in_h, cfg->in_w);
    if (cfg->init && strcmp(cfg->init, "default") != 0 && strcmp(cfg->init, "xavier-normal") != 0)
        return mg_error_set(err, MG_ERR_CONFIG, "model %s: unknown init '%s' (default or xavier-normal)", cfg->arch,
                            cfg->init);
    return mg_arch_build(cfg, out, err);
}

static void free_grad_buffers(mg_model *m)
{
    for (int v = 0; m->grad && v < m->n_values; v++)
        m->grad[v] = NULL;
    for (int k = 0; m->slots && k < m->n_slots; k++) {
        free(m->slots[k]);
        m->slots[k] = NULL;
    }
    free(m->dx);
    m->dx = NULL;
    m->cap_grad = 0;
}

static void free_cols(mg_model *m)
{
    for (int i = 0; m->cols && i < m->n_ops; i++) {
        free(m->cols[i]);
        m->cols[i] = NULL;
    }
    m->cap_cols = m->cols_batch = 0;
}

static void free_batch_buffers(mg_model *m)
{
    free_cols(m);
    for (int v = 0; m->act && v < m->n_values; v++) {
        if (m->values[v].root != v)
            continue;
        free(m->act[v]);
        m->act[v] = NULL;
    }
    free_grad_buffers(m);
    for (int i = 0; m->cache && i < m->n_ops; i++) {
        free(m->cache[i]);
        m->cache[i] = NULL;
        free(m->argmax[i]);
        m->argmax[i] = NULL;
    }
    free(m->probs);
    free(m->scratch);
    m->probs = m->scratch = NULL;
    m->cap_batch = 0;
    m->last_batch = 0;
}

void mg_model_destroy(mg_model **pm)
{
    if (!pm || !*pm)
        return;
    mg_model *m = *pm;
    free_batch_buffers(m);
    free(m->act);
    free(m->grad);
    free(m->gslot);
    free(m->slot_size);
    free(m->slots);
    free(m->ready);
    free(m->cache);
    free(m->argmax);
    free(m->cols);
    free(m->bn_sums);
    free(m->params);
    free(m->grads);
    free(m->masks);
    free(m->buffers);
    free(m->tensors);
    free(m->init);
    free(m->ops);
    free(m->values);
    free(m);
    *pm = NULL;
}

/* Scratch floats an operation needs for a batch of n. */
static size_t op_scratch(const mg_op *op, int n)
{
    if (op->kind == MG_OP_CONV) {
        mg_conv2d_shape s = op->conv;
        s.N = n;
        return mg_conv2d_scratch(&s);
    }
    if (op->kind == MG_OP_MHA)
        return mg_mha_scratch(n, op->L, op->E, op->H);
    return 0;
}

/* A buffer of the batch: large ones (a layer's activations or gradients at
 * a training batch, megabytes each) start on a 2 MiB boundary and ask for
 * transparent huge pages, so that the strided walks over their channels
 * (chan_major) miss the TLB far less. Freed with free(). */
enum { HUGE_MIN = 4 << 20, HUGE_PAGE = 2 << 20 };

static void *batch_alloc(size_t bytes)
{
#ifdef MADV_HUGEPAGE
    if (bytes >= HUGE_MIN) {
        void *p = NULL;
        if (posix_memalign(&p, HUGE_PAGE, bytes) != 0)
            return NULL;
        (void)madvise(p, bytes & ~((size_t)HUGE_PAGE - 1), MADV_HUGEPAGE);
        return p;
    }
#endif
    return malloc(bytes);
}

/* Make the per-batch buffers hold `batch` samples; contents are not kept. */
static mg_status ensure_batch(mg_model *m, int batch, mg_error *err)
{
    if (batch <= m->cap_batch)
        return MG_OK;
    /* BLAS dimensions and the pooling argmax are int: every buffer must index with one. */
    size_t widest = 1;
    for (int v = 0; v < m->n_values; v++)
        if (m->values[v].size > widest)
            widest = m->values[v].size;
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].cache_ps > widest)
            widest = m->ops[i].cache_ps;
    if ((size_t)batch > (size_t)INT_MAX / widest)
        return mg_error_set(err, MG_ERR_NOMEM, "model %s: a batch of %d is too large for %zu activations per sample",
                            m->arch, batch, widest);
    free_batch_buffers(m);
    const size_t nb = (size_t)batch;
    int ok = 1;
    size_t scratch = 0;
    for (int v = 0; v < m->n_values && ok; v++) {
        if (m->values[v].root != v)
            continue;
        m->act[v] = batch_alloc(nb * m->values[v].size * sizeof(float));
        ok = m->act[v] != NULL;
    }
    for (int i = 0; i < m->n_ops && ok; i++) {
        const mg_op *op = &m->ops[i];
        size_t c = nb * op->cache_ps + op->cache_fixed;
        if (c) {
            m->cache[i] = batch_alloc(c * sizeof(float));
            ok = m->cache[i] != NULL;
        }
        if (ok && op->argmax) {
            m->argmax[i] = malloc(nb * m->values[op->out].size * sizeof(int32_t));
            ok = m->argmax[i] != NULL;
        }
        size_t sc = op_scratch(op, batch);
        if (sc > scratch)
            scratch = sc;
    }
    if (ok) {
        m->probs = malloc(nb * (size_t)m->n_classes * sizeof(float));
        m->scratch = scratch ? malloc(scratch * sizeof(float)) : NULL;
        m->scratch_size = scratch;
        ok = m->probs && (m->scratch || !scratch);
    }
    if (!ok) {
        free_batch_buffers(m);
        return mg_error_set(err, MG_ERR_NOMEM, "model %s: out of memory for activations of a batch of %d",
                            m->arch, batch);
    }
    m->cap_batch = batch;
    return MG_OK;
}

/* The gradient buffers for `batch` samples, allocated at the first backward
 * so that a model only evaluated never holds them. */
static mg_status ensure_grads(mg_model *m, int batch, mg_error *err)
{
    if (batch <= m->cap_grad)
        return MG_OK;
    free_grad_buffers(m);
    const size_t nb = (size_t)batch;
    int ok = 1;
    for (int k = 0; k < m->n_slots && ok; k++) {
        m->slots[k] = batch_alloc(nb * m->slot_size[k] * sizeof(float));
        ok = m->slots[k] != NULL;
    }
    if (ok) {
        m->dx = malloc(nb * (size_t)m->in_dim * sizeof(float));
        ok = m->dx != NULL;
    }
    if (!ok) {
        free_grad_buffers(m);
        return mg_error_set(err, MG_ERR_NOMEM, "model %s: out of memory for the gradients of a batch of %d",
                            m->arch, batch);
    }
    for (int v = 0; v < m->n_values; v++)
        if (m->values[v].root == v)
            m->grad[v] = m->slots[m->gslot[v]];
    m->cap_grad = batch;
    return MG_OK;
}

/* The convolutions' column buffers for `batch` samples, which a training
 * forward keeps so that the backward need not build them again; allocated
 * at the first training forward, so that a model only evaluated never holds
 * them. */
static mg_status ensure_cols(mg_model *m, int batch, mg_error *err)
{
    if (batch <= m->cap_cols)
        return MG_OK;
    free_cols(m);
    for (int i = 0; i < m->n_ops; i++) {
        const mg_op *op = &m->ops[i];
        if (op->kind != MG_OP_CONV)
            continue;
        mg_conv2d_shape s = op->conv;
        s.N = batch;
        const size_t n = mg_conv2d_cols_floats(&s);
        if (n && !(m->cols[i] = batch_alloc(n * sizeof(float)))) {
            free_cols(m);
            return mg_error_set(err, MG_ERR_NOMEM, "model %s: out of memory for the column buffers of a batch of %d",
                                m->arch, batch);
        }
    }
    m->cap_cols = batch;
    return MG_OK;
}

/* Floats of activations and caches one sample adds to a forward. */
static size_t forward_floats(const mg_model *m)
{
    size_t n = 0;
    for (int v = 0; v < m->n_values; v++)
        if (m->values[v].root == v)
            n += m->values[v].size;
    for (int i = 0; i < m->n_ops; i++)
        n += m->ops[i].cache_ps + (m->ops[i].argmax ? m->values[m->ops[i].out].size : 0);
    return n;
}

/* ---- parameters and accessors ------------------------------------------------------------- */

/* Random tensors draw in table order, so the same rng gives the same model. */
void mg_model_init_params(mg_model *m, mg_rng *rng)
{
    for (size_t t = 0; t < m->n_tensors; t++) {
        const mg_tensor_info *ti = &m->tensors[t];
        const mg_init_info *in = &m->init[t];
        if (ti->buffer)
            continue;
        float *p = m->params + ti->offset;
        switch (in->kind) {
        case MG_INIT_ONE:
        case MG_INIT_ZERO:
            for (size_t i = 0; i < ti->count; i++)
                p[i] = in->kind == MG_INIT_ONE ? 1.0f : 0.0f;
            break;
        case MG_INIT_FAN_IN:
        case MG_INIT_XAVIER_UNIF:
            if (m->xavier) {
                /* torch.nn.init.xavier_normal_ on weights; biases start at zero. */
                double sd = in->is_bias ? 0.0 : sqrt(2.0 / (double)(in->fan_in + in->fan_out));
                for (size_t i = 0; i < ti->count; i++)
                    p[i] = in->is_bias ? 0.0f : (float)(sd * mg_rng_normal(rng));
            } else {
                double bound = in->kind == MG_INIT_FAN_IN ? 1.0 / sqrt((double)in->fan_in)
                                                          : sqrt(6.0 / (double)(in->fan_in + in->fan_out));
                for (size_t i = 0; i < ti->count; i++)
                    p[i] = (float)((2.0 * mg_rng_uniform(rng) - 1.0) * bound);
            }
            break;
        }
    }
    reset_buffers(m);
}

size_t mg_model_n_params(const mg_model *m) { return m->n_params; }
float *mg_model_params(mg_model *m) { return m->params; }
float *mg_model_grads(mg_model *m) { return m->grads; }
float *mg_model_masks(mg_model *m) { return m->masks; }
size_t mg_model_n_buffers(const mg_model *m) { return m->n_buffers; }
float *mg_model_buffers(mg_model *m) { return m->buffers; }
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

/* ---- forward ------------------------------------------------------------------------------- */

static const float *pparam(const mg_model *m, size_t off)
{
    return off == MG_NO_PARAM ? NULL : m->params + off;
}

static float *gparam(const mg_model *m, size_t off)
{
    return off == MG_NO_PARAM ? NULL : m->grads + off;
}

static float *vact(const mg_model *m, int v)
{
    return m->act[m->values[v].root];
}

/* The layout of an image value (C, N, S) and of BatchNorm1d's (N, F). */
static mg_layout chan_major(int batch, size_t S)
{
    mg_layout l = {S, (size_t)batch * S};
    return l;
}

static mg_layout bn_layout(const mg_op *op, int batch)
{
    if (op->S == 1) {
        mg_layout l = {(size_t)op->C, 1};
        return l;
    }
    return chan_major(batch, (size_t)op->S);
}

/* The bits of the ReLU that batch norm i fuses (mg_bn_forward_fused), in its
 * cache after the mean and rstd; NULL where it keeps none. */
static uint8_t *bn_keep(const mg_model *m, int i)
{
    const mg_op *op = &m->ops[i];
    return op->cache_ps ? (uint8_t *)(m->cache[i] + 2 * (size_t)op->C) : NULL;
}

/* The batch norm whose forward runs add a (plan_deferred_grads), or -1. */
static int add_bn(const mg_model *m, int a)
{
    for (int p = 0; p < m->n_ops; p++)
        if (m->ops[p].kind == MG_OP_BN && m->ops[p].fuse_add == a)
            return p;
    return -1;
}

/* The bits of the ReLU after add a: that batch norm's, if one runs it. */
static const uint8_t *add_keep(const mg_model *m, int a)
{
    const int p = add_bn(m, a);
    return p >= 0 ? bn_keep(m, p) : NULL;
}

/* add_keep where the batch norm wrote the bits at this batch (its layout
 * allows them), else NULL. */
static const uint8_t *add_keep_written(const mg_model *m, int a, int batch)
{
    const int p = add_bn(m, a);
    return p >= 0 && mg_bn_keeps_bits(bn_layout(&m->ops[p], batch), batch, m->ops[p].S) ? bn_keep(m, p) : NULL;
}

/* (C, N, S) <-> (N, C, S); add accumulates into dst. */
static void transpose_cn(float *dst, const float *src, int C, int N, size_t S, int to_nc, int add)
{
    for (int c = 0; c < C; c++)
        for (int n = 0; n < N; n++) {
            const size_t cn = ((size_t)c * N + n) * S, nc = ((size_t)n * C + c) * S;
            float *d = dst + (to_nc ? nc : cn);
            const float *x = src + (to_nc ? cn : nc);
            if (add)
                for (size_t i = 0; i < S; i++)
                    d[i] += x[i];
            else
                memcpy(d, x, S * sizeof(float));
        }
}

static void act_forward(int act, float *out, const float *in, size_t n)
{
    switch (act) {
    case MG_ACT_RELU:
        mg_relu_forward(out, in, n);
        break;
    case MG_ACT_TANH:
        mg_tanh_forward(out, in, n);
        break;
    case MG_ACT_RELU6:
        mg_relu6_forward(out, in, n);
        break;
    case MG_ACT_GELU:
        mg_gelu_forward(out, in, n);
        break;
    }
}

static void op_forward(mg_model *m, int i, int batch, int train)
{
    const mg_op *op = &m->ops[i];
    float *out = vact(m, op->out);
    const float *in = vact(m, op->in[0]);
    const size_t n_out = (size_t)batch * m->values[op->out].size;
    float *cache = m->cache[i];
    switch (op->kind) {
    case MG_OP_LINEAR: {
        int rows = (int)((size_t)batch * m->values[op->in[0]].size / (size_t)op->I);
        mg_linear_forward_act(out, in, pparam(m, op->w), pparam(m, op->b), rows, op->I, op->O, op->act);
        break;
    }
    case MG_OP_CONV: {
        mg_conv2d_shape s = op->conv;
        s.N = batch;
        /* A training batch norm right after it, over its channels, gets its
         * sums from here where the convolution can make them. */
        const mg_op *next = i + 1 < m->n_ops ? &m->ops[i + 1] : NULL;
        double *sums =
            train && next && next->kind == MG_OP_BN && next->in[0] == op->out && next->C == s.OC ? m->bn_sums : NULL;
        if (mg_conv2d_forward_sums(out, chan_major(batch, (size_t)s.OH * s.OW), in,
                                   chan_major(batch, (size_t)s.H * s.W), pparam(m, op->w), pparam(m, op->b), &s,
                                   m->scratch, op->act, m->cols_batch == batch ? m->cols[i] : NULL, sums))
            m->bn_sums_op = i + 1;
        break;
    }
    case MG_OP_BN: {
        /* Fused with the residual add after it (plan_deferred_grads): the
         * add's output, from the add's other input. */
        const mg_op *add = op->fuse_add >= 0 ? &m->ops[op->fuse_add] : NULL;
        const float *res = add ? vact(m, add->in[add->in[0] == op->out ? 1 : 0]) : NULL;
        mg_bn_forward_fused(add ? vact(m, add->out) : out, cache, cache + op->C, in, bn_layout(op, batch),
                            pparam(m, op->w), pparam(m, op->b), m->buffers + op->rm, m->buffers + op->rv, batch, op->C,
                            op->S, train, MG_BN_MOMENTUM, MG_BN_EPS, res,
                            add ? add->act == MG_ACT_RELU : op->act == MG_ACT_RELU, bn_keep(m, i),
                            train && m->bn_sums_op == i ? m->bn_sums : NULL);
        m->bn_sums_op = -1;
        break;
    }
    case MG_OP_LN: {
        int rows = batch * op->S;
        mg_layernorm_forward(out, cache, cache + rows, in, pparam(m, op->w), pparam(m, op->b), rows, op->C,
                             MG_LN_EPS);
        break;
    }
    case MG_OP_MAXPOOL: {
        mg_pool2d_shape s = op->pool;
        s.N = batch;
        mg_maxpool2d_forward(out, m->argmax[i], in, &s);
        break;
    }
    case MG_OP_AVGPOOL: {
        mg_pool2d_shape s = op->pool;
        s.N = batch;
        mg_avgpool2d_forward(out, in, &s);
        break;
    }
    case MG_OP_GAP: {
        /* (C, N, S) -> (N, C) */
        const float inv = 1.0f / (float)op->S;
        for (int c = 0; c < op->C; c++)
            for (int n = 0; n < batch; n++) {
                const float *row = in + ((size_t)c * batch + n) * op->S;
                float acc = 0.0f;
                for (int k = 0; k < op->S; k++)
                    acc += row[k];
                out[(size_t)n * op->C + c] = acc * inv;
            }
        break;
    }
    case MG_OP_ACT:
        act_forward(op->act, out, in, n_out);
        break;
    case MG_OP_DROPOUT:
        mg_dropout_forward(out, cache, in, n_out, op->p, train, m->rng);
        break;
    case MG_OP_ADD:
        if (!op->fused)
            mg_vec_add(out, in, vact(m, op->in[1]), n_out, op->act == MG_ACT_RELU);
        break;
    case MG_OP_CONCAT: {
        /* Channel-major: each input is one block of the output. */
        float *o = out;
        for (int j = 0; j < op->n_in; j++) {
            size_t sz = (size_t)batch * m->values[op->in[j]].size;
            memcpy(o, vact(m, op->in[j]), sz * sizeof(float));
            o += sz;
        }
        break;
    }
    case MG_OP_FLATTEN:
        if (op->C > 1)
            transpose_cn(out, in, op->C, batch, (size_t)op->S, 1, 0);
        break;
    case MG_OP_MHA: {
        const int L = op->L, E = op->E, H = op->H;
        float *qkv = cache, *att = qkv + (size_t)batch * L * 3 * E, *ctx = att + (size_t)batch * H * L * L;
        mg_mha_forward(out, qkv, att, ctx, in, pparam(m, op->w), pparam(m, op->b), pparam(m, op->w2),
                       pparam(m, op->b2), batch, L, E, H);
        break;
    }
    }
}

static int has_dropout(const mg_model *m)
{
    for (int i = 0; i < m->n_ops; i++)
        if (m->ops[i].kind == MG_OP_DROPOUT && m->ops[i].p > 0.0f)
            return 1;
    return 0;
}

mg_status mg_model_forward(mg_model *m, const float *x, int batch, int train, const float **logits,
                           mg_error *err)
{
    mg_status st = MG_OK;
    if (batch < 1 || !x)
        return mg_error_set(err, MG_ERR_ARG, "model %s: forward needs a batch of at least one sample (got %d)",
                            m->arch, batch);
    if (train && !m->rng && has_dropout(m))
        return mg_error_set(err, MG_ERR_ARG,
                            "model %s: a training forward through dropout needs a generator (mg_model_set_rng)",
                            m->arch);
    for (int i = 0; train && i < m->n_ops; i++)
        if (m->ops[i].kind == MG_OP_BN && (size_t)batch * (size_t)m->ops[i].S < 2)
            return mg_error_set(err, MG_ERR_ARG,
                                "model %s: batch norm in training needs more than one value per channel (batch of %d)",
                                m->arch, batch);
    MG_CHECK(ensure_batch(m, batch, err));
    if (train)
        MG_CHECK(ensure_cols(m, batch, err));
    /* A training forward writes them, and the backward after it reads them. */
    m->cols_batch = train ? batch : 0;
    transpose_cn(m->act[0], x, m->in_c, batch, (size_t)m->in_h * m->in_w, 0, 0);
    for (int i = 0; i < m->n_ops; i++)
        op_forward(m, i, batch, train);
    m->last_batch = batch;
    m->last_train = train != 0;
    if (logits)
        *logits = vact(m, m->logits);
cleanup:
    if (st != MG_OK)
        m->last_batch = 0;
    return st;
}

/* ---- backward ------------------------------------------------------------------------------ */

/* The gradient buffer of value v for an operation about to add into it: NULL
 * when nothing needs it (the input without mg_model_set_input_grad), zeroed
 * on its first use in this backward unless the caller will overwrite it
 * (*fresh set, when fresh is not NULL). */
static float *grad_in(mg_model *m, int v, int batch, int *fresh)
{
    int r = m->values[v].root;
    if (fresh)
        *fresh = 0;
    if (r == 0 && !m->input_grad)
        return NULL;
    if (!m->ready[r]) {
        m->ready[r] = 1;
        if (fresh)
            *fresh = 1;
        else
            memset(m->grad[r], 0, (size_t)batch * m->values[r].size * sizeof(float));
    }
    return m->grad[r];
}

static void act_backward(int act, float *din, const float *dout, const float *in, const float *out, size_t n)
{
    switch (act) {
    case MG_ACT_RELU:
        mg_relu_backward(din, dout, out, n);
        break;
    case MG_ACT_TANH:
        mg_tanh_backward(din, dout, out, n);
        break;
    case MG_ACT_RELU6:
        mg_relu6_backward(din, dout, out, n);
        break;
    case MG_ACT_GELU:
        mg_gelu_backward(din, dout, in, n);
        break;
    }
}

static void op_backward(mg_model *m, int i, int batch)
{
    const mg_op *op = &m->ops[i];
    if (op->kind == MG_OP_FLATTEN && op->C == 1)
        return;
    const int ro = m->values[op->out].root;
    if (op->kind == MG_OP_BN && op->defer >= 0) {
        /* The output gradient is the add's, through its ReLU (plan_deferred_grads). */
        const mg_op *add = &m->ops[op->defer];
        const int ra = m->values[add->out].root;
        int fresh;
        float *din = grad_in(m, op->in[0], batch, &fresh);
        mg_bn_backward_fused(din, fresh, gparam(m, op->w), gparam(m, op->b), m->grad[ra], vact(m, op->in[0]),
                             add->act == MG_ACT_RELU ? m->act[ra] : NULL, add_keep(m, op->defer), bn_layout(op, batch),
                             m->cache[i], m->cache[i] + op->C, pparam(m, op->w), batch, op->C, op->S, m->last_train);
        return;
    }
    if (!m->ready[ro]) {
        /* The output never reached the loss: its gradient is zero. */
        memset(m->grad[ro], 0, (size_t)batch * m->values[ro].size * sizeof(float));
        m->ready[ro] = 1;
    }
    const float *dout = m->grad[ro], *out = m->act[ro];
    const float *in = vact(m, op->in[0]);
    const size_t n_out = (size_t)batch * m->values[op->out].size;
    const float *cache = m->cache[i];
    /* A fused activation: its derivative goes into the output gradient in
     * place, which only this operation reads. */
    if ((op->kind == MG_OP_LINEAR || op->kind == MG_OP_CONV) && op->act != MG_NO_ACT)
        mg_act_grad_inplace(op->act, m->grad[ro], out, n_out);
    switch (op->kind) {
    case MG_OP_LINEAR: {
        int rows = (int)((size_t)batch * m->values[op->in[0]].size / (size_t)op->I);
        mg_linear_backward(grad_in(m, op->in[0], batch, NULL), gparam(m, op->w), gparam(m, op->b), dout, in,
                           pparam(m, op->w), rows, op->I, op->O);
        break;
    }
    case MG_OP_CONV: {
        mg_conv2d_shape s = op->conv;
        s.N = batch;
        int fresh;
        float *din = grad_in(m, op->in[0], batch, &fresh);
        mg_conv2d_backward_kept(din, chan_major(batch, (size_t)s.H * s.W), fresh, gparam(m, op->w), gparam(m, op->b),
                                dout, chan_major(batch, (size_t)s.OH * s.OW), in, pparam(m, op->w), &s, m->scratch,
                                m->cols_batch == batch ? m->cols[i] : NULL);
        break;
    }
    case MG_OP_BN: {
        int fresh;
        float *din = grad_in(m, op->in[0], batch, &fresh);
        mg_bn_backward_fused(din, fresh, gparam(m, op->w), gparam(m, op->b), dout, in,
                             op->act == MG_ACT_RELU ? out : NULL, bn_keep(m, i), bn_layout(op, batch), cache,
                             cache + op->C, pparam(m, op->w), batch, op->C, op->S, m->last_train);
        break;
    }
    case MG_OP_LN: {
        int rows = batch * op->S;
        mg_layernorm_backward(grad_in(m, op->in[0], batch, NULL), gparam(m, op->w), gparam(m, op->b), dout, in,
                              cache, cache + rows, pparam(m, op->w), rows, op->C);
        break;
    }
    case MG_OP_MAXPOOL: {
        mg_pool2d_shape s = op->pool;
        s.N = batch;
        /* 2x2 windows that tile the input write its gradient whole: no zeroing. */
        const int tiled = s.k == 2 && s.stride == 2 && s.pad == 0 && s.H % 2 == 0 && s.W % 2 == 0;
        int fresh;
        float *din = grad_in(m, op->in[0], batch, tiled ? &fresh : NULL);
        if (din && tiled)
            mg_maxpool2_backward_cover(din, fresh, dout, m->argmax[i], s.N * s.C, s.H, s.W);
        else if (din)
            mg_maxpool2d_backward(din, dout, m->argmax[i], &s);
        break;
    }
    case MG_OP_AVGPOOL: {
        float *din = grad_in(m, op->in[0], batch, NULL);
        mg_pool2d_shape s = op->pool;
        s.N = batch;
        if (din)
            mg_avgpool2d_backward(din, dout, &s);
        break;
    }
    case MG_OP_GAP: {
        float *din = grad_in(m, op->in[0], batch, NULL);
        if (!din)
            break;
        const float inv = 1.0f / (float)op->S;
        for (int c = 0; c < op->C; c++)
            for (int n = 0; n < batch; n++) {
                float *row = din + ((size_t)c * batch + n) * op->S;
                const float g = dout[(size_t)n * op->C + c] * inv;
                for (int k = 0; k < op->S; k++)
                    row[k] += g;
            }
        break;
    }
    case MG_OP_ACT: {
        float *din = grad_in(m, op->in[0], batch, NULL);
        if (din)
            act_backward(op->act, din, dout, in, out, n_out);
        break;
    }
    case MG_OP_DROPOUT: {
        float *din = grad_in(m, op->in[0], batch, NULL);
        if (din)
            mg_dropout_backward(din, dout, m->last_train && op->p > 0.0f ? cache : NULL, n_out);
        break;
    }
    case MG_OP_ADD: {
        /* Through the ReLU by the bits of the batch norm that ran the add,
         * where it wrote them, instead of by the output. */
        const uint8_t *keep = op->act == MG_ACT_RELU ? add_keep_written(m, i, batch) : NULL;
        for (int j = 0; j < 2; j++) {
            if (op->skip & (1 << j))
                continue;
            int fresh;
            float *din = grad_in(m, op->in[j], batch, &fresh);
            if (din && keep)
                mg_keep_grad(din, dout, keep, n_out, !fresh);
            else if (din)
                mg_vec_grad(din, dout, op->act == MG_ACT_RELU ? out : NULL, n_out, !fresh);
        }
        break;
    }
    case MG_OP_CONCAT: {
        const float *d = dout;
        for (int j = 0; j < op->n_in; j++) {
            const size_t sz = (size_t)batch * m->values[op->in[j]].size;
            int fresh;
            float *din = grad_in(m, op->in[j], batch, &fresh);
            if (din)
                mg_vec_grad(din, d, NULL, sz, !fresh);
            d += sz;
        }
        break;
    }
    case MG_OP_FLATTEN: {
        float *din = grad_in(m, op->in[0], batch, NULL);
        if (din)
            transpose_cn(din, dout, op->C, batch, (size_t)op->S, 0, 1);
        break;
    }
    case MG_OP_MHA: {
        const int L = op->L, E = op->E, H = op->H;
        const float *qkv = cache, *att = qkv + (size_t)batch * L * 3 * E, *ctx = att + (size_t)batch * H * L * L;
        mg_mha_backward(grad_in(m, op->in[0], batch, NULL), gparam(m, op->w), gparam(m, op->b), gparam(m, op->w2),
                        gparam(m, op->b2), dout, in, qkv, att, ctx, pparam(m, op->w), pparam(m, op->w2), batch, L,
                        E, H, m->scratch);
        break;
    }
    }
}

/* Backward through every operation from the logits' gradient, already in place. */
static void backprop(mg_model *m, int batch)
{
    for (int i = m->n_ops - 1; i >= 0; i--)
        op_backward(m, i, batch);
    if (m->input_grad) {
        if (m->ready[0])
            transpose_cn(m->dx, m->grad[0], m->in_c, batch, (size_t)m->in_h * m->in_w, 1, 0);
        else
            memset(m->dx, 0, (size_t)batch * m->in_dim * sizeof(float));
    }
}

/* Start a backward: clear the gradient-written marks and hand out the logits' gradient, zeroed. */
static float *begin_backward(mg_model *m, int batch)
{
    memset(m->ready, 0, (size_t)m->n_values);
    int r = m->values[m->logits].root;
    m->ready[r] = 1;
    memset(m->grad[r], 0, (size_t)batch * m->n_classes * sizeof(float));
    return m->grad[r];
}

int mg_argmax(const float *z, int K)
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
    mg_status st = ensure_grads(m, batch, err);
    if (st != MG_OK)
        return st;
    const float *logits = vact(m, m->logits);
    double l = m->smoothing > 0.0f ? mg_softmax_xent_smooth_forward(m->probs, logits, y, batch, K, m->smoothing)
                                   : mg_softmax_xent_forward(m->probs, logits, y, batch, K);
    if (loss)
        *loss = l;
    if (n_correct) {
        int c = 0;
        for (int n = 0; n < batch; n++)
            c += mg_argmax(logits + (size_t)n * K, K) == y[n];
        *n_correct = c;
    }
    float *dlogits = begin_backward(m, batch);
    if (m->smoothing > 0.0f)
        mg_softmax_xent_smooth_backward(dlogits, m->probs, y, batch, K, m->smoothing);
    else
        mg_softmax_xent_backward(dlogits, m->probs, y, batch, K);
    backprop(m, batch);
    return MG_OK;
}

mg_status mg_model_backward_soft(mg_model *m, const float *targets, int batch, double *loss, mg_error *err)
{
    const int K = m->n_classes;
    if (m->last_batch == 0 || batch != m->last_batch)
        return mg_error_set(err, MG_ERR_ARG, "model %s: backward on a batch of %d but the last forward had %d",
                            m->arch, batch, m->last_batch);
    for (size_t i = 0; i < (size_t)batch * K; i++)
        if (!(targets[i] >= 0.0f))
            return mg_error_set(err, MG_ERR_ARG, "model %s: soft target %zu of sample %zu is %g (must be >= 0)",
                                m->arch, i % (size_t)K, i / (size_t)K, (double)targets[i]);
    mg_status st = ensure_grads(m, batch, err);
    if (st != MG_OK)
        return st;
    const float *logits = vact(m, m->logits);
    double l = mg_softmax_xent_soft_forward(m->probs, logits, targets, batch, K);
    if (loss)
        *loss = l;
    float *dlogits = begin_backward(m, batch);
    mg_softmax_xent_soft_backward(dlogits, m->probs, targets, batch, K);
    backprop(m, batch);
    return MG_OK;
}

/* Batches of up to 256, fewer when a fresh allocation for 256 would pass
 * PREDICT_BYTES of activations (the deep networks hold tens of MB per sample),
 * but never fewer than the buffers already hold. */
mg_status mg_model_predict(mg_model *m, const float *x, size_t n, float *logits, mg_error *err)
{
    enum { PREDICT_BATCH = 256 };
    const size_t PREDICT_BYTES = (size_t)256 << 20;
    mg_status st = MG_OK;
    const int K = m->n_classes;
    const size_t per = forward_floats(m) * sizeof(float);
    size_t pb = PREDICT_BATCH;
    if (per * pb > PREDICT_BYTES)
        pb = PREDICT_BYTES / per > 0 ? PREDICT_BYTES / per : 1;
    if ((size_t)m->cap_batch > pb)
        pb = (size_t)m->cap_batch < PREDICT_BATCH ? (size_t)m->cap_batch : PREDICT_BATCH;
    for (size_t start = 0; start < n; start += pb) {
        int b = (int)(n - start < pb ? n - start : pb);
        const float *z = NULL;
        MG_CHECK(mg_model_forward(m, x + start * (size_t)m->in_dim, b, 0, &z, err));
        memcpy(logits + start * (size_t)K, z, (size_t)b * K * sizeof(float));
    }
cleanup:
    return st;
}

size_t mg_count_correct(const float *logits, const int32_t *y, size_t n, int n_classes)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += mg_argmax(logits + i * (size_t)n_classes, n_classes) == y[i];
    return c;
}

double mg_accuracy(const float *logits, const int32_t *y, size_t n, int n_classes)
{
    if (n == 0)
        return 0.0;
    return (double)mg_count_correct(logits, y, n, n_classes) / (double)n;
}

/* ---- backward from a given logit gradient ------------------------------------------------ */

/* The losses defenses add (KL between halves of a batch, adversarial terms)
 * and DP-SGD's per-row weights only change the logits' gradient: the rest of
 * the backward is the same. */
mg_status mg_model_backward_from_dlogits(mg_model *m, const float *dlogits, int batch, mg_error *err)
{
    if (m->last_batch == 0 || batch != m->last_batch)
        return mg_error_set(err, MG_ERR_ARG, "model %s: backward on a batch of %d but the last forward had %d",
                            m->arch, batch, m->last_batch);
    if (!dlogits)
        return mg_error_set(err, MG_ERR_ARG, "model %s: backward from the logits' gradient needs that gradient",
                            m->arch);
    mg_status st = ensure_grads(m, batch, err);
    if (st != MG_OK)
        return st;
    float *d = begin_backward(m, batch);
    memcpy(d, dlogits, (size_t)batch * m->n_classes * sizeof(float));
    backprop(m, batch);
    return MG_OK;
}
