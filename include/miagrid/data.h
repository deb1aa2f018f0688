/*
 * data.h: datasets and splits. Loaders for IDX (plain or gzip) and the
 * Location CSV format, a registry of named datasets with their defaults, and
 * the deterministic four-way split into target/shadow members/non-members.
 */
#ifndef MIAGRID_DATA_H
#define MIAGRID_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* A whole dataset in memory: x is (n, c, h, w) float32 row-major, normalised
 * as the registry says; y holds labels in [0, n_classes). */
typedef struct {
    char name[64];
    float *x;
    int32_t *y;
    size_t n;
    int c, h, w;
    int n_classes;
} mg_dataset;

void mg_dataset_free(mg_dataset *d);
size_t mg_dataset_dim(const mg_dataset *d);   /* c*h*w */

/* IDX image file (magic 0x00000803, unsigned bytes, (n, rows, cols)) and label
 * file (0x00000801). Either may be gzip-compressed (detected by content, not
 * name). Pixels are scaled to [0,1]. Errors name the file and the problem:
 * wrong magic, truncated data, counts that disagree, labels >= n_classes. */
mg_status mg_data_load_idx(const char *images_path, const char *labels_path, int n_classes,
                           mg_dataset *out, mg_error *err);

/* Location-style CSV (plain or gzip): each row is a label (possibly quoted,
 * 1-based: "1".."K") then numeric features; no header. Labels become 0-based.
 * Rows with a different field count are an error naming file:line. */
mg_status mg_data_load_csv_label_first(const char *path, int n_classes, mg_dataset *out, mg_error *err);

/* The registry: name -> files, shape, classes and normalisation.
 *   "fashion-mnist": IDX train+test (70,000), default root
 *                    /usr/share/datasets/fashion-mnist
 *   "mnist":         IDX train+test (70,000), no default root
 *   "location":      bangkok.csv or bangkok.csv.gz (5,010 x 446, 30 classes), no default root
 * root may be NULL or "" for the default; the environment variable
 * MIAGRID_DATA_<NAME> (upper case, '-' -> '_') overrides the default root.
 * A missing file names the path looked in and how to get the data. Train and
 * test files are concatenated (train first) into one pool. */
mg_status mg_data_load(const char *name, const char *root, mg_dataset *out, mg_error *err);

/* 1 if the registry knows `name`. */
int mg_data_known(const char *name);
/* Comma-separated list of known names, for error messages. */
const char *mg_data_known_list(void);

/* Four disjoint parts drawn from a pool of n_total samples. */
enum { MG_SPLIT_TARGET_TRAIN = 0, MG_SPLIT_TARGET_TEST = 1, MG_SPLIT_SHADOW_TRAIN = 2, MG_SPLIT_SHADOW_TEST = 3 };
typedef struct {
    uint32_t *idx[4];
    size_t n[4];
} mg_split;

/* Deterministic by seed: a permutation of [0, n_total) drawn from
 * mg_rng_seed(seed, "split", stream) is cut into consecutive parts of sizes[0..3].
 * Error if the sizes add up to more than n_total. */
mg_status mg_split_four_way(size_t n_total, const size_t sizes[4], uint64_t seed, const char *stream,
                            mg_split *out, mg_error *err);
void mg_split_free(mg_split *s);

/* Copy the rows idx[0..n) of d into x_out (n, dim) and y_out (n). */
void mg_dataset_gather(const mg_dataset *d, const uint32_t *idx, size_t n, float *x_out, int32_t *y_out);

#ifdef __cplusplus
}
#endif
#endif
