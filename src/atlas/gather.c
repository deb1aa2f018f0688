/* gather.c: the first pass of the atlas. Lists the nodes of a store from its
 * root file, has each rank read a disjoint share of the (many, small) node
 * files, and consolidates the attack nodes' per-sample scores into one
 * samples x nodes dataset written collectively with the MPI-IO driver. */
#define _POSIX_C_SOURCE 200809L
#include "atlas/atlas_internal.h"

#include <ctype.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miagrid/store.h"

/* Fixed-width strings keep the tables plain compound datasets (pandas reads
 * them in one call), as in results.h5. */
#define W_KEY 33
#define W_LABEL 64
#define W_CELLS 256
#define W_AXES 512

void mg_atlas_ctx_free(mg_atlas_ctx *c)
{
    for (size_t i = 0; i < c->n_raw; i++) {
        free(c->raw[i].sample_index);
        free(c->raw[i].score);
        free(c->raw[i].is_member);
    }
    free(c->raw);
    free(c->keys);
    free(c->kind);
    free(c->col_node);
    free(c->colstat);
    free(c->nonfinite);
    free(c->sample_index);
    free(c->local_score);
    free(c->local_member);
    free(c->cells);
    free(c->uses);
    free(c->tensors);
    memset(c, 0, sizeof *c);
}

static hid_t str_type(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    return t;
}

static int is_key(const char *s)
{
    size_t n = strlen(s);
    if (n != 32)
        return 0;
    for (size_t i = 0; i < n; i++)
        if (!isxdigit((unsigned char)s[i]) || isupper((unsigned char)s[i]))
            return 0;
    return 1;
}

static int cmp_key(const void *a, const void *b) { return strcmp(a, b); }

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return (x > y) - (x < y);
}

static int cmp_use(const void *a, const void *b)
{
    const mg_atlas_use *x = a, *y = b;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    return (x->cell_id > y->cell_id) - (x->cell_id < y->cell_id);
}

static long find_key(const mg_atlas_ctx *c, const char *key)
{
    const char(*hit)[33] = bsearch(key, c->keys, c->n_keys, sizeof *c->keys, cmp_key);
    return hit ? (long)(hit - c->keys) : -1;
}

/* Sort and drop repeats; returns the new count. */
static size_t sort_unique_u32(uint32_t *v, size_t n)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, cmp_u32);
    size_t k = 1;
    for (size_t i = 1; i < n; i++)
        if (v[i] != v[k - 1])
            v[k++] = v[i];
    return k;
}

/* ---- the root file (rank 0) ------------------------------------------------------- */

static mg_status read_root(mg_atlas_ctx *c, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t f = H5I_INVALID_HID, g = H5I_INVALID_HID, d = H5I_INVALID_HID, sp = H5I_INVALID_HID;
    hid_t ct = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    hid_t skey = str_type(W_KEY), slab = str_type(W_LABEL), s16 = str_type(16), saxes = str_type(W_AXES);
    struct metric {
        uint32_t cell_id;
        char model[16];
        char attack[W_LABEL];
        char node[W_KEY];
    } *metrics = NULL;

    f = H5Fopen(c->results, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        MG_FAIL(MG_ERR_HDF5, "%s: cannot open the root file (not an HDF5 file, or damaged; run miagrid on the "
                "grid to rewrite it)", c->results);

    if (H5Lexists(f, "nodes", H5P_DEFAULT) > 0) {
        H5G_info_t gi;
        g = H5Gopen2(f, "nodes", H5P_DEFAULT);
        if (g < 0 || H5Gget_info(g, &gi) < 0)
            MG_FAIL(MG_ERR_HDF5, "%s: cannot list /nodes", c->results);
        c->keys = mg_calloc(gi.nlinks + 1, sizeof *c->keys, "node keys", err);
        if (!c->keys)
            MG_FAIL(MG_ERR_NOMEM, "out of memory listing %llu nodes", (unsigned long long)gi.nlinks);
        for (hsize_t i = 0; i < gi.nlinks; i++) {
            char name[64];
            ssize_t len = H5Lget_name_by_idx(g, ".", H5_INDEX_NAME, H5_ITER_INC, i, name, sizeof name, H5P_DEFAULT);
            if (len > 0 && (size_t)len < sizeof name && is_key(name))
                snprintf(c->keys[c->n_keys++], W_KEY, "%s", name);
        }
        qsort(c->keys, c->n_keys, sizeof *c->keys, cmp_key);
    }

    if (H5Lexists(f, "cells", H5P_DEFAULT) > 0) {
        ct = H5Tcreate(H5T_COMPOUND, sizeof(mg_atlas_cell));
        H5Tinsert(ct, "cell_id", HOFFSET(mg_atlas_cell, cell_id), H5T_NATIVE_UINT32);
        H5Tinsert(ct, "dataset", HOFFSET(mg_atlas_cell, dataset), slab);
        H5Tinsert(ct, "arch", HOFFSET(mg_atlas_cell, arch), slab);
        H5Tinsert(ct, "prune", HOFFSET(mg_atlas_cell, prune), slab);
        H5Tinsert(ct, "sparsity", HOFFSET(mg_atlas_cell, sparsity), H5T_NATIVE_DOUBLE);
        H5Tinsert(ct, "defense", HOFFSET(mg_atlas_cell, defense), slab);
        H5Tinsert(ct, "seed", HOFFSET(mg_atlas_cell, seed), H5T_NATIVE_INT64);
        H5Tinsert(ct, "target_model", HOFFSET(mg_atlas_cell, target_model), skey);
        H5Tinsert(ct, "shadow_model", HOFFSET(mg_atlas_cell, shadow_model), skey);
        H5Tinsert(ct, "axes", HOFFSET(mg_atlas_cell, axes), saxes);
        d = H5Dopen2(f, "cells", H5P_DEFAULT);
        sp = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
        hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
        if (n < 0)
            MG_FAIL(MG_ERR_HDF5, "%s: cannot open /cells", c->results);
        c->cells = mg_calloc((size_t)n + 1, sizeof *c->cells, "cells", err);
        if (!c->cells)
            MG_FAIL(MG_ERR_NOMEM, "out of memory reading %lld cells", (long long)n);
        if (n > 0 && H5Dread(d, ct, H5S_ALL, H5S_ALL, H5P_DEFAULT, c->cells) < 0)
            MG_FAIL(MG_ERR_HDF5, "%s: cannot read /cells (not written by this version of miagrid?)", c->results);
        c->n_cells = (size_t)n;
        H5Sclose(sp);
        H5Dclose(d);
        sp = d = H5I_INVALID_HID;
    }

    if (H5Lexists(f, "metrics", H5P_DEFAULT) > 0) {
        mt = H5Tcreate(H5T_COMPOUND, sizeof(struct metric));
        H5Tinsert(mt, "cell_id", HOFFSET(struct metric, cell_id), H5T_NATIVE_UINT32);
        H5Tinsert(mt, "model", HOFFSET(struct metric, model), s16);
        H5Tinsert(mt, "attack", HOFFSET(struct metric, attack), slab);
        H5Tinsert(mt, "node", HOFFSET(struct metric, node), skey);
        d = H5Dopen2(f, "metrics", H5P_DEFAULT);
        sp = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
        hssize_t n = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
        if (n < 0)
            MG_FAIL(MG_ERR_HDF5, "%s: cannot open /metrics", c->results);
        metrics = mg_calloc((size_t)n + 1, sizeof *metrics, "metrics", err);
        c->uses = mg_calloc((size_t)n + 1, sizeof *c->uses, "node uses", err);
        if (!metrics || !c->uses)
            MG_FAIL(MG_ERR_NOMEM, "out of memory reading %lld metric rows", (long long)n);
        if (n > 0 && H5Dread(d, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, metrics) < 0)
            MG_FAIL(MG_ERR_HDF5, "%s: cannot read /metrics (not written by this version of miagrid?)", c->results);
        for (hssize_t i = 0; i < n; i++) {
            const struct metric *m = &metrics[i];
            if (!m->attack[0] || strcmp(m->model, "target") != 0)
                continue;
            long k = find_key(c, m->node);
            if (k < 0)
                continue;
            mg_atlas_use *u = &c->uses[c->n_uses++];
            u->node = (uint32_t)k;
            u->cell_id = m->cell_id;
            snprintf(u->attack, sizeof u->attack, "%s", m->attack);
        }
        /* One row per (node, cell): each cell has a row per metric. */
        qsort(c->uses, c->n_uses, sizeof *c->uses, cmp_use);
        size_t k = 0;
        for (size_t i = 0; i < c->n_uses; i++)
            if (k == 0 || cmp_use(&c->uses[i], &c->uses[k - 1]) != 0)
                c->uses[k++] = c->uses[i];
        c->n_uses = k;
    }
cleanup:
    free(metrics);
    if (sp >= 0)
        H5Sclose(sp);
    if (d >= 0)
        H5Dclose(d);
    if (g >= 0)
        H5Gclose(g);
    if (f >= 0)
        H5Fclose(f);
    if (ct >= 0)
        H5Tclose(ct);
    if (mt >= 0)
        H5Tclose(mt);
    H5Tclose(skey);
    H5Tclose(slab);
    H5Tclose(s16);
    H5Tclose(saxes);
    return st;
}

/* ---- one node file ------------------------------------------------------------------ */

typedef struct {
    mg_atlas_tensor *v;
    size_t n, cap;
} tensor_list;

static mg_status list_tensors(hid_t f, uint32_t node, int kind, const char *role, const char *input,
                              double requested, tensor_list *tl, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t mg = H5I_INVALID_HID;
    H5G_info_t gi;
    if (H5Lexists(f, "model", H5P_DEFAULT) <= 0)
        return mg_error_set(err, MG_ERR_DATA, "a %s node without a model group", kind == MG_ATLAS_NODE_TRAIN ? "train" : "prune");
    mg = H5Gopen2(f, "model", H5P_DEFAULT);
    if (mg < 0 || H5Gget_info(mg, &gi) < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot list its model group");
    for (hsize_t l = 0; l < gi.nlinks; l++) {
        char layer[64], path[96];
        ssize_t len = H5Lget_name_by_idx(mg, ".", H5_INDEX_NAME, H5_ITER_INC, l, layer, sizeof layer, H5P_DEFAULT);
        if (len <= 0 || (size_t)len >= sizeof layer)
            continue;
        snprintf(path, sizeof path, "%s/weight", layer);
        if (H5Lexists(mg, layer, H5P_DEFAULT) <= 0 || H5Lexists(mg, path, H5P_DEFAULT) <= 0)
            continue;
        hid_t d = H5Dopen2(mg, path, H5P_DEFAULT);
        hid_t sp = d >= 0 ? H5Dget_space(d) : H5I_INVALID_HID;
        hsize_t dims[H5S_MAX_RANK];
        int nd = sp >= 0 ? H5Sget_simple_extent_dims(sp, dims, NULL) : -1;
        if (sp >= 0)
            H5Sclose(sp);
        if (d >= 0)
            H5Dclose(d);
        if (nd < 0)
            MG_FAIL(MG_ERR_HDF5, "cannot open model/%s", path);
        if (nd < 2 || nd > 4)
            continue;
        hsize_t cols = 1;
        for (int i = 1; i < nd; i++)
            cols *= dims[i];
        if (dims[0] * cols < 256)
            continue;
        if (tl->n == tl->cap) {
            size_t nc = tl->cap ? 2 * tl->cap : 16;
            mg_atlas_tensor *nv = realloc(tl->v, nc * sizeof *nv);
            if (!nv)
                MG_FAIL(MG_ERR_NOMEM, "out of memory listing weight tensors");
            tl->v = nv;
            tl->cap = nc;
        }
        mg_atlas_tensor *t = &tl->v[tl->n++];
        memset(t, 0, sizeof *t);
        t->node = node;
        t->kind = kind;
        snprintf(t->layer, sizeof t->layer, "%s", layer);
        snprintf(t->role, sizeof t->role, "%s", role);
        snprintf(t->input, sizeof t->input, "%s", input);
        t->requested_sparsity = requested;
        t->ndim = nd;
        for (int i = 0; i < nd; i++)
            t->dims[i] = dims[i];
        snprintf(path, sizeof path, "%s/mask", layer);
        t->has_mask = H5Lexists(mg, path, H5P_DEFAULT) > 0;
    }
cleanup:
    if (mg >= 0)
        H5Gclose(mg);
    return st;
}

static mg_status read_scores(hid_t f, mg_atlas_raw *r, mg_error *err)
{
    mg_status st = MG_OK;
    hsize_t d1[4], d2[4], d3[4];
    int n1 = 0, n2 = 0, n3 = 0;
    uint32_t *sorted = NULL;
    MG_CHECK(mg_h5_read(f, "scores/score", H5T_NATIVE_DOUBLE, (void **)&r->score, d1, &n1, err));
    MG_CHECK(mg_h5_read(f, "scores/is_member", H5T_NATIVE_UINT8, (void **)&r->is_member, d2, &n2, err));
    MG_CHECK(mg_h5_read(f, "scores/sample_index", H5T_NATIVE_UINT32, (void **)&r->sample_index, d3, &n3, err));
    if (n1 != 1 || n2 != 1 || n3 != 1 || d1[0] != d2[0] || d1[0] != d3[0])
        MG_FAIL(MG_ERR_DATA, "scores/{score,is_member,sample_index} are not three vectors of one length");
    r->n = (size_t)d1[0];
    sorted = mg_malloc(r->n + 1, sizeof *sorted, "sample indices", err);
    if (!sorted)
        MG_FAIL(MG_ERR_NOMEM, "out of memory checking sample indices");
    memcpy(sorted, r->sample_index, r->n * sizeof *sorted);
    if (sort_unique_u32(sorted, r->n) != r->n)
        MG_FAIL(MG_ERR_DATA, "scores/sample_index lists a sample twice");
cleanup:
    free(sorted);
    return st;
}

/* Read node i into c (attack scores) or tl (weight matrices); returns its
 * kind, or MG_ATLAS_NODE_SKIPPED with the reason in why. */
static int read_node(mg_atlas_ctx *c, uint32_t i, tensor_list *tl, mg_error *why)
{
    char path[4200], status[32] = "", key[64] = "", kind[32] = "";
    const char *k = c->keys[i];
    hid_t f = H5I_INVALID_HID;
    int result = MG_ATLAS_NODE_SKIPPED;
    mg_atlas_raw r;
    memset(&r, 0, sizeof r);
    snprintf(path, sizeof path, "%s/nodes/%s.h5", c->store, k);
    if (access(path, R_OK) != 0) {
        mg_error_set(why, MG_ERR_IO, "%s: the node file is missing or unreadable", path);
        return result;
    }
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0) {
        mg_error_set(why, MG_ERR_HDF5, "%s: not a readable HDF5 file", path);
        return result;
    }
    if (mg_h5_get_attr_str(f, "status", status, sizeof status, why) != MG_OK ||
        mg_h5_get_attr_str(f, "key", key, sizeof key, why) != MG_OK ||
        mg_h5_get_attr_str(f, "kind", kind, sizeof kind, why) != MG_OK) {
        mg_error_prefix(why, "%s: ", path);
        goto done;
    }
    if (strcmp(status, "complete") != 0 || strcmp(key, k) != 0) {
        mg_error_set(why, MG_ERR_STATE, "%s: not a complete node of this key (status \"%s\", key %s)", path, status,
                     key);
        goto done;
    }
    if (!strcmp(kind, "attack")) {
        r.node = i;
        if (read_scores(f, &r, why) != MG_OK) {
            mg_error_prefix(why, "%s: ", path);
            goto done;
        }
        mg_atlas_raw *nr = realloc(c->raw, (c->n_raw + 1) * sizeof *nr);
        if (!nr) {
            mg_error_set(why, MG_ERR_NOMEM, "%s: out of memory keeping its scores", path);
            goto done;
        }
        c->raw = nr;
        c->raw[c->n_raw++] = r;
        memset(&r, 0, sizeof r);
        result = MG_ATLAS_NODE_ATTACK;
    } else if (!strcmp(kind, "train") || !strcmp(kind, "prune")) {
        int kd = kind[0] == 't' ? MG_ATLAS_NODE_TRAIN : MG_ATLAS_NODE_PRUNE;
        char role[16] = "", recipe[4096] = "", input[33] = "";
        double requested = NAN;
        mg_h5_get_attr_str(f, "role", role, sizeof role, NULL);
        if (kd == MG_ATLAS_NODE_PRUNE) {
            mg_h5_get_attr_f64(f, "requested_sparsity", &requested, NULL);
            /* The dense model a pruned one came from is the recipe's "input". */
            if (mg_h5_get_attr_str(f, "recipe", recipe, sizeof recipe, NULL) == MG_OK) {
                const char *p = strstr(recipe, "\"input\":\"");
                if (p && strlen(p + 9) >= 32)
                    snprintf(input, sizeof input, "%.32s", p + 9);
            }
        }
        if (list_tensors(f, i, kd, role, input, requested, tl, why) != MG_OK) {
            mg_error_prefix(why, "%s: ", path);
            goto done;
        }
        result = kd;
    } else {
        result = MG_ATLAS_NODE_OTHER;
    }
done:
    free(r.sample_index);
    free(r.score);
    free(r.is_member);
    H5Fclose(f);
    return result;
}

/* ---- the whole gather ------------------------------------------------------------------ */

static int cmp_tensor(const void *a, const void *b)
{
    const mg_atlas_tensor *x = a, *y = b;
    if (x->node != y->node)
        return x->node < y->node ? -1 : 1;
    return strcmp(x->layer, y->layer);
}

/* Allgatherv of n_local elements of `size` bytes each into a new buffer. */
static mg_status allgather_bytes(MPI_Comm comm, const void *mine, size_t n_local, size_t size, void **all,
                                 size_t *n_all, mg_error *err)
{
    mg_status st = MG_OK;
    int nranks = 1;
    MPI_Comm_size(comm, &nranks);
    int *counts = mg_calloc((size_t)nranks, sizeof *counts, "counts", err);
    int *displs = mg_calloc((size_t)nranks, sizeof *displs, "offsets", err);
    *all = NULL;
    *n_all = 0;
    if (!counts || !displs)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory gathering from all ranks");
    if (n_local * size > 2147483647u)
        MG_FAIL(MG_ERR_NOMEM, "atlas: one rank's share (%zu bytes) is too large for one MPI message", n_local * size);
    int bytes = (int)(n_local * size);
    if (MPI_Allgather(&bytes, 1, MPI_INT, counts, 1, MPI_INT, comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: gathering counts from all ranks failed");
    size_t total = 0;
    for (int r = 0; r < nranks; r++) {
        displs[r] = (int)total;
        total += (size_t)counts[r];
        if (total > 2147483647u)
            MG_FAIL(MG_ERR_NOMEM, "atlas: more than 2 GiB to gather in one MPI message");
    }
    *all = mg_malloc(total + 1, 1, "gathered data", err);
    if (!*all)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory gathering from all ranks");
    if (MPI_Allgatherv(n_local ? mine : *all, bytes, MPI_BYTE, *all, counts, displs, MPI_BYTE, comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: gathering from all ranks failed");
    *n_all = total / size;
cleanup:
    if (st != MG_OK) {
        free(*all);
        *all = NULL;
    }
    free(counts);
    free(displs);
    return st;
}

/* The sorted union of every rank's sample indices. */
static mg_status build_rows(mg_atlas_ctx *c, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *mine = NULL;
    size_t n = 0;
    void *all = NULL;
    size_t n_all = 0;
    for (size_t i = 0; i < c->n_raw; i++)
        n += c->raw[i].n;
    mine = mg_malloc(n + 1, sizeof *mine, "sample indices", err);
    if (!mine)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory collecting sample indices");
    n = 0;
    for (size_t i = 0; i < c->n_raw; i++) {
        memcpy(mine + n, c->raw[i].sample_index, c->raw[i].n * sizeof *mine);
        n += c->raw[i].n;
    }
    n = sort_unique_u32(mine, n);
    MG_CHECK(allgather_bytes(c->comm, mine, n, sizeof *mine, &all, &n_all, err));
    c->sample_index = all;
    all = NULL;
    c->n_samples = sort_unique_u32(c->sample_index, n_all);
cleanup:
    free(mine);
    free(all);
    return st;
}

/* Place this rank's columns into the matrix rows, compute their statistics,
 * and share every column's statistics with all ranks. */
static mg_status build_columns(mg_atlas_ctx *c, mg_error *err)
{
    enum { F_MEAN, F_STD, F_MEDIAN, F_SCORES, F_MEMBERS, F_NONFINITE, F_N };
    mg_status st = MG_OK;
    size_t M = c->n_samples, n = c->n_raw;
    double *packed = NULL, *col = NULL;
    int8_t *mcol = NULL;
    long *col_of = NULL;
    packed = mg_calloc(c->n_cols * F_N + 1, sizeof *packed, "column statistics", err);
    col = mg_malloc(M + 1, sizeof *col, "column", err);
    mcol = mg_malloc(M + 1, sizeof *mcol, "column", err);
    c->local_score = mg_malloc(M * n + 1, sizeof *c->local_score, "score columns", err);
    c->local_member = mg_malloc(M * n + 1, sizeof *c->local_member, "membership columns", err);
    c->colstat = mg_calloc(c->n_cols + 1, sizeof *c->colstat, "column statistics", err);
    c->nonfinite = mg_calloc(c->n_cols + 1, sizeof *c->nonfinite, "non-finite counts", err);
    col_of = mg_malloc(c->n_keys + 1, sizeof *col_of, "column map", err);
    if (!packed || !col || !mcol || !c->local_score || !c->local_member || !c->colstat || !c->nonfinite || !col_of)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory for %zu samples x %zu nodes", M, n);
    for (size_t i = 0; i < c->n_keys; i++)
        col_of[i] = -1;
    for (size_t j = 0; j < c->n_cols; j++)
        col_of[c->col_node[j]] = (long)j;

    for (size_t r = 0; r < n; r++) {
        const mg_atlas_raw *raw = &c->raw[r];
        size_t j = (size_t)col_of[raw->node];
        uint32_t nonfinite = 0;
        for (size_t i = 0; i < M; i++) {
            col[i] = NAN;
            mcol[i] = -1;
        }
        for (size_t e = 0; e < raw->n; e++) {
            const uint32_t *hit = bsearch(&raw->sample_index[e], c->sample_index, M, sizeof *hit, cmp_u32);
            size_t i = (size_t)(hit - c->sample_index);
            /* A non-finite score (an infinite loss) cannot be standardised:
             * it counts as missing and is reported per node. */
            if (isfinite(raw->score[e]))
                col[i] = raw->score[e];
            else
                nonfinite++;
            mcol[i] = raw->is_member[e] ? 1 : 0;
        }
        mg_atlas_colstat cs;
        MG_CHECK(mg_atlas_column_stats(col, mcol, M, &cs, err));
        double *p = packed + j * F_N;
        p[F_MEAN] = cs.mean;
        p[F_STD] = cs.std;
        p[F_MEDIAN] = cs.median_nonmember;
        p[F_SCORES] = cs.n_scores;
        p[F_MEMBERS] = cs.n_members;
        p[F_NONFINITE] = nonfinite;
        for (size_t i = 0; i < M; i++) {
            c->local_score[i * n + r] = col[i];
            c->local_member[i * n + r] = mcol[i];
        }
    }
    /* Each column has one owner and zeros elsewhere, so the sum is exact and
     * the statistics do not depend on the rank count. */
    if (c->n_cols > 0 &&
        MPI_Allreduce(MPI_IN_PLACE, packed, (int)(c->n_cols * F_N), MPI_DOUBLE, MPI_SUM, c->comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: sharing column statistics failed");
    for (size_t j = 0; j < c->n_cols; j++) {
        const double *p = packed + j * F_N;
        c->colstat[j].mean = p[F_MEAN];
        c->colstat[j].std = p[F_STD];
        c->colstat[j].median_nonmember = p[F_MEDIAN];
        c->colstat[j].n_scores = (uint32_t)p[F_SCORES];
        c->colstat[j].n_members = (uint32_t)p[F_MEMBERS];
        c->nonfinite[j] = (uint32_t)p[F_NONFINITE];
    }
cleanup:
    free(packed);
    free(col);
    free(mcol);
    free(col_of);
    return st;
}

mg_status mg_atlas_gather(mg_atlas_ctx *c, mg_error *err)
{
    mg_status st = MG_OK;
    tensor_list tl = {NULL, 0, 0};
    void *all = NULL;
    size_t n_all = 0;
    mg_error why;
    mg_error_clear(&why);

    if (c->rank == 0)
        st = read_root(c, err);
    MG_CHECK(mg_atlas_agree(c->comm, st, err));

    unsigned long long nk = c->n_keys;
    if (MPI_Bcast(&nk, 1, MPI_UNSIGNED_LONG_LONG, 0, c->comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: broadcasting the node list failed");
    if (c->rank != 0) {
        c->n_keys = (size_t)nk;
        c->keys = mg_calloc(c->n_keys + 1, sizeof *c->keys, "node keys", err);
    }
    c->kind = mg_calloc(c->n_keys + 1, sizeof *c->kind, "node kinds", err);
    st = c->keys && c->kind ? MG_OK : MG_ERR_NOMEM;
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    if (c->n_keys > 0 &&
        MPI_Bcast(c->keys, (int)(c->n_keys * sizeof *c->keys), MPI_CHAR, 0, c->comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: broadcasting the node list failed");

    /* Node i is read by rank i % size: disjoint shares of the small files. */
    for (size_t i = (size_t)c->rank; i < c->n_keys; i += (size_t)c->size) {
        int kd = read_node(c, (uint32_t)i, &tl, &why);
        if (kd == MG_ATLAS_NODE_SKIPPED) {
            if (c->strict) {
                st = mg_error_set(err, why.status, "%s (--strict: unreadable node files are errors)", why.msg);
                break;
            }
            fprintf(stderr, "miagrid-atlas: warning: skipping node %s: %s\n", c->keys[i], why.msg);
        }
        c->kind[i] = kd;
    }
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    if (c->n_keys > 0 &&
        MPI_Allreduce(MPI_IN_PLACE, c->kind, (int)c->n_keys, MPI_INT, MPI_MAX, c->comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: sharing node kinds failed");

    size_t n_skipped = 0;
    for (size_t i = 0; i < c->n_keys; i++) {
        c->n_cols += c->kind[i] == MG_ATLAS_NODE_ATTACK;
        c->n_model_nodes += c->kind[i] == MG_ATLAS_NODE_TRAIN || c->kind[i] == MG_ATLAS_NODE_PRUNE;
        n_skipped += c->kind[i] == MG_ATLAS_NODE_SKIPPED;
    }
    if (c->n_cols == 0)
        MG_FAIL(MG_ERR_STATE, "%s: no complete attack nodes (%zu nodes listed in %s, %zu of them unreadable): run "
                "miagrid on the store's grid first", c->store, c->n_keys, c->results, n_skipped);
    c->col_node = mg_calloc(c->n_cols, sizeof *c->col_node, "columns", err);
    st = c->col_node ? MG_OK : MG_ERR_NOMEM;
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    for (size_t i = 0, j = 0; i < c->n_keys; i++)
        if (c->kind[i] == MG_ATLAS_NODE_ATTACK)
            c->col_node[j++] = (uint32_t)i;

    st = build_rows(c, err);
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    if (c->n_samples == 0)
        MG_FAIL(MG_ERR_STATE, "%s: the attack nodes hold no scores", c->store);
    if (c->n_samples > 2147483647u || c->n_cols > 2147483647u)
        MG_FAIL(MG_ERR_NOMEM, "%s: %zu samples x %zu nodes is beyond ScaLAPACK's 32-bit indices", c->store,
                c->n_samples, c->n_cols);
    st = build_columns(c, err);
    MG_CHECK(mg_atlas_agree(c->comm, st, err));

    st = allgather_bytes(c->comm, tl.v, tl.n, sizeof *tl.v, &all, &n_all, err);
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    c->tensors = all;
    c->n_tensors = n_all;
    all = NULL;
    qsort(c->tensors, c->n_tensors, sizeof *c->tensors, cmp_tensor);
cleanup:
    free(tl.v);
    free(all);
    return st;
}

/* ---- writing the consolidated matrix ------------------------------------------------------ */

typedef struct {
    uint32_t column;
    char node[W_KEY];
    char attack[W_LABEL];
    uint32_t n_cells;
    char cells[W_CELLS];
    char dataset[W_LABEL], arch[W_LABEL], prune[W_LABEL];
    double sparsity;
    char defense[W_LABEL];
    int64_t seed;
    char target_model[W_KEY], shadow_model[W_KEY];
    char axes[W_AXES];
    uint32_t n_scores, n_members, n_nonfinite;
    double mean, std, median_nonmember;
} node_row;

static const mg_atlas_cell *find_cell(const mg_atlas_ctx *c, uint32_t id)
{
    for (size_t i = 0; i < c->n_cells; i++)
        if (c->cells[i].cell_id == id)
            return &c->cells[i];
    return NULL;
}

/* Rank 0: one row per column, joined with the first cell that uses it. */
static node_row *node_rows(const mg_atlas_ctx *c, mg_error *err)
{
    node_row *rows = mg_calloc(c->n_cols + 1, sizeof *rows, "node table", err);
    if (!rows)
        return NULL;
    size_t u = 0;
    for (size_t j = 0; j < c->n_cols; j++) {
        node_row *r = &rows[j];
        uint32_t node = c->col_node[j];
        r->column = (uint32_t)j;
        snprintf(r->node, sizeof r->node, "%s", c->keys[node]);
        r->sparsity = NAN;
        r->seed = -1;
        while (u < c->n_uses && c->uses[u].node < node)
            u++;
        size_t len = 0;
        const mg_atlas_cell *first = NULL;
        for (; u < c->n_uses && c->uses[u].node == node; u++) {
            if (r->n_cells == 0) {
                snprintf(r->attack, sizeof r->attack, "%s", c->uses[u].attack);
                first = find_cell(c, c->uses[u].cell_id);
            }
            r->n_cells++;
            if (len < sizeof r->cells)
                len += (size_t)snprintf(r->cells + len, sizeof r->cells - len, "%s%u", len ? "," : "",
                                        (unsigned)c->uses[u].cell_id);
        }
        if (len >= sizeof r->cells)
            memcpy(r->cells + sizeof r->cells - 4, "...", 4);
        if (first) {
            memcpy(r->dataset, first->dataset, sizeof r->dataset);
            memcpy(r->arch, first->arch, sizeof r->arch);
            memcpy(r->prune, first->prune, sizeof r->prune);
            r->sparsity = first->sparsity;
            memcpy(r->defense, first->defense, sizeof r->defense);
            r->seed = first->seed;
            memcpy(r->target_model, first->target_model, sizeof r->target_model);
            memcpy(r->shadow_model, first->shadow_model, sizeof r->shadow_model);
            memcpy(r->axes, first->axes, sizeof r->axes);
        }
        r->n_scores = c->colstat[j].n_scores;
        r->n_members = c->colstat[j].n_members;
        r->n_nonfinite = c->nonfinite[j];
        r->mean = c->colstat[j].mean;
        r->std = c->colstat[j].std;
        r->median_nonmember = c->colstat[j].median_nonmember;
    }
    return rows;
}

static hid_t node_row_type(void)
{
    hid_t skey = str_type(W_KEY), slab = str_type(W_LABEL), scells = str_type(W_CELLS), saxes = str_type(W_AXES);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(node_row));
    H5Tinsert(t, "column", HOFFSET(node_row, column), H5T_NATIVE_UINT32);
    H5Tinsert(t, "node", HOFFSET(node_row, node), skey);
    H5Tinsert(t, "attack", HOFFSET(node_row, attack), slab);
    H5Tinsert(t, "n_cells", HOFFSET(node_row, n_cells), H5T_NATIVE_UINT32);
    H5Tinsert(t, "cells", HOFFSET(node_row, cells), scells);
    H5Tinsert(t, "dataset", HOFFSET(node_row, dataset), slab);
    H5Tinsert(t, "arch", HOFFSET(node_row, arch), slab);
    H5Tinsert(t, "prune", HOFFSET(node_row, prune), slab);
    H5Tinsert(t, "sparsity", HOFFSET(node_row, sparsity), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "defense", HOFFSET(node_row, defense), slab);
    H5Tinsert(t, "seed", HOFFSET(node_row, seed), H5T_NATIVE_INT64);
    H5Tinsert(t, "target_model", HOFFSET(node_row, target_model), skey);
    H5Tinsert(t, "shadow_model", HOFFSET(node_row, shadow_model), skey);
    H5Tinsert(t, "axes", HOFFSET(node_row, axes), saxes);
    H5Tinsert(t, "n_scores", HOFFSET(node_row, n_scores), H5T_NATIVE_UINT32);
    H5Tinsert(t, "n_members", HOFFSET(node_row, n_members), H5T_NATIVE_UINT32);
    H5Tinsert(t, "n_nonfinite", HOFFSET(node_row, n_nonfinite), H5T_NATIVE_UINT32);
    H5Tinsert(t, "mean", HOFFSET(node_row, mean), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "std", HOFFSET(node_row, std), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "median_nonmember", HOFFSET(node_row, median_nonmember), H5T_NATIVE_DOUBLE);
    H5Tclose(skey);
    H5Tclose(slab);
    H5Tclose(scells);
    H5Tclose(saxes);
    return t;
}

/* Collective: a contiguous samples x nodes dataset, each rank writing its columns. */
static mg_status write_columns(mg_atlas_ctx *c, hid_t grp, const char *name, hid_t type, const void *local,
                               mg_error *err)
{
    mg_status st = MG_OK;
    hsize_t dims[2] = {c->n_samples, c->n_cols};
    hid_t fspace = H5Screate_simple(2, dims, NULL), mspace = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE), dxpl = mg_atlas_dxpl_collective();
    if (fspace < 0 || dcpl < 0 || dxpl < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot set up /atlas/%s", name);
    /* Every element is written below: no fill pass over the file first. */
    H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
    H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
    dset = H5Dcreate2(grp, name, type, fspace, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (dset < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot create /atlas/%s", name);
    H5Sselect_none(fspace);
    for (size_t r = 0, j = 0; r < c->n_raw; r++) {
        while (c->col_node[j] != c->raw[r].node)
            j++;
        hsize_t start[2] = {0, j}, count[2] = {c->n_samples, 1};
        if (H5Sselect_hyperslab(fspace, H5S_SELECT_OR, start, NULL, count, NULL) < 0)
            MG_FAIL(MG_ERR_HDF5, "atlas: cannot select the columns of /atlas/%s", name);
    }
    hsize_t mdims[2] = {c->n_samples, c->n_raw};
    mspace = H5Screate_simple(2, mdims, NULL);
    if (mspace < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot set up /atlas/%s", name);
    if (c->n_raw == 0)
        H5Sselect_none(mspace);
    if (H5Dwrite(dset, type, mspace, fspace, dxpl, local) < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: collective write of /atlas/%s failed (disk full?)", name);
cleanup:
    if (dset >= 0)
        H5Dclose(dset);
    if (fspace >= 0)
        H5Sclose(fspace);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (dxpl >= 0)
        H5Pclose(dxpl);
    return st;
}

mg_status mg_atlas_write_matrix(mg_atlas_ctx *c, hid_t file, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t grp = H5I_INVALID_HID, skey = str_type(W_KEY), nt = node_row_type();
    node_row *rows = NULL;
    char(*colkeys)[W_KEY] = NULL;
    mg_strbuf skipped;
    mg_strbuf_init(&skipped);

    grp = H5Gcreate2(file, "atlas", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (grp < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot create /atlas in the output file");
    hsize_t m = c->n_samples, n = c->n_cols;
    MG_CHECK(mg_atlas_write_root(c->comm, grp, "sample_index", H5T_NATIVE_UINT32, 1, &m, c->sample_index, err));
    colkeys = mg_calloc(c->n_cols, sizeof *colkeys, "column keys", err);
    if (!colkeys)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory");
    for (size_t j = 0; j < c->n_cols; j++)
        memcpy(colkeys[j], c->keys[c->col_node[j]], W_KEY);
    MG_CHECK(mg_atlas_write_root(c->comm, grp, "node_key", skey, 1, &n, colkeys, err));
    MG_CHECK(write_columns(c, grp, "scores", H5T_NATIVE_DOUBLE, c->local_score, err));
    MG_CHECK(write_columns(c, grp, "is_member", H5T_NATIVE_INT8, c->local_member, err));
    if (c->rank == 0) {
        rows = node_rows(c, err);
        st = rows ? MG_OK : MG_ERR_NOMEM;
    }
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    MG_CHECK(mg_atlas_write_root(c->comm, grp, "nodes", nt, 1, &n, rows, err));

    size_t n_skipped = 0;
    for (size_t i = 0; i < c->n_keys; i++)
        if (c->kind[i] == MG_ATLAS_NODE_SKIPPED) {
            mg_strbuf_printf(&skipped, "%s%s", n_skipped ? "," : "", c->keys[i]);
            n_skipped++;
        }
    MG_CHECK(mg_h5_attr_str(grp, "store", c->store, err));
    MG_CHECK(mg_h5_attr_i64(grp, "n_samples", (int64_t)c->n_samples, err));
    MG_CHECK(mg_h5_attr_i64(grp, "n_nodes", (int64_t)c->n_cols, err));
    MG_CHECK(mg_h5_attr_i64(grp, "n_skipped", (int64_t)n_skipped, err));
    MG_CHECK(mg_h5_attr_str(grp, "skipped_nodes", skipped.s ? skipped.s : "", err));
    MG_CHECK(mg_h5_attr_str(grp, "miagrid_version", MG_VERSION, err));
cleanup:
    if (grp >= 0)
        H5Gclose(grp);
    H5Tclose(skey);
    H5Tclose(nt);
    free(rows);
    free(colkeys);
    mg_strbuf_free(&skipped);
    return st;
}
