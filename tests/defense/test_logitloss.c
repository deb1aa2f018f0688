/* test_logitloss.c: PPB's sorted-profile KL term and RelaxLoss's batch loss.
 * Gradients against central finite differences of the returned values (rows
 * kept away from sort and argmax ties, alpha away from L); PPB's value
 * against a reference computed here by sorting copies of the rows, its zero
 * on matching halves, its b < 2 and lambda behaviour and the untouched odd
 * row; RelaxLoss's four branches against the cross-entropy gradient and the
 * soft-target loss formed here from a stable log-softmax, its parity rule,
 * the kink at L == alpha and the plain mean cross-entropy it reports. */
#include "mg_test.h"
#include "miagrid/defense.h"

#include <stdint.h>

/* ---- helpers ---------------------------------------------------------------------------------- */

/* The finite-difference step: the rows' logits are at least MIN_GAP apart,
 * so no perturbation crosses a sort or argmax tie. */
#define FD_STEP 1e-3f
#define MIN_GAP 0.02

static double row_min_gap(const float *z, int K)
{
    double g = INFINITY;
    for (int i = 0; i < K; i++)
        for (int j = i + 1; j < K; j++)
            g = fmin(g, fabs((double)z[i] - (double)z[j]));
    return g;
}

/* Normal logits times scale, each row redrawn until its classes are MIN_GAP apart. */
static void random_logits(mg_rng *rng, float *z, int b, int K, double scale)
{
    for (int i = 0; i < b; i++) {
        float *row = z + (size_t)i * K;
        do {
            for (int k = 0; k < K; k++)
                row[k] = (float)(scale * mg_rng_normal(rng));
        } while (row_min_gap(row, K) < MIN_GAP);
    }
}

/* log-softmax of one row in double, shifted by the row's largest logit */
static void log_softmax(const float *z, int K, double *lp)
{
    double mx = z[0];
    for (int k = 1; k < K; k++)
        mx = fmax(mx, z[k]);
    double s = 0.0;
    for (int k = 0; k < K; k++)
        s += exp((double)z[k] - mx);
    double lse = mx + log(s);
    for (int k = 0; k < K; k++)
        lp[k] = (double)z[k] - lse;
}

static double plain_ce(const float *z, const int32_t *y, int b, int K)
{
    double lp[64], total = 0.0;
    for (int i = 0; i < b; i++) {
        log_softmax(z + (size_t)i * K, K, lp);
        total -= lp[y[i]];
    }
    return total / b;
}

/* g = (softmax - onehot) / b, the mean cross-entropy's gradient */
static void plain_ce_grad(const float *z, const int32_t *y, int b, int K, double *g)
{
    double lp[64];
    for (int i = 0; i < b; i++) {
        log_softmax(z + (size_t)i * K, K, lp);
        for (int k = 0; k < K; k++)
            g[(size_t)i * K + k] = (exp(lp[k]) - (k == y[i])) / b;
    }
}

static int argmax_first(const float *z, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[best])
            best = k;
    return best;
}

/* A loss as a function of the logits alone, for finite differences; scratch
 * (b*K) takes the gradient the function under test writes. */
typedef double (*loss_fn)(const float *z, const void *ctx, float *scratch);

/* Every entry of grad against (f(z + h e_j) - f(z - h e_j)) / (2h), h being the
 * float step actually taken. */
static void check_fd(const char *what, loss_fn f, const void *ctx, float *z, int n, const float *grad, double tol)
{
    float *scratch = calloc((size_t)n, sizeof *scratch);
    double worst = 0.0;
    int worst_j = -1;
    for (int j = 0; j < n; j++) {
        float orig = z[j], zp = orig + FD_STEP, zm = orig - FD_STEP;
        z[j] = zp;
        double fp = f(z, ctx, scratch);
        z[j] = zm;
        double fm = f(z, ctx, scratch);
        z[j] = orig;
        double fd = (fp - fm) / ((double)zp - (double)zm);
        double err = fabs(fd - (double)grad[j]) / (1.0 + fabs(fd));
        if (!(err <= worst)) {
            worst = err;
            worst_j = j;
        }
    }
    mg_test_checks_++;
    if (!(worst <= tol))
        MG_T_FAIL_("%s: finite differences: worst relative error %.3g at [%d] > %.3g", what, worst, worst_j, tol);
    free(scratch);
}

/* ---- PPB -------------------------------------------------------------------------------------- */

typedef struct {
    int b, K;
    double lambda;
} ppb_ctx;

static double ppb_value(const float *z, const void *ctx, float *scratch)
{
    const ppb_ctx *c = ctx;
    return mg_ppb_term(z, c->b, c->K, c->lambda, scratch);
}

static int cmp_desc(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

/* lambda/n * sum_i KL(softmax(sort z_{n+i}) || softmax(sort z_i)), from sorted copies */
static double ppb_reference(const float *z, int b, int K, double lambda)
{
    int n = b / 2;
    if (n == 0)
        return 0.0;
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        double a[64], c[64], lp[64], lq[64];
        float fa[64], fc[64];
        for (int k = 0; k < K; k++) {
            a[k] = z[(size_t)i * K + k];
            c[k] = z[(size_t)(n + i) * K + k];
        }
        qsort(a, (size_t)K, sizeof *a, cmp_desc);
        qsort(c, (size_t)K, sizeof *c, cmp_desc);
        for (int k = 0; k < K; k++) {
            fa[k] = (float)a[k];
            fc[k] = (float)c[k];
        }
        log_softmax(fa, K, lp);
        log_softmax(fc, K, lq);
        for (int k = 0; k < K; k++)
            total += exp(lq[k]) * (lq[k] - lp[k]);
    }
    return lambda * total / n;
}

static void test_ppb_gradients(void)
{
    static const int shapes[][2] = {{2, 2}, {2, 3}, {3, 4}, {5, 4}, {6, 7}, {8, 10}, {9, 5}, {4, 30}};
    mg_rng rng;
    mg_rng_seed(&rng, 11, "logitloss", "ppb-fd");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int b = shapes[s][0], K = shapes[s][1], n = b * K;
        float *z = malloc((size_t)n * sizeof *z), *d = malloc((size_t)n * sizeof *d);
        float *g = malloc((size_t)n * sizeof *g);
        random_logits(&rng, z, b, K, 2.0);
        ppb_ctx c = {b, K, 1.7};
        /* dlogits starts non-zero: the function adds to it */
        for (int j = 0; j < n; j++)
            d[j] = (float)(0.25 * j - 1.0);
        double v = mg_ppb_term(z, b, K, c.lambda, d);
        for (int j = 0; j < n; j++)
            g[j] = d[j] - (float)(0.25 * j - 1.0);
        CHECK(v > 0.0);
        CHECK_NEAR(v, ppb_reference(z, b, K, c.lambda), 1e-12 * (1.0 + v));
        char what[64];
        snprintf(what, sizeof what, "ppb b=%d K=%d", b, K);
        check_fd(what, ppb_value, &c, z, n, g, 2e-5);
        /* an odd last row takes no part */
        if (b % 2) {
            for (int k = 0; k < K; k++)
                CHECK(g[(size_t)(b - 1) * K + k] == 0.0f);
            float save = z[(size_t)(b - 1) * K];
            z[(size_t)(b - 1) * K] += 5.0f;
            CHECK(mg_ppb_term(z, b, K, c.lambda, d) == v);
            z[(size_t)(b - 1) * K] = save;
        }
        free(z);
        free(d);
        free(g);
    }
}

static void test_ppb_matching_halves(void)
{
    mg_rng rng;
    mg_rng_seed(&rng, 12, "logitloss", "ppb-zero");
    enum { B = 7, K = 6 };
    float z[B * K], d[B * K], base[B * K];
    random_logits(&rng, z, B, K, 2.0);
    int n = B / 2;
    /* identical rows: exactly zero, and no gradient anywhere */
    for (int i = 0; i < n; i++)
        memcpy(z + (size_t)(n + i) * K, z + (size_t)i * K, K * sizeof(float));
    for (int j = 0; j < B * K; j++)
        base[j] = d[j] = (float)j;
    CHECK(mg_ppb_term(z, B, K, 3.0, d) == 0.0);
    CHECK_TENSOR_NEAR(d, base, B * K, 0.0);
    /* the partners' classes permuted (reversed, rotated): the same sorted
     * profiles, so zero to rounding, though the rows differ */
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++)
            z[(size_t)(n + i) * K + k] = z[(size_t)i * K + (i % 2 ? K - 1 - k : (k + i + 1) % K)];
    CHECK(memcmp(z, z + (size_t)n * K, K * sizeof(float)) != 0);
    double v = mg_ppb_term(z, B, K, 3.0, d);
    CHECK_NEAR(v, 0.0, 1e-14);
    CHECK_TENSOR_NEAR(d, base, B * K, 1e-12);
    /* one row changed: positive */
    z[0] += 0.5f;
    CHECK(mg_ppb_term(z, B, K, 3.0, d) > 1e-6);
}

static void test_ppb_edges(void)
{
    mg_rng rng;
    mg_rng_seed(&rng, 13, "logitloss", "ppb-edges");
    enum { B = 6, K = 5 };
    float z[B * K], d1[B * K], d2[B * K], zero[B * K];
    random_logits(&rng, z, B, K, 1.5);
    memset(zero, 0, sizeof zero);
    /* b < 2: nothing to pair */
    memset(d1, 0, sizeof d1);
    CHECK(mg_ppb_term(z, 0, K, 2.0, d1) == 0.0);
    CHECK(mg_ppb_term(z, 1, K, 2.0, d1) == 0.0);
    CHECK_TENSOR_NEAR(d1, zero, B * K, 0.0);
    /* one class: a single sorted probability of 1 on both sides */
    CHECK(mg_ppb_term(z, B, 1, 2.0, d1) == 0.0);
    CHECK_TENSOR_NEAR(d1, zero, B * K, 0.0);
    /* linear in lambda, value and gradient; lambda 0 adds nothing */
    memset(d1, 0, sizeof d1);
    memset(d2, 0, sizeof d2);
    double v1 = mg_ppb_term(z, B, K, 1.0, d1);
    double v2 = mg_ppb_term(z, B, K, 2.5, d2);
    CHECK(v1 > 0.0);
    CHECK_NEAR(v2, 2.5 * v1, 1e-14 * v2);
    for (int j = 0; j < B * K; j++)
        d1[j] *= 2.5f;
    CHECK_TENSOR_NEAR(d2, d1, B * K, 1e-6);
    memset(d1, 0, sizeof d1);
    CHECK(mg_ppb_term(z, B, K, 0.0, d1) == 0.0);
    CHECK_TENSOR_NEAR(d1, zero, B * K, 0.0);
    /* the direction: the second half's profile is the reference distribution,
     * so exchanging the halves changes the value */
    float sw[B * K];
    memcpy(sw, z + (size_t)(B / 2) * K, (size_t)(B / 2) * K * sizeof(float));
    memcpy(sw + (size_t)(B / 2) * K, z, (size_t)(B / 2) * K * sizeof(float));
    double vs = mg_ppb_term(sw, B, K, 1.0, d1);
    CHECK(fabs(vs - v1) > 1e-6);
    CHECK_NEAR(vs, ppb_reference(sw, B, K, 1.0), 1e-12);
    /* more classes than the stack buffers hold: NaN, dlogits untouched */
    int kbig = MG_PPB_MAX_CLASSES + 1;
    float *zb = calloc((size_t)2 * kbig, sizeof *zb), *db = calloc((size_t)2 * kbig, sizeof *db);
    zb[0] = 1.0f;
    CHECK(isnan(mg_ppb_term(zb, 2, kbig, 1.0, db)));
    int untouched = 1;
    for (int j = 0; j < 2 * kbig; j++)
        untouched &= db[j] == 0.0f;
    CHECK(untouched);
    /* the largest accepted K works, far from ties or not */
    for (int j = 0; j < 2 * MG_PPB_MAX_CLASSES; j++)
        zb[j] = (float)((j * 37) % 101) / 25.0f;
    double vbig = mg_ppb_term(zb, 2, MG_PPB_MAX_CLASSES, 1.0, db);
    CHECK(isfinite(vbig) && vbig >= 0.0);
    free(zb);
    free(db);
}

/* ---- RelaxLoss -------------------------------------------------------------------------------- */

typedef struct {
    const int32_t *y;
    int b, K, epoch;
    double alpha;
} relax_ctx;

static double relax_value(const float *z, const void *ctx, float *scratch)
{
    const relax_ctx *c = ctx;
    return mg_relaxloss(z, c->y, c->b, c->K, c->alpha, c->epoch, scratch, NULL);
}

/* Posterior flattening's loss built here: soft targets t (t_y = p_y, others
 * (1 - p_y)/(K - 1)), mean of (1 - correct) CE(t, p) - CE(onehot, p). */
static double flatten_reference(const float *z, const int32_t *y, int b, int K)
{
    double total = 0.0;
    for (int i = 0; i < b; i++) {
        const float *row = z + (size_t)i * K;
        double lp[64], t[64];
        log_softmax(row, K, lp);
        double py = exp(lp[y[i]]);
        for (int k = 0; k < K; k++)
            t[k] = k == y[i] ? py : (1.0 - py) / (K - 1);
        double tsum = 0.0, soft = 0.0;
        for (int k = 0; k < K; k++) {
            tsum += t[k];
            soft -= t[k] * lp[k];
        }
        CHECK_NEAR(tsum, 1.0, 1e-12);
        int correct = argmax_first(row, K) == y[i];
        total += (correct ? 0.0 : soft) + lp[y[i]];
    }
    return total / b;
}

/* Labels: the argmax on even rows (correctly classified), another class on odd ones. */
static void mixed_labels(mg_rng *rng, const float *z, int b, int K, int32_t *y)
{
    for (int i = 0; i < b; i++) {
        int am = argmax_first(z + (size_t)i * K, K);
        y[i] = (i % 2 == 0 || K == 1) ? am : (int32_t)((am + 1 + (int)mg_rng_below(rng, (uint64_t)(K - 1))) % K);
    }
}

/* dlogits against scale times the cross-entropy gradient */
static void check_ce_scaled(const char *what, const float *d, const double *g, int n, double scale)
{
    double worst = 0.0;
    for (int j = 0; j < n; j++)
        worst = fmax(worst, fabs((double)d[j] - scale * g[j]));
    mg_test_checks_++;
    if (!(worst <= 1e-7))
        MG_T_FAIL_("%s: gradient differs from %g * CE gradient by %.3g", what, scale, worst);
}

static void test_relax_branches(void)
{
    static const int shapes[][2] = {{1, 2}, {3, 5}, {6, 10}, {9, 3}, {4, 40}};
    mg_rng rng;
    mg_rng_seed(&rng, 21, "logitloss", "relax");
    for (size_t s = 0; s < sizeof shapes / sizeof shapes[0]; s++) {
        int b = shapes[s][0], K = shapes[s][1], n = b * K;
        float *z = malloc((size_t)n * sizeof *z), *d = malloc((size_t)n * sizeof *d);
        double *g = malloc((size_t)n * sizeof *g);
        int32_t *y = malloc((size_t)b * sizeof *y);
        random_logits(&rng, z, b, K, 2.0);
        mixed_labels(&rng, z, b, K, y);
        double L = plain_ce(z, y, b, K);
        plain_ce_grad(z, y, b, K, g);
        CHECK(L > 0.1);
        char what[96];

        /* alpha below L: even and odd epochs both descend on L */
        static const int epochs[] = {0, 1, 2, 7, 10, -1};
        for (size_t e = 0; e < sizeof epochs / sizeof epochs[0]; e++) {
            int ep = epochs[e];
            int odd = ep % 2 != 0;
            for (int above = 0; above < 2; above++) {
                double alpha = above ? L + 0.5 : 0.5 * L;
                double ce = -1.0;
                for (int j = 0; j < n; j++)
                    d[j] = 123.0f; /* the function writes, not adds */
                double v = mg_relaxloss(z, y, b, K, alpha, ep, d, &ce);
                CHECK_NEAR(ce, L, 1e-12);
                snprintf(what, sizeof what, "relaxloss b=%d K=%d epoch=%d alpha=%s L", b, K, ep, above ? ">" : "<");
                if (!odd) {
                    /* |L - alpha|: descent above alpha, ascent below */
                    CHECK_NEAR(v, fabs(L - alpha), 1e-12);
                    check_ce_scaled(what, d, g, n, above ? -1.0 : 1.0);
                } else if (!above) {
                    CHECK_NEAR(v, L, 1e-12);
                    check_ce_scaled(what, d, g, n, 1.0);
                } else {
                    /* posterior flattening */
                    CHECK_NEAR(v, flatten_reference(z, y, b, K), 1e-12);
                    for (int i = 0; i < b; i++) {
                        int correct = argmax_first(z + (size_t)i * K, K) == y[i];
                        const float *di = d + (size_t)i * K;
                        const double *gi = g + (size_t)i * K;
                        if (correct) {
                            /* ascent on its cross-entropy, nothing else */
                            check_ce_scaled(what, di, gi, K, -1.0);
                        } else {
                            /* the soft target is not detached: the rows differ
                             * from the detached form (onehot - t) / b by
                             * dCE(t,p)/dp_y * dp_y/dz = -(lp_y - mean_{k!=y} lp_k) p_y (onehot - p) / b */
                            double lp[64], py, other = 0.0, worst = 0.0, through = 0.0;
                            log_softmax(z + (size_t)i * K, K, lp);
                            py = exp(lp[y[i]]);
                            for (int k = 0; k < K; k++)
                                if (k != y[i])
                                    other += lp[k] / (K - 1);
                            for (int k = 0; k < K; k++) {
                                double t = k == y[i] ? py : (1.0 - py) / (K - 1);
                                worst = fmax(worst, fabs(di[k] - ((k == y[i]) - t) / b));
                                through = fmax(through,
                                               fabs((lp[y[i]] - other) * py * ((k == y[i]) - exp(lp[k])) / b));
                            }
                            CHECK(through > 0.0);
                            CHECK_NEAR(worst, through, 1e-7);
                        }
                    }
                }
                relax_ctx c = {y, b, K, ep, alpha};
                check_fd(what, relax_value, &c, z, n, d, 2e-5);
            }
        }
        free(z);
        free(d);
        free(g);
        free(y);
    }
}

static void test_relax_edges(void)
{
    mg_rng rng;
    mg_rng_seed(&rng, 22, "logitloss", "relax-edges");
    enum { B = 5, K = 4 };
    float z[B * K], d[B * K], zero[B * K];
    int32_t y[B];
    random_logits(&rng, z, B, K, 2.0);
    mixed_labels(&rng, z, B, K, y);
    memset(zero, 0, sizeof zero);
    double L = 0.0;
    mg_relaxloss(z, y, B, K, 1.0, 0, d, &L);
    /* L == alpha: the kink of |L - alpha| (no gradient) in even epochs,
     * flattening (not descent) in odd ones */
    for (int j = 0; j < B * K; j++)
        d[j] = 7.0f;
    CHECK(mg_relaxloss(z, y, B, K, L, 4, d, NULL) == 0.0);
    CHECK_TENSOR_NEAR(d, zero, B * K, 0.0);
    CHECK_NEAR(mg_relaxloss(z, y, B, K, L, 5, d, NULL), flatten_reference(z, y, B, K), 1e-12);
    /* the ce pointer is optional and the value does not depend on it */
    double with = mg_relaxloss(z, y, B, K, 0.3, 3, d, &L), without = mg_relaxloss(z, y, B, K, 0.3, 3, d, NULL);
    CHECK(with == without);
    /* an empty batch */
    double ce = -1.0;
    for (int j = 0; j < B * K; j++)
        d[j] = 7.0f;
    CHECK(mg_relaxloss(z, y, 0, K, 1.0, 1, d, &ce) == 0.0);
    CHECK(ce == 0.0);
    CHECK(d[0] == 7.0f);
    /* one class: cross-entropy 0 below any alpha; no gradient in any branch */
    int32_t y1[B] = {0};
    for (int ep = 0; ep < 2; ep++) {
        double v = mg_relaxloss(z, y1, B, 1, 0.5, ep, d, &ce);
        CHECK_NEAR(ce, 0.0, 1e-15);
        CHECK_NEAR(v, ep ? 0.0 : 0.5, 1e-15);
        CHECK_TENSOR_NEAR(d, zero, B, 1e-15);
    }
    /* argmax ties go to the first class, as torch.argmax's do: with the
     * true class second among equals the sample counts as misclassified */
    float zt[2 * 3] = {1.0f, 1.0f, -0.5f, 0.25f, 0.25f, 0.0f};
    int32_t yt[2] = {1, 0};
    float dt[2 * 3];
    double vt = mg_relaxloss(zt, yt, 2, 3, 10.0, 1, dt, NULL);
    CHECK_NEAR(vt, flatten_reference(zt, yt, 2, 3), 1e-12);
    CHECK(vt > -plain_ce(zt, yt, 2, 3) + 1e-3); /* row 0's soft-target term is there */
    /* large logits stay finite: the log-softmax is shifted */
    float zl[2 * 3] = {900.0f, 0.0f, -900.0f, -400.0f, 400.0f, 0.0f};
    int32_t yl[2] = {0, 0};
    float dl[2 * 3];
    for (int flat = 0; flat < 2; flat++) {
        double v = mg_relaxloss(zl, yl, 2, 3, flat ? 1000.0 : 100.0, 1, dl, &ce);
        CHECK_NEAR(ce, 400.0, 1e-9);
        CHECK(isfinite(v));
        for (int j = 0; j < 6; j++)
            CHECK(isfinite(dl[j]));
    }
}

int main(void)
{
    test_ppb_gradients();
    test_ppb_matching_halves();
    test_ppb_edges();
    test_relax_branches();
    test_relax_edges();
    MG_TEST_MAIN_END();
}
