/*
 * test_attack_nets.c: the attack networks' backward (the MLP with dropout
 * and SAMIA's transformer with batch norm, attention, layer norm, GELU and
 * dropout) against central finite differences of a random linear function
 * of the outputs, with the dropout masks held fixed by replaying the same
 * generator; and training that separates a learnable toy problem.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"
#include "mg_test.h"

/* L = sum c .* out, in double, for the given parameters, with a replayed
 * dropout stream. */
static double loss_at(mg_atk_net *net, const float *x, int N, const double *c, const mg_rng *drop0)
{
    mg_rng drop = *drop0;
    const float *out = NULL;
    mg_error err = {0};
    if (mg_atk_net_forward(net, x, N, 1, &drop, &out, &err) != MG_OK)
        return NAN;
    double l = 0.0;
    for (int i = 0; i < N * mg_atk_net_out_dim(net); i++)
        l += c[i] * (double)out[i];
    return l;
}

/* Probes whose |fd - backward| exceeds rel_tol * (max(|fd|, |backward|) + floor)
 * are counted: float32 rounding limits small gradients to about floor. */
static void check_grads(mg_atk_net *net, int N, uint64_t seed, double h, double rel_tol, double floor,
                        const char *what)
{
    mg_rng rng;
    mg_rng_seed(&rng, seed, "test", what);
    mg_atk_net_init(net, &rng);
    const int D = mg_atk_net_in_dim(net), O = mg_atk_net_out_dim(net);
    float *x = malloc((size_t)N * D * sizeof(float));
    double *c = malloc((size_t)N * O * sizeof(double));
    float *dout = malloc((size_t)N * O * sizeof(float));
    for (int i = 0; i < N * D; i++)
        x[i] = (float)mg_rng_normal(&rng);
    for (int i = 0; i < N * O; i++) {
        c[i] = mg_rng_normal(&rng);
        dout[i] = (float)c[i];
    }
    mg_rng drop0;
    mg_rng_seed(&drop0, seed, "test", "dropout");
    mg_rng drop = drop0;
    const float *out = NULL;
    mg_error err = {0};
    CHECK_OK(mg_atk_net_forward(net, x, N, 1, &drop, &out, &err), &err);
    size_t P = mg_atk_net_n_params(net);
    memset(mg_atk_net_grads(net), 0, P * sizeof(float));
    mg_atk_net_backward(net, dout);
    float *g = malloc(P * sizeof(float));
    memcpy(g, mg_atk_net_grads(net), P * sizeof(float));
    float *p = mg_atk_net_params(net);
    /* The first 300 parameters (SAMIA's batch norm and token projection)
     * and a spread of 400 over the rest. */
    int bad = 0;
    double worst = 0.0;
    size_t stride = P / 400 + 1;
    for (size_t j = 0; j < P; j += j < 300 ? 1 : stride) {
        float keep = p[j];
        p[j] = keep + (float)h;
        double lp = loss_at(net, x, N, c, &drop0);
        p[j] = keep - (float)h;
        double lm = loss_at(net, x, N, c, &drop0);
        p[j] = keep;
        double fd = (lp - lm) / (2.0 * h);
        double diff = fabs(fd - (double)g[j]);
        double scale = fabs(fd) > fabs((double)g[j]) ? fabs(fd) : fabs((double)g[j]);
        double r = diff / (scale + floor);
        if (r > worst)
            worst = r;
        if (r > rel_tol) {
            bad++;
            fprintf(stderr, "%s: parameter %zu: finite difference %.6g, backward %.6g\n", what, j, fd, (double)g[j]);
        }
    }
    if (bad > 0)
        fprintf(stderr, "%s: %d probes off, worst relative difference %.3g\n", what, bad, worst);
    /* A ReLU kink inside +-h breaks a probe or two; a wrong backward breaks many. */
    CHECK(bad <= 3);
    free(x);
    free(c);
    free(dout);
    free(g);
}

static void test_mlp_grad(void)
{
    mg_atk_mlp_cfg mc = {.in_dim = 7, .n_hidden = 3, .hidden = {9, 8, 5}, .dropout = {0.2f, 0.2f, 0.0f},
                         .out_dim = 2, .xavier = 1};
    mg_atk_net *net = NULL;
    mg_error err = {0};
    CHECK_OK(mg_atk_net_mlp(&mc, &net, &err), &err);
    check_grads(net, 5, 11, 1e-3, 2e-2, 1e-2, "mlp");
    mg_atk_net_destroy(&net);
    CHECK(net == NULL);
    mg_atk_mlp_cfg one = {.in_dim = 6, .n_hidden = 1, .hidden = {30}, .out_dim = 1, .xavier = 0};
    CHECK_OK(mg_atk_net_mlp(&one, &net, &err), &err);
    check_grads(net, 4, 12, 1e-3, 2e-2, 1e-2, "perceptron");
    mg_atk_net_destroy(&net);
}

static void test_samia_grad(void)
{
    mg_atk_net *net = NULL;
    mg_error err = {0};
    CHECK_OK(mg_atk_net_samia(4, &net, &err), &err);
    CHECK_INT_EQ(mg_atk_net_in_dim(net), 12);
    CHECK_INT_EQ(mg_atk_net_out_dim(net), 2);
    check_grads(net, 3, 13, 3e-3, 5e-2, 3e-2, "samia");
    /* One training sample cannot go through batch norm. */
    float x[12] = {0};
    const float *out = NULL;
    mg_rng drop;
    mg_rng_seed(&drop, 1, "t", "d");
    CHECK_INT_EQ(mg_atk_net_forward(net, x, 1, 1, &drop, &out, &err), MG_ERR_ARG);
    mg_atk_net_destroy(&net);
}

/* Two Gaussian blobs: a few epochs must separate them. */
static void test_training(void)
{
    const int n = 400, D = 5;
    float *x = malloc((size_t)n * D * sizeof(float));
    uint8_t *y = malloc((size_t)n);
    double *s = malloc((size_t)n * sizeof(double));
    mg_rng rng;
    mg_rng_seed(&rng, 3, "test", "blobs");
    for (int i = 0; i < n; i++) {
        y[i] = (uint8_t)(i % 2);
        for (int d = 0; d < D; d++)
            x[i * D + d] = (float)(mg_rng_normal(&rng) + (y[i] ? 1.5 : -1.5));
    }
    mg_atk_mlp_cfg mc = {.in_dim = D, .n_hidden = 2, .hidden = {16, 16}, .dropout = {0.1f, 0.0f}, .out_dim = 1};
    mg_atk_net *net = NULL;
    mg_error err = {0};
    CHECK_OK(mg_atk_net_mlp(&mc, &net, &err), &err);
    mg_atk_net_init(net, &rng);
    mg_atk_train_cfg tc;
    memset(&tc, 0, sizeof tc);
    tc.epochs = 5;
    tc.batch = 32;
    tc.optim.kind = MG_OPT_ADAM;
    tc.optim.lr = 0.01;
    tc.optim.beta1 = 0.9;
    tc.optim.beta2 = 0.999;
    tc.optim.eps = 1e-8;
    CHECK_OK(mg_atk_net_train(net, x, y, (size_t)n, &tc, &rng, "test", &err), &err);
    CHECK_OK(mg_atk_net_score(net, x, (size_t)n, s, &err), &err);
    mg_attack_metrics m;
    mg_attack_evaluate(s, y, (size_t)n, 0.0, &m);
    CHECK(m.balanced_acc > 0.95);
    tc.epochs = 0;
    CHECK_INT_EQ(mg_atk_net_train(net, x, y, (size_t)n, &tc, &rng, "test", &err), MG_ERR_ARG);
    mg_atk_net_destroy(&net);
    free(x);
    free(y);
    free(s);
}

int main(void)
{
    test_mlp_grad();
    test_samia_grad();
    test_training();
    MG_TEST_MAIN_END();
}
