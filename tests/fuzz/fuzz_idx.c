/*
 * fuzz_idx.c: libFuzzer target for the IDX loader (MNIST's format, plain or
 * gzip). The input is a class count, the length of the image file, then the
 * image file and the label file; both are written to disk and loaded as the
 * registry loads them (and, on request, appended twice).
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "data/data_internal.h"
#include "harness.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_tmpdir();
    return 0;
}

static void check_dataset(const mg_dataset *d, int n_classes)
{
    fz_require(d->n >= 1 && d->c == 1 && d->h >= 1 && d->w >= 1, "an IDX dataset has images");
    fz_require(d->n_classes == n_classes, "the class count is the one asked for");
    size_t dim = mg_dataset_dim(d);
    for (size_t i = 0; i < d->n; i++)
        fz_require(d->y[i] >= 0 && d->y[i] < n_classes, "labels are in range");
    for (size_t i = 0; i < d->n * dim; i++)
        fz_require(d->x[i] >= 0.0f && d->x[i] <= 1.0f, "pixels are in [0, 1]");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input in = {data, size};
    char img[600], lab[600];
    size_t n_img = 0, n_lab = 0;
    uint8_t opts = fz_byte(&in);
    int n_classes = 1 + fz_byte(&in) % 256;
    const uint8_t *pi = fz_take(&in, fz_u16(&in), &n_img);
    const uint8_t *pl = fz_take(&in, in.n, &n_lab);
    fz_path(img, sizeof img, "images");
    fz_path(lab, sizeof lab, "labels");
    fz_write(img, pi, n_img);
    fz_write(lab, pl, n_lab);

    mg_dataset d;
    mg_error err;
    if (mg_data_load_idx(img, lab, n_classes, &d, &err) == MG_OK) {
        check_dataset(&d, n_classes);
        fz_require(d.n_train == d.n, "IDX has no test part of its own");
        mg_dataset_free(&d);
    } else {
        fz_require(strstr(err.msg, "images") || strstr(err.msg, "labels"), "an IDX error names the file");
    }
    if (opts & 1) {
        memset(&d, 0, sizeof d);
        mg_status a = mg_data_idx_append(img, lab, n_classes, &d, &err);
        size_t first = d.n;
        if (a == MG_OK && mg_data_idx_append(img, lab, n_classes, &d, &err) == MG_OK)
            fz_require(d.n == 2 * first, "appending a file twice doubles the rows");
        if (d.n)
            check_dataset(&d, n_classes);
        mg_dataset_free(&d);
    }
    return 0;
}
