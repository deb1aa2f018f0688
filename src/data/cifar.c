/*
 * cifar.c: the CIFAR-10 and CIFAR-100 binary releases. A file is a run of
 * fixed-size records (label byte(s), then the red, green and blue 32x32
 * planes), with no header, so the only checks are that the size is a whole
 * number of records and that every label is in range.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

enum { CIFAR_SIDE = 32, CIFAR_PIXELS = 3 * 32 * 32 };

/* Read one file and append its records to d (whose shape, if it has rows, is
 * CIFAR's already). On failure d keeps its earlier rows. */
static mg_status cifar_append(const char *path, mg_cifar_kind kind, mg_dataset *d, mg_error *err)
{
    mg_status st = MG_OK;
    unsigned char *raw = NULL;
    size_t len = 0;
    size_t n_labels = kind == MG_CIFAR10 ? 1 : 2;
    size_t rec = n_labels + CIFAR_PIXELS;

    MG_CHECK(mg_data_read_all(path, (char **)&raw, &len, err));
    if (len == 0)
        MG_FAIL(MG_ERR_DATA, "%s: empty file; expected records of %zu bytes (a CIFAR-%s binary file)", path, rec,
                kind == MG_CIFAR10 ? "10" : "100");
    if (len % rec != 0)
        MG_FAIL(MG_ERR_DATA,
                "%s: truncated or not a CIFAR-%s binary file: %zu bytes is not a whole number of %zu-byte "
                "records (record %zu has only %zu bytes)",
                path, kind == MG_CIFAR10 ? "10" : "100", len, rec, len / rec, len % rec);
    size_t n = len / rec;
    if (n > UINT32_MAX - d->n || d->n + n > SIZE_MAX / (CIFAR_PIXELS * sizeof(float)))
        MG_FAIL(MG_ERR_NOMEM, "%s: %zu more images is too many (limit %u in all)", path, n, (unsigned)UINT32_MAX);

    for (size_t i = 0; i < n; i++) {
        const unsigned char *r = raw + i * rec;
        if (kind == MG_CIFAR10 && r[0] >= 10)
            MG_FAIL(MG_ERR_DATA, "%s: record %zu (byte offset %zu): label %d is out of range (10 classes: 0..9)",
                    path, i, i * rec, r[0]);
        if (kind != MG_CIFAR10 && r[0] >= 20)
            MG_FAIL(MG_ERR_DATA,
                    "%s: record %zu (byte offset %zu): coarse label %d is out of range (20 classes: 0..19)", path,
                    i, i * rec, r[0]);
        if (kind != MG_CIFAR10 && r[1] >= 100)
            MG_FAIL(MG_ERR_DATA,
                    "%s: record %zu (byte offset %zu): fine label %d is out of range (100 classes: 0..99)", path,
                    i, i * rec + 1, r[1]);
    }

    MG_CHECK(mg_data_check_memory(path, (double)(d->n + n) * CIFAR_PIXELS * sizeof(float), "the images as floats",
                                  err));
    float *x = realloc(d->x, (d->n + n) * CIFAR_PIXELS * sizeof(float));
    if (!x)
        MG_FAIL(MG_ERR_NOMEM, "%s: cannot allocate %zu images", path, d->n + n);
    d->x = x;
    int32_t *y = realloc(d->y, (d->n + n) * sizeof(int32_t));
    if (!y)
        MG_FAIL(MG_ERR_NOMEM, "%s: cannot allocate %zu labels", path, d->n + n);
    d->y = y;
    for (size_t i = 0; i < n; i++) {
        const unsigned char *r = raw + i * rec;
        float *dst = d->x + (d->n + i) * CIFAR_PIXELS;
        for (size_t k = 0; k < CIFAR_PIXELS; k++)
            dst[k] = (float)r[n_labels + k] / 255.0f;
        d->y[d->n + i] = kind == MG_CIFAR100_FINE ? r[1] : r[0];
    }
    d->n += n;

cleanup:
    free(raw);
    return st;
}

mg_status mg_data_load_cifar(const char *const *paths, size_t n_files, size_t n_train_files, mg_cifar_kind kind,
                             mg_dataset *out, mg_error *err)
{
    mg_status st = MG_OK;
    memset(out, 0, sizeof *out);
    if (n_files == 0 || n_train_files == 0 || n_train_files > n_files)
        return mg_error_set(err, MG_ERR_ARG, "mg_data_load_cifar: %zu files of which %zu for training", n_files,
                            n_train_files);
    if (kind != MG_CIFAR10 && kind != MG_CIFAR100_FINE && kind != MG_CIFAR100_COARSE)
        return mg_error_set(err, MG_ERR_ARG, "mg_data_load_cifar: unknown kind %d", (int)kind);
    for (size_t i = 0; i < n_files; i++) {
        MG_CHECK(cifar_append(paths[i], kind, out, err));
        if (i + 1 == n_train_files)
            out->n_train = out->n;
    }
    out->c = 3;
    out->h = CIFAR_SIDE;
    out->w = CIFAR_SIDE;
    out->n_classes = kind == MG_CIFAR10 ? 10 : kind == MG_CIFAR100_FINE ? 100 : 20;
    snprintf(out->name, sizeof out->name, "%s", mg_data_basename(paths[0]));

cleanup:
    if (st != MG_OK)
        mg_dataset_free(out);
    return st;
}
