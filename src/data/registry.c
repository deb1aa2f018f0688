/*
 * registry.c: the named datasets miagrid knows, where their files live and
 * how they are shaped.
 *
 * Normalisation: images are scaled to [0,1] (pixel / 255) and nothing more,
 * no per-channel mean/std, so a stored dataset means the same thing whatever
 * split is drawn from it; the Location features are the given 0/1 values.
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

typedef enum { KIND_IDX, KIND_CSV } data_kind;

typedef struct {
    const char *name;
    data_kind kind;
    int n_classes;
    const char *default_root;  /* NULL: the user must say where the files are */
    const char *how_to_get;    /* appended to "missing file" messages */
} data_entry;

static const data_entry REGISTRY[] = {
    {"fashion-mnist", KIND_IDX, 10, "/usr/share/datasets/fashion-mnist",
     "install it with: apt-get install dataset-fashion-mnist"},
    {"mnist", KIND_IDX, 10, NULL, "point it at a directory holding the four MNIST IDX files"},
    {"location", KIND_CSV, 30, NULL, "point it at a directory holding the Location CSV"},
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
    return "fashion-mnist, mnist, location";
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

/* Find root/stem.gz or root/stem; a missing file is an MG_ERR_IO naming the
 * directory and how to get the data. */
static mg_status find_file(const data_entry *e, const char *root, const char *env, const char *stem,
                           char *path, size_t n, mg_error *err)
{
    const char *sep = root[strlen(root) - 1] == '/' ? "" : "/";
    snprintf(path, n, "%s%s%s.gz", root, sep, stem);
    if (is_regular_file(path))
        return MG_OK;
    snprintf(path, n, "%s%s%s", root, sep, stem);
    if (is_regular_file(path))
        return MG_OK;
    return mg_error_set(err, MG_ERR_IO, "%s: no file %s(.gz) in %s (%s, or set data.root / %s)", e->name,
                        stem, root, e->how_to_get, env);
}

mg_status mg_data_load(const char *name, const char *root, mg_dataset *out, mg_error *err)
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
                            "or the environment variable %s to the directory holding its files",
                            e->name, env);

    if (e->kind == KIND_IDX) {
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
        }
    } else {
        MG_CHECK(find_file(e, root, env, "bangkok.csv", p_img, sizeof p_img, err));
        MG_CHECK(mg_data_load_csv_label_first(p_img, e->n_classes, out, err));
    }
    snprintf(out->name, sizeof out->name, "%s", e->name);

cleanup:
    if (st != MG_OK)
        mg_dataset_free(out);
    return st;
}
