/*
 * data.h: datasets and splits. Loaders for IDX (MNIST), the CIFAR-10/100
 * binary releases, folders of PNG/JPEG images, label-first CSV (Location,
 * Purchase100), Texas100 and generic CSV; a registry of named datasets with
 * their shapes, classes and normalisation; and the split protocols that cut a
 * dataset into target/shadow members, non-members, dev parts and a
 * population pool, deterministically by seed.
 */
#ifndef MIAGRID_DATA_H
#define MIAGRID_DATA_H

#include <stddef.h>
#include <stdint.h>

#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-channel normalisation is recorded for at most this many channels. */
#define MG_DATA_NORM_MAX 4

/* A whole dataset in memory: x is (n, c, h, w) float32 row-major, normalised
 * as the registry says; y holds labels in [0, n_classes). Rows [0, n_train)
 * come from the dataset's official training part and the rest from its test
 * part; n_train == n when the dataset has no official test part. n_norm > 0
 * means the registry mapped each image channel k as x = (v - mean[k]) /
 * std[k] from v = pixel / 255; n_norm == 0 means x is v (or the file's values
 * for tabular data). */
typedef struct {
    char name[64];
    float *x;
    int32_t *y;
    size_t n;
    int c, h, w;
    int n_classes;
    size_t n_train;
    int n_norm;
    float mean[MG_DATA_NORM_MAX], std[MG_DATA_NORM_MAX];
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

/* CIFAR binary records: CIFAR-10 is <label byte><3072 pixel bytes> (the red,
 * green, then blue 32x32 planes); CIFAR-100 is <coarse byte><fine byte><3072
 * pixel bytes>, and `kind` says which label to keep. */
typedef enum { MG_CIFAR10 = 0, MG_CIFAR100_FINE = 1, MG_CIFAR100_COARSE = 2 } mg_cifar_kind;

/* Load CIFAR binary files (each plain or gzip) in order into one dataset of
 * (n, 3, 32, 32) pixels scaled to [0,1]; the first n_train_files files are the
 * training part (out->n_train counts their records). A file must hold a
 * whole, non-zero number of records and every label must be in range
 * (10, 100 fine or 20 coarse classes); errors name the file and record. */
mg_status mg_data_load_cifar(const char *const *paths, size_t n_files, size_t n_train_files, mg_cifar_kind kind,
                             mg_dataset *out, mg_error *err);

/* Images read from a folder tree of PNG and JPEG files. */
typedef struct {
    int image_size;  /* every image is resized (bilinear) to image_size x image_size; > 0 */
    int channels;    /* 3: RGB; 1: grey (ITU-R 601 luma, as PIL's convert("L")) */
} mg_image_opts;

/* Load an image folder: either root/train/<class>/<file> and
 * root/test/<class>/<file> (train rows first, out->n_train = their count;
 * both must hold the same class folders) or root/<class>/<file> (no test
 * part). Classes are the class folder names in byte order, numbered from 0;
 * files are the *.png, *.jpg and *.jpeg (any case) in each class folder, in
 * byte order of their names, decoded by content; other files and names
 * starting with '.' are ignored. Pixels are resized with bilinear sampling
 * at pixel centres (PyTorch's align_corners=False, no antialiasing; an image
 * already of the size is copied exactly) and scaled to [0,1]; alpha is
 * composited onto black. Errors name the file: undecodable, truncated or
 * corrupt images, empty class folders, class folders that differ between
 * train and test. */
mg_status mg_data_load_image_folder(const char *root, const mg_image_opts *opts, mg_dataset *out,
                                    mg_error *err);

/* Generic CSV (plain or gzip): one sample per line, `delimiter`-separated;
 * a field may be wrapped in double quotes (a quoted field cannot contain the
 * delimiter); blank lines are skipped; with header = 1 the first non-blank
 * line is skipped. Column label_column holds an integer label, every other
 * column a finite number (the features, in column order). Labels become
 * label - label_base; with n_classes > 0 they must lie in
 * label_base..label_base+n_classes-1, with n_classes == 0 the class count is
 * the largest label + 1 (after subtracting label_base). Errors name
 * file:line and the field. */
typedef struct {
    int label_column;  /* 0-based */
    int header;        /* 0 or 1 */
    char delimiter;    /* 0 means ',' */
    int label_base;    /* the value of the first class's label (0 or 1 usually) */
    int n_classes;     /* 0: infer */
} mg_csv_opts;

mg_status mg_data_load_csv(const char *path, const mg_csv_opts *opts, mg_dataset *out, mg_error *err);

/* Texas100 as distributed by Shokri et al. (dataset_texas.tgz): feats_path
 * holds one comma-separated row of features per sample (6,169 binary
 * values), labels_path one 1-based label per line (1..n_classes). The
 * files must agree on the number of samples. */
mg_status mg_data_load_texas(const char *feats_path, const char *labels_path, int n_classes, mg_dataset *out,
                             mg_error *err);

/* Options of a registry dataset beyond its name and root; zero means the
 * registry default. */
typedef struct {
    int image_size;    /* image folders (cinic10, cifar10-jpg, imagefolder): output size; 0 = 32,
                        * except imagefolder, which requires it */
    int channels;      /* image folders: 3 or 1; 0 = 3. Grey images are not normalised. */
    mg_csv_opts csv;   /* csv */
} mg_data_options;

/* The registry: name -> files, shape, classes and normalisation. Every
 * dataset's train and test files are concatenated (train first) into one
 * pool, out->n_train marking the boundary.
 *   "fashion-mnist":  IDX (70,000 x 1x28x28, 10 classes), pixels in [0,1];
 *                     default root /usr/share/datasets/fashion-mnist
 *   "mnist":          IDX (70,000 x 1x28x28, 10 classes), pixels in [0,1]
 *   "cifar10":        data_batch_1..5.bin + test_batch.bin (60,000 x 3x32x32,
 *                     10 classes), in root or root/cifar-10-batches-bin;
 *                     mean (0.4914, 0.4822, 0.4465), std (0.2470, 0.2435, 0.2616)
 *   "cifar100":       train.bin + test.bin (60,000 x 3x32x32, 100 fine classes),
 *                     in root or root/cifar-100-binary;
 *                     mean (0.5071, 0.4865, 0.4409), std (0.2673, 0.2564, 0.2762)
 *   "cifar100-coarse": the same files with the 20 coarse labels
 *   "cinic10":        image folder root/train, root/test (CINIC-10's valid/ is
 *                     not used), 10 classes, 32x32 RGB;
 *                     mean (0.4789, 0.4723, 0.4305), std (0.2421, 0.2383, 0.2587)
 *   "cifar10-jpg":    image folder root/train, root/test (the JPEG copy of
 *                     CIFAR-10), 10 classes, 32x32 RGB, CIFAR-10's normalisation
 *   "imagefolder":    any image folder (mg_data_load_image_folder); needs
 *                     opts->image_size; classes from the folders; pixels in [0,1]
 *   "purchase100":    root/dataset_purchase: label-first CSV, labels 1..100,
 *                     600 binary features (197,324 rows as distributed)
 *   "texas100":       root/texas/100/feats and root/texas/100/labels (or
 *                     root/feats and root/labels): 6,169 binary features,
 *                     labels 1..100 (67,330 rows as distributed)
 *   "location":       root/bangkok.csv (5,010 x 446, 30 classes)
 *   "csv":            generic CSV: root names the file itself; opts->csv
 * Every file is looked for as <name>.gz first, then <name>. root may be NULL
 * or "" for the default; the environment variable MIAGRID_DATA_<NAME> (upper
 * case, '-' -> '_') overrides the default root. A missing file names the
 * path looked in and how to get the data. opts may be NULL for all defaults. */
mg_status mg_data_load_opts(const char *name, const char *root, const mg_data_options *opts, mg_dataset *out,
                            mg_error *err);
/* mg_data_load_opts with all defaults. */
mg_status mg_data_load(const char *name, const char *root, mg_dataset *out, mg_error *err);

/* 1 if the registry knows `name`. */
int mg_data_known(const char *name);
/* Comma-separated list of known names, for error messages. */
const char *mg_data_known_list(void);
/* 1 if `name` is whatever its root holds ("imagefolder", "csv"), so that its
 * node keys must name the root's content (mg_data_digest); the named datasets
 * are the same data wherever they live. */
int mg_data_by_content(const char *name);
/* The content digest of a by-content dataset's root, as 64 hex digits into
 * hex: for "csv" the SHA-256 of the file's bytes (what sha256sum prints);
 * for "imagefolder" the SHA-256 of every image the loader reads, each with
 * its path under the root and its size. The same data under another path
 * gives the same digest; an edit, a rename or an added image changes it. A
 * missing root is an MG_ERR_IO naming it, a dataset that is not by content
 * an MG_ERR_ARG. */
mg_status mg_data_digest(const char *name, const char *root, char hex[65], mg_error *err);
/* 1 if `name` is read from an image folder (it takes image_size and channels). */
int mg_data_is_image_folder(const char *name);
/* The image size a registry image folder uses when none is given; 0 for
 * "imagefolder" (which requires one) and for datasets that are not image folders. */
int mg_data_default_image_size(const char *name);

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

/* ---- split protocols ---------------------------------------------------------------- */

/* A list of sample indices into a dataset. */
typedef struct {
    uint32_t *idx;
    size_t n;
} mg_index_list;

/* k disjoint parts of a pool of n_total samples: a permutation of
 * [0, n_total) drawn from mg_rng_seed(seed, "split", stream) is cut into
 * consecutive parts of sizes[0..k). mg_split_four_way is this with k = 4, so
 * appending parts after the first four leaves those four unchanged. Error if
 * the sizes add up to more than n_total. parts[0..k) are filled; free them
 * with mg_index_lists_free. */
mg_status mg_split_parts(size_t n_total, const size_t *sizes, size_t k, uint64_t seed, const char *stream,
                         mg_index_list *parts, mg_error *err);
void mg_index_lists_free(mg_index_list *lists, size_t k);

typedef enum {
    MG_PROTO_FOUR_WAY = 0,  /* the four parts of mg_split_four_way, plus optional dev parts and population */
    MG_PROTO_EXPLICIT = 1,  /* every size given; k shadows, all parts of all models disjoint */
    MG_PROTO_MIA_PRUNE = 2, /* Yuan & Zhang (USENIX Security 2022), as their code splits */
    MG_PROTO_WEMEM = 3      /* Shang et al. (NDSS 2025), as their code splits */
} mg_split_protocol;

/* "four-way", "explicit", "mia-prune", "wemem". */
const char *mg_split_protocol_str(mg_split_protocol p);
/* 0 and *out set if s names a protocol, -1 otherwise. */
int mg_split_protocol_parse(const char *s, mg_split_protocol *out);

#define MG_SPLIT_MAX_SHADOWS 1024

/* How to split. Sizes are sample counts; fractions are in (0, 1).
 *
 * four-way, explicit: one seeded permutation of the whole pool, cut into
 *   consecutive parts in the order target_train, target_test, shadow_train,
 *   shadow_test (of shadow 0), target_dev, shadow_dev (of shadow 0), then
 *   shadow_train, shadow_test, shadow_dev of shadows 1..n_shadows-1, then
 *   population. Every part is disjoint from every other. four-way has
 *   n_shadows = 1, so with zero dev and population sizes it is
 *   mg_split_four_way bit for bit.
 *
 * mia-prune (Yuan & Zhang's pretrain.py): the pooled train+test set is
 *   halved (victim: n - ceil(n/2), attacker: ceil(n/2)). The victim half is
 *   split into test = ceil(0.45 m) and of the rest r, dev = ceil(0.1818 r),
 *   train = r - dev: 45 % / ~10 % / 45 %. Each of the n_shadows shadows
 *   splits the whole attacker half the same way with its own permutation,
 *   so shadows overlap each other but never the victim half. population is
 *   the attacker half (or `population` samples of it when > 0).
 *
 * wemem (Shang et al.'s pretrain_modi.py): members come only from the
 *   official training part (rows [0, n_train)); when the dataset has none
 *   (n_train == n_total), a seeded ceil(test_fraction * n) samples become the
 *   test part first, as their code does for Texas and Purchase (0.2). The
 *   training part is halved (victim: n - ceil(n/2), attacker: ceil(n/2)); the
 *   victim holds out ceil(holdout * m) of its half (0.1) and trains on the
 *   rest; its non-member pool is the held-out samples plus the whole test
 *   part, split into test = ceil(0.66 p) and dev = the rest. Each shadow
 *   does the same with the attacker half and its own permutation. The test
 *   part is therefore shared by the target's and every shadow's test and
 *   dev parts; members never overlap across target and shadows. population
 *   is the attacker half (or `population` samples of it when > 0). */
typedef struct {
    mg_split_protocol protocol;
    size_t target_train, target_test, target_dev;  /* four-way, explicit */
    size_t shadow_train, shadow_test, shadow_dev;  /* four-way, explicit: per shadow */
    size_t n_shadows;                              /* 1..MG_SPLIT_MAX_SHADOWS; four-way: 1 */
    size_t population;                             /* see above; 0 = none (four-way, explicit) or all */
    double holdout;                                /* wemem */
    double test_fraction;                          /* wemem, datasets without a test part */
} mg_split_cfg;

/* The defaults of protocol p: four-way 2500 per part, no dev parts, no
 * population; explicit the same sizes; mia-prune and wemem 5 shadows,
 * wemem holdout 0.1 and test_fraction 0.2. */
void mg_split_cfg_init(mg_split_cfg *cfg, mg_split_protocol p);

/* The parts of every model of one split. Shadow arrays have n_shadows
 * entries. Lists the protocol does not make are empty. */
typedef struct {
    mg_split_protocol protocol;
    mg_index_list target_train, target_test, target_dev;
    size_t n_shadows;
    mg_index_list *shadow_train, *shadow_test, *shadow_dev;
    mg_index_list population;
} mg_split_roles;

/* Split a dataset of n_total samples whose first n_train are its official
 * training part (n_train == n_total: no test part) by cfg, deterministically
 * in (seed, stream): four-way and explicit draw exactly mg_split_parts(seed,
 * stream); the other protocols draw from sub-streams of stream. Errors name
 * the protocol and the sizes that do not fit. Free with mg_split_roles_free. */
mg_status mg_split_roles_make(const mg_split_cfg *cfg, size_t n_total, size_t n_train, uint64_t seed,
                              const char *stream, mg_split_roles *out, mg_error *err);
void mg_split_roles_free(mg_split_roles *r);

/* Copy the rows idx[0..n) of d into x_out (n, dim) and y_out (n). */
void mg_dataset_gather(const mg_dataset *d, const uint32_t *idx, size_t n, float *x_out, int32_t *y_out);

#ifdef __cplusplus
}
#endif
#endif
