/*
 * test_grid_defense.c: the defense axis. Each defense's defaults and
 * canonical form (none keeps {"name":"none"}, so old stores stay valid), the
 * phase and its defaults, parameters that belong to another defense, ranges
 * and required keys with their line:column, and the plan: a defense on the
 * dense phase gives the dense models of its cells their own nodes, one on
 * the pruning phase shares them with the undefended cells.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grid_check.h"
#include "miagrid/grid.h"
#include "mg_test.h"

static mg_grid *grid_with(const char *defenses, const char *sparsity)
{
    char text[4096];
    mg_grid *g = NULL;
    mg_error err;
    snprintf(text, sizeof text, "name: t\naxes:\n  arch: lenet5\n  sparsity: %s\n  defense: %s\n", sparsity,
             defenses);
    CHECK_OK(parse(text, &g, &err), &err);
    return g;
}

static void test_defaults(void)
{
    mg_grid *g = grid_with("[none, base, label-smoothing, adv-reg, dp-sgd, relaxloss, ppb, "
                           "{name: rsw, mem_scores: m.csv, width: 40, step: 3}, {name: rmr, mem_scores: m.csv}, "
                           "{name: swmr, mem_scores: m.csv, width: 10, step: 1, order: ascending}]",
                           "[0.0]");
    if (!g)
        return;
    CHECK_INT_EQ(g->n_defenses, 10);
    static const char *const canon[10] = {
        "{\"name\":\"none\"}",
        "{\"name\":\"base\",\"patience\":5,\"phase\":\"both\",\"weight_decay\":0.0005}",
        "{\"name\":\"label-smoothing\",\"phase\":\"both\",\"smoothing\":0.1}",
        "{\"gamma\":1,\"k\":1,\"lr\":0.001,\"name\":\"adv-reg\",\"phase\":\"both\"}",
        "{\"delta\":1e-05,\"max_grad_norm\":1,\"name\":\"dp-sgd\",\"noise_multiplier\":1.1,\"phase\":\"both\"}",
        "{\"alpha\":1,\"name\":\"relaxloss\",\"phase\":\"both\"}",
        "{\"lambda\":1,\"name\":\"ppb\",\"phase\":\"prune\"}",
        "{\"mem_scores\":\"m.csv\",\"name\":\"rsw\",\"order\":\"descending\",\"phase\":\"prune\",\"step\":3,"
        "\"width\":40}",
        "{\"lambda_g\":0.0005,\"lambda_r\":0.1,\"mem_scores\":\"m.csv\",\"name\":\"rmr\",\"phase\":\"prune\","
        "\"tau\":0.6}",
        "{\"lambda_g\":0.0005,\"lambda_r\":0.1,\"mem_scores\":\"m.csv\",\"name\":\"swmr\",\"order\":\"ascending\","
        "\"phase\":\"prune\",\"step\":1,\"tau\":0.6,\"width\":10}",
    };
    for (int i = 0; i < 10; i++)
        CHECK_STR_EQ(g->defenses[i].canon, canon[i]);
    CHECK_INT_EQ(g->defenses[0].phase, 0);
    CHECK_INT_EQ(g->defenses[4].phase, MG_PHASE_BOTH);
    CHECK_INT_EQ(g->defenses[6].phase, MG_PHASE_PRUNE);
    CHECK_NEAR(g->defenses[4].noise_multiplier, 1.1, 0);
    CHECK_NEAR(g->defenses[4].delta, 1e-5, 0);
    CHECK_INT_EQ(g->defenses[9].ascending, 1);
    CHECK_INT_EQ(g->defenses[7].ascending, 0);
    CHECK_STR_EQ(g->defenses[8].mem_scores, "m.csv");
    mg_grid_destroy(&g);

    g = grid_with("[{name: dp-sgd, noise_multiplier: 0.8, max_grad_norm: 4, delta: 1.0e-6, phase: prune}, "
                  "{name: adv-reg, gamma: 3, k: 5, lr: 0.01, phase: dense}]", "[0.5]");
    if (!g)
        return;
    CHECK_STR_EQ(g->defenses[0].canon, "{\"delta\":1e-06,\"max_grad_norm\":4,\"name\":\"dp-sgd\","
                                       "\"noise_multiplier\":0.8,\"phase\":\"prune\"}");
    CHECK_STR_EQ(g->defenses[1].canon, "{\"gamma\":3,\"k\":5,\"lr\":0.01,\"name\":\"adv-reg\",\"phase\":\"dense\"}");
    CHECK_INT_EQ(g->defenses[1].k_steps, 5);
    CHECK_INT_EQ(g->defenses[1].phase, MG_PHASE_DENSE);
    mg_grid_destroy(&g);
}

static void test_errors(void)
{
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: ppb, alpha: 1}]\n",
                 "t.yaml:4:32: axes.defense[0].alpha: is not a parameter of defense ppb (it belongs to: relaxloss)");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: none, phase: both}]\n",
                 "axes.defense[0].phase: defense none has no phase");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: ppb, phase: finetune}]\n",
                 "axes.defense[0].phase: unknown phase \"finetune\"; expected one of: dense, prune, both");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: dp-sgd, max_grad_norm: 0}]\n",
                 "axes.defense[0].max_grad_norm: expected a clipping bound > 0");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: label-smoothing, smoothing: 1}]\n",
                 "axes.defense[0].smoothing: expected a smoothing epsilon in (0, 1)");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: adv-reg, k: 0}]\n",
                 "axes.defense[0].k: expected a number of inference-model steps from 1 to 1000");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [rsw]\n",
                 "axes.defense[0].width: defense rsw needs width");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: rsw, width: 4, step: 1}]\n",
                 "axes.defense[0]: defense rsw needs memorisation scores: mem_scores");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: rmr, mem_scores: m.csv, subsets: 4}]\n",
                 "axes.defense[0].mem_scores: give mem_scores or subsets, not both");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: rmr, mem_scores: m.csv, subset_fraction: 0.5}]\n",
                 "axes.defense[0].subset_fraction: only applies with subsets");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: rmr, subsets: 1}]\n",
                 "axes.defense[0].subsets: expected a number of subset models from 2 to 256");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: rsw, mem_scores: m.csv, width: 4}]\n",
                 "axes.defense[0].step: defense rsw needs step");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: swmr, mem_scores: m.csv, width: 4, step: 1, "
                 "order: random}]\n",
                 "axes.defense[0].order: unknown ranking order \"random\"; expected one of: descending, ascending");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{name: dp-sgd, sigma: 1}]\n",
                 "axes.defense[0]: unknown key \"sigma\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [{phase: both}]\n",
                 "axes.defense[0]: missing required key \"name\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [ppb, {name: ppb, lambda: 1}]\n",
                 "duplicate defense");
}

static size_t count_kind(const mg_plan *p, mg_node_kind k)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_nodes; i++)
        n += p->nodes[i].kind == k;
    return n;
}

static void test_plan(void)
{
    mg_error err;
    mg_plan *p = NULL;
    /* none, ppb (prune phase), dp-sgd (both) over sparsities 0 and 0.5, one seed:
     * dense nodes: undefended (shared by none and ppb) and dp-sgd's, per role. */
    mg_grid *g = grid_with("[none, ppb, dp-sgd]", "[0.0, 0.5]");
    if (!g)
        return;
    CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (p) {
        CHECK_INT_EQ(p->n_cells, 6);
        CHECK_INT_EQ(count_kind(p, MG_NODE_TRAIN), 4);
        CHECK_INT_EQ(count_kind(p, MG_NODE_PRUNE), 6);
        size_t defended = 0;
        for (size_t i = 0; i < p->n_nodes; i++) {
            const mg_node *n = &p->nodes[i];
            if (n->kind != MG_NODE_TRAIN)
                continue;
            int named = strstr(n->recipe, "\"defense\":{") != NULL;
            defended += named;
            CHECK(named == (n->defense != MG_NO_INDEX));
            if (named)
                CHECK(strstr(n->recipe, "dp-sgd") != NULL);
        }
        CHECK_INT_EQ(defended, 2);
        /* The sparsity-0 cell of ppb evaluates the undefended dense models. */
        for (size_t c = 0; c < p->n_cells; c++) {
            const mg_cell *cell = &p->cells[c];
            const mg_node *t = &p->nodes[cell->model[MG_ROLE_TARGET]];
            if (g->sparsities[cell->sparsity] == 0.0) {
                int dp = !strcmp(g->defenses[cell->defense].name, "dp-sgd");
                CHECK_INT_EQ(t->defense != MG_NO_INDEX, dp);
                const mg_node *a = &p->nodes[cell->attack_nodes[0]];
                CHECK_INT_EQ(a->defense != MG_NO_INDEX, dp);
            }
        }
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

/* rmr with 3 subset models: per role 3 subset nodes, consecutive, named in
 * the recipes of the prune nodes that use them, shared across sparsities. */
static void test_subsets(void)
{
    mg_error err;
    mg_plan *p = NULL;
    mg_grid *g = grid_with("[none, {name: rmr, subsets: 3, subset_fraction: 0.5}]", "[0.5, 0.7]");
    if (!g)
        return;
    CHECK_STR_EQ(g->defenses[1].canon, "{\"lambda_g\":0.0005,\"lambda_r\":0.1,\"name\":\"rmr\",\"phase\":\"prune\","
                                       "\"subset_fraction\":0.5,\"subsets\":3,\"tau\":0.6}");
    CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (p) {
        CHECK_INT_EQ(count_kind(p, MG_NODE_TRAIN), 2 + 6);
        size_t with_extra = 0, subsets = 0;
        for (size_t i = 0; i < p->n_nodes; i++) {
            const mg_node *n = &p->nodes[i];
            subsets += n->subset > 0;
            if (n->subset)
                CHECK(strstr(n->recipe, "\"subset\":{\"count\":3,\"fraction\":0.5,\"index\":") != NULL);
            if (!n->n_extra)
                continue;
            with_extra++;
            CHECK_INT_EQ(n->kind, MG_NODE_PRUNE);
            CHECK_INT_EQ(n->n_extra, 3);
            for (size_t k = 0; k < n->n_extra; k++) {
                const mg_node *sn = &p->nodes[n->extra_first + k];
                CHECK_INT_EQ(sn->subset, (int)k + 1);
                CHECK_INT_EQ(sn->role, n->role);
                CHECK(n->extra_first + k < i);
                CHECK(strstr(n->recipe, sn->key) != NULL);
            }
            CHECK_INT_EQ(mg_node_n_deps(n), 4);
        }
        CHECK_INT_EQ(subsets, 6);
        CHECK_INT_EQ(with_extra, 4); /* rmr's two sparsities, two roles */
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

int main(void)
{
    test_subsets();
    test_defaults();
    test_errors();
    test_plan();
    MG_TEST_MAIN_END();
}
