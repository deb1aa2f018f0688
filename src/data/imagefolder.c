/*
 * imagefolder.c: datasets stored as one folder of images per class, the
 * layout of torchvision's ImageFolder, CINIC-10 and the JPEG copy of
 * CIFAR-10: root/train/<class>/<file> and root/test/<class>/<file>, or
 * root/<class>/<file>. Everything is listed and counted first, so the whole
 * dataset is allocated once and a missing or empty folder is reported before
 * any image is decoded.
 */
#define _POSIX_C_SOURCE 200809L
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "data/data_internal.h"

typedef struct {
    char **names;
    size_t n, cap;
} name_list;

static void names_free(name_list *l)
{
    for (size_t i = 0; i < l->n; i++)
        free(l->names[i]);
    free(l->names);
    memset(l, 0, sizeof *l);
}

static mg_status names_add(name_list *l, const char *name, mg_error *err)
{
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 64;
        char **p = realloc(l->names, cap * sizeof *p);
        if (!p)
            return mg_error_set(err, MG_ERR_NOMEM, "cannot allocate a list of %zu file names", cap);
        l->names = p;
        l->cap = cap;
    }
    l->names[l->n] = mg_strdup(name, err);
    if (!l->names[l->n])
        return MG_ERR_NOMEM;
    l->n++;
    return MG_OK;
}

static int cmp_names(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_image_name(const char *name)
{
    const char *dot = strrchr(name, '.');
    return dot && (!strcasecmp(dot, ".png") || !strcasecmp(dot, ".jpg") || !strcasecmp(dot, ".jpeg"));
}

static mg_status join(char *buf, size_t cap, const char *a, const char *b, mg_error *err)
{
    int w = snprintf(buf, cap, "%s/%s", a, b);
    if (w < 0 || (size_t)w >= cap)
        return mg_error_set(err, MG_ERR_IO, "%s/%s: path too long", a, b);
    return MG_OK;
}

/* The sorted names in dir of sub-folders (want_dirs) or of image files,
 * skipping names that start with '.'. */
static mg_status list_dir(const char *dir, int want_dirs, name_list *out, mg_error *err)
{
    mg_status st = MG_OK;
    char path[PATH_MAX];
    DIR *d = opendir(dir);
    memset(out, 0, sizeof *out);
    if (!d)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot list the folder: %s", dir, strerror(errno));
    for (;;) {
        errno = 0;
        struct dirent *e = readdir(d);
        if (!e) {
            if (errno)
                MG_FAIL(MG_ERR_IO, "%s: cannot list the folder: %s", dir, strerror(errno));
            break;
        }
        if (e->d_name[0] == '.')
            continue;
        if (want_dirs) {
            MG_CHECK(join(path, sizeof path, dir, e->d_name, err));
            if (is_dir(path))
                MG_CHECK(names_add(out, e->d_name, err));
        } else if (is_image_name(e->d_name)) {
            MG_CHECK(names_add(out, e->d_name, err));
        }
    }
    if (out->n > 1)
        qsort(out->names, out->n, sizeof *out->names, cmp_names);
cleanup:
    closedir(d);
    if (st != MG_OK)
        names_free(out);
    return st;
}

/* The parts of the layout: {root/train, root/test} or {root}. */
typedef struct {
    char dir[2][PATH_MAX];
    int n;
} layout;

static mg_status find_layout(const char *root, layout *lay, mg_error *err)
{
    char train[PATH_MAX], test[PATH_MAX];
    if (!is_dir(root))
        return mg_error_set(err, MG_ERR_IO, "%s: no such folder; expected a folder of class folders "
                            "(<class>/<image> or train/<class>/<image> and test/<class>/<image>)", root);
    mg_status st = join(train, sizeof train, root, "train", err);
    if (st == MG_OK)
        st = join(test, sizeof test, root, "test", err);
    if (st != MG_OK)
        return st;
    if (is_dir(train)) {
        if (!is_dir(test))
            return mg_error_set(err, MG_ERR_DATA, "%s: has train/ but no test/ folder; expected both (or point the "
                                "root at train/ itself)", root);
        snprintf(lay->dir[0], sizeof lay->dir[0], "%s", train);
        snprintf(lay->dir[1], sizeof lay->dir[1], "%s", test);
        lay->n = 2;
    } else {
        snprintf(lay->dir[0], sizeof lay->dir[0], "%s", root);
        lay->n = 1;
    }
    return MG_OK;
}

/* The first name in one list and not the other, for messages. */
static const char *first_difference(const name_list *a, const name_list *b)
{
    for (size_t i = 0; i < a->n; i++)
        if (!bsearch(&a->names[i], b->names, b->n, sizeof *b->names, cmp_names))
            return a->names[i];
    for (size_t i = 0; i < b->n; i++)
        if (!bsearch(&b->names[i], a->names, a->n, sizeof *a->names, cmp_names))
            return b->names[i];
    return "?";
}

/* The files the loader reads: the layout, the class folders (the same in
 * both parts) and each part's image files per class, all sorted. */
typedef struct {
    layout lay;
    name_list classes[2];
    name_list *files; /* [part * n_classes + class] */
    size_t n_classes, total, n_train;
} folder_index;

static void index_free(folder_index *x)
{
    if (x->files)
        for (size_t i = 0; i < (size_t)x->lay.n * x->n_classes; i++)
            names_free(&x->files[i]);
    free(x->files);
    names_free(&x->classes[0]);
    names_free(&x->classes[1]);
    memset(x, 0, sizeof *x);
}

/* Lists everything before anything is read, so that a missing or empty
 * folder is reported first. */
static mg_status index_folder(const char *root, folder_index *x, mg_error *err)
{
    mg_status st = MG_OK;
    char dir[PATH_MAX];
    memset(x, 0, sizeof *x);
    MG_CHECK(find_layout(root, &x->lay, err));
    for (int p = 0; p < x->lay.n; p++) {
        MG_CHECK(list_dir(x->lay.dir[p], 1, &x->classes[p], err));
        if (x->classes[p].n == 0)
            MG_FAIL(MG_ERR_DATA, "%s: no class folders; expected one folder of images per class", x->lay.dir[p]);
    }
    if (x->lay.n == 2) {
        int same = x->classes[0].n == x->classes[1].n;
        for (size_t c = 0; same && c < x->classes[0].n; c++)
            same = strcmp(x->classes[0].names[c], x->classes[1].names[c]) == 0;
        if (!same)
            MG_FAIL(MG_ERR_DATA, "%s and %s hold different class folders (%zu and %zu; \"%s\" is in only one); "
                    "expected the same classes in both", x->lay.dir[0], x->lay.dir[1], x->classes[0].n,
                    x->classes[1].n, first_difference(&x->classes[0], &x->classes[1]));
    }
    x->n_classes = x->classes[0].n;
    if (x->n_classes > INT32_MAX)
        MG_FAIL(MG_ERR_DATA, "%s: %zu class folders is too many", root, x->n_classes);

    x->files = mg_calloc((size_t)x->lay.n * x->n_classes, sizeof *x->files, "image file lists", err);
    if (!x->files)
        MG_CHECK(MG_ERR_NOMEM);
    for (int p = 0; p < x->lay.n; p++) {
        for (size_t c = 0; c < x->n_classes; c++) {
            MG_CHECK(join(dir, sizeof dir, x->lay.dir[p], x->classes[0].names[c], err));
            name_list *fl = &x->files[(size_t)p * x->n_classes + c];
            MG_CHECK(list_dir(dir, 0, fl, err));
            if (fl->n == 0)
                MG_FAIL(MG_ERR_DATA, "%s: no .png, .jpg or .jpeg files; expected at least one image per class folder",
                        dir);
            x->total += fl->n;
        }
        if (p == 0)
            x->n_train = x->total;
    }
cleanup:
    if (st != MG_OK)
        index_free(x);
    return st;
}

mg_status mg_data_load_image_folder(const char *root, const mg_image_opts *opts, mg_dataset *out, mg_error *err)
{
    mg_status st = MG_OK;
    folder_index x;
    mg_image_scratch scratch;
    char dir[PATH_MAX], path[PATH_MAX];
    memset(out, 0, sizeof *out);
    memset(&x, 0, sizeof x);
    memset(&scratch, 0, sizeof scratch);

    if (!opts || opts->image_size < 1 || opts->image_size > 4096 || (opts->channels != 1 && opts->channels != 3))
        return mg_error_set(err, MG_ERR_ARG, "%s: image folders need an image size of 1 to 4096 and 1 or 3 channels",
                            root);
    MG_CHECK(index_folder(root, &x, err));
    size_t dim = (size_t)opts->channels * (size_t)opts->image_size * (size_t)opts->image_size;
    if (x.total > UINT32_MAX || x.total > SIZE_MAX / sizeof(float) / dim)
        MG_FAIL(MG_ERR_NOMEM, "%s: %zu images of %zu values each is too large", root, x.total, dim);
    MG_CHECK(mg_data_check_memory(root, (double)x.total * (double)dim * sizeof(float), "the images as floats", err));
    out->x = mg_malloc(x.total * dim, sizeof(float), "images", err);
    out->y = mg_malloc(x.total, sizeof(int32_t), "labels", err);
    if (!out->x || !out->y)
        MG_CHECK(MG_ERR_NOMEM);

    size_t row = 0;
    for (int p = 0; p < x.lay.n; p++) {
        for (size_t c = 0; c < x.n_classes; c++) {
            MG_CHECK(join(dir, sizeof dir, x.lay.dir[p], x.classes[0].names[c], err));
            const name_list *fl = &x.files[(size_t)p * x.n_classes + c];
            for (size_t i = 0; i < fl->n; i++, row++) {
                MG_CHECK(join(path, sizeof path, dir, fl->names[i], err));
                MG_CHECK(mg_image_load(path, opts->channels, opts->image_size, &scratch, out->x + row * dim, err));
                out->y[row] = (int32_t)c;
            }
        }
    }
    out->n = x.total;
    out->n_train = x.lay.n == 2 ? x.n_train : x.total;
    out->c = opts->channels;
    out->h = opts->image_size;
    out->w = opts->image_size;
    out->n_classes = (int)x.n_classes;
    snprintf(out->name, sizeof out->name, "%s", mg_data_basename(root));

cleanup:
    index_free(&x);
    mg_image_scratch_free(&scratch);
    if (st != MG_OK)
        mg_dataset_free(out);
    return st;
}

/* The loader's files in its order (index_folder), each as its path under
 * the root, a NUL, its size in 8 bytes (little-endian) and its bytes:
 * renaming an image, moving it to another class or editing it changes the
 * digest; files the loader skips (hidden ones, other extensions) do not. A
 * folder the loader would refuse is refused here, with the same message. */
mg_status mg_data_image_folder_digest(const char *root, mg_sha256_ctx *c, mg_error *err)
{
    mg_status st = MG_OK;
    folder_index x;
    char dir[PATH_MAX], path[PATH_MAX];
    static const char *const part_names[2][2] = {{"", ""}, {"train/", "test/"}};
    MG_CHECK(index_folder(root, &x, err));
    for (int p = 0; p < x.lay.n; p++) {
        const char *part = part_names[x.lay.n - 1][p];
        for (size_t k = 0; k < x.n_classes; k++) {
            const char *cls = x.classes[0].names[k];
            const name_list *fl = &x.files[(size_t)p * x.n_classes + k];
            MG_CHECK(join(dir, sizeof dir, x.lay.dir[p], cls, err));
            for (size_t i = 0; i < fl->n; i++) {
                struct stat sb;
                unsigned char size[8];
                uint64_t got = 0;
                MG_CHECK(join(path, sizeof path, dir, fl->names[i], err));
                if (stat(path, &sb) != 0)
                    MG_FAIL(MG_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
                for (int b = 0; b < 8; b++)
                    size[b] = (unsigned char)((uint64_t)sb.st_size >> (8 * b));
                mg_sha256_update(c, part, strlen(part));
                mg_sha256_update(c, cls, strlen(cls));
                mg_sha256_update(c, "/", 1);
                mg_sha256_update(c, fl->names[i], strlen(fl->names[i]) + 1);
                mg_sha256_update(c, size, sizeof size);
                MG_CHECK(mg_sha256_update_file(c, path, &got, err));
                if (got != (uint64_t)sb.st_size)
                    MG_FAIL(MG_ERR_IO, "%s: changed while it was read (%llu bytes, then %llu)", path,
                            (unsigned long long)sb.st_size, (unsigned long long)got);
            }
        }
    }
cleanup:
    index_free(&x);
    return st;
}
