/*
 * test_classifier.c: the attacks that train a model on shadow outputs (nn,
 * top3-nn, nn-cls, samia, gonon) on synthetic outputs where membership shows
 * (members' labels carry a larger logit and a smaller sensitivity) and where
 * it does not (identical distributions: balanced accuracy near 1/2 within
 * four standard deviations); the same rng gives the same scores, another
 * rng other ones. Epochs and sizes are cut down to keep the test short.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/attack.h"
#include "mg_test.h"

enum { K = 4 };

typedef struct {
    float *logits, *sens;
    int32_t *labels;
    size_t n;
} synth;

/* Logits N(0,1) plus `bump` on the label; sensitivity |N(0,1)| * scale + scale. */
static void synth_make(synth *s, size_t n, double bump, double scale, mg_rng *rng)
{
    s->n = n;
    s->logits = malloc(n * K * sizeof(float));
    s->sens = malloc(n * K * sizeof(float));
    s->labels = malloc(n * sizeof(int32_t));
    for (size_t i = 0; i < n; i++) {
        s->labels[i] = (int32_t)mg_rng_below(rng, K);
        for (int k = 0; k < K; k++) {
            s->logits[i * K + k] = (float)(mg_rng_normal(rng) + (k == s->labels[i] ? bump : 0.0));
            s->sens[i * K + k] = (float)(scale * (1.0 + fabs(mg_rng_normal(rng))));
        }
    }
}

static void synth_free(synth *s)
{
    free(s->logits);
    free(s->sens);
    free(s->labels);
}

static mg_attack_split split_of(const synth *s)
{
    mg_attack_split sp = {.logits = s->logits, .labels = s->labels, .sens = s->sens, .n = s->n};
    return sp;
}

typedef struct {
    synth tm, tn, sm[2], sn[2];
    mg_attack_outputs sh[2];
    mg_attack_inputs in;
} world;

/* detectable: members bump 4 and sensitivity scale 0.5, non-members bump 1
 * and scale 2; otherwise both bump 2.5 and scale 1. */
static void world_make(world *w, int detectable, size_t n_target, size_t n_shadow, uint64_t seed)
{
    mg_rng rng;
    mg_rng_seed(&rng, seed, "test", "world");
    double bm = detectable ? 4.0 : 2.5, bn = detectable ? 1.0 : 2.5;
    double sm = detectable ? 0.5 : 1.0, sn = detectable ? 2.0 : 1.0;
    synth_make(&w->tm, n_target, bm, sm, &rng);
    synth_make(&w->tn, n_target, bn, sn, &rng);
    for (int s = 0; s < 2; s++) {
        synth_make(&w->sm[s], n_shadow, bm, sm, &rng);
        synth_make(&w->sn[s], n_shadow, bn, sn, &rng);
        w->sh[s].member = split_of(&w->sm[s]);
        w->sh[s].nonmember = split_of(&w->sn[s]);
    }
    memset(&w->in, 0, sizeof w->in);
    w->in.n_classes = K;
    w->in.target.member = split_of(&w->tm);
    w->in.target.nonmember = split_of(&w->tn);
    w->in.shadow = w->sh;
    w->in.n_shadow = 2;
}

static void world_free(world *w)
{
    synth_free(&w->tm);
    synth_free(&w->tn);
    for (int s = 0; s < 2; s++) {
        synth_free(&w->sm[s]);
        synth_free(&w->sn[s]);
    }
}

static void short_cfg(mg_attack_cfg *cfg, const char *name, int epochs)
{
    mg_error err = {0};
    CHECK_OK(mg_attack_cfg_init(cfg, name, &err), &err);
    cfg->epochs = epochs;
    if (cfg->kind != MG_ATTACK_GONON)
        cfg->lr = 0.02;
    else
        cfg->lr = 0.01;
    mg_rng_seed(&cfg->rng, 42, "test", name);
}

static void test_detect(void)
{
    const char *names[] = {"nn", "top3-nn", "nn-cls", "samia", "gonon"};
    const int epochs[] = {20, 20, 20, 6, 20};
    for (int det = 1; det >= 0; det--) {
        world w;
        size_t nt = det ? 300 : 1000;
        world_make(&w, det, nt, 150, det ? 1 : 2);
        for (size_t a = 0; a < sizeof names / sizeof names[0]; a++) {
            mg_attack_cfg cfg;
            mg_attack_result res;
            mg_error err = {0};
            short_cfg(&cfg, names[a], epochs[a]);
            if (cfg.kind == MG_ATTACK_GONON)
                cfg.gonon_depth = 1;
            CHECK_OK(mg_attack_run(&cfg, &w.in, &res, &err), &err);
            double bal = res.target.attack.balanced_acc;
            if (det) {
                /* The sensitivity features separate the groups almost
                 * perfectly; the logits alone less so, and nn must learn a
                 * maximum over unordered inputs in few epochs. */
                double want = cfg.kind == MG_ATTACK_SAMIA || cfg.kind == MG_ATTACK_GONON ? 0.95 : 0.7;
                if (!(bal > want))
                    fprintf(stderr, "%s: balanced accuracy %.3f on detectable membership\n", names[a], bal);
                CHECK(bal > want);
                CHECK(res.target.attack.auc > want);
                CHECK(res.shadow.attack.balanced_acc > want);
            } else {
                if (!(fabs(bal - 0.5) <= 4.0 * 0.5 / sqrt((double)nt)))
                    fprintf(stderr, "%s: balanced accuracy %.3f on identical distributions\n", names[a], bal);
                CHECK_NEAR(bal, 0.5, 4.0 * 0.5 / sqrt((double)nt));
            }
            CHECK_NEAR(res.threshold, 0.0, 0.0);
            CHECK_INT_EQ(res.shadow.n_member, 300);
            mg_attack_result_free(&res);
        }
        world_free(&w);
    }
}

/* Gonon's grid (three depths x three rates, held-out selection). */
static void test_gonon_grid(void)
{
    world w;
    world_make(&w, 1, 200, 100, 3);
    mg_attack_cfg cfg;
    mg_attack_result res;
    mg_error err = {0};
    short_cfg(&cfg, "gonon", 8);
    CHECK_OK(mg_attack_run(&cfg, &w.in, &res, &err), &err);
    CHECK(res.target.attack.balanced_acc > 0.8);
    mg_attack_result_free(&res);
    cfg.gonon_depth = 4;
    CHECK_INT_EQ(mg_attack_run(&cfg, &w.in, &res, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "gonon_depth") != NULL);
    mg_attack_result_free(&res);
    world_free(&w);
}

static void test_determinism(void)
{
    world w;
    world_make(&w, 1, 100, 60, 4);
    const char *names[] = {"nn", "samia"};
    for (int a = 0; a < 2; a++) {
        mg_attack_cfg cfg;
        mg_attack_result r1, r2, r3;
        mg_error err = {0};
        short_cfg(&cfg, names[a], 2);
        CHECK_OK(mg_attack_run(&cfg, &w.in, &r1, &err), &err);
        CHECK_OK(mg_attack_run(&cfg, &w.in, &r2, &err), &err);
        CHECK(r1.n == r2.n && memcmp(r1.score, r2.score, r1.n * sizeof(double)) == 0);
        mg_rng_seed(&cfg.rng, 43, "test", names[a]);
        CHECK_OK(mg_attack_run(&cfg, &w.in, &r3, &err), &err);
        CHECK(memcmp(r1.score, r3.score, r1.n * sizeof(double)) != 0);
        mg_attack_result_free(&r1);
        mg_attack_result_free(&r2);
        mg_attack_result_free(&r3);
    }
    world_free(&w);
}

/* A diverging attack model is reported, not scored. */
static void test_diverge(void)
{
    world w;
    world_make(&w, 1, 50, 40, 5);
    mg_attack_cfg cfg;
    mg_attack_result res;
    mg_error err = {0};
    short_cfg(&cfg, "nn", 3);
    cfg.lr = 1e30;
    mg_status st = mg_attack_run(&cfg, &w.in, &res, &err);
    CHECK(st == MG_ERR_NUMERIC);
    CHECK(strstr(err.msg, "nn") != NULL);
    mg_attack_result_free(&res);
    world_free(&w);
}

int main(void)
{
    test_detect();
    test_gonon_grid();
    test_determinism();
    test_diverge();
    MG_TEST_MAIN_END();
}
