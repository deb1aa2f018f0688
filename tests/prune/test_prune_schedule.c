/* test_prune_schedule.c: iterative pruning. WeMem's per-round keep fraction,
 * IMP's 1 - 0.8^r and the rounds to reach a target, weight rewinding, and a
 * short IMP run (prune globally, rewind, repeat) whose masks nest and whose
 * sparsity follows the schedule. */
#include "mg_test.h"
#include "miagrid/prune.h"

#include <stdint.h>

static void test_helpers(void)
{
    /* (1 - s)^(k/K): each round keeps the same fraction of what is left. */
    for (int k = 0; k <= 5; k++)
        CHECK_NEAR(mg_prune_iter_keep(0.9, k, 5), pow(0.1, k / 5.0), 1e-15);
    CHECK_NEAR(mg_prune_iter_keep(0.9, 0, 5), 1.0, 0.0);
    CHECK_NEAR(mg_prune_iter_keep(0.9, 5, 5), 1.0 - 0.9, 0.0);
    CHECK_NEAR(mg_prune_iter_keep(0.75, 1, 2), 0.5, 1e-15);
    CHECK_NEAR(mg_prune_iter_keep(0.0, 3, 7), 1.0, 0.0);
    CHECK(isnan(mg_prune_iter_keep(0.9, 6, 5)));
    CHECK(isnan(mg_prune_iter_keep(0.9, -1, 5)));
    CHECK(isnan(mg_prune_iter_keep(0.9, 0, 0)));
    CHECK(isnan(mg_prune_iter_keep(1.0, 1, 5)));
    CHECK(isnan(mg_prune_iter_keep(NAN, 1, 5)));

    CHECK_NEAR(mg_prune_imp_sparsity(0, 0.2), 0.0, 0.0);
    CHECK_NEAR(mg_prune_imp_sparsity(1, 0.2), 0.2, 1e-15);
    CHECK_NEAR(mg_prune_imp_sparsity(2, 0.2), 0.36, 1e-15);
    CHECK_NEAR(mg_prune_imp_sparsity(24, 0.2), 1.0 - pow(0.8, 24), 1e-15);
    printf("  IMP: 24 rounds of 20 %% leave %.2f %% of the weights\n", 100.0 * pow(0.8, 24));
    CHECK(isnan(mg_prune_imp_sparsity(-1, 0.2)));
    CHECK(isnan(mg_prune_imp_sparsity(3, 0.0)));
    CHECK(isnan(mg_prune_imp_sparsity(3, 1.0)));
    CHECK_INT_EQ(mg_prune_imp_rounds(0.0, 0.2), 0);
    CHECK_INT_EQ(mg_prune_imp_rounds(0.2, 0.2), 1);
    CHECK_INT_EQ(mg_prune_imp_rounds(0.36, 0.2), 2);
    CHECK_INT_EQ(mg_prune_imp_rounds(0.37, 0.2), 3);
    CHECK_INT_EQ(mg_prune_imp_rounds(0.5, 0.2), 4);
    CHECK_INT_EQ(mg_prune_imp_rounds(0.9, 0.2), 11);
    CHECK_INT_EQ(mg_prune_imp_rounds(0.99, 0.2), 21);
    CHECK_INT_EQ(mg_prune_imp_rounds(1.0, 0.2), -1);
    CHECK_INT_EQ(mg_prune_imp_rounds(0.5, 0.0), -1);
    CHECK_INT_EQ(mg_prune_imp_rounds(NAN, 0.2), -1);
}

static void test_rewind_imp(void)
{
    int hidden[2] = {30, 20};
    mg_model_cfg cfg = {.arch = "mlp", .hidden = hidden, .n_hidden = 2, .act = MG_ACT_RELU,
                        .in_c = 1, .in_h = 5, .in_w = 5, .n_classes = 4};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, 1, "prune-schedule", "init");
    mg_model_init_params(m, &r);
    size_t np = mg_model_n_params(m);
    float *rewind = malloc(np * sizeof(float)), *old = malloc(np * sizeof(float));
    memcpy(rewind, mg_model_params(m), np * sizeof(float));
    size_t total = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++)
        if (mg_model_tensor(m, t)->prunable)
            total += mg_model_tensor(m, t)->count;
    for (int round = 1; round <= 4; round++) {
        /* "Training": every unmasked weight moves. */
        for (size_t i = 0; i < np; i++)
            if (mg_model_masks(m)[i] != 0.0f)
                mg_model_params(m)[i] += (float)(0.05 * mg_rng_normal(&r));
        memcpy(old, mg_model_masks(m), np * sizeof(float));
        double s = mg_prune_imp_sparsity(round, 0.2);
        CHECK_OK(mg_prune_apply(m, "l1-unstructured-global", s, NULL, NULL, &err), &err);
        mg_prune_rewind(m, rewind);
        size_t masked = 0;
        int nested = 1, rewound = 1;
        for (size_t i = 0; i < np; i++) {
            const float mk = mg_model_masks(m)[i], p = mg_model_params(m)[i];
            nested &= old[i] != 0.0f || mk == 0.0f;
            rewound &= mk == 0.0f ? p == 0.0f : p == rewind[i];
        }
        for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
            const mg_tensor_info *ti = mg_model_tensor(m, t);
            for (size_t i = ti->offset; ti->prunable && i < ti->offset + ti->count; i++)
                masked += mg_model_masks(m)[i] == 0.0f;
        }
        printf("  IMP round %d: target %.4f, %zu of %zu pruned\n", round, s, masked, total);
        CHECK_INT_EQ(masked, (size_t)nearbyint(s * (double)total));
        CHECK(nested);
        CHECK(rewound);
    }
    free(rewind);
    free(old);
    mg_model_destroy(&m);
}

int main(void)
{
    test_helpers();
    test_rewind_imp();
    MG_TEST_MAIN_END();
}
