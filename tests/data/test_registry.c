/*
 * test_registry.c: loading datasets by name: roots from the argument, the
 * environment and the default; train+test concatenation; the messages for
 * unknown names, missing roots and missing files. The real datasets are
 * loaded only when present, otherwise those parts print "skipped".
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_test_files.h"
#include "miagrid/data.h"
#include "mg_test.h"

static int dir_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static void test_known(void)
{
    CHECK(mg_data_known("fashion-mnist"));
    CHECK(mg_data_known("mnist"));
    CHECK(mg_data_known("location"));
    CHECK(!mg_data_known("cifar-11"));
    CHECK(!mg_data_known(NULL));
    CHECK(strstr(mg_data_known_list(), "location") != NULL);
    static const char *const names[] = {"cifar10", "cifar100", "cifar100-coarse", "cinic10", "cifar10-jpg",
                                        "imagefolder", "purchase100", "texas100", "csv"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++) {
        CHECK(mg_data_known(names[i]));
        CHECK(strstr(mg_data_known_list(), names[i]) != NULL);
    }

    mg_dataset d;
    mg_error err = {0};
    CHECK_INT_EQ(mg_data_load("cifar-11", NULL, &d, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "cifar-11") != NULL && strstr(err.msg, "fashion-mnist") != NULL);
}

static void test_missing(void)
{
    mg_dataset d;
    mg_error err = {0};
    unsetenv("MIAGRID_DATA_MNIST");
    unsetenv("MIAGRID_DATA_LOCATION");
    CHECK_INT_EQ(mg_data_load("mnist", NULL, &d, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "data.root") != NULL && strstr(err.msg, "MIAGRID_DATA_MNIST") != NULL);
    CHECK_INT_EQ(mg_data_load("location", "", &d, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "MIAGRID_DATA_LOCATION") != NULL);

    char empty[512];
    tf_path(empty, sizeof empty, "treg_empty");
    mkdir(empty, 0755);
    setenv("MIAGRID_DATA_FASHION_MNIST", empty, 1);
    CHECK_INT_EQ(mg_data_load("fashion-mnist", NULL, &d, &err), MG_ERR_IO);
    char want[1024];
    snprintf(want, sizeof want,
             "fashion-mnist: no file train-images-idx3-ubyte(.gz) in %s (install it with: apt-get install "
             "dataset-fashion-mnist, or set data.root / MIAGRID_DATA_FASHION_MNIST)",
             empty);
    CHECK_STR_EQ(err.msg, want);
    unsetenv("MIAGRID_DATA_FASHION_MNIST");

    CHECK_INT_EQ(mg_data_load("location", empty, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "bangkok.csv(.gz)") != NULL && strstr(err.msg, empty) != NULL);
    CHECK(d.x == NULL && d.n == 0);
}

/* A tiny "mnist" of 3 train + 2 test images, the test files without .gz. */
static void test_small_idx_root(void)
{
    char dir[512], p[600];
    tf_path(dir, sizeof dir, "treg_mnist");
    mkdir(dir, 0755);
    const uint32_t d_tr[3] = {3, 2, 2}, d_te[3] = {2, 2, 2}, l_tr[1] = {3}, l_te[1] = {2};
    unsigned char px[12], lab_tr[3] = {1, 2, 3}, lab_te[2] = {8, 9};
    for (int i = 0; i < 12; i++)
        px[i] = (unsigned char)(i * 20);
    snprintf(p, sizeof p, "%s/train-images-idx3-ubyte.gz", dir);
    CHECK(tf_write_idx(p, 1, 0x803, 3, d_tr, px, 12) == 0);
    snprintf(p, sizeof p, "%s/train-labels-idx1-ubyte.gz", dir);
    CHECK(tf_write_idx(p, 1, 0x801, 1, l_tr, lab_tr, 3) == 0);
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    CHECK(tf_write_idx(p, 0, 0x803, 3, d_te, px + 4, 8) == 0);
    snprintf(p, sizeof p, "%s/t10k-labels-idx1-ubyte", dir);
    CHECK(tf_write_idx(p, 0, 0x801, 1, l_te, lab_te, 2) == 0);

    mg_dataset d;
    mg_error err = {0}, *e = &err;
    /* From the environment, with the argument empty. */
    setenv("MIAGRID_DATA_MNIST", dir, 1);
    CHECK_OK(mg_data_load("mnist", "", &d, e), e);
    unsetenv("MIAGRID_DATA_MNIST");
    CHECK_STR_EQ(d.name, "mnist");
    CHECK_INT_EQ(d.n, 5);
    CHECK_INT_EQ(d.h, 2);
    CHECK_INT_EQ(d.w, 2);
    CHECK_INT_EQ(d.n_classes, 10);
    CHECK_INT_EQ(d.n_train, 3);
    CHECK_INT_EQ(d.n_norm, 0);
    if (d.n == 5) {
        float want[20];
        for (int i = 0; i < 12; i++)
            want[i] = (float)px[i] / 255.0f;
        for (int i = 0; i < 8; i++)
            want[12 + i] = (float)px[4 + i] / 255.0f;
        CHECK_TENSOR_NEAR(d.x, want, 20, 0.0);
        const int32_t wy[5] = {1, 2, 3, 8, 9};
        for (int i = 0; i < 5; i++)
            CHECK_INT_EQ(d.y[i], wy[i]);
    }
    mg_dataset_free(&d);

    /* The test images with another shape: named as the culprit. */
    const uint32_t d_bad[3] = {2, 1, 4};
    snprintf(p, sizeof p, "%s/t10k-images-idx3-ubyte", dir);
    CHECK(tf_write_idx(p, 0, 0x803, 3, d_bad, px, 8) == 0);
    CHECK_INT_EQ(mg_data_load("mnist", dir, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, p) != NULL && strstr(err.msg, "1x4") != NULL);
    CHECK(d.x == NULL && d.n == 0);
}

static void test_real(void)
{
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    if (dir_exists("/usr/share/datasets/fashion-mnist")) {
        unsetenv("MIAGRID_DATA_FASHION_MNIST");
        CHECK_OK(mg_data_load("fashion-mnist", NULL, &d, e), e);
        CHECK_INT_EQ(d.n, 70000);
        CHECK_INT_EQ(d.n_train, 60000);
        CHECK_INT_EQ(d.c, 1);
        CHECK_INT_EQ(d.h, 28);
        CHECK_INT_EQ(d.w, 28);
        CHECK_INT_EQ(d.n_classes, 10);
        size_t counts[10] = {0};
        int bad = 0;
        for (size_t i = 0; i < d.n; i++) {
            if (d.y[i] < 0 || d.y[i] >= 10)
                bad = 1;
            else
                counts[d.y[i]]++;
        }
        CHECK(!bad);
        for (int k = 0; k < 10; k++)
            CHECK_INT_EQ(counts[k], 7000);
        float lo = 1.0f, hi = 0.0f;
        for (size_t i = 0; i < d.n * 784; i++) {
            lo = d.x[i] < lo ? d.x[i] : lo;
            hi = d.x[i] > hi ? d.x[i] : hi;
        }
        CHECK_NEAR(lo, 0.0, 0.0);
        CHECK_NEAR(hi, 1.0, 0.0);
        mg_dataset_free(&d);
    } else {
        printf("skipped: fashion-mnist (no /usr/share/datasets/fashion-mnist)\n");
    }

    const char *src = getenv("MIAGRID_TEST_DATA");
    char root[1024], p[1100];
    if (!src || !src[0]) {
        printf("skipped: location and mnist (MIAGRID_TEST_DATA not set)\n");
        return;
    }
    snprintf(root, sizeof root, "%s/location", src);
    snprintf(p, sizeof p, "%s/bangkok.csv.gz", root);
    if (file_exists(p)) {
        CHECK_OK(mg_data_load("location", root, &d, e), e);
        CHECK_INT_EQ(d.n, 5010);
        CHECK_INT_EQ(d.c, 446);
        CHECK_INT_EQ(d.h, 1);
        CHECK_INT_EQ(d.w, 1);
        CHECK_INT_EQ(d.n_classes, 30);
        int present[30] = {0}, bad = 0, binary = 1;
        for (size_t i = 0; i < d.n; i++) {
            if (d.y[i] < 0 || d.y[i] >= 30)
                bad = 1;
            else
                present[d.y[i]] = 1;
        }
        for (size_t i = 0; i < d.n * 446; i++)
            if (d.x[i] != 0.0f && d.x[i] != 1.0f)
                binary = 0;
        CHECK(!bad);
        CHECK(binary);
        for (int k = 0; k < 30; k++)
            CHECK(present[k]);
        mg_dataset_free(&d);
    } else {
        printf("skipped: location (no %s)\n", p);
    }

    snprintf(root, sizeof root, "%s/mnist", src);
    if (dir_exists(root)) {
        CHECK_OK(mg_data_load("mnist", root, &d, e), e);
        CHECK_INT_EQ(d.n, 70000);
        CHECK_INT_EQ(d.h, 28);
        CHECK_INT_EQ(d.w, 28);
        mg_dataset_free(&d);
    } else {
        printf("skipped: mnist (no %s)\n", root);
    }
}

int main(void)
{
    test_known();
    test_missing();
    test_small_idx_root();
    test_real();
    MG_TEST_MAIN_END();
}
