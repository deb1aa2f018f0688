/*
 * test_grid_refs.c: lira and rmia in grids. Their options, defaults and
 * canonical forms; the errors (a missing count, options of the other attack,
 * no population for the offline pool, tuning a with one reference, a second
 * entry of the same name) with their line:column; and the plan: each
 * reference model is a train node of its own, consecutive per attack, named
 * in the attack's recipe, shared across sparsities and between offline lira
 * and rmia when they take as many, and never defended or pruned; with k
 * pooled shadow models, attack nodes that read both.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grid_check.h"
#include "miagrid/grid.h"
#include "mg_test.h"

#define POP "data:\n  split: {population: 4000}\n"

static mg_grid *grid_with(const char *head, const char *attacks, const char *axes)
{
    char text[4096];
    mg_grid *g = NULL;
    mg_error err;
    snprintf(text, sizeof text, "name: t\n%sattacks: %s\naxes:\n%s", head, attacks, axes);
    CHECK_OK(parse(text, &g, &err), &err);
    return g;
}

static void test_options(void)
{
    mg_grid *g = grid_with(POP,
                           "[loss, {name: lira, references: 16}, {name: lira, references: 8, online: false, "
                           "global_variance: false}, {name: rmia, references: 8}]",
                           "  arch: lenet5\n");
    if (!g)
        return;
    CHECK_INT_EQ(g->n_attacks, 4);
    CHECK_STR_EQ(g->attacks[0].canon, "{\"name\":\"loss\"}");
    CHECK_INT_EQ(g->attacks[0].references, 0);
    CHECK_STR_EQ(g->attacks[1].name, "lira");
    CHECK_STR_EQ(g->attacks[1].canon,
                 "{\"global_variance\":true,\"name\":\"lira\",\"online\":true,\"references\":16}");
    CHECK_INT_EQ(g->attacks[1].references, 16);
    CHECK_INT_EQ(g->attacks[1].lira_online, 1);
    CHECK_INT_EQ(g->attacks[1].lira_global_var, 1);
    CHECK_STR_EQ(g->attacks[2].name, "lira-offline");
    CHECK_STR_EQ(g->attacks[2].canon,
                 "{\"global_variance\":false,\"name\":\"lira\",\"online\":false,\"references\":8}");
    CHECK_INT_EQ(g->attacks[2].lira_online, 0);
    CHECK_STR_EQ(g->attacks[3].canon, "{\"a\":0.33,\"gamma\":1,\"name\":\"rmia\",\"references\":8}");
    CHECK_NEAR(g->attacks[3].rmia_a, 0.33, 0);
    CHECK_NEAR(g->attacks[3].rmia_gamma, 1.0, 0);
    mg_grid_destroy(&g);

    /* Per-example variances from 64 references on (Carlini et al.); a tuned a. */
    g = grid_with(POP, "[{name: lira, references: 64}, {name: rmia, references: 2, a: tune, gamma: 2}]",
                  "  arch: lenet5\n");
    if (g) {
        CHECK_STR_EQ(g->attacks[0].canon,
                     "{\"global_variance\":false,\"name\":\"lira\",\"online\":true,\"references\":64}");
        CHECK_STR_EQ(g->attacks[1].canon, "{\"a\":\"tune\",\"gamma\":2,\"name\":\"rmia\",\"references\":2}");
        CHECK(g->attacks[1].rmia_a < 0.0);
    }
    mg_grid_destroy(&g);

    /* Online lira trains on the target's candidates: no population needed;
     * mia-prune's population is the attacker's half. */
    g = grid_with("", "{name: lira, references: 2}", "  arch: lenet5\n");
    mg_grid_destroy(&g);
    g = grid_with("data:\n  split: {protocol: mia-prune}\n", "{name: rmia, references: 2}", "  arch: lenet5\n");
    mg_grid_destroy(&g);
}

static void test_errors(void)
{
    EXPECT_ERROR("name: t\nattacks: [loss, rmia]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:17: attacks[1]: attack rmia needs the number of its reference models; expected {name: "
                 "rmia, references: <1 to 1024>");
    EXPECT_ERROR("name: t\n" POP "attacks: [{name: lira, references: 0}]\naxes: {arch: lenet5}\n",
                 "t.yaml:4:36: attacks[0].references: expected a number of reference models from 1 to 1024, got "
                 "\"0\"");
    EXPECT_ERROR("name: t\n" POP "attacks: [{name: lira, references: 4, a: 0.5}]\naxes: {arch: lenet5}\n",
                 "t.yaml:4:39: attacks[0]: key \"a\" does not apply to attack lira; accepted keys: name, references, "
                 "online, global_variance");
    EXPECT_ERROR("name: t\n" POP "attacks: [{name: rmia, references: 4, online: true}]\naxes: {arch: lenet5}\n",
                 "attacks[0]: key \"online\" does not apply to attack rmia; accepted keys: name, references, a, gamma");
    EXPECT_ERROR("name: t\n" POP "attacks: [{name: rmia, references: 4, tau: 1}]\naxes: {arch: lenet5}\n",
                 "attacks[0]: unknown key \"tau\"; accepted keys: name, references, online, global_variance, a, gamma");
    EXPECT_ERROR("name: t\n" POP "attacks: [{name: lira, references: 4, online: yes}]\naxes: {arch: lenet5}\n",
                 "attacks[0].online: expected true or false, got \"yes\"");
    EXPECT_ERROR("name: t\n" POP "attacks: [{name: rmia, references: 4, a: 1.5}]\naxes: {arch: lenet5}\n",
                 "attacks[0].a: expected a number in [0, 1], or tune, got \"1.5\"");
    EXPECT_ERROR("name: t\n" POP "attacks: [{name: rmia, references: 1, a: tune}]\naxes: {arch: lenet5}\n",
                 "attacks[0].a: tuning a attacks reference model 0 with the others, so it needs at least 2");
    EXPECT_ERROR("name: t\n" POP "attacks: [{name: rmia, references: 4, gamma: 0}]\naxes: {arch: lenet5}\n",
                 "attacks[0].gamma: expected a number in (0, 1e6]");
    /* The offline pool is the population: a split without one is refused at the attack. */
    EXPECT_ERROR("name: t\nattacks: [loss, {name: rmia, references: 4}]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:17: attacks[1]: attack rmia trains its reference models on the population pool, and "
                 "data.split has none; expected data.split.population: <samples> (at least 4)");
    EXPECT_ERROR("name: t\nattacks: [{name: lira, references: 4, online: false}]\naxes: {arch: lenet5}\n",
                 "attacks[0]: attack lira-offline trains its reference models on the population pool, and "
                 "data.split has none");
    EXPECT_ERROR("name: t\ndata: {split: {population: 3}}\nattacks: {name: rmia, references: 4}\n"
                 "axes: {arch: lenet5}\n",
                 "t.yaml:3:10: attacks: attack rmia trains its reference models on the population pool, and "
                 "data.split has fewer than 4 samples in it");
    EXPECT_ERROR("name: t\n" POP "attacks: [{name: lira, references: 4}, {name: lira, references: 8}]\n"
                 "axes: {arch: lenet5}\n",
                 "t.yaml:4:40: attacks[1]: a second lira attack; the store names an attack's metrics by its name, so "
                 "a grid runs one each of lira, lira-offline and rmia");
}

static size_t count_refs(const mg_plan *p, int online)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_nodes; i++)
        n += p->nodes[i].reference > 0 && p->nodes[i].ref_online == online;
    return n;
}

/* The attack node of attack a in cell c. */
static const mg_node *attack_node(const mg_plan *p, size_t c, size_t a)
{
    return &p->nodes[p->cells[c].attack_nodes[a]];
}

static void test_plan(void)
{
    mg_error err;
    mg_plan *p = NULL;
    /* Three sparsities x two seeds; a defense of the dense phase (which the
     * references do not take); lira online with 3, lira offline and rmia
     * with 4 each (shared). */
    mg_grid *g = grid_with(POP "seeds: [0, 1]\n",
                           "[loss, {name: lira, references: 3}, {name: lira, references: 4, online: false}, "
                           "{name: rmia, references: 4, a: 0.5}]",
                           "  arch: lenet5\n  sparsity: [0, 0.5, 0.9]\n  defense: [none, label-smoothing]\n");
    if (!g)
        return;
    CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (p) {
        CHECK_INT_EQ(p->n_cells, 12);
        /* Per seed: 3 online and 4 offline references, whatever the
         * sparsity and defense. */
        CHECK_INT_EQ(count_refs(p, 1), 2 * 3);
        CHECK_INT_EQ(count_refs(p, 0), 2 * 4);
        for (size_t c = 0; c < p->n_cells; c++) {
            const mg_cell *cell = &p->cells[c];
            CHECK_INT_EQ(attack_node(p, c, 0)->n_extra, 0);
            for (size_t a = 1; a < 4; a++) {
                const mg_node *n = attack_node(p, c, a);
                CHECK_INT_EQ(n->n_inputs, 2);
                CHECK_INT_EQ(n->inputs[0], cell->model[MG_ROLE_TARGET]);
                CHECK_INT_EQ(n->inputs[1], cell->model[MG_ROLE_SHADOW]);
                CHECK_INT_EQ(n->n_extra, a == 1 ? 3 : 4);
                CHECK_INT_EQ(mg_node_n_deps(n), 2 + n->n_extra);
                CHECK(strstr(n->recipe, ",\"references\":[\"") != NULL);
                for (size_t k = 0; k < n->n_extra; k++) {
                    const mg_node *r = &p->nodes[mg_node_dep(n, 2 + k)];
                    CHECK_INT_EQ(r->kind, MG_NODE_TRAIN);
                    CHECK_INT_EQ(r->reference, (int)k + 1);
                    CHECK_INT_EQ(r->ref_count, (int)n->n_extra);
                    CHECK_INT_EQ(r->ref_online, a == 1);
                    CHECK_INT_EQ(r->seed, cell->seed);
                    CHECK_INT_EQ(r->defense, MG_NO_INDEX);
                    CHECK_INT_EQ(r->n_inputs + r->n_extra, 0);
                    CHECK(n->extra_first + k < (size_t)(n - p->nodes));
                    CHECK(strstr(n->recipe, r->key) != NULL);
                    CHECK(strstr(r->recipe, "\"defense\"") == NULL);
                    char want[96];
                    snprintf(want, sizeof want, "\"reference\":{\"count\":%zu,\"index\":%zu,\"pool\":\"%s\"}",
                             n->n_extra, k, a == 1 ? "candidates" : "population");
                    CHECK(strstr(r->recipe, want) != NULL);
                }
            }
            /* Offline lira and rmia with as many references share them. */
            CHECK_INT_EQ(attack_node(p, c, 2)->extra_first, attack_node(p, c, 3)->extra_first);
            CHECK(attack_node(p, c, 1)->extra_first != attack_node(p, c, 2)->extra_first);
            /* Every cell of a seed uses the same ones. */
            for (size_t d = 0; d < p->n_cells; d++)
                if (p->cells[d].seed == cell->seed)
                    for (size_t a = 1; a < 4; a++)
                        CHECK_INT_EQ(attack_node(p, c, a)->extra_first, attack_node(p, d, a)->extra_first);
        }
        /* Each offline reference serves 2 attacks in each of the 6 cells of its seed. */
        for (size_t i = 0; i < p->n_nodes; i++)
            if (p->nodes[i].reference)
                CHECK_INT_EQ(p->nodes[i].n_uses, p->nodes[i].ref_online ? 6 : 12);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);

    /* Another count is another set of references (the draw of who trains on
     * what depends on it). */
    g = grid_with(POP, "[{name: lira, references: 2, online: false}, {name: rmia, references: 3}]",
                  "  arch: lenet5\n");
    if (g) {
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
        if (p) {
            CHECK_INT_EQ(count_refs(p, 0), 5);
            CHECK(attack_node(p, 0, 0)->extra_first != attack_node(p, 0, 1)->extra_first);
        }
        mg_plan_destroy(&p);
    }
    mg_grid_destroy(&g);
}

/* k = 3 pooled shadow models and reference models on one attack node: the
 * recipe names the shadow models as a list and then the references, and
 * the node's inputs are the two models, the references (the extra range)
 * and shadow models 1 and 2, in that order. */
static void test_plan_shadows(void)
{
    mg_error err;
    mg_plan *p = NULL;
    mg_grid *g = grid_with("data:\n  split: {protocol: mia-prune, shadows: 3}\n",
                           "[samia, {name: rmia, references: 2}, {name: lira, references: 3}]",
                           "  arch: lenet5\n  sparsity: [0, 0.5]\n");
    if (!g)
        return;
    CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (p) {
        CHECK_INT_EQ(p->n_cells, 2);
        for (size_t c = 0; c < p->n_cells; c++) {
            const mg_cell *cell = &p->cells[c];
            CHECK_INT_EQ(cell->n_shadows, 3);
            const mg_node *samia = attack_node(p, c, 0);
            CHECK_INT_EQ(samia->n_extra, 0);
            CHECK_INT_EQ(samia->n_shadows, 3);
            CHECK(strstr(samia->recipe, "\"references\"") == NULL);
            for (size_t a = 1; a < 3; a++) {
                const mg_node *n = attack_node(p, c, a);
                const size_t R = a == 1 ? 2 : 3;
                CHECK_INT_EQ(n->n_extra, R);
                CHECK_INT_EQ(n->n_shadows, 3);
                CHECK_INT_EQ(mg_node_n_deps(n), 2 + R + 2);
                CHECK_INT_EQ(mg_node_dep(n, 0), cell->model[MG_ROLE_TARGET]);
                CHECK_INT_EQ(mg_node_dep(n, 1), cell->shadows[0]);
                for (size_t r = 0; r < R; r++) {
                    const mg_node *ref = &p->nodes[mg_node_dep(n, 2 + r)];
                    CHECK_INT_EQ(ref->reference, (int)r + 1);
                    CHECK_INT_EQ(ref->ref_count, (int)R);
                    CHECK_INT_EQ(ref->shadow_index, 0);
                }
                CHECK_INT_EQ(mg_node_dep(n, 2 + R), cell->shadows[1]);
                CHECK_INT_EQ(mg_node_dep(n, 3 + R), cell->shadows[2]);
                for (size_t k = 0; k < mg_node_n_deps(n); k++)
                    CHECK(mg_node_dep(n, k) < cell->attack_nodes[a]);
                /* "shadow":[k0,k1,k2] ... "target" ... ,"references":[r0,...] */
                char want[64];
                snprintf(want, sizeof want, "\"shadow\":[\"%s\",", p->nodes[cell->shadows[0]].key);
                const char *sh = strstr(n->recipe, want);
                const char *refs = strstr(n->recipe, ",\"references\":[\"");
                CHECK(sh != NULL);
                CHECK(refs != NULL && sh != NULL && refs > sh);
                if (refs)
                    CHECK(strncmp(refs + 16, p->nodes[n->extra_first].key, 32) == 0);
            }
        }
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

int main(void)
{
    test_options();
    test_errors();
    test_plan();
    test_plan_shadows();
    MG_TEST_MAIN_END();
}
