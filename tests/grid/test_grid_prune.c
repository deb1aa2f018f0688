/*
 * test_grid_prune.c: the pruning methods that change training, in the grid.
 * ADMM ({method: admm, rho, admm_epochs}) and slimming's penalty ({method:
 * slim, penalty}): defaults, canonical forms (a slim without penalty, or with
 * penalty 0, keeps the form it always had), every error with its
 * line:column and key, imp refused with admm; in the plan, slim with a
 * penalty trains dense models of its own (the penalty in their recipe and
 * node), shared by no other method, while every other node keeps its key,
 * and admm follows the one-shot and iterative schedules.
 */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/grid.h"
#include "mg_test.h"

static mg_status parse(const char *text, mg_grid **g, mg_error *err)
{
    mg_error_clear(err);
    return mg_grid_parse("t.yaml", text, strlen(text), g, err);
}

static void expect_error_at(int line, const char *text, const char *want, const char *want2)
{
    mg_grid *g = NULL;
    mg_error err;
    mg_status st = parse(text, &g, &err);
    mg_test_checks_++;
    if (st != MG_ERR_CONFIG || g != NULL || !strstr(err.msg, want) || (want2 && !strstr(err.msg, want2))) {
        fprintf(stderr, "%s:%d: FAIL: expected a config error containing \"%s\"%s%s%s\n  got status %d: %s\n",
                __FILE__, line, want, want2 ? " and \"" : "", want2 ? want2 : "", want2 ? "\"" : "", (int)st,
                st == MG_OK ? "(no error)" : err.msg);
        mg_test_failures_++;
    } else {
        printf("  expected error: %s\n", err.msg);
    }
    mg_grid_destroy(&g);
}
#define EXPECT_ERROR(text, want) expect_error_at(__LINE__, text, want, NULL)
#define EXPECT_ERROR2(text, want, want2) expect_error_at(__LINE__, text, want, want2)

/* The canonical form of a grid's only prune entry, `prune` as written. */
static void expect_canon_at(int line, const char *prune, const char *want)
{
    char text[512];
    mg_grid *g = NULL;
    mg_error err;
    snprintf(text, sizeof text, "name: t\naxes:\n  arch: lenet5\n  prune: [%s]\n", prune);
    mg_status st = parse(text, &g, &err);
    mg_test_checks_++;
    if (st != MG_OK || !g || strcmp(g->prunes[0].canon, want) != 0) {
        fprintf(stderr, "%s:%d: FAIL: prune %s: expected %s, got %s\n", __FILE__, line, prune, want,
                st != MG_OK ? err.msg : g->prunes[0].canon);
        mg_test_failures_++;
    }
    mg_grid_destroy(&g);
}
#define EXPECT_CANON(prune, want) expect_canon_at(__LINE__, prune, want)

static void test_defaults_and_canon(void)
{
    mg_error err;
    mg_grid *g = NULL;
    CHECK_OK(parse("name: t\naxes:\n  arch: lenet5\n  prune: [admm, slim, {method: slim, penalty: 1.0e-4}]\n", &g,
                   &err),
             &err);
    if (g) {
        CHECK_STR_EQ(g->prunes[0].method, "admm");
        CHECK_STR_EQ(g->prunes[0].schedule, "one-shot");
        CHECK_NEAR(g->prunes[0].rho, 1e-3, 0);
        CHECK_INT_EQ(g->prunes[0].admm_epochs, 10);
        CHECK_NEAR(g->prunes[1].penalty, 0.0, 0);
        CHECK_NEAR(g->prunes[2].penalty, 1e-4, 0);
        CHECK_NEAR(g->prunes[1].rho, 0.0, 0);
        CHECK_INT_EQ(g->prunes[1].admm_epochs, 0);
    }
    mg_grid_destroy(&g);

    EXPECT_CANON("admm", "{\"admm_epochs\":10,\"method\":\"admm\",\"rho\":0.001,\"schedule\":\"one-shot\"}");
    EXPECT_CANON("{method: admm, rho: 1.0e-3, admm_epochs: 10}",
                 "{\"admm_epochs\":10,\"method\":\"admm\",\"rho\":0.001,\"schedule\":\"one-shot\"}");
    EXPECT_CANON("{method: admm, schedule: iterative, rounds: 2, rho: 0.01, admm_epochs: 3}",
                 "{\"admm_epochs\":3,\"method\":\"admm\",\"rho\":0.01,\"rounds\":2,\"schedule\":\"iterative\"}");
    EXPECT_CANON("{method: slim, penalty: 1.0e-4}", "{\"method\":\"slim\",\"penalty\":0.0001,\"schedule\":\"one-shot\"}");
    EXPECT_CANON("{method: slim, penalty: 1.0e-5, schedule: imp}",
                 "{\"method\":\"slim\",\"penalty\":1e-05,\"rate\":0.2,\"rewind_epoch\":0,\"schedule\":\"imp\"}");
    /* No penalty, or 0: the form slim always had. */
    EXPECT_CANON("slim", "{\"method\":\"slim\",\"schedule\":\"one-shot\"}");
    EXPECT_CANON("{method: slim, penalty: 0}", "{\"method\":\"slim\",\"schedule\":\"one-shot\"}");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: [slim, {method: slim, penalty: 0}]\n",
                 "axes.prune[1]");
}

/* Gonon et al.'s butterfly ResNet-20 with S = 1: the last segment's 3x3
 * convolutions. Prefixes are sorted in the canonical form, so their order
 * in the grid does not change a key. */
static void test_layers(void)
{
    EXPECT_CANON("{method: butterfly, factors: 2, layers: [L.8.c, L.7.c, L.6.c]}",
                 "{\"factors\":2,\"layers\":[\"L.6.c\",\"L.7.c\",\"L.8.c\"],\"method\":\"butterfly\",\"schedule\":"
                 "\"one-shot\"}");
    EXPECT_CANON("{method: l1-unstructured, layers: conv2}",
                 "{\"layers\":[\"conv2\"],\"method\":\"l1-unstructured\",\"schedule\":\"one-shot\"}");
    mg_error err;
    mg_grid *g = NULL;
    CHECK_OK(parse("name: t\naxes:\n  arch: resnet20\n  prune: {method: butterfly, layers: [L.8.c, L.7.c]}\n", &g,
                   &err),
             &err);
    if (g) {
        CHECK_INT_EQ(g->prunes[0].n_layers, 2);
        CHECK_STR_EQ(g->prunes[0].layers[0], "L.7.c");
        CHECK_STR_EQ(g->prunes[0].layers[1], "L.8.c");
    }
    mg_grid_destroy(&g);
}

static void test_errors(void)
{
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: admm, schedule: imp}\n",
                 "t.yaml:4:35: axes.prune.schedule: method admm does not take schedule imp");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: [l1-unstructured, {method: admm, schedule: imp, rate: 0.5}]\n",
                 "t.yaml:4:53: axes.prune[1].schedule: method admm does not take schedule imp");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: admm, rho: 0}\n",
                 "t.yaml:4:30: axes.prune.rho: expected a penalty > 0 (e.g. 1.0e-3), got \"0\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: admm, rho: -1.0e-3}\n",
                 "t.yaml:4:30: axes.prune.rho: expected a penalty > 0");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: admm, rho: \"1e-3\"}\n",
                 "t.yaml:4:30: axes.prune.rho: expected a penalty > 0 (e.g. 1.0e-3), got the quoted string");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: admm, admm_epochs: 0}\n",
                 "t.yaml:4:38: axes.prune.admm_epochs: expected a whole number of ADMM epochs >= 1, got \"0\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: admm, admm_epochs: 2.5}\n",
                 "t.yaml:4:38: axes.prune.admm_epochs: expected a whole number of ADMM epochs >= 1, got \"2.5\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, rho: 1.0e-3}\n",
                 "t.yaml:4:41: axes.prune.rho: only applies with method: admm");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: slim, admm_epochs: 3}\n",
                 "t.yaml:4:38: axes.prune.admm_epochs: only applies with method: admm");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, penalty: 1.0e-4}\n",
                 "t.yaml:4:45: axes.prune.penalty: only applies with method: slim");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: admm, penalty: 1.0e-4}\n",
                 "axes.prune.penalty: only applies with method: slim");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: slim, penalty: -1.0e-4}\n",
                 "t.yaml:4:34: axes.prune.penalty: expected a number >= 0 (the L1 weight on batch-norm scales");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: slim, penalty: .inf}\n",
                 "axes.prune.penalty: expected a number >= 0");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: admm, rh0: 1}\n",
                 "t.yaml:4:25: axes.prune: unknown key \"rh0\"; accepted keys: method, schedule, rounds, rate, "
                 "rewind_epoch, factors, rho, admm_epochs, penalty");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: adm\n", "expected one of: l1-unstructured");
    /* layers: tensor-name prefixes. */
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: admm, layers: [fc]}\n",
                 "t.yaml:4:33: axes.prune.layers: only applies with a method other than admm");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: butterfly, layers: []}\n",
                 "t.yaml:4:38: axes.prune.layers: the list is empty; expected a list of tensor-name prefixes");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: butterfly, layers: [conv, \"\"]}\n",
                 "t.yaml:4:45: axes.prune.layers[1]: an empty prefix would match every tensor");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: butterfly, layers: [fc, conv, fc]}\n",
                 "axes.prune.layers[2]: duplicate layer prefix (same as axes.prune.layers[0] at line 4)");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: butterfly, layers: [{a: 1}]}\n",
                 "axes.prune.layers[0]: expected a tensor-name prefix");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: butterfly, layers: [a, b, c, d, e, f, g, h, i, "
                 "j, k, l, m, n, o, p, q]}\n",
                 "axes.prune.layers: 17 layer prefixes; expected at most 16");
}

static size_t count_kind(const mg_plan *p, mg_node_kind k)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_nodes; i++)
        n += p->nodes[i].kind == k;
    return n;
}

static char *read_print(const mg_grid *g, const mg_plan *p)
{
    FILE *f = tmpfile();
    if (!f)
        return NULL;
    mg_plan_print(g, p, f);
    long n = ftell(f);
    rewind(f);
    char *s = calloc((size_t)n + 1, 1);
    if (s && fread(s, 1, (size_t)n, f) != (size_t)n)
        s[0] = '\0';
    fclose(f);
    return s;
}

static void test_plan(void)
{
    mg_error err;
    mg_grid *g = NULL, *g0 = NULL;
    mg_plan *p = NULL, *p0 = NULL;
    const char *base = "name: t\naxes:\n  arch: resnet20\n  prune: [l1-unstructured, slim]\n"
                       "  sparsity: [0, 0.5]\nattacks: [loss]\n";
    const char *more = "name: t\naxes:\n  arch: resnet20\n"
                       "  prune: [l1-unstructured, slim, {method: slim, penalty: 1.0e-4},\n"
                       "          {method: slim, penalty: 1.0e-4, schedule: imp, rate: 0.5},\n"
                       "          {method: admm, admm_epochs: 2}, {method: admm, schedule: iterative, rounds: 2}]\n"
                       "  sparsity: [0, 0.5]\nattacks: [loss]\n";
    CHECK_OK(parse(base, &g0, &err), &err);
    CHECK_OK(parse(more, &g, &err), &err);
    if (g0)
        CHECK_OK(mg_plan_build(g0, &p0, &err), &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (!p || !p0)
        goto done;
    /* Nothing of the grid without the new entries changes key. */
    size_t missing = 0;
    for (size_t i = 0; i < p0->n_nodes; i++)
        missing += mg_plan_find(p, p0->nodes[i].key) == MG_NO_INDEX;
    CHECK_INT_EQ(missing, 0);

    /* Dense models: plain (2 roles), penalised (2 roles) and the penalised
     * imp's rewind points (2 roles). */
    CHECK_INT_EQ(count_kind(p0, MG_NODE_TRAIN), 2);
    CHECK_INT_EQ(count_kind(p, MG_NODE_TRAIN), 6);
    size_t penalised = 0, plain = 0;
    for (size_t i = 0; i < p->n_nodes; i++) {
        const mg_node *n = &p->nodes[i];
        int in_recipe = strstr(n->recipe, "\"seed\":0,\"slim_penalty\":0.0001,\"split\":") != NULL;
        if (n->kind != MG_NODE_TRAIN) {
            CHECK(n->bn_l1 == 0.0 && strstr(n->recipe, "slim_penalty") == NULL);
            continue;
        }
        if (n->bn_l1 > 0.0) {
            CHECK_NEAR(n->bn_l1, 1e-4, 0);
            CHECK(in_recipe);
            penalised++;
        } else {
            CHECK(!in_recipe && strstr(n->recipe, "slim_penalty") == NULL);
            plain++;
        }
    }
    CHECK_INT_EQ(penalised, 4);
    CHECK_INT_EQ(plain, 2);

    /* Cells: the penalised slim's models (pruned or dense) come from the
     * penalised training; the plain slim's and l1's from the plain one. */
    for (size_t c = 0; c < p->n_cells; c++) {
        const mg_cell *cell = &p->cells[c];
        const mg_prune_spec *ps = &g->prunes[cell->prune];
        const mg_node *tm = &p->nodes[cell->model[MG_ROLE_TARGET]];
        const mg_node *dense = tm;
        while (dense->kind == MG_NODE_PRUNE)
            dense = &p->nodes[dense->inputs[0]];
        CHECK((dense->bn_l1 > 0.0) == (ps->penalty > 0.0));
        if (tm->kind == MG_NODE_PRUNE && strcmp(ps->method, "admm") == 0) {
            int iterative = strcmp(ps->schedule, "iterative") == 0;
            CHECK_INT_EQ(tm->stage, iterative ? 2 : 1);
            CHECK(strstr(tm->recipe, iterative ? "\"admm_epochs\":10,\"method\":\"admm\",\"rho\":0.001,\"rounds\":2"
                                               : "\"admm_epochs\":2,\"method\":\"admm\",\"rho\":0.001,") != NULL);
            if (iterative) {
                const mg_node *first = &p->nodes[tm->inputs[0]];
                CHECK(first->kind == MG_NODE_PRUNE && first->stage == 1);
                CHECK_NEAR(first->sparsity, 1.0 - sqrt(0.5), 1e-15);
            }
        }
        if (tm->kind == MG_NODE_PRUNE && ps->penalty > 0.0 && strcmp(ps->schedule, "imp") == 0) {
            const mg_node *rw = &p->nodes[tm->inputs[1]];
            CHECK(rw->kind == MG_NODE_TRAIN && rw->stop_epoch == 0 && rw->bn_l1 > 0.0);
        }
    }
    /* 6 prunes x 2 sparsities; at sparsity 0 the penalised slims (one-shot
     * and imp) share their dense models and attack. */
    CHECK_INT_EQ(p->n_cells, 12);
    char *text = read_print(g, p);
    CHECK(text && strstr(text, "slim penalty 0.0001") != NULL);
    free(text);
done:
    mg_plan_destroy(&p);
    mg_plan_destroy(&p0);
    mg_grid_destroy(&g);
    mg_grid_destroy(&g0);
}

int main(void)
{
    test_defaults_and_canon();
    test_layers();
    test_errors();
    test_plan();
    MG_TEST_MAIN_END();
}
