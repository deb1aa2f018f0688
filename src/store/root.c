/* root.c: the root file results.h5 that analysts open. Rebuilt whole from the
 * grid, the plan and the node files, written under a temporary name and
 * renamed, so it can always be regenerated and is never seen half-written. */
#define _GNU_SOURCE
#include "store/store_internal.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Fixed-width strings keep the tables plain compound datasets that pandas
 * turns into a DataFrame in one call. */
#define W_LABEL 64
#define W_KEY 33
#define W_AXES 2048

typedef struct {
    uint32_t cell_id;
    char dataset[W_LABEL];
    char arch[W_LABEL];
    char prune[W_LABEL];
    double sparsity;
    char defense[W_LABEL];
    int64_t seed;
    char status[16];
    char target_model[W_KEY];
    char shadow_model[W_KEY];
    char axes[W_AXES];
} cell_row;

typedef struct {
    uint32_t cell_id;
    char model[16];
    char attack[W_LABEL];
    char metric[W_LABEL];
    double value;
    char node[W_KEY];
} metric_row;

typedef struct {
    char name[W_LABEL];
    double value;
} named_value;

typedef struct {
    int loaded, present;
    named_value *vals[2]; /* model nodes: [0]; attack nodes: [0] target, [1] shadow */
    size_t n[2];
} node_metrics;

const char *mg_node_state_str(mg_node_state s)
{
    switch (s) {
    case MG_NODE_PENDING: return "pending";
    case MG_NODE_DONE: return "complete";
    case MG_NODE_FAILED: return "failed";
    case MG_NODE_SKIPPED: return "skipped";
    }
    return "unknown";
}

static hid_t str_type(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    return t;
}

typedef struct {
    named_value *v;
    size_t n, cap;
} value_list;

static herr_t collect_attr(hid_t loc, const char *name, const H5A_info_t *info, void *op)
{
    value_list *l = op;
    (void)info;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0)
        return 0;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t cls = H5Tget_class(t);
    double v;
    /* One number: an array attribute would not fit in v. */
    int scalar = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
    if (sp >= 0)
        H5Sclose(sp);
    if (scalar && (cls == H5T_FLOAT || cls == H5T_INTEGER) && H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0) {
        if (l->n == l->cap) {
            size_t nc = l->cap ? 2 * l->cap : 16;
            named_value *nv = realloc(l->v, nc * sizeof *nv);
            if (!nv) {
                H5Tclose(t);
                H5Aclose(a);
                return -1;
            }
            l->v = nv;
            l->cap = nc;
        }
        snprintf(l->v[l->n].name, sizeof l->v[l->n].name, "%s", name);
        l->v[l->n].value = v;
        l->n++;
    }
    H5Tclose(t);
    H5Aclose(a);
    return 0;
}

/* Read every numeric attribute of group `path` in file f as (name, value), in
 * name order. A missing group gives an empty list. */
static void read_group(hid_t f, const char *path, named_value **out, size_t *n)
{
    value_list l = {NULL, 0, 0};
    *out = NULL;
    *n = 0;
    if (H5Lexists(f, path, H5P_DEFAULT) <= 0)
        return;
    hid_t g = H5Gopen2(f, path, H5P_DEFAULT);
    if (g < 0)
        return;
    hsize_t idx = 0;
    H5Aiterate2(g, H5_INDEX_NAME, H5_ITER_INC, &idx, collect_attr, &l);
    H5Gclose(g);
    *out = l.v;
    *n = l.n;
}

static void load_node(const mg_store *s, const mg_node *node, node_metrics *nm)
{
    if (nm->loaded)
        return;
    nm->loaded = 1;
    if (!mg_store_node_complete(s, node->key))
        return;
    hid_t f;
    if (mg_store_node_open(s, node->key, &f, NULL) != MG_OK)
        return;
    nm->present = 1;
    if (node->kind == MG_NODE_ATTACK) {
        read_group(f, "metrics/target", &nm->vals[0], &nm->n[0]);
        read_group(f, "metrics/shadow", &nm->vals[1], &nm->n[1]);
    } else {
        read_group(f, "metrics", &nm->vals[0], &nm->n[0]);
    }
    H5Fclose(f);
}

static void arch_label(const mg_arch_spec *a, char *buf, size_t n)
{
    if (strcmp(a->name, "mlp") != 0) {
        snprintf(buf, n, "%s", a->name);
        return;
    }
    size_t len = (size_t)snprintf(buf, n, "mlp-");
    for (int i = 0; i < a->n_hidden && len < n; i++)
        len += (size_t)snprintf(buf + len, n - len, "%s%d", i ? "x" : "", a->hidden[i]);
    if (len < n)
        snprintf(buf + len, n - len, "-%s", a->act);
}

static mg_status write_table(hid_t f, const char *name, hid_t type, size_t n, const void *rows, mg_error *err)
{
    hsize_t dims[1] = {n};
    return mg_h5_write(f, name, type, 1, dims, rows, err);
}

static void add_rows(metric_row **rows, size_t *n, size_t *cap, uint32_t cell, const char *model,
                     const char *attack, const char *key, const named_value *v, size_t nv)
{
    for (size_t i = 0; i < nv; i++) {
        if (*n == *cap) {
            size_t nc = *cap ? 2 * *cap : 256;
            metric_row *r = realloc(*rows, nc * sizeof *r);
            if (!r)
                return;
            *rows = r;
            *cap = nc;
        }
        metric_row *r = &(*rows)[(*n)++];
        memset(r, 0, sizeof *r);
        r->cell_id = cell;
        snprintf(r->model, sizeof r->model, "%s", model);
        snprintf(r->attack, sizeof r->attack, "%s", attack);
        snprintf(r->metric, sizeof r->metric, "%s", v[i].name);
        r->value = v[i].value;
        snprintf(r->node, sizeof r->node, "%s", key);
    }
}

mg_status mg_store_write_root(mg_store *s, const mg_grid *g, const mg_plan *p,
                              const mg_node_state *node_state, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t f = H5I_INVALID_HID, ct = H5I_INVALID_HID, mt = H5I_INVALID_HID;
    hid_t s16 = str_type(16), slab = str_type(W_LABEL), skey = str_type(W_KEY), saxes = str_type(W_AXES);
    node_metrics *nm = NULL;
    cell_row *cells = NULL;
    metric_row *rows = NULL;
    size_t n_rows = 0, cap_rows = 0;
    char tmp[4096], final[4096];
    snprintf(final, sizeof final, "%s/results.h5", s->dir);
    snprintf(tmp, sizeof tmp, "%s/results.h5.tmp.%ld", s->dir, (long)getpid());

    nm = mg_calloc(p->n_nodes, sizeof *nm, "node metrics", err);
    cells = mg_calloc(p->n_cells, sizeof *cells, "cells table", err);
    if (!nm || !cells)
        MG_FAIL(MG_ERR_NOMEM, "out of memory building the root file");

    for (size_t c = 0; c < p->n_cells; c++) {
        const mg_cell *cell = &p->cells[c];
        cell_row *r = &cells[c];
        r->cell_id = (uint32_t)cell->id;
        snprintf(r->dataset, sizeof r->dataset, "%s", g->datasets[cell->dataset].name);
        arch_label(&g->archs[cell->arch], r->arch, sizeof r->arch);
        mg_prune_label(&g->prunes[cell->prune], r->prune, sizeof r->prune);
        r->sparsity = g->sparsities[cell->sparsity];
        snprintf(r->defense, sizeof r->defense, "%s", g->defenses[cell->defense].name);
        r->seed = (int64_t)g->seeds[cell->seed];
        snprintf(r->target_model, sizeof r->target_model, "%s", p->nodes[cell->model[MG_ROLE_TARGET]].key);
        snprintf(r->shadow_model, sizeof r->shadow_model, "%s", p->nodes[cell->model[MG_ROLE_SHADOW]].key);
        char *axes = mg_cell_axes_json(g, cell);
        snprintf(r->axes, sizeof r->axes, "%s", axes ? axes : "");
        free(axes);

        /* A cell's status is the worst of its nodes'. */
        size_t members[2 + 64];
        size_t nm_ = 0;
        members[nm_++] = cell->model[0];
        members[nm_++] = cell->model[1];
        for (size_t a = 0; a < g->n_attacks && nm_ < sizeof members / sizeof *members; a++)
            members[nm_++] = cell->attack_nodes[a];
        int failed = 0, skipped = 0, pending = 0;
        for (size_t i = 0; i < nm_; i++) {
            size_t ni = members[i];
            load_node(s, &p->nodes[ni], &nm[ni]);
            mg_node_state ns = node_state ? node_state[ni] : (nm[ni].present ? MG_NODE_DONE : MG_NODE_PENDING);
            if (nm[ni].present)
                ns = MG_NODE_DONE;
            else if (mg_store_node_failed(s, p->nodes[ni].key, NULL, 0))
                ns = MG_NODE_FAILED;
            failed |= ns == MG_NODE_FAILED;
            skipped |= ns == MG_NODE_SKIPPED;
            pending |= ns == MG_NODE_PENDING;
        }
        snprintf(r->status, sizeof r->status, "%s",
                 failed ? "failed" : skipped ? "skipped" : pending ? "pending" : "complete");

        for (int role = 0; role < 2; role++) {
            size_t ni = cell->model[role];
            add_rows(&rows, &n_rows, &cap_rows, r->cell_id, mg_role_str((mg_role)role), "",
                     p->nodes[ni].key, nm[ni].vals[0], nm[ni].n[0]);
        }
        for (size_t a = 0; a < g->n_attacks; a++) {
            size_t ni = cell->attack_nodes[a];
            add_rows(&rows, &n_rows, &cap_rows, r->cell_id, "target", g->attacks[a].name,
                     p->nodes[ni].key, nm[ni].vals[0], nm[ni].n[0]);
            add_rows(&rows, &n_rows, &cap_rows, r->cell_id, "shadow", g->attacks[a].name,
                     p->nodes[ni].key, nm[ni].vals[1], nm[ni].n[1]);
        }
    }

    int fd = mg_store_create_file(tmp); /* the store's file mode, kept when HDF5 truncates */
    if (fd >= 0)
        close(fd);
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        MG_FAIL(MG_ERR_HDF5, "%s: cannot create the root file (store writable? disk full?)", tmp);

    /* /grid: what was asked, as given. */
    {
        hid_t gg = H5Gcreate2(f, "grid", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        char now[40];
        mg_iso_time(now, sizeof now);
        if (gg < 0)
            MG_FAIL(MG_ERR_HDF5, "%s: cannot create /grid", tmp);
        st = mg_h5_attr_str(gg, "name", g->name, err);
        if (!st) st = mg_h5_attr_str(gg, "path", g->path, err);
        if (!st) st = mg_h5_attr_str(gg, "written", now, err);
        if (!st) st = mg_h5_attr_str(gg, "miagrid_version", MG_VERSION, err);
        if (!st) st = mg_h5_attr_i64(gg, "store_format", MG_STORE_FORMAT, err);
        if (!st) st = mg_h5_attr_i64(gg, "n_cells", (int64_t)p->n_cells, err);
        if (!st) st = mg_h5_attr_i64(gg, "n_nodes", (int64_t)p->n_nodes, err);
        if (!st) {
            hid_t t = str_type(g->yaml_len + 1);
            st = mg_h5_write(gg, "yaml", t, 0, NULL, g->yaml, err);
            H5Tclose(t);
        }
        H5Gclose(gg);
        if (st)
            goto cleanup;
    }

    ct = H5Tcreate(H5T_COMPOUND, sizeof(cell_row));
    H5Tinsert(ct, "cell_id", HOFFSET(cell_row, cell_id), H5T_NATIVE_UINT32);
    H5Tinsert(ct, "dataset", HOFFSET(cell_row, dataset), slab);
    H5Tinsert(ct, "arch", HOFFSET(cell_row, arch), slab);
    H5Tinsert(ct, "prune", HOFFSET(cell_row, prune), slab);
    H5Tinsert(ct, "sparsity", HOFFSET(cell_row, sparsity), H5T_NATIVE_DOUBLE);
    H5Tinsert(ct, "defense", HOFFSET(cell_row, defense), slab);
    H5Tinsert(ct, "seed", HOFFSET(cell_row, seed), H5T_NATIVE_INT64);
    H5Tinsert(ct, "status", HOFFSET(cell_row, status), s16);
    H5Tinsert(ct, "target_model", HOFFSET(cell_row, target_model), skey);
    H5Tinsert(ct, "shadow_model", HOFFSET(cell_row, shadow_model), skey);
    H5Tinsert(ct, "axes", HOFFSET(cell_row, axes), saxes);
    MG_CHECK(write_table(f, "cells", ct, p->n_cells, cells, err));

    mt = H5Tcreate(H5T_COMPOUND, sizeof(metric_row));
    H5Tinsert(mt, "cell_id", HOFFSET(metric_row, cell_id), H5T_NATIVE_UINT32);
    H5Tinsert(mt, "model", HOFFSET(metric_row, model), s16);
    H5Tinsert(mt, "attack", HOFFSET(metric_row, attack), slab);
    H5Tinsert(mt, "metric", HOFFSET(metric_row, metric), slab);
    H5Tinsert(mt, "value", HOFFSET(metric_row, value), H5T_NATIVE_DOUBLE);
    H5Tinsert(mt, "node", HOFFSET(metric_row, node), skey);
    MG_CHECK(write_table(f, "metrics", mt, n_rows, rows, err));

    /* /failures: what failed, so analysts and --retry-failed users see why. */
    {
        typedef struct {
            char node[W_KEY];
            char kind[16];
            char message[1024];
        } failure_row;
        size_t nf = 0;
        failure_row *fr = NULL;
        for (size_t i = 0; i < p->n_nodes; i++)
            nf += mg_store_node_failed(s, p->nodes[i].key, NULL, 0);
        fr = mg_calloc(nf ? nf : 1, sizeof *fr, "failures table", err);
        if (!fr)
            MG_FAIL(MG_ERR_NOMEM, "out of memory building the failures table");
        size_t k = 0;
        for (size_t i = 0; i < p->n_nodes && k < nf; i++)
            if (mg_store_node_failed(s, p->nodes[i].key, fr[k].message, sizeof fr[k].message)) {
                snprintf(fr[k].node, sizeof fr[k].node, "%s", p->nodes[i].key);
                snprintf(fr[k].kind, sizeof fr[k].kind, "%s", mg_node_kind_str(p->nodes[i].kind));
                k++;
            }
        hid_t smsg = str_type(1024);
        hid_t ft = H5Tcreate(H5T_COMPOUND, sizeof(failure_row));
        H5Tinsert(ft, "node", HOFFSET(failure_row, node), skey);
        H5Tinsert(ft, "kind", HOFFSET(failure_row, kind), s16);
        H5Tinsert(ft, "message", HOFFSET(failure_row, message), smsg);
        st = write_table(f, "failures", ft, k, fr, err);
        H5Tclose(ft);
        H5Tclose(smsg);
        free(fr);
        if (st != MG_OK)
            goto cleanup;
    }

    /* External links let h5py reach every node from the root file. */
    {
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        for (size_t i = 0; i < p->n_nodes; i++) {
            if (!nm[i].loaded)
                load_node(s, &p->nodes[i], &nm[i]);
            if (!nm[i].present)
                continue;
            char target[128], link[128];
            snprintf(target, sizeof target, "nodes/%s.h5", p->nodes[i].key);
            snprintf(link, sizeof link, "nodes/%s", p->nodes[i].key);
            if (H5Lcreate_external(target, "/", f, link, lcpl, H5P_DEFAULT) < 0) {
                H5Pclose(lcpl);
                MG_FAIL(MG_ERR_HDF5, "%s: cannot link node %s", tmp, p->nodes[i].key);
            }
        }
        H5Pclose(lcpl);
    }

    if (H5Fclose(f) < 0) {
        f = H5I_INVALID_HID;
        MG_FAIL(MG_ERR_HDF5, "%s: closing the root file failed (disk full?)", tmp);
    }
    f = H5I_INVALID_HID;
    MG_CHECK(mg_store_seal_file(tmp, final, err));
    if (rename(tmp, final) != 0)
        MG_FAIL(MG_ERR_IO, "cannot rename %s to %s: %s", tmp, final, strerror(errno));

cleanup:
    if (f >= 0) {
        H5Fclose(f);
        unlink(tmp);
    } else if (st != MG_OK) {
        unlink(tmp);
    }
    if (ct >= 0) H5Tclose(ct);
    if (mt >= 0) H5Tclose(mt);
    H5Tclose(s16);
    H5Tclose(slab);
    H5Tclose(skey);
    H5Tclose(saxes);
    if (nm) {
        for (size_t i = 0; i < p->n_nodes; i++) {
            free(nm[i].vals[0]);
            free(nm[i].vals[1]);
        }
    }
    free(nm);
    free(cells);
    free(rows);
    return st;
}

static double find_value(const node_metrics *nm, int slot, const char *name)
{
    for (size_t i = 0; i < nm->n[slot]; i++)
        if (strcmp(nm->vals[slot][i].name, name) == 0)
            return nm->vals[slot][i].value;
    return NAN;
}

static void print_num(FILE *out, int width, double v)
{
    if (isnan(v))
        fprintf(out, " %*s", width, "-");
    else
        fprintf(out, " %*.3f", width, v);
}

mg_status mg_store_print_summary(const mg_store *s, const mg_grid *g, const mg_plan *p, FILE *out,
                                 mg_error *err)
{
    node_metrics *nm = mg_calloc(p->n_nodes, sizeof *nm, "node metrics", err);
    if (!nm)
        return MG_ERR_NOMEM;
    /* The prune column fits the longest label, and is never narrower than 26. */
    int pw = 26, selecting = 0;
    for (size_t i = 0; i < g->n_prunes; i++) {
        selecting |= g->prunes[i].n_select > 0;
        char l[2 * W_LABEL];
        mg_prune_label(&g->prunes[i], l, sizeof l);
        if ((int)strlen(l) > pw)
            pw = (int)strlen(l);
    }
    fprintf(out, "%4s %-14s %-18s %-*s %8s %5s %9s %9s", "cell", "dataset", "arch", pw, "prune", "sparsity",
            "seed", "train_acc", "test_acc");
    if (selecting) /* MIA-Pruning: the sparsity the selection chose */
        fprintf(out, " %8s", "selected");
    for (size_t a = 0; a < g->n_attacks; a++) {
        char h[80];
        snprintf(h, sizeof h, "%s_bacc", g->attacks[a].name);
        fprintf(out, " %10s", h);
    }
    fputc('\n', out);
    for (size_t c = 0; c < p->n_cells; c++) {
        const mg_cell *cell = &p->cells[c];
        char arch[W_LABEL], prune[2 * W_LABEL];
        arch_label(&g->archs[cell->arch], arch, sizeof arch);
        mg_prune_label(&g->prunes[cell->prune], prune, sizeof prune);
        size_t tm = cell->model[MG_ROLE_TARGET];
        load_node(s, &p->nodes[tm], &nm[tm]);
        fprintf(out, "%4zu %-14s %-18s %-*s %8.2f %5llu", cell->id, g->datasets[cell->dataset].name, arch,
                pw, prune, g->sparsities[cell->sparsity], (unsigned long long)g->seeds[cell->seed]);
        print_num(out, 9, find_value(&nm[tm], 0, "train_acc"));
        print_num(out, 9, find_value(&nm[tm], 0, "test_acc"));
        if (selecting)
            print_num(out, 8, find_value(&nm[tm], 0, "selected_sparsity"));
        for (size_t a = 0; a < g->n_attacks; a++) {
            size_t an = cell->attack_nodes[a];
            load_node(s, &p->nodes[an], &nm[an]);
            print_num(out, 10, find_value(&nm[an], 0, "balanced_acc"));
        }
        fputc('\n', out);
    }
    for (size_t i = 0; i < p->n_nodes; i++) {
        free(nm[i].vals[0]);
        free(nm[i].vals[1]);
    }
    free(nm);
    return MG_OK;
}
