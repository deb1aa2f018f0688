/* test_fastpath.c: the training engine's fast paths against slower
 * references. Convolutions in the model's channel-major layout and in NCHW
 * (column chunks that run across samples, the tight copies of unpadded
 * stride-1 windows, size-keeping convolutions by kernel columns, stride-2
 * 3x3 convolutions by parity, the flipped-filter input gradient, strided 1x1
 * convolutions that write their input gradient whole, both forms of the
 * weight-gradient GEMM, a fused ReLU or Tanh) against a direct convolution in
 * double and against central finite differences; the columns a strided
 * convolution's forward keeps for its backward bitwise against building them
 * again, alone and in a model; batch-norm statistics summed by the
 * convolution before it bitwise against the batch norm's own; the 2x2 max
 * pool's vectorised forward and its whole-input backward against scalar
 * references; the branch-free tanh against tanh in double; the blocked SGD
 * step bitwise against the scalar update; and layers with a fused activation
 * against the same layers followed by an activation operation. */
#include "mg_test.h"
#include "miagrid/nn.h"
#include "nn/conv3.h"
#include "nn/nn_internal.h"

#include <stdint.h>

static void fill_uniform(float *x, size_t n, double lo, double hi, mg_rng *rng)
{
    for (size_t i = 0; i < n; i++)
        x[i] = (float)(lo + (hi - lo) * mg_rng_uniform(rng));
}

/* ---- convolution in the channel-major layout ------------------------------------------ */

static double act_ref(int act, double v)
{
    if (act == MG_ACT_RELU)
        return v > 0.0 ? v : 0.0;
    if (act == MG_ACT_TANH)
        return tanh(v);
    return v;
}

/* out = act(conv(inp) + b) in double, straight from the definition. */
static void conv_ref_forward(double *out, const float *inp, mg_layout li, const float *w, const float *b,
                             const mg_conv2d_shape *s, mg_layout lo, int act)
{
    const int G = s->groups > 1 ? s->groups : 1, Cg = s->C / G, OCg = s->OC / G;
    for (int n = 0; n < s->N; n++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    double acc = b ? b[oc] : 0.0;
                    const int g = oc / OCg;
                    for (int c = 0; c < Cg; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
                                    continue;
                                acc += (double)w[(((size_t)oc * Cg + c) * s->KH + kh) * s->KW + kw] *
                                       inp[(size_t)n * li.sn + (size_t)(g * Cg + c) * li.sc + (size_t)ih * s->W + iw];
                            }
                    out[(size_t)n * lo.sn + (size_t)oc * lo.sc + (size_t)oh * s->OW + ow] = act_ref(act, acc);
                }
}

/* The gradients of L = sum(out * d) w.r.t. the input, weights and bias, for
 * d already through the activation. */
static void conv_ref_backward(double *dinp, double *dw, double *db, const float *d, mg_layout lo, const float *inp,
                              mg_layout li, const float *w, const mg_conv2d_shape *s)
{
    const int G = s->groups > 1 ? s->groups : 1, Cg = s->C / G, OCg = s->OC / G;
    for (int n = 0; n < s->N; n++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < s->OH; oh++)
                for (int ow = 0; ow < s->OW; ow++) {
                    const double g = d[(size_t)n * lo.sn + (size_t)oc * lo.sc + (size_t)oh * s->OW + ow];
                    db[oc] += g;
                    for (int c = 0; c < Cg; c++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W)
                                    continue;
                                const size_t wi = (((size_t)oc * Cg + c) * s->KH + kh) * s->KW + kw;
                                const size_t ii = (size_t)n * li.sn + (size_t)(oc / OCg * Cg + c) * li.sc +
                                                  (size_t)ih * s->W + iw;
                                dw[wi] += g * inp[ii];
                                dinp[ii] += g * w[wi];
                            }
                }
}

static void check_near_d(const char *what, const float *a, const double *ref, size_t n, double tol)
{
    double md = 0.0;
    size_t mi = 0;
    for (size_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= md)) {
            md = d;
            mi = i;
        }
    }
    mg_test_checks_++;
    if (!(md <= tol))
        MG_T_FAIL_("%s: max |diff| %.3g at [%zu] (%.7g vs %.7g) > %.3g", what, md, mi, (double)a[mi], ref[mi], tol);
    else
        printf("  %-40s n=%-6zu max |diff| = %.3g\n", what, n, md);
}

static void check_same_bits(const char *what, const char *part, const float *a, const float *ref, size_t n)
{
    mg_test_checks_++;
    if (memcmp(a, ref, n * sizeof(float)) != 0)
        MG_T_FAIL_("%s kept %s: not the bits of the plain form", what, part);
}

/* The stride-2 3x3 convolutions (padding 1, even planes) that run by parity,
 * where the GEMMs are large enough (at least 32 rows of C*KW, output planes of
 * 64 and up): they keep no columns. */
static int runs_by_parity(const mg_conv2d_shape *s)
{
    const int G = s->groups > 1 ? s->groups : 1;
    return s->stride == 2 && s->KH == 3 && s->KW == 3 && s->pad == 1 && s->H % 2 == 0 && s->W % 2 == 0 &&
           s->groups != s->C && s->C / G * s->KW >= 32 && s->OH * s->OW >= 64;
}

/* Where the forward keeps its column buffers for the backward (strided
 * convolutions on the im2col path), the kept forms give the same bits as
 * the plain ones (out, dinp, dw, db), with and without the input gradient.
 * The kept buffer starts as NaNs, so a column the backward reads that the
 * forward did not write shows. */
static void conv_kept_bits(const mg_conv2d_shape *s, mg_layout lo, mg_layout li, const float *inp, const float *w,
                           const float *b, int act, const float *d, const float *out, const float *dinp,
                           const float *dw, const float *db, float *scratch, const char *what)
{
    const size_t nk = mg_conv2d_cols_floats(s);
    CHECK((nk > 0) == (s->stride > 1 && s->groups != s->C && !runs_by_parity(s)));
    if (!nk)
        return;
    const size_t ni = (size_t)s->N * s->C * s->H * s->W, no = (size_t)s->N * s->OC * s->OH * s->OW;
    const size_t nw = (size_t)s->OC * (s->C / (s->groups > 1 ? s->groups : 1)) * s->KH * s->KW;
    float *kept = malloc(nk * sizeof(float)), *o2 = malloc(no * sizeof(float)), *di2 = malloc(ni * sizeof(float));
    float *dw2 = calloc(nw, sizeof(float)), *db2 = calloc((size_t)s->OC, sizeof(float));
    for (size_t i = 0; i < nk; i++)
        kept[i] = NAN;
    mg_conv2d_forward_kept(o2, lo, inp, li, w, b, s, scratch, act, kept);
    check_same_bits(what, "out", o2, out, no);
    mg_conv2d_backward_kept(di2, li, 1, dw2, db2, d, lo, inp, w, s, scratch, kept);
    check_same_bits(what, "dinp", di2, dinp, ni);
    check_same_bits(what, "dw", dw2, dw, nw);
    check_same_bits(what, "db", db2, db, (size_t)s->OC);
    memset(dw2, 0, nw * sizeof(float));
    mg_conv2d_backward_kept(NULL, li, 1, dw2, NULL, d, lo, inp, w, s, scratch, kept);
    check_same_bits(what, "dw without dinp", dw2, dw, nw);
    printf("  %-40s kept columns: the same bits\n", what);
    free(kept), free(o2), free(di2), free(dw2), free(db2);
}

/* Forward with a fused activation and both backward modes (overwrite, then
 * accumulate), on N samples in the channel-major layout, against the direct
 * reference. */
static void conv_case_hw(mg_rng *rng, int N, int C, int H, int W, int OC, int k, int stride, int pad, int groups,
                         int act, int nchw, int bias)
{
    mg_conv2d_shape s = {
        .N = N, .C = C, .H = H, .W = W, .OC = OC, .KH = k, .KW = k, .stride = stride, .pad = pad, .groups = groups};
    CHECK_INT_EQ(mg_conv2d_shape_init(&s), 0);
    const int G = groups > 1 ? groups : 1;
    const size_t HW = (size_t)H * W, P = (size_t)s.OH * s.OW;
    const size_t ni = (size_t)N * C * HW, no = (size_t)N * OC * P, nw = (size_t)OC * (C / G) * k * k;
    const mg_layout li = nchw ? (mg_layout){(size_t)C * HW, HW} : (mg_layout){HW, (size_t)N * HW};
    const mg_layout lo = nchw ? (mg_layout){(size_t)OC * P, P} : (mg_layout){P, (size_t)N * P};
    float *inp = malloc(ni * sizeof(float)), *w = malloc(nw * sizeof(float)), *b = malloc((size_t)OC * sizeof(float));
    float *out = malloc(no * sizeof(float)), *d = malloc(no * sizeof(float));
    float *dinp = malloc(ni * sizeof(float)), *dw = calloc(nw, sizeof(float)), *db = calloc((size_t)OC, sizeof(float));
    float *scratch = malloc((mg_conv2d_scratch(&s) + 1) * sizeof(float));
    double *ref = malloc(no * sizeof(double)), *rdi = calloc(ni, sizeof(double)), *rdw = calloc(nw, sizeof(double));
    double *rdb = calloc((size_t)OC, sizeof(double));
    fill_uniform(inp, ni, -1, 1, rng);
    fill_uniform(w, nw, -1, 1, rng);
    fill_uniform(b, (size_t)OC, -1, 1, rng);
    fill_uniform(d, no, -1, 1, rng);
    char what[128];
    snprintf(what, sizeof what, "conv%s%s N%d C%d %dx%d OC%d k%d s%d p%d g%d act%d%s", mg_conv3_ok(&s) ? " direct" : "",
             nchw ? " NCHW" : "", N, C, H, W, OC, k, stride, pad, groups, act, bias ? "" : " no bias");

    for (size_t i = 0; i < no; i++)
        out[i] = 1e6f;   /* overwritten, not added to */
    mg_conv2d_forward_act(out, lo, inp, li, w, bias ? b : NULL, &s, scratch, act);
    conv_ref_forward(ref, inp, li, w, bias ? b : NULL, &s, lo, act);
    char name[160];
    snprintf(name, sizeof name, "%s out", what);
    check_near_d(name, out, ref, no, 1e-4);

    /* The gradient through the fused activation, as the model forms it. */
    mg_act_grad_inplace(act, d, out, no);
    for (size_t i = 0; i < ni; i++)
        dinp[i] = 1e6f;   /* overwritten, not added to */
    mg_conv2d_backward_lay(dinp, li, 1, dw, db, d, lo, inp, w, &s, scratch);
    conv_ref_backward(rdi, rdw, rdb, d, lo, inp, li, w, &s);
    snprintf(name, sizeof name, "%s dinp", what);
    check_near_d(name, dinp, rdi, ni, 1e-4);
    snprintf(name, sizeof name, "%s dw", what);
    check_near_d(name, dw, rdw, nw, 1e-3);
    snprintf(name, sizeof name, "%s db", what);
    check_near_d(name, db, rdb, (size_t)OC, 1e-3);
    conv_kept_bits(&s, lo, li, inp, w, bias ? b : NULL, act, d, out, dinp, dw, db, scratch, what);

    /* Accumulating: a second backward doubles everything. */
    mg_conv2d_backward_lay(dinp, li, 0, dw, db, d, lo, inp, w, &s, scratch);
    for (size_t i = 0; i < ni; i++)
        rdi[i] *= 2.0;
    for (size_t i = 0; i < nw; i++)
        rdw[i] *= 2.0;
    for (int i = 0; i < OC; i++)
        rdb[i] *= 2.0;
    snprintf(name, sizeof name, "%s dinp twice", what);
    check_near_d(name, dinp, rdi, ni, 2e-4);
    snprintf(name, sizeof name, "%s dw twice", what);
    check_near_d(name, dw, rdw, nw, 2e-3);
    snprintf(name, sizeof name, "%s db twice", what);
    check_near_d(name, db, rdb, (size_t)OC, 2e-3);

    free(inp), free(w), free(b), free(out), free(d), free(dinp), free(dw), free(db), free(scratch);
    free(ref), free(rdi), free(rdw), free(rdb);
}

static void conv_case_lay(mg_rng *rng, int N, int C, int H, int OC, int k, int stride, int pad, int groups, int act,
                          int nchw, int bias)
{
    conv_case_hw(rng, N, C, H, H, OC, k, stride, pad, groups, act, nchw, bias);
}

static void conv_case(mg_rng *rng, int N, int C, int H, int OC, int k, int stride, int pad, int groups, int act)
{
    conv_case_lay(rng, N, C, H, OC, k, stride, pad, groups, act, 0, 1);
}

/* Central differences of L = sum(out * r) for an unpadded stride-1 conv in
 * the channel-major layout: an independent check of the reference above. */
typedef struct {
    mg_conv2d_shape s;
    mg_layout li, lo;
    float *inp, *w, *b, *out, *r, *scratch;
} fd_ctx;

static double fd_loss(fd_ctx *c)
{
    mg_conv2d_forward_act(c->out, c->lo, c->inp, c->li, c->w, c->b, &c->s, c->scratch, MG_NO_ACT);
    double l = 0.0;
    for (size_t i = 0; i < (size_t)c->s.N * c->s.OC * c->s.OH * c->s.OW; i++)
        l += (double)c->out[i] * c->r[i];
    return l;
}

static void fd_check(const char *what, fd_ctx *c, float *x, const float *g, size_t n)
{
    double worst = 0.0;
    for (size_t i = 0; i < n; i++) {
        float save = x[i], xp = save + 1e-2f, xm = save - 1e-2f;
        x[i] = xp;
        double fp = fd_loss(c);
        x[i] = xm;
        double fm = fd_loss(c);
        x[i] = save;
        double num = (fp - fm) / ((double)xp - (double)xm), e = fabs(num - g[i]) / (1e-3 + 1e-3 * fabs(num));
        if (e > worst)
            worst = e;
    }
    mg_test_checks_++;
    if (!(worst <= 1.0))
        MG_T_FAIL_("%s: gradient off finite differences (worst error ratio %.3g)", what, worst);
    else
        printf("  %-40s n=%-6zu worst error ratio %.3g\n", what, n, worst);
}

static void test_conv_finite_differences(mg_rng *rng)
{
    fd_ctx c = {.s = {.N = 3, .C = 2, .H = 7, .W = 7, .OC = 3, .KH = 3, .KW = 3, .stride = 1, .pad = 0}};
    CHECK_INT_EQ(mg_conv2d_shape_init(&c.s), 0);
    const size_t HW = 49, P = (size_t)c.s.OH * c.s.OW;
    const size_t ni = 3 * 2 * HW, no = 3 * 3 * P, nw = 3 * 2 * 9;
    c.li = (mg_layout){HW, 3 * HW};
    c.lo = (mg_layout){P, 3 * P};
    c.inp = malloc(ni * sizeof(float));
    c.w = malloc(nw * sizeof(float));
    c.b = malloc(3 * sizeof(float));
    c.out = malloc(no * sizeof(float));
    c.r = malloc(no * sizeof(float));
    c.scratch = malloc((mg_conv2d_scratch(&c.s) + 1) * sizeof(float));
    float *dinp = calloc(ni, sizeof(float)), *dw = calloc(nw, sizeof(float)), *db = calloc(3, sizeof(float));
    fill_uniform(c.inp, ni, -1, 1, rng);
    fill_uniform(c.w, nw, -1, 1, rng);
    fill_uniform(c.b, 3, -1, 1, rng);
    fill_uniform(c.r, no, -1, 1, rng);
    mg_conv2d_backward_lay(dinp, c.li, 0, dw, db, c.r, c.lo, c.inp, c.w, &c.s, c.scratch);
    fd_check("conv channel-major dinp", &c, c.inp, dinp, ni);
    fd_check("conv channel-major dw", &c, c.w, dw, nw);
    fd_check("conv channel-major db", &c, c.b, db, 3);
    free(c.inp), free(c.w), free(c.b), free(c.out), free(c.r), free(c.scratch), free(dinp), free(dw), free(db);
}

/* The direct kernels of 3x3 stride-1 convolutions over rows of whole
 * vectors (src/nn/conv3.c; MIAGRID_CONV=direct runs this test on them):
 * ResNet's stages, output channels not a whole block of eight, three input
 * channels (a first layer), a bias with a fused ReLU, the NCHW layout, the
 * smallest plane (two rows of 16), rows of 48 (the vectors of a tile at
 * different columns), more samples than a backward chunk holds; rows of 8
 * (two to a vector; the forward only): ResNet's last stage, four rows in
 * NCHW with a ReLU, many samples. */
static void test_conv_direct(mg_rng *rng)
{
    static const int cases[][8] = {
        /* N, C, H, W, OC, act, nchw, bias */
        {3, 16, 32, 32, 16, MG_NO_ACT, 0, 0},   {2, 32, 16, 16, 32, MG_NO_ACT, 0, 0},
        {2, 16, 16, 16, 12, MG_ACT_RELU, 0, 1}, {2, 3, 32, 32, 16, MG_NO_ACT, 0, 0},
        {2, 8, 8, 32, 20, MG_ACT_RELU, 1, 1},   {3, 5, 2, 16, 9, MG_NO_ACT, 0, 1},
        {2, 6, 4, 48, 8, MG_NO_ACT, 1, 0},      {7, 16, 32, 32, 16, MG_NO_ACT, 0, 0},
        {3, 64, 8, 8, 64, MG_NO_ACT, 0, 0},     {2, 5, 4, 8, 11, MG_ACT_RELU, 1, 1},
        {30, 24, 8, 8, 16, MG_NO_ACT, 0, 1},
    };
    const char *conv = getenv("MIAGRID_CONV");
    const int direct = conv && strcmp(conv, "direct") == 0, gemm = conv && strcmp(conv, "gemm") == 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const int *c = cases[i];
        mg_conv2d_shape s = {
            .N = c[0], .C = c[1], .H = c[2], .W = c[3], .OC = c[4], .KH = 3, .KW = 3, .stride = 1, .pad = 1};
        CHECK_INT_EQ(mg_conv2d_shape_init(&s), 0);
        if (direct || gemm)
            CHECK_INT_EQ(mg_conv3_ok(&s), direct);
        conv_case_hw(rng, c[0], c[1], c[2], c[3], c[4], 3, 1, 1, 1, c[5], c[6], c[7]);
    }
}

static void test_conv(mg_rng *rng)
{
    /* LeNet's second layer: unpadded stride-1 windows (the tight copies), chunks
     * of 25 output rows across samples, the weight gradient as c += a b with
     * the output gradient transposed (K*OC = 2400). */
    conv_case(rng, 4, 6, 14, 16, 5, 1, 0, 1, MG_ACT_RELU);
    /* LeNet's first layer: one input channel, padding that keeps the size, the
     * transposed GEMM form (K*OC = 150). */
    conv_case(rng, 3, 1, 28, 6, 5, 1, 2, 1, MG_ACT_RELU);
    /* ResNet stages by kernel columns, forward and backward: with a fused Tanh,
     * with two groups, with a 5x5 kernel. Then the flipped-filter path they
     * replace on smaller images or fewer channels. */
    conv_case(rng, 2, 16, 16, 16, 3, 1, 1, 1, MG_NO_ACT);
    conv_case(rng, 3, 16, 16, 24, 3, 1, 1, 1, MG_ACT_TANH);
    conv_case(rng, 2, 32, 16, 32, 3, 1, 1, 2, MG_ACT_RELU);
    conv_case(rng, 2, 8, 32, 8, 5, 1, 2, 1, MG_NO_ACT);
    conv_case(rng, 2, 16, 12, 16, 3, 1, 1, 1, MG_NO_ACT);
    conv_case(rng, 2, 8, 9, 8, 5, 1, 2, 1, MG_NO_ACT);
    conv_case(rng, 2, 8, 16, 8, 3, 1, 1, 1, MG_NO_ACT);
    /* Tanh fused; stride 2; the pointwise shortcuts; groups over unpadded windows. */
    conv_case(rng, 3, 4, 9, 5, 3, 1, 0, 1, MG_ACT_TANH);
    conv_case(rng, 3, 4, 9, 6, 3, 2, 1, 1, MG_ACT_RELU);
    conv_case(rng, 3, 4, 8, 6, 1, 1, 0, 1, MG_NO_ACT);
    conv_case(rng, 3, 4, 8, 6, 1, 2, 0, 1, MG_NO_ACT);
    conv_case(rng, 3, 4, 9, 6, 1, 3, 0, 1, MG_NO_ACT);
    conv_case(rng, 2, 4, 9, 6, 1, 2, 0, 2, MG_NO_ACT);
    conv_case(rng, 2, 4, 9, 4, 1, 2, 0, 4, MG_NO_ACT);
    conv_case(rng, 2, 4, 7, 6, 3, 1, 0, 2, MG_ACT_RELU);
    /* Several chunks (their GEMMs are kept under 10^6 multiply-adds): by
     * columns across samples, by kernel columns across samples, and per sample
     * in the NCHW layout of the public kernels. */
    conv_case(rng, 3, 16, 12, 32, 3, 1, 1, 1, MG_ACT_RELU);
    conv_case(rng, 2, 32, 16, 32, 3, 1, 1, 1, MG_NO_ACT);
    conv_case_lay(rng, 2, 16, 12, 32, 3, 1, 1, 1, MG_NO_ACT, 1, 1);
    conv_case_lay(rng, 2, 32, 16, 32, 3, 1, 1, 1, MG_ACT_RELU, 1, 1);
    conv_case_lay(rng, 2, 16, 13, 32, 3, 2, 1, 1, MG_NO_ACT, 1, 1);
    /* Strided, over several chunks across samples and in groups, whose
     * forward keeps the columns for the backward (ResNet20's shortcut among
     * them; too few channels, or an odd plane, for the parity path). */
    conv_case(rng, 3, 16, 32, 32, 1, 2, 0, 1, MG_NO_ACT);
    conv_case(rng, 2, 8, 9, 8, 3, 2, 1, 2, MG_ACT_RELU);
    conv_case(rng, 2, 8, 16, 16, 3, 2, 1, 1, MG_NO_ACT);
    /* Stride-2 3x3 downsampling by parity: ResNet20's first, with the bias
     * (the GEMMs into a buffer) and without (in place); two groups with a
     * ReLU; a Tanh in the NCHW layout; output rows of 10 floats (not whole
     * blocks of four); several chunks of uneven rows, in both layouts. */
    conv_case(rng, 2, 16, 32, 32, 3, 2, 1, 1, MG_NO_ACT);
    conv_case_lay(rng, 2, 16, 32, 32, 3, 2, 1, 1, MG_NO_ACT, 0, 0);
    conv_case(rng, 2, 32, 16, 32, 3, 2, 1, 2, MG_ACT_RELU);
    conv_case_lay(rng, 2, 16, 16, 24, 3, 2, 1, 1, MG_ACT_TANH, 1, 1);
    conv_case(rng, 2, 16, 20, 16, 3, 2, 1, 1, MG_NO_ACT);
    conv_case(rng, 2, 64, 28, 64, 3, 2, 1, 1, MG_NO_ACT);
    conv_case_lay(rng, 2, 64, 28, 64, 3, 2, 1, 1, MG_NO_ACT, 1, 0);
    /* Without bias or activation (ResNet's convolutions before batch norm)
     * the by-columns GEMMs write the output in place: one group and two, in
     * both layouts, one chunk and several. */
    conv_case_lay(rng, 2, 16, 16, 16, 3, 1, 1, 1, MG_NO_ACT, 0, 0);
    conv_case_lay(rng, 2, 32, 16, 32, 3, 1, 1, 2, MG_NO_ACT, 0, 0);
    conv_case_lay(rng, 2, 32, 16, 32, 3, 1, 1, 2, MG_NO_ACT, 1, 0);
    conv_case_lay(rng, 3, 16, 12, 32, 3, 1, 1, 1, MG_NO_ACT, 1, 0);
    /* Depthwise with a fused ReLU. */
    conv_case(rng, 2, 3, 6, 6, 3, 1, 1, 3, MG_ACT_RELU);
    test_conv_finite_differences(rng);
    test_conv_direct(rng);
}

/* ---- 2x2 max pool ------------------------------------------------------------------------- */

/* The first maximum in row-major window order wins; a NaN beats numbers. */
static void pool_ref(float *out, int32_t *arg, const float *inp, int NC, int H, int W)
{
    const int OH = H / 2, OW = W / 2;
    for (int nc = 0; nc < NC; nc++)
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                int32_t bi = (int32_t)((size_t)nc * H * W) + 2 * oh * W + 2 * ow;
                float best = inp[bi];
                for (int dh = 0; dh < 2; dh++)
                    for (int dw = 0; dw < 2; dw++) {
                        int32_t i = (int32_t)((size_t)nc * H * W) + (2 * oh + dh) * W + 2 * ow + dw;
                        if (inp[i] > best || (isnan(inp[i]) && !isnan(best))) {
                            best = inp[i];
                            bi = i;
                        }
                    }
                out[((size_t)nc * OH + oh) * OW + ow] = best;
                arg[((size_t)nc * OH + oh) * OW + ow] = bi;
            }
}

static void pool_case(mg_rng *rng, int NC, int H, int W)
{
    const size_t ni = (size_t)NC * H * W, no = (size_t)NC * (H / 2) * (W / 2);
    float *inp = malloc(ni * sizeof(float)), *out = malloc(no * sizeof(float)), *ref = malloc(no * sizeof(float));
    int32_t *arg = malloc(no * sizeof(int32_t)), *rarg = malloc(no * sizeof(int32_t));
    float *g = malloc(no * sizeof(float)), *din = malloc(ni * sizeof(float)), *rdin = malloc(ni * sizeof(float));
    /* Few distinct values: many ties. A NaN in the middle. */
    for (size_t i = 0; i < ni; i++)
        inp[i] = (float)mg_rng_below(rng, 4) - 1.0f;
    inp[ni / 2] = NAN;
    mg_maxpool_forward(out, arg, inp, NC, 1, H, W, 2);
    pool_ref(ref, rarg, inp, NC, H, W);
    int same = 1;
    for (size_t i = 0; i < no; i++)
        same &= arg[i] == rarg[i] && (out[i] == ref[i] || (isnan(out[i]) && isnan(ref[i])));
    printf("  2x2 max pool %dx%dx%d: forward %s the scalar reference\n", NC, H, W, same ? "matches" : "differs from");
    CHECK(same);

    fill_uniform(g, no, -1, 1, rng);
    for (size_t i = 0; i < ni; i++)
        din[i] = 7.0f;   /* overwritten */
    memset(rdin, 0, ni * sizeof(float));
    mg_maxpool_backward(rdin, g, rarg, (int)no);
    mg_maxpool2_backward_cover(din, 1, g, arg, NC, H, W);
    CHECK_TENSOR_NEAR(din, rdin, ni, 0.0);
    /* Accumulating onto a gradient already there. */
    fill_uniform(din, ni, -1, 1, rng);
    memcpy(rdin, din, ni * sizeof(float));
    mg_maxpool_backward(rdin, g, rarg, (int)no);
    mg_maxpool2_backward_cover(din, 0, g, arg, NC, H, W);
    CHECK_TENSOR_NEAR(din, rdin, ni, 0.0);
    free(inp), free(out), free(ref), free(arg), free(rarg), free(g), free(din), free(rdin);
}

static void test_pool(mg_rng *rng)
{
    pool_case(rng, 5, 6, 10);    /* rows of 5 windows: a block of four and one more */
    pool_case(rng, 3, 28, 28);   /* LeNet's first pool: 14 windows */
    pool_case(rng, 4, 4, 2);     /* a single window per row */
}

/* ---- tanh --------------------------------------------------------------------------------- */

static void test_tanh(void)
{
    double worst = 0.0, worst_x = 0.0;
    const int n = 400000;
    for (int i = -n; i <= n; i++) {
        float x = (float)i * (12.0f / (float)n);
        double want = tanh((double)x);
        float ulp = nextafterf((float)fabs(want), INFINITY) - (float)fabs(want);
        double e = fabs((double)mg_tanh1(x) - want) / (double)ulp;
        if (e > worst) {
            worst = e;
            worst_x = x;
        }
    }
    /* Small magnitudes on a log scale, down to the subnormals. */
    for (float x = 1e-40f; x < 1.0f; x *= 1.37f) {
        double want = tanh((double)x);
        float ulp = nextafterf((float)want, INFINITY) - (float)want;
        double e = fabs((double)mg_tanh1(x) - want) / (double)ulp;
        if (e > worst) {
            worst = e;
            worst_x = x;
        }
    }
    printf("  tanh: worst error %.2f ulp at %.7g\n", worst, worst_x);
    CHECK(worst <= 2.0);
    CHECK(mg_tanh1(0.0f) == 0.0f && !signbit(mg_tanh1(0.0f)));
    CHECK(mg_tanh1(-0.0f) == 0.0f && signbit(mg_tanh1(-0.0f)));
    CHECK(mg_tanh1(INFINITY) == 1.0f && mg_tanh1(-INFINITY) == -1.0f);
    CHECK(mg_tanh1(30.0f) == 1.0f && mg_tanh1(-9.5f) == -1.0f);
    CHECK(isnan(mg_tanh1(NAN)));
    /* The array form, in place and not. */
    float a[11], o[11];
    for (int i = 0; i < 11; i++)
        a[i] = (float)(i - 5) * 0.7f;
    mg_tanh_forward(o, a, 11);
    mg_tanh_forward(a, a, 11);
    CHECK(memcmp(o, a, sizeof a) == 0);
    CHECK(o[5] == 0.0f && o[0] == -o[10]);
}

/* ---- SGD -------------------------------------------------------------------------------- */

/* torch.optim.SGD's update, one element at a time, as optim.c first wrote it. */
static void sgd_ref(float *p, float *g, float *buf, const float *mk, size_t n, float lr, float wd, float mom,
                    int first)
{
    for (size_t i = 0; i < n; i++) {
        if (mk && mk[i] == 0.0f) {
            g[i] = buf[i] = p[i] = 0.0f;
            continue;
        }
        float d = g[i] + wd * p[i];
        buf[i] = first ? d : mom * buf[i] + d;
        p[i] = p[i] - lr * buf[i];
    }
}

static void test_sgd(mg_rng *rng)
{
    const size_t n = 1003;   /* not a multiple of the block */
    mg_optim_cfg cfg = {.kind = MG_OPT_SGD, .lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4};
    for (int masked = 0; masked < 2; masked++) {
        mg_optim o;
        mg_error err = {0};
        CHECK_OK(mg_optim_init(&o, &cfg, n, &err), &err);
        float *p = malloc(n * sizeof(float)), *g = malloc(n * sizeof(float)), *mk = malloc(n * sizeof(float));
        float *rp = malloc(n * sizeof(float)), *rg = malloc(n * sizeof(float)), *rb = calloc(n, sizeof(float));
        fill_uniform(p, n, -1, 1, rng);
        for (size_t i = 0; i < n; i++)
            mk[i] = mg_rng_uniform(rng) < 0.3 ? 0.0f : 1.0f;
        memcpy(rp, p, n * sizeof(float));
        int same = 1;
        for (int step = 0; step < 4; step++) {
            fill_uniform(g, n, -1, 1, rng);
            memcpy(rg, g, n * sizeof(float));
            mg_optim_step(&o, p, g, masked ? mk : NULL);
            sgd_ref(rp, rg, rb, masked ? mk : NULL, n, 0.05f, 5e-4f, 0.9f, step == 0);
            same &= memcmp(p, rp, n * sizeof(float)) == 0 && memcmp(g, rg, n * sizeof(float)) == 0 &&
                    memcmp(o.m1, rb, n * sizeof(float)) == 0;
        }
        printf("  sgd, momentum and weight decay%s: %s the scalar update bit for bit\n", masked ? ", masked" : "",
               same ? "matches" : "differs from");
        CHECK(same);
        mg_optim_free(&o);
        free(p), free(g), free(mk), free(rp), free(rg), free(rb);
    }
}

/* ---- fused activations in the graph -------------------------------------------------------- */

/* conv -> ReLU -> max pool -> flatten -> linear -> Tanh -> linear, with the
 * activations folded into their layers or as operations of their own. */
static mg_model *build_small(int fused)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "fused-test", 2, 8, 8, 3, 0, &err), &err);
    if (!m)
        return NULL;
    int c = mg_g_conv(m, "conv", 0, 4, 3, 1, 1, 1, 1);
    int a = fused ? mg_g_fuse_act(m, c, MG_ACT_RELU) : mg_g_act(m, c, MG_ACT_RELU);
    if (fused)
        CHECK_INT_EQ(a, c);
    int x = mg_g_flatten(m, mg_g_maxpool(m, a, 2, 2, 0));
    int l = mg_g_linear(m, "fc1", x, 10, 1);
    int t = fused ? mg_g_fuse_act(m, l, MG_ACT_TANH) : mg_g_act(m, l, MG_ACT_TANH);
    int logits = mg_g_linear(m, "fc2", t, 3, 1);
    CHECK_OK(mg_graph_finish(&m, logits, &err), &err);
    return m;
}

/* Two models built to compute the same: 0 (both freed) if either failed to
 * build, else 1 with the same initial parameters in both, drawn from seed
 * and tag, and rx seeded for their data. */
static int twins_ready(mg_model **a, mg_model **b, uint64_t seed, const char *tag, mg_rng *rx)
{
    if (!*a || !*b) {
        mg_model_destroy(a);
        mg_model_destroy(b);
        return 0;
    }
    mg_rng r1, r2;
    mg_rng_seed(&r1, seed, tag, "init");
    mg_rng_seed(&r2, seed, tag, "init");
    mg_model_init_params(*a, &r1);
    mg_model_init_params(*b, &r2);
    mg_rng_seed(rx, seed, tag, "data");
    return 1;
}

/* One forward (a training one where train_f, train_s say so) and backward
 * of the batch (x: B inputs of in floats) on mf and ms, which must agree bit
 * for bit in logits (K classes), loss, parameter gradients and input
 * gradients; returns the loss. */
static double check_same_step(mg_model *mf, int train_f, mg_model *ms, int train_s, const float *x, const int32_t *y,
                              int B, size_t in, int K)
{
    mg_error err = {0};
    const float *zf = NULL, *zs = NULL;
    mg_model_set_input_grad(mf, 1);
    mg_model_set_input_grad(ms, 1);
    mg_model_zero_grad(mf);
    mg_model_zero_grad(ms);
    CHECK_OK(mg_model_forward(mf, x, B, train_f, &zf, &err), &err);
    CHECK_OK(mg_model_forward(ms, x, B, train_s, &zs, &err), &err);
    if (!zf || !zs)
        return NAN;
    CHECK_TENSOR_NEAR(zf, zs, (size_t)B * K, 0.0);
    double lf = 0.0, ls = 0.0;
    CHECK_OK(mg_model_backward(mf, y, B, &lf, NULL, &err), &err);
    CHECK_OK(mg_model_backward(ms, y, B, &ls, NULL, &err), &err);
    CHECK(lf == ls);
    CHECK_INT_EQ(mg_model_n_params(mf), mg_model_n_params(ms));
    CHECK_TENSOR_NEAR(mg_model_grads(mf), mg_model_grads(ms), mg_model_n_params(mf), 0.0);
    CHECK_TENSOR_NEAR(mg_model_input_grad(mf), mg_model_input_grad(ms), (size_t)B * in, 0.0);
    return lf;
}

/* A step of the kept-columns test: m[0] trains or evaluates as train says,
 * m[1] only evaluates. */
static void kept_step(mg_model **m, int train, const float *x, const int32_t *y, int B, const char *what)
{
    check_same_step(m[0], train, m[1], 0, x, y, B, 162, 3);
    printf("  %-60s the same gradients\n", what);
}

/* The column buffers a training forward keeps for the strided convolutions'
 * backward: a model that trains (and so keeps them) gets the gradients of a
 * model that only evaluates (and builds them again in its backward), after a
 * training forward of the batch they hold and of a smaller one, and after
 * evaluation forwards on other inputs, which leave them stale. */
static void test_kept_columns(void)
{
    mg_model *m[2] = {NULL, NULL};
    mg_error err = {0};
    for (int k = 0; k < 2; k++) {
        CHECK_OK(mg_graph_begin(&m[k], "kept-test", 2, 9, 9, 3, 0, &err), &err);
        if (!m[k])
            break;
        int c1 = mg_g_fuse_act(m[k], mg_g_conv(m[k], "conv1", 0, 4, 3, 2, 1, 1, 1), MG_ACT_RELU);
        int c2 = mg_g_fuse_act(m[k], mg_g_conv(m[k], "conv2", c1, 6, 3, 2, 1, 2, 0), MG_ACT_RELU);
        int c3 = mg_g_conv(m[k], "conv3", c2, 4, 1, 2, 0, 1, 1);
        int logits = mg_g_linear(m[k], "fc", mg_g_flatten(m[k], c3), 3, 1);
        CHECK_OK(mg_graph_finish(&m[k], logits, &err), &err);
    }
    mg_rng rx;
    if (!twins_ready(&m[0], &m[1], 11, "kept", &rx))
        return;
    float x[8 * 162];
    int32_t y[6];
    fill_uniform(x, sizeof x / sizeof x[0], -1, 1, &rx);
    for (int i = 0; i < 6; i++)
        y[i] = i % 3;
    /* Buffers for 6 first, so that the columns, kept for 4, hold fewer than they. */
    kept_step(m, 0, x, y, 6, "evaluation forwards only (batch 6)");
    CHECK(m[0]->cap_cols == 0);
    kept_step(m, 1, x, y, 4, "strided convolutions, kept columns (batch 4)");
    CHECK(m[0]->cap_cols == 4 && m[0]->cols_batch == 4 && m[1]->cap_cols == 0);
    kept_step(m, 0, x + 2 * 162, y, 4, "an evaluation forward after it, other inputs");
    CHECK(m[0]->cap_cols == 4 && m[0]->cols_batch == 0);
    kept_step(m, 1, x + 162, y, 4, "kept again (batch 4)");
    kept_step(m, 0, x + 2 * 162, y, 6, "an evaluation batch of 6, past the kept 4");
    CHECK(m[0]->cap_cols == 4 && m[0]->cols_batch == 0);
    kept_step(m, 1, x + 5 * 162, y, 2, "a training batch of 2 within the kept 4");
    CHECK(m[0]->cols_batch == 2);
    mg_model_destroy(&m[0]);
    mg_model_destroy(&m[1]);
}

static void test_fused_graph(void)
{
    mg_model *mf = build_small(1), *ms = build_small(0);
    mg_rng rx;
    if (!twins_ready(&mf, &ms, 7, "fused", &rx))
        return;
    const int B = 5;
    float x[5 * 128];
    int32_t y[5];
    fill_uniform(x, sizeof x / sizeof x[0], -1, 1, &rx);
    for (int i = 0; i < B; i++)
        y[i] = i % 3;
    double lf = check_same_step(mf, 1, ms, 1, x, y, B, 128, 3);
    printf("  fused ReLU and Tanh: logits, loss %.6f and every gradient as with separate activations\n", lf);
    mg_model_destroy(&mf);
    mg_model_destroy(&ms);

    mg_error err = {0};
    /* Activations that do not fold, or a value that is not the last output, get an operation. */
    mg_model *m = NULL;
    CHECK_OK(mg_graph_begin(&m, "fused-test", 1, 1, 6, 2, 0, &err), &err);
    if (!m)
        return;
    int l1 = mg_g_linear(m, "fc1", 0, 4, 1);
    CHECK(mg_g_fuse_act(m, l1, MG_ACT_GELU) != l1);
    int l2 = mg_g_linear(m, "fc2", l1, 4, 1);
    int l3 = mg_g_linear(m, "fc3", l2, 4, 1);
    CHECK(mg_g_fuse_act(m, l2, MG_ACT_RELU) != l2);
    CHECK(mg_g_fuse_act(m, mg_g_add(m, l3, l3, 0), MG_ACT_TANH) >= 0);
    mg_model_destroy(&m);
}

/* A residual block, conv -> BN+ReLU -> conv -> BN, plus a 1x1 conv -> BN
 * shortcut (or, with identity, the first BN+ReLU's output as the shortcut,
 * as in ResNet's identity blocks), added and through a ReLU: with the ReLUs
 * fused into the batch norms and the add (whose backward masks by the bits
 * the forward keeps when every channel is whole bytes of them, and by the
 * output otherwise, in the batch norm's gradient and in the shortcut's)
 * against the same graph with separate ReLUs. */
static mg_model *build_block(int fused, int hw, int identity)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "bn-relu-test", 2, hw, hw, 3, 0, &err), &err);
    if (!m)
        return NULL;
    int a = mg_g_bn(m, "bn1", mg_g_conv(m, "conv1", 0, 4, 3, 1, 1, 1, 0), fused);
    if (!fused)
        a = mg_g_act(m, a, MG_ACT_RELU);
    int b = mg_g_bn(m, "bn2", mg_g_conv(m, "conv2", a, 4, 3, 1, 1, 1, 0), 0);
    int sc = identity ? a : mg_g_bn(m, "bn3", mg_g_conv(m, "short", 0, 4, 1, 1, 0, 1, 0), 0);
    int o = mg_g_add(m, b, sc, fused);
    if (!fused)
        o = mg_g_act(m, o, MG_ACT_RELU);
    int logits = mg_g_linear(m, "fc", mg_g_flatten(m, mg_g_gap(m, o)), 3, 1);
    CHECK_OK(mg_graph_finish(&m, logits, &err), &err);
    return m;
}

static void test_bn_relu_bits(int hw, int B, int identity)
{
    mg_model *mf = build_block(1, hw, identity), *ms = build_block(0, hw, identity);
    mg_rng rx;
    if (!twins_ready(&mf, &ms, 11, "bn-relu", &rx))
        return;
    const size_t in = (size_t)2 * hw * hw;
    float *x = malloc((size_t)B * in * sizeof(float));
    int32_t y[8];
    if (!x || B > 8) {
        CHECK(0);
        free(x);
        mg_model_destroy(&mf);
        mg_model_destroy(&ms);
        return;
    }
    fill_uniform(x, (size_t)B * in, -1, 1, &rx);
    for (int i = 0; i < B; i++)
        y[i] = i % 3;
    /* Twice: the second forward's bits replace the first's. */
    for (int rep = 0; rep < 2; rep++) {
        check_same_step(mf, 1, ms, 1, x, y, B, in, 3);
        for (size_t i = 0; i < (size_t)B * in; i++)
            x[i] = -x[i];
    }
    printf("  residual block (%s shortcut), %dx%d planes, batch %d (%s): fused ReLUs give every gradient bit for "
           "bit\n",
           identity ? "identity" : "conv", hw, hw, B,
           (size_t)B * hw * hw % 8 == 0 ? "mask as bits" : "mask from the output");
    free(x);
    mg_model_destroy(&mf);
    mg_model_destroy(&ms);
}

/* ---- batch-norm statistics from the convolution before it ---------------------------------- */

/* A convolution whose chunks are whole output planes sums them for a
 * training batch norm after it (mg_conv2d_forward_sums returns 1), and the
 * batch norm's forward from those sums gives the bits of its forward
 * summing them itself: output, mean, rstd and running statistics. */
static void bn_sums_case(mg_rng *rng, int N, int C, int H, int OC, int stride, int groups, int act, int expect)
{
    mg_conv2d_shape s = {
        .N = N, .C = C, .H = H, .W = H, .OC = OC, .KH = 3, .KW = 3, .stride = stride, .pad = 1, .groups = groups};
    CHECK_INT_EQ(mg_conv2d_shape_init(&s), 0);
    const int G = groups > 1 ? groups : 1, P = s.OH * s.OW;
    const size_t ni = (size_t)N * C * H * H, no = (size_t)N * OC * P, nw = (size_t)OC * (C / G) * 9;
    const mg_layout li = {(size_t)H * H, (size_t)N * H * H}, lo = {(size_t)P, (size_t)N * P};
    float *inp = malloc(ni * sizeof(float)), *w = malloc(nw * sizeof(float)), *out = malloc(no * sizeof(float));
    float *scratch = malloc((mg_conv2d_scratch(&s) + 1) * sizeof(float));
    float *o1 = malloc(no * sizeof(float)), *o2 = malloc(no * sizeof(float));
    float *gb = malloc(2 * (size_t)OC * sizeof(float)); /* gamma, beta */
    float *st1 = malloc(4 * (size_t)OC * sizeof(float)), *st2 = malloc(4 * (size_t)OC * sizeof(float));
    double *sums = malloc(3 * (size_t)OC * sizeof(double));
    fill_uniform(inp, ni, -1, 1, rng);
    fill_uniform(w, nw, -1, 1, rng);
    fill_uniform(gb, 2 * (size_t)OC, 0.5, 1.5, rng);
    fill_uniform(st1, 4 * (size_t)OC, 0.5, 1.5, rng); /* mean, rstd (written), running mean and variance */
    memcpy(st2, st1, 4 * (size_t)OC * sizeof(float));
    for (size_t i = 0; i < 3 * (size_t)OC; i++)
        sums[i] = NAN;
    const int got = mg_conv2d_forward_sums(out, lo, inp, li, w, NULL, &s, scratch, act, NULL, sums);
    /* The direct kernels sum every plane the batch norm sums by plane. */
    CHECK_INT_EQ(got, mg_conv3_ok(&s) && groups <= 1 ? mg_bn_sums_by_plane(P) : expect);
    const size_t c = (size_t)OC;
    mg_bn_forward_fused(o1, st1, st1 + c, out, lo, gb, gb + c, st1 + 2 * c, st1 + 3 * c, N, OC, P, 1, 0.1f, 1e-5f, NULL,
                        1, NULL, got ? sums : NULL);
    mg_bn_forward_fused(o2, st2, st2 + c, out, lo, gb, gb + c, st2 + 2 * c, st2 + 3 * c, N, OC, P, 1, 0.1f, 1e-5f, NULL,
                        1, NULL, NULL);
    mg_test_checks_++;
    if (memcmp(o1, o2, no * sizeof(float)) != 0 || memcmp(st1, st2, 4 * c * sizeof(float)) != 0)
        MG_T_FAIL_("conv %d->%d %dx%d s%d g%d: the batch norm from the convolution's sums is not bit for bit the "
                   "one that sums itself",
                   C, OC, H, H, stride, groups);
    printf("  conv %d->%d %dx%d s%d g%d act%d, batch norm after it: %s\n", C, OC, H, H, stride, groups, act,
           got ? "the convolution's sums give the same bits" : "sums its statistics itself");
    free(inp), free(w), free(out), free(scratch), free(o1), free(o2), free(gb), free(st1), free(st2), free(sums);
}

/* A model whose batch norms follow convolutions of every kind: by kernel
 * columns and by parity (these sum for the batch norm), and on the im2col
 * path (the batch norm sums itself). After a training forward, each batch
 * norm's mean and rstd are the bits of a batch norm run on its input alone. */
static void test_bn_sums_model(void)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "bn-sums-test", 2, 16, 16, 3, 0, &err), &err);
    if (!m)
        return;
    int x = mg_g_bn(m, "bn1", mg_g_conv(m, "conv1", 0, 16, 3, 1, 1, 1, 0), 1);
    x = mg_g_bn(m, "bn2", mg_g_conv(m, "conv2", x, 16, 3, 1, 1, 1, 0), 1);
    x = mg_g_bn(m, "bn3", mg_g_conv(m, "conv3", x, 32, 3, 2, 1, 1, 0), 1);
    int logits = mg_g_linear(m, "fc", mg_g_flatten(m, mg_g_gap(m, x)), 3, 1);
    CHECK_OK(mg_graph_finish(&m, logits, &err), &err);
    if (!m)
        return;
    mg_rng r;
    mg_rng_seed(&r, 5, "bn-sums", "init");
    mg_model_init_params(m, &r);
    enum { B = 4 };
    float *xin = malloc((size_t)B * 2 * 256 * sizeof(float));
    fill_uniform(xin, (size_t)B * 2 * 256, -1, 1, &r);
    for (int rep = 0; rep < 2; rep++) {
        CHECK_OK(mg_model_forward(m, xin, B, 1, NULL, &err), &err);
        int checked = 0;
        for (int i = 0; i < m->n_ops; i++) {
            const mg_op *op = &m->ops[i];
            if (op->kind != MG_OP_BN)
                continue;
            const int v = op->in[0], C = op->C, S = op->S;
            CHECK_INT_EQ(m->values[v].root, v);
            const mg_layout l = {(size_t)S, (size_t)B * S};
            float *o = malloc((size_t)B * C * S * sizeof(float)), *st = malloc(4 * (size_t)C * sizeof(float));
            for (int k = 0; k < 2 * C; k++)
                st[2 * C + k] = k < C ? 0.0f : 1.0f;
            mg_bn_forward_fused(o, st, st + C, m->act[v], l, mg_model_params(m) + op->w, mg_model_params(m) + op->b,
                                st + 2 * C, st + 3 * C, B, C, S, 1, 0.1f, 1e-5f, NULL, 1, NULL, NULL);
            mg_test_checks_++;
            if (memcmp(st, m->cache[i], 2 * (size_t)C * sizeof(float)) != 0)
                MG_T_FAIL_("batch norm op %d: the model's statistics are not the bits of the batch norm alone", i);
            checked++;
            free(o), free(st);
        }
        CHECK_INT_EQ(checked, 3);
        for (size_t i = 0; i < (size_t)B * 2 * 256; i++)
            xin[i] = 0.5f * xin[i] + 0.25f;
    }
    printf("  model with batch norms after convolutions of each path: the statistics of each batch norm alone\n");
    free(xin);
    mg_model_destroy(&m);
}

int main(void)
{
    const char *conv = getenv("MIAGRID_CONV");
    if (conv && strcmp(conv, "direct") == 0 && !mg_conv3_active()) {
        printf("MIAGRID_CONV=direct, but this CPU has no AVX-512: skipped\n");
        return MG_TEST_SKIP;
    }
    mg_rng rng;
    mg_rng_seed(&rng, 1, "test_fastpath", "main");
    test_conv(&rng);
    test_pool(&rng);
    test_tanh();
    test_sgd(&rng);
    test_fused_graph();
    test_kept_columns();
    for (int identity = 0; identity < 2; identity++) {
        test_bn_relu_bits(4, 2, identity);
        test_bn_relu_bits(4, 8, identity);
        test_bn_relu_bits(3, 5, identity);
    }
    /* By kernel columns, one group and two, with a ReLU; by parity; chunks
     * smaller than a plane (by columns, by parity); the im2col path. */
    bn_sums_case(&rng, 3, 16, 16, 16, 1, 1, MG_NO_ACT, 1);
    bn_sums_case(&rng, 2, 32, 16, 32, 1, 2, MG_ACT_RELU, 1);
    bn_sums_case(&rng, 3, 16, 16, 32, 2, 1, MG_NO_ACT, 1);
    bn_sums_case(&rng, 2, 64, 32, 64, 1, 1, MG_NO_ACT, 0);
    bn_sums_case(&rng, 2, 64, 32, 64, 2, 1, MG_NO_ACT, 0);
    bn_sums_case(&rng, 2, 4, 16, 8, 1, 1, MG_NO_ACT, 0);
    test_bn_sums_model();
    MG_TEST_MAIN_END();
}
