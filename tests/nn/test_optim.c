/* test_optim.c: SGD (plain, momentum, Nesterov), Adam and AdamW steps against
 * hand-computed values, the PyTorch first-step momentum rule, masks holding
 * parameters and state at exactly zero, and configuration errors. */
#include "mg_test.h"
#include "miagrid/nn.h"

static void test_sgd_by_hand(void)
{
    /* p0 = 1, g = 0.5 every step, lr 0.1, momentum 0.9, weight decay 0.1:
     *   d1 = 0.5 + 0.1*1     = 0.6,     buf = 0.6,                 p = 0.94
     *   d2 = 0.5 + 0.094     = 0.594,   buf = 0.54 + 0.594 = 1.134,  p = 0.8266
     *   d3 = 0.5 + 0.08266   = 0.58266, buf = 1.0206 + 0.58266 = 1.60326, p = 0.666274 */
    mg_optim_cfg cfg = {.kind = MG_OPT_SGD, .lr = 0.1, .momentum = 0.9, .weight_decay = 0.1};
    mg_optim o;
    mg_error err = {0};
    CHECK_OK(mg_optim_init(&o, &cfg, 2, &err), &err);
    float p[2] = {1.0f, -2.0f}, g[2];
    const double want[3] = {0.94, 0.8266, 0.666274}, want_buf[3] = {0.6, 1.134, 1.60326};
    for (int s = 0; s < 3; s++) {
        g[0] = 0.5f;
        g[1] = 0.0f;
        mg_optim_step(&o, p, g, NULL);
        CHECK_NEAR(p[0], want[s], 1e-6);
        CHECK_NEAR(o.m1[0], want_buf[s], 1e-6);
    }
    CHECK_INT_EQ(o.step, 3);
    mg_optim_free(&o);

    /* Momentum 0 is plain SGD: p -= lr*(g + wd*p). */
    cfg.momentum = 0.0;
    CHECK_OK(mg_optim_init(&o, &cfg, 2, &err), &err);
    p[0] = 1.0f;
    for (int s = 0; s < 2; s++) {
        g[0] = 0.5f;
        g[1] = 0.0f;
        mg_optim_step(&o, p, g, NULL);
    }
    /* 1 - 0.1*0.6 = 0.94; 0.94 - 0.1*(0.5 + 0.094) = 0.8806 */
    CHECK_NEAR(p[0], 0.8806, 1e-6);
    mg_optim_free(&o);
}

static void test_adam_by_hand(void)
{
    /* A constant gradient gives m_hat = g and v_hat = g^2, so each step moves lr*sign(g). */
    mg_optim_cfg cfg = {.kind = MG_OPT_ADAM, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    mg_optim o;
    mg_error err = {0};
    CHECK_OK(mg_optim_init(&o, &cfg, 1, &err), &err);
    float p = 1.0f, g;
    for (int s = 0; s < 3; s++) {
        g = 0.5f;
        mg_optim_step(&o, &p, &g, NULL);
        CHECK_NEAR(p, 1.0 - 0.1 * (s + 1), 1e-6);
    }
    mg_optim_free(&o);

    /* Two different gradients, by hand: g1 = 0.5, g2 = -0.2.
     *   m1 = 0.05, v1 = 0.00025, p1 = 1 - 0.1 * (0.05/0.1)/(sqrt(0.00025/0.001)) = 0.9
     *   m2 = 0.045 - 0.02 = 0.025, v2 = 0.00024975 + 0.00004 = 0.00028975
     *   m_hat = 0.025/0.19, v_hat = 0.00028975/0.001999
     *   p2 = 0.9 - 0.1 * m_hat / sqrt(v_hat) = 0.8654400... */
    CHECK_OK(mg_optim_init(&o, &cfg, 1, &err), &err);
    p = 1.0f;
    g = 0.5f;
    mg_optim_step(&o, &p, &g, NULL);
    CHECK_NEAR(p, 0.9, 1e-6);
    g = -0.2f;
    mg_optim_step(&o, &p, &g, NULL);
    double m_hat = 0.025 / 0.19, v_hat = 0.00028975 / 0.001999;
    CHECK_NEAR(o.m1[0], 0.025, 1e-8);
    CHECK_NEAR(o.m2[0], 0.00028975, 1e-10);
    CHECK_NEAR(p, 0.9 - 0.1 * m_hat / (sqrt(v_hat) + 1e-8), 1e-6);
    printf("  adam two steps: p = %.7f\n", (double)p);
    mg_optim_free(&o);

    /* L2 weight decay is added to the gradient before the moments (not AdamW):
     * p0 = 2, g = 0, wd = 0.5 -> d = 1, first step moves exactly lr. */
    cfg.weight_decay = 0.5;
    CHECK_OK(mg_optim_init(&o, &cfg, 1, &err), &err);
    p = 2.0f;
    g = 0.0f;
    mg_optim_step(&o, &p, &g, NULL);
    CHECK_NEAR(p, 1.9, 1e-6);
    CHECK_NEAR(o.m1[0], 0.1, 1e-7);
    mg_optim_free(&o);
}

static void test_nesterov_by_hand(void)
{
    /* p0 = 1, g = 0.5 every step, lr 0.1, momentum 0.9, weight decay 0.1; torch's
     * Nesterov step is p -= lr*(d + momentum*buf) with buf updated first:
     *   d1 = 0.6,       buf = 0.6,                          p = 1 - 0.1*(0.6 + 0.54)           = 0.886
     *   d2 = 0.5886,    buf = 0.54 + 0.5886 = 1.1286,        p = 0.886 - 0.1*(0.5886 + 1.01574) = 0.725566
     *   d3 = 0.5725566, buf = 1.01574 + 0.5725566 = 1.5882966, p = 0.725566 - 0.1*2.00202354     = 0.525363646 */
    mg_optim_cfg cfg = {.kind = MG_OPT_SGD, .lr = 0.1, .momentum = 0.9, .weight_decay = 0.1, .nesterov = 1};
    mg_optim o;
    mg_error err = {0};
    CHECK_OK(mg_optim_init(&o, &cfg, 1, &err), &err);
    const double want[3] = {0.886, 0.725566, 0.525363646}, want_buf[3] = {0.6, 1.1286, 1.5882966};
    float p = 1.0f, g;
    for (int s = 0; s < 3; s++) {
        g = 0.5f;
        mg_optim_step(&o, &p, &g, NULL);
        CHECK_NEAR(p, want[s], 1e-6);
        CHECK_NEAR(o.m1[0], want_buf[s], 1e-6);
    }
    mg_optim_free(&o);
}

static void test_adamw_by_hand(void)
{
    /* Decoupled decay: p0 = 2, wd 0.5, lr 0.1, so each step first multiplies p by
     * 1 - 0.05. g1 = 0.5: p = 1.9, then Adam's first step moves lr*sign(g): 1.8
     * (Adam with L2 would give 1.9: d = 0.5 + 0.5*2 = 1.5, one step of lr).
     * g2 = -0.2: p = 1.8*0.95 = 1.71, m = 0.025, v = 0.00028975, then
     * p -= 0.1 * (0.025/0.19) / (sqrt(0.00028975/0.001999) + 1e-8) = 1.67543942 */
    mg_optim_cfg cfg = {.kind = MG_OPT_ADAMW, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                        .weight_decay = 0.5};
    mg_optim o;
    mg_error err = {0};
    CHECK_OK(mg_optim_init(&o, &cfg, 1, &err), &err);
    CHECK(o.m2 != NULL);
    float p = 2.0f, g = 0.5f;
    mg_optim_step(&o, &p, &g, NULL);
    CHECK_NEAR(p, 1.8, 1e-6);
    CHECK_NEAR(o.m1[0], 0.05, 1e-8);
    g = -0.2f;
    mg_optim_step(&o, &p, &g, NULL);
    CHECK_NEAR(o.m1[0], 0.025, 1e-8);
    CHECK_NEAR(o.m2[0], 0.00028975, 1e-10);
    CHECK_NEAR(p, 1.71 - 0.1 * (0.025 / 0.19) / (sqrt(0.00028975 / 0.001999) + 1e-8), 1e-6);
    printf("  adamw two steps: p = %.7f\n", (double)p);
    mg_optim_free(&o);

    /* Without weight decay AdamW is Adam, bit for bit. */
    mg_optim a, w;
    cfg.weight_decay = 0.0;
    CHECK_OK(mg_optim_init(&w, &cfg, 1, &err), &err);
    cfg.kind = MG_OPT_ADAM;
    CHECK_OK(mg_optim_init(&a, &cfg, 1, &err), &err);
    float pa = 0.3f, pw = 0.3f;
    for (int s = 0; s < 5; s++) {
        float ga = 0.1f * (float)(s - 2), gw = ga;
        mg_optim_step(&a, &pa, &ga, NULL);
        mg_optim_step(&w, &pw, &gw, NULL);
    }
    CHECK(pa == pw);
    mg_optim_free(&a);
    mg_optim_free(&w);
}

static void test_kind_names(void)
{
    mg_opt_kind k = MG_OPT_SGD;
    CHECK_INT_EQ(mg_opt_kind_parse("adamw", &k), 0);
    CHECK_INT_EQ(k, MG_OPT_ADAMW);
    CHECK_INT_EQ(mg_opt_kind_parse("adam", &k), 0);
    CHECK_INT_EQ(k, MG_OPT_ADAM);
    CHECK_INT_EQ(mg_opt_kind_parse("rmsprop", &k), -1);
    CHECK_STR_EQ(mg_opt_kind_str(MG_OPT_SGD), "sgd");
}

/* Masked entries stay exactly +0.0f through many steps of momentum and weight
 * decay, their state stays zero; unmasked entries move. */
static void check_masked(mg_opt_kind kind, int nesterov)
{
    enum { N = 64 };
    mg_optim_cfg cfg = {.kind = kind, .lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4,
                        .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8, .nesterov = nesterov};
    mg_optim o;
    mg_error err = {0};
    CHECK_OK(mg_optim_init(&o, &cfg, N, &err), &err);
    float p[N], g[N], mask[N], p0[N];
    mg_rng rng;
    mg_rng_seed(&rng, 3, "test", "optim");
    for (int i = 0; i < N; i++) {
        p[i] = (float)(mg_rng_uniform(&rng) - 0.5);
        mask[i] = i % 3 == 0 ? 0.0f : 1.0f;
    }
    /* The pruned values start nonzero: the step itself must zero them. */
    memcpy(p0, p, sizeof p);
    for (int s = 0; s < 200; s++) {
        for (int i = 0; i < N; i++)
            g[i] = (float)(mg_rng_uniform(&rng) - 0.3);
        mg_optim_step(&o, p, g, mask);
    }
    int exact = 1, state = 1, moved = 1;
    for (int i = 0; i < N; i++) {
        if (mask[i] == 0.0f) {
            exact &= p[i] == 0.0f && !signbit(p[i]);
            exact &= g[i] == 0.0f;
            state &= o.m1[i] == 0.0f && (!o.m2 || o.m2[i] == 0.0f);
        } else {
            moved &= p[i] != p0[i];
        }
    }
    CHECK(exact);
    CHECK(state);
    CHECK(moved);
    mg_optim_free(&o);
}

static void test_errors(void)
{
    mg_optim o;
    mg_error err = {0};
    mg_optim_cfg cfg = {.kind = MG_OPT_SGD, .lr = -1.0};
    CHECK_INT_EQ(mg_optim_init(&o, &cfg, 4, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    cfg.lr = 0.1;
    cfg.momentum = 1.5;
    CHECK_INT_EQ(mg_optim_init(&o, &cfg, 4, &err), MG_ERR_ARG);
    cfg = (mg_optim_cfg){.kind = MG_OPT_ADAM, .lr = 0.1, .beta1 = 1.0, .beta2 = 0.999, .eps = 1e-8};
    CHECK_INT_EQ(mg_optim_init(&o, &cfg, 4, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    cfg.beta1 = 0.9;
    cfg.weight_decay = NAN;
    CHECK_INT_EQ(mg_optim_init(&o, &cfg, 4, &err), MG_ERR_ARG);
    CHECK(o.m1 == NULL);
    cfg = (mg_optim_cfg){.kind = MG_OPT_ADAMW, .lr = 0.1, .beta1 = 0.9, .beta2 = 0.999, .eps = -1.0};
    CHECK_INT_EQ(mg_optim_init(&o, &cfg, 4, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "optimiser adamw: eps") != NULL);
    cfg = (mg_optim_cfg){.kind = MG_OPT_SGD, .lr = 0.1, .nesterov = 1};
    CHECK_INT_EQ(mg_optim_init(&o, &cfg, 4, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK(strstr(err.msg, "nesterov needs a momentum > 0") != NULL);
    cfg.kind = (mg_opt_kind)7;
    CHECK_INT_EQ(mg_optim_init(&o, &cfg, 4, &err), MG_ERR_ARG);
}

int main(void)
{
    test_sgd_by_hand();
    test_adam_by_hand();
    test_nesterov_by_hand();
    test_adamw_by_hand();
    test_kind_names();
    check_masked(MG_OPT_SGD, 0);
    check_masked(MG_OPT_SGD, 1);
    check_masked(MG_OPT_ADAM, 0);
    check_masked(MG_OPT_ADAMW, 0);
    test_errors();
    MG_TEST_MAIN_END();
}
