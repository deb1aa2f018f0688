/*
 * test_tabular.c: Purchase100 and Texas100 in their distributed formats
 * (files the test writes), generic CSV with its options, and the malformed
 * files each must reject naming file:line.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_test_files.h"
#include "miagrid/data.h"
#include "mg_test.h"
#include "tree_test_files.h"

/* Feature j of row i of the synthetic binary datasets. */
static int bit(int i, int j)
{
    return ((i * 7 + j * 3) % 5) < 2;
}

static void write_text(const char *path, const char *text, int gz)
{
    CHECK(tf_write(path, text, strlen(text), gz) == 0);
}

/* Rows of "label,f1,...,fdim" (label_first) or just the features. */
static char *binary_rows(int n, int dim, const int *labels)
{
    size_t cap = (size_t)n * ((size_t)dim * 2 + 8) + 1;
    char *s = malloc(cap), *p = s;
    for (int i = 0; s && i < n; i++) {
        if (labels)
            p += sprintf(p, "%d,", labels[i]);
        for (int j = 0; j < dim; j++)
            p += sprintf(p, "%d%c", bit(i, j), j + 1 < dim ? ',' : '\n');
    }
    return s;
}

static int check_bits(const mg_dataset *d, int n, int dim)
{
    int bad = 0;
    for (int i = 0; i < n; i++)
        for (int j = 0; j < dim; j++)
            bad += d->x[(size_t)i * dim + j] != (float)bit(i, j);
    return bad;
}

static void test_purchase(void)
{
    char root[512], p[700];
    const int labels[4] = {1, 100, 57, 3};
    tf_path(root, sizeof root, "ttab_purchase");
    CHECK(tf_fresh_dir(root) == 0);
    unsetenv("MIAGRID_DATA_PURCHASE100");
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    CHECK_INT_EQ(mg_data_load("purchase100", root, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "purchase100: no file dataset_purchase(.gz) in ") != NULL &&
          strstr(err.msg, "dataset_purchase.tgz") != NULL);

    char *rows = binary_rows(4, 600, labels);
    snprintf(p, sizeof p, "%s/dataset_purchase", root);
    write_text(p, rows, 0);
    free(rows);
    CHECK_OK(mg_data_load("purchase100", root, &d, e), e);
    CHECK_STR_EQ(d.name, "purchase100");
    CHECK_INT_EQ(d.n, 4);
    CHECK_INT_EQ(d.n_train, 4);
    CHECK_INT_EQ(d.c, 600);
    CHECK_INT_EQ(d.h, 1);
    CHECK_INT_EQ(d.n_classes, 100);
    if (d.n == 4) {
        CHECK_INT_EQ(check_bits(&d, 4, 600), 0);
        CHECK_INT_EQ(d.y[0], 0);
        CHECK_INT_EQ(d.y[1], 99);
        CHECK_INT_EQ(d.y[2], 56);
    }
    mg_dataset_free(&d);

    write_text(p, "101,0,1\n", 0);
    CHECK_INT_EQ(mg_data_load("purchase100", root, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, ":1: label 101 is out of range 1..100") != NULL && strstr(err.msg, p) != NULL);
}

static void test_texas(void)
{
    char root[512], dir[1024], feats[1200], labels_p[1200];
    char msg[2048];
    const int labels[3] = {100, 1, 42};
    tf_path(root, sizeof root, "ttab_texas");
    CHECK(tf_fresh_dir(root) == 0);
    snprintf(dir, sizeof dir, "%s/texas", root);
    CHECK(mkdir(dir, 0755) == 0);
    snprintf(dir, sizeof dir, "%s/texas/100", root);
    CHECK(mkdir(dir, 0755) == 0);
    unsetenv("MIAGRID_DATA_TEXAS100");
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    CHECK_INT_EQ(mg_data_load("texas100", root, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "texas100: no files texas/100/feats(.gz) and texas/100/labels(.gz)") != NULL &&
          strstr(err.msg, "dataset_texas.tgz") != NULL);

    char *rows = binary_rows(3, 6169, NULL);
    snprintf(feats, sizeof feats, "%s/feats.gz", dir);
    write_text(feats, rows, 1);
    free(rows);
    snprintf(labels_p, sizeof labels_p, "%s/labels", dir);
    write_text(labels_p, "100\n1\n42\n", 0);
    CHECK_OK(mg_data_load("texas100", root, &d, e), e);
    CHECK_STR_EQ(d.name, "texas100");
    CHECK_INT_EQ(d.n, 3);
    CHECK_INT_EQ(d.c, 6169);
    CHECK_INT_EQ(d.n_classes, 100);
    if (d.n == 3) {
        CHECK_INT_EQ(check_bits(&d, 3, 6169), 0);
        for (int i = 0; i < 3; i++)
            CHECK_INT_EQ(d.y[i], labels[i] - 1);
    }
    mg_dataset_free(&d);

    write_text(labels_p, "100\n1\n", 0);
    CHECK_INT_EQ(mg_data_load("texas100", root, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, "holds 3 rows of features but") != NULL && strstr(err.msg, "holds 2 labels") != NULL);
    write_text(labels_p, "100\n0\n5\n", 0);
    CHECK_INT_EQ(mg_data_load("texas100", root, &d, &err), MG_ERR_DATA);
    snprintf(msg, sizeof msg, "%s:2: label 0 is out of range 1..100", labels_p);
    CHECK_STR_EQ(err.msg, msg);
    write_text(labels_p, "1,2\n3,4\n5,6\n", 0);
    CHECK_INT_EQ(mg_data_load("texas100", root, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, "expected one label per line") != NULL);
    write_text(labels_p, "1\n2\n3\n", 0);
    write_text(feats, "0,1,1\n1,0\n0,0,0\n", 1);
    CHECK_INT_EQ(mg_data_load("texas100", root, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, ":2: 2 fields, expected 3 (as on line 1)") != NULL && strstr(err.msg, feats) != NULL);
    CHECK(d.x == NULL && d.n == 0);
}

static void test_generic_csv(void)
{
    char path[512];
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    mg_csv_opts o = {.label_column = 2, .header = 1, .delimiter = ';', .label_base = 1, .n_classes = 0};

    tf_path(path, sizeof path, "ttab_generic.csv");
    write_text(path, "\n\"a\";\"b\";\"class\";\"c\"\n0.5;1;\"2\";-3\n\n1e2;0;1;4\r\n7;8;3;9", 0);
    CHECK_OK(mg_data_load_csv(path, &o, &d, e), e);
    CHECK_INT_EQ(d.n, 3);
    CHECK_INT_EQ(d.c, 3);
    CHECK_INT_EQ(d.n_classes, 3);
    CHECK_INT_EQ(d.n_train, 3);
    if (d.n == 3) {
        const float want[9] = {0.5f, 1, -3, 100, 0, 4, 7, 8, 9};
        CHECK_TENSOR_NEAR(d.x, want, 9, 0.0);
        CHECK_INT_EQ(d.y[0], 1);
        CHECK_INT_EQ(d.y[1], 0);
        CHECK_INT_EQ(d.y[2], 2);
    }
    mg_dataset_free(&d);

    /* Through the registry: root names the file; given classes bound the labels. */
    mg_data_options opts;
    memset(&opts, 0, sizeof opts);
    opts.csv = o;
    opts.csv.n_classes = 5;
    CHECK_OK(mg_data_load_opts("csv", path, &opts, &d, e), e);
    CHECK_STR_EQ(d.name, "csv");
    CHECK_INT_EQ(d.n_classes, 5);
    mg_dataset_free(&d);
    opts.csv.n_classes = 2;
    CHECK_INT_EQ(mg_data_load_opts("csv", path, &opts, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, ":6: label 3 is out of range 1..2") != NULL);
    CHECK_INT_EQ(mg_data_load_opts("csv", "/", &opts, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "csv: / is not a file") != NULL);
    unsetenv("MIAGRID_DATA_CSV");
    CHECK_INT_EQ(mg_data_load_opts("csv", NULL, &opts, &d, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "MIAGRID_DATA_CSV") != NULL && strstr(err.msg, "file") != NULL);

    /* Label column 0, no header, tabs, 0-based: the defaults apart from the delimiter. */
    mg_csv_opts t = {.delimiter = '\t'};
    write_text(path, "0\t1.5\n4\t2.5\n", 1);
    CHECK_OK(mg_data_load_csv(path, &t, &d, e), e);
    CHECK_INT_EQ(d.n_classes, 5);
    CHECK_INT_EQ(d.c, 1);
    mg_dataset_free(&d);

    struct {
        const char *text;
        mg_csv_opts o;
        const char *want;
    } bad[] = {
        {"1,2\n", {.label_column = 3}, ":1: the label is in column 3 (counting from 0) but the row has 2 fields"},
        {"1\n", {.label_column = 0}, ":1: a row needs a label and at least one feature, found 1 field"},
        {"x,2\n", {.label_column = 0}, ":1: label \"x\" is not an integer"},
        {"1.5,2\n", {.label_column = 0}, ":1: label \"1.5\" is not an integer"},
        {"0,2\n", {.label_column = 0, .label_base = 1}, ":1: label 0 is below 1, the first class's label (label_base)"},
        {"1,2\n1,2,3\n", {.label_column = 0}, ":2: 3 fields, expected 2 (as on line 1)"},
        {"1,nan\n", {.label_column = 0}, ":1: field 2 is not a finite float"},
        {"h\n", {.label_column = 0, .header = 1}, ": no rows"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        write_text(path, bad[i].text, 0);
        mg_status st = mg_data_load_csv(path, &bad[i].o, &d, &err);
        CHECK(st == MG_ERR_DATA || st == MG_ERR_NUMERIC);
        if (!strstr(err.msg, bad[i].want) || !strstr(err.msg, path))
            fprintf(stderr, "case %zu: \"%s\" lacks \"%s\"\n", i, err.msg, bad[i].want);
        CHECK(strstr(err.msg, bad[i].want) != NULL && strstr(err.msg, path) != NULL);
        CHECK(d.x == NULL && d.n == 0);
    }
    mg_csv_opts quote = {.delimiter = '"'};
    CHECK_INT_EQ(mg_data_load_csv(path, &quote, &d, &err), MG_ERR_ARG);
}

/* A line longer than the read buffer is assembled across refills. */
static void test_long_lines(void)
{
    char path[512];
    const int dim = 700000;
    size_t cap = (size_t)dim * 2 + 16;
    char *text = malloc(2 * cap);
    CHECK(text != NULL);
    if (!text)
        return;
    char *p = text;
    for (int r = 0; r < 2; r++) {
        p += sprintf(p, "%d", r + 1);
        for (int j = 0; j < dim; j++) {
            *p++ = ',';
            *p++ = (char)('0' + bit(r, j));
        }
        *p++ = '\n';
    }
    *p = '\0';
    tf_path(path, sizeof path, "ttab_long.csv.gz");
    write_text(path, text, 1);
    free(text);
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_data_load_csv_label_first(path, 2, &d, e), e);
    CHECK_INT_EQ(d.n, 2);
    CHECK_INT_EQ(d.c, dim);
    if (d.n == 2) {
        CHECK_INT_EQ(check_bits(&d, 2, dim), 0);
        CHECK_INT_EQ(d.y[1], 1);
    }
    mg_dataset_free(&d);
}

/* A CSV dataset is its file's bytes: the digest is the file's SHA-256, the
 * same under another path, another after a one-byte edit. */
static void test_csv_digest(void)
{
    char path[512], other[512], hex[65], again[65];
    mg_error err = {0}, *e = &err;
    tf_path(path, sizeof path, "tcsv_digest.csv");
    tf_path(other, sizeof other, "tcsv_digest_moved.csv");
    write_text(path, "abc", 0);
    CHECK_OK(mg_data_digest("csv", path, hex, e), e);
    CHECK_STR_EQ(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
    write_text(path, "0,1.5\n1,2.5\n", 0);
    write_text(other, "0,1.5\n1,2.5\n", 0);
    CHECK_OK(mg_data_digest("csv", path, hex, e), e);
    CHECK_OK(mg_data_digest("csv", other, again, e), e);
    CHECK_STR_EQ(hex, again);
    write_text(other, "0,1.5\n1,2.6\n", 0);
    CHECK_OK(mg_data_digest("csv", other, again, e), e);
    CHECK(strcmp(hex, again) != 0);
    remove(other);
    CHECK_INT_EQ(mg_data_digest("csv", other, hex, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, other) != NULL && strstr(err.msg, "is not a file") != NULL);
    CHECK_INT_EQ(mg_data_digest("csv", "", hex, &err), MG_ERR_CONFIG);
    CHECK_INT_EQ(mg_data_digest("purchase100", path, hex, &err), MG_ERR_ARG);
    CHECK(mg_data_by_content("csv") && mg_data_by_content("imagefolder"));
    CHECK(!mg_data_by_content("purchase100") && !mg_data_by_content("cinic10") && !mg_data_by_content(NULL));
    remove(path);
}

int main(void)
{
    test_purchase();
    test_texas();
    test_generic_csv();
    test_csv_digest();
    test_long_lines();
    MG_TEST_MAIN_END();
}
