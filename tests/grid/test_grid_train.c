/*
 * test_grid_train.c: the training and architecture keys of a grid: the
 * optimiser (sgd, adam, adamw; nesterov), schedules, early stopping,
 * augmentation, arch init and mlp presets, and arch names checked against the
 * model registry. For each: the default, the canonical JSON that enters node
 * keys, inheritance by finetune, and every error with its line:column and key.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grid/grid_internal.h"
#include "miagrid/grid.h"
#include "miagrid/nn.h"
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
    }
    mg_grid_destroy(&g);
}
#define EXPECT_ERROR(text, want) expect_error_at(__LINE__, text, want, NULL)
#define EXPECT_ERROR2(text, want, want2) expect_error_at(__LINE__, text, want, want2)

/* A grid with the given train and finetune sections (either may be ""), and
 * dev parts for early stopping. */
static mg_grid *grid_with(const char *train, const char *finetune, mg_error *err)
{
    char text[2048];
    mg_grid *g = NULL;
    snprintf(text, sizeof text, "name: t\ndata: {split: {target_dev: 50, shadow_dev: 50}}\n%s%s%s%s%s%s"
             "axes: {arch: lenet5}\n", *train ? "train: " : "", train,
             *train ? "\n" : "", *finetune ? "finetune: " : "", finetune, *finetune ? "\n" : "");
    CHECK_OK(parse(text, &g, err), err);
    return g;
}

static void test_train_defaults(void)
{
    mg_error err;
    mg_grid *g = grid_with("", "", &err);
    if (!g)
        return;
    const mg_train_spec *t = &g->train;
    CHECK_INT_EQ(t->nesterov, 0);
    CHECK_STR_EQ(t->schedule, "constant");
    CHECK_INT_EQ(t->n_milestones, 0);
    CHECK_INT_EQ(t->patience, 0);
    CHECK_INT_EQ(t->augment_crop, 0);
    CHECK_INT_EQ(t->augment_flip, 0);
    CHECK(strstr(t->canon, "\"augment\":[],") != NULL);
    CHECK(strstr(t->canon, "\"early_stopping\":null,") != NULL);
    CHECK(strstr(t->canon, "\"nesterov\":false,") != NULL);
    CHECK(strstr(t->canon, "\"schedule\":{\"name\":\"constant\"},") != NULL);
    CHECK_STR_EQ(g->finetune.schedule, "constant");
    mg_grid_destroy(&g);
}

static void test_train_keys(void)
{
    mg_error err;
    mg_grid *g = grid_with("{optimizer: adamw, schedule: {name: multistep, milestones: [10, 20], gamma: 0.5},\n"
                           "  early_stopping: {patience: 5}, augment: [flip, crop]}",
                           "{epochs: 4}", &err);
    if (g) {
        const mg_train_spec *t = &g->train;
        CHECK_STR_EQ(t->optimizer, "adamw");
        CHECK_STR_EQ(t->schedule, "multistep");
        CHECK_INT_EQ(t->n_milestones, 2);
        CHECK_INT_EQ(t->milestones[1], 20);
        CHECK_NEAR(t->gamma, 0.5, 0);
        CHECK_INT_EQ(t->patience, 5);
        CHECK(t->augment_crop && t->augment_flip);
        CHECK_STR_EQ(t->canon,
                     "{\"augment\":[\"crop\",\"flip\"],\"batch\":128,\"beta1\":0.9,\"beta2\":0.999,"
                     "\"early_stopping\":{\"patience\":5},\"epochs\":30,\"eps\":1e-08,\"lr\":0.01,\"momentum\":0.9,"
                     "\"nesterov\":false,\"optimizer\":\"adamw\",\"schedule\":{\"gamma\":0.5,\"milestones\":[10,20],"
                     "\"name\":\"multistep\"},\"weight_decay\":0.0005}");
        /* finetune inherits everything but epochs, lr and the schedule. */
        const mg_train_spec *f = &g->finetune;
        CHECK_STR_EQ(f->optimizer, "adamw");
        CHECK_INT_EQ(f->patience, 5);
        CHECK(f->augment_crop && f->augment_flip);
        CHECK_STR_EQ(f->schedule, "constant");
        CHECK_INT_EQ(f->n_milestones, 0);
        CHECK(strstr(f->canon, "\"schedule\":{\"name\":\"constant\"}") != NULL);
        CHECK(strstr(f->canon, "\"epochs\":4,") != NULL);
    }
    mg_grid_destroy(&g);

    /* Short forms: a schedule by name, one augmentation as a scalar; finetune overrides. */
    g = grid_with("{nesterov: true, schedule: cosine, augment: crop, early_stopping: {patience: 2}}",
                  "{early_stopping: none, augment: none, schedule: {name: cosine, eta_min: 1.0e-5}, nesterov: False}",
                  &err);
    if (g) {
        CHECK_INT_EQ(g->train.nesterov, 1);
        CHECK(strstr(g->train.canon, "\"augment\":[\"crop\"],") != NULL);
        CHECK(strstr(g->train.canon, "\"nesterov\":true,") != NULL);
        CHECK(strstr(g->train.canon, "\"schedule\":{\"eta_min\":0,\"name\":\"cosine\"},") != NULL);
        CHECK_INT_EQ(g->finetune.patience, 0);
        CHECK_INT_EQ(g->finetune.augment_crop, 0);
        CHECK_INT_EQ(g->finetune.nesterov, 0);
        CHECK_NEAR(g->finetune.eta_min, 1e-5, 0);
        CHECK(strstr(g->finetune.canon, "\"augment\":[],") != NULL);
        CHECK(strstr(g->finetune.canon, "\"early_stopping\":null,") != NULL);
        CHECK(strstr(g->finetune.canon, "\"schedule\":{\"eta_min\":1.0000000000000001e-05,\"name\":\"cosine\"}") !=
                  NULL ||
              strstr(g->finetune.canon, "\"schedule\":{\"eta_min\":1e-05,\"name\":\"cosine\"}") != NULL);
    }
    mg_grid_destroy(&g);

    /* Names accepted by the grid are the ones nn knows. */
    mg_opt_kind k;
    CHECK_INT_EQ(mg_opt_kind_parse("adamw", &k), 0);
}

static void test_train_errors(void)
{
    const char *axes = "axes: {arch: lenet5}\n";
    char text[1024];
#define TRAIN(section) (snprintf(text, sizeof text, "name: t\n%s%s", section, axes), text)
    EXPECT_ERROR(TRAIN("train: {nesterov: yes}\n"), "t.yaml:2:19: train.nesterov: expected true or false, got \"yes\"");
    EXPECT_ERROR(TRAIN("train: {nesterov: \"true\"}\n"), "train.nesterov: expected true or false");
    EXPECT_ERROR(TRAIN("train: {momentum: 0, nesterov: true}\n"),
                 "t.yaml:2:32: train.nesterov: nesterov needs a momentum > 0 (momentum is 0)");
    EXPECT_ERROR(TRAIN("train: {nesterov: true}\nfinetune: {momentum: 0}\n"),
                 "t.yaml:3:22: finetune.momentum: nesterov needs a momentum > 0");
    EXPECT_ERROR(TRAIN("train: {optimizer: adamw2}\n"),
                 "t.yaml:2:20: train.optimizer: unknown optimizer \"adamw2\"; expected one of: sgd, adam, adamw");
    EXPECT_ERROR(TRAIN("train: {schedule: step}\n"),
                 "t.yaml:2:19: train.schedule: unknown schedule \"step\"; expected one of: constant, multistep, "
                 "cosine");
    EXPECT_ERROR(TRAIN("train: {schedule: multistep}\n"), "train.schedule: multistep needs milestones");
    EXPECT_ERROR(TRAIN("train: {schedule: {name: multistep}}\n"),
                 "t.yaml:2:19: train.schedule: missing required key \"milestones\"");
    EXPECT_ERROR(TRAIN("train: {schedule: {milestones: [3]}}\n"), "train.schedule: missing required key \"name\"");
    EXPECT_ERROR(TRAIN("train: {schedule: {name: multistep, milestones: [10, 5]}}\n"),
                 "t.yaml:2:54: train.schedule.milestones[1]: milestone 5 is not above the one before (10)");
    EXPECT_ERROR(TRAIN("train: {schedule: {name: multistep, milestones: [0]}}\n"),
                 "train.schedule.milestones[0]: expected a positive integer");
    EXPECT_ERROR(TRAIN("train: {schedule: {name: multistep, milestones: []}}\n"),
                 "train.schedule.milestones: the list is empty");
    EXPECT_ERROR(TRAIN("train: {schedule: {name: multistep,\n"
                       "  milestones: [1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17]}}\n"),
                 "train.schedule.milestones: 17 milestones; expected at most 16");
    EXPECT_ERROR2(TRAIN("train:\n  epochs: 30\n  schedule: {name: multistep, milestones: [10, 40]}\n"),
                  "t.yaml:4:48: train.schedule.milestones: milestone 40 is not below epochs (30)", "never apply");
    EXPECT_ERROR(TRAIN("finetune: {schedule: {name: multistep, milestones: [12]}}\n"),
                 "finetune.schedule.milestones: milestone 12 is not below epochs (10)");
    EXPECT_ERROR(TRAIN("train: {schedule: {name: multistep, milestones: [10], gamma: 0}}\n"),
                 "train.schedule.gamma: expected a number > 0, got \"0\"");
    EXPECT_ERROR(TRAIN("train: {schedule: {name: cosine, gamma: 0.1}}\n"),
                 "t.yaml:2:34: train.schedule: unknown key \"gamma\"; accepted keys: name, eta_min");
    EXPECT_ERROR(TRAIN("train: {schedule: {name: constant, eta_min: 0}}\n"),
                 "train.schedule: unknown key \"eta_min\"; accepted keys: name");
    EXPECT_ERROR(TRAIN("train: {schedule: {name: cosine, eta_min: -1}}\n"),
                 "train.schedule.eta_min: expected a number >= 0, got \"-1\"");
    EXPECT_ERROR(TRAIN("train: {early_stopping: {patience: 0}}\n"),
                 "t.yaml:2:36: train.early_stopping.patience: expected a positive integer");
    EXPECT_ERROR(TRAIN("train: {early_stopping: 5}\n"),
                 "train.early_stopping: expected none or {patience: <epochs without improvement>}, got \"5\"");
    EXPECT_ERROR(TRAIN("train: {early_stopping: {}}\n"), "train.early_stopping: missing required key \"patience\"");
    EXPECT_ERROR(TRAIN("train: {early_stopping: {patience: 3, metric: loss}}\n"),
                 "train.early_stopping: unknown key \"metric\"; accepted keys: patience");
    EXPECT_ERROR(TRAIN("train: {augment: [crop, rotate]}\n"),
                 "t.yaml:2:25: train.augment[1]: unknown augmentation \"rotate\"; expected one of: crop, flip");
    EXPECT_ERROR(TRAIN("train: {augment: [flip, crop, flip]}\n"),
                 "train.augment[2]: duplicate augmentation \"flip\" (same as train.augment[0])");
    EXPECT_ERROR(TRAIN("train: {augment: []}\n"), "train.augment: the list is empty; expected none, or a list of");
    EXPECT_ERROR(TRAIN("train: {augment: [none]}\n"), "train.augment[0]: unknown augmentation \"none\"");
    EXPECT_ERROR(TRAIN("train: {augment: {crop: true}}\n"),
                 "t.yaml:2:18: train.augment: expected one of: crop, flip, got a mapping");
    EXPECT_ERROR(TRAIN("train: {shedule: cosine}\n"), "train: unknown key \"shedule\"; accepted keys: epochs, batch");

    /* Early stopping needs the dev parts of a four-way or explicit split. */
    EXPECT_ERROR(TRAIN("train: {early_stopping: {patience: 3}}\n"),
                 "t.yaml:2:25: train.early_stopping: early stopping needs dev parts, but data.split has target_dev 0 "
                 "and shadow_dev 0; expected data.split.target_dev and shadow_dev > 0");
    EXPECT_ERROR(TRAIN("data: {split: {target_dev: 10}}\nfinetune: {early_stopping: {patience: 3}}\n"),
                 "t.yaml:3:28: finetune.early_stopping: early stopping needs dev parts, but data.split has target_dev "
                 "10 and shadow_dev 0");
    mg_error err;
    mg_grid *g = NULL;
    CHECK_OK(parse(TRAIN("data: {split: {protocol: mia-prune}}\ntrain: {early_stopping: {patience: 3}}\n"), &g, &err),
             &err);
    if (g)
        CHECK_INT_EQ(g->finetune.patience, 3);
    mg_grid_destroy(&g);
    CHECK_OK(parse(TRAIN("train: {early_stopping: {patience: 3}}\nfinetune: {early_stopping: none}\n"
                         "data: {split: {target_dev: 10, shadow_dev: 10}}\n"), &g, &err),
             &err);
    mg_grid_destroy(&g);
#undef TRAIN
}

/* A setting changes the keys of the nodes it trains, and only those. */
static void test_train_keys_change(void)
{
    mg_error err;
    const char *variants[][2] = {
        {"", ""},
        {"{schedule: cosine}", ""},
        {"{schedule: {name: multistep, milestones: [10]}}", ""},
        {"{nesterov: true}", ""},
        {"{optimizer: adamw}", ""},
        {"{augment: flip}", ""},
        {"{early_stopping: {patience: 3}}", ""},
        {"", "{schedule: cosine}"},
    };
    enum { NV = sizeof variants / sizeof variants[0] };
    char dense[NV][2][33];
    for (size_t v = 0; v < NV; v++) {
        char text[512];
        mg_grid *g = NULL;
        mg_plan *p = NULL;
        snprintf(text, sizeof text, "name: t\ndata: {split: {target_dev: 50, shadow_dev: 50}}\n%s%s%s%s%s%s"
                 "axes: {arch: lenet5, sparsity: [0.5]}\nattacks: [loss]\n",
                 *variants[v][0] ? "train: " : "", variants[v][0], *variants[v][0] ? "\n" : "",
                 *variants[v][1] ? "finetune: " : "", variants[v][1], *variants[v][1] ? "\n" : "");
        CHECK_OK(parse(text, &g, &err), &err);
        if (g)
            CHECK_OK(mg_plan_build(g, &p, &err), &err);
        memset(dense[v], 0, sizeof dense[v]);
        if (p) {
            /* nodes: dense target, pruned target, dense shadow, pruned shadow, attack */
            for (size_t i = 0, d = 0, q = 1; i < p->n_nodes; i++) {
                if (p->nodes[i].kind == MG_NODE_TRAIN && d == 0)
                    memcpy(dense[v][0], p->nodes[i].key, 33), d = 1;
                if (p->nodes[i].kind == MG_NODE_PRUNE && q == 1)
                    memcpy(dense[v][1], p->nodes[i].key, 33), q = 0;
            }
        }
        mg_plan_destroy(&p);
        mg_grid_destroy(&g);
    }
    int dense_distinct = 1;
    for (size_t v = 1; v + 1 < NV; v++)
        for (size_t w = 0; w < v; w++)
            dense_distinct &= strcmp(dense[v][0], dense[w][0]) != 0;
    CHECK(dense_distinct);
    /* A finetune-only change keeps the dense model and changes the pruned one. */
    CHECK_STR_EQ(dense[NV - 1][0], dense[0][0]);
    CHECK(strcmp(dense[NV - 1][1], dense[0][1]) != 0);
}

static void test_arch_keys(void)
{
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    CHECK_OK(parse("name: t\naxes:\n  arch:\n    - {name: lenet5, init: xavier-normal}\n    - lenet5\n"
                   "    - {name: mlp, preset: purchase}\n    - {name: mlp, hidden: [64], init: xavier-normal}\n"
                   "    - cnn4\n",
                   &g, &err),
             &err);
    if (g) {
        CHECK_INT_EQ(g->n_archs, 5);
        CHECK_STR_EQ(g->archs[0].canon, "{\"init\":\"xavier-normal\",\"name\":\"lenet5\"}");
        CHECK_STR_EQ(g->archs[0].init, "xavier-normal");
        CHECK_STR_EQ(g->archs[1].canon, "{\"init\":\"default\",\"name\":\"lenet5\"}");
        CHECK_STR_EQ(g->archs[2].canon,
                     "{\"activation\":\"tanh\",\"hidden\":[1024,512,256,128],\"init\":\"default\",\"name\":\"mlp\"}");
        CHECK_INT_EQ(g->archs[2].n_hidden, 4);
        CHECK_STR_EQ(g->archs[2].act, "tanh");
        CHECK_STR_EQ(g->archs[3].canon,
                     "{\"activation\":\"relu\",\"hidden\":[64],\"init\":\"xavier-normal\",\"name\":\"mlp\"}");
        CHECK_STR_EQ(g->archs[4].canon, "{\"init\":\"default\",\"name\":\"cnn4\"}");
        char s[128];
        mg_grid_arch_str(&g->archs[0], s, sizeof s);
        CHECK_STR_EQ(s, "lenet5/xavier-normal");
        mg_grid_arch_str(&g->archs[1], s, sizeof s);
        CHECK_STR_EQ(s, "lenet5");
        mg_grid_arch_str(&g->archs[3], s, sizeof s);
        CHECK_STR_EQ(s, "mlp[64]/relu/xavier-normal");
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
        /* The two lenet5 initialisations are two models. */
        if (p && p->n_cells == 5)
            CHECK(strcmp(p->nodes[p->cells[0].model[0]].key, p->nodes[p->cells[1].model[0]].key) != 0);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);

    /* Excludes match on init and on a preset (by what it expands to). */
    CHECK_OK(parse("name: t\naxes:\n  arch: [lenet5, {name: lenet5, init: xavier-normal}, {name: mlp, preset: texas},"
                   " {name: mlp, hidden: [32]}]\nexclude:\n  - {arch: {init: xavier-normal}}\n"
                   "  - {arch: {preset: location}}\n",
                   &g, &err),
             &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (p) {
        CHECK_INT_EQ(p->n_cells, 2);
        CHECK_INT_EQ(p->cells[0].arch, 0);
        CHECK_INT_EQ(p->cells[1].arch, 3);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

static void test_arch_errors(void)
{
    char want[512];
    snprintf(want, sizeof want, "t.yaml:3:18: axes.arch[1]: unknown architecture \"resnet\"; expected one of: %s",
             mg_model_arch_list());
    EXPECT_ERROR("name: t\naxes:\n  arch: [lenet5, resnet]\n", want);
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: mlp, preset: location, hidden: [3]}\n",
                 "t.yaml:3:29: axes.arch.preset: cannot be combined with hidden (a preset fixes the hidden layers");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: mlp, activation: relu, preset: texas}\n",
                 "axes.arch.preset: cannot be combined with activation");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: mlp, preset: cifar}\n",
                 "t.yaml:3:29: axes.arch.preset: unknown mlp preset \"cifar\"; expected one of: location, purchase, "
                 "texas");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: lenet5, preset: texas}\n",
                 "axes.arch: unknown key \"preset\"; accepted keys: name, init");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: cnn4, hidden: [3]}\n",
                 "axes.arch: unknown key \"hidden\"; accepted keys: name, init");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: mlp, init: he}\n",
                 "t.yaml:3:27: axes.arch.init: unknown init \"he\"; expected one of: default, xavier-normal");
    EXPECT_ERROR("name: t\naxes:\n  arch: {name: mlp, intt: he}\n",
                 "accepted keys: name, hidden, activation, preset, init");
    EXPECT_ERROR("name: t\naxes:\n  arch: [{name: mlp, preset: purchase}, {name: mlp, preset: location}]\n",
                 "axes.arch[1]: duplicate architecture");
    EXPECT_ERROR("name: t\naxes:\n  arch: [{name: mlp, preset: texas},"
                 " {name: mlp, hidden: [1024, 512, 256, 128], activation: tanh}]\n",
                 "axes.arch[1]: duplicate architecture");
    EXPECT_ERROR("name: t\naxes:\n  arch: [lenet5, {name: lenet5, init: default}]\n",
                 "axes.arch[1]: duplicate architecture");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\nexclude:\n  - {arch: {init: xavier-normal}}\n",
                 "t.yaml:5:12: exclude[0].arch: matches no value of axes.arch (lenet5)");
    EXPECT_ERROR("name: t\naxes:\n  arch: mlp\nexclude:\n  - {arch: {preset: texas, hidden: [3]}}\n",
                 "exclude[0].arch.preset: cannot be combined with hidden");
}

int main(void)
{
    test_train_defaults();
    test_train_keys();
    test_train_errors();
    test_train_keys_change();
    test_arch_keys();
    test_arch_errors();
    MG_TEST_MAIN_END();
}
