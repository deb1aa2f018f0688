/*
 * test_grid_select.c: Wang et al.'s MIA-Pruning selection in the grid and
 * the plan. `select` as a list or {candidates, attack}: candidates sorted,
 * the canonical form, the chain's form without the selection, every error
 * with its line:column and key; in the plan, a selecting cell prunes to each
 * candidate up to its sparsity with the very nodes of the plain cells of the
 * same method, then one select node for the target (depending on every
 * candidate's target and shadow models) and one per shadow model (following
 * the target's), which the attacks consume; a cell below every candidate is
 * refused with the reason.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grid_check.h"
#include "miagrid/grid.h"
#include "mg_test.h"

static void test_parse(void)
{
    mg_error err;
    mg_grid *g = NULL;
    CHECK_OK(parse("name: t\naxes:\n  arch: lenet5\n"
                   "  prune: [l1-unstructured, {method: l1-unstructured, select: [0.9, 0.5, 0.7]},\n"
                   "          {method: l1-unstructured, select: {candidates: [0.6], attack: top3-nn}}]\n",
                   &g, &err),
             &err);
    if (g) {
        CHECK_INT_EQ(g->prunes[0].n_select, 0);
        CHECK_INT_EQ(g->prunes[1].n_select, 3);
        CHECK(g->prunes[1].select[0] == 0.5 && g->prunes[1].select[1] == 0.7 && g->prunes[1].select[2] == 0.9);
        CHECK_STR_EQ(g->prunes[1].select_attack, "nn-cls");
        CHECK_STR_EQ(g->prunes[1].canon, "{\"method\":\"l1-unstructured\",\"schedule\":\"one-shot\",\"select\":{"
                                         "\"attack\":\"nn-cls\",\"candidates\":[0.5,0.7,0.9]}}");
        CHECK_STR_EQ(g->prunes[2].canon, "{\"method\":\"l1-unstructured\",\"schedule\":\"one-shot\",\"select\":{"
                                         "\"attack\":\"top3-nn\",\"candidates\":[0.6]}}");
        /* The pruned models are named by the chain's form: the plain method's. */
        CHECK_STR_EQ(g->prunes[1].chain_canon, g->prunes[0].canon);
        CHECK_STR_EQ(g->prunes[2].chain_canon, g->prunes[0].canon);
        CHECK_STR_EQ(g->prunes[0].chain_canon, g->prunes[0].canon);
        char label[64];
        mg_prune_label(&g->prunes[1], label, sizeof label);
        CHECK_STR_EQ(label, "l1-unstructured/one-shot/select");
        mg_prune_label(&g->prunes[0], label, sizeof label);
        CHECK_STR_EQ(label, "l1-unstructured/one-shot");
    }
    mg_grid_destroy(&g);
    /* With a schedule, the chain's form keeps it. */
    CHECK_OK(parse("name: t\naxes:\n  arch: lenet5\n"
                   "  prune: {method: l2-structured, schedule: iterative, rounds: 2, select: [0.4]}\n",
                   &g, &err),
             &err);
    if (g)
        CHECK_STR_EQ(g->prunes[0].chain_canon,
                     "{\"method\":\"l2-structured\",\"rounds\":2,\"schedule\":\"iterative\"}");
    mg_grid_destroy(&g);
}

static void test_errors(void)
{
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, select: []}\n",
                 "t.yaml:4:44: axes.prune.select: the list is empty; expected a list of candidate sparsities");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, select: [0.5, 1.0]}\n",
                 "t.yaml:4:50: axes.prune.select[1]: expected a sparsity in (0, 1), got \"1.0\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, select: [0, 0.5]}\n",
                 "axes.prune.select[0]: expected a sparsity in (0, 1), got \"0\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, select: [0.5, 0.50]}\n",
                 "axes.prune.select");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n"
                 "  prune: {method: l1-unstructured, select: {candidates: [0.5], attack: loss}}\n",
                 "t.yaml:4:72: axes.prune.select.attack: unknown selection attack \"loss\"; expected one of: nn-cls, nn, top3-nn");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, select: {attack: nn}}\n",
                 "t.yaml:4:44: axes.prune.select: missing required key \"candidates\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n"
                 "  prune: {method: l1-unstructured, select: {candidates: [0.5], atack: nn}}\n",
                 "axes.prune.select: unknown key \"atack\"; accepted keys: candidates, attack");
    char big[2048];
    int len = snprintf(big, sizeof big, "name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, select: [");
    for (int i = 1; i <= MG_MAX_SELECT + 1; i++)
        len += snprintf(big + len, sizeof big - (size_t)len, "%s0.%03d", i > 1 ? ", " : "", i);
    snprintf(big + len, sizeof big - (size_t)len, "]}\n");
    EXPECT_ERROR(big, "axes.prune.select: 33 candidates; expected at most 32");
}

static size_t count_kind(const mg_plan *p, mg_node_kind k)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_nodes; i++)
        n += p->nodes[i].kind == k;
    return n;
}

static const mg_cell *find_cell(const mg_grid *g, const mg_plan *p, int selecting, double sparsity)
{
    for (size_t c = 0; c < p->n_cells; c++)
        if ((g->prunes[p->cells[c].prune].n_select > 0) == selecting &&
            g->sparsities[p->cells[c].sparsity] == sparsity)
            return &p->cells[c];
    return NULL;
}

static void test_plan(void)
{
    static const char text[] =
        "name: t\ndata:\n  split: {protocol: explicit, target_train: 100, target_test: 100, shadow_train: 100,\n"
        "          shadow_test: 100, shadows: 2}\naxes:\n  arch: {name: mlp, hidden: [8]}\n"
        "  prune: [l1-unstructured, {method: l1-unstructured, select: [0.5, 0.8]}]\n"
        "  sparsity: [0, 0.5, 0.7, 0.8]\nattacks: [loss, nn]\n";
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    CHECK_OK(parse(text, &g, &err), &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (!p)
        goto done;
    /* 3 dense models; the plain cells' 3 x 3 pruned ones are all the
     * selection's candidates; select nodes, one for the target and one per
     * shadow model, for the selecting cells at 0.5 (and 0.7, the same
     * candidates) and at 0.8. */
    CHECK_INT_EQ(p->n_cells, 8);
    CHECK_INT_EQ(count_kind(p, MG_NODE_TRAIN), 3);
    CHECK_INT_EQ(count_kind(p, MG_NODE_PRUNE), 9);
    CHECK_INT_EQ(count_kind(p, MG_NODE_SELECT), 6);
    /* Sparsity 0: the selection changes nothing. */
    const mg_cell *c0 = find_cell(g, p, 1, 0.0), *p0 = find_cell(g, p, 0, 0.0);
    CHECK(c0 && p0 && c0->model[MG_ROLE_TARGET] == p0->model[MG_ROLE_TARGET] &&
          c0->attack_nodes[0] == p0->attack_nodes[0]);
    double sp[3] = {0.5, 0.7, 0.8};
    size_t want_cand[3] = {1, 1, 2};
    for (int s = 0; s < 3; s++) {
        const mg_cell *c = find_cell(g, p, 1, sp[s]);
        if (!c)
            continue;
        const mg_node *t = &p->nodes[c->model[MG_ROLE_TARGET]];
        CHECK(t->kind == MG_NODE_SELECT && t->role == MG_ROLE_TARGET);
        CHECK_INT_EQ(t->n_candidates, want_cand[s]);
        CHECK_INT_EQ(t->n_cands, want_cand[s] * 3);
        CHECK_INT_EQ(mg_node_n_deps(t), t->n_cands);
        CHECK(t->sparsity == (s == 2 ? 0.8 : 0.5)); /* its largest candidate */
        /* Candidate k is the plain cell at the k-th candidate sparsity:
         * its target, then its shadow models in order. */
        for (size_t k = 0; k < t->n_candidates; k++) {
            const mg_cell *plain = find_cell(g, p, 0, k == 0 ? 0.5 : 0.8);
            if (!plain)
                continue;
            CHECK_INT_EQ(t->cands[k * 3], plain->model[MG_ROLE_TARGET]);
            CHECK_INT_EQ(t->cands[k * 3 + 1], plain->shadows[0]);
            CHECK_INT_EQ(t->cands[k * 3 + 2], plain->shadows[1]);
            CHECK(strstr(t->recipe, p->nodes[plain->shadows[1]].key) != NULL);
            CHECK(p->nodes[t->cands[k * 3]].sparsity == (k == 0 ? 0.5 : 0.8));
        }
        for (size_t d = 0; d < mg_node_n_deps(t); d++)
            CHECK(mg_node_dep(t, d) == t->cands[d] && t->cands[d] < c->model[MG_ROLE_TARGET]);
        CHECK(strstr(t->recipe, "\"attack\":\"nn-cls\"") != NULL && strstr(t->recipe, "\"kind\":\"select\"") != NULL);
        for (size_t sh = 0; sh < 2; sh++) {
            const mg_node *sn = &p->nodes[c->shadows[sh]];
            CHECK(sn->kind == MG_NODE_SELECT && sn->role == MG_ROLE_SHADOW && sn->shadow_index == (int)sh);
            CHECK_INT_EQ(sn->n_inputs, 1);
            CHECK_INT_EQ(sn->inputs[0], c->model[MG_ROLE_TARGET]);
            CHECK_INT_EQ(sn->n_cands, want_cand[s]);
            CHECK_INT_EQ(mg_node_n_deps(sn), 1 + want_cand[s]);
            for (size_t k = 0; k < sn->n_cands; k++)
                CHECK_INT_EQ(mg_node_dep(sn, 1 + k), t->cands[k * 3 + 1 + sh]);
        }
        CHECK_INT_EQ(c->model[MG_ROLE_SHADOW], c->shadows[0]);
        /* The attacks meet the selected target and shadow models. */
        const mg_node *a = &p->nodes[c->attack_nodes[0]];
        CHECK(a->kind == MG_NODE_ATTACK && a->inputs[0] == c->model[MG_ROLE_TARGET] &&
              a->inputs[1] == c->shadows[0] && a->shadows[1] == c->shadows[1]);
    }
    /* The cells at 0.5 and 0.7 choose among the same one candidate: one
     * choice, the same select nodes and attacks. */
    const mg_cell *c5 = find_cell(g, p, 1, 0.5), *c7 = find_cell(g, p, 1, 0.7);
    CHECK(c5 && c7 && c5->model[MG_ROLE_TARGET] == c7->model[MG_ROLE_TARGET] &&
          c5->shadows[1] == c7->shadows[1] && c5->attack_nodes[1] == c7->attack_nodes[1]);
done:
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

static void test_plan_refusal(void)
{
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    CHECK_OK(parse("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, select: [0.5, 0.9]}\n"
                   "  sparsity: [0.3]\n",
                   &g, &err),
             &err);
    if (g) {
        mg_error_clear(&err);
        CHECK_INT_EQ(mg_plan_build(g, &p, &err), MG_ERR_CONFIG);
        CHECK(p == NULL);
        CHECK(strstr(err.msg, "t.yaml") && strstr(err.msg, "sparsity 0.3") && strstr(err.msg, "from 0.5"));
        CHECK(strstr(err.msg, "exclude: [{prune: {method: l1-unstructured, select: [0.5, 0.9]}, sparsity: 0.3}]"));
        printf("  expected error: %s\n", err.msg);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

/* exclude's prune mappings match the options they give, so a selecting
 * entry can be left out where a plain one of the same method stays. */
static void test_exclude(void)
{
    static const char head[] = "name: t\naxes:\n  arch: lenet5\n"
                               "  prune: [l1-unstructured, {method: l1-unstructured, select: [0.5, 0.9]},\n"
                               "          {method: butterfly, layers: [conv2, fc1]}]\n"
                               "  sparsity: [0.2, 0.9]\nexclude:\n";
    char text[1024];
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    snprintf(text, sizeof text, "%s  - {prune: {method: l1-unstructured, select: [0.9, 0.5]}, sparsity: 0.2}\n", head);
    CHECK_OK(parse(text, &g, &err), &err);
    if (g) {
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
        if (p) {
            CHECK_INT_EQ(p->n_cells, 5);
            for (size_t c = 0; c < p->n_cells; c++)
                CHECK(!(g->prunes[p->cells[c].prune].n_select && g->sparsities[p->cells[c].sparsity] == 0.2));
        }
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    snprintf(text, sizeof text,
             "%s  - {prune: {method: butterfly, layers: [fc1, conv2]}}\n"
             "  - {prune: {method: l1-unstructured, select: [0.5, 0.9]}, sparsity: 0.2}\n",
             head);
    CHECK_OK(parse(text, &g, &err), &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (p)
        CHECK_INT_EQ(p->n_cells, 3);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    /* Options nothing has: the entry matches nothing, an error at its line. */
    snprintf(text, sizeof text, "%s  - {prune: {method: l1-unstructured, select: [0.5]}}\n", head);
    EXPECT_ERROR(text, "t.yaml:8:");
    snprintf(text, sizeof text, "%s  - {prune: {select: [0.5, 0.9]}}\n", head);
    EXPECT_ERROR(text, "t.yaml:8:13: exclude[0].prune: prune options other than schedule need the method");
    snprintf(text, sizeof text, "%s  - {prune: {method: l1-unstructured, select: [1.5]}}\n", head);
    EXPECT_ERROR(text, "exclude[0].prune.select[0]: expected a sparsity in (0, 1)");
}

int main(void)
{
    test_parse();
    test_errors();
    test_plan();
    test_plan_refusal();
    test_exclude();
    MG_TEST_MAIN_END();
}
