/*
 * test_grid_data.c: the grid's data section and dataset entries: split
 * protocols and their canonical forms (the historic four-way form kept
 * unchanged), dataset options (image folders, CSV, CIFAR-100 labels),
 * generic datasets named by their content once bound, and every error with
 * its line:column and key.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/grid.h"
#include "mg_test.h"

#define SPLIT_CANON "{\"shadow_test\":2500,\"shadow_train\":2500,\"target_test\":2500,\"target_train\":2500}"

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

/* The split canon of a grid whose data section is `data`. */
static void expect_split_at(int line, const char *data, const char *want)
{
    char text[1024];
    snprintf(text, sizeof text, "name: t\ndata: %s\naxes: {arch: lenet5}\n", data);
    mg_grid *g = parse_ok(line, text);
    if (g && strcmp(g->split.canon, want) != 0) {
        fprintf(stderr, "%s:%d: FAIL: split canon \"%s\" != \"%s\"\n", __FILE__, line, g->split.canon, want);
        mg_test_failures_++;
    }
    mg_grid_destroy(&g);
}
#define EXPECT_SPLIT(data, want) expect_split_at(__LINE__, data, want)

static void test_split_protocols(void)
{
    mg_grid *g = PARSE_OK("name: t\naxes: {arch: lenet5}\n");
    if (g) {
        CHECK_STR_EQ(g->split.canon, SPLIT_CANON);
        CHECK_INT_EQ(g->split.cfg.protocol, MG_PROTO_FOUR_WAY);
        CHECK_INT_EQ(g->split.cfg.target_train, 2500);
        CHECK_INT_EQ(g->split.cfg.n_shadows, 1);
        CHECK_INT_EQ(g->split.target_train, 2500);
    }
    mg_grid_destroy(&g);

    /* The historic form, with or without naming the protocol: existing node keys do not move. */
    EXPECT_SPLIT("{split: {target_train: 100, shadow_test: 7}}",
                 "{\"shadow_test\":7,\"shadow_train\":2500,\"target_test\":2500,\"target_train\":100}");
    EXPECT_SPLIT("{split: {protocol: four-way, target_train: 100, shadow_test: 7}}",
                 "{\"shadow_test\":7,\"shadow_train\":2500,\"target_test\":2500,\"target_train\":100}");
    EXPECT_SPLIT("{split: {target_dev: 0, population: 0}}", SPLIT_CANON);
    EXPECT_SPLIT("{split: {target_dev: 50, population: 10}}",
                 "{\"population\":10,\"shadow_test\":2500,\"shadow_train\":2500,\"target_dev\":50,\"target_test\":2500,"
                 "\"target_train\":2500}");
    EXPECT_SPLIT("{split: {shadow_dev: 3}}",
                 "{\"shadow_dev\":3,\"shadow_test\":2500,\"shadow_train\":2500,\"target_test\":2500,\"target_train\":2500}");
    EXPECT_SPLIT("{split: {protocol: explicit, target_train: 10, target_test: 11, shadow_train: 12, shadow_test: 13, "
                 "shadows: 3, target_dev: 1}}",
                 "{\"population\":0,\"protocol\":\"explicit\",\"shadow_dev\":0,\"shadow_test\":13,\"shadow_train\":12,"
                 "\"shadows\":3,\"target_dev\":1,\"target_test\":11,\"target_train\":10}");
    EXPECT_SPLIT("{split: {protocol: mia-prune}}", "{\"population\":0,\"protocol\":\"mia-prune\",\"shadows\":5}");
    EXPECT_SPLIT("{split: {protocol: mia-prune, shadows: 2, population: 1000}}",
                 "{\"population\":1000,\"protocol\":\"mia-prune\",\"shadows\":2}");
    EXPECT_SPLIT("{split: {protocol: wemem, holdout: 0.20}}",
                 "{\"holdout\":0.2,\"population\":0,\"protocol\":\"wemem\",\"shadows\":5,\"test_fraction\":0.2}");

    g = PARSE_OK("name: t\ndata:\n  split: {protocol: wemem, shadows: 3, test_fraction: 0.25}\naxes: {arch: lenet5}\n");
    if (g) {
        CHECK_INT_EQ(g->split.cfg.protocol, MG_PROTO_WEMEM);
        CHECK_INT_EQ(g->split.cfg.n_shadows, 3);
        CHECK_NEAR(g->split.cfg.holdout, 0.1, 0.0);
        CHECK_NEAR(g->split.cfg.test_fraction, 0.25, 0.0);
        CHECK_INT_EQ(g->split.target_train, 0);
        CHECK_INT_EQ(g->split.shadow_test, 0);
    }
    mg_grid_destroy(&g);

    /* The protocol reaches the train nodes' recipes (and so their keys). */
    g = PARSE_OK("name: t\ndata: {split: {protocol: mia-prune, shadows: 1}}\naxes: {arch: lenet5}\n");
    mg_plan *p = NULL;
    mg_error err = {0}, *e = &err;
    if (g) {
        CHECK_OK(mg_plan_build(g, &p, e), e);
        CHECK(p && strstr(p->nodes[0].recipe, "\"split\":{\"population\":0,\"protocol\":\"mia-prune\",\"shadows\":1}"));
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);

    EXPECT_ERROR("name: t\ndata: {split: {protocol: three-way}}\naxes: {arch: lenet5}\n",
                 "t.yaml:2:26: data.split.protocol: unknown split protocol \"three-way\"; expected one of: four-way, "
                 "explicit, mia-prune, wemem");
    EXPECT_ERROR("name: t\ndata: {split: {protocol: mia-prune, target_train: 5}}\naxes: {arch: lenet5}\n",
                 "t.yaml:2:37: data.split: key \"target_train\" does not apply to the mia-prune split protocol; accepted "
                 "keys: protocol, shadows, population");
    EXPECT_ERROR("name: t\ndata: {split: {shadows: 2}}\naxes: {arch: lenet5}\n",
                 "data.split: key \"shadows\" does not apply to the four-way split protocol");
    EXPECT_ERROR("name: t\ndata: {split: {protocol: wemem, target_dev: 5}}\naxes: {arch: lenet5}\n",
                 "key \"target_dev\" does not apply to the wemem split protocol");
    EXPECT_ERROR("name: t\ndata: {split: {protocol: explicit, target_train: 1, target_test: 1, shadow_train: 1}}\n"
                 "axes: {arch: lenet5}\n",
                 "t.yaml:2:15: data.split: missing required key \"shadow_test\"");
    EXPECT_ERROR("name: t\ndata: {split: {target_dev: -1}}\naxes: {arch: lenet5}\n",
                 "data.split.target_dev: expected an integer >= 0, got \"-1\"");
    EXPECT_ERROR("name: t\ndata: {split: {target_train: 0}}\naxes: {arch: lenet5}\n",
                 "data.split.target_train: expected a positive integer, got \"0\"");
    EXPECT_ERROR("name: t\ndata: {split: {protocol: mia-prune, shadows: 0}}\naxes: {arch: lenet5}\n",
                 "data.split.shadows: expected an integer from 1 to 1024, got \"0\"");
    EXPECT_ERROR("name: t\ndata: {split: {protocol: wemem, holdout: 1}}\naxes: {arch: lenet5}\n",
                 "data.split.holdout: expected a number in (0, 1), got \"1\"");
    EXPECT_ERROR("name: t\ndata: {split: {protocol: wemem, test_fraction: \"0.2\"}}\naxes: {arch: lenet5}\n",
                 "data.split.test_fraction: expected a number in (0, 1), got the quoted string");
    EXPECT_ERROR("name: t\ndata: {split: {target_tarin: 5}}\naxes: {arch: lenet5}\n",
                 "data.split: unknown key \"target_tarin\"; accepted keys: protocol, target_train");
}

/* The canon of the single dataset `ds`. */
static void expect_dataset_at(int line, const char *ds, const char *want_name, const char *want_canon)
{
    char text[1024];
    snprintf(text, sizeof text, "name: t\naxes:\n  arch: lenet5\n  dataset: %s\n", ds);
    mg_grid *g = parse_ok(line, text);
    if (g && (strcmp(g->datasets[0].canon, want_canon) != 0 || strcmp(g->datasets[0].name, want_name) != 0)) {
        fprintf(stderr, "%s:%d: FAIL: dataset %s \"%s\" != %s \"%s\"\n", __FILE__, line, g->datasets[0].name,
                g->datasets[0].canon, want_name, want_canon);
        mg_test_failures_++;
    }
    mg_grid_destroy(&g);
}
#define EXPECT_DATASET(ds, name, canon) expect_dataset_at(__LINE__, ds, name, canon)

static void test_datasets(void)
{
    EXPECT_DATASET("fashion-mnist", "fashion-mnist", "{\"name\":\"fashion-mnist\"}");
    EXPECT_DATASET("{name: mnist, root: /data/mnist}", "mnist", "{\"name\":\"mnist\"}");
    EXPECT_DATASET("cifar10", "cifar10", "{\"name\":\"cifar10\"}");
    EXPECT_DATASET("{name: cifar100, labels: fine}", "cifar100", "{\"name\":\"cifar100\"}");
    EXPECT_DATASET("{name: cifar100, labels: coarse}", "cifar100-coarse", "{\"name\":\"cifar100-coarse\"}");
    EXPECT_DATASET("purchase100", "purchase100", "{\"name\":\"purchase100\"}");
    EXPECT_DATASET("texas100", "texas100", "{\"name\":\"texas100\"}");
    EXPECT_DATASET("cinic10", "cinic10", "{\"channels\":3,\"image_size\":32,\"name\":\"cinic10\"}");
    EXPECT_DATASET("{name: cifar10-jpg, root: /x, image_size: 24, channels: 1}", "cifar10-jpg",
                   "{\"channels\":1,\"image_size\":24,\"name\":\"cifar10-jpg\"}");
    EXPECT_DATASET("{name: imagefolder, root: /data/flowers, image_size: 64}", "imagefolder",
                   "{\"channels\":3,\"image_size\":64,\"name\":\"imagefolder\",\"root\":\"/data/flowers\"}");
    EXPECT_DATASET("{name: csv, root: /d/x.csv}", "csv",
                   "{\"classes\":0,\"delimiter\":\",\",\"header\":false,\"label_base\":0,\"label_column\":0,"
                   "\"name\":\"csv\",\"root\":\"/d/x.csv\"}");
    EXPECT_DATASET("{name: csv, root: /d/x.csv, label_column: 3, header: true, delimiter: \"\\t\", label_base: 1, "
                   "classes: 7}",
                   "csv",
                   "{\"classes\":7,\"delimiter\":\"\\u0009\",\"header\":true,\"label_base\":1,\"label_column\":3,"
                   "\"name\":\"csv\",\"root\":\"/d/x.csv\"}");

    mg_grid *g = PARSE_OK("name: t\ndata: {root: /data}\naxes:\n  arch: lenet5\n"
                          "  dataset: [cinic10, {name: imagefolder, root: /a, image_size: 8, channels: 1}, "
                          "{name: imagefolder, root: /b, image_size: 8}, {name: csv, root: /c.csv, delimiter: \";\"}]\n");
    if (g) {
        CHECK_INT_EQ(g->n_datasets, 4);
        CHECK_STR_EQ(g->datasets[0].root, "/data");
        CHECK_INT_EQ(g->datasets[0].opts.image_size, 32);
        CHECK_INT_EQ(g->datasets[0].opts.channels, 3);
        CHECK_INT_EQ(g->datasets[1].opts.channels, 1);
        CHECK_STR_EQ(g->datasets[2].root, "/b");
        CHECK_INT_EQ(g->datasets[3].opts.csv.delimiter, ';');
        CHECK_INT_EQ(g->datasets[3].opts.csv.header, 0);
    }
    mg_grid_destroy(&g);

    /* Two spellings of one dataset are one value. */
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: [cifar100-coarse, {name: cifar100, labels: coarse}]\n",
                 "axes.dataset[1]: duplicate dataset");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: [cinic10, {name: cinic10, image_size: 32}]\n",
                 "axes.dataset[1]: duplicate dataset");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: cifar-11\n",
                 "t.yaml:4:12: axes.dataset: unknown dataset \"cifar-11\"; expected one of: fashion-mnist, mnist, "
                 "cifar10");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: mnist, image_size: 28}\n",
                 "t.yaml:4:26: axes.dataset: key \"image_size\" does not apply to dataset \"mnist\"; accepted keys: "
                 "name, root");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: cifar10, labels: coarse}\n",
                 "key \"labels\" does not apply to dataset \"cifar10\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: cifar100, labels: medium}\n",
                 "axes.dataset.labels: unknown label set \"medium\"; expected one of: fine, coarse");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: imagefolder, root: /x}\n",
                 "t.yaml:4:12: axes.dataset: missing required key \"image_size\"; expected image_size: <pixels> for "
                 "imagefolder");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: imagefolder, image_size: 8}\n",
                 "axes.dataset: missing required key \"root\"; expected {name: imagefolder, root: <folder>, "
                 "image_size: <pixels>}");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: imagefolder\n", "missing required key \"root\"");
    EXPECT_ERROR("name: t\ndata: {root: /d}\naxes:\n  arch: lenet5\n  dataset: csv\n",
                 "axes.dataset: missing required key \"root\"; expected {name: csv, root: <CSV file>}");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: cinic10, channels: 2}\n",
                 "axes.dataset.channels: expected 1 (grey) or 3 (RGB), got \"2\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: cinic10, image_size: 0}\n",
                 "axes.dataset.image_size: expected an image size in pixels from 1 to 4096, got \"0\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: csv, root: /f, delimiter: \";;\"}\n",
                 "axes.dataset.delimiter: expected one character other than a double quote or line break, got \";;\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: csv, root: /f, header: yes}\n",
                 "axes.dataset.header: expected true or false, got \"yes\"");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: csv, root: /f, classes: 0}\n",
                 "axes.dataset.classes: expected a positive number of classes");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: [{name: csv, root: /f, image_size: 3}]\n",
                 "axes.dataset[0]: key \"image_size\" does not apply to dataset \"csv\"; accepted keys: name, root, "
                 "label_column, header, delimiter, label_base, classes");
    EXPECT_ERROR("name: t\naxes:\n  arch: lenet5\n  dataset: {name: cinic10, sizes: 3}\n",
                 "axes.dataset: unknown key \"sizes\"");

    /* Excludes still match datasets by name and root. */
    g = PARSE_OK("name: t\nseeds: [0, 1]\naxes:\n  arch: lenet5\n  dataset: [cifar10, {name: cinic10, root: /c}]\n"
                 "exclude:\n  - {dataset: {root: /c}, seed: 1}\n");
    if (g)
        CHECK_INT_EQ(g->n_excludes, 1);
    mg_grid_destroy(&g);
}

/* MG_TEST_TMP/name holding text. */
static void put_csv(char *path, size_t n, const char *name, const char *text)
{
    const char *dir = getenv("MG_TEST_TMP");
    snprintf(path, n, "%s/%s", dir && *dir ? dir : "/tmp", name);
    FILE *f = fopen(path, "w");
    CHECK(f != NULL && fputs(text, f) >= 0 && fclose(f) == 0);
}

/* The plan's node keys, joined, for a grid of one CSV dataset at path. */
static void csv_keys(const char *path, int bind, char *keys, size_t n)
{
    char text[1024];
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    mg_error err = {0}, *e = &err;
    snprintf(text, sizeof text, "name: t\naxes:\n  arch: {name: mlp, hidden: [4]}\n"
             "  dataset: [fashion-mnist, {name: csv, root: %s}]\nattacks: [loss]\n", path);
    keys[0] = '\0';
    CHECK_OK(mg_grid_parse("t.yaml", text, strlen(text), &g, e), e);
    if (g && bind)
        CHECK_OK(mg_grid_bind_data(g, e), e);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, e), e);
    for (size_t i = 0; p && i < p->n_nodes && strlen(keys) + 34 < n; i++) {
        strcat(keys, p->nodes[i].key);
        strcat(keys, " ");
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

/* Bound, a CSV dataset is named by its file's SHA-256 instead of its path:
 * the same bytes elsewhere give the same node keys, an edit other keys. */
static void test_bind_data(void)
{
    char a[512], b[512], text[2048], ka[2048], kb[2048];
    mg_error err = {0}, *e = &err;
    put_csv(a, sizeof a, "tgrid_a.csv", "abc");
    put_csv(b, sizeof b, "tgrid_b.csv", "abc");
    snprintf(text, sizeof text, "name: t\naxes:\n  arch: lenet5\n  dataset: [cifar10, {name: csv, root: %s, "
             "header: true}, {name: imagefolder, root: /nowhere, image_size: 8}]\n", a);
    mg_grid *g = PARSE_OK(text);
    if (g) {
        CHECK_OK(mg_grid_set_data_digest(g, 1, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad", e),
                 e);
        CHECK_STR_EQ(g->datasets[1].canon, "{\"classes\":0,\"delimiter\":\",\",\"header\":true,\"label_base\":0,"
                                           "\"label_column\":0,\"name\":\"csv\",\"sha256\":"
                                           "\"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"}");
        CHECK_STR_EQ(g->datasets[1].root, a);
        CHECK_INT_EQ(mg_grid_set_data_digest(g, 0, g->datasets[1].digest, &err), MG_ERR_ARG);
        CHECK_INT_EQ(mg_grid_set_data_digest(g, 1, "abc", &err), MG_ERR_ARG);
        CHECK_INT_EQ(mg_grid_set_data_digest(g, 3, g->datasets[1].digest, &err), MG_ERR_ARG);
        /* Binding reads every root: the missing folder is named with its place in
         * the grid. */
        CHECK_INT_EQ(mg_grid_bind_data(g, &err), MG_ERR_IO);
        CHECK(strstr(err.msg, "t.yaml: axes.dataset[2]: ") != NULL && strstr(err.msg, "/nowhere") != NULL);
    }
    mg_grid_destroy(&g);

    /* Two entries that differ only in where the same bytes live are one dataset.
     */
    snprintf(text, sizeof text, "name: t\naxes:\n  arch: lenet5\n  dataset: [{name: csv, root: %s}, "
             "{name: csv, root: %s}]\n", a, b);
    g = PARSE_OK(text);
    if (g) {
        CHECK_INT_EQ(mg_grid_bind_data(g, &err), MG_ERR_CONFIG);
        CHECK(strstr(err.msg, "axes.dataset[0] and axes.dataset[1] hold the same data") != NULL &&
              strstr(err.msg, a) != NULL && strstr(err.msg, b) != NULL);
    }
    mg_grid_destroy(&g);

    csv_keys(a, 1, ka, sizeof ka);
    csv_keys(b, 1, kb, sizeof kb);
    CHECK(ka[0] != '\0');
    CHECK_STR_EQ(ka, kb);
    csv_keys(a, 0, kb, sizeof kb);
    CHECK(strcmp(ka, kb) != 0);
    put_csv(b, sizeof b, "tgrid_b.csv", "abd");
    csv_keys(b, 1, kb, sizeof kb);
    CHECK(strcmp(ka, kb) != 0);
    /* The fashion-mnist half of the grid keeps its keys: only the CSV's nodes
     * change. */
    CHECK(strncmp(ka, kb, 33) == 0);
    remove(a);
    remove(b);
}

int main(void)
{
    test_split_protocols();
    test_datasets();
    test_bind_data();
    MG_TEST_MAIN_END();
}
