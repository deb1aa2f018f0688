/* test_model_graph.c: the model graph engine on small graphs that use every
 * operation kind (grouped and depthwise convs, batch norm 2-d and 1-d with a
 * fused ReLU or not, max and average pools with padding, global average pool,
 * concatenation, residual adds, flatten across channels, dropout, ReLU6,
 * GELU, Tanh, layer norm, multi-head self-attention): whole-model gradients
 * w.r.t. parameters and inputs against central finite differences in train
 * and in eval mode, train/eval behaviour of batch norm and dropout, running
 * statistics against hand-computed values, the tensor table with its
 * buffers, determinism, label smoothing, soft targets, and the errors. */
#include "mg_test.h"
#include "miagrid/nn.h"
#include "nn/nn_internal.h"

#include <stdint.h>

/* Images: every convolution, pooling, normalisation and plumbing kind. */
static mg_model *build_cnn(int K, const char *init)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "test-cnn", 3, 6, 6, K, init != NULL, &err), &err);
    if (!m)
        return NULL;
    int c1 = mg_g_conv(m, "c1", 0, 4, 3, 1, 1, 1, 1);
    int b1 = mg_g_bn(m, "b1", c1, 1);
    int dw = mg_g_conv(m, "dw", b1, 4, 3, 1, 1, 4, 0);          /* depthwise */
    int g = mg_g_act(m, mg_g_bn(m, "b2", dw, 0), MG_ACT_GELU);
    int parts[2] = {g, b1};
    int cat = mg_g_concat(m, 2, parts);                          /* 8 channels */
    int pw = mg_g_conv(m, "pw", cat, 4, 1, 1, 0, 2, 0);         /* grouped pointwise */
    int add = mg_g_add(m, pw, b1, 1);
    int mp = mg_g_maxpool(m, add, 3, 2, 1);                     /* 4 x 3 x 3 */
    int ap = mg_g_avgpool(m, add, 2, 2, 0);
    int s2 = mg_g_conv(m, "s2", add, 4, 3, 2, 1, 1, 0);
    int sum = mg_g_add(m, mg_g_add(m, mp, ap, 0), s2, 0);
    int dr = mg_g_dropout(m, mg_g_act(m, sum, MG_ACT_RELU6), 0.25f);
    int fl = mg_g_flatten(m, dr);                               /* channel-major -> (N, 36) */
    int t = mg_g_act(m, mg_g_bn(m, "bn1d", mg_g_linear(m, "fc1", fl, 6, 1), 0), MG_ACT_TANH);
    int l2 = mg_g_linear(m, "fc2", mg_g_gap(m, dr), 6, 1);
    int logits = mg_g_linear(m, "out", mg_g_add(m, t, l2, 0), K, 1);
    CHECK_OK(mg_graph_finish(&m, logits, &err), &err);
    return m;
}

/* Sequences: embedding, layer norm, attention, GELU, a flatten that needs no copy. */
static mg_model *build_seq(int K)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "test-seq", 1, 4, 6, K, 0, &err), &err);
    if (!m)
        return NULL;
    int e = mg_g_linear(m, "embed", 0, 8, 1);                   /* (1, 4, 8) */
    int at = mg_g_mha(m, "attn", mg_g_layernorm(m, "ln1", e), 2);
    int r = mg_g_act(m, mg_g_add(m, at, e, 0), MG_ACT_GELU);
    int d = mg_g_dropout(m, mg_g_layernorm(m, "ln2", r), 0.1f);
    int logits = mg_g_linear(m, "head", mg_g_flatten(m, d), K, 1);
    CHECK_OK(mg_graph_finish(&m, logits, &err), &err);
    return m;
}

/* ---- finite differences over the whole model ---------------------------------------------- */

typedef struct {
    mg_model *m;
    const float *x;
    const int32_t *y;
    int batch, train;
    float *probs;
    mg_rng rng;
} fd_ctx;

/* Mean cross-entropy of one forward; the dropout generator restarts each time
 * so that every evaluation draws the same mask. */
static double fd_loss(fd_ctx *c)
{
    mg_rng_seed(&c->rng, 11, "fd", "dropout");
    mg_model_set_rng(c->m, &c->rng);
    const float *z = NULL;
    mg_error err = {0};
    if (mg_model_forward(c->m, c->x, c->batch, c->train, &z, &err) != MG_OK)
        return NAN;
    return mg_softmax_xent_forward(c->probs, z, c->y, c->batch, mg_model_n_classes(c->m));
}

/* Central difference of f w.r.t. *v with step h (dividing by the step float
 * rounding took), and the two one-sided differences through *fwd and *bwd. */
static double central(fd_ctx *c, float *v, float h, double f0, double *fwd, double *bwd)
{
    float save = *v;
    *v = save + h;
    double fp = fd_loss(c);
    float hp = *v - save;
    *v = save - h;
    double fm = fd_loss(c);
    float hm = save - *v;
    *v = save;
    *fwd = (fp - f0) / hp;
    *bwd = (f0 - fm) / hm;
    return (fp - fm) / ((double)hp + hm);
}

/* Compares the analytic derivative of entry *v with central differences.
 * Where the loss is smooth, steps of 1e-3 and 5e-4 agree to second order and
 * the one-sided differences to first order; otherwise the steps crossed a
 * ReLU kink or a pooling switch and the entry is skipped (returns 0). The
 * steps are small enough that a weight moving a whole channel rarely flips
 * anything, large enough to stay clear of float noise. */
static int fd_check(fd_ctx *c, float *v, double analytic, double *maxdiff, const char *what, size_t idx)
{
    double f0 = fd_loss(c), f, b;
    double g1 = central(c, v, 1e-3f, f0, &f, &b), g2 = central(c, v, 5e-4f, f0, &f, &b);
    if (fabs(g1 - g2) > 0.01 * fabs(g2) + 1e-4 || fabs(f - b) > 0.01 * fabs(g2) + 5e-4)
        return 0;
    /* The forward sums in float, so each difference carries rounding noise
     * of a few ulps of the loss over the step: about 1e-4 at 5e-4 for this
     * loss (the same gradient entry measured 0.01249 and 0.01264 under two
     * GEMM kernels' summation orders), hence the absolute tolerance. */
    double d = fabs(analytic - g2);
    mg_test_checks_++;
    if (!(d <= 2.5e-4 + 5e-3 * fabs(g2)))
        MG_T_FAIL_("%s[%zu]: analytic %.7g vs numeric %.7g", what, idx, analytic, g2);
    if (d > *maxdiff)
        *maxdiff = d;
    return 1;
}

static void check_graph_grads(mg_model *m, int batch, int train, mg_rng *rng, const char *label)
{
    const int D = mg_model_in_dim(m), K = mg_model_n_classes(m);
    const size_t np = mg_model_n_params(m), nx = (size_t)batch * D;
    float *x = malloc(nx * sizeof(float)), *g = malloc(np * sizeof(float)), *gx = malloc(nx * sizeof(float));
    int32_t *y = malloc((size_t)batch * sizeof(int32_t));
    fd_ctx c = {.m = m, .x = x, .y = y, .batch = batch, .train = train};
    c.probs = malloc((size_t)batch * K * sizeof(float));
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)(2.0 * mg_rng_uniform(rng) - 1.0);
    for (int n = 0; n < batch; n++)
        y[n] = (int32_t)mg_rng_below(rng, (uint64_t)K);
    mg_error err = {0};
    mg_model_set_input_grad(m, 1);
    mg_model_zero_grad(m);
    double f0 = fd_loss(&c), loss = 0.0;
    CHECK_OK(mg_model_backward(m, y, batch, &loss, NULL, &err), &err);
    CHECK_NEAR(loss, f0, 1e-12);
    memcpy(g, mg_model_grads(m), np * sizeof(float));
    memcpy(gx, mg_model_input_grad(m), nx * sizeof(float));

    int checked = 0, skipped = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->buffer)
            continue;
        double maxdiff = 0.0, gmax = 0.0;
        int tc = 0;
        for (int s = 0; s < 10; s++) {
            size_t i = s < 2 ? (size_t)s % ti->count : (size_t)mg_rng_below(rng, ti->count);
            size_t p = ti->offset + i;
            int ok = fd_check(&c, mg_model_params(m) + p, g[p], &maxdiff, ti->name, i);
            checked += ok, skipped += !ok, tc += ok;
            gmax = fmax(gmax, fabs(g[p]));
        }
        printf("  %s %-22s %2d entries, max |g| %.3g, max |analytic - numeric| %.3g\n", label, ti->name, tc, gmax,
               maxdiff);
    }
    double maxdiff = 0.0, gmax = 0.0;
    for (int s = 0; s < 30; s++) {
        size_t i = (size_t)mg_rng_below(rng, nx);
        int ok = fd_check(&c, x + i, gx[i], &maxdiff, "input", i);
        checked += ok, skipped += !ok;
        gmax = fmax(gmax, fabs(gx[i]));
    }
    printf("  %s %-22s max |g| %.3g, max |analytic - numeric| %.3g; %d of %d skipped at kinks\n", label, "input",
           gmax, maxdiff, skipped, checked + skipped);
    CHECK(skipped * 5 <= checked + skipped);

    /* A second backward accumulates into the parameter gradients; the input gradient is overwritten. */
    fd_loss(&c);
    CHECK_OK(mg_model_backward(m, y, batch, NULL, NULL, &err), &err);
    CHECK_OK(mg_model_backward(m, y, batch, NULL, NULL, &err), &err);
    double md = 0.0, gs = 0.0;
    for (size_t i = 0; i < np; i++) {
        md = fmax(md, fabs((double)mg_model_grads(m)[i] - 3.0 * g[i]));
        gs = fmax(gs, fabs(g[i]));
    }
    CHECK(md <= 1e-5 * gs);
    CHECK_TENSOR_NEAR(mg_model_input_grad(m), gx, nx, 1e-7);
    mg_model_set_input_grad(m, 0);
    mg_model_set_rng(m, NULL);
    free(x), free(g), free(gx), free(y), free(c.probs);
}

static void test_gradients(mg_rng *rng)
{
    mg_model *m = build_cnn(5, NULL);
    mg_model_init_params(m, rng);
    check_graph_grads(m, 3, 1, rng, "cnn-train");
    /* Eval mode: batch norm on running statistics (moved by the training forwards), dropout off. */
    check_graph_grads(m, 3, 0, rng, "cnn-eval");
    mg_model_destroy(&m);
    m = build_seq(3);
    mg_model_init_params(m, rng);
    check_graph_grads(m, 3, 1, rng, "seq-train");
    mg_model_destroy(&m);
}

/* ---- tensor table, buffers, init ------------------------------------------------------------ */

static const mg_tensor_info *find(const mg_model *m, const char *name)
{
    for (size_t i = 0; i < mg_model_n_tensors(m); i++)
        if (strcmp(mg_model_tensor(m, i)->name, name) == 0)
            return mg_model_tensor(m, i);
    return NULL;
}

static void test_table(mg_rng *rng)
{
    mg_model *m = build_cnn(5, NULL);
    size_t np = 0, nb = 0;
    int seen_buffer = 0, order_ok = 1, unique = 1, bn_ok = 1;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->buffer) {
            seen_buffer = 1;
            order_ok &= ti->offset == nb && !ti->prunable;
            nb += ti->count;
        } else {
            order_ok &= !seen_buffer && ti->offset == np;
            np += ti->count;
        }
        for (size_t u = 0; u < t; u++)
            unique &= strcmp(mg_model_tensor(m, u)->name, ti->name) != 0;
        if (strncmp(ti->name, "b1.", 3) == 0 || strncmp(ti->name, "bn1d.", 5) == 0)
            bn_ok &= !ti->prunable;
    }
    CHECK(order_ok && unique && bn_ok);
    CHECK_INT_EQ(np, mg_model_n_params(m));
    CHECK_INT_EQ(nb, mg_model_n_buffers(m));
    /* b1, b2 (4 channels each) and bn1d (6 features): mean and variance each. */
    CHECK_INT_EQ(mg_model_n_buffers(m), 2 * (4 + 4 + 6));
    const mg_tensor_info *dw = find(m, "dw.weight"), *rv = find(m, "b2.running_var"), *pw = find(m, "pw.weight");
    CHECK(dw && dw->ndim == 4 && dw->shape[0] == 4 && dw->shape[1] == 1 && dw->prunable);
    CHECK(pw && pw->shape[0] == 4 && pw->shape[1] == 4);
    CHECK(find(m, "dw.bias") == NULL);
    CHECK(rv && rv->buffer && rv->count == 4);
    mg_model_init_params(m, rng);
    CHECK(rv && mg_model_buffers(m)[rv->offset + 2] == 1.0f);
    const mg_tensor_info *gm = find(m, "b1.weight"), *bt = find(m, "b1.bias");
    CHECK(gm && bt && mg_model_params(m)[gm->offset] == 1.0f && mg_model_params(m)[bt->offset + 3] == 0.0f);
    mg_model_destroy(&m);

    m = build_seq(3);
    const mg_tensor_info *inw = find(m, "attn.in_proj_weight"), *ob = find(m, "attn.out_proj.bias");
    CHECK(inw && inw->shape[0] == 24 && inw->shape[1] == 8 && inw->prunable);
    CHECK(ob && ob->count == 8 && !ob->prunable);
    CHECK_INT_EQ(mg_model_n_buffers(m), 0);
    CHECK(mg_model_buffers(m) == NULL);
    mg_model_init_params(m, rng);
    /* in_proj xavier-uniform: bound sqrt(6/(8+24)); biases of the attention start at zero. */
    double mx = 0.0;
    for (size_t i = 0; inw && i < inw->count; i++)
        mx = fmax(mx, fabs(mg_model_params(m)[inw->offset + i]));
    CHECK(mx <= sqrt(6.0 / 32.0) && mx > 0.8 * sqrt(6.0 / 32.0));
    CHECK(ob && mg_model_params(m)[ob->offset] == 0.0f);
    mg_model_destroy(&m);

    /* xavier-normal: weights N(0, 2/(fan_in+fan_out)), biases zero, norm weights one. */
    int hidden[1] = {400};
    mg_model_cfg cfg = {.arch = "mlp", .hidden = hidden, .n_hidden = 1, .act = MG_ACT_RELU, .in_c = 1, .in_h = 20,
                        .in_w = 30, .n_classes = 10, .init = "xavier-normal"};
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_model_init_params(m, rng);
    const mg_tensor_info *w1 = find(m, "fc1.weight"), *b1 = find(m, "fc1.bias");
    double s2 = 0.0;
    for (size_t i = 0; i < w1->count; i++)
        s2 += (double)mg_model_params(m)[w1->offset + i] * mg_model_params(m)[w1->offset + i];
    double sd = sqrt(s2 / (double)w1->count), want = sqrt(2.0 / (600.0 + 400.0));
    printf("  xavier-normal fc1.weight sd %.5f (want %.5f)\n", sd, want);
    CHECK_NEAR(sd, want, 0.01 * want);
    CHECK(mg_model_params(m)[b1->offset + 7] == 0.0f);
    mg_model_destroy(&m);
    cfg.init = "he";
    CHECK_INT_EQ(mg_model_create(&cfg, &m, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "xavier-normal") != NULL);
}

/* ---- modes, running statistics, determinism -------------------------------------------------- */

static void test_modes(mg_rng *rng)
{
    /* input (2,3,3) -> BatchNorm2d -> flatten -> linear: the running statistics by hand. */
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "bn-only", 2, 3, 3, 3, 0, &err), &err);
    int logits = mg_g_linear(m, "fc", mg_g_flatten(m, mg_g_bn(m, "bn", 0, 0)), 3, 1);
    CHECK_OK(mg_graph_finish(&m, logits, &err), &err);
    mg_model_init_params(m, rng);
    const int B = 4, D = 18;
    float x[4 * 18], z1[12], z2[12];
    for (int i = 0; i < B * D; i++)
        x[i] = (float)(mg_rng_uniform(rng) * 4.0 + (i / 9 % 2));
    const float *z = NULL;
    CHECK_OK(mg_model_forward(m, x, B, 1, &z, &err), &err);
    const mg_tensor_info *rm = find(m, "bn.running_mean"), *rv = find(m, "bn.running_var");
    for (int c = 0; c < 2; c++) {
        double mean = 0.0, ss = 0.0;
        for (int n = 0; n < B; n++)
            for (int s = 0; s < 9; s++)
                mean += x[n * D + c * 9 + s];
        mean /= 36.0;
        for (int n = 0; n < B; n++)
            for (int s = 0; s < 9; s++)
                ss += (x[n * D + c * 9 + s] - mean) * (x[n * D + c * 9 + s] - mean);
        CHECK_NEAR(mg_model_buffers(m)[rm->offset + c], 0.1 * mean, 1e-6);
        CHECK_NEAR(mg_model_buffers(m)[rv->offset + c], 0.9 + 0.1 * ss / 35.0, 1e-5);
    }
    /* Eval leaves the buffers alone and is repeatable; train and eval outputs differ. */
    float buf0[4];
    memcpy(buf0, mg_model_buffers(m), sizeof buf0);
    CHECK_OK(mg_model_forward(m, x, B, 0, &z, &err), &err);
    memcpy(z1, z, sizeof z1);
    CHECK_OK(mg_model_forward(m, x, B, 0, &z, &err), &err);
    CHECK(memcmp(z1, z, sizeof z1) == 0);
    CHECK(memcmp(buf0, mg_model_buffers(m), sizeof buf0) == 0);
    CHECK_OK(mg_model_forward(m, x, B, 1, &z, &err), &err);
    memcpy(z2, z, sizeof z2);
    CHECK(memcmp(z1, z2, sizeof z1) != 0);
    /* Eval of one sample equals its row in the batch (no batch statistics). */
    CHECK_OK(mg_model_forward(m, x, B, 0, &z, &err), &err);
    memcpy(z1, z, sizeof z1);
    CHECK_OK(mg_model_forward(m, x + D, 1, 0, &z, &err), &err);
    CHECK_TENSOR_NEAR(z, z1 + 3, 3, 1e-6);
    /* Training batch norm needs two values per channel: BatchNorm2d over 9 positions accepts one sample. */
    CHECK_OK(mg_model_forward(m, x, 1, 1, &z, &err), &err);
    mg_model_destroy(&m);

    /* Dropout: identity in eval; in train it needs a generator, and the same one gives the same bits. */
    m = build_cnn(5, NULL);
    mg_model_init_params(m, rng);
    /* A model only evaluated holds no gradient buffers. */
    float xp[3 * 108], lp[15];
    for (int i = 0; i < 3 * 108; i++)
        xp[i] = (float)mg_rng_uniform(rng);
    CHECK_OK(mg_model_predict(m, xp, 3, lp, &err), &err);
    CHECK_INT_EQ(m->cap_grad, 0);
    CHECK(m->cap_batch >= 3);
    float xi[2 * 108];
    for (int i = 0; i < 2 * 108; i++)
        xi[i] = (float)mg_rng_uniform(rng);
    CHECK_INT_EQ(mg_model_forward(m, xi, 2, 1, &z, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK_OK(mg_model_forward(m, xi, 2, 0, &z, &err), &err);
    memcpy(z1, z, 10 * sizeof(float));
    CHECK_OK(mg_model_forward(m, xi, 2, 0, &z, &err), &err);
    CHECK(memcmp(z1, z, 10 * sizeof(float)) == 0);
    mg_rng d1, d2;
    mg_rng_seed(&d1, 1, "drop", "a");
    mg_rng_seed(&d2, 2, "drop", "a");
    mg_model_set_rng(m, &d1);
    CHECK_OK(mg_model_forward(m, xi, 2, 1, &z, &err), &err);
    memcpy(z1, z, 10 * sizeof(float));
    mg_model_set_rng(m, &d2);
    CHECK_OK(mg_model_forward(m, xi, 2, 1, &z, &err), &err);
    CHECK(memcmp(z1, z, 10 * sizeof(float)) != 0);
    mg_model_set_rng(m, NULL);
    /* BatchNorm1d in training refuses a batch of one, as torch does. */
    CHECK_INT_EQ(mg_model_forward(m, xi, 1, 0, &z, &err), MG_OK);
    mg_rng_seed(&d1, 1, "drop", "a");
    mg_model_set_rng(m, &d1);
    CHECK_INT_EQ(mg_model_forward(m, xi, 1, 1, &z, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    mg_model_set_rng(m, NULL);
    mg_model_destroy(&m);
}

static void test_determinism(void)
{
    mg_model *a = build_cnn(5, NULL), *b = build_cnn(5, NULL);
    mg_rng ia, ib, da, db;
    mg_rng_seed(&ia, 5, "init", "x");
    mg_rng_seed(&ib, 5, "init", "x");
    mg_model_init_params(a, &ia);
    mg_model_init_params(b, &ib);
    CHECK(memcmp(mg_model_params(a), mg_model_params(b), mg_model_n_params(a) * sizeof(float)) == 0);
    float x[4 * 108];
    int32_t y[4] = {0, 4, 2, 1};
    for (int i = 0; i < 4 * 108; i++)
        x[i] = (float)((i * 37 % 101) / 50.0 - 1.0);
    mg_rng_seed(&da, 9, "drop", "x");
    mg_rng_seed(&db, 9, "drop", "x");
    mg_model_set_rng(a, &da);
    mg_model_set_rng(b, &db);
    mg_error err = {0};
    const float *z = NULL;
    for (int step = 0; step < 2; step++) {
        mg_model_zero_grad(a);
        mg_model_zero_grad(b);
        CHECK_OK(mg_model_forward(a, x, 4, 1, &z, &err), &err);
        CHECK_OK(mg_model_backward(a, y, 4, NULL, NULL, &err), &err);
        CHECK_OK(mg_model_forward(b, x, 4, 1, &z, &err), &err);
        CHECK_OK(mg_model_backward(b, y, 4, NULL, NULL, &err), &err);
    }
    CHECK(memcmp(mg_model_grads(a), mg_model_grads(b), mg_model_n_params(a) * sizeof(float)) == 0);
    CHECK(memcmp(mg_model_buffers(a), mg_model_buffers(b), mg_model_n_buffers(a) * sizeof(float)) == 0);
    mg_model_destroy(&a);
    mg_model_destroy(&b);
}

/* ---- losses ----------------------------------------------------------------------------------- */

static void test_losses(mg_rng *rng)
{
    mg_model *m = build_seq(4);
    mg_model_init_params(m, rng);
    const int B = 3;
    float x[3 * 24], t[12], probs[12];
    int32_t y[3] = {1, 3, 0};
    for (int i = 0; i < B * 24; i++)
        x[i] = (float)(2.0 * mg_rng_uniform(rng) - 1.0);
    for (int n = 0; n < B; n++) {
        double s = 0.0;
        for (int k = 0; k < 4; k++)
            s += t[n * 4 + k] = (float)mg_rng_uniform(rng);
        for (int k = 0; k < 4; k++)
            t[n * 4 + k] = (float)(t[n * 4 + k] / s);
    }
    mg_error err = {0};
    const float *z = NULL;
    double loss = 0.0;
    float zc[12];
    /* Label smoothing: the model's loss is the kernel's, and the gradient follows it. */
    mg_model_set_label_smoothing(m, 0.2f);
    CHECK_OK(mg_model_forward(m, x, B, 0, &z, &err), &err);
    memcpy(zc, z, sizeof zc);
    mg_model_zero_grad(m);
    CHECK_OK(mg_model_backward(m, y, B, &loss, NULL, &err), &err);
    CHECK_NEAR(loss, mg_softmax_xent_smooth_forward(probs, zc, y, B, 4, 0.2f), 1e-12);
    const mg_tensor_info *hw = find(m, "head.weight");
    const size_t p = hw->offset + 5;
    const float g = mg_model_grads(m)[p], save = mg_model_params(m)[p];
    double f[2];
    for (int s = 0; s < 2; s++) {
        mg_model_params(m)[p] = save + (s ? -1e-2f : 1e-2f);
        CHECK_OK(mg_model_forward(m, x, B, 0, &z, &err), &err);
        f[s] = mg_softmax_xent_smooth_forward(probs, z, y, B, 4, 0.2f);
    }
    mg_model_params(m)[p] = save;
    CHECK_NEAR(g, (f[0] - f[1]) / 2e-2, 2e-4);
    mg_model_set_label_smoothing(m, 0.0f);

    /* Soft targets. */
    CHECK_OK(mg_model_forward(m, x, B, 0, &z, &err), &err);
    memcpy(zc, z, sizeof zc);
    mg_model_zero_grad(m);
    CHECK_OK(mg_model_backward_soft(m, t, B, &loss, &err), &err);
    CHECK_NEAR(loss, mg_softmax_xent_soft_forward(probs, zc, t, B, 4), 1e-12);
    const float gs = mg_model_grads(m)[p];
    for (int s = 0; s < 2; s++) {
        mg_model_params(m)[p] = save + (s ? -1e-2f : 1e-2f);
        CHECK_OK(mg_model_forward(m, x, B, 0, &z, &err), &err);
        f[s] = mg_softmax_xent_soft_forward(probs, z, t, B, 4);
    }
    mg_model_params(m)[p] = save;
    CHECK_NEAR(gs, (f[0] - f[1]) / 2e-2, 2e-4);
    CHECK_OK(mg_model_forward(m, x, B, 0, &z, &err), &err);
    t[5] = -0.5f;
    CHECK_INT_EQ(mg_model_backward_soft(m, t, B, &loss, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK_INT_EQ(mg_model_backward_soft(m, t, B - 1, &loss, &err), MG_ERR_ARG);
    mg_model_destroy(&m);
}

/* ---- graph errors ------------------------------------------------------------------------------- */

static void test_errors(void)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "bad", 3, 8, 8, 4, 0, &err), &err);
    int a = mg_g_conv(m, "a", 0, 4, 3, 1, 1, 1, 0), b = mg_g_conv(m, "b", 0, 4, 3, 2, 1, 1, 0);
    int s = mg_g_add(m, a, b, 0);   /* 4x8x8 + 4x4x4 */
    int l = mg_g_linear(m, "fc", mg_g_flatten(m, s), 4, 1);
    CHECK(s < 0 && l < 0);
    CHECK_INT_EQ(mg_graph_finish(&m, l, &err), MG_ERR_CONFIG);
    CHECK(m == NULL);
    printf("  expected error: %s\n", err.msg);
    CHECK_OK(mg_graph_begin(&m, "bad", 3, 8, 8, 4, 0, &err), &err);
    CHECK(mg_g_conv(m, "g", 0, 4, 3, 1, 1, 2, 0) < 0);   /* 3 channels in 2 groups */
    CHECK_INT_EQ(mg_graph_finish(&m, -1, &err), MG_ERR_CONFIG);
    printf("  expected error: %s\n", err.msg);
    CHECK_OK(mg_graph_begin(&m, "bad", 3, 8, 8, 4, 0, &err), &err);
    l = mg_g_linear(m, "fc", mg_g_flatten(m, 0), 5, 1);   /* 5 outputs for 4 classes */
    CHECK_INT_EQ(mg_graph_finish(&m, l, &err), MG_ERR_CONFIG);
    printf("  expected error: %s\n", err.msg);
}

int main(void)
{
    mg_rng rng;
    mg_rng_seed(&rng, 2024, "test", "model_graph");
    test_gradients(&rng);
    test_table(&rng);
    test_modes(&rng);
    test_determinism();
    test_losses(&rng);
    test_errors();
    MG_TEST_MAIN_END();
}
