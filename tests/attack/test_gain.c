/*
 * test_gain.c: Wang et al.'s empirical gain (mg_attack_gain), which
 * MIA-Pruning minimises. On outputs where membership does not show, the
 * inference model is a coin and the gain is -log 4; the more membership
 * shows, the higher the gain, never above 0; the same rng gives the same
 * bits; non-classifier attacks and too few samples are refused.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/attack.h"
#include "mg_test.h"

enum { K = 4 };

typedef struct {
    float *logits;
    int32_t *labels;
    size_t n;
} part;

/* Logits N(0,1) plus `bump` on the label. */
static void part_make(part *p, size_t n, double bump, mg_rng *rng)
{
    p->n = n;
    p->logits = malloc(n * K * sizeof(float));
    p->labels = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        p->labels[i] = (int32_t)mg_rng_below(rng, K);
        for (int k = 0; k < K; k++)
            p->logits[i * K + k] = (float)(mg_rng_normal(rng) + (k == p->labels[i] ? bump : 0.0));
    }
}

static mg_attack_split split_of(const part *p)
{
    mg_attack_split s = {.logits = p->logits, .labels = p->labels, .sens = NULL, .n = p->n};
    return s;
}

/* The gain of `attack` on members with bump `bm` and non-members with `bn`. */
static double gain_of(const char *attack, double bm, double bn, size_t n, double *bacc)
{
    mg_rng rng;
    mg_rng_seed(&rng, 7, "test", "gain-data");
    part m, nm;
    part_make(&m, n, bm, &rng);
    part_make(&nm, n, bn, &rng);
    mg_attack_outputs out = {split_of(&m), split_of(&nm)};
    mg_attack_cfg cfg;
    mg_error err = {0};
    CHECK_OK(mg_attack_cfg_init(&cfg, attack, &err), &err);
    cfg.epochs = 20;
    cfg.lr = 0.02;
    mg_rng_seed(&cfg.rng, 42, "test", "gain");
    double g = NAN;
    CHECK_OK(mg_attack_gain(&cfg, K, &out, &g, bacc, &err), &err);
    free(m.logits);
    free(m.labels);
    free(nm.logits);
    free(nm.labels);
    return g;
}

static void test_gain_orders_leakage(void)
{
    const char *names[] = {"nn-cls", "nn", "top3-nn"};
    for (size_t a = 0; a < sizeof names / sizeof names[0]; a++) {
        double b0, b1, b2;
        double none = gain_of(names[a], 2.5, 2.5, 1000, &b0);
        double some = gain_of(names[a], 3.5, 1.5, 1000, &b1);
        double much = gain_of(names[a], 5.0, 0.5, 1000, &b2);
        fprintf(stderr, "%s: gain %.4f (bacc %.3f), %.4f (%.3f), %.4f (%.3f); -log 4 = %.4f\n", names[a], none, b0,
                some, b1, much, b2, -log(4.0));
        /* A coin: -log 4 up to the attack model's small confidence on noise
         * (an overconfident coin scores below -log 4). */
        CHECK_NEAR(none, -log(4.0), 0.05);
        CHECK_NEAR(b0, 0.5, 4.0 * 0.5 / sqrt(1000.0));
        CHECK(some > none + 0.1);
        CHECK(much > some + 0.1);
        CHECK(much <= 0.0);
        CHECK(b2 > b1 && b1 > 0.6);
    }
}

static void test_gain_deterministic(void)
{
    double b1, b2;
    double g1 = gain_of("nn-cls", 3.5, 1.5, 300, &b1);
    double g2 = gain_of("nn-cls", 3.5, 1.5, 300, &b2);
    CHECK(memcmp(&g1, &g2, sizeof g1) == 0);
    CHECK(memcmp(&b1, &b2, sizeof b1) == 0);
}

static void test_gain_refusals(void)
{
    mg_rng rng;
    mg_rng_seed(&rng, 1, "test", "gain-refuse");
    part m, nm;
    part_make(&m, 50, 3.0, &rng);
    part_make(&nm, 1, 1.0, &rng);
    mg_attack_outputs out = {split_of(&m), split_of(&nm)};
    mg_attack_cfg cfg;
    mg_error err = {0};
    double g = 0.0, b = 0.0;
    CHECK_OK(mg_attack_cfg_init(&cfg, "loss", &err), &err);
    CHECK_INT_EQ(mg_attack_gain(&cfg, K, &out, &g, &b, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "classifier attack") != NULL && strstr(err.msg, "loss") != NULL);
    CHECK(isnan(g) && isnan(b));
    CHECK_OK(mg_attack_cfg_init(&cfg, "nn-cls", &err), &err);
    CHECK_INT_EQ(mg_attack_gain(&cfg, K, &out, &g, &b, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "at least 2 non-members") != NULL);
    free(m.logits);
    free(m.labels);
    free(nm.logits);
    free(nm.labels);
}

int main(void)
{
    test_gain_orders_leakage();
    test_gain_deterministic();
    test_gain_refusals();
    MG_TEST_MAIN_END();
}
