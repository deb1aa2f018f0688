/*
 * data_internal.h: helpers shared by the dataset loaders in src/data/:
 * reading files through zlib (plain or gzip alike), the image decoders and
 * the bilinear resize.
 */
#ifndef MIAGRID_DATA_INTERNAL_H
#define MIAGRID_DATA_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include <zlib.h>

#include "miagrid/data.h"

/* Open a file for reading through zlib, which reads plain files
 * transparently. A missing or unreadable file is an MG_ERR_IO naming it. */
mg_status mg_data_gz_open(const char *path, gzFile *out, mg_error *err);

/* Read up to n bytes; *got says how many arrived (fewer only at end of data). */
mg_status mg_data_gz_read(gzFile f, const char *path, void *buf, size_t n, size_t *got, mg_error *err);

/* Read a whole file, gzip-compressed or plain (zlib tells them apart by
 * content), into a NUL-terminated buffer the caller frees. */
mg_status mg_data_read_all(const char *path, char **out, size_t *len, mg_error *err);

/* Load an IDX image/label pair and append its rows to d, which is either
 * all-zero (the shape is then taken from the file) or holds rows of the same
 * image shape and n_classes. On failure d keeps its earlier rows. */
mg_status mg_data_idx_append(const char *images_path, const char *labels_path, int n_classes,
                             mg_dataset *d, mg_error *err);

/* The most bytes the open file f (at path) can deliver: its size when it is
 * plain (*plain = 1), and for gzip its compressed size times deflate's
 * largest expansion (about 1032; *plain = 0), so a header's promise can be
 * checked before anything is allocated for it. */
#define MG_GZ_MAX_EXPANSION 1100 /* deflate's largest expansion, about 1032, rounded up */
mg_status mg_data_gz_capacity(gzFile f, const char *path, uint64_t *max_bytes, int *plain, mg_error *err);

/* Refuse (MG_ERR_NOMEM, naming path and what) a buffer of `bytes` that the
 * memory there is could not hold, before it is allocated: the environment
 * variable MIAGRID_MAX_MEMORY (bytes, or with a K, M, G or T suffix) when
 * set, else the machine's physical memory. A malformed variable is an
 * MG_ERR_CONFIG naming it. */
mg_status mg_data_check_memory(const char *path, double bytes, const char *what, mg_error *err);

/* Add the image folder at root to c, file by file as the loader reads it
 * (mg_data_digest). */
mg_status mg_data_image_folder_digest(const char *root, mg_sha256_ctx *c, mg_error *err);

/* The last path component, for dataset names. */
const char *mg_data_basename(const char *path);

/* Reusable buffers for decoding many images without an allocation each. */
typedef struct {
    unsigned char *file;  /* the encoded bytes */
    size_t file_cap;
    unsigned char *rgb;   /* decoded, (h, w, 3) interleaved */
    size_t rgb_cap;
    float *planes;        /* (c, h, w) before resizing */
    size_t planes_cap;
} mg_image_scratch;

void mg_image_scratch_free(mg_image_scratch *s);

/* Largest decoded image accepted, so a corrupt header cannot ask for an
 * absurd allocation. */
#define MG_IMAGE_MAX_SIDE 16384
#define MG_IMAGE_MAX_PIXELS ((size_t)1 << 26)

/* Decode the PNG or JPEG (told apart by content) in buf[0..len) into
 * s->rgb as 8-bit RGB (grey replicated, alpha composited onto black).
 * Corrupt, truncated or unsupported data is an MG_ERR_DATA naming path. */
mg_status mg_image_decode(const char *path, const unsigned char *buf, size_t len, mg_image_scratch *s,
                          int *w, int *h, mg_error *err);

/* Read and decode the image file at path, then write it as (channels,
 * size, size) floats in [0,1] to out: grey by ITU-R 601 luma when channels
 * is 1, resized with mg_image_resize_bilinear when its size differs. */
mg_status mg_image_load(const char *path, int channels, int size, mg_image_scratch *s, float *out,
                        mg_error *err);

/* Bilinear resize of c planes: src is (c, h, w), dst is (c, oh, ow). The
 * source coordinate of output pixel x is (x + 0.5) * w / ow - 0.5, clamped
 * below at 0 (PyTorch's align_corners=False without antialiasing). */
void mg_image_resize_bilinear(const float *src, int c, int h, int w, float *dst, int oh, int ow);

#endif
