/*
 * registry.c: the named datasets miagrid knows, where their files live, how
 * they are shaped and normalised.
 *
 * Normalisation: images are first scaled to [0,1] (pixel / 255). The MNIST
 * datasets stop there, so the results of existing grids do not change; the
 * colour datasets are then standardised per channel with the mean and
 * standard deviation of their training images, as their papers' code does
 * (grey image folders are left in [0,1]). Tabular features are the file's
 * values.
 *
 * Where files are looked for: the root passed in (data.root in the grid),
 * else the environment variable MIAGRID_DATA_<NAME>, else the dataset's
 * default root if it has one. For each file the gzip name is tried first,
 * then the same name without ".gz".
 */
#define _POSIX_C_SOURCE 200809L
#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_internal.h"

typedef enum {
    KIND_IDX,
    KIND_LOCATION,
    KIND_CIFAR10,
    KIND_CIFAR100,
    KIND_IMAGE_FOLDER,
    KIND_PURCHASE,
    KIND_TEXAS,
    KIND_CSV
} data_kind;

typedef struct {
    const char *name;
    data_kind kind;
    int n_classes;             /* 0: from the data */
    mg_cifar_kind cifar;       /* KIND_CIFAR100: fine or coarse */
    int image_size;            /* KIND_IMAGE_FOLDER: default size (0: required) */
    int n_norm;                /* channels normalised (0: none) */
    float mean[3], std[3];
    const char *default_root;  /* NULL: the user must say where the files are */
    const char *how_to_get;    /* appended to "missing file" messages */
} data_entry;

#define CIFAR10_NORM 3, {0.4914f, 0.4822f, 0.4465f}, {0.2470f, 0.2435f, 0.2616f}
#define CIFAR100_NORM 3, {0.5071f, 0.4865f, 0.4409f}, {0.2673f, 0.2564f, 0.2762f}
#define CINIC10_NORM 3, {0.47889522f, 0.47227842f, 0.43047404f}, {0.24205776f, 0.23828046f, 0.25874835f}
#define NO_NORM 0, {0, 0, 0}, {0, 0, 0}

static const data_entry REGISTRY[] = {
    {"fashion-mnist", KIND_IDX, 10, MG_CIFAR10, 0, NO_NORM, "/usr/share/datasets/fashion-mnist",
     "install it with: apt-get install dataset-fashion-mnist"},
    {"mnist", KIND_IDX, 10, MG_CIFAR10, 0, NO_NORM, NULL, "point it at a directory holding the four MNIST IDX files"},
    {"cifar10", KIND_CIFAR10, 10, MG_CIFAR10, 0, CIFAR10_NORM, NULL,
     "download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz and extract it there"},
    {"cifar100", KIND_CIFAR100, 100, MG_CIFAR100_FINE, 0, CIFAR100_NORM, NULL,
     "download https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz and extract it there"},
    {"cifar100-coarse", KIND_CIFAR100, 20, MG_CIFAR100_COARSE, 0, CIFAR100_NORM, NULL,
     "download https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz and extract it there"},
    {"cinic10", KIND_IMAGE_FOLDER, 10, MG_CIFAR10, 32, CINIC10_NORM, NULL,
     "download CINIC-10 from https://datashare.ed.ac.uk/handle/10283/3192 and extract it there (its train/ and "
     "test/ folders)"},
    {"cifar10-jpg", KIND_IMAGE_FOLDER, 10, MG_CIFAR10, 32, CIFAR10_NORM, NULL,
     "extract cifar10-jpg.tar.gz there (tar xzf cifar10-jpg.tar.gz -C <dir>: it holds train/<class>/*.jpg and "
     "test/<class>/*.jpg)"},
    {"imagefolder", KIND_IMAGE_FOLDER, 0, MG_CIFAR10, 0, NO_NORM, NULL,
     "point it at a folder of class folders (<class>/<image>, or train/<class>/<image> and test/<class>/<image>)"},
    {"purchase100", KIND_PURCHASE, 100, MG_CIFAR10, 0, NO_NORM, NULL,
     "download https://www.comp.nus.edu.sg/~reza/files/dataset_purchase.tgz and extract it there"},
    {"texas100", KIND_TEXAS, 100, MG_CIFAR10, 0, NO_NORM, NULL,
     "download https://www.comp.nus.edu.sg/~reza/files/dataset_texas.tgz and extract it there"},
    {"location", KIND_LOCATION, 30, MG_CIFAR10, 0, NO_NORM, NULL, "point it at a directory holding the Location CSV"},
    {"csv", KIND_CSV, 0, MG_CIFAR10, 0, NO_NORM, NULL, "point it at the CSV file itself"},
};

static const data_entry *registry_find(const char *name)
{
    if (!name)
        return NULL;
    for (size_t i = 0; i < sizeof REGISTRY / sizeof REGISTRY[0]; i++)
        if (strcmp(REGISTRY[i].name, name) == 0)
            return &REGISTRY[i];
    return NULL;
}

int mg_data_known(const char *name)
{
    return registry_find(name) != NULL;
}

const char *mg_data_known_list(void)
{
    return "fashion-mnist, mnist, cifar10, cifar100, cifar100-coarse, cinic10, cifar10-jpg, imagefolder, "
           "purchase100, texas100, location, csv";
}

int mg_data_is_image_folder(const char *name)
{
    const data_entry *e = registry_find(name);
    return e && e->kind == KIND_IMAGE_FOLDER;
}

int mg_data_default_image_size(const char *name)
{
    const data_entry *e = registry_find(name);
    return e && e->kind == KIND_IMAGE_FOLDER ? e->image_size : 0;
}

/* MIAGRID_DATA_ plus the name in upper case with '-' -> '_'. */
static void env_name(const char *name, char *buf, size_t n)
{
    int w = snprintf(buf, n, "MIAGRID_DATA_");
    for (const char *p = name; *p && (size_t)w + 1 < n; p++, w++)
        buf[w] = *p == '-' ? '_' : (char)toupper((unsigned char)*p);
    buf[w] = '\0';
}

static int is_regular_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static int is_directory(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static const char *sep_after(const char *dir)
{
    size_t n = strlen(dir);
    return n > 0 && dir[n - 1] == '/' ? "" : "/";
}

/* root/stem.gz or root/stem if either is a file (path filled), else 0. */
static int try_file(const char *root, const char *stem, char *path, size_t n)
{
    snprintf(path, n, "%s%s%s.gz", root, sep_after(root), stem);
    if (is_regular_file(path))
        return 1;
    snprintf(path, n, "%s%s%s", root, sep_after(root), stem);
    return is_regular_file(path);
}

/* Find root/stem.gz or root/stem; a missing file is an MG_ERR_IO naming the
 * directory and how to get the data. */
static mg_status find_file(const data_entry *e, const char *root, const char *env, const char *stem,
                           char *path, size_t n, mg_error *err)
{
    if (try_file(root, stem, path, n))
        return MG_OK;
    return mg_error_set(err, MG_ERR_IO, "%s: no file %s(.gz) in %s (%s, or set data.root / %s)", e->name,
                        stem, root, e->how_to_get, env);
}

/* The first of root and root/sub that holds `probe` (a file stem). */
static mg_status find_dir(const data_entry *e, const char *root, const char *sub, const char *env, const char *probe,
                          char *dir, size_t n, mg_error *err)
{
    char path[4096];
    snprintf(dir, n, "%s", root);
    if (try_file(dir, probe, path, sizeof path))
        return MG_OK;
    snprintf(dir, n, "%s%s%s", root, sep_after(root), sub);
    if (try_file(dir, probe, path, sizeof path))
        return MG_OK;
    return mg_error_set(err, MG_ERR_IO, "%s: no file %s(.gz) in %s or %s%s%s (%s, or set data.root / %s)", e->name,
                        probe, root, root, sep_after(root), sub, e->how_to_get, env);
}

static mg_status load_cifar(const data_entry *e, const char *root, const char *env, mg_dataset *out, mg_error *err)
{
    static const char *const c10[6] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                       "data_batch_4.bin", "data_batch_5.bin", "test_batch.bin"};
    static const char *const c100[2] = {"train.bin", "test.bin"};
    mg_status st = MG_OK;
    char dir[4096];
    char paths[6][4096];
    const char *ptr[6];
    int is10 = e->kind == KIND_CIFAR10;
    const char *const *stems = is10 ? c10 : c100;
    size_t n_files = is10 ? 6 : 2;

    MG_CHECK(find_dir(e, root, is10 ? "cifar-10-batches-bin" : "cifar-100-binary", env, stems[0], dir, sizeof dir,
                      err));
    for (size_t i = 0; i < n_files; i++) {
        MG_CHECK(find_file(e, dir, env, stems[i], paths[i], sizeof paths[i], err));
        ptr[i] = paths[i];
    }
    MG_CHECK(mg_data_load_cifar(ptr, n_files, n_files - 1, e->cifar, out, err));
cleanup:
    return st;
}

static mg_status load_image_folder(const data_entry *e, const char *root, const char *env,
                                   const mg_data_options *opts, mg_dataset *out, mg_error *err)
{
    mg_image_opts io = {.image_size = opts && opts->image_size > 0 ? opts->image_size : e->image_size,
                        .channels = opts && opts->channels > 0 ? opts->channels : 3};
    if (io.image_size <= 0)
        return mg_error_set(err, MG_ERR_CONFIG, "%s: needs an image size (image_size in the grid's dataset entry)",
                            e->name);
    if (!is_directory(root))
        return mg_error_set(err, MG_ERR_IO, "%s: no folder %s (%s, or set data.root / %s)", e->name, root,
                            e->how_to_get, env);
    return mg_data_load_image_folder(root, &io, out, err);
}

static mg_status load_texas(const data_entry *e, const char *root, const char *env, mg_dataset *out, mg_error *err)
{
    char feats[4096], labels[4096], sub[4096];
    snprintf(sub, sizeof sub, "%s%stexas/100", root, sep_after(root));
    if (try_file(sub, "feats", feats, sizeof feats) && try_file(sub, "labels", labels, sizeof labels))
        return mg_data_load_texas(feats, labels, e->n_classes, out, err);
    if (try_file(root, "feats", feats, sizeof feats) && try_file(root, "labels", labels, sizeof labels))
        return mg_data_load_texas(feats, labels, e->n_classes, out, err);
    return mg_error_set(err, MG_ERR_IO, "%s: no files texas/100/feats(.gz) and texas/100/labels(.gz) (nor feats and "
                        "labels) in %s (%s, or set data.root / %s)", e->name, root, e->how_to_get, env);
}

/* x = (x - mean) / std per channel, for colour images. */
static void normalise(const data_entry *e, mg_dataset *d)
{
    if (e->n_norm == 0 || d->c != e->n_norm)
        return;
    size_t plane = (size_t)d->h * (size_t)d->w;
    for (size_t i = 0; i < d->n; i++) {
        float *row = d->x + i * mg_dataset_dim(d);
        for (int k = 0; k < d->c; k++) {
            float m = e->mean[k], s = e->std[k];
            float *p = row + (size_t)k * plane;
            for (size_t j = 0; j < plane; j++)
                p[j] = (p[j] - m) / s;
        }
    }
    d->n_norm = e->n_norm;
    for (int k = 0; k < e->n_norm; k++) {
        d->mean[k] = e->mean[k];
        d->std[k] = e->std[k];
    }
}

int mg_data_by_content(const char *name)
{
    return name && (!strcmp(name, "imagefolder") || !strcmp(name, "csv"));
}

mg_status mg_data_digest(const char *name, const char *root, char hex[65], mg_error *err)
{
    mg_sha256_ctx c;
    uint8_t d[32];
    mg_status st;
    if (!mg_data_by_content(name))
        return mg_error_set(err, MG_ERR_ARG, "mg_data_digest: \"%s\" is not a dataset named by its content (csv, "
                            "imagefolder)", name ? name : "(null)");
    if (!root || !*root)
        return mg_error_set(err, MG_ERR_CONFIG, "%s: needs a root", name);
    mg_sha256_init(&c);
    if (!strcmp(name, "csv")) {
        if (!is_regular_file(root))
            return mg_error_set(err, MG_ERR_IO, "csv: %s is not a file (point the dataset's root at the CSV file "
                                "itself)", root);
        st = mg_sha256_update_file(&c, root, NULL, err);
    } else {
        st = mg_data_image_folder_digest(root, &c, err);
    }
    if (st != MG_OK)
        return st;
    mg_sha256_final(&c, d);
    mg_sha256_digest_hex(d, hex);
    return MG_OK;
}

mg_status mg_data_load_opts(const char *name, const char *root, const mg_data_options *opts, mg_dataset *out,
                            mg_error *err)
{
    mg_status st = MG_OK;
    char env[96];
    char p_img[4096], p_lab[4096];
    memset(out, 0, sizeof *out);

    const data_entry *e = registry_find(name);
    if (!e)
        return mg_error_set(err, MG_ERR_CONFIG, "unknown dataset \"%s\" (known: %s)", name ? name : "(null)",
                            mg_data_known_list());
    env_name(e->name, env, sizeof env);
    if (!root || !*root) {
        const char *from_env = getenv(env);
        root = from_env && *from_env ? from_env : e->default_root;
    }
    if (!root)
        return mg_error_set(err, MG_ERR_CONFIG,
                            "%s: no data root given and the dataset has no default: set data.root in the grid "
                            "or the environment variable %s to the %s holding its files (%s)",
                            e->name, env, e->kind == KIND_CSV ? "file" : "directory", e->how_to_get);

    switch (e->kind) {
    case KIND_IDX: {
        static const char *const files[2][2] = {
            {"train-images-idx3-ubyte", "train-labels-idx1-ubyte"},
            {"t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"},
        };
        /* Check every file first so a missing one is reported before minutes of decompression. */
        for (int part = 0; part < 2; part++)
            for (int k = 0; k < 2; k++)
                MG_CHECK(find_file(e, root, env, files[part][k], p_img, sizeof p_img, err));
        for (int part = 0; part < 2; part++) {
            MG_CHECK(find_file(e, root, env, files[part][0], p_img, sizeof p_img, err));
            MG_CHECK(find_file(e, root, env, files[part][1], p_lab, sizeof p_lab, err));
            MG_CHECK(mg_data_idx_append(p_img, p_lab, e->n_classes, out, err));
            if (part == 0)
                out->n_train = out->n;
        }
        break;
    }
    case KIND_LOCATION:
        MG_CHECK(find_file(e, root, env, "bangkok.csv", p_img, sizeof p_img, err));
        MG_CHECK(mg_data_load_csv_label_first(p_img, e->n_classes, out, err));
        break;
    case KIND_PURCHASE:
        MG_CHECK(find_file(e, root, env, "dataset_purchase", p_img, sizeof p_img, err));
        MG_CHECK(mg_data_load_csv_label_first(p_img, e->n_classes, out, err));
        break;
    case KIND_TEXAS:
        MG_CHECK(load_texas(e, root, env, out, err));
        break;
    case KIND_CIFAR10:
    case KIND_CIFAR100:
        MG_CHECK(load_cifar(e, root, env, out, err));
        break;
    case KIND_IMAGE_FOLDER:
        MG_CHECK(load_image_folder(e, root, env, opts, out, err));
        if (e->n_classes > 0 && out->n_classes != e->n_classes)
            MG_FAIL(MG_ERR_DATA, "%s: %s holds %d class folders; expected %d", e->name, root, out->n_classes,
                    e->n_classes);
        break;
    case KIND_CSV: {
        mg_csv_opts co;
        memset(&co, 0, sizeof co);
        if (opts)
            co = opts->csv;
        if (!is_regular_file(root))
            MG_FAIL(MG_ERR_IO, "%s: %s is not a file (%s, or set data.root / %s)", e->name, root, e->how_to_get, env);
        MG_CHECK(mg_data_load_csv(root, &co, out, err));
        break;
    }
    }
    normalise(e, out);
    snprintf(out->name, sizeof out->name, "%s", e->name);

cleanup:
    if (st != MG_OK)
        mg_dataset_free(out);
    return st;
}

mg_status mg_data_load(const char *name, const char *root, mg_dataset *out, mg_error *err)
{
    return mg_data_load_opts(name, root, NULL, out, err);
}
