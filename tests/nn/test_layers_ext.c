/* test_layers_ext.c: the kernels beyond the first engine (general max and
 * average pooling, global average pool, batch norm 1-d and 2-d in train and
 * eval mode with torch's running statistics, layer norm, ReLU6, GELU,
 * dropout, residual add, concatenation, multi-head self-attention, and the
 * label-smoothed and soft-target cross-entropies). Each forward is compared
 * with a double-precision reference and each backward with central finite
 * differences of L = sum(out * R), away from kinks and ties; a second
 * backward must double the gradients (accumulation). */
#include "mg_test.h"
#include "miagrid/nn.h"

#include <stdint.h>

static void fill_uniform(float *x, size_t n, double lo, double hi, mg_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * mg_rng_uniform(rng));
}

static float *fbuf(size_t n)
{
    return calloc(n ? n : 1, sizeof(float));
}

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
        printf("  %-30s n=%-5zu max |analytic - numeric| = %.3g\n", what, n, md);
}

/* twice holds 2 * once (accumulation). */
static void check_doubled(const char *what, const float *twice, const float *once, size_t n)
{
    double md = 0.0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)twice[i] - 2.0 * (double)once[i]);
        if (d > 1e-5 * (1.0 + fabs((double)once[i])) && d > md)
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

/* Distinct values `gap` apart in random order: no ties within a finite-difference step. */
static void fill_distinct(float *x, size_t n, float gap, mg_rng *rng)
{
    uint32_t *perm = malloc(n * sizeof(uint32_t));
    for (uint32_t i = 0; i < n; i++)
        perm[i] = i;
    mg_rng_shuffle_u32(rng, perm, n);
    for (size_t i = 0; i < n; i++)
        x[i] = gap * ((float)perm[i] - 0.5f * (float)n);
    free(perm);
}

/* ---- pooling ------------------------------------------------------------------------ */

typedef struct {
    mg_pool2d_shape s;
    int avg;
    float *inp, *out, *r;
    int32_t *argmax;
} pool_ctx;

static double pool_loss(void *p)
{
    pool_ctx *c = p;
    if (c->avg)
        mg_avgpool2d_forward(c->out, c->inp, &c->s);
    else
        mg_maxpool2d_forward(c->out, c->argmax, c->inp, &c->s);
    return dot_out(c->out, c->r, (size_t)c->s.N * c->s.C * c->s.OH * c->s.OW);
}

static void test_pool_case(mg_rng *rng, int avg, int H, int W, int k, int stride, int pad)
{
    pool_ctx c = {.s = {.N = 2, .C = 3, .H = H, .W = W, .k = k, .stride = stride, .pad = pad}, .avg = avg};
    CHECK_INT_EQ(mg_pool2d_shape_init(&c.s), 0);
    CHECK_INT_EQ(c.s.OH, (H + 2 * pad - k) / stride + 1);
    const size_t ni = (size_t)2 * 3 * H * W, no = (size_t)2 * 3 * c.s.OH * c.s.OW;
    c.inp = fbuf(ni), c.out = fbuf(no), c.r = fbuf(no);
    c.argmax = malloc(no * sizeof(int32_t));
    float *ref = fbuf(no), *din = fbuf(ni), *din1 = fbuf(ni);
    double *num = malloc(ni * sizeof(double));
    fill_distinct(c.inp, ni, 0.05f, rng);
    fill_uniform(c.r, no, -1, 1, rng);
    pool_loss(&c);
    int arg_ok = 1;
    for (int nc = 0; nc < 6; nc++)
        for (int oh = 0; oh < c.s.OH; oh++)
            for (int ow = 0; ow < c.s.OW; ow++) {
                double acc = 0.0, best = -1e30;
                int bi = -1;
                for (int kh = 0; kh < k; kh++)
                    for (int kw = 0; kw < k; kw++) {
                        int ih = oh * stride - pad + kh, iw = ow * stride - pad + kw;
                        if (ih < 0 || ih >= H || iw < 0 || iw >= W)
                            continue;
                        int idx = (nc * H + ih) * W + iw;
                        acc += c.inp[idx];
                        if (c.inp[idx] > best) {
                            best = c.inp[idx];
                            bi = idx;
                        }
                    }
                size_t o = ((size_t)nc * c.s.OH + oh) * c.s.OW + ow;
                ref[o] = (float)(avg ? acc / (k * k) : best);
                if (!avg)
                    arg_ok &= c.argmax[o] == bi;
            }
    CHECK_TENSOR_NEAR(c.out, ref, no, 1e-6);
    CHECK(arg_ok);
    if (avg)
        mg_avgpool2d_backward(din, c.r, &c.s);
    else
        mg_maxpool2d_backward(din, c.r, c.argmax, &c.s);
    char name[64];
    snprintf(name, sizeof name, "%s k%d s%d p%d dinp", avg ? "avgpool" : "maxpool", k, stride, pad);
    numeric_grad(c.inp, ni, 1e-2f, pool_loss, &c, num);
    check_grad(name, din, num, ni, 1e-4, 1e-3);
    pool_loss(&c);
    memcpy(din1, din, ni * sizeof(float));
    if (avg)
        mg_avgpool2d_backward(din, c.r, &c.s);
    else
        mg_maxpool2d_backward(din, c.r, c.argmax, &c.s);
    check_doubled(name, din, din1, ni);
    free(c.inp), free(c.out), free(c.r), free(c.argmax), free(ref), free(din), free(din1), free(num);
}

static void test_pooling(mg_rng *rng)
{
    test_pool_case(rng, 0, 7, 6, 3, 2, 1);   /* the ResNet stem pool */
    test_pool_case(rng, 0, 8, 8, 2, 2, 0);
    test_pool_case(rng, 0, 7, 7, 3, 1, 1);
    test_pool_case(rng, 1, 8, 8, 2, 2, 0);   /* DenseNet transitions */
    test_pool_case(rng, 1, 7, 6, 3, 2, 1);
    test_pool_case(rng, 1, 4, 4, 4, 4, 0);   /* avg_pool2d(4) at the end of the CIFAR nets */

    /* Padding never wins, even over negative numbers; a NaN wins. */
    mg_pool2d_shape s = {.N = 1, .C = 1, .H = 2, .W = 2, .k = 3, .stride = 2, .pad = 1};
    CHECK_INT_EQ(mg_pool2d_shape_init(&s), 0);
    float x[4] = {-4.0f, -3.0f, -2.0f, -5.0f}, o[1];
    int32_t a[1];
    mg_maxpool2d_forward(o, a, x, &s);
    CHECK(o[0] == -2.0f);
    CHECK_INT_EQ(a[0], 2);
    x[3] = NAN;
    mg_maxpool2d_forward(o, a, x, &s);
    CHECK(isnan(o[0]));
    /* torch refuses padding beyond half the kernel. */
    mg_pool2d_shape bad = {.N = 1, .C = 1, .H = 4, .W = 4, .k = 2, .stride = 2, .pad = 2};
    CHECK_INT_EQ(mg_pool2d_shape_init(&bad), -1);

    /* Global average pool. */
    const int N = 2, C = 3, S = 5;
    float in[30], out[6], r[6], din[30] = {0};
    fill_uniform(in, 30, -1, 1, rng);
    fill_uniform(r, 6, -1, 1, rng);
    mg_global_avgpool_forward(out, in, N, C, S);
    double mean = 0.0;
    for (int i = 0; i < S; i++)
        mean += in[(1 * C + 2) * S + i];
    CHECK_NEAR(out[1 * C + 2], mean / S, 1e-6);
    mg_global_avgpool_backward(din, r, N, C, S);
    CHECK_NEAR(din[(1 * C + 2) * S + 3], r[1 * C + 2] / S, 1e-7);
    mg_global_avgpool_backward(din, r, N, C, S);
    CHECK_NEAR(din[0], 2.0 * r[0] / S, 1e-7);
}

/* ---- batch norm ------------------------------------------------------------------------ */

typedef struct {
    int N, C, S, train;
    float *inp, *g, *b, *out, *r, *mean, *rstd, *rm, *rv;
} bn_ctx;

static double bn_loss(void *p)
{
    bn_ctx *c = p;
    mg_batchnorm_forward(c->out, c->mean, c->rstd, c->inp, c->g, c->b, NULL, NULL, c->N, c->C, c->S, c->train,
                         0.1f, 1e-5f);
    return dot_out(c->out, c->r, (size_t)c->N * c->C * c->S);
}

static void test_batchnorm_case(mg_rng *rng, int N, int C, int S, int train)
{
    bn_ctx c = {.N = N, .C = C, .S = S, .train = train};
    const size_t n = (size_t)N * C * S;
    c.inp = fbuf(n), c.out = fbuf(n), c.r = fbuf(n);
    c.g = fbuf((size_t)C), c.b = fbuf((size_t)C), c.mean = fbuf((size_t)C), c.rstd = fbuf((size_t)C);
    c.rm = fbuf((size_t)C), c.rv = fbuf((size_t)C);
    float *din = fbuf(n), *dg = fbuf((size_t)C), *db = fbuf((size_t)C), *din1 = fbuf(n), *dg1 = fbuf((size_t)C);
    double *num = malloc(n * sizeof(double));
    /* Offset channels: the statistics must not lose the spread to the mean. */
    for (size_t i = 0; i < n; i++)
        c.inp[i] = (float)(3.0 * (double)((i / (size_t)S) % (size_t)C) + 2.0 * mg_rng_uniform(rng) - 1.0);
    fill_uniform(c.g, (size_t)C, 0.5, 1.5, rng);
    fill_uniform(c.b, (size_t)C, -0.5, 0.5, rng);
    fill_uniform(c.r, n, -1, 1, rng);
    for (int ch = 0; ch < C; ch++) {
        c.rm[ch] = (float)(0.5 * ch);
        c.rv[ch] = (float)(0.5 + ch);
    }
    float *rm0 = fbuf((size_t)C), *rv0 = fbuf((size_t)C);
    memcpy(rm0, c.rm, (size_t)C * sizeof(float));
    memcpy(rv0, c.rv, (size_t)C * sizeof(float));

    mg_batchnorm_forward(c.out, c.mean, c.rstd, c.inp, c.g, c.b, c.rm, c.rv, N, C, S, train, 0.1f, 1e-5f);
    double worst = 0.0;
    for (int ch = 0; ch < C; ch++) {
        double m = 0.0, v = 0.0, M = (double)N * S;
        for (int k = 0; k < N; k++)
            for (int s = 0; s < S; s++)
                m += c.inp[((size_t)k * C + ch) * S + s];
        m /= M;
        for (int k = 0; k < N; k++)
            for (int s = 0; s < S; s++) {
                double d = c.inp[((size_t)k * C + ch) * S + s] - m;
                v += d * d;
            }
        double var = v / M, unb = v / (M - 1.0);
        double um = train ? m : rm0[ch], uv = train ? var : rv0[ch];
        for (int k = 0; k < N; k++)
            for (int s = 0; s < S; s++) {
                size_t i = ((size_t)k * C + ch) * S + s;
                double want = (c.inp[i] - um) / sqrt(uv + 1e-5) * c.g[ch] + c.b[ch];
                worst = fmax(worst, fabs(c.out[i] - want));
            }
        if (train) {
            /* torch: running = (1 - momentum) running + momentum * batch, with the unbiased variance. */
            CHECK_NEAR(c.rm[ch], 0.9 * rm0[ch] + 0.1 * m, 1e-6);
            CHECK_NEAR(c.rv[ch], 0.9 * rv0[ch] + 0.1 * unb, 1e-5);
        } else {
            CHECK(c.rm[ch] == rm0[ch] && c.rv[ch] == rv0[ch]);
        }
    }
    printf("  batchnorm %s N=%d C=%d S=%d forward max |diff| %.3g\n", train ? "train" : "eval", N, C, S, worst);
    CHECK(worst < 2e-5);

    /* Eval mode normalises with the running statistics, which the backward holds constant. */
    mg_batchnorm_forward(c.out, c.mean, c.rstd, c.inp, c.g, c.b, NULL, NULL, N, C, S, 1, 0.1f, 1e-5f);
    if (!train)
        mg_batchnorm_forward(c.out, c.mean, c.rstd, c.inp, c.g, c.b, rm0, rv0, N, C, S, 0, 0.1f, 1e-5f);
    mg_batchnorm_backward(din, dg, db, c.r, c.inp, c.mean, c.rstd, c.g, N, C, S, train);
    char name[64];
    if (train) {
        numeric_grad(c.inp, n, 1e-2f, bn_loss, &c, num);
    } else {
        for (size_t i = 0; i < n; i++) {
            float save = c.inp[i];
            double f[2];
            for (int sgn = 0; sgn < 2; sgn++) {
                c.inp[i] = save + (sgn ? -1e-2f : 1e-2f);
                mg_batchnorm_forward(c.out, c.mean, c.rstd, c.inp, c.g, c.b, rm0, rv0, N, C, S, 0, 0.1f, 1e-5f);
                f[sgn] = dot_out(c.out, c.r, n);
            }
            c.inp[i] = save;
            num[i] = (f[0] - f[1]) / 2e-2;
        }
    }
    snprintf(name, sizeof name, "batchnorm %s S=%d dinp", train ? "train" : "eval", S);
    check_grad(name, din, num, n, 2e-4, 2e-3);
    if (train) {
        numeric_grad(c.g, (size_t)C, 1e-2f, bn_loss, &c, num);
        snprintf(name, sizeof name, "batchnorm train S=%d dgamma", S);
        check_grad(name, dg, num, (size_t)C, 2e-4, 2e-3);
        numeric_grad(c.b, (size_t)C, 1e-2f, bn_loss, &c, num);
        snprintf(name, sizeof name, "batchnorm train S=%d dbeta", S);
        check_grad(name, db, num, (size_t)C, 2e-4, 2e-3);
    }
    memcpy(din1, din, n * sizeof(float));
    memcpy(dg1, dg, (size_t)C * sizeof(float));
    mg_batchnorm_forward(c.out, c.mean, c.rstd, c.inp, c.g, c.b, train ? NULL : rm0, train ? NULL : rv0, N, C, S,
                         train, 0.1f, 1e-5f);
    mg_batchnorm_backward(din, dg, db, c.r, c.inp, c.mean, c.rstd, c.g, N, C, S, train);
    check_doubled(name, din, din1, n);
    check_doubled(name, dg, dg1, (size_t)C);
    free(c.inp), free(c.out), free(c.r), free(c.g), free(c.b), free(c.mean), free(c.rstd), free(c.rm), free(c.rv);
    free(din), free(dg), free(db), free(din1), free(dg1), free(num), free(rm0), free(rv0);
}

/* Training statistics of channels whose mean is far from zero against their
 * spread (1000 +- 0.01: with the squares summed unshifted the variance would
 * cancel away in float) and of a wide one, over rows that span several
 * summation blocks, against two passes in double over the same floats. */
static void test_batchnorm_offset(mg_rng *rng)
{
    enum { BN = 12, BC = 3, BS = 1000 };
    const double centre[BC] = {1000.0, -300.0, 0.5}, spread[BC] = {0.01, 3.0, 1e-3};
    float *x = malloc((size_t)BN * BC * BS * sizeof(float)), *out = malloc((size_t)BN * BC * BS * sizeof(float));
    float g[BC] = {1.0f, 1.0f, 1.0f}, b[BC] = {0.0f, 0.0f, 0.0f}, mean[BC], rstd[BC];
    for (int n = 0; n < BN; n++)
        for (int c = 0; c < BC; c++)
            for (int i = 0; i < BS; i++)
                x[((size_t)n * BC + c) * BS + i] = (float)(centre[c] + spread[c] * (2.0 * mg_rng_uniform(rng) - 1.0));
    mg_batchnorm_forward(out, mean, rstd, x, g, b, NULL, NULL, BN, BC, BS, 1, 0.1f, 1e-5f);
    for (int c = 0; c < BC; c++) {
        double m = 0.0, v = 0.0;
        for (int n = 0; n < BN; n++)
            for (int i = 0; i < BS; i++)
                m += x[((size_t)n * BC + c) * BS + i];
        m /= (double)BN * BS;
        for (int n = 0; n < BN; n++)
            for (int i = 0; i < BS; i++) {
                const double d = x[((size_t)n * BC + c) * BS + i] - m;
                v += d * d;
            }
        v /= (double)BN * BS;
        const double r = 1.0 / sqrt(v + 1e-5);
        CHECK_NEAR(mean[c], m, 1e-7 * fabs(m) + 1e-9);
        CHECK_NEAR(rstd[c], r, 1e-5 * r);
        printf("  batchnorm train, mean %g spread %g: mean off by %.3g, rstd by %.3g (relative)\n", centre[c],
               spread[c], fabs(mean[c] - m), fabs(rstd[c] - r) / r);
    }
    free(x);
    free(out);
}

static void test_batchnorm(mg_rng *rng)
{
    test_batchnorm_case(rng, 4, 3, 5, 1);   /* BatchNorm2d over 5 positions */
    test_batchnorm_case(rng, 6, 4, 1, 1);   /* BatchNorm1d */
    test_batchnorm_case(rng, 3, 2, 6, 0);
    test_batchnorm_case(rng, 5, 3, 1, 0);

    /* Two training steps of the running statistics by hand: N=2, C=1, S=2. */
    float x[4] = {1.0f, 2.0f, 3.0f, 6.0f}, out[4], mean[1], rstd[1], g[1] = {1.0f}, b[1] = {0.0f};
    float rm[1] = {0.0f}, rv[1] = {1.0f};
    mg_batchnorm_forward(out, mean, rstd, x, g, b, rm, rv, 2, 1, 2, 1, 0.1f, 1e-5f);
    /* mean 3, biased var (4+1+0+9)/4 = 3.5, unbiased 14/3 */
    CHECK_NEAR(mean[0], 3.0, 1e-7);
    CHECK_NEAR(rstd[0], 1.0 / sqrt(3.5 + 1e-5), 1e-6);
    CHECK_NEAR(rm[0], 0.3, 1e-7);
    CHECK_NEAR(rv[0], 0.9 + 0.1 * 14.0 / 3.0, 1e-6);
    CHECK_NEAR(out[3], 3.0 / sqrt(3.5 + 1e-5), 1e-6);
    mg_batchnorm_forward(out, mean, rstd, x, g, b, rm, rv, 2, 1, 2, 1, 0.1f, 1e-5f);
    CHECK_NEAR(rm[0], 0.9 * 0.3 + 0.3, 1e-6);
    CHECK_NEAR(rv[0], 0.9 * (0.9 + 0.1 * 14.0 / 3.0) + 0.1 * 14.0 / 3.0, 1e-6);
    /* Eval: the running statistics, untouched. */
    float rm_e = rm[0], rv_e = rv[0];
    mg_batchnorm_forward(out, mean, rstd, x, g, b, rm, rv, 2, 1, 2, 0, 0.1f, 1e-5f);
    CHECK(rm[0] == rm_e && rv[0] == rv_e);
    CHECK_NEAR(out[0], (1.0 - rm_e) / sqrt(rv_e + 1e-5), 1e-6);

    test_batchnorm_offset(rng);
}

/* ---- layer norm ---------------------------------------------------------------------------- */

typedef struct {
    int R, E;
    float *inp, *g, *b, *out, *r, *mean, *rstd;
} ln_ctx;

static double ln_loss(void *p)
{
    ln_ctx *c = p;
    mg_layernorm_forward(c->out, c->mean, c->rstd, c->inp, c->g, c->b, c->R, c->E, 1e-5f);
    return dot_out(c->out, c->r, (size_t)c->R * c->E);
}

static void test_layernorm(mg_rng *rng)
{
    ln_ctx c = {.R = 5, .E = 7};
    const size_t n = 35;
    c.inp = fbuf(n), c.out = fbuf(n), c.r = fbuf(n), c.g = fbuf(7), c.b = fbuf(7), c.mean = fbuf(5), c.rstd = fbuf(5);
    float *din = fbuf(n), *dg = fbuf(7), *db = fbuf(7), *din1 = fbuf(n);
    double *num = malloc(n * sizeof(double));
    fill_uniform(c.inp, n, -2, 2, rng);
    fill_uniform(c.g, 7, 0.5, 1.5, rng);
    fill_uniform(c.b, 7, -0.5, 0.5, rng);
    fill_uniform(c.r, n, -1, 1, rng);
    ln_loss(&c);
    double worst = 0.0;
    for (int r = 0; r < c.R; r++) {
        double m = 0.0, v = 0.0;
        for (int e = 0; e < c.E; e++)
            m += c.inp[r * c.E + e];
        m /= c.E;
        for (int e = 0; e < c.E; e++)
            v += (c.inp[r * c.E + e] - m) * (c.inp[r * c.E + e] - m);
        v /= c.E;
        for (int e = 0; e < c.E; e++)
            worst = fmax(worst, fabs(c.out[r * c.E + e] - ((c.inp[r * c.E + e] - m) / sqrt(v + 1e-5) * c.g[e] + c.b[e])));
    }
    CHECK(worst < 1e-5);
    mg_layernorm_backward(din, dg, db, c.r, c.inp, c.mean, c.rstd, c.g, c.R, c.E);
    numeric_grad(c.inp, n, 1e-2f, ln_loss, &c, num);
    check_grad("layernorm dinp", din, num, n, 1e-4, 2e-3);
    numeric_grad(c.g, 7, 1e-2f, ln_loss, &c, num);
    check_grad("layernorm dgamma", dg, num, 7, 1e-4, 2e-3);
    numeric_grad(c.b, 7, 1e-2f, ln_loss, &c, num);
    check_grad("layernorm dbeta", db, num, 7, 1e-4, 2e-3);
    ln_loss(&c);
    memcpy(din1, din, n * sizeof(float));
    mg_layernorm_backward(din, dg, db, c.r, c.inp, c.mean, c.rstd, c.g, c.R, c.E);
    check_doubled("layernorm dinp", din, din1, n);
    free(c.inp), free(c.out), free(c.r), free(c.g), free(c.b), free(c.mean), free(c.rstd);
    free(din), free(dg), free(db), free(din1), free(num);
}

/* ---- activations, dropout, add, concat ---------------------------------------------------------- */

typedef struct {
    int gelu;
    size_t n;
    float *inp, *out, *r;
} act_ctx;

static double act_loss(void *p)
{
    act_ctx *c = p;
    if (c->gelu)
        mg_gelu_forward(c->out, c->inp, c->n);
    else
        mg_relu6_forward(c->out, c->inp, c->n);
    return dot_out(c->out, c->r, c->n);
}

static void test_act(mg_rng *rng, int gelu)
{
    act_ctx c = {.gelu = gelu, .n = 80};
    c.inp = fbuf(c.n), c.out = fbuf(c.n), c.r = fbuf(c.n);
    float *din = fbuf(c.n), *din1 = fbuf(c.n);
    double *num = malloc(c.n * sizeof(double));
    fill_uniform(c.inp, c.n, -4, 8, rng);
    /* Keep ReLU6 inputs away from its kinks at 0 and 6. */
    for (size_t i = 0; i < c.n && !gelu; i++)
        if (fabsf(c.inp[i]) < 0.1f || fabsf(c.inp[i] - 6.0f) < 0.1f)
            c.inp[i] += 0.25f;
    fill_uniform(c.r, c.n, -1, 1, rng);
    act_loss(&c);
    int ok = 1;
    for (size_t i = 0; i < c.n; i++) {
        double x = c.inp[i];
        double want = gelu ? 0.5 * x * (1.0 + erf(x / sqrt(2.0))) : fmin(fmax(x, 0.0), 6.0);
        ok &= fabs(c.out[i] - want) < 2e-6 * (1.0 + fabs(want));
    }
    CHECK(ok);
    if (gelu)
        mg_gelu_backward(din, c.r, c.inp, c.n);
    else
        mg_relu6_backward(din, c.r, c.out, c.n);
    numeric_grad(c.inp, c.n, 1e-3f, act_loss, &c, num);
    check_grad(gelu ? "gelu dinp" : "relu6 dinp", din, num, c.n, 2e-4, 2e-3);
    memcpy(din1, din, c.n * sizeof(float));
    act_loss(&c);
    if (gelu)
        mg_gelu_backward(din, c.r, c.inp, c.n);
    else
        mg_relu6_backward(din, c.r, c.out, c.n);
    check_doubled(gelu ? "gelu dinp" : "relu6 dinp", din, din1, c.n);
    free(c.inp), free(c.out), free(c.r), free(din), free(din1), free(num);
}

static void test_dropout(mg_rng *rng)
{
    const size_t n = 20000;
    float *x = fbuf(n), *o = fbuf(n), *mask = fbuf(n), *o2 = fbuf(n), *mask2 = fbuf(n), *d = fbuf(n), *r = fbuf(n);
    fill_uniform(x, n, 0.5, 1.5, rng);
    fill_uniform(r, n, -1, 1, rng);
    mg_rng a, b;
    mg_rng_seed(&a, 3, "dropout", "test");
    mg_rng_seed(&b, 3, "dropout", "test");
    const float p = 0.3f;
    mg_dropout_forward(o, mask, x, n, p, 1, &a);
    mg_dropout_forward(o2, mask2, x, n, p, 1, &b);
    /* The same generator gives the same mask, bit for bit. */
    CHECK(memcmp(o, o2, n * sizeof(float)) == 0);
    size_t zeros = 0;
    int scaled = 1;
    for (size_t i = 0; i < n; i++) {
        if (o[i] == 0.0f)
            zeros++;
        else
            scaled &= fabsf(o[i] - x[i] / (1.0f - p)) < 1e-6f;
    }
    printf("  dropout p=0.3: %.4f dropped\n", (double)zeros / n);
    CHECK(scaled);
    CHECK_NEAR((double)zeros / n, p, 0.02);
    /* backward: dout * mask, accumulating */
    mg_dropout_backward(d, r, mask, n);
    mg_dropout_backward(d, r, mask, n);
    int bw = 1;
    for (size_t i = 0; i < n; i++)
        bw &= d[i] == 2.0f * r[i] * mask[i];
    CHECK(bw);
    /* eval: the identity, the generator untouched */
    mg_rng before = a;
    mg_dropout_forward(o, mask, x, n, p, 0, &a);
    CHECK(memcmp(o, x, n * sizeof(float)) == 0);
    CHECK(memcmp(&before, &a, sizeof a) == 0);
    memset(d, 0, n * sizeof(float));
    mg_dropout_backward(d, r, NULL, n);
    CHECK(memcmp(d, r, n * sizeof(float)) == 0);
    free(x), free(o), free(mask), free(o2), free(mask2), free(d), free(r);
}

static void test_add_concat(mg_rng *rng)
{
    float a[6], b[6], o[6], da[6] = {0}, db[6] = {0}, d[6];
    fill_uniform(a, 6, -1, 1, rng);
    fill_uniform(b, 6, -1, 1, rng);
    fill_uniform(d, 6, -1, 1, rng);
    mg_add_forward(o, a, b, 6);
    CHECK(o[4] == a[4] + b[4]);
    mg_add_backward(da, db, d, 6);
    mg_add_backward(da, db, d, 6);
    CHECK(da[2] == 2.0f * d[2] && db[5] == 2.0f * d[5]);

    /* (N=2, C=1, S=3) and (N=2, C=2, S=3) -> (N=2, C=3, S=3) */
    float x0[6], x1[12], out[18], d0[6] = {0}, d1[12] = {0}, dout[18];
    fill_uniform(x0, 6, -1, 1, rng);
    fill_uniform(x1, 12, -1, 1, rng);
    fill_uniform(dout, 18, -1, 1, rng);
    const float *ins[2] = {x0, x1};
    float *dins[2] = {d0, d1};
    int C[2] = {1, 2};
    mg_concat_forward(out, ins, C, 2, 2, 3);
    CHECK(out[0] == x0[0] && out[3] == x1[0] && out[8] == x1[5] && out[9] == x0[3] && out[12] == x1[6]);
    mg_concat_backward(dins, dout, C, 2, 2, 3);
    CHECK(d0[4] == dout[10] && d1[7] == dout[13]);
    dins[0] = NULL;
    mg_concat_backward(dins, dout, C, 2, 2, 3);
    CHECK(d0[4] == dout[10] && d1[7] == 2.0f * dout[13]);
}

/* ---- multi-head self-attention ------------------------------------------------------------------ */

typedef struct {
    int N, L, E, H;
    float *x, *in_w, *in_b, *out_w, *out_b, *out, *qkv, *att, *ctx, *r;
} mha_ctx;

static double mha_loss(void *p)
{
    mha_ctx *c = p;
    mg_mha_forward(c->out, c->qkv, c->att, c->ctx, c->x, c->in_w, c->in_b, c->out_w, c->out_b, c->N, c->L, c->E,
                   c->H);
    return dot_out(c->out, c->r, (size_t)c->N * c->L * c->E);
}

/* torch.nn.MultiheadAttention's arithmetic, written out in double. */
static void mha_reference(const mha_ctx *c, double *out)
{
    const int N = c->N, L = c->L, E = c->E, H = c->H, d = E / H;
    double *q = malloc((size_t)L * 3 * E * sizeof(double)), *ctx = malloc((size_t)L * E * sizeof(double));
    for (int n = 0; n < N; n++) {
        for (int l = 0; l < L; l++)
            for (int j = 0; j < 3 * E; j++) {
                double s = c->in_b[j];
                for (int e = 0; e < E; e++)
                    s += (double)c->x[((size_t)n * L + l) * E + e] * c->in_w[(size_t)j * E + e];
                q[(size_t)l * 3 * E + j] = s;
            }
        for (int h = 0; h < H; h++)
            for (int i = 0; i < L; i++) {
                double sc[16], mx = -1e300, sum = 0.0;
                for (int j = 0; j < L; j++) {
                    double s = 0.0;
                    for (int k = 0; k < d; k++)
                        s += q[(size_t)i * 3 * E + h * d + k] * q[(size_t)j * 3 * E + E + h * d + k];
                    sc[j] = s / sqrt((double)d);
                    mx = fmax(mx, sc[j]);
                }
                for (int j = 0; j < L; j++) {
                    sc[j] = exp(sc[j] - mx);
                    sum += sc[j];
                }
                for (int k = 0; k < d; k++) {
                    double s = 0.0;
                    for (int j = 0; j < L; j++)
                        s += sc[j] / sum * q[(size_t)j * 3 * E + 2 * E + h * d + k];
                    ctx[(size_t)i * E + h * d + k] = s;
                }
            }
        for (int l = 0; l < L; l++)
            for (int o = 0; o < E; o++) {
                double s = c->out_b[o];
                for (int e = 0; e < E; e++)
                    s += ctx[(size_t)l * E + e] * c->out_w[(size_t)o * E + e];
                out[((size_t)n * L + l) * E + o] = s;
            }
    }
    free(q);
    free(ctx);
}

static void test_mha(mg_rng *rng)
{
    mha_ctx c = {.N = 2, .L = 4, .E = 6, .H = 2};
    const int N = c.N, L = c.L, E = c.E, H = c.H;
    const size_t nx = (size_t)N * L * E;
    c.x = fbuf(nx), c.in_w = fbuf((size_t)3 * E * E), c.in_b = fbuf((size_t)3 * E);
    c.out_w = fbuf((size_t)E * E), c.out_b = fbuf((size_t)E), c.out = fbuf(nx), c.r = fbuf(nx);
    c.qkv = fbuf(nx * 3), c.att = fbuf((size_t)N * H * L * L), c.ctx = fbuf(nx);
    float *dx = fbuf(nx), *diw = fbuf((size_t)3 * E * E), *dib = fbuf((size_t)3 * E), *dow = fbuf((size_t)E * E);
    float *dob = fbuf((size_t)E), *dx1 = fbuf(nx), *diw1 = fbuf((size_t)3 * E * E);
    float *scratch = fbuf(mg_mha_scratch(N, L, E, H));
    double *num = malloc((size_t)3 * E * E * sizeof(double) + nx * sizeof(double)), *ref = malloc(nx * sizeof(double));
    fill_uniform(c.x, nx, -1, 1, rng);
    fill_uniform(c.in_w, (size_t)3 * E * E, -0.7, 0.7, rng);
    fill_uniform(c.in_b, (size_t)3 * E, -0.3, 0.3, rng);
    fill_uniform(c.out_w, (size_t)E * E, -0.5, 0.5, rng);
    fill_uniform(c.out_b, (size_t)E, -0.3, 0.3, rng);
    fill_uniform(c.r, nx, -1, 1, rng);
    mha_loss(&c);
    mha_reference(&c, ref);
    double worst = 0.0;
    for (size_t i = 0; i < nx; i++)
        worst = fmax(worst, fabs(c.out[i] - ref[i]));
    printf("  mha forward max |diff| %.3g\n", worst);
    CHECK(worst < 1e-5);
    /* Each attention row is a probability distribution. */
    double rs = 0.0;
    for (int j = 0; j < L; j++)
        rs += c.att[(size_t)(1 * H + 1) * L * L + 2 * L + j];
    CHECK_NEAR(rs, 1.0, 1e-6);

    mg_mha_backward(dx, diw, dib, dow, dob, c.r, c.x, c.qkv, c.att, c.ctx, c.in_w, c.out_w, N, L, E, H, scratch);
    numeric_grad(c.x, nx, 1e-2f, mha_loss, &c, num);
    check_grad("mha dx", dx, num, nx, 2e-4, 2e-3);
    numeric_grad(c.in_w, (size_t)3 * E * E, 1e-2f, mha_loss, &c, num);
    check_grad("mha d in_proj_weight", diw, num, (size_t)3 * E * E, 2e-4, 2e-3);
    numeric_grad(c.in_b, (size_t)3 * E, 1e-2f, mha_loss, &c, num);
    check_grad("mha d in_proj_bias", dib, num, (size_t)3 * E, 2e-4, 2e-3);
    numeric_grad(c.out_w, (size_t)E * E, 1e-2f, mha_loss, &c, num);
    check_grad("mha d out_proj.weight", dow, num, (size_t)E * E, 2e-4, 2e-3);
    numeric_grad(c.out_b, (size_t)E, 1e-2f, mha_loss, &c, num);
    check_grad("mha d out_proj.bias", dob, num, (size_t)E, 2e-4, 2e-3);
    mha_loss(&c);
    memcpy(dx1, dx, nx * sizeof(float));
    memcpy(diw1, diw, (size_t)3 * E * E * sizeof(float));
    mg_mha_backward(dx, diw, dib, dow, dob, c.r, c.x, c.qkv, c.att, c.ctx, c.in_w, c.out_w, N, L, E, H, scratch);
    check_doubled("mha dx", dx, dx1, nx);
    check_doubled("mha d in_proj_weight", diw, diw1, (size_t)3 * E * E);
    free(c.x), free(c.in_w), free(c.in_b), free(c.out_w), free(c.out_b), free(c.out), free(c.r), free(c.qkv);
    free(c.att), free(c.ctx), free(dx), free(diw), free(dib), free(dow), free(dob), free(dx1), free(diw1);
    free(scratch), free(num), free(ref);
}

/* ---- cross-entropy variants --------------------------------------------------------------------- */

typedef struct {
    int N, K, soft;
    float eps;
    float *logits, *probs, *t;
    int32_t *y;
} xent_ctx;

static double xent_loss(void *p)
{
    xent_ctx *c = p;
    return c->soft ? mg_softmax_xent_soft_forward(c->probs, c->logits, c->t, c->N, c->K)
                   : mg_softmax_xent_smooth_forward(c->probs, c->logits, c->y, c->N, c->K, c->eps);
}

static void test_xent(mg_rng *rng, int soft)
{
    xent_ctx c = {.N = 4, .K = 5, .soft = soft, .eps = 0.1f};
    const size_t nl = 20;
    c.logits = fbuf(nl), c.probs = fbuf(nl), c.t = fbuf(nl);
    c.y = malloc(4 * sizeof(int32_t));
    float *d = fbuf(nl), *d1 = fbuf(nl);
    double *num = malloc(nl * sizeof(double));
    fill_uniform(c.logits, nl, -3, 3, rng);
    for (int n = 0; n < 4; n++) {
        c.y[n] = (int32_t)mg_rng_below(rng, 5);
        double s = 0.0;
        for (int k = 0; k < 5; k++) {
            c.t[n * 5 + k] = (float)mg_rng_uniform(rng);
            s += c.t[n * 5 + k];
        }
        for (int k = 0; k < 5; k++)
            c.t[n * 5 + k] = (float)(c.t[n * 5 + k] / s);
    }
    double loss = xent_loss(&c), want = 0.0;
    for (int n = 0; n < 4; n++) {
        double mx = -1e300, s = 0.0;
        for (int k = 0; k < 5; k++)
            mx = fmax(mx, c.logits[n * 5 + k]);
        for (int k = 0; k < 5; k++)
            s += exp(c.logits[n * 5 + k] - mx);
        for (int k = 0; k < 5; k++) {
            double logp = c.logits[n * 5 + k] - mx - log(s);
            double tk = soft ? c.t[n * 5 + k] : (k == c.y[n] ? 1.0 - c.eps : 0.0) + c.eps / 5.0;
            want -= tk * logp;
        }
    }
    CHECK_NEAR(loss, want / 4, 1e-6);
    if (soft)
        mg_softmax_xent_soft_backward(d, c.probs, c.t, 4, 5);
    else
        mg_softmax_xent_smooth_backward(d, c.probs, c.y, 4, 5, c.eps);
    numeric_grad(c.logits, nl, 1e-2f, xent_loss, &c, num);
    check_grad(soft ? "xent soft-target dlogits" : "xent smoothing 0.1 dlogits", d, num, nl, 2e-5, 1e-3);
    xent_loss(&c);
    memcpy(d1, d, nl * sizeof(float));
    if (soft)
        mg_softmax_xent_soft_backward(d, c.probs, c.t, 4, 5);
    else
        mg_softmax_xent_smooth_backward(d, c.probs, c.y, 4, 5, c.eps);
    check_doubled("xent dlogits", d, d1, nl);
    if (!soft) {
        /* eps 0 is the plain cross-entropy; one-hot soft targets are too. */
        float p2[20];
        double plain = mg_softmax_xent_forward(p2, c.logits, c.y, 4, 5);
        CHECK_NEAR(mg_softmax_xent_smooth_forward(c.probs, c.logits, c.y, 4, 5, 0.0f), plain, 1e-9);
        memset(c.t, 0, nl * sizeof(float));
        for (int n = 0; n < 4; n++)
            c.t[n * 5 + c.y[n]] = 1.0f;
        CHECK_NEAR(mg_softmax_xent_soft_forward(c.probs, c.logits, c.t, 4, 5), plain, 1e-9);
    }
    free(c.logits), free(c.probs), free(c.t), free(c.y), free(d), free(d1), free(num);
}

int main(void)
{
    mg_rng rng;
    mg_rng_seed(&rng, 4321, "test", "layers_ext");
    test_pooling(&rng);
    test_batchnorm(&rng);
    test_layernorm(&rng);
    test_act(&rng, 0);
    test_act(&rng, 1);
    test_dropout(&rng);
    test_add_concat(&rng);
    test_mha(&rng);
    test_xent(&rng, 0);
    test_xent(&rng, 1);
    MG_TEST_MAIN_END();
}
