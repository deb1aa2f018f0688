/*
 * test_cifar.c: the CIFAR-10 and CIFAR-100 binary loaders on small files the
 * test writes (plain and gzip), the registry's directory lookup and
 * normalisation, and every malformed file they must reject by name.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_test_files.h"
#include "tree_test_files.h"
#include "miagrid/data.h"
#include "mg_test.h"

enum { PIX = 3072 };

/* Pixel k of record r of file f: a pattern that differs per record and plane. */
static unsigned char pixel(int f, int r, int k)
{
    return (unsigned char)((f * 37 + r * 11 + k * 7 + (k / 1024) * 50) & 0xff);
}

/* n records of a CIFAR-10 (n_labels 1) or CIFAR-100 (2) file; labels from lab[]. */
static int write_cifar(const char *path, int gz, int f, int n, int n_labels, const unsigned char *lab)
{
    size_t rec = (size_t)n_labels + PIX;
    unsigned char *buf = malloc(rec * (size_t)n + 1);
    if (!buf)
        return -1;
    for (int r = 0; r < n; r++) {
        unsigned char *p = buf + rec * (size_t)r;
        for (int j = 0; j < n_labels; j++)
            p[j] = lab[r * n_labels + j];
        for (int k = 0; k < PIX; k++)
            p[n_labels + k] = pixel(f, r, k);
    }
    int rc = tf_write(path, buf, rec * (size_t)n, gz);
    free(buf);
    return rc;
}

static void test_cifar10_files(void)
{
    char paths[2][512];
    const char *ptr[2] = {paths[0], paths[1]};
    const unsigned char lab0[3] = {0, 9, 4}, lab1[2] = {7, 1};
    tf_path(paths[0], sizeof paths[0], "tcifar_a.bin");
    tf_path(paths[1], sizeof paths[1], "tcifar_b.bin.gz");
    CHECK(write_cifar(paths[0], 0, 0, 3, 1, lab0) == 0);
    CHECK(write_cifar(paths[1], 1, 1, 2, 1, lab1) == 0);

    mg_dataset d;
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_data_load_cifar(ptr, 2, 1, MG_CIFAR10, &d, e), e);
    CHECK_INT_EQ(d.n, 5);
    CHECK_INT_EQ(d.n_train, 3);
    CHECK_INT_EQ(d.c, 3);
    CHECK_INT_EQ(d.h, 32);
    CHECK_INT_EQ(d.w, 32);
    CHECK_INT_EQ(d.n_classes, 10);
    CHECK_INT_EQ(d.n_norm, 0);
    if (d.n == 5) {
        const int32_t wy[5] = {0, 9, 4, 7, 1};
        int bad = 0;
        for (int i = 0; i < 5; i++) {
            CHECK_INT_EQ(d.y[i], wy[i]);
            int f = i < 3 ? 0 : 1, r = i < 3 ? i : i - 3;
            for (int k = 0; k < PIX; k++)
                bad += d.x[(size_t)i * PIX + k] != (float)pixel(f, r, k) / 255.0f;
        }
        CHECK_INT_EQ(bad, 0);
    }
    mg_dataset_free(&d);
}

static void test_cifar100_files(void)
{
    char paths[2][512];
    const char *ptr[2] = {paths[0], paths[1]};
    const unsigned char lab0[4] = {19, 99, 0, 0}, lab1[2] = {5, 42};
    tf_path(paths[0], sizeof paths[0], "tcifar100_train.bin");
    tf_path(paths[1], sizeof paths[1], "tcifar100_test.bin");
    CHECK(write_cifar(paths[0], 0, 2, 2, 2, lab0) == 0);
    CHECK(write_cifar(paths[1], 0, 3, 1, 2, lab1) == 0);
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_data_load_cifar(ptr, 2, 1, MG_CIFAR100_FINE, &d, e), e);
    CHECK_INT_EQ(d.n, 3);
    CHECK_INT_EQ(d.n_train, 2);
    CHECK_INT_EQ(d.n_classes, 100);
    if (d.n == 3) {
        CHECK_INT_EQ(d.y[0], 99);
        CHECK_INT_EQ(d.y[1], 0);
        CHECK_INT_EQ(d.y[2], 42);
        CHECK_NEAR(d.x[PIX + 5], (float)pixel(2, 1, 5) / 255.0f, 0.0);
    }
    mg_dataset_free(&d);
    CHECK_OK(mg_data_load_cifar(ptr, 2, 2, MG_CIFAR100_COARSE, &d, e), e);
    CHECK_INT_EQ(d.n_classes, 20);
    CHECK_INT_EQ(d.n_train, 3);
    if (d.n == 3) {
        CHECK_INT_EQ(d.y[0], 19);
        CHECK_INT_EQ(d.y[1], 0);
        CHECK_INT_EQ(d.y[2], 5);
    }
    mg_dataset_free(&d);
}

static void expect_fail(const char *name, const unsigned char *bytes, size_t len, mg_cifar_kind kind,
                        const char *want_text)
{
    char path[512];
    const char *ptr[1] = {path};
    tf_path(path, sizeof path, name);
    CHECK(tf_write(path, bytes, len, 0) == 0);
    mg_dataset d;
    mg_error err = {0};
    CHECK_INT_EQ(mg_data_load_cifar(ptr, 1, 1, kind, &d, &err), MG_ERR_DATA);
    if (!strstr(err.msg, path) || !strstr(err.msg, want_text))
        fprintf(stderr, "message \"%s\" lacks \"%s\" or the path\n", err.msg, want_text);
    CHECK(strstr(err.msg, path) != NULL && strstr(err.msg, want_text) != NULL);
    CHECK(d.x == NULL && d.n == 0);
}

static void test_malformed(void)
{
    static unsigned char buf[3 * (PIX + 2)];
    memset(buf, 0, sizeof buf);
    expect_fail("tcifar_empty.bin", buf, 0, MG_CIFAR10, "empty file");
    expect_fail("tcifar_trunc.bin", buf, 2 * (PIX + 1) - 100, MG_CIFAR10,
                "is not a whole number of 3073-byte records (record 1 has only 2973 bytes)");
    buf[(PIX + 1) * 2] = 10;
    expect_fail("tcifar_label.bin", buf, 3 * (PIX + 1), MG_CIFAR10, "record 2 (byte offset 6146): label 10 is out of range");
    memset(buf, 0, sizeof buf);
    buf[PIX + 2] = 20;
    expect_fail("tcifar_coarse.bin", buf, 2 * (PIX + 2), MG_CIFAR100_FINE, "record 1 (byte offset 3074): coarse label 20");
    memset(buf, 0, sizeof buf);
    buf[1] = 100;
    expect_fail("tcifar_fine.bin", buf, PIX + 2, MG_CIFAR100_COARSE, "record 0 (byte offset 1): fine label 100");
    /* A CIFAR-100 file read as CIFAR-10 is caught by its size (3074 is not a multiple of 3073). */
    memset(buf, 0, sizeof buf);
    expect_fail("tcifar_kind.bin", buf, 2 * (PIX + 2), MG_CIFAR10, "not a whole number");

    char missing[512];
    const char *ptr[1] = {missing};
    tf_path(missing, sizeof missing, "tcifar_missing.bin");
    mg_dataset d;
    mg_error err = {0};
    CHECK_INT_EQ(mg_data_load_cifar(ptr, 1, 1, MG_CIFAR10, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, missing) != NULL);
}

static void test_registry(void)
{
    char root[512], dir[600], p[700];
    const unsigned char lab[2] = {3, 8};
    tf_path(root, sizeof root, "tcifar_root");
    CHECK(tf_fresh_dir(root) == 0);
    snprintf(dir, sizeof dir, "%s/cifar-10-batches-bin", root);
    mkdir(dir, 0755);
    unsetenv("MIAGRID_DATA_CIFAR10");

    mg_dataset d;
    mg_error err = {0}, *e = &err;
    /* Nothing there yet: the message names both places looked in and how to get the data. */
    CHECK_INT_EQ(mg_data_load("cifar10", root, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "cifar10: no file data_batch_1.bin(.gz) in ") != NULL);
    CHECK(strstr(err.msg, dir) != NULL && strstr(err.msg, "cifar-10-binary.tar.gz") != NULL);
    CHECK_INT_EQ(mg_data_load("cifar10", NULL, &d, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "MIAGRID_DATA_CIFAR10") != NULL);

    for (int i = 1; i <= 5; i++) {
        snprintf(p, sizeof p, "%s/data_batch_%d.bin%s", dir, i, i == 2 ? ".gz" : "");
        CHECK(write_cifar(p, i == 2, i, 2, 1, lab) == 0);
    }
    CHECK_INT_EQ(mg_data_load("cifar10", root, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "test_batch.bin(.gz)") != NULL);
    snprintf(p, sizeof p, "%s/test_batch.bin", dir);
    CHECK(write_cifar(p, 0, 6, 1, 1, lab) == 0);

    setenv("MIAGRID_DATA_CIFAR10", root, 1);
    CHECK_OK(mg_data_load("cifar10", "", &d, e), e);
    unsetenv("MIAGRID_DATA_CIFAR10");
    CHECK_STR_EQ(d.name, "cifar10");
    CHECK_INT_EQ(d.n, 11);
    CHECK_INT_EQ(d.n_train, 10);
    CHECK_INT_EQ(d.n_norm, 3);
    if (d.n == 11) {
        const float mean[3] = {0.4914f, 0.4822f, 0.4465f}, sd[3] = {0.2470f, 0.2435f, 0.2616f};
        double md = 0.0;
        for (int i = 0; i < 11; i++) {
            int f = i < 10 ? 1 + i / 2 : 6, r = i < 10 ? i % 2 : 0;
            for (int k = 0; k < PIX; k++) {
                float want = ((float)pixel(f, r, k) / 255.0f - mean[k / 1024]) / sd[k / 1024];
                double diff = fabs((double)d.x[(size_t)i * PIX + k] - want);
                md = diff > md ? diff : md;
            }
        }
        CHECK_NEAR(md, 0.0, 0.0);
        CHECK_NEAR(d.mean[2], 0.4465, 1e-7);
        CHECK_NEAR(d.std[0], 0.2470, 1e-7);
    }
    mg_dataset_free(&d);

    /* CIFAR-100 directly in the root, fine and coarse. */
    const unsigned char l100[4] = {1, 2, 3, 4};
    snprintf(p, sizeof p, "%s/train.bin", root);
    CHECK(write_cifar(p, 0, 0, 2, 2, l100) == 0);
    snprintf(p, sizeof p, "%s/test.bin", root);
    CHECK(write_cifar(p, 0, 1, 1, 2, l100) == 0);
    CHECK_OK(mg_data_load("cifar100", root, &d, e), e);
    CHECK_INT_EQ(d.n, 3);
    CHECK_INT_EQ(d.n_classes, 100);
    if (d.n == 3)
        CHECK_INT_EQ(d.y[1], 4);
    mg_dataset_free(&d);
    CHECK_OK(mg_data_load("cifar100-coarse", root, &d, e), e);
    CHECK_INT_EQ(d.n_classes, 20);
    if (d.n == 3)
        CHECK_INT_EQ(d.y[1], 3);
    CHECK_STR_EQ(d.name, "cifar100-coarse");
    mg_dataset_free(&d);
}

int main(void)
{
    test_cifar10_files();
    test_cifar100_files();
    test_malformed();
    test_registry();
    MG_TEST_MAIN_END();
}
