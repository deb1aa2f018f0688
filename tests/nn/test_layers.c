/* test_layers.c: the first engine's layer kernels (linear, conv2d with groups
 * and depthwise, max pool, ReLU, Tanh, softmax cross-entropy): forward
 * against a double-precision reference and backward against central finite
 * differences of L = sum(out * R); backward must accumulate (twice gives
 * double). test_layers_ext.c covers the other kernels. */
#include "mg_test.h"
#include "miagrid/nn.h"

#include <stdint.h>

static void fill_uniform(float *x, size_t n, double lo, double hi, mg_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * mg_rng_uniform(rng));
}

/* A scalar function of the buffers in ctx, evaluated in double from float outputs. */
typedef double (*scalar_fn)(void *ctx);

/* Central differences of f w.r.t. each entry of x, dividing by the step that
 * float rounding actually took. */
static void numeric_grad(float *x, size_t n, float eps, scalar_fn f, void *ctx, double *g)
{
    for (size_t i = 0; i < n; i++) {
        float save = x[i];
        float xp = save + eps, xm = save - eps;
        x[i] = xp;
        double fp = f(ctx);
        x[i] = xm;
        double fm = f(ctx);
        x[i] = save;
        g[i] = (fp - fm) / ((double)xp - (double)xm);
    }
}

/* Every |analytic - numeric| <= atol + rtol*|numeric|; prints the worst entry. */
static void check_grad(const char *what, const float *a, const double *num, size_t n, double atol, double rtol)
{
    double worst = 0.0, md = 0.0;
    size_t wi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - num[i]);
        double ratio = d / (atol + rtol * fabs(num[i]));
        if (!(ratio <= worst)) {
            worst = ratio;
            wi = i;
        }
        if (d > md)
            md = d;
    }
    mg_test_checks_++;
    if (!(worst <= 1.0))
        MG_T_FAIL_("%s: gradient mismatch at [%zu]: analytic %.7g vs numeric %.7g (max |diff| %.3g)", what, wi,
                   (double)a[wi], num[wi], md);
    else
        printf("  %-28s n=%-5zu max |analytic - numeric| = %.3g\n", what, n, md);
}

/* a holds twice b (accumulation check). */
static void check_doubled(const char *what, const float *twice, const float *once, size_t n)
{
    double md = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)twice[i] - 2.0 * (double)once[i]);
        double scale = 1e-6 * (1.0 + fabs((double)once[i]));
        if (!(d <= scale) && !(d <= md))
            md = d;
    }
    mg_test_checks_++;
    if (md > 0.0)
        MG_T_FAIL_("%s: second backward did not double the gradient (max |diff| %.3g)", what, md);
}

static double dot_out(const float *out, const float *r, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)out[i] * (double)r[i];
    return s;
}

/* ---- linear --------------------------------------------------------------------- */

typedef struct {
    int N, I, O;
    float *inp, *w, *b, *out, *r;
} lin_ctx;

static double lin_loss(void *p)
{
    lin_ctx *c = p;
    mg_linear_forward(c->out, c->inp, c->w, c->b, c->N, c->I, c->O);
    return dot_out(c->out, c->r, (size_t)c->N * c->O);
}

static void test_linear(mg_rng *rng)
{
    lin_ctx c = {.N = 3, .I = 7, .O = 5};
    size_t ni = (size_t)c.N * c.I, nw = (size_t)c.O * c.I, no = (size_t)c.N * c.O;
    c.inp = malloc(ni * sizeof(float));
    c.w = malloc(nw * sizeof(float));
    c.b = malloc((size_t)c.O * sizeof(float));
    c.out = malloc(no * sizeof(float));
    c.r = malloc(no * sizeof(float));
    float *dinp = calloc(ni, sizeof(float)), *dw = calloc(nw, sizeof(float)), *db = calloc((size_t)c.O, sizeof(float));
    float *dinp1 = malloc(ni * sizeof(float)), *dw1 = malloc(nw * sizeof(float)), *db1 = malloc((size_t)c.O * sizeof(float));
    double *num = malloc(nw * sizeof(double) + ni * sizeof(double));
    float *ref = malloc(no * sizeof(float));
    fill_uniform(c.inp, ni, -1, 1, rng);
    fill_uniform(c.w, nw, -1, 1, rng);
    fill_uniform(c.b, (size_t)c.O, -1, 1, rng);
    fill_uniform(c.r, no, -1, 1, rng);

    mg_linear_forward(c.out, c.inp, c.w, c.b, c.N, c.I, c.O);
    for (int n = 0; n < c.N; n++)
        for (int o = 0; o < c.O; o++) {
            double s = c.b[o];
            for (int i = 0; i < c.I; i++)
                s += (double)c.inp[n * c.I + i] * c.w[o * c.I + i];
            ref[n * c.O + o] = (float)s;
        }
    CHECK_TENSOR_NEAR(c.out, ref, no, 1e-5);
    /* Without bias. */
    mg_linear_forward(c.out, c.inp, c.w, NULL, c.N, c.I, c.O);
    CHECK_NEAR(c.out[1 * c.O + 2], ref[1 * c.O + 2] - c.b[2], 1e-5);

    mg_linear_backward(dinp, dw, db, c.r, c.inp, c.w, c.N, c.I, c.O);
    numeric_grad(c.inp, ni, 1e-2f, lin_loss, &c, num);
    check_grad("linear dinp", dinp, num, ni, 1e-4, 1e-3);
    numeric_grad(c.w, nw, 1e-2f, lin_loss, &c, num);
    check_grad("linear dw", dw, num, nw, 1e-4, 1e-3);
    numeric_grad(c.b, (size_t)c.O, 1e-2f, lin_loss, &c, num);
    check_grad("linear db", db, num, (size_t)c.O, 1e-4, 1e-3);

    memcpy(dinp1, dinp, ni * sizeof(float));
    memcpy(dw1, dw, nw * sizeof(float));
    memcpy(db1, db, (size_t)c.O * sizeof(float));
    mg_linear_backward(dinp, dw, db, c.r, c.inp, c.w, c.N, c.I, c.O);
    check_doubled("linear dinp", dinp, dinp1, ni);
    check_doubled("linear dw", dw, dw1, nw);
    check_doubled("linear db", db, db1, (size_t)c.O);
    /* NULL dinp and db are allowed. */
    mg_linear_backward(NULL, dw, NULL, c.r, c.inp, c.w, c.N, c.I, c.O);
    CHECK_NEAR(dw[3], 3.0 * dw1[3], 1e-5);

    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.r), free(dinp), free(dw), free(db);
    free(dinp1), free(dw1), free(db1), free(num), free(ref);
}

/* ---- conv2d ----------------------------------------------------------------------- */

typedef struct {
    mg_conv2d_shape s;
    float *inp, *w, *b, *out, *r, *scratch;
} conv_ctx;

static double conv_loss(void *p)
{
    conv_ctx *c = p;
    mg_conv2d_forward(c->out, c->inp, c->w, c->b, &c->s, c->scratch);
    return dot_out(c->out, c->r, (size_t)c->s.N * c->s.OC * c->s.OH * c->s.OW);
}

static void conv_reference(float *out, const conv_ctx *c)
{
    const mg_conv2d_shape *s = &c->s;
    for (int n = 0; n < s->N; n++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    double acc = c->b[oc];
                    const int G = s->groups > 1 ? s->groups : 1, Cg = s->C / G, g = oc / (s->OC / G);
                    for (int cg = 0; cg < Cg; cg++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
                                    continue;
                                acc += (double)c->inp[((n * s->C + g * Cg + cg) * s->H + ih) * s->W + iw] *
                                       c->w[((oc * Cg + cg) * s->KH + kh) * s->KW + kw];
                            }
                    out[((n * s->OC + oc) * s->OH + oh) * s->OW + ow] = (float)acc;
                }
}

static void test_conv_case(mg_rng *rng, int N, int C, int H, int W, int OC, int KH, int KW, int stride, int pad,
                           int groups)
{
    conv_ctx c = {.s = {.N = N, .C = C, .H = H, .W = W, .OC = OC, .KH = KH, .KW = KW, .stride = stride, .pad = pad,
                        .groups = groups}};
    char what[96];
    CHECK_INT_EQ(mg_conv2d_shape_init(&c.s), 0);
    CHECK_INT_EQ(c.s.OH, (H + 2 * pad - KH) / stride + 1);
    CHECK_INT_EQ(c.s.OW, (W + 2 * pad - KW) / stride + 1);
    size_t ni = (size_t)N * C * H * W, nw = (size_t)OC * (C / (groups > 1 ? groups : 1)) * KH * KW,
           no = (size_t)N * OC * c.s.OH * c.s.OW;
    c.inp = malloc(ni * sizeof(float));
    c.w = malloc(nw * sizeof(float));
    c.b = malloc((size_t)OC * sizeof(float));
    c.out = malloc(no * sizeof(float));
    c.r = malloc(no * sizeof(float));
    c.scratch = malloc((mg_conv2d_scratch(&c.s) + 1) * sizeof(float));
    float *ref = malloc(no * sizeof(float));
    float *dinp = calloc(ni, sizeof(float)), *dw = calloc(nw, sizeof(float)), *db = calloc((size_t)OC, sizeof(float));
    float *dinp1 = malloc(ni * sizeof(float)), *dw1 = malloc(nw * sizeof(float));
    double *num = malloc((ni > nw ? ni : nw) * sizeof(double));
    fill_uniform(c.inp, ni, -1, 1, rng);
    fill_uniform(c.w, nw, -1, 1, rng);
    fill_uniform(c.b, (size_t)OC, -1, 1, rng);
    fill_uniform(c.r, no, -1, 1, rng);

    snprintf(what, sizeof what, "conv k%dx%d s%d p%d g%d", KH, KW, stride, pad, groups);
    printf(" %s on %dx%dx%dx%d -> %d x %dx%d\n", what, N, C, H, W, OC, c.s.OH, c.s.OW);
    conv_loss(&c);
    conv_reference(ref, &c);
    CHECK_TENSOR_NEAR(c.out, ref, no, 1e-5);

    mg_conv2d_backward(dinp, dw, db, c.r, c.inp, c.w, &c.s, c.scratch);
    char name[128];
    numeric_grad(c.inp, ni, 1e-2f, conv_loss, &c, num);
    snprintf(name, sizeof name, "%s dinp", what);
    check_grad(name, dinp, num, ni, 1e-4, 1e-3);
    numeric_grad(c.w, nw, 1e-2f, conv_loss, &c, num);
    snprintf(name, sizeof name, "%s dw", what);
    check_grad(name, dw, num, nw, 1e-4, 1e-3);
    numeric_grad(c.b, (size_t)OC, 1e-2f, conv_loss, &c, num);
    snprintf(name, sizeof name, "%s db", what);
    check_grad(name, db, num, (size_t)OC, 1e-4, 1e-3);

    memcpy(dinp1, dinp, ni * sizeof(float));
    memcpy(dw1, dw, nw * sizeof(float));
    mg_conv2d_backward(dinp, dw, NULL, c.r, c.inp, c.w, &c.s, c.scratch);
    snprintf(name, sizeof name, "%s dinp", what);
    check_doubled(name, dinp, dinp1, ni);
    snprintf(name, sizeof name, "%s dw", what);
    check_doubled(name, dw, dw1, nw);

    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.r), free(c.scratch), free(ref);
    free(dinp), free(dw), free(db), free(dinp1), free(dw1), free(num);
}

static void test_conv(mg_rng *rng)
{
    test_conv_case(rng, 2, 3, 7, 6, 4, 3, 3, 1, 1, 1);
    test_conv_case(rng, 2, 2, 8, 7, 3, 3, 3, 2, 1, 1);
    test_conv_case(rng, 2, 2, 9, 8, 3, 3, 2, 2, 0, 1);
    test_conv_case(rng, 1, 2, 7, 7, 2, 5, 5, 3, 2, 1);
    test_conv_case(rng, 2, 1, 12, 12, 6, 5, 5, 1, 2, 1);
    test_conv_case(rng, 2, 3, 5, 4, 4, 1, 1, 1, 0, 1);
    test_conv_case(rng, 1, 2, 4, 4, 2, 5, 5, 1, 2, 1);
    /* A 1x1 conv at stride 2 (the residual shortcuts) and 3x3 without padding. */
    test_conv_case(rng, 2, 3, 6, 5, 4, 1, 1, 2, 0, 1);
    test_conv_case(rng, 2, 2, 6, 6, 3, 3, 3, 1, 0, 1);
    /* Groups: two groups, depthwise, depthwise with a channel multiplier, and at stride 2. */
    test_conv_case(rng, 2, 4, 6, 5, 6, 3, 3, 1, 1, 2);
    test_conv_case(rng, 2, 3, 6, 7, 3, 3, 3, 1, 1, 3);
    test_conv_case(rng, 2, 2, 5, 5, 4, 3, 3, 1, 1, 2);
    test_conv_case(rng, 2, 4, 7, 6, 4, 3, 3, 2, 1, 4);
    test_conv_case(rng, 1, 4, 5, 5, 8, 1, 1, 1, 0, 2);
    /* Wide enough rows that the columns run in more than one chunk. */
    test_conv_case(rng, 1, 2, 20, 30, 3, 3, 3, 1, 1, 1);
    test_conv_case(rng, 1, 2, 21, 30, 3, 3, 3, 2, 1, 1);

    mg_conv2d_shape bad = {.N = 1, .C = 1, .H = 3, .W = 3, .OC = 1, .KH = 5, .KW = 5, .stride = 1, .pad = 0};
    CHECK_INT_EQ(mg_conv2d_shape_init(&bad), -1);
    bad.pad = 1;
    CHECK_INT_EQ(mg_conv2d_shape_init(&bad), 0);
    CHECK_INT_EQ(bad.OH, 1);
    bad.stride = 0;
    CHECK_INT_EQ(mg_conv2d_shape_init(&bad), -1);
    /* Channels must divide by the groups. */
    mg_conv2d_shape grp = {.N = 1, .C = 4, .H = 3, .W = 3, .OC = 6, .KH = 1, .KW = 1, .stride = 1, .groups = 3};
    CHECK_INT_EQ(mg_conv2d_shape_init(&grp), -1);
    grp.C = 6;
    CHECK_INT_EQ(mg_conv2d_shape_init(&grp), 0);
}

/* ---- max pool --------------------------------------------------------------------- */

typedef struct {
    int N, C, H, W, k;
    float *inp, *out, *r;
    int32_t *argmax;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    mg_maxpool_forward(c->out, c->argmax, c->inp, c->N, c->C, c->H, c->W, c->k);
    return dot_out(c->out, c->r, (size_t)c->N * c->C * (c->H / c->k) * (c->W / c->k));
}

static void test_maxpool(mg_rng *rng, int k)
{
    pool_ctx c = {.N = 2, .C = 3, .H = 7, .W = 6, .k = k};
    const int OH = c.H / c.k, OW = c.W / c.k;
    size_t ni = (size_t)c.N * c.C * c.H * c.W, no = (size_t)c.N * c.C * OH * OW;
    c.inp = malloc(ni * sizeof(float));
    c.out = malloc(no * sizeof(float));
    c.r = malloc(no * sizeof(float));
    c.argmax = malloc(no * sizeof(int32_t));
    float *ref = malloc(no * sizeof(float)), *dinp = calloc(ni, sizeof(float)), *dinp1 = malloc(ni * sizeof(float));
    double *num = malloc(ni * sizeof(double));
    /* Distinct values 0.1 apart, shuffled: no ties within the finite-difference step. */
    uint32_t *perm = malloc(ni * sizeof(uint32_t));
    for (uint32_t i = 0; i < ni; i++)
        perm[i] = i;
    mg_rng_shuffle_u32(rng, perm, ni);
    for (size_t i = 0; i < ni; i++)
        c.inp[i] = 0.1f * (float)perm[i] - 5.0f;
    fill_uniform(c.r, no, -1, 1, rng);

    pool_loss(&c);
    int arg_ok = 1;
    for (int nc = 0; nc < c.N * c.C; nc++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float best = -1e30f;
                int bi = -1;
                for (int dh = 0; dh < c.k; dh++)
                    for (int dw = 0; dw < c.k; dw++) {
                        int idx = (nc * c.H + oh * c.k + dh) * c.W + ow * c.k + dw;
                        if (c.inp[idx] > best) {
                            best = c.inp[idx];
                            bi = idx;
                        }
                    }
                size_t o = ((size_t)nc * OH + oh) * OW + ow;
                ref[o] = best;
                arg_ok &= c.argmax[o] == bi;
            }
    CHECK_TENSOR_NEAR(c.out, ref, no, 0.0);
    CHECK(arg_ok);

    mg_maxpool_backward(dinp, c.r, c.argmax, (int)no);
    numeric_grad(c.inp, ni, 1e-2f, pool_loss, &c, num);
    char name[32];
    snprintf(name, sizeof name, "maxpool k=%d dinp", k);
    check_grad(name, dinp, num, ni, 1e-4, 1e-3);
    pool_loss(&c);
    memcpy(dinp1, dinp, ni * sizeof(float));
    mg_maxpool_backward(dinp, c.r, c.argmax, (int)no);
    check_doubled(name, dinp, dinp1, ni);

    /* Ties keep the first maximum in row-major order; a NaN in the window
     * propagates whatever its position. One k x k window: */
    float win[9], o1;
    int32_t a1;
    for (int i = 0; i < k * k; i++)
        win[i] = 1.0f;
    win[1] = win[k] = win[k * k - 1] = 3.0f;
    mg_maxpool_forward(&o1, &a1, win, 1, 1, k, k, k);
    CHECK_INT_EQ(a1, 1);
    CHECK(o1 == 3.0f);
    for (int pos = 0; pos < k * k; pos++) {
        float save = win[pos];
        win[pos] = NAN;
        mg_maxpool_forward(&o1, &a1, win, 1, 1, k, k, k);
        CHECK(isnan(o1));
        CHECK_INT_EQ(a1, pos);
        win[pos] = save;
    }

    free(c.inp), free(c.out), free(c.r), free(c.argmax), free(ref), free(dinp), free(dinp1), free(num), free(perm);
}

/* ---- activations -------------------------------------------------------------------- */

typedef struct {
    int tanh_act;
    size_t n;
    float *inp, *out, *r;
} act_ctx;

static double act_loss(void *p)
{
    act_ctx *c = p;
    if (c->tanh_act)
        mg_tanh_forward(c->out, c->inp, c->n);
    else
        mg_relu_forward(c->out, c->inp, c->n);
    return dot_out(c->out, c->r, c->n);
}

static void test_activation(mg_rng *rng, int tanh_act)
{
    act_ctx c = {.tanh_act = tanh_act, .n = 64};
    c.inp = malloc(c.n * sizeof(float));
    c.out = malloc(c.n * sizeof(float));
    c.r = malloc(c.n * sizeof(float));
    float *dinp = calloc(c.n, sizeof(float)), *dinp1 = malloc(c.n * sizeof(float));
    double *num = malloc(c.n * sizeof(double));
    fill_uniform(c.inp, c.n, -2, 2, rng);
    /* Keep ReLU inputs at least 0.1 away from the kink. */
    for (size_t i = 0; i < c.n; i++)
        if (fabsf(c.inp[i]) < 0.1f)
            c.inp[i] = c.inp[i] < 0 ? -0.1f - c.inp[i] : 0.1f + c.inp[i];
    fill_uniform(c.r, c.n, -1, 1, rng);
    act_loss(&c);
    int fwd_ok = 1;
    for (size_t i = 0; i < c.n; i++) {
        double want = tanh_act ? tanh((double)c.inp[i]) : (c.inp[i] > 0 ? c.inp[i] : 0.0);
        fwd_ok &= fabs(c.out[i] - want) < 1e-6;
    }
    CHECK(fwd_ok);
    /* NaN reaches the loss through either activation. */
    float nan_in = NAN, nan_out = 0.0f;
    if (tanh_act)
        mg_tanh_forward(&nan_out, &nan_in, 1);
    else
        mg_relu_forward(&nan_out, &nan_in, 1);
    CHECK(isnan(nan_out));
    if (tanh_act)
        mg_tanh_backward(dinp, c.r, c.out, c.n);
    else
        mg_relu_backward(dinp, c.r, c.out, c.n);
    numeric_grad(c.inp, c.n, tanh_act ? 1e-3f : 1e-2f, act_loss, &c, num);
    check_grad(tanh_act ? "tanh dinp" : "relu dinp", dinp, num, c.n, 1e-4, 1e-3);
    act_loss(&c);
    memcpy(dinp1, dinp, c.n * sizeof(float));
    if (tanh_act)
        mg_tanh_backward(dinp, c.r, c.out, c.n);
    else
        mg_relu_backward(dinp, c.r, c.out, c.n);
    check_doubled(tanh_act ? "tanh dinp" : "relu dinp", dinp, dinp1, c.n);
    free(c.inp), free(c.out), free(c.r), free(dinp), free(dinp1), free(num);
}

/* ---- softmax cross-entropy ------------------------------------------------------------ */

typedef struct {
    int N, K;
    float *logits, *probs;
    int32_t *y;
} xent_ctx;

static double xent_loss(void *p)
{
    xent_ctx *c = p;
    return mg_softmax_xent_forward(c->probs, c->logits, c->y, c->N, c->K);
}

static void test_softmax_xent(mg_rng *rng)
{
    xent_ctx c = {.N = 4, .K = 6};
    size_t nl = (size_t)c.N * c.K;
    c.logits = malloc(nl * sizeof(float));
    c.probs = malloc(nl * sizeof(float));
    c.y = malloc((size_t)c.N * sizeof(int32_t));
    float *d = calloc(nl, sizeof(float)), *d1 = malloc(nl * sizeof(float));
    double *num = malloc(nl * sizeof(double));
    fill_uniform(c.logits, nl, -3, 3, rng);
    for (int n = 0; n < c.N; n++)
        c.y[n] = (int32_t)mg_rng_below(rng, (uint64_t)c.K);

    double loss = xent_loss(&c);
    double want = 0.0;
    for (int n = 0; n < c.N; n++) {
        double s = 0.0, psum = 0.0;
        for (int k = 0; k < c.K; k++)
            s += exp((double)c.logits[n * c.K + k]);
        for (int k = 0; k < c.K; k++)
            psum += c.probs[n * c.K + k];
        CHECK_NEAR(psum, 1.0, 1e-6);
        CHECK_NEAR(c.probs[n * c.K + 2], exp((double)c.logits[n * c.K + 2]) / s, 1e-6);
        want += log(s) - c.logits[n * c.K + c.y[n]];
    }
    CHECK_NEAR(loss, want / c.N, 1e-6);

    mg_softmax_xent_backward(d, c.probs, c.y, c.N, c.K);
    numeric_grad(c.logits, nl, 1e-2f, xent_loss, &c, num);
    check_grad("softmax-xent dlogits", d, num, nl, 2e-5, 1e-3);
    xent_loss(&c);
    memcpy(d1, d, nl * sizeof(float));
    mg_softmax_xent_backward(d, c.probs, c.y, c.N, c.K);
    check_doubled("softmax-xent dlogits", d, d1, nl);

    /* Huge logits neither overflow nor underflow: log-sum-exp. */
    float big[3] = {1000.0f, 0.0f, -1000.0f}, pb[3];
    int32_t yb = 1;
    double lb = mg_softmax_xent_forward(pb, big, &yb, 1, 3);
    CHECK_NEAR(lb, 1000.0, 1e-3);
    CHECK_NEAR(pb[0], 1.0, 1e-7);
    CHECK(pb[2] == 0.0f);
    yb = 0;
    lb = mg_softmax_xent_forward(pb, big, &yb, 1, 3);
    CHECK(lb >= 0.0 && lb < 1e-6);
    big[1] = NAN;
    CHECK(isnan(mg_softmax_xent_forward(pb, big, &yb, 1, 3)));

    free(c.logits), free(c.probs), free(c.y), free(d), free(d1), free(num);
}

int main(void)
{
    mg_rng rng;
    mg_rng_seed(&rng, 1234, "test", "layers");
    test_linear(&rng);
    test_conv(&rng);
    test_maxpool(&rng, 2);
    test_maxpool(&rng, 3);
    test_activation(&rng, 0);
    test_activation(&rng, 1);
    test_softmax_xent(&rng);
    MG_TEST_MAIN_END();
}
