/* verify.c: `miagrid store verify`: checks every node file of a store
 * against its checksum file, then reads it back whole and checks it against
 * its own key, so a file damaged by a copy, a full disk or a dying file
 * system is found before an analyst trusts it. A file that fails its
 * checksum is never handed to HDF5. */
#define _GNU_SOURCE
#include "store/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static const char *const MODEL_DATASETS[] = {"outputs/member/logits", "outputs/member/labels",
                                             "outputs/member/sample_index", "outputs/nonmember/logits",
                                             "outputs/nonmember/labels", "outputs/nonmember/sample_index",
                                             "history/loss", NULL};
static const char *const ATTACK_DATASETS[] = {"scores/score", "scores/is_member", "scores/sample_index",
                                              "roc/fpr", "roc/tpr", NULL};

typedef struct {
    FILE *out;
    size_t problems;
} report;

static void problem(report *r, const char *path, const char *what)
{
    fprintf(r->out, "problem: %s: %s\n", path, what);
    r->problems++;
}

/* Visit every dataset below a group and read the numeric ones whole (the
 * only kind miagrid writes into node files). A dataset that claims more
 * bytes than its storage could expand to (deflate's ratio is at most about
 * 1032) is refused instead of allocated. */
static herr_t read_all_cb(hid_t loc, const char *name, const H5O_info_t *info, void *op)
{
    char *bad = op; /* the first dataset that failed (MG_NAME_MAX * 4 bytes) */
    if (info->type != H5O_TYPE_DATASET)
        return 0;
    hid_t d = H5Dopen2(loc, name, H5P_DEFAULT);
    if (d < 0) {
        snprintf(bad, MG_NAME_MAX * 4, "%s", name);
        return 1;
    }
    hid_t t = H5Dget_type(d), sp = H5Dget_space(d);
    hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    size_t es = t >= 0 ? H5Tget_size(t) : 0;
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    int ok = n >= 0 && t >= 0 && es > 0;
    if (ok && n > 0 && (cls == H5T_INTEGER || cls == H5T_FLOAT)) {
        hsize_t stored = H5Dget_storage_size(d);
        ok = (uint64_t)n <= SIZE_MAX / es && (double)n * (double)es <= 1100.0 * (double)stored + 65536.0;
        void *buf = ok ? malloc((size_t)n * es) : NULL;
        ok = buf && H5Dread(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) >= 0;
        free(buf);
    }
    if (sp >= 0)
        H5Sclose(sp);
    if (t >= 0)
        H5Tclose(t);
    H5Dclose(d);
    if (!ok) {
        snprintf(bad, MG_NAME_MAX * 4, "%s", name);
        return 1;
    }
    return 0;
}

/* A message without its leading "path: ", which problem() prints already. */
static const char *without_path(const char *msg, const char *path)
{
    size_t n = strlen(path);
    return strncmp(msg, path, n) == 0 && msg[n] == ':' && msg[n + 1] == ' ' ? msg + n + 2 : msg;
}

static int check_node(report *r, const char *path, const char *key)
{
    size_t before = r->problems;
    mg_error e;
    if (mg_store_check_file(path, &e) != MG_OK) {
        const char *why = without_path(e.msg, path);
        problem(r, path, why);
        return 0;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        problem(r, path, "not a readable HDF5 file (truncated or corrupt)");
        return 0;
    }
    char k[80], status[32], kind[32], msg[400];
    char *recipe = NULL;
    if (!mg_store_only_hard_links(f)) {
        problem(r, path, "holds soft or external links, which miagrid never writes");
    } else if (mg_h5_get_attr_str(f, "key", k, sizeof k, NULL) != MG_OK || strcmp(k, key) != 0) {
        problem(r, path, "its key attribute does not match its file name");
    } else if (mg_h5_get_attr_str(f, "status", status, sizeof status, NULL) != MG_OK ||
               strcmp(status, "complete") != 0) {
        problem(r, path, "not marked complete");
    } else if (mg_h5_get_attr_str(f, "kind", kind, sizeof kind, NULL) != MG_OK) {
        problem(r, path, "no kind attribute");
    } else {
        recipe = malloc(1 << 16);
        char hex[33];
        if (!recipe || mg_h5_get_attr_str(f, "recipe", recipe, 1 << 16, NULL) != MG_OK) {
            problem(r, path, "no recipe attribute");
        } else {
            mg_sha256_hex(recipe, strlen(recipe), 16, hex);
            if (strcmp(hex, key) != 0)
                problem(r, path, "its recipe does not hash to its key (edited or damaged)");
        }
        const char *const *need = strcmp(kind, "attack") == 0 ? ATTACK_DATASETS : MODEL_DATASETS;
        for (int i = 0; need[i]; i++)
            if (H5Lexists(f, need[i], H5P_DEFAULT) <= 0) {
                snprintf(msg, sizeof msg, "missing dataset %s", need[i]);
                problem(r, path, msg);
            }
        char bad[MG_NAME_MAX * 4] = "";
        if (H5Ovisit(f, H5_INDEX_NAME, H5_ITER_INC, read_all_cb, bad) != 0 && bad[0]) {
            snprintf(msg, sizeof msg, "dataset %s does not read back (corrupt)", bad);
            problem(r, path, msg);
        }
    }
    free(recipe);
    H5Fclose(f);
    return r->problems == before;
}

static void check_root(report *r, const char *dir)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/results.h5", dir);
    if (access(path, F_OK) != 0) {
        fprintf(r->out, "note: %s does not exist yet (miagrid store rebuild STORE GRID writes it)\n", path);
        return;
    }
    mg_error e;
    if (mg_store_check_file(path, &e) != MG_OK) {
        const char *why = without_path(e.msg, path);
        char msg[1200];
        snprintf(msg, sizeof msg, "%s (rebuild it: miagrid store rebuild STORE)", why);
        problem(r, path, msg);
        return;
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        problem(r, path, "not a readable HDF5 file (rebuild it: miagrid store rebuild STORE)");
        return;
    }
    static const char *const need[] = {"grid/yaml", "cells", "metrics", "failures", NULL};
    for (int i = 0; need[i]; i++)
        if (H5Lexists(f, need[i], H5P_DEFAULT) <= 0) {
            char msg[128];
            snprintf(msg, sizeof msg, "missing %s (rebuild it: miagrid store rebuild STORE)", need[i]);
            problem(r, path, msg);
        }
    if (H5Lexists(f, "nodes", H5P_DEFAULT) > 0) {
        hid_t g = H5Gopen2(f, "nodes", H5P_DEFAULT);
        H5G_info_t gi;
        if (g >= 0 && H5Gget_info(g, &gi) >= 0) {
            for (hsize_t i = 0; i < gi.nlinks; i++) {
                char name[128];
                if (H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT) < 0)
                    continue;
                /* The link's target is looked for as a file, not followed:
                 * following it would have HDF5 parse a node file unchecked. */
                char target[4400];
                snprintf(target, sizeof target, "%s/nodes/%s.h5", dir, name);
                if (strspn(name, "0123456789abcdef") != 32 || name[32] || access(target, F_OK) != 0) {
                    char msg[200];
                    snprintf(msg, sizeof msg, "link nodes/%s points to a node file that is missing", name);
                    problem(r, path, msg);
                }
            }
        }
        if (g >= 0)
            H5Gclose(g);
    }
    H5Fclose(f);
}

mg_status mg_store_verify(const char *dir, int remove_bad, FILE *out, size_t *n_problems, mg_error *err)
{
    report r = {out, 0};
    char stamp[4096], nodes[4096];
    struct stat sb;
    mg_h5_quiet();
    snprintf(stamp, sizeof stamp, "%s/miagrid-store", dir);
    snprintf(nodes, sizeof nodes, "%s/nodes", dir);
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return mg_error_set(err, MG_ERR_IO, "%s: no such store directory", dir);
    if (access(stamp, R_OK) != 0)
        return mg_error_set(err, MG_ERR_IO, "%s: not a miagrid store (no miagrid-store stamp)", dir);
    mg_store *s = NULL;
    mg_status st = mg_store_open(dir, &s, err);
    if (st != MG_OK)
        return st;
    mg_store_close(&s);

    DIR *d = opendir(nodes);
    if (!d)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot list: %s", nodes, strerror(errno));
    size_t n_ok = 0, n_failed = 0, n_tmp = 0, n_removed = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        const char *name = e->d_name;
        size_t len = strlen(name);
        char path[4400];
        snprintf(path, sizeof path, "%s/%s", nodes, name);
        if (strstr(name, ".tmp.")) {
            fprintf(out, "note: %s: temporary file of an interrupted run (removed by the next run)\n", path);
            n_tmp++;
        } else if (len > 8 && strcmp(name + len - 8, ".ckpt.h5") == 0) {
            fprintf(out, "note: %s: training state of an interrupted node (the next run resumes from it)\n", path);
        } else if (len > 7 && strcmp(name + len - 7, ".failed") == 0) {
            n_failed++;
        } else if (len == 42 && strcmp(name + 32, ".h5.sha256") == 0) {
            path[strlen(path) - 7] = '\0';
            if (access(path, F_OK) != 0)
                fprintf(out, "note: %s.sha256: checksum of a node file that is not there (removed by the next "
                        "run)\n", path);
        } else if (len == 35 && strcmp(name + 32, ".h5") == 0) {
            char key[33], sidecar[4500];
            memcpy(key, name, 32);
            key[32] = '\0';
            snprintf(sidecar, sizeof sidecar, "%s.sha256", path);
            if (check_node(&r, path, key)) {
                n_ok++;
            } else if (remove_bad && unlink(path) == 0) {
                unlink(sidecar);
                fprintf(out, "removed: %s (the next run recomputes it)\n", path);
                n_removed++;
            }
        } else if (name[0] != '.') {
            problem(&r, path, "not a file miagrid writes");
        }
    }
    closedir(d);
    check_root(&r, dir);
    fprintf(out, "%zu node files ok, %zu problems, %zu failure records, %zu temporary files%s\n", n_ok, r.problems,
            n_failed, n_tmp, n_removed ? " (bad node files removed)" : "");
    if (n_problems)
        *n_problems = r.problems;
    return MG_OK;
}
