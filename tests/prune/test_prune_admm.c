/* test_prune_admm.c: ADMM pruning. The Z-update is the exact projection onto the
 * per-layer cardinality constraint (checked against a sort, ties by index,
 * masked entries first), the U-update and the gradient term are what
 * Zhang et al. write, and on a toy quadratic W converges to Z, which
 * converges to the projection of the optimum; the hard pruning then masks
 * exactly the constraint's entries. */
#include "mg_test.h"
#include "miagrid/prune.h"

#include <stdint.h>

static mg_model *make(uint64_t seed)
{
    int hidden[1] = {5};
    mg_model_cfg cfg = {.arch = "mlp", .hidden = hidden, .n_hidden = 1, .act = MG_ACT_RELU,
                        .in_c = 1, .in_h = 1, .in_w = 6, .n_classes = 3};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, seed, "prune-admm", "init");
    if (m)
        mg_model_init_params(m, &r);
    return m;
}

typedef struct {
    float mag;
    size_t idx;
    int masked;
} ref_key;

static int cmp_ref(const void *pa, const void *pb)
{
    const ref_key *a = pa, *b = pb;
    if (a->masked != b->masked)
        return a->masked ? -1 : 1;
    if (a->mag != b->mag)
        return a->mag < b->mag ? -1 : 1;
    return (a->idx > b->idx) - (a->idx < b->idx);
}

/* The projection of v (n entries) keeping all but max(k, masked) entries, by sorting. */
static void ref_project(const float *v, const float *mask, size_t n, size_t k, float *out)
{
    ref_key keys[64];
    size_t masked = 0;
    for (size_t i = 0; i < n; i++) {
        keys[i] = (ref_key){fabsf(v[i]), i, mask[i] == 0.0f};
        masked += mask[i] == 0.0f;
        out[i] = v[i];
    }
    qsort(keys, n, sizeof *keys, cmp_ref);
    for (size_t j = 0; j < n && (j < k || j < masked); j++)
        out[keys[j].idx] = 0.0f;
}

static void check_projection(const mg_admm *a, mg_model *m, const float *U_before)
{
    const float *W = mg_model_params(m), *mk = mg_model_masks(m);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->buffer)
            continue;
        float v[64], want[64];
        if (!ti->prunable) {
            for (size_t i = 0; i < ti->count; i++)
                CHECK(a->Z[ti->offset + i] == 0.0f && a->U[ti->offset + i] == 0.0f);
            continue;
        }
        for (size_t i = 0; i < ti->count; i++)
            v[i] = W[ti->offset + i] + U_before[ti->offset + i];
        ref_project(v, mk + ti->offset, ti->count, a->n_prune[t], want);
        CHECK_TENSOR_NEAR(a->Z + ti->offset, want, ti->count, 0.0);
    }
}

static void test_projection(void)
{
    mg_model *m = make(1);
    mg_admm a;
    mg_error err = {0};
    const mg_tensor_info *w1 = mg_model_tensor(m, 0), *w2 = mg_model_tensor(m, 2);
    size_t np = mg_model_n_params(m);
    float *zero = calloc(np, sizeof(float)), *U = malloc(np * sizeof(float));
    /* A mask from earlier and ties in fc2: |0.25| three times. */
    mg_model_masks(m)[w1->offset + 7] = 0.0f;
    mg_model_params(m)[w1->offset + 7] = 0.0f;
    float *p2 = mg_model_params(m) + w2->offset;
    p2[0] = 0.25f;
    p2[4] = -0.25f;
    p2[9] = 0.25f;
    p2[1] = 0.01f;
    CHECK_OK(mg_admm_init(&a, m, 0.6, NULL, 1.5, &err), &err);
    CHECK_INT_EQ(a.n_prune[0], 18);   /* 0.6 * 30 */
    CHECK_INT_EQ(a.n_prune[2], 9);    /* 0.6 * 15 */
    CHECK_INT_EQ(a.n_prune[1], 0);    /* biases unconstrained */
    check_projection(&a, m, zero);
    /* Exactly n_prune zeros (the weights are non-zero elsewhere). */
    size_t z1 = 0, z2 = 0;
    for (size_t i = 0; i < w1->count; i++)
        z1 += a.Z[w1->offset + i] == 0.0f;
    for (size_t i = 0; i < w2->count; i++)
        z2 += a.Z[w2->offset + i] == 0.0f;
    CHECK_INT_EQ(z1, 18);
    CHECK_INT_EQ(z2, 9);

    /* The gradient term, on weights only. */
    mg_model_zero_grad(m);
    for (size_t i = 0; i < np; i++)
        a.U[i] = 0.0f;
    mg_rng r;
    mg_rng_seed(&r, 2, "prune-admm", "u");
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->prunable)
            for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
                a.U[i] = (float)(0.1 * mg_rng_normal(&r));
    }
    mg_admm_add_grad(&a, m);
    const float *W = mg_model_params(m), *G = mg_model_grads(m);
    int ok = 1;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->buffer)
            continue;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
            ok &= G[i] == (ti->prunable ? 1.5f * (W[i] - a.Z[i] + a.U[i]) : 0.0f);
    }
    CHECK(ok);

    /* The update: Z = projection of W + U, then U += W - Z. */
    memcpy(U, a.U, np * sizeof(float));
    CHECK_OK(mg_admm_update(&a, m, &err), &err);
    check_projection(&a, m, U);
    ok = 1;
    for (size_t i = 0; i < np; i++)
        ok &= a.U[i] == U[i] + (W[i] - a.Z[i]) || (U[i] == 0.0f && a.U[i] == 0.0f && a.Z[i] == 0.0f);
    CHECK(ok);
    /* The masked entry is dropped first. */
    CHECK(a.Z[w1->offset + 7] == 0.0f);

    /* Ties at the threshold go by index: W + U = |0.25| at 0, 4, 9 and the rest larger except one. */
    for (size_t i = 0; i < w2->count; i++) {
        p2[i] = 1.0f + (float)i;
        a.U[w2->offset + i] = 0.0f;
    }
    p2[3] = 0.01f;
    p2[0] = 0.25f;
    p2[4] = -0.25f;
    p2[9] = 0.25f;
    a.n_prune[2] = 3;   /* 0.01, then the first two of the tied 0.25s */
    CHECK_OK(mg_admm_update(&a, m, &err), &err);
    const float *z = a.Z + w2->offset;
    CHECK(z[3] == 0.0f && z[0] == 0.0f && z[4] == 0.0f && z[9] == 0.25f && z[1] == 2.0f);

    /* Non-finite: refused, nothing changed. */
    memcpy(U, a.U, np * sizeof(float));
    float *Z = malloc(np * sizeof(float));
    memcpy(Z, a.Z, np * sizeof(float));
    p2[5] = NAN;
    CHECK_INT_EQ(mg_admm_update(&a, m, &err), MG_ERR_NUMERIC);
    printf("  expected error: %s\n", err.msg);
    CHECK(memcmp(U, a.U, np * sizeof(float)) == 0 && memcmp(Z, a.Z, np * sizeof(float)) == 0);
    mg_admm_free(&a);
    CHECK(a.Z == NULL && a.U == NULL);
    CHECK_INT_EQ(mg_admm_init(&a, m, 1.0, NULL, 1.0, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    mg_admm_free(&a);
    CHECK_INT_EQ(mg_admm_init(&a, m, 0.5, NULL, -1.0, &err), MG_ERR_ARG);
    mg_admm_free(&a);
    free(Z);
    free(zero);
    free(U);
    mg_model_destroy(&m);
}

/* f(W) = 1/2 ||W - W*||^2 over the weights: the ADMM fixed point is W = Z =
 * projection of W* (with rho >= 1 the support is that of the largest |W*|). */
static void test_quadratic(void)
{
    mg_model *m = make(3);
    mg_error err = {0};
    size_t np = mg_model_n_params(m), nt = mg_model_n_tensors(m);
    float *target = malloc(np * sizeof(float)), *proj = calloc(np, sizeof(float));
    mg_rng r;
    mg_rng_seed(&r, 4, "prune-admm", "target");
    for (size_t i = 0; i < np; i++)
        target[i] = (float)mg_rng_normal(&r);
    double ts[6] = {0.5, 0, 0.8, 0, 0, 0};   /* per-tensor sparsity: fc1 50 %, fc2 80 % */
    mg_admm a;
    CHECK_OK(mg_admm_init(&a, m, 0.0, ts, 1.0, &err), &err);
    CHECK_INT_EQ(nt, 4);
    CHECK_INT_EQ(a.n_prune[0], 15);
    CHECK_INT_EQ(a.n_prune[2], 12);
    float ones[64];
    for (int i = 0; i < 64; i++)
        ones[i] = 1.0f;
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->prunable)
            ref_project(target + ti->offset, ones, ti->count, a.n_prune[t], proj + ti->offset);
    }
    float *W = mg_model_params(m), *G = mg_model_grads(m);
    double first = mg_admm_residual(&a, m), res = first;
    for (int it = 0; it < 60; it++) {
        for (int step = 0; step < 30; step++) {
            mg_model_zero_grad(m);
            for (size_t t = 0; t < nt; t++) {
                const mg_tensor_info *ti = mg_model_tensor(m, t);
                if (ti->prunable)
                    for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
                        G[i] = W[i] - target[i];
            }
            mg_admm_add_grad(&a, m);
            for (size_t i = 0; i < np; i++)
                W[i] -= 0.2f * G[i];
        }
        CHECK_OK(mg_admm_update(&a, m, &err), &err);
        res = mg_admm_residual(&a, m);
        if (it % 20 == 0)
            printf("  admm iteration %2d: residual %.3g\n", it, res);
    }
    printf("  admm: residual %.3g -> %.3g\n", first, res);
    CHECK(res < 1e-4);
    double dw = 0.0, dz = 0.0;
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->prunable)
            for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
                dw = fmax(dw, fabs(W[i] - proj[i]));
                dz = fmax(dz, fabs(a.Z[i] - proj[i]));
            }
    }
    printf("  admm: max |W - P(W*)| %.3g, max |Z - P(W*)| %.3g\n", dw, dz);
    CHECK(dw < 1e-4);
    CHECK(dz < 1e-4);

    /* Hard pruning masks exactly the projection's zeros. */
    CHECK_OK(mg_admm_finalize(&a, m, &err), &err);
    int ok = 1;
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        for (size_t i = ti->offset; ti->prunable && i < ti->offset + ti->count; i++)
            ok &= (mg_model_masks(m)[i] == 0.0f) == (proj[i] == 0.0f) && (mg_model_masks(m)[i] != 0.0f || W[i] == 0.0f);
    }
    CHECK(ok);
    CHECK_NEAR(mg_model_mask_sparsity(m), 27.0 / 45.0, 1e-12);
    mg_admm_free(&a);
    free(target);
    free(proj);
    mg_model_destroy(&m);
}

int main(void)
{
    test_projection();
    test_quadratic();
    MG_TEST_MAIN_END();
}
