/*
 * test_data_bounds.c: what the loaders do with files that promise more than
 * they hold or than memory holds, and with values that are not finite: a
 * clear error naming the file, before anything large is allocated.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_test_files.h"
#include "data/image_test_files.h"
#include "data/tree_test_files.h"
#include "miagrid/data.h"
#include "mg_test.h"

static void expect_at(int line, mg_status got, mg_status want, const mg_error *err, const char *text)
{
    mg_test_checks_++;
    if (got != want || !strstr(err->msg, text)) {
        fprintf(stderr, "%s:%d: FAIL: expected status %d with \"%s\", got %d: %s\n", __FILE__, line, (int)want,
                text, (int)got, got == MG_OK ? "(no error)" : err->msg);
        mg_test_failures_++;
    }
}
#define EXPECT(call, want, text)                 \
    do {                                         \
        mg_error e_;                             \
        mg_error_clear(&e_);                     \
        mg_status s_ = (call);                   \
        expect_at(__LINE__, s_, want, &e_, text); \
    } while (0)
#define ERR (&e_)
static mg_error ok_err;
#define ERR_OK (&ok_err)

/* Headers that promise billions of images in a few bytes: refused from the
 * file's size (or, gzip-compressed, from deflate's largest expansion). */
static void test_idx_promises(void)
{
    char img[1024], lab[1024];
    mg_dataset d;
    uint32_t dims[3] = {2000000000u, 28, 28};
    unsigned char pix[64] = {0};
    for (int gz = 0; gz < 2; gz++) {
        tf_path(img, sizeof img, gz ? "bounds-img.gz" : "bounds-img");
        tf_path(lab, sizeof lab, "bounds-lab");
        CHECK(tf_write_idx(img, gz, 0x803, 3, dims, pix, sizeof pix) == 0);
        uint32_t n = 2000000000u;
        CHECK(tf_write_idx(lab, 0, 0x801, 1, &n, pix, sizeof pix) == 0);
        double t0 = mg_now();
        EXPECT(mg_data_load_idx(img, lab, 10, &d, ERR), MG_ERR_DATA,
               gz ? "truncated: header promises 1568000000000 bytes of pixel data, more than its"
                  : "truncated: header promises 1568000000000 bytes of pixel data, found 64");
        CHECK(mg_now() - t0 < 1.0);
    }
    /* The labels file alone over-promising. */
    uint32_t one[3] = {2, 2, 2};
    tf_path(img, sizeof img, "bounds-img");
    CHECK(tf_write_idx(img, 0, 0x803, 3, one, pix, 8) == 0);
    uint32_t n = 2;
    CHECK(tf_write_idx(lab, 0, 0x801, 1, &n, pix, 1) == 0);
    EXPECT(mg_data_load_idx(img, lab, 10, &d, ERR), MG_ERR_DATA, "truncated: header promises 2 bytes of label data, found 1");
}

/* Whole files that fit but whose floats would not: MIAGRID_MAX_MEMORY stands
 * for a small machine. */
static void test_memory(void)
{
    char img[1024], lab[1024], csv[1024], root[1024], cls[1100], png[1200];
    mg_dataset d;
    setenv("MIAGRID_MAX_MEMORY", "64K", 1);

    uint32_t dims[3] = {30, 28, 28};
    unsigned char *pix = calloc(30 * 28 * 28, 1);
    tf_path(img, sizeof img, "bounds-mem-img");
    tf_path(lab, sizeof lab, "bounds-mem-lab");
    CHECK(pix && tf_write_idx(img, 0, 0x803, 3, dims, pix, 30 * 28 * 28) == 0);
    uint32_t n = 30;
    CHECK(tf_write_idx(lab, 0, 0x801, 1, &n, pix, 30) == 0);
    EXPECT(mg_data_load_idx(img, lab, 10, &d, ERR), MG_ERR_NOMEM, "the images as floats would need");
    free(pix);

    size_t rec = 1 + 3072, nrec = 8;
    unsigned char *raw = calloc(nrec, rec);
    char cifar[1024];
    tf_path(cifar, sizeof cifar, "bounds-cifar.bin");
    CHECK(raw && tf_write(cifar, raw, nrec * rec, 0) == 0);
    const char *paths[1] = {cifar};
    EXPECT(mg_data_load_cifar(paths, 1, 1, MG_CIFAR10, &d, ERR), MG_ERR_NOMEM, "more than the 0.00 GiB there is");
    free(raw);

    tf_path(csv, sizeof csv, "bounds-mem.csv");
    FILE *f = fopen(csv, "w");
    CHECK(f != NULL);
    for (int r = 0; f && r < 200; r++) {
        fprintf(f, "%d", r % 3);
        for (int c = 0; c < 100; c++)
            fprintf(f, ",%d", c);
        fputc('\n', f);
    }
    if (f)
        fclose(f);
    mg_csv_opts o = {.delimiter = ','};
    EXPECT(mg_data_load_csv(csv, &o, &d, ERR), MG_ERR_NOMEM, "the rows read so far would need");

    tf_path(root, sizeof root, "bounds-folder");
    snprintf(cls, sizeof cls, "%s/cat", root);
    snprintf(png, sizeof png, "%s/a.png", cls);
    CHECK(tf_fresh_dir(root) == 0 && mkdir(cls, 0775) == 0);
    unsigned char rgb[3 * 4 * 4] = {0};
    CHECK(tf_write_png(png, rgb, 4, 4, 3) == 0);
    mg_image_opts io = {.image_size = 128, .channels = 3};
    EXPECT(mg_data_load_image_folder(root, &io, &d, ERR), MG_ERR_NOMEM, "the images as floats would need");

    setenv("MIAGRID_MAX_MEMORY", "1G", 1);
    CHECK_OK(mg_data_load_image_folder(root, &io, &d, ERR_OK), ERR_OK);
    mg_dataset_free(&d);
    setenv("MIAGRID_MAX_MEMORY", "lots", 1);
    EXPECT(mg_data_load_csv(csv, &o, &d, ERR), MG_ERR_CONFIG,
           "MIAGRID_MAX_MEMORY: expected a size in bytes with an optional K, M, G or T suffix, got \"lots\"");
    unsetenv("MIAGRID_MAX_MEMORY");
    CHECK_OK(mg_data_load_csv(csv, &o, &d, ERR_OK), ERR_OK);
    CHECK_INT_EQ(d.n, 200);
    mg_dataset_free(&d);
    tf_rmtree(root);
}

/* NaN, infinities and numbers beyond float range in every text loader. */
static void test_not_finite(void)
{
    static const char *const bad[] = {"nan", "NaN", "inf", "-inf", "Infinity", "1e999", "-1e39", "0x1p200", NULL};
    char path[1024], feats[1024], labels[1024];
    mg_dataset d;
    mg_csv_opts o = {.delimiter = ',', .label_column = 0};
    tf_path(path, sizeof path, "bounds-nan.csv");
    tf_path(feats, sizeof feats, "bounds-feats");
    tf_path(labels, sizeof labels, "bounds-labels");
    for (int i = 0; bad[i]; i++) {
        char text[256];
        snprintf(text, sizeof text, "1,0.5,2\n2,%s,3\n", bad[i]);
        CHECK(tf_write(path, text, strlen(text), 0) == 0);
        EXPECT(mg_data_load_csv(path, &o, &d, ERR), MG_ERR_NUMERIC, ":2: field 2 is not a finite float");
        EXPECT(mg_data_load_csv_label_first(path, 3, &d, ERR), MG_ERR_NUMERIC, ":2: field 2 is not a finite float");
        snprintf(text, sizeof text, "0,1\n%s,1\n", bad[i]);
        CHECK(tf_write(feats, text, strlen(text), 1) == 0);
        CHECK(tf_write(labels, "1\n2\n", 4, 0) == 0);
        EXPECT(mg_data_load_texas(feats, labels, 3, &d, ERR), MG_ERR_NUMERIC, ":2: field 1 is not a finite float");
    }
    /* A label is an integer, never a float. */
    CHECK(tf_write(path, "nan,1\n", 6, 0) == 0);
    EXPECT(mg_data_load_csv(path, &o, &d, ERR), MG_ERR_DATA, "label \"nan\" is not an integer");
}

/* Labels that would make an absurd number of classes. */
static void test_class_count(void)
{
    char path[1024];
    mg_dataset d;
    mg_csv_opts o = {.delimiter = ',', .label_column = 0};
    tf_path(path, sizeof path, "bounds-classes.csv");
    CHECK(tf_write(path, "0,1\n2000000000,2\n", 17, 0) == 0);
    EXPECT(mg_data_load_csv(path, &o, &d, ERR), MG_ERR_DATA,
           "the labels go up to 2000000000, which would make 2000000001 classes; expected at most 1000000");
    o.n_classes = 3000000;
    EXPECT(mg_data_load_csv(path, &o, &d, ERR), MG_ERR_DATA, "out of range 0..2999999");
}

int main(void)
{
    unsetenv("MIAGRID_MAX_MEMORY");
    test_idx_promises();
    test_memory();
    test_not_finite();
    test_class_count();
    MG_TEST_MAIN_END();
}
