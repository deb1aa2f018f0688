/*
 * test_idx.c: the IDX loader on small files the test writes, plain and gzip,
 * and every malformed case it must reject with a message naming the file.
 */
#include <stdint.h>
#include <string.h>

#include "data_test_files.h"
#include "miagrid/data.h"
#include "mg_test.h"

enum { N = 5, ROWS = 3, COLS = 4, PIX = N * ROWS * COLS };

static unsigned char pixels[PIX];
static unsigned char labels[N] = {0, 9, 3, 3, 7};

static void write_pair(const char *img, const char *lab, int gz)
{
    const uint32_t idims[3] = {N, ROWS, COLS};
    const uint32_t ldims[1] = {N};
    CHECK(tf_write_idx(img, gz, 0x803, 3, idims, pixels, PIX) == 0);
    CHECK(tf_write_idx(lab, gz, 0x801, 1, ldims, labels, N) == 0);
}

static void check_values(const mg_dataset *d)
{
    CHECK_INT_EQ(d->n, N);
    CHECK_INT_EQ(d->c, 1);
    CHECK_INT_EQ(d->h, ROWS);
    CHECK_INT_EQ(d->w, COLS);
    CHECK_INT_EQ(d->n_classes, 10);
    CHECK_INT_EQ(mg_dataset_dim(d), ROWS * COLS);
    if (d->n != N)
        return;
    float want[PIX];
    for (int i = 0; i < PIX; i++)
        want[i] = (float)pixels[i] / 255.0f;
    CHECK_TENSOR_NEAR(d->x, want, PIX, 0.0);
    CHECK_NEAR(d->x[0], 0.0, 0.0);
    CHECK_NEAR(d->x[PIX - 1], 1.0, 0.0);
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(d->y[i], labels[i]);
}

static void test_good(int gz)
{
    char img[512], lab[512];
    tf_path(img, sizeof img, gz ? "tidx_good_img.gz" : "tidx_good_img");
    tf_path(lab, sizeof lab, gz ? "tidx_good_lab.gz" : "tidx_good_lab");
    write_pair(img, lab, gz);
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_data_load_idx(img, lab, 10, &d, e), e);
    check_values(&d);
    mg_dataset_free(&d);
    CHECK(d.x == NULL && d.n == 0);
}

/* Load must fail with `want_status` and a message containing the path and `want_text`. */
static void expect_fail(const char *img, const char *lab, int n_classes, mg_status want_status,
                        const char *want_path, const char *want_text)
{
    mg_dataset d;
    mg_error err = {0};
    mg_status st = mg_data_load_idx(img, lab, n_classes, &d, &err);
    CHECK_INT_EQ(st, want_status);
    CHECK(strstr(err.msg, want_path) != NULL);
    if (!strstr(err.msg, want_text))
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err.msg, want_text);
    CHECK(strstr(err.msg, want_text) != NULL);
    CHECK(d.x == NULL && d.y == NULL && d.n == 0);
}

static void test_malformed(int gz)
{
    char img[512], lab[512], bad[512];
    tf_path(img, sizeof img, gz ? "tidx_m_img.gz" : "tidx_m_img");
    tf_path(lab, sizeof lab, gz ? "tidx_m_lab.gz" : "tidx_m_lab");
    tf_path(bad, sizeof bad, gz ? "tidx_m_bad.gz" : "tidx_m_bad");
    write_pair(img, lab, gz);
    const uint32_t idims[3] = {N, ROWS, COLS};

    /* Labels file given as the image file: the magic says so. */
    expect_fail(lab, lab, 10, MG_ERR_DATA, lab, "bad magic 0x00000801, expected 0x00000803");
    expect_fail(img, img, 10, MG_ERR_DATA, img, "bad magic 0x00000803, expected 0x00000801");

    /* Truncated pixel data. */
    CHECK(tf_write_idx(bad, gz, 0x803, 3, idims, pixels, PIX - 7) == 0);
    char want[128];
    snprintf(want, sizeof want, "truncated: header promises %d bytes of pixel data, found %d", PIX, PIX - 7);
    expect_fail(bad, lab, 10, MG_ERR_DATA, bad, want);

    /* Truncated header. */
    CHECK(tf_write_idx(bad, gz, 0x803, 1, idims, NULL, 0) == 0);
    expect_fail(bad, lab, 10, MG_ERR_DATA, bad, "truncated");

    /* Trailing bytes after the pixels. */
    unsigned char more[PIX + 3];
    memcpy(more, pixels, PIX);
    memset(more + PIX, 1, 3);
    CHECK(tf_write_idx(bad, gz, 0x803, 3, idims, more, PIX + 3) == 0);
    expect_fail(bad, lab, 10, MG_ERR_DATA, bad, "3 trailing bytes");

    /* Trailing bytes after the labels. */
    const uint32_t ldims[1] = {N};
    CHECK(tf_write_idx(bad, gz, 0x801, 1, ldims, more, N + 1) == 0);
    expect_fail(img, bad, 10, MG_ERR_DATA, bad, "1 trailing bytes");

    /* Labels truncated. */
    CHECK(tf_write_idx(bad, gz, 0x801, 1, ldims, labels, N - 2) == 0);
    expect_fail(img, bad, 10, MG_ERR_DATA, bad, "truncated");

    /* Counts disagree. */
    const uint32_t ldims4[1] = {N - 1};
    CHECK(tf_write_idx(bad, gz, 0x801, 1, ldims4, labels, N - 1) == 0);
    expect_fail(img, bad, 10, MG_ERR_DATA, bad, "holds 4 labels but");

    /* A label >= n_classes. */
    expect_fail(img, lab, 9, MG_ERR_DATA, lab, "label 9 of item 1 is out of range");

    /* Missing files name the path. */
    char missing[512];
    tf_path(missing, sizeof missing, "tidx_does_not_exist");
    expect_fail(missing, lab, 10, MG_ERR_IO, missing, "cannot open");
    expect_fail(img, missing, 10, MG_ERR_IO, missing, "cannot open");
}

/* A gzip stream cut short is a read error, not silently fewer images. */
static void test_truncated_gzip(void)
{
    char img[512], lab[512], cut[512];
    tf_path(img, sizeof img, "tidx_cut_src.gz");
    tf_path(lab, sizeof lab, "tidx_cut_lab.gz");
    tf_path(cut, sizeof cut, "tidx_cut.gz");
    write_pair(img, lab, 1);
    FILE *f = fopen(img, "rb");
    CHECK(f != NULL);
    if (!f)
        return;
    unsigned char buf[4096];
    size_t n = fread(buf, 1, sizeof buf, f);
    fclose(f);
    CHECK(tf_write(cut, buf, n - 10, 0) == 0);
    mg_dataset d;
    mg_error err = {0};
    CHECK(mg_data_load_idx(cut, lab, 10, &d, &err) != MG_OK);
    CHECK(strstr(err.msg, cut) != NULL);
}

int main(void)
{
    for (int i = 0; i < PIX; i++)
        pixels[i] = (unsigned char)((i * 37) % 256);
    pixels[0] = 0;
    pixels[PIX - 1] = 255;
    test_good(0);
    test_good(1);
    test_malformed(0);
    test_malformed(1);
    test_truncated_gzip();
    MG_TEST_MAIN_END();
}
