/* test_model.c: model construction (parameter counts, tensor table, init),
 * end-to-end gradients of MLP and LeNet-5 against finite differences w.r.t.
 * parameters and inputs, accumulation, predict and accuracy. */
#include "mg_test.h"
#include "miagrid/nn.h"

#include <stdint.h>

static mg_model *make_model(const char *arch, int c, int h, int w, int k, const int *hidden, int n_hidden,
                            mg_act act)
{
    mg_model_cfg cfg = {.arch = arch, .hidden = hidden, .n_hidden = n_hidden, .act = act,
                        .in_c = c, .in_h = h, .in_w = w, .n_classes = k};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    return m;
}

static const mg_tensor_info *find_tensor(const mg_model *m, const char *name)
{
    for (size_t i = 0; i < mg_model_n_tensors(m); i++)
        if (strcmp(mg_model_tensor(m, i)->name, name) == 0)
            return mg_model_tensor(m, i);
    return NULL;
}

static void test_shapes(void)
{
    mg_model *m = make_model("lenet5", 1, 28, 28, 10, NULL, 0, MG_ACT_RELU);
    CHECK_INT_EQ(mg_model_n_params(m), 61706);
    CHECK_INT_EQ(mg_model_n_tensors(m), 10);
    CHECK_INT_EQ(mg_model_in_dim(m), 784);
    CHECK_INT_EQ(mg_model_n_classes(m), 10);
    const char *names[10] = {"conv1.weight", "conv1.bias", "conv2.weight", "conv2.bias", "fc1.weight",
                             "fc1.bias",     "fc2.weight", "fc2.bias",     "fc3.weight",  "fc3.bias"};
    size_t off = 0, n_prunable = 0;
    for (size_t i = 0; i < 10; i++) {
        const mg_tensor_info *t = mg_model_tensor(m, i);
        CHECK_STR_EQ(t->name, names[i]);
        CHECK_INT_EQ(t->offset, off);
        CHECK_INT_EQ(t->prunable, i % 2 == 0);
        size_t cnt = 1;
        for (int d = 0; d < t->ndim; d++)
            cnt *= (size_t)t->shape[d];
        CHECK_INT_EQ(cnt, t->count);
        off += t->count;
        n_prunable += t->prunable ? t->count : 0;
    }
    CHECK(mg_model_tensor(m, 10) == NULL);
    CHECK_INT_EQ(n_prunable, 61706 - (6 + 16 + 120 + 84 + 10));
    const mg_tensor_info *c1 = find_tensor(m, "conv1.weight");
    CHECK(c1 && c1->ndim == 4 && c1->shape[0] == 6 && c1->shape[1] == 1 && c1->shape[2] == 5 && c1->shape[3] == 5);
    const mg_tensor_info *f1 = find_tensor(m, "fc1.weight");
    CHECK(f1 && f1->ndim == 2 && f1->shape[0] == 120 && f1->shape[1] == 400);
    int masks_one = 1;
    for (size_t i = 0; i < mg_model_n_params(m); i++)
        masks_one &= mg_model_masks(m)[i] == 1.0f;
    CHECK(masks_one);
    mg_model_destroy(&m);
    CHECK(m == NULL);

    /* The flatten size follows the input: 3x32x32 -> 32 -> 16 -> 12 -> 6, so 16*6*6. */
    m = make_model("lenet5", 3, 32, 32, 10, NULL, 0, MG_ACT_RELU);
    f1 = find_tensor(m, "fc1.weight");
    CHECK(f1 && f1->shape[1] == 576);
    CHECK_INT_EQ(mg_model_n_params(m), 456 + 2416 + 576 * 120 + 120 + 10164 + 850);
    mg_model_destroy(&m);

    int hidden[2] = {512, 256};
    m = make_model("mlp", 1, 28, 28, 10, hidden, 2, MG_ACT_RELU);
    CHECK_INT_EQ(mg_model_n_params(m), 535818);
    CHECK_INT_EQ(mg_model_n_tensors(m), 6);
    CHECK_STR_EQ(mg_model_tensor(m, 0)->name, "fc1.weight");
    CHECK_STR_EQ(mg_model_tensor(m, 5)->name, "fc3.bias");
    CHECK(mg_model_tensor(m, 2)->shape[0] == 256 && mg_model_tensor(m, 2)->shape[1] == 512);
    mg_model_destroy(&m);

    /* Errors: unknown architecture, a LeNet input too small, bad widths. */
    mg_error err = {0};
    mg_model_cfg cfg = {.arch = "resnet", .in_c = 1, .in_h = 28, .in_w = 28, .n_classes = 10};
    CHECK_INT_EQ(mg_model_create(&cfg, &m, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "resnet") != NULL);
    cfg.arch = "lenet5";
    cfg.in_h = cfg.in_w = 11;
    CHECK_INT_EQ(mg_model_create(&cfg, &m, &err), MG_ERR_CONFIG);
    printf("  expected error: %s\n", err.msg);
    cfg.in_h = cfg.in_w = 12;
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_model_destroy(&m);
    int bad[1] = {0};
    cfg.arch = "mlp";
    cfg.hidden = bad;
    cfg.n_hidden = 1;
    CHECK_INT_EQ(mg_model_create(&cfg, &m, &err), MG_ERR_CONFIG);
    CHECK(m == NULL);
}

static void test_init(void)
{
    int hidden[1] = {300};
    mg_model *a = make_model("mlp", 1, 10, 10, 5, hidden, 1, MG_ACT_RELU);
    mg_model *b = make_model("mlp", 1, 10, 10, 5, hidden, 1, MG_ACT_RELU);
    mg_rng r1, r2;
    mg_rng_seed(&r1, 5, "model", "init");
    mg_rng_seed(&r2, 5, "model", "init");
    mg_model_init_params(a, &r1);
    mg_model_init_params(b, &r2);
    CHECK(memcmp(mg_model_params(a), mg_model_params(b), mg_model_n_params(a) * sizeof(float)) == 0);
    /* U(-1/sqrt(fan_in), 1/sqrt(fan_in)): fc1 has fan_in 100, fc2 300, biases share their weight's. */
    const double bound[4] = {0.1, 0.1, 1.0 / sqrt(300.0), 1.0 / sqrt(300.0)};
    for (size_t t = 0; t < 4; t++) {
        const mg_tensor_info *ti = mg_model_tensor(a, t);
        const float *p = mg_model_params(a) + ti->offset;
        double mx = 0.0, mean = 0.0;
        for (size_t i = 0; i < ti->count; i++) {
            mx = fmax(mx, fabs(p[i]));
            mean += p[i];
        }
        mean /= (double)ti->count;
        printf("  init %-10s max |w| %.4f (bound %.4f) mean %.4f\n", ti->name, mx, bound[t], mean);
        CHECK(mx <= bound[t]);
        if (ti->count > 1000) {
            /* The maximum of n uniform draws misses the bound by about bound/n. */
            CHECK(mx > (1.0 - 10.0 / (double)ti->count) * bound[t]);
            CHECK_NEAR(mean, 0.0, 0.05 * bound[t]);
        }
    }
    mg_model_destroy(&a);
    mg_model_destroy(&b);
}

/* ---- end-to-end gradients ----------------------------------------------------------- */

/* A double-precision re-implementation of both architectures, read off the
 * tensor table, so finite differences can use a tiny step: the float model's
 * analytic gradient is compared with derivatives free of float noise, and a
 * step that crosses a ReLU kink or a pooling switch shows up as one-sided
 * differences that disagree. */
typedef struct {
    mg_model *m;
    int lenet;
    mg_act act;
    int C, H, W, batch;
    double *p;   /* parameters in double, perturbed in place */
    double *x;   /* input in double, perturbed in place */
    const int32_t *y;
} ref_ctx;

/* out (N,OC,OH,OW) from inp (N,C,H,W), square kernel K, stride 1. */
static double *ref_conv(const double *inp, int N, int C, int H, int W, const double *w, const double *b, int OC,
                        int K, int pad, int *OH, int *OW)
{
    int oh_n = H + 2 * pad - K + 1, ow_n = W + 2 * pad - K + 1;
    double *out = malloc((size_t)N * OC * oh_n * ow_n * sizeof(double));
    for (int n = 0; n < N; n++)
        for (int oc = 0; oc < OC; oc++)
            for (int oh = 0; oh < oh_n; oh++)
                for (int ow = 0; ow < ow_n; ow++) {
                    double acc = b[oc];
                    for (int c = 0; c < C; c++)
                        for (int kh = 0; kh < K; kh++)
                            for (int kw = 0; kw < K; kw++) {
                                int ih = oh - pad + kh, iw = ow - pad + kw;
                                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                                    acc += inp[((n * C + c) * H + ih) * W + iw] * w[((oc * C + c) * K + kh) * K + kw];
                            }
                    out[((n * OC + oc) * oh_n + oh) * ow_n + ow] = acc;
                }
    *OH = oh_n;
    *OW = ow_n;
    return out;
}

static double *ref_pool(const double *inp, int NC, int H, int W)
{
    int OH = H / 2, OW = W / 2;
    double *out = malloc((size_t)NC * OH * OW * sizeof(double));
    for (int nc = 0; nc < NC; nc++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                const double *r = inp + ((size_t)nc * H + 2 * oh) * W + 2 * ow;
                out[((size_t)nc * OH + oh) * OW + ow] = fmax(fmax(r[0], r[1]), fmax(r[W], r[W + 1]));
            }
    return out;
}

static double *ref_linear(const double *inp, int N, int I, const double *w, const double *b, int O)
{
    double *out = malloc((size_t)N * O * sizeof(double));
    for (int n = 0; n < N; n++)
        for (int o = 0; o < O; o++) {
            double acc = b[o];
            for (int i = 0; i < I; i++)
                acc += inp[n * I + i] * w[o * I + i];
            out[n * O + o] = acc;
        }
    return out;
}

static void ref_act(double *a, size_t n, mg_act act)
{
    for (size_t i = 0; i < n; i++)
        a[i] = act == MG_ACT_TANH ? tanh(a[i]) : fmax(a[i], 0.0);
}

static const double *ref_param(const ref_ctx *c, size_t t)
{
    return c->p + mg_model_tensor(c->m, t)->offset;
}

static double ref_loss(const ref_ctx *c)
{
    const int N = c->batch;
    double *a = malloc((size_t)N * c->C * c->H * c->W * sizeof(double)), *b = NULL;
    memcpy(a, c->x, (size_t)N * c->C * c->H * c->W * sizeof(double));
    int dim = c->C * c->H * c->W;
    size_t t = 0;
    if (c->lenet) {
        int C = c->C, H = c->H, W = c->W, OH, OW;
        b = ref_conv(a, N, C, H, W, ref_param(c, 0), ref_param(c, 1), 6, 5, 2, &OH, &OW);
        ref_act(b, (size_t)N * 6 * OH * OW, MG_ACT_RELU);
        free(a);
        a = ref_pool(b, N * 6, OH, OW);
        free(b);
        H = OH / 2, W = OW / 2;
        b = ref_conv(a, N, 6, H, W, ref_param(c, 2), ref_param(c, 3), 16, 5, 0, &OH, &OW);
        ref_act(b, (size_t)N * 16 * OH * OW, MG_ACT_RELU);
        free(a);
        a = ref_pool(b, N * 16, OH, OW);
        free(b);
        dim = 16 * (OH / 2) * (OW / 2);
        t = 4;
    }
    const size_t nt = mg_model_n_tensors(c->m);
    for (; t < nt; t += 2) {
        int O = mg_model_tensor(c->m, t)->shape[0];
        b = ref_linear(a, N, dim, ref_param(c, t), ref_param(c, t + 1), O);
        free(a);
        a = b;
        dim = O;
        if (t + 2 < nt)
            ref_act(a, (size_t)N * O, c->lenet ? MG_ACT_RELU : c->act);
    }
    double loss = 0.0;
    for (int n = 0; n < N; n++) {
        const double *z = a + (size_t)n * dim;
        double mx = z[0], s = 0.0;
        for (int k = 1; k < dim; k++)
            mx = fmax(mx, z[k]);
        for (int k = 0; k < dim; k++)
            s += exp(z[k] - mx);
        loss += log(s) + mx - z[c->y[n]];
    }
    free(a);
    return loss / N;
}

/* Compares the analytic gradient of entry v (a parameter or input) with
 * central differences in double. One-sided differences that disagree mean the
 * step crossed a kink: the entry is skipped. Returns 1 if checked, 0 if skipped. */
static int fd_entry(const ref_ctx *c, double *v, double analytic, double atol, double rtol, double *maxdiff,
                    const char *what, size_t idx)
{
    const double eps = 1e-6;
    double save = *v, f0 = ref_loss(c);
    *v = save + eps;
    double fp = ref_loss(c);
    *v = save - eps;
    double fm = ref_loss(c);
    *v = save;
    double gc = (fp - fm) / (2 * eps), gf = (fp - f0) / eps, gb = (f0 - fm) / eps;
    if (fabs(gf - gb) > 1e-4 * fabs(gc) + 1e-7)
        return 0;
    double d = fabs(analytic - gc);
    mg_test_checks_++;
    if (d > atol + rtol * fabs(gc))
        MG_T_FAIL_("%s[%zu]: analytic %.7g vs numeric %.7g", what, idx, analytic, gc);
    *maxdiff = fmax(*maxdiff, d);
    return 1;
}

static void check_model_grads(mg_model *m, const mg_model_cfg *cfg, int batch, mg_rng *rng, const char *label)
{
    const int D = mg_model_in_dim(m), K = mg_model_n_classes(m);
    const size_t np = mg_model_n_params(m), nx = (size_t)batch * D;
    float *x = malloc(nx * sizeof(float));
    int32_t *y = malloc((size_t)batch * sizeof(int32_t));
    float *probs = malloc((size_t)batch * K * sizeof(float));
    float *g = malloc(np * sizeof(float)), *gx = malloc(nx * sizeof(float));
    ref_ctx c = {.m = m, .lenet = strcmp(cfg->arch, "lenet5") == 0, .act = cfg->act, .C = cfg->in_c,
                 .H = cfg->in_h, .W = cfg->in_w, .batch = batch, .y = y};
    c.p = malloc(np * sizeof(double));
    c.x = malloc(nx * sizeof(double));
    for (size_t i = 0; i < nx; i++)
        x[i] = (float)(2.0 * mg_rng_uniform(rng) - 1.0);
    for (int n = 0; n < batch; n++)
        y[n] = (int32_t)mg_rng_below(rng, (uint64_t)K);
    for (size_t i = 0; i < np; i++)
        c.p[i] = mg_model_params(m)[i];
    for (size_t i = 0; i < nx; i++)
        c.x[i] = x[i];
    mg_error err = {0};

    mg_model_set_input_grad(m, 1);
    mg_model_zero_grad(m);
    double loss = -1.0;
    const float *z = NULL;
    CHECK_OK(mg_model_forward(m, x, batch, 1, &z, &err), &err);
    CHECK_OK(mg_model_backward(m, y, batch, &loss, NULL, &err), &err);
    CHECK_NEAR(loss, mg_softmax_xent_forward(probs, z, y, batch, K), 1e-12);
    /* The float model computes the same function as the double reference. */
    CHECK_NEAR(loss, ref_loss(&c), 1e-5);
    memcpy(g, mg_model_grads(m), np * sizeof(float));
    CHECK(mg_model_input_grad(m) != NULL);
    memcpy(gx, mg_model_input_grad(m), nx * sizeof(float));

    /* A sample of every tensor: the first entries, the last, and random ones. */
    int checked = 0, skipped = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        double maxdiff = 0.0, gmax = 0.0;
        int tc = 0;
        for (int s = 0; s < 24; s++) {
            size_t i = s < 4   ? (size_t)s % ti->count
                       : s < 8 ? ti->count - 1 - (size_t)(s - 4) % ti->count
                               : (size_t)mg_rng_below(rng, ti->count);
            size_t p = ti->offset + i;
            int ok = fd_entry(&c, c.p + p, g[p], 2e-7, 1e-4, &maxdiff, ti->name, i);
            checked += ok;
            skipped += !ok;
            tc += ok;
            gmax = fmax(gmax, fabs(g[p]));
        }
        printf("  %s %-13s %2d entries, max |g| %.3g, max |analytic - numeric| %.3g\n", label, ti->name, tc, gmax,
               maxdiff);
    }
    double maxdiff = 0.0, gmax = 0.0;
    int xc = 0;
    for (int s = 0; s < 40; s++) {
        size_t i = (size_t)mg_rng_below(rng, nx);
        int ok = fd_entry(&c, c.x + i, gx[i], 2e-7, 1e-4, &maxdiff, "input", i);
        checked += ok;
        skipped += !ok;
        xc += ok;
        gmax = fmax(gmax, fabs(gx[i]));
    }
    printf("  %s %-13s %2d entries, max |g| %.3g, max |analytic - numeric| %.3g; %d of %d skipped at kinks\n",
           label, "input", xc, gmax, maxdiff, skipped, checked + skipped);
    CHECK(skipped * 20 <= checked + skipped);

    /* A second backward accumulates: the gradient doubles; the input gradient does not. */
    CHECK_OK(mg_model_backward(m, y, batch, NULL, NULL, &err), &err);
    /* sgemm adds its product block by block into the gradient, so "doubled" holds to rounding. */
    double md = 0.0, gscale = 0.0;
    for (size_t i = 0; i < np; i++) {
        md = fmax(md, fabs((double)mg_model_grads(m)[i] - 2.0 * g[i]));
        gscale = fmax(gscale, fabs(g[i]));
    }
    printf("  %s second backward: max |g2 - 2g| %.3g (max |g| %.3g)\n", label, md, gscale);
    CHECK(md <= 1e-6 * gscale);
    CHECK_TENSOR_NEAR(mg_model_input_grad(m), gx, nx, 0.0);
    mg_model_zero_grad(m);
    int zero = 1;
    for (size_t i = 0; i < np; i++)
        zero &= mg_model_grads(m)[i] == 0.0f;
    CHECK(zero);
    mg_model_set_input_grad(m, 0);
    free(x), free(y), free(probs), free(g), free(gx), free(c.p), free(c.x);
}

static void grad_case(const mg_model_cfg *cfg, int batch, mg_rng *rng, const char *label)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(cfg, &m, &err), &err);
    if (!m)
        return;
    mg_model_init_params(m, rng);
    check_model_grads(m, cfg, batch, rng, label);
    mg_model_destroy(&m);
}

static void test_gradients(mg_rng *rng)
{
    int h2[2] = {12, 9};
    mg_model_cfg cfg = {.arch = "mlp", .hidden = h2, .n_hidden = 2, .act = MG_ACT_TANH,
                        .in_c = 2, .in_h = 3, .in_w = 3, .n_classes = 4};
    grad_case(&cfg, 5, rng, "mlp-tanh");
    cfg.act = MG_ACT_RELU;
    cfg.in_c = 1, cfg.in_h = 4, cfg.in_w = 5, cfg.n_classes = 3;
    grad_case(&cfg, 5, rng, "mlp-relu");
    /* No hidden layer: multinomial logistic regression. */
    cfg.n_hidden = 0;
    grad_case(&cfg, 4, rng, "mlp-linear");
    mg_model_cfg lc = {.arch = "lenet5", .in_c = 2, .in_h = 14, .in_w = 13, .n_classes = 5};
    grad_case(&lc, 3, rng, "lenet5");
}

/* ---- forward batching, predict, accuracy, errors -------------------------------------- */

static void test_predict(mg_rng *rng)
{
    mg_model *m = make_model("lenet5", 1, 16, 16, 4, NULL, 0, MG_ACT_RELU);
    mg_model_init_params(m, rng);
    const size_t n = 300;
    const int D = mg_model_in_dim(m);
    float *x = malloc(n * D * sizeof(float)), *lp = malloc(n * 4 * sizeof(float)), *l1 = malloc(4 * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n * D; i++)
        x[i] = (float)mg_rng_uniform(rng);
    mg_error err = {0};
    /* Batched predict (256 + 44) equals one sample at a time. */
    CHECK_OK(mg_model_predict(m, x, n, lp, &err), &err);
    double md = 0.0;
    for (size_t i = 0; i < n; i += 37) {
        CHECK_OK(mg_model_predict(m, x + i * D, 1, l1, &err), &err);
        for (int k = 0; k < 4; k++)
            md = fmax(md, fabs(l1[k] - lp[i * 4 + k]));
    }
    printf("  predict: batched vs single max |diff| %.3g\n", md);
    CHECK(md < 1e-5);

    for (size_t i = 0; i < n; i++) {
        int best = 0;
        for (int k = 1; k < 4; k++)
            if (lp[i * 4 + k] > lp[i * 4 + best])
                best = k;
        y[i] = (int32_t)(i % 3 == 0 ? (best + 1) % 4 : best);
    }
    CHECK_NEAR(mg_accuracy(lp, y, n, 4), 200.0 / 300.0, 1e-12);
    CHECK_NEAR(mg_accuracy(lp, y, 0, 4), 0.0, 0.0);

    /* n_correct from backward agrees with mg_accuracy. */
    const float *z = NULL;
    int nc = -1;
    double loss = 0.0;
    CHECK_OK(mg_model_forward(m, x, 60, 1, &z, &err), &err);
    CHECK_OK(mg_model_backward(m, y, 60, &loss, &nc, &err), &err);
    CHECK_INT_EQ(nc, 40);
    CHECK(loss > 0.0);

    /* Backward must match the last forward's batch; labels must be in range. */
    CHECK_INT_EQ(mg_model_backward(m, y, 59, NULL, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    y[7] = 4;
    CHECK_INT_EQ(mg_model_backward(m, y, 60, NULL, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK_INT_EQ(mg_model_forward(m, x, 0, 1, &z, &err), MG_ERR_ARG);
    CHECK(mg_model_input_grad(m) == NULL);

    free(x), free(lp), free(l1), free(y);
    mg_model_destroy(&m);
}

int main(void)
{
    mg_rng rng;
    mg_rng_seed(&rng, 99, "test", "model");
    test_shapes();
    test_init();
    test_gradients(&rng);
    test_predict(&rng);
    MG_TEST_MAIN_END();
}
