/* test_lrsched.c: learning-rate schedules against their closed forms
 * (torch's MultiStepLR and CosineAnnealingLR with T_max = epochs), their
 * checks, and the rate the training loop actually uses in each epoch. */
#include "mg_test.h"
#include "miagrid/nn.h"

static void test_closed_forms(void)
{
    mg_lr_schedule c = {0};
    CHECK_STR_EQ(mg_lr_kind_str(c.kind), "constant");
    for (int e = 0; e < 5; e++)
        CHECK(mg_lr_at(&c, 0.1, e, 5) == 0.1);

    /* MultiStepLR(milestones=[3, 6], gamma=0.1) from 0.1: 0.1 for epochs 0-2,
     * 0.01 for 3-5, 0.001 from 6 on. */
    mg_lr_schedule ms = {.kind = MG_LR_MULTISTEP, .n_milestones = 2, .milestones = {3, 6}, .gamma = 0.1};
    const double want[8] = {0.1, 0.1, 0.1, 0.01, 0.01, 0.01, 0.001, 0.001};
    for (int e = 0; e < 8; e++)
        CHECK_NEAR(mg_lr_at(&ms, 0.1, e, 8), want[e], 1e-15);

    /* CosineAnnealingLR(T_max = 4, eta_min = 0.001) from 0.1:
     * eta_min + (0.1 - 0.001)(1 + cos(pi e / 4)) / 2. */
    mg_lr_schedule cs = {.kind = MG_LR_COSINE, .eta_min = 0.001};
    const double pi = 3.14159265358979323846;
    for (int e = 0; e <= 4; e++)
        CHECK_NEAR(mg_lr_at(&cs, 0.1, e, 4), 0.001 + 0.099 * (1.0 + cos(pi * e / 4.0)) / 2.0, 1e-15);
    CHECK(mg_lr_at(&cs, 0.1, 0, 4) == 0.1);
    CHECK_NEAR(mg_lr_at(&cs, 0.1, 2, 4), 0.0505, 1e-15);
    CHECK_NEAR(mg_lr_at(&cs, 0.1, 4, 4), 0.001, 1e-15);
    /* eta_min 0, 10 epochs: half way is half the rate, the symmetric pair sums to it. */
    cs.eta_min = 0.0;
    CHECK_NEAR(mg_lr_at(&cs, 0.2, 5, 10), 0.1, 1e-15);
    CHECK_NEAR(mg_lr_at(&cs, 0.2, 3, 10) + mg_lr_at(&cs, 0.2, 7, 10), 0.2, 1e-15);
}

static void test_checks(void)
{
    mg_error err = {0};
    mg_lr_schedule s = {.kind = MG_LR_MULTISTEP, .n_milestones = 2, .milestones = {5, 5}, .gamma = 0.1};
    CHECK_INT_EQ(mg_lr_schedule_check(&s, 10, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    s.milestones[1] = 10;
    CHECK_INT_EQ(mg_lr_schedule_check(&s, 10, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "milestone 10 is not below the 10 epochs") != NULL);
    s.milestones[1] = 9;
    CHECK_OK(mg_lr_schedule_check(&s, 10, &err), &err);
    s.gamma = 0.0;
    CHECK_INT_EQ(mg_lr_schedule_check(&s, 10, &err), MG_ERR_ARG);
    s.gamma = 0.5;
    s.n_milestones = 0;
    CHECK_INT_EQ(mg_lr_schedule_check(&s, 10, &err), MG_ERR_ARG);
    s = (mg_lr_schedule){.kind = MG_LR_COSINE, .eta_min = -1.0};
    CHECK_INT_EQ(mg_lr_schedule_check(&s, 10, &err), MG_ERR_ARG);
    s.kind = (mg_lr_kind)9;
    CHECK_INT_EQ(mg_lr_schedule_check(&s, 10, &err), MG_ERR_ARG);
}

/* The training loop records the rate of each epoch, stepped once per epoch. */
static void test_in_training(void)
{
    enum { N = 40, DIM = 4 };
    float x[N * DIM];
    int32_t y[N];
    mg_rng r;
    mg_rng_seed(&r, 5, "lrsched", "data");
    for (int i = 0; i < N * DIM; i++)
        x[i] = (float)mg_rng_normal(&r);
    for (int i = 0; i < N; i++)
        y[i] = i % 2;
    int hidden[1] = {8};
    mg_model_cfg mc = {.arch = "mlp", .hidden = hidden, .n_hidden = 1, .act = MG_ACT_RELU,
                       .in_c = 1, .in_h = 1, .in_w = DIM, .n_classes = 2};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&mc, &m, &err), &err);
    if (!m)
        return;
    mg_model_init_params(m, &r);
    mg_train_cfg tc = {.epochs = 6, .batch = 16, .optim = {.kind = MG_OPT_SGD, .lr = 0.1, .momentum = 0.9},
                       .schedule = {.kind = MG_LR_MULTISTEP, .n_milestones = 2, .milestones = {2, 4}, .gamma = 0.5}};
    mg_history h = {0};
    CHECK_OK(mg_train(m, x, y, N, &tc, &r, &h, &err), &err);
    const double want[6] = {0.1, 0.1, 0.05, 0.05, 0.025, 0.025};
    CHECK_INT_EQ(h.n_epochs, 6);
    for (int e = 0; e < h.n_epochs; e++)
        CHECK(h.lr[e] == want[e]);
    mg_history_free(&h);

    tc.schedule = (mg_lr_schedule){.kind = MG_LR_COSINE};
    CHECK_OK(mg_train(m, x, y, N, &tc, &r, &h, &err), &err);
    for (int e = 0; e < h.n_epochs; e++)
        CHECK(h.lr[e] == mg_lr_at(&tc.schedule, 0.1, e, 6));
    CHECK(h.lr[5] < h.lr[4] && h.lr[5] > 0.0);
    mg_history_free(&h);

    /* A milestone past the last epoch is refused up front. */
    tc.schedule = (mg_lr_schedule){.kind = MG_LR_MULTISTEP, .n_milestones = 1, .milestones = {6}, .gamma = 0.1};
    CHECK_INT_EQ(mg_train(m, x, y, N, &tc, &r, &h, &err), MG_ERR_ARG);
    CHECK(h.loss == NULL);
    mg_model_destroy(&m);
}

int main(void)
{
    test_closed_forms();
    test_checks();
    test_in_training();
    MG_TEST_MAIN_END();
}
