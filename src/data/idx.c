/*
 * idx.c: the IDX loader (the MNIST file format), plain or gzip-compressed,
 * and the mg_dataset basics. Files are streamed through zlib, which reads
 * plain files transparently, so the compressed bytes are never held whole.
 */
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

#include "data/data_internal.h"

enum { IDX_MAGIC_U8_1D = 0x00000801, IDX_MAGIC_U8_3D = 0x00000803 };

/* Pixels are converted a chunk at a time. */
enum { IDX_CHUNK = 1 << 20 };

void mg_dataset_free(mg_dataset *d)
{
    if (!d)
        return;
    free(d->x);
    free(d->y);
    memset(d, 0, sizeof *d);
}

size_t mg_dataset_dim(const mg_dataset *d)
{
    return (size_t)d->c * (size_t)d->h * (size_t)d->w;
}

/* Count what is left in f without keeping it, to report trailing garbage. */
static mg_status gz_count_rest(gzFile f, const char *path, uint64_t *rest, mg_error *err)
{
    unsigned char buf[65536];
    *rest = 0;
    for (;;) {
        size_t got = 0;
        mg_status st = mg_data_gz_read(f, path, buf, sizeof buf, &got, err);
        if (st != MG_OK)
            return st;
        *rest += got;
        if (got < sizeof buf)
            return MG_OK;
    }
}

static uint32_t be32(const unsigned char *b)
{
    return ((uint32_t)b[0] << 24) | ((uint32_t)b[1] << 16) | ((uint32_t)b[2] << 8) | (uint32_t)b[3];
}

/* Read the magic and `ndims` dimensions of an IDX header. */
static mg_status idx_header(gzFile f, const char *path, uint32_t magic, int ndims, uint32_t *dims,
                            mg_error *err)
{
    unsigned char hdr[16];
    size_t want = 4 + 4 * (size_t)ndims;
    size_t got = 0;
    mg_status st = mg_data_gz_read(f, path, hdr, want, &got, err);
    if (st != MG_OK)
        return st;
    if (got < 4)
        return mg_error_set(err, MG_ERR_DATA, "%s: truncated: %zu bytes, too short for an IDX header",
                            path, got);
    uint32_t m = be32(hdr);
    if (m != magic)
        return mg_error_set(err, MG_ERR_DATA,
                            "%s: bad magic 0x%08x, expected 0x%08x (an IDX %s file)", path,
                            (unsigned)m, (unsigned)magic,
                            magic == IDX_MAGIC_U8_3D ? "image" : "label");
    if (got < want)
        return mg_error_set(err, MG_ERR_DATA,
                            "%s: truncated: header needs %zu bytes, found %zu", path, want, got);
    for (int i = 0; i < ndims; i++)
        dims[i] = be32(hdr + 4 + 4 * i);
    return MG_OK;
}

/* After `promised` bytes, the file must end. */
static mg_status idx_expect_end(gzFile f, const char *path, uint64_t promised, const char *what,
                                mg_error *err)
{
    uint64_t rest = 0;
    mg_status st = gz_count_rest(f, path, &rest, err);
    if (st != MG_OK)
        return st;
    if (rest > 0)
        return mg_error_set(err, MG_ERR_DATA,
                            "%s: %llu trailing bytes after the %llu bytes of %s the header promises",
                            path, (unsigned long long)rest, (unsigned long long)promised, what);
    return MG_OK;
}

/* The bytes a header promises after its own header_bytes must fit in the
 * file: a plain file must hold them, a gzip file must be able to expand to
 * them. Checked before anything is allocated for them. */
static mg_status check_promise(gzFile f, const char *path, uint64_t header_bytes, uint64_t promised,
                               const char *what, mg_error *err)
{
    uint64_t capacity = 0;
    int plain = 0;
    mg_status st = mg_data_gz_capacity(f, path, &capacity, &plain, err);
    if (st != MG_OK)
        return st;
    uint64_t room = capacity > header_bytes ? capacity - header_bytes : 0;
    if (promised <= room)
        return MG_OK;
    if (plain)
        return mg_error_set(err, MG_ERR_DATA, "%s: truncated: header promises %llu bytes of %s data, found %llu",
                            path, (unsigned long long)promised, what, (unsigned long long)room);
    return mg_error_set(err, MG_ERR_DATA,
                        "%s: truncated: header promises %llu bytes of %s data, more than its %llu compressed "
                        "bytes can hold", path, (unsigned long long)promised, what,
                        (unsigned long long)(capacity / MG_GZ_MAX_EXPANSION));
}

static mg_status idx_read_images(const char *path, mg_dataset *d, size_t *n_new, mg_error *err)
{
    mg_status st = MG_OK;
    gzFile f = NULL;
    unsigned char *chunk = NULL;
    uint32_t dims[3] = {0, 0, 0};
    *n_new = 0;

    MG_CHECK(mg_data_gz_open(path, &f, err));
    MG_CHECK(idx_header(f, path, IDX_MAGIC_U8_3D, 3, dims, err));
    if (dims[1] == 0 || dims[2] == 0 || dims[1] > INT_MAX || dims[2] > INT_MAX)
        MG_FAIL(MG_ERR_DATA, "%s: bad image size %ux%u", path, (unsigned)dims[1], (unsigned)dims[2]);
    if (dims[0] == 0)
        MG_FAIL(MG_ERR_DATA, "%s: holds no images", path);
    if (d->n > 0 && (d->c != 1 || (uint32_t)d->h != dims[1] || (uint32_t)d->w != dims[2]))
        MG_FAIL(MG_ERR_DATA, "%s: images are %ux%u but the earlier file's are %dx%d", path,
                (unsigned)dims[1], (unsigned)dims[2], d->h, d->w);

    size_t dim = (size_t)dims[1] * (size_t)dims[2];
    size_t n = dims[0];
    if (n > SIZE_MAX / dim || d->n > SIZE_MAX - n || d->n + n > SIZE_MAX / dim / sizeof(float))
        MG_FAIL(MG_ERR_NOMEM, "%s: %zu images of %zu pixels is too large", path, n, dim);
    size_t promised = n * dim;
    /* A header can promise anything; the file and the memory must hold it
     * before a byte is allocated. */
    MG_CHECK(check_promise(f, path, 16, promised, "pixel", err));
    MG_CHECK(mg_data_check_memory(path, (double)(d->n + n) * (double)dim * sizeof(float), "the images as floats",
                                  err));

    float *x = realloc(d->x, (d->n + n) * dim * sizeof(float));
    if (!x)
        MG_FAIL(MG_ERR_NOMEM, "%s: cannot allocate %zu images of %zu pixels", path, d->n + n, dim);
    d->x = x;
    chunk = mg_malloc(IDX_CHUNK, 1, "IDX read buffer", err);
    if (!chunk)
        MG_CHECK(MG_ERR_NOMEM);

    float *dst = d->x + d->n * dim;
    size_t done = 0;
    while (done < promised) {
        size_t want = promised - done < IDX_CHUNK ? promised - done : IDX_CHUNK;
        size_t got = 0;
        MG_CHECK(mg_data_gz_read(f, path, chunk, want, &got, err));
        for (size_t i = 0; i < got; i++)
            dst[done + i] = (float)chunk[i] / 255.0f;
        done += got;
        if (got < want)
            MG_FAIL(MG_ERR_DATA, "%s: truncated: header promises %zu bytes of pixel data, found %zu",
                    path, promised, done);
    }
    MG_CHECK(idx_expect_end(f, path, promised, "pixel data", err));
    *n_new = n;
    if (d->n == 0) {
        d->c = 1;
        d->h = (int)dims[1];
        d->w = (int)dims[2];
    }

cleanup:
    free(chunk);
    if (f)
        gzclose(f);
    return st;
}

static mg_status idx_read_labels(const char *path, int n_classes, size_t n_images,
                                 const char *images_path, mg_dataset *d, mg_error *err)
{
    mg_status st = MG_OK;
    gzFile f = NULL;
    unsigned char *raw = NULL;
    uint32_t n_labels = 0;

    MG_CHECK(mg_data_gz_open(path, &f, err));
    MG_CHECK(idx_header(f, path, IDX_MAGIC_U8_1D, 1, &n_labels, err));
    if ((size_t)n_labels != n_images)
        MG_FAIL(MG_ERR_DATA, "%s: holds %u labels but %s holds %zu images", path,
                (unsigned)n_labels, images_path, n_images);
    MG_CHECK(check_promise(f, path, 8, n_labels, "label", err));
    raw = mg_malloc(n_labels, 1, "IDX labels", err);
    if (!raw)
        MG_CHECK(MG_ERR_NOMEM);
    size_t got = 0;
    MG_CHECK(mg_data_gz_read(f, path, raw, n_labels, &got, err));
    if (got < n_labels)
        MG_FAIL(MG_ERR_DATA, "%s: truncated: header promises %u bytes of label data, found %zu",
                path, (unsigned)n_labels, got);
    MG_CHECK(idx_expect_end(f, path, n_labels, "label data", err));
    for (size_t i = 0; i < n_labels; i++)
        if ((int)raw[i] >= n_classes)
            MG_FAIL(MG_ERR_DATA, "%s: label %d of item %zu is out of range (%d classes: 0..%d)", path,
                    (int)raw[i], i, n_classes, n_classes - 1);

    int32_t *y = realloc(d->y, (d->n + n_images) * sizeof(int32_t));
    if (!y)
        MG_FAIL(MG_ERR_NOMEM, "%s: cannot allocate %zu labels", path, d->n + n_images);
    d->y = y;
    for (size_t i = 0; i < n_images; i++)
        d->y[d->n + i] = raw[i];

cleanup:
    free(raw);
    if (f)
        gzclose(f);
    return st;
}

mg_status mg_data_idx_append(const char *images_path, const char *labels_path, int n_classes,
                             mg_dataset *d, mg_error *err)
{
    mg_status st = MG_OK;
    size_t n_old = d->n;
    int c = d->c, h = d->h, w = d->w;
    size_t n_new = 0;

    if (n_classes < 1 || n_classes > 256)
        return mg_error_set(err, MG_ERR_ARG, "%s: n_classes %d is outside 1..256 for IDX labels",
                            labels_path, n_classes);
    if (n_old > 0 && d->n_classes != n_classes)
        return mg_error_set(err, MG_ERR_ARG, "%s: %d classes, but the dataset has %d", labels_path,
                            n_classes, d->n_classes);
    MG_CHECK(idx_read_images(images_path, d, &n_new, err));
    MG_CHECK(idx_read_labels(labels_path, n_classes, n_new, images_path, d, err));
    d->n = n_old + n_new;
    d->n_classes = n_classes;

cleanup:
    if (st != MG_OK) {
        /* The buffers may have grown; the first n_old rows are intact. */
        d->n = n_old;
        d->c = c;
        d->h = h;
        d->w = w;
    }
    return st;
}

mg_status mg_data_load_idx(const char *images_path, const char *labels_path, int n_classes,
                           mg_dataset *out, mg_error *err)
{
    memset(out, 0, sizeof *out);
    mg_status st = mg_data_idx_append(images_path, labels_path, n_classes, out, err);
    if (st != MG_OK) {
        mg_dataset_free(out);
        return st;
    }
    snprintf(out->name, sizeof out->name, "%s", mg_data_basename(images_path));
    out->n_train = out->n;
    return MG_OK;
}
