/*
 * test_protocols.c: the general k-part split and the split protocols
 * (four-way, explicit, mia-prune, wemem): sizes, disjointness, what may and
 * may not overlap, determinism by seed and stream, bit-identity of four-way
 * with mg_split_four_way, and the errors for splits that do not fit.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/data.h"
#include "mg_test.h"

/* Marks the lists' indices in seen[] (owner ids from 1); returns the number of
 * indices out of range or already marked. */
static size_t mark(unsigned char *seen, size_t n_total, const mg_index_list *l, unsigned char id)
{
    size_t bad = 0;
    for (size_t i = 0; i < l->n; i++) {
        uint32_t v = l->idx[i];
        if (v >= n_total || seen[v]) {
            bad++;
            continue;
        }
        seen[v] = id;
    }
    return bad;
}

static int same_list(const mg_index_list *a, const mg_index_list *b)
{
    return a->n == b->n && (a->n == 0 || memcmp(a->idx, b->idx, a->n * sizeof(uint32_t)) == 0);
}

static int same_roles(const mg_split_roles *a, const mg_split_roles *b)
{
    if (a->n_shadows != b->n_shadows || !same_list(&a->target_train, &b->target_train) ||
        !same_list(&a->target_test, &b->target_test) || !same_list(&a->target_dev, &b->target_dev) ||
        !same_list(&a->population, &b->population))
        return 0;
    for (size_t s = 0; s < a->n_shadows; s++)
        if (!same_list(&a->shadow_train[s], &b->shadow_train[s]) || !same_list(&a->shadow_test[s], &b->shadow_test[s]) ||
            !same_list(&a->shadow_dev[s], &b->shadow_dev[s]))
            return 0;
    return 1;
}

/* Every index of l in [lo, hi). */
static int within(const mg_index_list *l, size_t lo, size_t hi)
{
    for (size_t i = 0; i < l->n; i++)
        if (l->idx[i] < lo || l->idx[i] >= hi)
            return 0;
    return 1;
}

static void test_parts(void)
{
    const size_t n = 500, sizes[6] = {100, 50, 120, 30, 40, 10};
    mg_index_list p[6], q[6];
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_split_parts(n, sizes, 6, 7, "s", p, e), e);
    unsigned char *seen = calloc(n, 1);
    size_t bad = 0;
    for (int k = 0; k < 6; k++) {
        CHECK_INT_EQ(p[k].n, sizes[k]);
        bad += mark(seen, n, &p[k], (unsigned char)(k + 1));
    }
    CHECK_INT_EQ(bad, 0);
    free(seen);

    /* The first four parts are mg_split_four_way's: appending parts changes nothing before them. */
    mg_split four;
    CHECK_OK(mg_split_four_way(n, sizes, 7, "s", &four, e), e);
    for (int k = 0; k < 4; k++)
        CHECK(four.n[k] == p[k].n && memcmp(four.idx[k], p[k].idx, p[k].n * sizeof(uint32_t)) == 0);
    mg_split_free(&four);
    CHECK_OK(mg_split_parts(n, sizes, 2, 7, "s", q, e), e);
    CHECK(same_list(&q[0], &p[0]) && same_list(&q[1], &p[1]));
    mg_index_lists_free(q, 2);
    CHECK_OK(mg_split_parts(n, sizes, 6, 8, "s", q, e), e);
    CHECK(!same_list(&q[0], &p[0]));
    mg_index_lists_free(q, 6);
    mg_index_lists_free(p, 6);
    CHECK(p[0].idx == NULL && p[0].n == 0);

    const size_t too[3] = {400, 100, 1};
    CHECK_INT_EQ(mg_split_parts(n, too, 3, 1, "s", p, &err), MG_ERR_CONFIG);
    CHECK_STR_EQ(err.msg, "the split sizes add up to 501 (400 + 100 + 1) but the dataset holds only 500 samples");
    CHECK(p[0].idx == NULL);
}

static void test_four_way(void)
{
    mg_split_cfg cfg;
    mg_split_roles r, r2;
    mg_split four;
    mg_error err = {0}, *e = &err;
    mg_split_cfg_init(&cfg, MG_PROTO_FOUR_WAY);
    CHECK_INT_EQ(cfg.target_train, 2500);
    CHECK_INT_EQ(cfg.n_shadows, 1);
    cfg.target_train = 300;
    cfg.target_test = 200;
    cfg.shadow_train = 250;
    cfg.shadow_test = 150;
    const size_t sizes[4] = {300, 200, 250, 150};
    CHECK_OK(mg_split_four_way(1000, sizes, 3, "four-way", &four, e), e);
    CHECK_OK(mg_split_roles_make(&cfg, 1000, 700, 3, "four-way", &r, e), e);
    const mg_index_list *parts[4] = {&r.target_train, &r.target_test, &r.shadow_train[0], &r.shadow_test[0]};
    for (int k = 0; k < 4; k++)
        CHECK(four.n[k] == parts[k]->n && memcmp(four.idx[k], parts[k]->idx, four.n[k] * sizeof(uint32_t)) == 0);
    CHECK_INT_EQ(r.target_dev.n, 0);
    CHECK_INT_EQ(r.shadow_dev[0].n, 0);
    CHECK_INT_EQ(r.population.n, 0);

    /* Dev parts and a population come after: the four parts stay bit for bit. */
    cfg.target_dev = 40;
    cfg.shadow_dev = 30;
    cfg.population = 25;
    CHECK_OK(mg_split_roles_make(&cfg, 1000, 700, 3, "four-way", &r2, e), e);
    CHECK(same_list(&r.target_train, &r2.target_train) && same_list(&r.shadow_test[0], &r2.shadow_test[0]));
    unsigned char *seen = calloc(1000, 1);
    size_t bad = mark(seen, 1000, &r2.target_train, 1) + mark(seen, 1000, &r2.target_test, 2) +
                 mark(seen, 1000, &r2.target_dev, 3) + mark(seen, 1000, &r2.shadow_train[0], 4) +
                 mark(seen, 1000, &r2.shadow_test[0], 5) + mark(seen, 1000, &r2.shadow_dev[0], 6) +
                 mark(seen, 1000, &r2.population, 7);
    CHECK_INT_EQ(bad, 0);
    CHECK_INT_EQ(r2.population.n, 25);
    free(seen);
    mg_split_roles_free(&r2);
    mg_split_roles_free(&r);
    mg_split_free(&four);
    CHECK(r.shadow_train == NULL && r.n_shadows == 0);

    cfg.population = 1000;
    CHECK_INT_EQ(mg_split_roles_make(&cfg, 1000, 1000, 3, "four-way", &r, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "four-way split: the split sizes add up to 1970") != NULL);
    cfg.population = 0;
    cfg.n_shadows = 2;
    CHECK_INT_EQ(mg_split_roles_make(&cfg, 1000, 1000, 3, "four-way", &r, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "four-way split: 2 shadows; expected 1") != NULL);
}

static void test_explicit(void)
{
    mg_split_cfg cfg;
    mg_split_roles r;
    mg_error err = {0}, *e = &err;
    mg_split_cfg_init(&cfg, MG_PROTO_EXPLICIT);
    cfg.target_train = 100;
    cfg.target_test = 90;
    cfg.target_dev = 10;
    cfg.shadow_train = 80;
    cfg.shadow_test = 70;
    cfg.shadow_dev = 5;
    cfg.n_shadows = 4;
    cfg.population = 33;
    const size_t n = 1000;
    CHECK_OK(mg_split_roles_make(&cfg, n, n, 11, "four-way", &r, e), e);
    CHECK_INT_EQ(r.protocol, MG_PROTO_EXPLICIT);
    CHECK_INT_EQ(r.n_shadows, 4);
    unsigned char *seen = calloc(n, 1);
    size_t bad = mark(seen, n, &r.target_train, 1) + mark(seen, n, &r.target_test, 1) + mark(seen, n, &r.target_dev, 1) +
                 mark(seen, n, &r.population, 2);
    for (size_t s = 0; s < 4; s++) {
        CHECK_INT_EQ(r.shadow_train[s].n, 80);
        CHECK_INT_EQ(r.shadow_test[s].n, 70);
        CHECK_INT_EQ(r.shadow_dev[s].n, 5);
        bad += mark(seen, n, &r.shadow_train[s], 3) + mark(seen, n, &r.shadow_test[s], 3) +
               mark(seen, n, &r.shadow_dev[s], 3);
    }
    CHECK_INT_EQ(bad, 0);
    free(seen);
    mg_split_roles_free(&r);
    cfg.n_shadows = 5;
    CHECK_INT_EQ(mg_split_roles_make(&cfg, n, n, 11, "four-way", &r, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "explicit split: the split sizes add up to 1008") != NULL);
}

static void test_mia_prune(void)
{
    mg_split_cfg cfg;
    mg_split_roles r, r2;
    mg_error err = {0}, *e = &err;
    mg_split_cfg_init(&cfg, MG_PROTO_MIA_PRUNE);
    CHECK_INT_EQ(cfg.n_shadows, 5);
    const size_t n = 60000;
    CHECK_OK(mg_split_roles_make(&cfg, n, 50000, 7, "four-way", &r, e), e);
    /* Their sizes for CIFAR-10: victim half 30000 -> test 13500, dev 3000, train 13500. */
    CHECK_INT_EQ(r.target_test.n, 13500);
    CHECK_INT_EQ(r.target_dev.n, 3000);
    CHECK_INT_EQ(r.target_train.n, 13500);
    CHECK_INT_EQ(r.n_shadows, 5);
    CHECK_INT_EQ(r.population.n, 30000);
    unsigned char *victim = calloc(n, 1);
    size_t bad = mark(victim, n, &r.target_train, 1) + mark(victim, n, &r.target_test, 2) +
                 mark(victim, n, &r.target_dev, 3);
    CHECK_INT_EQ(bad, 0);
    /* The attacker half is the rest; each shadow splits all of it, disjointly within itself. */
    CHECK_INT_EQ(mark(victim, n, &r.population, 4), 0);
    for (size_t s = 0; s < r.n_shadows; s++) {
        unsigned char *seen = calloc(n, 1);
        CHECK_INT_EQ(r.shadow_test[s].n, 13500);
        CHECK_INT_EQ(r.shadow_dev[s].n, 3000);
        CHECK_INT_EQ(r.shadow_train[s].n, 13500);
        bad = mark(seen, n, &r.shadow_train[s], 1) + mark(seen, n, &r.shadow_test[s], 2) + mark(seen, n, &r.shadow_dev[s], 3);
        CHECK_INT_EQ(bad, 0);
        size_t outside = 0;
        for (size_t i = 0; i < n; i++)
            outside += seen[i] && victim[i] != 4;
        CHECK_INT_EQ(outside, 0);
        free(seen);
    }
    CHECK(!same_list(&r.shadow_train[0], &r.shadow_train[1]));
    free(victim);

    CHECK_OK(mg_split_roles_make(&cfg, n, 50000, 7, "four-way", &r2, e), e);
    CHECK(same_roles(&r, &r2));
    mg_split_roles_free(&r2);
    CHECK_OK(mg_split_roles_make(&cfg, n, 50000, 8, "four-way", &r2, e), e);
    CHECK(!same_list(&r.target_train, &r2.target_train));
    mg_split_roles_free(&r2);
    mg_split_roles_free(&r);

    /* Odd sizes round as scikit-learn does: 101 -> victim 50 (test 23, dev 5, train 22), attacker 51
     * (test 23, dev 6, train 22). */
    cfg.n_shadows = 2;
    cfg.population = 10;
    CHECK_OK(mg_split_roles_make(&cfg, 101, 101, 1, "x", &r, e), e);
    CHECK_INT_EQ(r.target_test.n, 23);
    CHECK_INT_EQ(r.target_dev.n, 5);
    CHECK_INT_EQ(r.target_train.n, 22);
    CHECK_INT_EQ(r.shadow_test[1].n, 23);
    CHECK_INT_EQ(r.shadow_dev[1].n, 6);
    CHECK_INT_EQ(r.shadow_train[1].n, 22);
    CHECK_INT_EQ(r.population.n, 10);
    mg_split_roles_free(&r);
    cfg.population = 52;
    CHECK_INT_EQ(mg_split_roles_make(&cfg, 101, 101, 1, "x", &r, &err), MG_ERR_CONFIG);
    CHECK_STR_EQ(err.msg, "mia-prune split: population 52 is larger than the attacker's 51 samples");
}

static void test_wemem(void)
{
    mg_split_cfg cfg;
    mg_split_roles r, r2;
    mg_error err = {0}, *e = &err;
    mg_split_cfg_init(&cfg, MG_PROTO_WEMEM);
    CHECK_NEAR(cfg.holdout, 0.1, 0.0);
    /* CIFAR-10's official split: 50000 train, 10000 test. */
    const size_t n = 60000, n_train = 50000;
    CHECK_OK(mg_split_roles_make(&cfg, n, n_train, 5, "four-way", &r, e), e);
    CHECK_INT_EQ(r.target_train.n, 22500);
    CHECK_INT_EQ(r.target_test.n, 8250);
    CHECK_INT_EQ(r.target_dev.n, 4250);
    CHECK_INT_EQ(r.population.n, 25000);
    CHECK(within(&r.target_train, 0, n_train));
    CHECK(within(&r.population, 0, n_train));
    unsigned char *seen = calloc(n, 1);
    size_t bad = mark(seen, n, &r.target_train, 1) + mark(seen, n, &r.target_test, 2) + mark(seen, n, &r.target_dev, 3);
    CHECK_INT_EQ(bad, 0);
    /* Every official test sample is a target non-member (test or dev). */
    size_t test_part = 0;
    for (size_t i = n_train; i < n; i++)
        test_part += seen[i] == 2 || seen[i] == 3;
    CHECK_INT_EQ(test_part, 10000);
    for (size_t s = 0; s < r.n_shadows; s++) {
        unsigned char *sh = calloc(n, 1);
        CHECK_INT_EQ(r.shadow_train[s].n, 22500);
        CHECK_INT_EQ(r.shadow_test[s].n, 8250);
        bad = mark(sh, n, &r.shadow_train[s], 1) + mark(sh, n, &r.shadow_test[s], 2) + mark(sh, n, &r.shadow_dev[s], 3);
        CHECK_INT_EQ(bad, 0);
        /* Members never meet the target's samples; non-members meet them only in the test part. */
        size_t clash = 0;
        for (size_t i = 0; i < n; i++) {
            if (sh[i] == 1 && seen[i])
                clash++;
            if ((sh[i] == 2 || sh[i] == 3) && seen[i] && i < n_train)
                clash++;
        }
        CHECK_INT_EQ(clash, 0);
        free(sh);
    }
    free(seen);
    CHECK_OK(mg_split_roles_make(&cfg, n, n_train, 5, "four-way", &r2, e), e);
    CHECK(same_roles(&r, &r2));
    mg_split_roles_free(&r2);
    mg_split_roles_free(&r);

    /* No official test part: 20 % of the pool becomes it (1000 -> 200 test, 800 train). */
    cfg.n_shadows = 1;
    CHECK_OK(mg_split_roles_make(&cfg, 1000, 1000, 5, "four-way", &r, e), e);
    CHECK_INT_EQ(r.target_train.n, 360);
    CHECK_INT_EQ(r.target_test.n, 159);
    CHECK_INT_EQ(r.target_dev.n, 81);
    CHECK_INT_EQ(r.population.n, 400);
    mg_split_roles_free(&r);

    cfg.holdout = 1.0;
    CHECK_INT_EQ(mg_split_roles_make(&cfg, 1000, 1000, 5, "four-way", &r, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "wemem split: holdout 1") != NULL);
    cfg.holdout = 0.1;
    CHECK_INT_EQ(mg_split_roles_make(&cfg, 100, 5, 5, "four-way", &r, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "training part holds 5 samples") != NULL);
}

static void test_names(void)
{
    mg_split_protocol p = MG_PROTO_FOUR_WAY;
    CHECK_STR_EQ(mg_split_protocol_str(MG_PROTO_MIA_PRUNE), "mia-prune");
    CHECK(mg_split_protocol_parse("wemem", &p) == 0 && p == MG_PROTO_WEMEM);
    CHECK(mg_split_protocol_parse("explicit", &p) == 0 && p == MG_PROTO_EXPLICIT);
    CHECK(mg_split_protocol_parse("three-way", &p) == -1);
}

int main(void)
{
    test_parts();
    test_four_way();
    test_explicit();
    test_mia_prune();
    test_wemem();
    test_names();
    MG_TEST_MAIN_END();
}
