/* test_prune_methods.c: the one-shot methods of mg_prune_apply other than slim and
 * butterfly: global L1 (one threshold across layers, exact counts, ties in
 * table order), random (exact counts, seeded, uniform), L1/L2 structured
 * (whole rows by norm, output layer and biases untouched, torch's rounding),
 * and the dispatcher's argument checks and layer prefixes. */
#include "mg_test.h"
#include "miagrid/prune.h"
#include "prune/prune_internal.h"

#include <stdint.h>

static mg_model *make(const char *arch, int c, int h, int w, int k, const int *hidden, int n_hidden, uint64_t seed)
{
    mg_model_cfg cfg = {.arch = arch, .hidden = hidden, .n_hidden = n_hidden, .act = MG_ACT_RELU,
                        .in_c = c, .in_h = h, .in_w = w, .n_classes = k};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, seed, "prune-methods", "init");
    if (m)
        mg_model_init_params(m, &r);
    return m;
}

static float *copy_params(mg_model *m)
{
    float *p = malloc(mg_model_n_params(m) * sizeof(float));
    memcpy(p, mg_model_params(m), mg_model_n_params(m) * sizeof(float));
    return p;
}

static float *copy_masks(mg_model *m)
{
    float *p = malloc(mg_model_n_params(m) * sizeof(float));
    memcpy(p, mg_model_masks(m), mg_model_n_params(m) * sizeof(float));
    return p;
}

static size_t masked_in(const mg_model *m, size_t t)
{
    const mg_tensor_info *ti = mg_model_tensor(m, t);
    const float *mk = mg_model_masks((mg_model *)m) + ti->offset;
    size_t z = 0;
    for (size_t i = 0; i < ti->count; i++)
        z += mk[i] == 0.0f;
    return z;
}

static size_t round_half_even(double x)
{
    double f = floor(x);
    if (x - f > 0.5 || (x - f == 0.5 && fmod(f, 2.0) != 0.0))
        return (size_t)f + 1;
    return (size_t)f;
}

/* Masked entries are +0 with mask 0, kept entries unchanged with mask 1, and
 * non-prunable tensors untouched. */
static void check_consistent(mg_model *m, const float *before)
{
    const float *p = mg_model_params(m), *mk = mg_model_masks(m);
    int ok = 1;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->buffer)
            continue;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
            if (!ti->prunable)
                ok &= mk[i] == 1.0f && p[i] == before[i];
            else if (mk[i] == 0.0f)
                ok &= p[i] == 0.0f && !signbit(p[i]);
            else
                ok &= mk[i] == 1.0f && p[i] == before[i];
        }
    }
    CHECK(ok);
}

static int cmp_float(const void *a, const void *b)
{
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* The order statistic the global and ADMM rankings rest on, against a sort,
 * on inputs with long runs of ties, sorted and reversed. */
static void test_kth(void)
{
    mg_rng r;
    mg_rng_seed(&r, 1, "prune-methods", "kth");
    float v[257], sorted[257], work[257];
    int ok = 1;
    for (int rep = 0; rep < 300; rep++) {
        size_t n = 1 + (size_t)mg_rng_below(&r, 257);
        int levels = 1 + (int)mg_rng_below(&r, rep % 3 == 0 ? 3 : 1000);
        for (size_t i = 0; i < n; i++)
            v[i] = (float)mg_rng_below(&r, (uint64_t)levels) * 0.5f;
        if (rep % 5 == 1)
            qsort(v, n, sizeof(float), cmp_float);
        if (rep % 5 == 2)
            for (size_t i = 0; i < n / 2; i++) {
                float t = v[i];
                v[i] = v[n - 1 - i];
                v[n - 1 - i] = t;
            }
        memcpy(sorted, v, n * sizeof(float));
        qsort(sorted, n, sizeof(float), cmp_float);
        for (size_t k = 0; k < n; k += 1 + n / 7) {
            memcpy(work, v, n * sizeof(float));
            ok &= mg_prune_kth_smallest(work, n, k) == sorted[k];
        }
    }
    CHECK(ok);
}

static void test_global(void)
{
    int hidden[2] = {37, 11};
    mg_model *m = make("mlp", 1, 10, 10, 5, hidden, 2, 11);
    mg_error err = {0};
    size_t total = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++)
        if (mg_model_tensor(m, t)->prunable)
            total += mg_model_tensor(m, t)->count;
    const double steps[3] = {0.3, 0.7, 0.5};
    for (int s = 0; s < 3; s++) {
        float *before = copy_params(m), *old = copy_masks(m);
        CHECK_OK(mg_prune_apply(m, "l1-unstructured-global", steps[s], NULL, NULL, &err), &err);
        check_consistent(m, before);
        size_t masked = 0, old_masked = 0;
        double max_pruned = 0.0, min_kept = INFINITY;
        int old_stay = 1;
        for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
            const mg_tensor_info *ti = mg_model_tensor(m, t);
            if (!ti->prunable)
                continue;
            masked += masked_in(m, t);
            printf("  global s=%.1f %-10s sparsity %.3f\n", steps[s], ti->name,
                   (double)masked_in(m, t) / (double)ti->count);
            for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
                old_masked += old[i] == 0.0f;
                if (mg_model_masks(m)[i] == 0.0f) {
                    if (old[i] != 0.0f)
                        max_pruned = fmax(max_pruned, fabs(before[i]));
                } else {
                    old_stay &= old[i] != 0.0f;
                    min_kept = fmin(min_kept, fabs(before[i]));
                }
            }
        }
        size_t want = round_half_even(steps[s] * (double)total);
        if (want < old_masked)
            want = old_masked;
        CHECK_INT_EQ(masked, want);
        /* One threshold across all layers: nothing pruned now beats anything kept. */
        CHECK(max_pruned <= min_kept);
        CHECK(old_stay);
        free(before);
        free(old);
    }
    /* Layers end at different sparsities (the first layer has the smallest weights). */
    CHECK(masked_in(m, 0) * mg_model_tensor(m, 4)->count != masked_in(m, 4) * mg_model_tensor(m, 0)->count);
    mg_model_destroy(&m);

    /* Ties and rounding on two 5-entry tensors: 1 -> 5 -> 1. */
    int h1[1] = {5};
    m = make("mlp", 1, 1, 1, 1, h1, 1, 3);
    const mg_tensor_info *w1 = mg_model_tensor(m, 0), *w2 = mg_model_tensor(m, 2);
    float *p = mg_model_params(m), *mk = mg_model_masks(m);
    const float v1[5] = {0.5f, -0.5f, 0.5f, 0.1f, -0.5f}, v2[5] = {0.0f, 0.7f, 0.0f, -0.3f, 0.9f};
    memcpy(p + w1->offset, v1, sizeof v1);
    memcpy(p + w2->offset, v2, sizeof v2);
    mk[w2->offset + 2] = 0.0f;
    /* 0.5 * 10 = 5: the masked fc2[2], then fc2[0] (0), fc1[3] (0.1), fc2[3]
     * (0.3), and of the four tied 0.5s the first in table order, fc1[0]. */
    CHECK_OK(mg_prune_apply(m, "l1-unstructured-global", 0.5, NULL, NULL, &err), &err);
    const float *m1 = mk + w1->offset, *m2 = mk + w2->offset;
    CHECK(m1[0] == 0.0f && m1[1] == 1.0f && m1[2] == 1.0f && m1[3] == 0.0f && m1[4] == 1.0f);
    CHECK(m2[0] == 0.0f && m2[1] == 1.0f && m2[2] == 0.0f && m2[3] == 0.0f && m2[4] == 1.0f);
    /* 0.65 * 10 = 6.5 rounds to 6 (half to even): fc1[1] next. */
    CHECK_OK(mg_prune_apply(m, "l1-unstructured-global", 0.65, NULL, NULL, &err), &err);
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.6, 1e-15);
    CHECK(m1[1] == 0.0f && m1[2] == 1.0f);
    /* A non-finite weight is refused and leaves the model as it was. */
    p[w1->offset + 4] = INFINITY;
    float *old = copy_masks(m);
    CHECK_INT_EQ(mg_prune_apply(m, "l1-unstructured-global", 0.8, NULL, NULL, &err), MG_ERR_NUMERIC);
    printf("  expected error: %s\n", err.msg);
    CHECK(memcmp(old, mk, mg_model_n_params(m) * sizeof(float)) == 0);
    free(old);
    mg_model_destroy(&m);
}

static void test_random(void)
{
    int hidden[2] = {37, 11};
    mg_model *a = make("mlp", 1, 10, 10, 5, hidden, 2, 21), *b = make("mlp", 1, 10, 10, 5, hidden, 2, 21),
             *c = make("mlp", 1, 10, 10, 5, hidden, 2, 21);
    mg_error err = {0};
    mg_rng ra, rb, rc;
    mg_rng_seed(&ra, 7, "prune", "random");
    mg_rng_seed(&rb, 7, "prune", "random");
    mg_rng_seed(&rc, 8, "prune", "random");
    float *before = copy_params(a);
    CHECK_OK(mg_prune_apply(a, "random-unstructured", 0.3, NULL, &ra, &err), &err);
    CHECK_OK(mg_prune_apply(b, "random-unstructured", 0.3, NULL, &rb, &err), &err);
    CHECK_OK(mg_prune_apply(c, "random-unstructured", 0.3, NULL, &rc, &err), &err);
    check_consistent(a, before);
    for (size_t t = 0; t < mg_model_n_tensors(a); t++) {
        const mg_tensor_info *ti = mg_model_tensor(a, t);
        if (ti->prunable)
            CHECK_INT_EQ(masked_in(a, t), round_half_even(0.3 * (double)ti->count));
    }
    size_t n = mg_model_n_params(a);
    /* The same seed gives the same mask, another seed another one. */
    CHECK(memcmp(mg_model_masks(a), mg_model_masks(b), n * sizeof(float)) == 0);
    CHECK(memcmp(mg_model_masks(a), mg_model_masks(c), n * sizeof(float)) != 0);
    /* A second round keeps the first one's zeros and reaches its own count. */
    float *old = copy_masks(a);
    CHECK_OK(mg_prune_apply(a, "random-unstructured", 0.6, NULL, &ra, &err), &err);
    int kept_old = 1;
    for (size_t i = 0; i < n; i++)
        kept_old &= old[i] != 0.0f || mg_model_masks(a)[i] == 0.0f;
    CHECK(kept_old);
    CHECK_NEAR(mg_model_mask_sparsity(a), 0.6, 2e-3);
    check_consistent(a, before);
    free(old);
    free(before);
    /* Without a generator: refused. */
    CHECK_INT_EQ(mg_prune_apply(b, "random-unstructured", 0.5, NULL, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    mg_model_destroy(&a);
    mg_model_destroy(&b);
    mg_model_destroy(&c);

    /* Uniform: over 4000 draws each of 5 entries is pruned 2/5 of the time. */
    int h1[1] = {5};
    mg_model *m = make("mlp", 1, 1, 1, 1, h1, 1, 3);
    const mg_tensor_info *w1 = mg_model_tensor(m, 0);
    int hits[5] = {0};
    mg_rng r;
    mg_rng_seed(&r, 9, "prune", "uniform");
    for (int rep = 0; rep < 4000; rep++) {
        for (size_t i = 0; i < mg_model_n_params(m); i++) {
            mg_model_masks(m)[i] = 1.0f;
            mg_model_params(m)[i] = 1.0f;
        }
        CHECK_OK(mg_prune_apply(m, "random-unstructured", 0.4, NULL, &r, &err), &err);
        for (int i = 0; i < 5; i++)
            hits[i] += mg_model_masks(m)[w1->offset + i] == 0.0f;
    }
    for (int i = 0; i < 5; i++) {
        printf("  random: entry %d pruned %d / 4000\n", i, hits[i]);
        CHECK_NEAR(hits[i] / 4000.0, 0.4, 0.035);
    }
    mg_model_destroy(&m);
}

/* Rows of tensor t that are fully masked (and zero). */
static size_t dead_rows(const mg_model *m, size_t t, unsigned char *dead, int whole_rows_only)
{
    const mg_tensor_info *ti = mg_model_tensor(m, t);
    size_t rows = (size_t)ti->shape[0], per = ti->count / rows, n = 0;
    for (size_t r = 0; r < rows; r++) {
        size_t z = 0;
        for (size_t i = 0; i < per; i++)
            z += mg_model_masks((mg_model *)m)[ti->offset + r * per + i] == 0.0f &&
                 mg_model_params((mg_model *)m)[ti->offset + r * per + i] == 0.0f;
        if (whole_rows_only)
            CHECK(z == 0 || z == per);
        dead[r] = z == per;
        n += dead[r];
    }
    return n;
}

static void check_structured(mg_model *m, const char *method, double s, int norm)
{
    mg_error err = {0};
    float *before = copy_params(m);
    CHECK_OK(mg_prune_apply(m, method, s, NULL, NULL, &err), &err);
    check_consistent(m, before);
    size_t last = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++)
        if (mg_model_tensor(m, t)->prunable)
            last = t;
    unsigned char dead[512];
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        size_t rows = (size_t)ti->shape[0], per = ti->count / rows;
        size_t nd = dead_rows(m, t, dead, 1);
        size_t want = t == last ? 0 : round_half_even(s * (double)rows);
        printf("  %s s=%.2f %-12s %zu of %zu rows\n", method, s, ti->name, nd, rows);
        CHECK_INT_EQ(nd, want);
        /* Every dropped row has a norm no larger than every kept row. */
        double max_dead = 0.0, min_live = INFINITY;
        for (size_t r = 0; r < rows; r++) {
            double acc = 0.0;
            for (size_t i = 0; i < per; i++) {
                double v = before[ti->offset + r * per + i];
                acc += norm == 1 ? fabs(v) : v * v;
            }
            if (dead[r])
                max_dead = fmax(max_dead, acc);
            else
                min_live = fmin(min_live, acc);
        }
        CHECK(max_dead <= min_live);
    }
    free(before);
}

static void test_structured(void)
{
    mg_model *m = make("lenet5", 1, 28, 28, 10, NULL, 0, 31);
    check_structured(m, "l1-structured", 0.5, 1);
    mg_model_destroy(&m);
    m = make("lenet5", 1, 28, 28, 10, NULL, 0, 31);
    /* 6 * 0.75 = 4.5 rounds to 4, 16 * 0.75 = 12, 120 * 0.75 = 90, 84 * 0.75 = 63. */
    check_structured(m, "l2-structured", 0.75, 2);
    mg_model_destroy(&m);

    /* L1 and L2 disagree: row 0 = (1,1,1,1) has L1 4 and L2 2, row 1 = (3,0,0,0) L1 3 and L2 3. */
    int hidden[1] = {2};
    mg_error err = {0};
    for (int norm = 1; norm <= 2; norm++) {
        m = make("mlp", 1, 1, 4, 3, hidden, 1, 5);
        const mg_tensor_info *w = mg_model_tensor(m, 0);
        const float rows[8] = {1, 1, 1, 1, 3, 0, 0, 0};
        memcpy(mg_model_params(m) + w->offset, rows, sizeof rows);
        CHECK_OK(mg_prune_apply(m, norm == 1 ? "l1-structured" : "l2-structured", 0.5, NULL, NULL, &err), &err);
        const float *mk = mg_model_masks(m) + w->offset;
        int dropped = mk[0] == 0.0f ? 0 : 1;
        CHECK_INT_EQ(dropped, norm == 1 ? 1 : 0);
        CHECK(mk[4 * (1 - dropped)] == 1.0f);
        /* The classifier (rows = classes) is never pruned. */
        CHECK_INT_EQ(masked_in(m, 2), 0);
        mg_model_destroy(&m);
    }

    /* Filters already dead count first; a lower sparsity revives nothing. */
    m = make("lenet5", 1, 28, 28, 10, NULL, 0, 32);
    CHECK_OK(mg_prune_apply(m, "l1-structured", 0.5, NULL, NULL, &err), &err);
    float *old = copy_masks(m);
    CHECK_OK(mg_prune_apply(m, "l1-structured", 0.25, NULL, NULL, &err), &err);
    CHECK(memcmp(old, mg_model_masks(m), mg_model_n_params(m) * sizeof(float)) == 0);
    free(old);
    /* Unstructured holes do not make a row dead: l1-unstructured at 0.5 then
     * l2-structured at 0.5 still drops exactly half the rows. */
    mg_model_destroy(&m);
    m = make("lenet5", 1, 28, 28, 10, NULL, 0, 33);
    CHECK_OK(mg_prune_apply(m, "l1-unstructured", 0.5, NULL, NULL, &err), &err);
    CHECK_OK(mg_prune_apply(m, "l2-structured", 0.5, NULL, NULL, &err), &err);
    unsigned char dead[512];
    CHECK_INT_EQ(dead_rows(m, 0, dead, 0), 3);
    mg_model_destroy(&m);
}

static void test_dispatch(void)
{
    int hidden[2] = {8, 6};
    mg_model *m = make("mlp", 1, 3, 3, 4, hidden, 2, 41);
    mg_error err = {0};
    mg_rng r;
    mg_rng_seed(&r, 1, "prune", "dispatch");
    CHECK(mg_prune_method_known("l1-unstructured-global") && mg_prune_method_known("slim") &&
          mg_prune_method_known("butterfly") && !mg_prune_method_known("l3-structured") &&
          !mg_prune_method_known(NULL));
    CHECK_INT_EQ(mg_prune_apply(m, "magnitude", 0.5, NULL, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK(strstr(err.msg, "l2-structured") != NULL);
    CHECK_INT_EQ(mg_prune_apply(m, "l1-structured", 1.0, NULL, NULL, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_prune_apply(m, "l1-structured", NAN, NULL, NULL, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_prune_apply(m, "random-unstructured", -0.5, NULL, &r, &err), MG_ERR_ARG);

    /* Prefixes restrict the method; one that matches nothing is an error. */
    const char *only_fc2[1] = {"fc2"};
    mg_prune_opts o = {.layers = only_fc2, .n_layers = 1};
    CHECK_OK(mg_prune_apply(m, "l1-unstructured", 0.5, &o, NULL, &err), &err);
    CHECK_INT_EQ(masked_in(m, 0), 0);
    CHECK_INT_EQ(masked_in(m, 2), 24);
    CHECK_INT_EQ(masked_in(m, 4), 0);
    CHECK_OK(mg_prune_apply(m, "l1-unstructured-global", 0.75, &o, NULL, &err), &err);
    CHECK_INT_EQ(masked_in(m, 0), 0);
    CHECK_INT_EQ(masked_in(m, 2), 36);
    CHECK_OK(mg_prune_apply(m, "random-unstructured", 0.875, &o, &r, &err), &err);
    CHECK_INT_EQ(masked_in(m, 2), 42);
    CHECK_INT_EQ(masked_in(m, 0) + masked_in(m, 4), 0);
    const char *fc3[1] = {"fc3"};
    o.layers = fc3;
    CHECK_OK(mg_prune_apply(m, "l1-unstructured", 0.5, &o, NULL, &err), &err);
    /* The output layer is not a candidate for structured methods. */
    CHECK_INT_EQ(mg_prune_apply(m, "l1-structured", 0.5, &o, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    const char *typo[2] = {"fc1", "fc9"};
    o.layers = typo;
    o.n_layers = 2;
    CHECK_INT_EQ(mg_prune_apply(m, "l1-unstructured", 0.5, &o, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK(strstr(err.msg, "'fc9'") != NULL);
    /* The message names what the prefix could have matched. */
    CHECK(strstr(err.msg, "(those are: fc1.weight, fc2.weight, fc3.weight)") != NULL);
    /* slim on a model without batch norm. */
    CHECK_INT_EQ(mg_prune_apply(m, "slim", 0.5, NULL, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    mg_model_destroy(&m);
}

int main(void)
{
    test_kth();
    test_global();
    test_random();
    test_structured();
    test_dispatch();
    MG_TEST_MAIN_END();
}
