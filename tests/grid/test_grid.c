/*
 * test_grid.c: the grid parser (defaults, canonical forms, every kind of
 * error with its line:column and key), excludes, and the planner (cell order,
 * node counts, deduplication, key stability, topological order).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/grid.h"
#include "mg_test.h"

#define TRAIN_CANON                                                                                          \
    "{\"augment\":[],\"batch\":128,\"beta1\":0.9,\"beta2\":0.999,\"early_stopping\":null,\"epochs\":30,"       \
    "\"eps\":1e-08,\"lr\":0.01,\"momentum\":0.9,\"nesterov\":false,\"optimizer\":\"sgd\","                   \
    "\"schedule\":{\"name\":\"constant\"},\"weight_decay\":0.0005}"
#define SPLIT_CANON "{\"shadow_test\":2500,\"shadow_train\":2500,\"target_test\":2500,\"target_train\":2500}"

static mg_status parse(const char *text, mg_grid **g, mg_error *err)
{
    mg_error_clear(err);
    return mg_grid_parse("t.yaml", text, strlen(text), g, err);
}

/* The text must fail with a config error whose message contains `want` (and
 * `want2`, if given). */
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
    }
    mg_grid_destroy(&g);
}
#define EXPECT_ERROR(text, want) expect_error_at(__LINE__, text, want, NULL)
#define EXPECT_ERROR2(text, want, want2) expect_error_at(__LINE__, text, want, want2)

static size_t count_kind(const mg_plan *p, mg_node_kind k)
{
    size_t n = 0;
    for (size_t i = 0; i < p->n_nodes; i++)
        n += p->nodes[i].kind == k;
    return n;
}

/* Inputs precede consumers, recipes name their inputs' keys, and the key is
 * the hash of the recipe. */
static void check_plan_invariants(const mg_plan *p)
{
    size_t refs = 0;
    int topo = 1, named = 1, keyed = 1, found = 1;
    for (size_t i = 0; i < p->n_nodes; i++) {
        const mg_node *n = &p->nodes[i];
        char key[33];
        mg_sha256_hex(n->recipe, strlen(n->recipe), 16, key);
        keyed = keyed && !strcmp(key, n->key);
        found = found && mg_plan_find(p, n->key) == i;
        refs += n->n_uses;
        for (size_t k = 0; k < mg_node_n_deps(n); k++) {
            topo = topo && mg_node_dep(n, k) < i;
            named = named && strstr(n->recipe, p->nodes[mg_node_dep(n, k)].key) != NULL;
        }
    }
    CHECK(topo);
    CHECK(named);
    CHECK(keyed);
    CHECK(found);
    CHECK_INT_EQ(refs, p->n_refs);
    CHECK(mg_plan_find(p, "0123456789abcdef0123456789abcdef") == MG_NO_INDEX);
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

static void test_quickstart(void)
{
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    char path[1024];
    const char *src = getenv("MG_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/grids/quickstart.yaml", src ? src : ".");
    CHECK_OK(mg_grid_load(path, &g, &err), &err);
    if (!g)
        return;
    CHECK_STR_EQ(g->name, "quickstart");
    CHECK_INT_EQ(g->n_seeds, 2);
    CHECK_INT_EQ(g->n_archs, 2);
    CHECK_INT_EQ(g->n_sparsities, 3);
    CHECK_INT_EQ(g->n_attacks, 2);
    CHECK_INT_EQ(g->train.epochs, 30);
    CHECK_INT_EQ(g->train.batch, 32);
    CHECK_NEAR(g->train.weight_decay, 0.0, 0);
    /* finetune gives epochs and lr; the rest comes from train. */
    CHECK_INT_EQ(g->finetune.epochs, 5);
    CHECK_INT_EQ(g->finetune.batch, 32);
    CHECK_NEAR(g->finetune.lr, 0.005, 0);
    CHECK_NEAR(g->finetune.momentum, 0.9, 0);
    CHECK_NEAR(g->finetune.weight_decay, 0.0, 0);
    CHECK_STR_EQ(g->archs[0].canon, "{\"init\":\"default\",\"name\":\"lenet5\"}");
    CHECK_STR_EQ(g->archs[1].canon, "{\"activation\":\"relu\",\"hidden\":[512,256],\"init\":\"default\",\"name\":\"mlp\"}");
    CHECK_INT_EQ(g->yaml_len, strlen(g->yaml));
    CHECK(strstr(g->yaml, "name: quickstart") != NULL);

    CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (p) {
        CHECK_INT_EQ(p->n_cells, 12);
        CHECK_INT_EQ(p->n_nodes, 48);
        CHECK_INT_EQ(count_kind(p, MG_NODE_TRAIN), 8);
        CHECK_INT_EQ(count_kind(p, MG_NODE_PRUNE), 16);
        CHECK_INT_EQ(count_kind(p, MG_NODE_ATTACK), 24);
        CHECK_INT_EQ(p->n_refs, 64);
        check_plan_invariants(p);

        /* Seed varies fastest, then sparsity, then arch. */
        CHECK_INT_EQ(p->cells[1].seed, 1);
        CHECK_INT_EQ(p->cells[1].sparsity, 0);
        CHECK_INT_EQ(p->cells[2].seed, 0);
        CHECK_INT_EQ(p->cells[2].sparsity, 1);
        CHECK_INT_EQ(p->cells[6].arch, 1);
        for (size_t i = 0; i < p->n_cells; i++)
            CHECK_INT_EQ(p->cells[i].id, i);

        /* One dense model per (arch, seed, role) serves all three sparsities. */
        const mg_cell *dense = &p->cells[0], *half = &p->cells[2], *most = &p->cells[4];
        CHECK_INT_EQ(p->nodes[dense->model[MG_ROLE_TARGET]].kind, MG_NODE_TRAIN);
        CHECK_INT_EQ(p->nodes[half->model[MG_ROLE_TARGET]].kind, MG_NODE_PRUNE);
        CHECK_INT_EQ(p->nodes[half->model[MG_ROLE_TARGET]].inputs[0], dense->model[MG_ROLE_TARGET]);
        CHECK_INT_EQ(p->nodes[most->model[MG_ROLE_SHADOW]].inputs[0], dense->model[MG_ROLE_SHADOW]);
        CHECK_INT_EQ(p->nodes[dense->model[MG_ROLE_TARGET]].n_uses, 3);
        CHECK(dense->model[MG_ROLE_TARGET] != dense->model[MG_ROLE_SHADOW]);
        CHECK_INT_EQ(p->nodes[dense->model[MG_ROLE_SHADOW]].role, MG_ROLE_SHADOW);
        CHECK_NEAR(p->nodes[half->model[MG_ROLE_TARGET]].sparsity, 0.5, 0);
        CHECK_INT_EQ(p->nodes[dense->model[MG_ROLE_TARGET]].prune, MG_NO_INDEX);

        /* An attack node consumes (target model, shadow model). */
        const mg_node *att = &p->nodes[half->attack_nodes[1]];
        CHECK_INT_EQ(att->kind, MG_NODE_ATTACK);
        CHECK_INT_EQ(att->attack, 1);
        CHECK_INT_EQ(att->inputs[0], half->model[MG_ROLE_TARGET]);
        CHECK_INT_EQ(att->inputs[1], half->model[MG_ROLE_SHADOW]);
        CHECK(strstr(att->recipe, "\"attack\":{\"name\":\"conf\"}") != NULL);

        char *axes = mg_cell_axes_json(g, half);
        CHECK_STR_EQ(axes, "{\"arch\":{\"init\":\"default\",\"name\":\"lenet5\"},\"dataset\":{\"name\":\"fashion-mnist\"},"
                           "\"defense\":{\"name\":\"none\"},\"prune\":{\"method\":\"l1-unstructured\","
                           "\"schedule\":\"one-shot\"},\"seed\":0,\"sparsity\":0.5}");
        free(axes);

        char *out = read_print(g, p);
        CHECK(out && strstr(out, "12 cells, 48 nodes (8 train, 16 prune, 24 attack); 64 references, 16 shared\n"));
        CHECK(out && strstr(out, p->nodes[47].key) == NULL && strstr(out, "inputs 0,1") != NULL);
        free(out);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    CHECK(g == NULL && p == NULL);
}

static void test_example_grid(void)
{
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    char path[1024];
    const char *src = getenv("MG_SOURCE_DIR");
    snprintf(path, sizeof path, "%s/grids/sparsity-sweep.yaml", src ? src : ".");
    CHECK_OK(mg_grid_load(path, &g, &err), &err);
    if (!g)
        return;
    CHECK_STR_EQ(g->store, "runs/sparsity-sweep");
    CHECK_STR_EQ(g->archs[2].canon, "{\"activation\":\"tanh\",\"hidden\":[1024],\"init\":\"default\",\"name\":\"mlp\"}");
    CHECK_OK(mg_plan_build(g, &p, &err), &err);
    /* 3 archs x 4 sparsities x 3 seeds = 36, less 3 (wide mlp at 0.9) and 4 (lenet5 seed 2). */
    if (p) {
        CHECK_INT_EQ(p->n_cells, 29);
        check_plan_invariants(p);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);

    CHECK_INT_EQ(mg_grid_load("/nonexistent/grid.yaml", &g, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/grid.yaml") != NULL);
}

static void test_defaults(void)
{
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    CHECK_OK(parse("name: t\naxes:\n  arch: lenet5\n", &g, &err), &err);
    if (!g)
        return;
    CHECK_INT_EQ(g->n_seeds, 1);
    CHECK_INT_EQ(g->seeds[0], 0);
    CHECK_STR_EQ(g->store, "");
    CHECK_STR_EQ(g->data_root, "");
    CHECK_INT_EQ(g->split.target_train, 2500);
    CHECK_INT_EQ(g->split.shadow_test, 2500);
    CHECK_STR_EQ(g->split.canon, SPLIT_CANON);
    CHECK_STR_EQ(g->train.canon, TRAIN_CANON);
    CHECK_INT_EQ(g->finetune.epochs, 10);
    CHECK_NEAR(g->finetune.lr, 0.001, 0);
    CHECK_NEAR(g->finetune.weight_decay, 5e-4, 0);
    CHECK_STR_EQ(g->finetune.optimizer, "sgd");
    CHECK_INT_EQ(g->n_datasets, 1);
    CHECK_STR_EQ(g->datasets[0].canon, "{\"name\":\"fashion-mnist\"}");
    CHECK_STR_EQ(g->datasets[0].root, "");
    CHECK_INT_EQ(g->n_prunes, 1);
    CHECK_STR_EQ(g->prunes[0].canon, "{\"method\":\"l1-unstructured\",\"schedule\":\"one-shot\"}");
    CHECK_INT_EQ(g->n_sparsities, 1);
    CHECK_NEAR(g->sparsities[0], 0.0, 0);
    CHECK_STR_EQ(g->defenses[0].canon, "{\"name\":\"none\"}");
    CHECK_INT_EQ(g->n_attacks, 2);
    CHECK_STR_EQ(g->attacks[0].canon, "{\"name\":\"loss\"}");
    CHECK_STR_EQ(g->attacks[1].name, "conf");
    CHECK_INT_EQ(g->n_excludes, 0);

    CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (p) {
        CHECK_INT_EQ(p->n_cells, 1);
        CHECK_INT_EQ(p->n_nodes, 4);
        CHECK_STR_EQ(p->nodes[0].recipe,
                     "{\"arch\":{\"init\":\"default\",\"name\":\"lenet5\"},\"dataset\":{\"name\":\"fashion-mnist\"},"
                     "\"kind\":\"train\","
                     "\"role\":\"target\",\"seed\":0,\"split\":" SPLIT_CANON ",\"train\":" TRAIN_CANON ",\"v\":1}");
        char want[256];
        snprintf(want, sizeof want,
                 "{\"attack\":{\"name\":\"loss\"},\"impl\":2,\"kind\":\"attack\",\"shadow\":\"%s\",\"target\":\"%s\",\"v\":1}",
                 p->nodes[1].key, p->nodes[0].key);
        CHECK_STR_EQ(p->nodes[2].recipe, want);
        check_plan_invariants(p);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);

    /* Finetune inherits train except epochs and lr; dataset roots default to data.root. */
    CHECK_OK(parse("name: t\ndata: {root: /data}\ntrain: {optimizer: adam, batch: 32, lr: 0.1, beta2: 0.99}\n"
                   "finetune: {momentum: 0.5}\n"
                   "axes:\n  dataset: [mnist, {name: location, root: /loc}]\n  arch: {name: mlp}\n",
                   &g, &err),
             &err);
    if (g) {
        CHECK_STR_EQ(g->finetune.optimizer, "adam");
        CHECK_INT_EQ(g->finetune.batch, 32);
        CHECK_INT_EQ(g->finetune.epochs, 10);
        CHECK_NEAR(g->finetune.lr, 0.001, 0);
        CHECK_NEAR(g->finetune.beta2, 0.99, 0);
        CHECK_NEAR(g->finetune.momentum, 0.5, 0);
        CHECK_STR_EQ(g->datasets[0].root, "/data");
        CHECK_STR_EQ(g->datasets[1].root, "/loc");
        CHECK_STR_EQ(g->datasets[1].canon, "{\"name\":\"location\"}");
        CHECK_STR_EQ(g->archs[0].canon, "{\"activation\":\"relu\",\"hidden\":[512,256],\"init\":\"default\",\"name\":\"mlp\"}");
    }
    mg_grid_destroy(&g);

    /* Scalars stand for one-element lists everywhere. */
    CHECK_OK(parse("name: t\nseeds: 7\nattacks: conf\naxes: {dataset: mnist, arch: lenet5, prune: l1-unstructured,"
                   " sparsity: 0.25, defense: {name: none}}\n",
                   &g, &err),
             &err);
    if (g) {
        CHECK_INT_EQ(g->seeds[0], 7);
        CHECK_INT_EQ(g->n_attacks, 1);
        CHECK_NEAR(g->sparsities[0], 0.25, 0);
    }
    mg_grid_destroy(&g);
}

static void test_errors(void)
{
    EXPECT_ERROR("name: t\ntrian: {}\naxes: {arch: lenet5}\n",
                 "t.yaml:2:1: unknown key \"trian\"; accepted keys: name, seeds, store, data, train, finetune, "
                 "axes, attacks, exclude");
    EXPECT_ERROR("name: t\ntrain:\n  epoch: 3\naxes: {arch: lenet5}\n",
                 "t.yaml:3:3: train: unknown key \"epoch\"; accepted keys: epochs, batch, optimizer");
    EXPECT_ERROR("name: t\naxes:\n  arch: [{name: mlp, hiden: [3]}]\n",
                 "t.yaml:3:22: axes.arch[0]: unknown key \"hiden\"; accepted keys: name, hidden, activation");
    EXPECT_ERROR("name: t\ntrain: [1]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:8: train: expected a mapping of training settings, got a list");
    EXPECT_ERROR("name: t\ntrain: {epochs: ten}\naxes: {arch: lenet5}\n",
                 "t.yaml:2:17: train.epochs: expected a positive integer, got \"ten\"");
    EXPECT_ERROR("name: t\ntrain: {epochs: 0}\naxes: {arch: lenet5}\n", "train.epochs: expected a positive integer");
    EXPECT_ERROR("name: t\ntrain: {epochs: \"10\"}\naxes: {arch: lenet5}\n", "quoted string");
    EXPECT_ERROR("name: t\ntrain: {lr: 0}\naxes: {arch: lenet5}\n", "train.lr: expected a number > 0, got \"0\"");
    EXPECT_ERROR("name: t\nfinetune: {momentum: 1}\naxes: {arch: lenet5}\n",
                 "finetune.momentum: expected a number in [0, 1)");
    EXPECT_ERROR("name: t\ntrain: {optimizer: rmsprop}\naxes: {arch: lenet5}\n",
                 "t.yaml:2:20: train.optimizer: unknown optimizer \"rmsprop\"; expected one of: sgd, adam");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  sparsity: [0.5, 1.0]\n",
                 "t.yaml:4:19: axes.sparsity[1]: expected a number in [0, 1), got \"1.0\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  sparsity: -0.1\n", "t.yaml:4:13: axes.sparsity: expected a number");
    EXPECT_ERROR("name: t\naxes:\n  arch: [lenet5, resnet]\n",
                 "t.yaml:3:18: axes.arch[1]: unknown architecture \"resnet\"; expected one of: mlp, lenet5, cnn4");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: [{method: l3-structured}]\n",
                 "t.yaml:4:20: axes.prune[0].method: unknown pruning method \"l3-structured\"; expected one of: "
                 "l1-unstructured, l1-unstructured-global, random-unstructured, l1-structured, l2-structured, slim, "
                 "butterfly");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, schedule: gradual}\n",
                 "axes.prune.schedule: unknown pruning schedule \"gradual\"; expected one of: one-shot, iterative, imp");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, rounds: 3}\n",
                 "axes.prune.rounds: only applies with schedule: iterative");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: l1-unstructured, schedule: imp, rate: 1.5}\n",
                 "axes.prune.rate: expected a fraction in (0, 1)");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  prune: {method: slim, factors: 2}\n",
                 "axes.prune.factors: only applies with method: butterfly");
    EXPECT_ERROR("name: t\nattacks: [loss, lisa]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:17: attacks[1]: unknown attack \"lisa\"; expected one of: loss, conf, entropy, mentropy, "
                 "hconf, nn, top3-nn, nn-cls, samia, gonon, lira, rmia, gap");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  defense: [mixup]\n",
                 "axes.defense[0]: unknown defense \"mixup\"; expected one of: none, base, label-smoothing");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: cifar11\n",
                 "t.yaml:4:12: axes.dataset: unknown dataset \"cifar11\"; expected one of: fashion-mnist");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: lenet5, hidden: [3]}\n", "axes.arch: unknown key \"hidden\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: mlp, hidden: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}\n",
                 "axes.arch.hidden: 17 hidden layers; expected at most 16");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: mlp, hidden: [64, -3]}\n",
                 "axes.arch.hidden[1]: expected a positive integer");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: mlp, activation: gelu}\n",
                 "axes.arch.activation: unknown activation \"gelu\"; expected one of: relu, tanh");
    EXPECT_ERROR("name: t\naxes:\n  arch: {hidden: [3]}\n", "t.yaml:3:9: axes.arch: missing required key \"name\"");

    EXPECT_ERROR("name: t\naxes: {arch: [lenet5}\n", "t.yaml:2:");
    EXPECT_ERROR("name: t\naxes: {arch: [lenet5}\n", "invalid YAML");
    EXPECT_ERROR("name: t\n  bad: indentation\n", "invalid YAML");
    EXPECT_ERROR("name: t\nname: u\naxes: {arch: lenet5}\n",
                 "t.yaml:2:1: duplicate key \"name\" (first given at line 1); expected each key once");
    EXPECT_ERROR("name: t\ntrain: {lr: 0.1, lr: 0.2}\naxes: {arch: lenet5}\n", "train: duplicate key \"lr\"");
    EXPECT_ERROR("seeds: [1]\naxes: {arch: lenet5}\n", "t.yaml:1:1: missing required key \"name\"");
    EXPECT_ERROR("name: t\n", "missing required key \"axes\"");
    EXPECT_ERROR("name: t\naxes:\n  dataset: mnist\n", "t.yaml:3:3: axes: missing required key \"arch\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: []\n", "axes.arch: the list is empty");
    EXPECT_ERROR("name: t\naxes:\n  arch:\n", "axes.arch: expected a list of architectures, got nothing");
    EXPECT_ERROR("name: t\nseeds: [0, 1, 0]\naxes: {arch: lenet5}\n",
                 "t.yaml:2:15: seeds[2]: duplicate seed (same as seeds[0] at line 2)");
    EXPECT_ERROR("name: t\nseeds: [-1]\naxes: {arch: lenet5}\n", "seeds[0]: expected a non-negative integer, got \"-1\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  sparsity: [0.5, 0.1, 0.50]\n",
                 "axes.sparsity[2]: duplicate sparsity (same as axes.sparsity[0]");
    EXPECT_ERROR("name: t\naxes:\n  arch: [lenet5, {name: lenet5}]\n", "axes.arch[1]: duplicate architecture");
    EXPECT_ERROR("name: t\naxes:\n  arch: [mlp, {name: mlp, hidden: [512, 256]}]\n",
                 "axes.arch[1]: duplicate architecture");
    EXPECT_ERROR("name: t\nattacks: [loss, {name: loss}]\naxes: {arch: lenet5}\n", "attacks[1]: duplicate attack");
    EXPECT_ERROR("name: my grid\naxes: {arch: lenet5}\n", "name: invalid character ' '");
    EXPECT_ERROR("name: abcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcdefghijabcd\naxes: {arch: lenet5}\n",
                 "name: too long (64 characters)");
    EXPECT_ERROR("name: t\ndata: {split: {target_train: 0}}\naxes: {arch: lenet5}\n",
                 "data.split.target_train: expected a positive integer, got \"0\"");
    EXPECT_ERROR("name: t\ndata: {splt: {}}\naxes: {arch: lenet5}\n", "data: unknown key \"splt\"; accepted keys: root, split");
    EXPECT_ERROR("", "t.yaml:1:1: the file is empty");
    EXPECT_ERROR("- a\n- b\n", "t.yaml:1:1: expected a mapping with keys name");
    EXPECT_ERROR("name: t\naxes: {arch: lenet5}\n---\nname: u\n", "t.yaml:4:1: a second YAML document");
    EXPECT_ERROR("name: t\nstore: [a]\naxes: {arch: lenet5}\n", "store: expected a directory, got a list");
}

static void test_exclude(void)
{
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    const char *base = "name: t\nseeds: [0, 1]\naxes:\n  arch: [lenet5, {name: mlp, hidden: [64]}]\n"
                       "  sparsity: [0, 0.5]\n";
    char text[1024];
    snprintf(text, sizeof text,
             "%sexclude:\n  - {arch: mlp, sparsity: 0.5}\n  - {arch: {name: lenet5}, seed: 1}\n"
             "  - {arch: {hidden: [64]}, prune: {method: l1-unstructured}, seed: 0, sparsity: 0.0}\n",
             base);
    CHECK_OK(parse(text, &g, &err), &err);
    if (g) {
        CHECK_INT_EQ(g->n_excludes, 3);
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    }
    /* 8 combinations; the entries drop mlp@0.5 (2), lenet5 seed 1 (2), mlp@0 seed 0 (1). */
    if (p) {
        CHECK_INT_EQ(p->n_cells, 3);
        int bad = 0;
        for (size_t i = 0; i < p->n_cells; i++) {
            const mg_cell *c = &p->cells[i];
            bad += c->arch == 1 && c->sparsity == 1;
            bad += c->arch == 0 && c->seed == 1;
            bad += c->arch == 1 && c->seed == 0 && c->sparsity == 0;
        }
        CHECK_INT_EQ(bad, 0);
        check_plan_invariants(p);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);

    /* Anchors and aliases resolve like the values they name; datasets match by name and root. */
    CHECK_OK(parse("name: t\nseeds: [0, 1]\naxes:\n  dataset: [mnist, {name: location, root: /loc}]\n"
                   "  arch: [&small {name: mlp, hidden: [64]}, lenet5]\n"
                   "exclude:\n  - {arch: *small, dataset: {root: /loc}}\n  - {dataset: mnist, seed: 1}\n",
                   &g, &err),
             &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    /* 8 combinations less location+mlp (2) and mnist seed 1 (2). */
    if (p) {
        CHECK_INT_EQ(p->n_cells, 4);
        for (size_t i = 0; i < p->n_cells; i++)
            CHECK(!(p->cells[i].dataset == 1 && p->cells[i].arch == 0));
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);

    snprintf(text, sizeof text, "%sexclude:\n  - {arch: mlp}\n  - {arch: resnet}\n", base);
    EXPECT_ERROR(text, "t.yaml:8:12: exclude[1].arch: matches no value of axes.arch");
    snprintf(text, sizeof text, "%sexclude:\n  - {sparsity: 0.3}\n", base);
    EXPECT_ERROR2(text, "t.yaml:7:16: exclude[0].sparsity: matches no value", "(0, 0.5)");
    snprintf(text, sizeof text, "%sexclude:\n  - {seed: 2}\n", base);
    EXPECT_ERROR(text, "exclude[0].seed: matches no value of seeds");
    snprintf(text, sizeof text, "%sexclude:\n  - {arch: {name: mlp, hidden: [32]}}\n", base);
    EXPECT_ERROR(text, "exclude[0].arch: matches no value");
    snprintf(text, sizeof text, "%sexclude:\n  - {spars: 0.5}\n", base);
    EXPECT_ERROR(text, "t.yaml:7:6: exclude[0]: unknown key \"spars\"; accepted keys: dataset, arch, prune");
    snprintf(text, sizeof text, "%sexclude:\n  - {}\n", base);
    EXPECT_ERROR(text, "exclude[0]: an empty entry would exclude every cell");
    snprintf(text, sizeof text, "%sexclude:\n  - {seed: 0}\n  - {seed: 1}\n", base);
    EXPECT_ERROR(text, "exclude: every cell is excluded");
    snprintf(text, sizeof text, "%sexclude: [lenet5]\n", base);
    EXPECT_ERROR(text, "exclude[0]: expected a mapping");
}

/* Keys depend only on what a node is, never on the rest of the grid. */
static void test_keys(void)
{
    mg_error err;
    mg_grid *ga = NULL, *gb = NULL;
    mg_plan *pa = NULL, *pb = NULL;
    const char *small = "name: a\nseeds: [0]\naxes:\n  arch: [lenet5, mlp]\n  sparsity: [0, 0.5]\n"
                        "attacks: [loss]\n";
    const char *grown = "name: b\nseeds: [0, 1]\naxes:\n  arch: [mlp, lenet5]\n  sparsity: [0.9, 0, 0.5]\n"
                        "attacks: [conf, loss]\n";
    CHECK_OK(parse(small, &ga, &err), &err);
    CHECK_OK(parse(grown, &gb, &err), &err);
    if (ga && gb) {
        CHECK_OK(mg_plan_build(ga, &pa, &err), &err);
        CHECK_OK(mg_plan_build(gb, &pb, &err), &err);
    }
    if (pa && pb) {
        size_t missing = 0;
        for (size_t i = 0; i < pa->n_nodes; i++)
            missing += mg_plan_find(pb, pa->nodes[i].key) == MG_NO_INDEX;
        CHECK_INT_EQ(missing, 0);
        CHECK(pb->n_nodes > pa->n_nodes);
    }
    mg_plan_destroy(&pa);
    mg_plan_destroy(&pb);
    mg_grid_destroy(&ga);
    mg_grid_destroy(&gb);

    /* Changing the seed, lr or arch changes the dense keys (and everything downstream). */
    const char *variants[] = {
        "name: a\nseeds: [1]\naxes:\n  arch: [lenet5, mlp]\n  sparsity: [0, 0.5]\nattacks: [loss]\n",
        "name: a\ntrain: {lr: 0.02}\naxes:\n  arch: [lenet5, mlp]\n  sparsity: [0, 0.5]\nattacks: [loss]\n",
        "name: a\naxes:\n  arch: [{name: mlp, hidden: [512]}]\n  sparsity: [0, 0.5]\nattacks: [loss]\n",
        "name: a\ndata: {split: {shadow_test: 100}}\naxes:\n  arch: [lenet5, mlp]\n  sparsity: [0, 0.5]\n"
        "attacks: [loss]\n",
    };
    CHECK_OK(parse(small, &ga, &err), &err);
    if (ga)
        CHECK_OK(mg_plan_build(ga, &pa, &err), &err);
    for (size_t v = 0; v < sizeof variants / sizeof *variants && pa; v++) {
        CHECK_OK(parse(variants[v], &gb, &err), &err);
        if (gb)
            CHECK_OK(mg_plan_build(gb, &pb, &err), &err);
        if (pb) {
            size_t shared = 0;
            for (size_t i = 0; i < pb->n_nodes; i++)
                shared += mg_plan_find(pa, pb->nodes[i].key) != MG_NO_INDEX;
            CHECK_INT_EQ(shared, 0);
        }
        mg_plan_destroy(&pb);
        mg_grid_destroy(&gb);
    }

    /* A finetune change keeps the dense nodes and the sparsity-0 attacks. */
    CHECK_OK(parse("name: a\nseeds: [0]\nfinetune: {epochs: 3}\naxes:\n  arch: [lenet5, mlp]\n"
                   "  sparsity: [0, 0.5]\nattacks: [loss]\n",
                   &gb, &err),
             &err);
    if (gb)
        CHECK_OK(mg_plan_build(gb, &pb, &err), &err);
    if (pa && pb) {
        size_t shared = 0, shared_prune = 0;
        for (size_t i = 0; i < pb->n_nodes; i++) {
            size_t j = mg_plan_find(pa, pb->nodes[i].key);
            shared += j != MG_NO_INDEX;
            shared_prune += j != MG_NO_INDEX && pb->nodes[i].kind == MG_NODE_PRUNE;
        }
        CHECK_INT_EQ(shared, 4 + 2); /* 2 archs x 2 roles dense, 2 archs x 1 attack at sparsity 0 */
        CHECK_INT_EQ(shared_prune, 0);
    }
    mg_plan_destroy(&pb);
    mg_grid_destroy(&gb);
    mg_plan_destroy(&pa);
    mg_grid_destroy(&ga);
}

static void test_large(void)
{
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    mg_strbuf b;
    mg_strbuf_init(&b);
    mg_strbuf_append(&b, "name: big\nseeds: [");
    for (int i = 0; i < 40; i++)
        mg_strbuf_printf(&b, "%s%d", i ? ", " : "", i);
    mg_strbuf_append(&b, "]\naxes:\n  arch: [lenet5, mlp]\n  sparsity: [");
    for (int i = 0; i < 50; i++)
        mg_strbuf_printf(&b, "%s%g", i ? ", " : "", i / 100.0);
    mg_strbuf_append(&b, "]\n");
    CHECK_OK(parse(b.s, &g, &err), &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    /* Per (arch, seed): 2 dense + 2 x 49 pruned + 2 attacks x 50 sparsities. */
    if (p) {
        CHECK_INT_EQ(p->n_cells, 4000);
        CHECK_INT_EQ(p->n_nodes, 80 * 200);
        check_plan_invariants(p);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    mg_strbuf_free(&b);

    /* 1000 sparsities x 1001 seeds is over the cell limit, refused before expansion. */
    mg_strbuf_init(&b);
    mg_strbuf_append(&b, "name: huge\nseeds: [");
    for (int i = 0; i < 1001; i++)
        mg_strbuf_printf(&b, "%s%d", i ? "," : "", i);
    mg_strbuf_append(&b, "]\naxes:\n  arch: lenet5\n  sparsity: [");
    for (int i = 0; i < 1000; i++)
        mg_strbuf_printf(&b, "%s%g", i ? "," : "", i / 1000.0);
    mg_strbuf_append(&b, "]\n");
    if (b.s)
        EXPECT_ERROR(b.s, "more than 1000000 cells");
    mg_strbuf_free(&b);
}

int main(void)
{
    test_quickstart();
    test_example_grid();
    test_defaults();
    test_errors();
    test_exclude();
    test_keys();
    test_large();
    MG_TEST_MAIN_END();
}
