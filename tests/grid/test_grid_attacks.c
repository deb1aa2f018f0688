/*
 * test_grid_attacks.c: the attacks that need sensitivity features (samia,
 * gonon) in grid files, gonon's depth option and its errors, and plans that
 * pool k shadow models per cell (data.split.shadows): node counts, the
 * recipes of shadow 0 as with one shadow model, shadow i > 0 named in its
 * training recipes, and attack nodes depending on every shadow model.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/grid.h"
#include "mg_test.h"

static mg_grid *parse_ok(int line, const char *text)
{
    mg_grid *g = NULL;
    mg_error err;
    mg_error_clear(&err);
    mg_status st = mg_grid_parse("t.yaml", text, strlen(text), &g, &err);
    mg_test_checks_++;
    if (st != MG_OK) {
        fprintf(stderr, "%s:%d: FAIL: parse failed: %s\n", __FILE__, line, err.msg);
        mg_test_failures_++;
    }
    return g;
}
#define PARSE_OK(text) parse_ok(__LINE__, text)

static void expect_error_at(int line, const char *text, const char *want)
{
    mg_grid *g = NULL;
    mg_error err;
    mg_error_clear(&err);
    mg_status st = mg_grid_parse("t.yaml", text, strlen(text), &g, &err);
    mg_test_checks_++;
    if (st != MG_ERR_CONFIG || g != NULL || !strstr(err.msg, want)) {
        fprintf(stderr, "%s:%d: FAIL: expected a config error containing \"%s\"\n  got status %d: %s\n", __FILE__,
                line, want, (int)st, st == MG_OK ? "(no error)" : err.msg);
        mg_test_failures_++;
    }
    mg_grid_destroy(&g);
}
#define EXPECT_ERROR(text, want) expect_error_at(__LINE__, text, want)

static mg_plan *plan_ok(int line, const mg_grid *g)
{
    mg_plan *p = NULL;
    mg_error err;
    mg_error_clear(&err);
    mg_test_checks_++;
    if (!g || mg_plan_build(g, &p, &err) != MG_OK) {
        fprintf(stderr, "%s:%d: FAIL: plan failed: %s\n", __FILE__, line, g ? err.msg : "no grid");
        mg_test_failures_++;
    }
    return p;
}
#define PLAN_OK(g) plan_ok(__LINE__, g)

static size_t count_kind(const mg_plan *p, mg_node_kind k)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_nodes; i++)
        n += p->nodes[i].kind == k;
    return n;
}

/* Inputs (every kind of them) precede their consumers and are named by key
 * in the consumer's recipe; the uses add up to the references. */
static void check_invariants(const mg_plan *p)
{
    size_t refs = 0;
    int topo = 1, named = 1;
    for (size_t i = 0; i < p->n_nodes; i++) {
        const mg_node *n = &p->nodes[i];
        refs += n->n_uses;
        for (size_t k = 0; k < mg_node_n_deps(n); k++) {
            topo = topo && mg_node_dep(n, k) < i;
            named = named && strstr(n->recipe, p->nodes[mg_node_dep(n, k)].key) != NULL;
        }
    }
    CHECK(topo);
    CHECK(named);
    CHECK_INT_EQ(refs, p->n_refs);
}

/* s with every `from` replaced by `to` (caller frees). */
static char *replace_all(const char *s, const char *from, const char *to)
{
    size_t n = 0, lf = strlen(from), lt = strlen(to);
    for (const char *q = strstr(s, from); q; q = strstr(q + lf, from))
        n++;
    char *out = malloc(strlen(s) + n * (lt > lf ? lt - lf : 0) + 1), *w = out;
    if (!out)
        return NULL;
    for (const char *q; (q = strstr(s, from)) != NULL; s = q + lf) {
        memcpy(w, s, (size_t)(q - s));
        w += q - s;
        memcpy(w, to, lt);
        w += lt;
    }
    strcpy(w, s);
    return out;
}

static void test_parse(void)
{
    mg_grid *g = PARSE_OK("name: t\nattacks: [loss, samia, gonon]\naxes: {arch: lenet5}\n");
    if (g) {
        CHECK_INT_EQ(g->n_attacks, 3);
        CHECK_STR_EQ(g->attacks[1].name, "samia");
        CHECK_STR_EQ(g->attacks[1].canon, "{\"name\":\"samia\"}");
        CHECK_STR_EQ(g->attacks[2].name, "gonon");
        /* gonon's canonical form names its depth, the default 0 included. */
        CHECK_STR_EQ(g->attacks[2].canon, "{\"depth\":0,\"name\":\"gonon\"}");
        CHECK_INT_EQ(g->attacks[2].gonon_depth, 0);
    }
    mg_grid_destroy(&g);
    g = PARSE_OK("name: t\nattacks: [{name: samia}, {name: gonon, depth: 2}]\naxes: {arch: lenet5}\n");
    if (g) {
        CHECK_STR_EQ(g->attacks[1].name, "gonon");
        CHECK_STR_EQ(g->attacks[1].canon, "{\"depth\":2,\"name\":\"gonon\"}");
        CHECK_INT_EQ(g->attacks[1].gonon_depth, 2);
        CHECK_INT_EQ(g->attacks[0].gonon_depth, 0);
    }
    mg_grid_destroy(&g);

    EXPECT_ERROR("name: t\nattacks: [{name: loss, depth: 1}]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:31: attacks[0].depth: key \"depth\" does not apply to attack \"loss\"; only gonon takes it");
    EXPECT_ERROR("name: t\nattacks: [{name: gonon, depth: 4}]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:32: attacks[0].depth: expected a gonon depth from 0 to 3 (0: chosen among 1 to 3 hidden "
                 "layers), got \"4\"");
    EXPECT_ERROR("name: t\nattacks: [{name: gonon, depth: deep}]\naxes: {arch: lenet5}\n",
                 "attacks[0].depth: expected a gonon depth from 0 to 3");
    EXPECT_ERROR("name: t\nattacks: [{name: gonon, depth: 1, lr: 0.1}]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:35: attacks[0]: unknown key \"lr\"; accepted keys: name, depth");
    EXPECT_ERROR("name: t\nattacks: [{name: gonon, dept: 1}]\naxes: {arch: lenet5}\n",
                 "attacks[0]: unknown key \"dept\"; accepted keys: name");
    EXPECT_ERROR("name: t\nattacks: [{depth: 1}]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:11: attacks[0]: missing required key \"name\"");
    EXPECT_ERROR("name: t\nattacks: [gonon, {name: gonon, depth: 0}]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:18: attacks[1]: duplicate attack (same as attacks[0] at line 2)");
    EXPECT_ERROR("name: t\nattacks: [gonon, {name: gonon, depth: 1}]\naxes: {arch: lenet5}\n",
                 "attacks[1]: duplicate attack name (the metrics table tells attacks apart by name, so a grid runs "
                 "one gonon depth)");
    /* rmia is a grid attack too, but one that must say how many reference models to train. */
    EXPECT_ERROR("name: t\nattacks: [samia, rmia]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:18: attacks[1]: attack rmia needs the number of its reference models");
}

/* k = 3 shadow models of a mia-prune split, dense and pruned cells. */
static void test_plan_shadows(void)
{
    static const char grid[] = "name: t\n"
                               "data: {split: {protocol: mia-prune, shadows: %d}}\n"
                               "axes: {arch: lenet5, sparsity: [0, 0.5]}\n"
                               "attacks: [loss, samia]\n";
    char text[512];
    snprintf(text, sizeof text, grid, 3);
    mg_grid *g = PARSE_OK(text);
    snprintf(text, sizeof text, grid, 1);
    mg_grid *g1 = PARSE_OK(text);
    mg_plan *p = PLAN_OK(g), *p1 = PLAN_OK(g1);
    if (!p || !p1)
        goto done;
    /* Per model (target, 3 shadows): a dense node and a pruned one; per cell 2 attacks. */
    CHECK_INT_EQ(p->n_cells, 2);
    CHECK_INT_EQ(count_kind(p, MG_NODE_TRAIN), 4);
    CHECK_INT_EQ(count_kind(p, MG_NODE_PRUNE), 4);
    CHECK_INT_EQ(count_kind(p, MG_NODE_ATTACK), 4);
    CHECK_INT_EQ(p->n_refs, (4 + 2) + (4 + 4 + 2));
    CHECK_INT_EQ(p1->n_nodes, 2 + 2 + 4);
    check_invariants(p);
    check_invariants(p1);
    for (size_t c = 0; c < p->n_cells; c++) {
        const mg_cell *cell = &p->cells[c];
        CHECK_INT_EQ(cell->n_shadows, 3);
        CHECK_INT_EQ(cell->shadows[0], cell->model[MG_ROLE_SHADOW]);
        for (size_t s = 0; s < 3; s++) {
            const mg_node *m = &p->nodes[cell->shadows[s]];
            CHECK_INT_EQ(m->role, MG_ROLE_SHADOW);
            CHECK_INT_EQ(m->shadow_index, (int)s);
            CHECK_INT_EQ(m->kind, c == 0 ? MG_NODE_TRAIN : MG_NODE_PRUNE);
            for (size_t t = 0; t < s; t++)
                CHECK(cell->shadows[t] != cell->shadows[s]);
        }
        CHECK_INT_EQ(p->nodes[cell->model[MG_ROLE_TARGET]].shadow_index, 0);
        /* An attack node depends on the target and every shadow model, and
         * names them all: "shadow" becomes the list of their keys. */
        for (size_t a = 0; a < 2; a++) {
            const mg_node *n = &p->nodes[cell->attack_nodes[a]];
            CHECK_INT_EQ(n->n_shadows, 3);
            CHECK_INT_EQ(mg_node_n_deps(n), 4);
            CHECK_INT_EQ(mg_node_dep(n, 0), cell->model[MG_ROLE_TARGET]);
            for (size_t s = 0; s < 3; s++)
                CHECK_INT_EQ(mg_node_dep(n, 1 + s), cell->shadows[s]);
            char want[256];
            snprintf(want, sizeof want, "\"shadow\":[\"%s\",\"%s\",\"%s\"],\"target\":\"%s\"",
                     p->nodes[cell->shadows[0]].key, p->nodes[cell->shadows[1]].key, p->nodes[cell->shadows[2]].key,
                     p->nodes[cell->model[MG_ROLE_TARGET]].key);
            CHECK(strstr(n->recipe, want) != NULL);
        }
        /* With one shadow model the attack keeps the historic string form. */
        const mg_cell *c1 = &p1->cells[c];
        const mg_node *a1 = &p1->nodes[c1->attack_nodes[0]];
        char want1[128];
        snprintf(want1, sizeof want1, "\"shadow\":\"%s\",\"target\"", p1->nodes[c1->model[MG_ROLE_SHADOW]].key);
        CHECK(strstr(a1->recipe, want1) != NULL);
        CHECK_INT_EQ(mg_node_n_deps(a1), 2);
    }
    /* Shadow 0's and the target's recipes are those of the one-shadow grid
     * (only the split's own "shadows" count differs); shadow i > 0 names its
     * index in its training recipe, and its prune node differs by its input. */
    for (size_t i = 0; i < p->n_nodes; i++) {
        const mg_node *n = &p->nodes[i];
        if (n->kind == MG_NODE_ATTACK)
            continue;
        int named = strstr(n->recipe, "\"shadow\":") != NULL;
        CHECK_INT_EQ(named, n->kind == MG_NODE_TRAIN && n->shadow_index > 0);
        if (n->kind == MG_NODE_TRAIN && n->shadow_index > 0) {
            char want[64];
            snprintf(want, sizeof want, "\"seed\":0,\"shadow\":%d,\"split\":", n->shadow_index);
            CHECK(strstr(n->recipe, want) != NULL);
        }
    }
    for (int r = 0; r < 2; r++) {
        const mg_node *d3 = &p->nodes[p->cells[0].model[r]], *d1 = &p1->nodes[p1->cells[0].model[r]];
        char *same = replace_all(d3->recipe, "\"shadows\":3", "\"shadows\":1");
        CHECK(same != NULL);
        if (same)
            CHECK_STR_EQ(same, d1->recipe);
        free(same);
        /* The pruned model's recipe is the one-shadow grid's with its input's key. */
        const mg_node *q3 = &p->nodes[p->cells[1].model[r]], *q1 = &p1->nodes[p1->cells[1].model[r]];
        char *sq = replace_all(q3->recipe, d3->key, d1->key);
        CHECK(sq != NULL);
        if (sq)
            CHECK_STR_EQ(sq, q1->recipe);
        free(sq);
    }
done:
    mg_plan_destroy(&p);
    mg_plan_destroy(&p1);
    mg_grid_destroy(&g);
    mg_grid_destroy(&g1);
}

/* Chains and subset models are built per shadow model: imp's rewind point
 * and every stage, and WeMem's subset models, each named by its shadow. */
static void test_plan_shadow_chains(void)
{
    mg_grid *g = PARSE_OK("name: t\ndata: {split: {protocol: mia-prune, shadows: 2}}\n"
                          "axes:\n  arch: lenet5\n  sparsity: 0.75\n"
                          "  prune: {method: l1-unstructured, schedule: imp, rate: 0.5}\n"
                          "attacks: [gonon]\n");
    mg_plan *p = PLAN_OK(g);
    if (p) {
        /* Per model (target, 2 shadows): dense, rewind point, stages 0.5 and 0.75. */
        CHECK_INT_EQ(count_kind(p, MG_NODE_TRAIN), 3 * 2);
        CHECK_INT_EQ(count_kind(p, MG_NODE_PRUNE), 3 * 2);
        CHECK_INT_EQ(count_kind(p, MG_NODE_ATTACK), 1);
        check_invariants(p);
        const mg_node *last = &p->nodes[p->cells[0].shadows[1]];
        CHECK_INT_EQ(last->shadow_index, 1);
        CHECK_INT_EQ(last->stage, 2);
        CHECK_INT_EQ(p->nodes[last->inputs[1]].shadow_index, 1);
        CHECK(strstr(p->nodes[last->inputs[1]].recipe, "\"shadow\":1,\"split\":") != NULL);
        CHECK(strstr(p->nodes[last->inputs[1]].recipe, "\"stop_epoch\":0") != NULL);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);

    g = PARSE_OK("name: t\ndata: {split: {protocol: wemem, shadows: 2}}\n"
                 "axes:\n  arch: lenet5\n  sparsity: 0.5\n  defense: {name: rmr, subsets: 2}\n"
                 "attacks: [loss]\n");
    p = PLAN_OK(g);
    if (p) {
        /* Per model: 2 subset models and the dense model; the pruned one reads the subsets' scores. */
        CHECK_INT_EQ(count_kind(p, MG_NODE_TRAIN), 3 * 3);
        CHECK_INT_EQ(count_kind(p, MG_NODE_PRUNE), 3);
        check_invariants(p);
        for (size_t s = 0; s < 2; s++) {
            const mg_node *pr = &p->nodes[p->cells[0].shadows[s]];
            CHECK_INT_EQ(pr->n_extra, 2);
            for (size_t k = 0; k < pr->n_extra; k++) {
                const mg_node *sub = &p->nodes[pr->extra_first + k];
                CHECK_INT_EQ(sub->shadow_index, (int)s);
                CHECK_INT_EQ(sub->subset, (int)k + 1);
                CHECK_INT_EQ(strstr(sub->recipe, "\"shadow\":1,\"split\":") != NULL, s == 1);
            }
        }
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

/* The dry-run listing names an attack's shadow models. */
static void test_print(void)
{
    mg_grid *g = PARSE_OK("name: t\ndata: {split: {protocol: explicit, target_train: 10, target_test: 10, "
                          "shadow_train: 10, shadow_test: 10, shadows: 2}}\naxes: {arch: lenet5}\nattacks: loss\n");
    mg_plan *p = PLAN_OK(g);
    if (p) {
        FILE *f = tmpfile();
        char buf[4096] = "";
        if (f) {
            mg_plan_print(g, p, f);
            rewind(f);
            size_t n = fread(buf, 1, sizeof buf - 1, f);
            buf[n] = '\0';
            fclose(f);
        }
        char want[64];
        snprintf(want, sizeof want, "shadow models %zu,%zu\n", p->cells[0].shadows[0], p->cells[0].shadows[1]);
        CHECK(strstr(buf, want) != NULL);
        CHECK(strstr(buf, "shadow model 1\n") != NULL);
        CHECK(strstr(buf, "1 cells, 4 nodes (3 train, 0 prune, 1 attack); 4 references, 0 shared") != NULL);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

int main(void)
{
    test_parse();
    test_plan_shadows();
    test_plan_shadow_chains();
    test_print();
    MG_TEST_MAIN_END();
}
