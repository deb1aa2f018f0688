/*
 * test_threshold.c: mg_attack_run's registry, defaults and input checks,
 * the threshold attacks (loss, conf, entropy, mentropy per class; hconf
 * global) and the gap attack: signals against hand-computed values, per-class
 * thresholds and their fallback, detectable and undetectable synthetic
 * membership, pooling of several shadow models, and the summaries (train
 * and test accuracy, per-class metrics, JS divergence).
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "attack/attack_internal.h"
#include "mg_test.h"

/* Synthetic outputs: K classes, logits N(0, 1) plus `bump` on the label. */
typedef struct {
    float *logits;
    int32_t *labels;
    size_t n;
} synth;

static void synth_make(synth *s, size_t n, int K, double bump, mg_rng *rng)
{
    s->n = n;
    s->logits = malloc(n * (size_t)K * sizeof(float));
    s->labels = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        s->labels[i] = (int32_t)mg_rng_below(rng, (uint64_t)K);
        for (int k = 0; k < K; k++)
            s->logits[i * K + k] = (float)(mg_rng_normal(rng) + (k == s->labels[i] ? bump : 0.0));
    }
}

static void synth_free(synth *s)
{
    free(s->logits);
    free(s->labels);
}

static mg_attack_split split_of(const synth *s)
{
    mg_attack_split sp = {.logits = s->logits, .labels = s->labels, .sens = NULL, .n = s->n};
    return sp;
}

static void test_registry(void)
{
    mg_attack_kind k;
    CHECK_INT_EQ(mg_attack_kind_parse("top3-nn", &k), 0);
    CHECK_INT_EQ(k, MG_ATTACK_TOP3_NN);
    CHECK_INT_EQ(mg_attack_kind_parse("lira-9", &k), -1);
    CHECK_INT_EQ(mg_attack_kind_parse(NULL, &k), -1);
    for (int i = 0; i < MG_ATTACK_N_KINDS; i++) {
        CHECK_INT_EQ(mg_attack_kind_parse(mg_attack_kind_str((mg_attack_kind)i), &k), 0);
        CHECK_INT_EQ(k, i);
        CHECK(strstr(mg_attack_kind_list(), mg_attack_kind_str((mg_attack_kind)i)) != NULL);
    }
    CHECK_INT_EQ(mg_attack_needs(MG_ATTACK_SAMIA), MG_ATTACK_NEEDS_SHADOW | MG_ATTACK_NEEDS_SENS);
    CHECK_INT_EQ(mg_attack_needs(MG_ATTACK_RMIA), MG_ATTACK_NEEDS_REF | MG_ATTACK_NEEDS_POP);
    CHECK_INT_EQ(mg_attack_needs(MG_ATTACK_GAP), 0);

    mg_attack_cfg cfg;
    mg_error err = {0};
    CHECK_OK(mg_attack_cfg_init(&cfg, "samia", &err), &err);
    CHECK_INT_EQ(cfg.epochs, 100);
    CHECK_INT_EQ(cfg.batch, 128);
    CHECK_NEAR(cfg.lr, 0.001, 0.0);
    CHECK_INT_EQ(cfg.sens_draws, 10);
    CHECK_NEAR(cfg.sens_eps, 1e-3, 0.0);
    CHECK_OK(mg_attack_cfg_init(&cfg, "gonon", &err), &err);
    CHECK_INT_EQ(cfg.epochs, 80);
    CHECK_INT_EQ(cfg.sens_draws, 5);
    CHECK_INT_EQ(cfg.gonon_depth, 0);
    CHECK_OK(mg_attack_cfg_init(&cfg, "rmia", &err), &err);
    CHECK_NEAR(cfg.rmia_a, 0.33, 0.0);
    CHECK_NEAR(cfg.rmia_gamma, 1.0, 0.0);
    CHECK_INT_EQ(cfg.js_bins, 20);
    CHECK_INT_EQ(mg_attack_cfg_init(&cfg, "shokri", &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "shokri") != NULL && strstr(err.msg, "mentropy") != NULL);
}

/* Signals against values worked in double by hand. */
static void test_signals(void)
{
    const float z[3] = {2.0f, 0.5f, -1.0f};
    double e0 = exp(2.0), e1 = exp(0.5), e2 = exp(-1.0), Z = e0 + e1 + e2;
    double p[3] = {e0 / Z, e1 / Z, e2 / Z};
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_LOSS, z, 3, 1), log(p[1]), 1e-12);
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_CONF, z, 3, 1), p[1], 1e-12);
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_HCONF, z, 3, 1), p[0], 1e-12);
    double negent = p[0] * log(p[0]) + p[1] * log(p[1]) + p[2] * log(p[2]);
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_ENTROPY, z, 3, 2), negent, 1e-12);
    /* -Mentr = (1-p_y) log p_y + sum_{k!=y} p_k log(1-p_k) */
    double want = (1 - p[0]) * log(p[0]) + p[1] * log(1 - p[1]) + p[2] * log(1 - p[2]);
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_MENTROPY, z, 3, 0), want, 1e-12);
    want = (1 - p[2]) * log(p[2]) + p[0] * log(1 - p[0]) + p[1] * log(1 - p[1]);
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_MENTROPY, z, 3, 2), want, 1e-12);
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_GAP, z, 3, 0), 1.0, 0.0);
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_GAP, z, 3, 1), 0.0, 0.0);
    CHECK_NEAR(mg_atk_phi(z, 3, 0), 2.0 - log(e1 + e2), 1e-12);

    /* A confident member: 1 - p_y = e^-40 (1 + e^-5) would round to 0 from p_y. */
    const float c[3] = {40.0f, 0.0f, -5.0f};
    double q = exp(-40.0) + exp(-45.0);
    double lpy = -log1p(q);
    want = q / (1.0 + q) * lpy + exp(-40.0 + lpy) * log1p(-exp(-40.0 + lpy)) + exp(-45.0 + lpy) * log1p(-exp(-45.0 + lpy));
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_MENTROPY, c, 3, 0) / want, 1.0, 1e-9);
    CHECK_NEAR(mg_atk_phi(c, 3, 0), 40.0 - log(1.0 + exp(-5.0)), 1e-12);
    /* A confident mistake: p_y = e^-40 without underflow in the log. */
    CHECK_NEAR(mg_atk_signal(MG_ATTACK_LOSS, c, 3, 1), -40.0 - log1p(exp(-40.0) + exp(-45.0)), 1e-12);
    double my = mg_atk_signal(MG_ATTACK_MENTROPY, c, 3, 1);
    CHECK(isfinite(my) && my < -39.0);
}

/* K = 2, logit (d, 0) with label 0 puts p_0 = sigmoid(d). Class 0: members
 * d = 3, non-members d = 1; class 1 (logits (0, d)): members d = 1,
 * non-members d = -1. One global threshold on conf cannot separate both
 * classes (class 0 non-members and class 1 members both have sigmoid(1));
 * per-class thresholds can. Class 2 has only shadow members and takes the
 * global threshold. */
static void test_per_class(void)
{
    enum { N = 12 };
    float lm[N * 3], ln[N * 3];
    int32_t ym[N], yn[N];
    for (int i = 0; i < N; i++) {
        int c = i % 2;
        ym[i] = yn[i] = c;
        double dm = c == 0 ? 3.0 : 1.0, dn = c == 0 ? 1.0 : -1.0;
        for (int k = 0; k < 3; k++)
            lm[i * 3 + k] = ln[i * 3 + k] = -30.0f;
        lm[i * 3 + 0] = (float)(c == 0 ? dm : 0.0);
        lm[i * 3 + 1] = (float)(c == 0 ? 0.0 : dm);
        ln[i * 3 + 0] = (float)(c == 0 ? dn : 0.0);
        ln[i * 3 + 1] = (float)(c == 0 ? 0.0 : dn);
    }
    /* one extra shadow member of class 2 */
    float l2[3] = {0.0f, 0.0f, 4.0f};
    int32_t y2[1] = {2};
    mg_attack_outputs sh[2];
    memset(sh, 0, sizeof sh);
    sh[0].member = (mg_attack_split){lm, ym, NULL, N};
    sh[0].nonmember = (mg_attack_split){ln, yn, NULL, N};
    sh[1].member = (mg_attack_split){l2, y2, NULL, 1};
    mg_attack_inputs in;
    memset(&in, 0, sizeof in);
    in.n_classes = 3;
    in.target.member = (mg_attack_split){lm, ym, NULL, N};
    in.target.nonmember = (mg_attack_split){ln, yn, NULL, N};
    in.shadow = sh;
    in.n_shadow = 2;
    mg_attack_cfg cfg;
    mg_attack_result res;
    mg_error err = {0};
    CHECK_OK(mg_attack_cfg_init(&cfg, "conf", &err), &err);
    CHECK_OK(mg_attack_run(&cfg, &in, &res, &err), &err);
    CHECK_INT_EQ(res.n, 2 * N);
    CHECK_NEAR(res.threshold, 0.0, 0.0);
    CHECK_NEAR(res.target.attack.balanced_acc, 1.0, 0.0);
    CHECK_NEAR(res.target.attack.auc, 1.0, 0.0);
    CHECK_NEAR(res.shadow.attack.balanced_acc, 1.0, 0.0);
    CHECK_INT_EQ(res.shadow.n_member, N + 1);
    CHECK_INT_EQ(res.per_class[0].n_member, N / 2);
    CHECK_INT_EQ(res.per_class[1].n_nonmember, N / 2);
    CHECK_NEAR(res.per_class[0].attack.balanced_acc, 1.0, 0.0);
    CHECK(isnan(res.per_class[2].attack.balanced_acc));
    /* Scores are the signal minus its class's threshold: for class 0 the
     * midpoint between sigmoid(1) and sigmoid(3). */
    double s1 = 1.0 / (1.0 + exp(-1.0)), s3 = 1.0 / (1.0 + exp(-3.0));
    CHECK_NEAR(res.score[0], s3 - (s1 / 2 + s3 / 2), 1e-6);
    /* Every target member is classified correctly, non-members of class 1 never. */
    CHECK_NEAR(res.target.train_acc, 1.0, 0.0);
    CHECK_NEAR(res.target.test_acc, 0.5, 0.0);
    CHECK_NEAR(res.target.acc_gap, 0.5, 0.0);
    CHECK(isnan(res.rmia_a));
    mg_attack_result_free(&res);

    /* The same with hconf's single threshold cannot reach 1. */
    CHECK_OK(mg_attack_cfg_init(&cfg, "hconf", &err), &err);
    CHECK_OK(mg_attack_run(&cfg, &in, &res, &err), &err);
    CHECK(res.target.attack.balanced_acc < 0.9);
    CHECK(res.threshold > 0.5 && res.threshold < 1.0);
    mg_attack_result_free(&res);

    /* Class 2 in the target falls back to the global threshold. */
    in.target.member = (mg_attack_split){l2, y2, NULL, 1};
    CHECK_OK(mg_attack_cfg_init(&cfg, "loss", &err), &err);
    CHECK_OK(mg_attack_run(&cfg, &in, &res, &err), &err);
    double shadow_loss[2 * N + 1];
    for (int i = 0; i < N; i++) {
        shadow_loss[i] = mg_atk_signal(MG_ATTACK_LOSS, lm + 3 * i, 3, ym[i]);
        shadow_loss[N + i] = mg_atk_signal(MG_ATTACK_LOSS, ln + 3 * i, 3, yn[i]);
    }
    shadow_loss[2 * N] = mg_atk_signal(MG_ATTACK_LOSS, l2, 3, 2);
    uint8_t mem[2 * N + 1];
    for (int i = 0; i < 2 * N + 1; i++)
        mem[i] = i < N || i == 2 * N;
    double global = mg_attack_fit_threshold(shadow_loss, mem, 2 * N + 1);
    CHECK_NEAR(res.score[0], shadow_loss[2 * N] - global, 1e-12);
    mg_attack_result_free(&res);
}

/* Members' labels carry a larger logit bump than non-members' (4 vs 2):
 * every threshold attack detects it. With equal bumps none can: balanced
 * accuracy within 4 standard deviations of 1/2. */
static void test_synthetic(void)
{
    const int K = 10;
    const size_t n = 2000;
    const char *names[] = {"loss", "conf", "entropy", "mentropy", "hconf", "gap"};
    for (int same = 0; same <= 1; same++) {
        mg_rng rng;
        mg_rng_seed(&rng, 5, "test", same ? "same" : "differ");
        synth tm, tn, sm[2], sn[2];
        double bm = same ? 3.0 : 4.0, bn = same ? 3.0 : 2.0;
        synth_make(&tm, n, K, bm, &rng);
        synth_make(&tn, n, K, bn, &rng);
        mg_attack_outputs sh[2];
        for (int s = 0; s < 2; s++) {
            synth_make(&sm[s], n / 2, K, bm, &rng);
            synth_make(&sn[s], n / 2, K, bn, &rng);
            sh[s].member = split_of(&sm[s]);
            sh[s].nonmember = split_of(&sn[s]);
        }
        mg_attack_inputs in;
        memset(&in, 0, sizeof in);
        in.n_classes = K;
        in.target.member = split_of(&tm);
        in.target.nonmember = split_of(&tn);
        in.shadow = sh;
        in.n_shadow = 2;
        for (size_t a = 0; a < sizeof names / sizeof names[0]; a++) {
            mg_attack_cfg cfg;
            mg_attack_result res;
            mg_error err = {0};
            CHECK_OK(mg_attack_cfg_init(&cfg, names[a], &err), &err);
            CHECK_OK(mg_attack_run(&cfg, &in, &res, &err), &err);
            double bal = res.target.attack.balanced_acc;
            if (same) {
                CHECK_NEAR(bal, 0.5, 4.0 * 0.5 / sqrt((double)n));
                CHECK_NEAR(res.target.attack.auc, 0.5, 0.04);
                CHECK(res.target.js_divergence < 0.01);
            } else {
                /* gap sees only correctness: about (0.96 + 1 - 0.6) / 2 here */
                int gap = strcmp(names[a], "gap") == 0;
                CHECK(bal > (gap ? 0.6 : 0.65));
                CHECK(res.target.attack.auc > (gap ? 0.6 : 0.7));
                CHECK(res.target.js_divergence > 0.05);
                CHECK(res.target.attack.defense < 70.0);
            }
            CHECK_INT_EQ(res.shadow.n_member, n);
            CHECK_NEAR(res.target.attack.defense, 200.0 - 200.0 * bal, 1e-9);
            size_t total = 0;
            for (int c = 0; c < K; c++)
                total += res.per_class[c].n_member + res.per_class[c].n_nonmember;
            CHECK_INT_EQ(total, 2 * n);
            /* The gap attack's accuracy is the accuracy gap's closed form. */
            if (strcmp(names[a], "gap") == 0) {
                CHECK_NEAR(res.threshold, 1.0, 0.0);
                CHECK_NEAR(bal, (res.target.train_acc + 1.0 - res.target.test_acc) / 2.0, 1e-12);
            }
            mg_attack_result_free(&res);
        }
        synth_free(&tm);
        synth_free(&tn);
        for (int s = 0; s < 2; s++) {
            synth_free(&sm[s]);
            synth_free(&sn[s]);
        }
    }
}

/* Missing, malformed and unknown inputs each name the problem. */
static void test_errors(void)
{
    const float lg[4] = {1, 0, 0, 1};
    const int32_t y[2] = {0, 1};
    const int32_t bad[2] = {0, 2};
    const float nanl[4] = {1, NAN, 0, 1};
    mg_attack_inputs in;
    memset(&in, 0, sizeof in);
    in.n_classes = 2;
    in.target.member = (mg_attack_split){lg, y, NULL, 2};
    in.target.nonmember = (mg_attack_split){lg, y, NULL, 2};
    mg_attack_cfg cfg;
    mg_attack_result res;
    mg_error err = {0};
    CHECK_OK(mg_attack_cfg_init(&cfg, "conf", &err), &err);
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "conf") != NULL && strstr(err.msg, "shadow") != NULL);
    mg_attack_result_free(&res);

    /* gap needs nothing but the target. */
    CHECK_OK(mg_attack_cfg_init(&cfg, "gap", &err), &err);
    CHECK_OK(mg_attack_run(&cfg, &in, &res, &err), &err);
    CHECK(isnan(res.shadow.attack.balanced_acc));
    mg_attack_result_free(&res);

    mg_attack_outputs sh;
    memset(&sh, 0, sizeof sh);
    sh.member = (mg_attack_split){lg, y, NULL, 2};
    in.shadow = &sh;
    in.n_shadow = 1;
    CHECK_OK(mg_attack_cfg_init(&cfg, "entropy", &err), &err);
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "non-members") != NULL);
    mg_attack_result_free(&res);
    sh.nonmember = (mg_attack_split){lg, y, NULL, 2};

    CHECK_OK(mg_attack_cfg_init(&cfg, "samia", &err), &err);
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "sensitivity") != NULL && strstr(err.msg, "target members") != NULL);
    mg_attack_result_free(&res);

    CHECK_OK(mg_attack_cfg_init(&cfg, "top3-nn", &err), &err);
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "3 classes") != NULL);
    mg_attack_result_free(&res);

    CHECK_OK(mg_attack_cfg_init(&cfg, "lira", &err), &err);
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "lira") != NULL && strstr(err.msg, "reference") != NULL);
    mg_attack_result_free(&res);

    CHECK_OK(mg_attack_cfg_init(&cfg, "mentropy", &err), &err);
    in.target.nonmember.labels = bad;
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "target non-members") != NULL && strstr(err.msg, "label 2") != NULL);
    mg_attack_result_free(&res);
    in.target.nonmember.labels = y;

    sh.member.logits = nanl;
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_NUMERIC);
    CHECK(strstr(err.msg, "shadow 0 members") != NULL);
    mg_attack_result_free(&res);
    sh.member.logits = lg;

    in.target.nonmember.n = 0;
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "non-members") != NULL);
    mg_attack_result_free(&res);
    in.target.nonmember.n = 2;

    cfg.kind = (mg_attack_kind)99;
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "unknown attack") != NULL);
    mg_attack_result_free(&res);

    in.n_classes = 0;
    CHECK_OK(mg_attack_cfg_init(&cfg, "loss", &err), &err);
    CHECK_INT_EQ(mg_attack_run(&cfg, &in, &res, &err), MG_ERR_ARG);
    mg_attack_result_free(&res);
}

int main(void)
{
    test_registry();
    test_signals();
    test_per_class();
    test_synthetic();
    test_errors();
    MG_TEST_MAIN_END();
}
