/*
 * test_advreg.c: Nasr et al.'s adversarial regularisation. The classifier's
 * term's logit gradient against central differences of its value for
 * several K; the inference model's steps raise its gain from about -2 log 2
 * towards 0 when members are told apart by their confidence, and leave it
 * near -2 log 2 (held out) when members and references come from one
 * distribution; the term leaves h's parameters and Adam state alone and a
 * step leaves its inputs alone; save and load reproduce the term bit for bit
 * (and the next step, so the Adam state came along) and refuse another K or
 * a damaged group without changing anything; argument errors.
 */
#include "mg_test.h"
#include "miagrid/defense.h"
#include "miagrid/store.h"

#include <stdint.h>
#include <unistd.h>

#define LOG2 0.69314718055994530942

/* Rows of logits: "member" rows confident on their label (z_y + conf over
 * standard normal logits), "flat" rows small noise only. */
static void member_rows(mg_rng *r, float *z, int32_t *y, int n, int K, double conf)
{
    for (int i = 0; i < n; i++) {
        y[i] = (int32_t)mg_rng_below(r, (uint64_t)K);
        for (int k = 0; k < K; k++)
            z[(size_t)i * K + k] = (float)mg_rng_normal(r);
        z[(size_t)i * K + y[i]] += (float)conf;
    }
}

static void flat_rows(mg_rng *r, float *z, int32_t *y, int n, int K)
{
    for (int i = 0; i < n; i++) {
        y[i] = (int32_t)mg_rng_below(r, (uint64_t)K);
        for (int k = 0; k < K; k++)
            z[(size_t)i * K + k] = (float)(0.3 * mg_rng_normal(r));
    }
}

/* Half member-like, half flat, in random order: one distribution for both sides. */
static void mixed_rows(mg_rng *r, float *z, int32_t *y, int n, int K)
{
    for (int i = 0; i < n; i++) {
        if (mg_rng_uniform(r) < 0.5)
            member_rows(r, z + (size_t)i * K, y + i, 1, K, 4.0);
        else
            flat_rows(r, z + (size_t)i * K, y + i, 1, K);
    }
}

static mg_advreg *make(int K, double gamma, double lr, uint64_t seed)
{
    mg_advreg_cfg c = {.n_classes = K, .k_steps = 1, .gamma = gamma, .lr = lr};
    mg_advreg *a = NULL;
    mg_error err = {0};
    CHECK_OK(mg_advreg_create(&c, seed, &a, &err), &err);
    return a;
}

/* steps attack steps on fresh separable batches of n + n rows; the gains
 * (each before its step) go to gains (may be NULL). */
static void train_separable(mg_advreg *a, int K, int n, int steps, mg_rng *r, double *gains)
{
    float *zm = malloc((size_t)n * K * sizeof(float)), *zr = malloc((size_t)n * K * sizeof(float));
    int32_t *ym = malloc((size_t)n * sizeof(int32_t)), *yr = malloc((size_t)n * sizeof(int32_t));
    mg_error err = {0};
    for (int s = 0; s < steps; s++) {
        member_rows(r, zm, ym, n, K, 6.0);
        flat_rows(r, zr, yr, n, K);
        double g = 0.0;
        CHECK_OK(mg_advreg_attack_step(a, zm, ym, n, zr, yr, n, &g, &err), &err);
        if (gains)
            gains[s] = g;
    }
    free(zm), free(zr), free(ym), free(yr);
}

static double penalty_value(mg_advreg *a, const float *z, const int32_t *y, int b, int K)
{
    float *scratch = calloc((size_t)b * K, sizeof(float));
    double v = NAN;
    mg_error err = {0};
    CHECK_OK(mg_advreg_penalty(a, z, y, b, scratch, &v, &err), &err);
    free(scratch);
    return v;
}

/* ---- the term's gradient -------------------------------------------------------------- */

static void test_penalty_gradient(int K)
{
    enum { B = 3 };
    mg_rng r;
    mg_rng_seed(&r, 100 + (uint64_t)K, "advreg", "grad");
    mg_advreg *a = make(K, 0.8, 1e-3, 7);
    if (!a)
        return;
    /* Some training first, so that h depends on its input. */
    train_separable(a, K, 16, 20, &r, NULL);

    float *z = malloc((size_t)B * K * sizeof(float)), *zp = malloc((size_t)B * K * sizeof(float));
    float *g = calloc((size_t)B * K, sizeof(float)), *g2 = malloc((size_t)B * K * sizeof(float));
    double *fd = malloc((size_t)B * K * sizeof(double));
    int32_t y[B];
    for (int i = 0; i < B; i++) {
        y[i] = (int32_t)mg_rng_below(&r, (uint64_t)K);
        for (int k = 0; k < K; k++)
            z[i * K + k] = (float)(1.5 * mg_rng_normal(&r));
        z[i * K + y[i]] += 2.0f;
    }
    mg_error err = {0};
    double v = 0.0;
    CHECK_OK(mg_advreg_penalty(a, z, y, B, g, &v, &err), &err);
    CHECK(v < 0.0 && isfinite(v));

    /* It adds: from a filled gradient the difference is the same (up to the float addition). */
    for (int i = 0; i < B * K; i++)
        g2[i] = 0.25f;
    double v2 = 0.0;
    CHECK_OK(mg_advreg_penalty(a, z, y, B, g2, &v2, &err), &err);
    CHECK(v2 == v);
    double add_err = 0.0;
    for (int i = 0; i < B * K; i++) {
        double d = fabs(((double)g2[i] - 0.25) - (double)g[i]);
        add_err = d > add_err ? d : add_err;
    }
    CHECK(add_err <= 3e-8);

    /* Central differences, with the step the float logits actually took.
     * h is piecewise linear (ReLU): where a unit changes state within the
     * step the two one-sided differences disagree, and the gradient at z is
     * the slope on the side without the kink, so it is compared with the
     * nearer one-sided difference there. */
    const double eps = 3e-3, v0 = penalty_value(a, z, y, B, K);
    double *fwd = malloc((size_t)B * K * sizeof(double)), *bwd = malloc((size_t)B * K * sizeof(double));
    double gmax = 0.0;
    memcpy(zp, z, (size_t)B * K * sizeof(float));
    for (int j = 0; j < B * K; j++) {
        float up = (float)(z[j] + eps), dn = (float)(z[j] - eps);
        zp[j] = up;
        double vu = penalty_value(a, zp, y, B, K);
        zp[j] = dn;
        double vd = penalty_value(a, zp, y, B, K);
        zp[j] = z[j];
        fd[j] = (vu - vd) / ((double)up - (double)dn);
        fwd[j] = (vu - v0) / ((double)up - (double)z[j]);
        bwd[j] = (v0 - vd) / ((double)z[j] - (double)dn);
        gmax = fabs(fd[j]) > gmax ? fabs(fd[j]) : gmax;
    }
    const double tol = 1e-2 * gmax;
    double num = 0.0, den = 0.0, worst = 0.0;
    int kinks = 0;
    for (int j = 0; j < B * K; j++) {
        double ref = fd[j];
        if (fabs(fwd[j] - bwd[j]) > tol) {
            kinks++;
            ref = fabs(fwd[j] - g[j]) < fabs(bwd[j] - g[j]) ? fwd[j] : bwd[j];
        }
        double d = fabs(ref - (double)g[j]);
        num += d * d;
        den += ref * ref;
        worst = d > worst ? d : worst;
    }
    double rel = sqrt(num / (den > 0.0 ? den : 1.0));
    printf("  K=%-3d value %.6f, |grad|max %.3g, relative error %.2e, worst element %.2e (%d of %d steps cross "
           "a kink)\n", K, v, gmax, rel, worst, kinks, B * K);
    CHECK(gmax > 1e-5);   /* the check has something to compare */
    CHECK(rel < 1e-2);
    CHECK(worst <= tol + 1e-7);
    CHECK(kinks <= B * K / 5);
    free(fwd), free(bwd);

    /* Along the gradient itself many elements add up, and the float noise of
     * single elements averages out: d/dt v(z + t g/|g|) = |g|. */
    double gg = 0.0, du = 0.0, dd = 0.0;
    for (int j = 0; j < B * K; j++)
        gg += (double)g[j] * g[j];
    const double t = 1e-3 / sqrt(gg);
    for (int j = 0; j < B * K; j++) {
        zp[j] = (float)(z[j] + t * g[j]);
        du += ((double)zp[j] - z[j]) * g[j];
    }
    double vu = penalty_value(a, zp, y, B, K);
    for (int j = 0; j < B * K; j++) {
        zp[j] = (float)(z[j] - t * g[j]);
        dd += ((double)z[j] - zp[j]) * g[j];
    }
    double vd = penalty_value(a, zp, y, B, K), ratio = (vu - vd) / (du + dd);
    printf("        directional difference along the gradient / |g|^2 step: %.6f\n", ratio);
    CHECK(fabs(ratio - 1.0) < 5e-3);

    /* Each row's gradient sums to zero: softmax is shift-invariant. */
    for (int i = 0; i < B; i++) {
        double s = 0.0, m = 0.0;
        for (int k = 0; k < K; k++) {
            s += g[i * K + k];
            m = fabs(g[i * K + k]) > m ? fabs(g[i * K + k]) : m;
        }
        CHECK(fabs(s) <= 1e-5 * (m > 0 ? m : 1) * K);
    }
    free(z), free(zp), free(g), free(g2), free(fd);
    mg_advreg_destroy(&a);
}

/* gamma scales the term and its gradient; gamma 0 gives exactly 0 and adds nothing. */
static void test_penalty_gamma(void)
{
    enum { K = 6, B = 5 };
    mg_rng r;
    mg_rng_seed(&r, 5, "advreg", "gamma");
    float z[B * K], g1[B * K] = {0}, g2[B * K] = {0}, g0[B * K];
    int32_t y[B];
    member_rows(&r, z, y, B, K, 3.0);
    mg_advreg *a1 = make(K, 1.0, 1e-3, 3), *a2 = make(K, 2.5, 1e-3, 3), *a0 = make(K, 0.0, 1e-3, 3);
    if (!a1 || !a2 || !a0)
        goto done;
    mg_error err = {0};
    double v1 = 0, v2 = 0, v0 = 1;
    CHECK_OK(mg_advreg_penalty(a1, z, y, B, g1, &v1, &err), &err);
    CHECK_OK(mg_advreg_penalty(a2, z, y, B, g2, &v2, &err), &err);
    CHECK_NEAR(v2, 2.5 * v1, 1e-12 * fabs(v1));
    double gmax = 0.0;
    for (int i = 0; i < B * K; i++)
        gmax = fabs(g1[i]) > gmax ? fabs(g1[i]) : gmax;
    for (int i = 0; i < B * K; i++)
        CHECK_NEAR(g2[i], 2.5 * g1[i], 1e-5 * gmax);
    for (int i = 0; i < B * K; i++)
        g0[i] = 0.5f;
    CHECK_OK(mg_advreg_penalty(a0, z, y, B, g0, &v0, &err), &err);
    CHECK(v0 == 0.0);
    int same = 1;
    for (int i = 0; i < B * K; i++)
        same &= g0[i] == 0.5f;
    CHECK(same);
    /* At h's initialisation log h is near log 1/2. */
    CHECK(fabs(v1 + LOG2) < 0.3);
done:
    mg_advreg_destroy(&a1);
    mg_advreg_destroy(&a2);
    mg_advreg_destroy(&a0);
}

/* ---- the inference model's steps ------------------------------------------------------ */

static double mean_of(const double *v, int from, int to)
{
    double s = 0.0;
    for (int i = from; i < to; i++)
        s += v[i];
    return s / (to - from);
}

static void test_gain_separable(void)
{
    enum { K = 10, N = 32, STEPS = 80 };
    mg_rng r;
    mg_rng_seed(&r, 9, "advreg", "separable");
    mg_advreg *a = make(K, 1.0, 1e-3, 21);
    if (!a)
        return;
    double gains[STEPS];
    train_separable(a, K, N, STEPS, &r, gains);
    /* Each gain is measured on a fresh batch before the step: held out. */
    double first = gains[0], last = mean_of(gains, STEPS - 10, STEPS);
    printf("  separable: gain %.4f at the start (-2 log 2 = %.4f); after 5, 10, 20, 40 steps %.4f %.4f %.4f %.4f; "
           "%.4f over the last 10 of %d\n", first, -2 * LOG2, gains[5], gains[10], gains[20], gains[40], last, STEPS);
    CHECK(fabs(first + 2 * LOG2) < 0.15);
    CHECK(last > -0.2);
    CHECK(last > first + 1.0);
    mg_advreg_destroy(&a);
}

static void test_gain_same_distribution(void)
{
    enum { K = 10, N = 32, STEPS = 150, TAIL = 60 };
    mg_rng r;
    mg_rng_seed(&r, 10, "advreg", "same");
    mg_advreg *a = make(K, 1.0, 1e-3, 22);
    if (!a)
        return;
    float zm[N * K], zr[N * K];
    int32_t ym[N], yr[N];
    double gains[STEPS];
    mg_error err = {0};
    for (int s = 0; s < STEPS; s++) {
        mixed_rows(&r, zm, ym, N, K);
        mixed_rows(&r, zr, yr, N, K);
        CHECK_OK(mg_advreg_attack_step(a, zm, ym, N, zr, yr, N, &gains[s], &err), &err);
    }
    double tail = mean_of(gains, STEPS - TAIL, STEPS);
    printf("  same distribution: held-out gain %.4f over the last %d of %d steps (-2 log 2 = %.4f)\n", tail, TAIL,
           STEPS, -2 * LOG2);
    CHECK(fabs(tail + 2 * LOG2) < 0.05);
    mg_advreg_destroy(&a);
}

/* ---- what the functions leave alone --------------------------------------------------- */

static float *read_state(hid_t file, const char *group, const char *name, size_t *n)
{
    char path[128];
    snprintf(path, sizeof path, "%s/advreg/%s", group, name);
    void *v = NULL;
    hsize_t dims[4] = {0};
    int nd = 0;
    mg_error err = {0};
    CHECK_OK(mg_h5_read(file, path, H5T_NATIVE_FLOAT, &v, dims, &nd, &err), &err);
    *n = nd == 1 ? (size_t)dims[0] : 0;
    return v;
}

static hid_t new_group(hid_t file, const char *name)
{
    hid_t g = H5Gcreate2(file, name, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(g >= 0);
    return g;
}

static void tmp_path(char *buf, size_t n, const char *leaf)
{
    const char *dir = getenv("MG_TEST_TMP");
    snprintf(buf, n, "%s/advreg_%s.h5", dir && *dir ? dir : "/tmp", leaf);
}

static void test_untouched(void)
{
    enum { K = 7, N = 9 };
    mg_rng r;
    mg_rng_seed(&r, 11, "advreg", "untouched");
    mg_advreg *a = make(K, 1.3, 1e-3, 31);
    if (!a)
        return;
    train_separable(a, K, 8, 5, &r, NULL);
    float zm[N * K], zr[N * K], zm0[N * K], zr0[N * K], g[N * K] = {0}, g2[N * K] = {0};
    int32_t ym[N], yr[N], ym0[N], yr0[N];
    member_rows(&r, zm, ym, N, K, 5.0);
    flat_rows(&r, zr, yr, N, K);
    memcpy(zm0, zm, sizeof zm), memcpy(zr0, zr, sizeof zr), memcpy(ym0, ym, sizeof ym), memcpy(yr0, yr, sizeof yr);

    char path[1024];
    tmp_path(path, sizeof path, "untouched");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    mg_error err = {0};
    hid_t g_before = new_group(f, "before"), g_after = new_group(f, "after"), g_step = new_group(f, "step");
    CHECK_OK(mg_advreg_save(a, g_before, &err), &err);

    /* The term, three times: same value and gradient each time, h unchanged. */
    double v = 0, v2 = 0;
    CHECK_OK(mg_advreg_penalty(a, zm, ym, N, g, &v, &err), &err);
    for (int t = 0; t < 2; t++) {
        memset(g2, 0, sizeof g2);
        CHECK_OK(mg_advreg_penalty(a, zm, ym, N, g2, &v2, &err), &err);
        CHECK(v2 == v);
        CHECK(memcmp(g, g2, sizeof g) == 0);
    }
    CHECK(memcmp(zm, zm0, sizeof zm) == 0 && memcmp(ym, ym0, sizeof ym) == 0);
    CHECK_OK(mg_advreg_save(a, g_after, &err), &err);

    /* A step changes h but not its inputs. */
    CHECK_OK(mg_advreg_attack_step(a, zm, ym, N, zr, yr, N, NULL, &err), &err);
    CHECK(memcmp(zm, zm0, sizeof zm) == 0 && memcmp(zr, zr0, sizeof zr) == 0);
    CHECK(memcmp(ym, ym0, sizeof ym) == 0 && memcmp(yr, yr0, sizeof yr) == 0);
    CHECK_OK(mg_advreg_save(a, g_step, &err), &err);
    H5Gclose(g_before), H5Gclose(g_after), H5Gclose(g_step);

    static const char *const names[3] = {"params", "adam_m1", "adam_m2"};
    for (int i = 0; i < 3; i++) {
        size_t n0 = 0, n1 = 0, n2 = 0;
        float *b = read_state(f, "before", names[i], &n0);
        float *p = read_state(f, "after", names[i], &n1);
        float *s = read_state(f, "step", names[i], &n2);
        CHECK(n0 > 0 && n0 == n1 && n0 == n2);
        if (b && p && s && n0 == n1 && n0 == n2) {
            CHECK(memcmp(b, p, n0 * sizeof(float)) == 0);   /* the term changed nothing */
            CHECK(memcmp(b, s, n0 * sizeof(float)) != 0);   /* the step did move h */
        }
        free(b), free(p), free(s);
    }
    H5Fclose(f);
    unlink(path);
    mg_advreg_destroy(&a);
}

/* ---- save and load -------------------------------------------------------------------- */

static void test_save_load(void)
{
    enum { K = 8, N = 12 };
    mg_rng r;
    mg_rng_seed(&r, 12, "advreg", "saveload");
    mg_advreg *a = make(K, 0.9, 2e-3, 41), *b = make(K, 0.9, 2e-3, 42), *c = make(K + 1, 0.9, 2e-3, 41);
    if (!a || !b || !c)
        goto done;
    train_separable(a, K, 16, 7, &r, NULL);
    float z[N * K], ga[N * K] = {0}, gb[N * K] = {0};
    int32_t y[N];
    member_rows(&r, z, y, N, K, 4.0);

    char path[1024];
    tmp_path(path, sizeof path, "saveload");
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    mg_error err = {0};
    hid_t gs = new_group(f, "s"), ge = new_group(f, "empty");
    CHECK_OK(mg_advreg_save(a, gs, &err), &err);
    /* A second save into the same group is refused: its names are taken. */
    CHECK_INT_EQ(mg_advreg_save(a, gs, &err), MG_ERR_HDF5);

    double va = 0, vb = 0;
    CHECK_OK(mg_advreg_penalty(a, z, y, N, ga, &va, &err), &err);
    CHECK_OK(mg_advreg_penalty(b, z, y, N, gb, &vb, &err), &err);
    CHECK(va != vb);   /* another seed: another h until loaded */

    CHECK_OK(mg_advreg_load(b, gs, &err), &err);
    memset(gb, 0, sizeof gb);
    CHECK_OK(mg_advreg_penalty(b, z, y, N, gb, &vb, &err), &err);
    CHECK(va == vb);
    CHECK(memcmp(ga, gb, sizeof ga) == 0);

    /* The same next step on both: Adam's moments and step count came along. */
    float zm[N * K], zr[N * K];
    int32_t ym[N], yr[N];
    member_rows(&r, zm, ym, N, K, 6.0);
    flat_rows(&r, zr, yr, N, K);
    double gain_a = 0, gain_b = 1;
    CHECK_OK(mg_advreg_attack_step(a, zm, ym, N, zr, yr, N, &gain_a, &err), &err);
    CHECK_OK(mg_advreg_attack_step(b, zm, ym, N, zr, yr, N, &gain_b, &err), &err);
    CHECK(gain_a == gain_b);
    memset(ga, 0, sizeof ga), memset(gb, 0, sizeof gb);
    CHECK_OK(mg_advreg_penalty(a, z, y, N, ga, &va, &err), &err);
    CHECK_OK(mg_advreg_penalty(b, z, y, N, gb, &vb, &err), &err);
    CHECK(va == vb);
    CHECK(memcmp(ga, gb, sizeof ga) == 0);
    printf("  save/load: term %.9f and its gradient reproduced bit for bit, also after one more step\n", vb);

    /* Refusals change nothing: another K, an empty group, a damaged moment. */
    float zc[N * (K + 1)], gc0[N * (K + 1)] = {0}, gc1[N * (K + 1)] = {0};
    int32_t yc[N];
    member_rows(&r, zc, yc, N, K + 1, 4.0);
    double vc0 = 0, vc1 = 1;
    CHECK_OK(mg_advreg_penalty(c, zc, yc, N, gc0, &vc0, &err), &err);
    CHECK_INT_EQ(mg_advreg_load(c, gs, &err), MG_ERR_STATE);
    printf("  another K: %s\n", err.msg);
    CHECK(strstr(err.msg, "classes") != NULL);
    CHECK_OK(mg_advreg_penalty(c, zc, yc, N, gc1, &vc1, &err), &err);
    CHECK(vc0 == vc1 && memcmp(gc0, gc1, sizeof gc0) == 0);

    float gb0[N * K] = {0}, gb1[N * K] = {0};
    double vb0 = 0, vb1 = 1;
    CHECK_OK(mg_advreg_penalty(b, z, y, N, gb0, &vb0, &err), &err);
    CHECK_INT_EQ(mg_advreg_load(b, ge, &err), MG_ERR_STATE);
    hid_t adv = H5Gopen2(gs, "advreg", H5P_DEFAULT);
    CHECK(adv >= 0);
    size_t n = 0;
    float *m2 = read_state(f, "s", "adam_m2", &n);
    CHECK(n > 1);
    if (adv >= 0 && m2 && n > 1) {
        H5Ldelete(adv, "adam_m2", H5P_DEFAULT);
        hsize_t dims[1] = {(hsize_t)(n - 1)};
        CHECK_OK(mg_h5_write(adv, "adam_m2", H5T_NATIVE_FLOAT, 1, dims, m2, &err), &err);
        CHECK_INT_EQ(mg_advreg_load(b, gs, &err), MG_ERR_STATE);
        printf("  damaged moment: %s\n", err.msg);
        CHECK(strstr(err.msg, "adam_m2") != NULL);
    }
    free(m2);
    if (adv >= 0)
        H5Gclose(adv);
    CHECK_OK(mg_advreg_penalty(b, z, y, N, gb1, &vb1, &err), &err);
    CHECK(vb0 == vb1 && memcmp(gb0, gb1, sizeof gb0) == 0);

    H5Gclose(gs), H5Gclose(ge);
    H5Fclose(f);
    unlink(path);
done:
    mg_advreg_destroy(&a);
    mg_advreg_destroy(&b);
    mg_advreg_destroy(&c);
}

/* ---- argument errors ------------------------------------------------------------------ */

static void expect_cfg_error(mg_advreg_cfg c, const char *field)
{
    mg_advreg *a = NULL;
    mg_error err = {0};
    CHECK_INT_EQ(mg_advreg_create(&c, 1, &a, &err), MG_ERR_ARG);
    CHECK(a == NULL);
    if (!strstr(err.msg, field)) {
        CHECK(strstr(err.msg, field) != NULL);
        printf("  message without '%s': %s\n", field, err.msg);
    }
}

static void test_arguments(void)
{
    const mg_advreg_cfg ok = {.n_classes = 4, .k_steps = 2, .gamma = 1.0, .lr = 1e-3};
    mg_advreg_cfg c = ok;
    c.n_classes = 1;
    expect_cfg_error(c, "n_classes");
    c = ok, c.k_steps = 0;
    expect_cfg_error(c, "k_steps");
    c = ok, c.gamma = -0.5;
    expect_cfg_error(c, "gamma");
    c = ok, c.gamma = NAN;
    expect_cfg_error(c, "gamma");
    c = ok, c.lr = 0.0;
    expect_cfg_error(c, "lr");
    c = ok, c.lr = INFINITY;
    expect_cfg_error(c, "lr");
    mg_advreg *a = NULL;
    mg_error err = {0};
    CHECK_INT_EQ(mg_advreg_create(NULL, 1, &a, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_create(&ok, 1, NULL, &err), MG_ERR_ARG);

    CHECK_OK(mg_advreg_create(&ok, 1, &a, &err), &err);
    if (!a)
        return;
    const mg_advreg_cfg *got = mg_advreg_config(a);
    CHECK(got && got->n_classes == 4 && got->k_steps == 2 && got->gamma == 1.0 && got->lr == 1e-3);
    float z[2 * 4] = {1, 2, 3, 4, 0, 0, 1, 0}, g[2 * 4] = {0};
    int32_t y[2] = {1, 3}, bad[2] = {1, 4}, neg[2] = {-1, 0};
    double v = 0, gain = 0;
    CHECK_INT_EQ(mg_advreg_attack_step(a, z, y, 0, z, y, 2, &gain, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_attack_step(a, z, y, 2, z, y, 0, &gain, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_attack_step(a, NULL, y, 2, z, y, 2, &gain, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_attack_step(a, z, y, 2, z, NULL, 2, &gain, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_attack_step(NULL, z, y, 2, z, y, 2, &gain, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_attack_step(a, z, bad, 2, z, y, 2, &gain, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_attack_step(a, z, y, 2, z, neg, 2, &gain, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_penalty(a, z, y, 0, g, &v, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_penalty(a, z, bad, 2, g, &v, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_penalty(a, z, y, 2, NULL, &v, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_penalty(a, NULL, y, 2, g, &v, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_penalty(NULL, z, y, 2, g, &v, &err), MG_ERR_ARG);
    /* A diverged classifier's logits are refused before they reach h. */
    float zn[2 * 4] = {1, 2, 3, 4, 0, NAN, 1, 0};
    CHECK_INT_EQ(mg_advreg_penalty(a, zn, y, 2, g, &v, &err), MG_ERR_NUMERIC);
    CHECK_INT_EQ(mg_advreg_attack_step(a, z, y, 2, zn, y, 2, &gain, &err), MG_ERR_NUMERIC);
    int untouched = 1;
    for (int i = 0; i < 8; i++)
        untouched &= g[i] == 0.0f;
    CHECK(untouched);
    CHECK_INT_EQ(mg_advreg_save(NULL, 0, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_advreg_load(NULL, 0, &err), MG_ERR_ARG);
    mg_advreg_destroy(&a);
    mg_advreg_destroy(&a);   /* destroying twice (NULL) is harmless */
    CHECK(mg_advreg_config(NULL) == NULL);
}

int main(void)
{
    mg_h5_quiet();
    printf("penalty gradient against central differences:\n");
    test_penalty_gradient(2);
    test_penalty_gradient(3);
    test_penalty_gradient(10);
    test_penalty_gradient(100);
    test_penalty_gamma();
    printf("inference model steps:\n");
    test_gain_separable();
    test_gain_same_distribution();
    test_untouched();
    printf("save and load:\n");
    test_save_load();
    test_arguments();
    MG_TEST_MAIN_END();
}
