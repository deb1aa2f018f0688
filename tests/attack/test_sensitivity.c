/*
 * test_sensitivity.c: mg_attack_sensitivity on a linear softmax model, where
 * for small eps the feature tends to E|grad p_k . u| = ||grad p_k|| sqrt(2/pi)
 * with grad p_k = p_k (W_k - sum_j p_j W_j); its independence from how the
 * samples are split across calls; and its argument checks.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/attack.h"
#include "miagrid/nn.h"
#include "mg_test.h"

enum { D = 3, K = 3 };

static const float W[K][D] = {{1.0f, -0.5f, 0.2f}, {0.3f, 0.8f, -1.0f}, {-0.6f, 0.1f, 0.7f}};
static const float B[K] = {0.1f, -0.2f, 0.05f};

static mg_model *linear_model(void)
{
    mg_model_cfg mc;
    memset(&mc, 0, sizeof mc);
    mc.arch = "mlp";
    mc.n_hidden = 0;
    mc.in_c = 1;
    mc.in_h = 1;
    mc.in_w = D;
    mc.n_classes = K;
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&mc, &m, &err), &err);
    if (!m)
        return NULL;
    float *p = mg_model_params(m);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (strcmp(ti->name, "fc1.weight") == 0)
            memcpy(p + ti->offset, W, sizeof W);
        else if (strcmp(ti->name, "fc1.bias") == 0)
            memcpy(p + ti->offset, B, sizeof B);
    }
    return m;
}

static void test_closed_form(void)
{
    mg_model *m = linear_model();
    if (!m)
        return;
    const float x[2][D] = {{0.5f, -1.0f, 2.0f}, {-0.3f, 0.4f, 0.1f}};
    const int draws = 4000;
    float out[2 * K];
    mg_rng rng;
    mg_rng_seed(&rng, 1, "test", "sens");
    mg_error err = {0};
    CHECK_OK(mg_attack_sensitivity(m, &x[0][0], 2, draws, 1e-3, &rng, out, &err), &err);
    for (int i = 0; i < 2; i++) {
        double z[K], p[K], mx = -INFINITY, s = 0.0;
        for (int k = 0; k < K; k++) {
            z[k] = B[k];
            for (int d = 0; d < D; d++)
                z[k] += (double)W[k][d] * x[i][d];
            mx = fmax(mx, z[k]);
        }
        for (int k = 0; k < K; k++)
            s += (p[k] = exp(z[k] - mx));
        for (int k = 0; k < K; k++)
            p[k] /= s;
        for (int k = 0; k < K; k++) {
            double g2 = 0.0;
            for (int d = 0; d < D; d++) {
                double mean_w = 0.0;
                for (int j = 0; j < K; j++)
                    mean_w += p[j] * W[j][d];
                double g = p[k] * (W[k][d] - mean_w);
                g2 += g * g;
            }
            double want = sqrt(g2) * sqrt(2.0 / 3.14159265358979323846);
            /* Monte Carlo: relative deviation sqrt(pi/2 - 1) / sqrt(draws) = 1.2 % */
            CHECK_NEAR(out[i * K + k] / want, 1.0, 0.05);
        }
    }
    mg_model_destroy(&m);
}

static void test_batching(void)
{
    mg_model *m = linear_model();
    if (!m)
        return;
    enum { N = 70 };
    float x[N * D], a[N * K], b[N * K];
    mg_rng rng;
    mg_rng_seed(&rng, 2, "test", "inputs");
    for (int i = 0; i < N * D; i++)
        x[i] = (float)mg_rng_normal(&rng);
    mg_error err = {0};
    mg_rng r1, r2;
    mg_rng_seed(&r1, 3, "test", "noise");
    r2 = r1;
    CHECK_OK(mg_attack_sensitivity(m, x, N, 10, 1e-3, &r1, a, &err), &err);
    CHECK_OK(mg_attack_sensitivity(m, x, 30, 10, 1e-3, &r2, b, &err), &err);
    CHECK_OK(mg_attack_sensitivity(m, x + 30 * D, N - 30, 10, 1e-3, &r2, b + 30 * K, &err), &err);
    CHECK(memcmp(a, b, sizeof a) == 0);
    CHECK(memcmp(&r1, &r2, sizeof r1) == 0);
    for (int i = 0; i < N * K; i++)
        CHECK(a[i] >= 0.0f && isfinite(a[i]));

    CHECK_INT_EQ(mg_attack_sensitivity(m, x, N, 0, 1e-3, &r1, a, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "draws") != NULL);
    CHECK_INT_EQ(mg_attack_sensitivity(m, x, N, 5, 0.0, &r1, a, &err), MG_ERR_ARG);
    mg_model_destroy(&m);
}

int main(void)
{
    test_closed_form();
    test_batching();
    MG_TEST_MAIN_END();
}
