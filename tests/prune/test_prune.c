/* test_prune.c: L1 unstructured pruning picks exactly round(s*n) smallest
 * weights per tensor (ties by index), zeros them, leaves biases alone, keeps
 * earlier prunings, and mask sparsity reports it. */
#include "mg_test.h"
#include "miagrid/prune.h"

#include <stdint.h>

static mg_model *make(const char *arch, int c, int h, int w, int k, const int *hidden, int n_hidden, uint64_t seed)
{
    mg_model_cfg cfg = {.arch = arch, .hidden = hidden, .n_hidden = n_hidden, .act = MG_ACT_RELU,
                        .in_c = c, .in_h = h, .in_w = w, .n_classes = k};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, seed, "prune", "init");
    if (m)
        mg_model_init_params(m, &r);
    return m;
}

static size_t count_masked(const mg_model *m, const mg_tensor_info *t)
{
    size_t z = 0;
    const float *mk = mg_model_masks((mg_model *)m) + t->offset;
    for (size_t i = 0; i < t->count; i++)
        z += mk[i] == 0.0f;
    return z;
}

/* After pruning at `s` from `before` (the parameters before the call, with
 * `old_masks` the masks before), check every tensor of m. */
static void check_pruned(mg_model *m, const float *before, const float *old_masks, double s, const char *label)
{
    const float *p = mg_model_params(m), *mk = mg_model_masks(m);
    size_t zeros = 0, prunable = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        size_t masked = count_masked(m, ti);
        if (!ti->prunable) {
            CHECK_INT_EQ(masked, 0);
            CHECK(memcmp(p + ti->offset, before + ti->offset, ti->count * sizeof(float)) == 0);
            continue;
        }
        size_t old = 0;
        for (size_t i = 0; i < ti->count; i++)
            old += old_masks[ti->offset + i] == 0.0f;
        size_t k = (size_t)llround(s * (double)ti->count);
        if (fabs(s * (double)ti->count - floor(s * (double)ti->count) - 0.5) < 1e-9 && k % 2 == 1)
            k--; /* half to even */
        if (k < old)
            k = old;
        printf("  %s %-13s n=%-6zu masked %zu (want %zu)\n", label, ti->name, ti->count, masked, k);
        CHECK_INT_EQ(masked, k);
        /* Masked are exactly +0, kept are untouched, old zeros stay masked, and
         * no newly pruned weight is larger than a kept one. */
        int ok_zero = 1, ok_kept = 1, ok_old = 1;
        double max_pruned = 0.0, min_kept = INFINITY;
        for (size_t i = 0; i < ti->count; i++) {
            size_t j = ti->offset + i;
            if (mk[j] == 0.0f) {
                ok_zero &= p[j] == 0.0f && !signbit(p[j]);
                if (old_masks[j] != 0.0f)
                    max_pruned = fmax(max_pruned, fabs(before[j]));
            } else {
                ok_kept &= p[j] == before[j] && mk[j] == 1.0f;
                ok_old &= old_masks[j] != 0.0f;
                min_kept = fmin(min_kept, fabs(before[j]));
            }
        }
        CHECK(ok_zero);
        CHECK(ok_kept);
        CHECK(ok_old);
        CHECK(max_pruned <= min_kept);
        zeros += masked;
        prunable += ti->count;
    }
    CHECK_NEAR(mg_model_mask_sparsity(m), (double)zeros / (double)prunable, 1e-15);
}

static void prune_and_check(mg_model *m, double s, const char *label)
{
    size_t np = mg_model_n_params(m);
    float *before = malloc(np * sizeof(float)), *old = malloc(np * sizeof(float));
    memcpy(before, mg_model_params(m), np * sizeof(float));
    memcpy(old, mg_model_masks(m), np * sizeof(float));
    mg_error err = {0};
    CHECK_OK(mg_prune_l1_unstructured(m, s, &err), &err);
    check_pruned(m, before, old, s, label);
    free(before);
    free(old);
}

static void test_counts(void)
{
    int hidden[2] = {37, 11};
    mg_model *m = make("mlp", 1, 10, 10, 5, hidden, 2, 1);
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.0, 0.0);
    prune_and_check(m, 0.0, "mlp s=0.0");
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.0, 0.0);
    prune_and_check(m, 0.3, "mlp s=0.3");
    printf("  mask sparsity %.6f\n", mg_model_mask_sparsity(m));
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.3, 0.002);

    /* Fine-tuning moves the kept weights (pruned stay 0); a second pruning keeps the old zeros. */
    mg_rng r;
    mg_rng_seed(&r, 5, "prune", "finetune");
    float *p = mg_model_params(m);
    for (size_t i = 0; i < mg_model_n_params(m); i++)
        if (mg_model_masks(m)[i] != 0.0f)
            p[i] += (float)(0.02 * (mg_rng_uniform(&r) - 0.5));
    prune_and_check(m, 0.6, "mlp s=0.6");
    /* A lower sparsity than already reached unmasks nothing. */
    prune_and_check(m, 0.1, "mlp s=0.1");
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.6, 0.002);
    mg_model_destroy(&m);

    m = make("lenet5", 1, 28, 28, 10, NULL, 0, 2);
    prune_and_check(m, 0.9, "lenet5 s=0.9");
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.9, 1e-3);
    mg_model_destroy(&m);
}

static void test_ties_and_rounding(void)
{
    /* in_dim 1 -> 5 -> 1 class: fc1.weight and fc2.weight both have 5 entries. */
    int hidden[1] = {5};
    mg_model *m = make("mlp", 1, 1, 1, 1, hidden, 1, 3);
    const mg_tensor_info *w1 = mg_model_tensor(m, 0), *w2 = mg_model_tensor(m, 2);
    CHECK(w1->count == 5 && w2->count == 5);
    float *p = mg_model_params(m), *mk = mg_model_masks(m);
    const float v1[5] = {0.5f, -0.5f, 0.5f, 0.1f, -0.5f};
    memcpy(p + w1->offset, v1, sizeof v1);
    /* An unmasked exact zero at index 0 and an already-masked entry at index 2. */
    const float v2[5] = {0.0f, 0.7f, 0.0f, -0.3f, 0.9f};
    memcpy(p + w2->offset, v2, sizeof v2);
    mk[w2->offset + 2] = 0.0f;

    mg_error err = {0};
    /* 0.5 * 5 = 2.5 rounds to 2 (half to even, like Python's round). */
    CHECK_OK(mg_prune_l1_unstructured(m, 0.5, &err), &err);
    const float *m1 = mk + w1->offset, *m2 = mk + w2->offset;
    /* fc1: 0.1 (index 3), then the first of the tied 0.5s (index 0). */
    CHECK(m1[0] == 0.0f && m1[1] == 1.0f && m1[2] == 1.0f && m1[3] == 0.0f && m1[4] == 1.0f);
    CHECK(p[w1->offset + 1] == -0.5f && p[w1->offset + 0] == 0.0f);
    /* fc2: the masked index 2 counts first, then the zero at index 0. */
    CHECK(m2[0] == 0.0f && m2[1] == 1.0f && m2[2] == 0.0f && m2[3] == 1.0f && m2[4] == 1.0f);
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.4, 1e-15);

    /* 0.2 * 5 = 1: already two masked in each, none is unmasked. */
    CHECK_OK(mg_prune_l1_unstructured(m, 0.2, &err), &err);
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.4, 1e-15);
    /* 0.7 * 5 = 3.5 rounds to 4. */
    CHECK_OK(mg_prune_l1_unstructured(m, 0.7, &err), &err);
    CHECK_INT_EQ(count_masked(m, w1), 4);
    CHECK(m1[4] == 1.0f);
    CHECK_INT_EQ(count_masked(m, w2), 4);
    CHECK(m2[4] == 1.0f);
    mg_model_destroy(&m);
}

static void test_errors(void)
{
    int hidden[1] = {4};
    mg_model *m = make("mlp", 1, 2, 2, 3, hidden, 1, 4);
    mg_error err = {0};
    CHECK_INT_EQ(mg_prune_l1_unstructured(m, 1.0, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK_INT_EQ(mg_prune_l1_unstructured(m, -0.1, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_prune_l1_unstructured(m, NAN, &err), MG_ERR_ARG);
    /* A diverged model is refused and left as it was. */
    const mg_tensor_info *w2 = mg_model_tensor(m, 2);
    mg_model_params(m)[w2->offset + 1] = NAN;
    CHECK_INT_EQ(mg_prune_l1_unstructured(m, 0.5, &err), MG_ERR_NUMERIC);
    printf("  expected error: %s\n", err.msg);
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.0, 0.0);
    mg_model_destroy(&m);
}

int main(void)
{
    test_counts();
    test_ties_and_rounding();
    test_errors();
    MG_TEST_MAIN_END();
}
