/* test_run.c: the whole atlas on one rank over a synthetic store: a real grid
 * and plan, node files written through the store's writer with made-up scores
 * and weights, and the root file. Checks the consolidated matrix, the node
 * table, the singular values and vectors against LAPACK's dgesvd of a matrix
 * standardised here, the weight spectra, and the errors: a missing store, a
 * directory without results.h5, an unreadable node file (skipped, or an
 * error with strict), no attack nodes, an output that cannot be created. */
#define _XOPEN_SOURCE 700
#include <ftw.h>
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "atlas/atlas_internal.h"
#include "mg_test.h"
#include "miagrid/grid.h"
#include "miagrid/store.h"

extern void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *lda,
                    double *s, double *u, const int *ldu, double *vt, const int *ldvt, double *work,
                    const int *lwork, int *info, size_t jobu_len, size_t jobvt_len);

static const char GRID[] = "name: atlas-test\n"
                           "seeds: [0, 1]\n"
                           "axes:\n"
                           "  arch: [{name: mlp, hidden: [8]}]\n"
                           "  sparsity: [0.0, 0.5]\n"
                           "attacks: [loss, conf]\n";

/* Samples of seed s: 60 indices starting at 30*s (members first, then
 * non-members), so the seeds overlap on 30..59 and the union has 90 rows. */
enum { PER_NODE = 60, N_ROWS = 90 };

static char root_dir[1024];

static void node_scores(const mg_node *n, size_t seed, uint32_t *idx, double *score, uint8_t *member)
{
    mg_rng rng;
    mg_rng_seed(&rng, 11, n->key, "scores");
    for (int e = 0; e < PER_NODE; e++) {
        idx[e] = (uint32_t)(30 * seed + (size_t)e);
        member[e] = e < PER_NODE / 2;
        score[e] = mg_rng_normal(&rng) + (member[e] ? 0.8 : 0.0) + (double)(n->key[0] % 5);
    }
    /* An infinite loss: a score the atlas must treat as missing. */
    if (n->key[0] < '8')
        score[PER_NODE - 1] = -INFINITY;
}

/* A weight of the node: rows x cols floats, seeded by its key and name. */
static void node_weight(const mg_node *n, const char *name, size_t count, float *w)
{
    mg_rng rng;
    mg_rng_seed(&rng, 11, n->key, name);
    for (size_t i = 0; i < count; i++)
        w[i] = (float)mg_rng_normal(&rng);
}

static void write_store(const char *dir, const mg_grid *g, const mg_plan *p)
{
    mg_error err;
    mg_store *s = NULL;
    CHECK_OK(mg_store_open(dir, &s, &err), &err);
    if (!s)
        return;
    for (size_t i = 0; i < p->n_nodes; i++) {
        const mg_node *n = &p->nodes[i];
        mg_node_writer *w = NULL;
        CHECK_OK(mg_node_writer_begin(s, n->key, mg_node_kind_str(n->kind), n->recipe, &w, &err), &err);
        if (!w)
            continue;
        hid_t f = mg_node_writer_file(w);
        if (n->kind == MG_NODE_ATTACK) {
            uint32_t idx[PER_NODE];
            double score[PER_NODE];
            uint8_t member[PER_NODE];
            node_scores(n, n->seed, idx, score, member);
            hsize_t d = PER_NODE;
            CHECK_OK(mg_h5_attr_str(f, "attack", g->attacks[n->attack].name, &err), &err);
            CHECK_OK(mg_h5_write(f, "scores/score", H5T_NATIVE_DOUBLE, 1, &d, score, &err), &err);
            CHECK_OK(mg_h5_write(f, "scores/is_member", H5T_NATIVE_UINT8, 1, &d, member, &err), &err);
            CHECK_OK(mg_h5_write(f, "scores/sample_index", H5T_NATIVE_UINT32, 1, &d, idx, &err), &err);
            hid_t m = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            hid_t t = H5Gcreate2(m, "target", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            hid_t sh = H5Gcreate2(m, "shadow", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            CHECK_OK(mg_h5_attr_f64(t, "balanced_acc", 0.6, &err), &err);
            CHECK_OK(mg_h5_attr_f64(sh, "balanced_acc", 0.6, &err), &err);
            H5Gclose(t);
            H5Gclose(sh);
            H5Gclose(m);
        } else {
            /* fc1: 40 x 32, large enough to be chunked and compressed;
             * conv: (16, 2, 3, 3); fc2: 4 x 8, below the 256-entry floor. */
            float w1[40 * 32], wc[16 * 18], w2[32];
            uint8_t m1[40 * 32], mc[16 * 18];
            hsize_t d1[2] = {40, 32}, dc[4] = {16, 2, 3, 3}, d2[2] = {4, 8};
            node_weight(n, "fc1", 40 * 32, w1);
            node_weight(n, "conv", 16 * 18, wc);
            node_weight(n, "fc2", 32, w2);
            for (int k = 0; k < 40 * 32; k++)
                m1[k] = n->kind == MG_NODE_TRAIN || k % 2;
            for (int k = 0; k < 16 * 18; k++)
                mc[k] = n->kind == MG_NODE_TRAIN || k % 3;
            CHECK_OK(mg_h5_attr_str(f, "role", mg_role_str(n->role), &err), &err);
            CHECK_OK(mg_h5_write(f, "model/fc1/weight", H5T_NATIVE_FLOAT, 2, d1, w1, &err), &err);
            CHECK_OK(mg_h5_write(f, "model/conv/weight", H5T_NATIVE_FLOAT, 4, dc, wc, &err), &err);
            CHECK_OK(mg_h5_write(f, "model/fc2/weight", H5T_NATIVE_FLOAT, 2, d2, w2, &err), &err);
            if (n->kind == MG_NODE_PRUNE) {
                CHECK_OK(mg_h5_write(f, "model/fc1/mask", H5T_NATIVE_UINT8, 2, d1, m1, &err), &err);
                CHECK_OK(mg_h5_write(f, "model/conv/mask", H5T_NATIVE_UINT8, 4, dc, mc, &err), &err);
                CHECK_OK(mg_h5_attr_f64(f, "requested_sparsity", n->sparsity, &err), &err);
            }
            hid_t m = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            CHECK_OK(mg_h5_attr_f64(m, "train_acc", 0.9, &err), &err);
            H5Gclose(m);
        }
        CHECK_OK(mg_node_writer_commit(&w, &err), &err);
    }
    CHECK_OK(mg_store_write_root(s, g, p, NULL, &err), &err);
    mg_store_close(&s);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* The attack nodes in key order (the atlas's columns). */
static size_t attack_columns(const mg_plan *p, const mg_node **cols)
{
    const char *keys[64];
    size_t n = 0;
    for (size_t i = 0; i < p->n_nodes; i++)
        if (p->nodes[i].kind == MG_NODE_ATTACK)
            keys[n++] = p->nodes[i].key;
    qsort(keys, n, sizeof *keys, cmp_str);
    for (size_t j = 0; j < n; j++)
        cols[j] = &p->nodes[mg_plan_find(p, keys[j])];
    return n;
}

static void check_output(const char *path, const mg_grid *g, const mg_plan *p)
{
    const mg_node *cols[64];
    size_t N = attack_columns(p, cols);
    double *expect = malloc(N_ROWS * N * sizeof *expect), *got = malloc(N_ROWS * N * sizeof *got);
    int8_t *mexp = malloc(N_ROWS * N), *mgot = malloc(N_ROWS * N);
    for (size_t i = 0; i < N_ROWS * N; i++) {
        expect[i] = NAN;
        mexp[i] = -1;
    }
    for (size_t j = 0; j < N; j++) {
        uint32_t idx[PER_NODE];
        double score[PER_NODE];
        uint8_t member[PER_NODE];
        node_scores(cols[j], cols[j]->seed, idx, score, member);
        for (int e = 0; e < PER_NODE; e++) {
            expect[idx[e] * N + j] = isfinite(score[e]) ? score[e] : NAN;
            mexp[idx[e] * N + j] = (int8_t)member[e];
        }
    }
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    if (f < 0)
        return;
    hid_t d = H5Dopen2(f, "atlas/scores", H5P_DEFAULT);
    CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, got) >= 0);
    H5Dclose(d);
    d = H5Dopen2(f, "atlas/is_member", H5P_DEFAULT);
    CHECK(H5Dread(d, H5T_NATIVE_INT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, mgot) >= 0);
    H5Dclose(d);
    int bad = 0;
    for (size_t i = 0; i < N_ROWS * N; i++)
        bad += !(isnan(expect[i]) ? isnan(got[i]) : got[i] == expect[i]) || mgot[i] != mexp[i];
    CHECK_INT_EQ(bad, 0);

    /* The node table names each column's attack and its cells. */
    typedef struct {
        char node[33];
        char attack[64];
        char cells[256];
        uint32_t n_cells, n_nonfinite;
    } row;
    row rows[64];
    hid_t s33 = H5Tcopy(H5T_C_S1), s64 = H5Tcopy(H5T_C_S1), s256 = H5Tcopy(H5T_C_S1);
    H5Tset_size(s33, 33);
    H5Tset_size(s64, 64);
    H5Tset_size(s256, 256);
    hid_t rt = H5Tcreate(H5T_COMPOUND, sizeof(row));
    H5Tinsert(rt, "node", HOFFSET(row, node), s33);
    H5Tinsert(rt, "attack", HOFFSET(row, attack), s64);
    H5Tinsert(rt, "cells", HOFFSET(row, cells), s256);
    H5Tinsert(rt, "n_cells", HOFFSET(row, n_cells), H5T_NATIVE_UINT32);
    H5Tinsert(rt, "n_nonfinite", HOFFSET(row, n_nonfinite), H5T_NATIVE_UINT32);
    d = H5Dopen2(f, "atlas/nodes", H5P_DEFAULT);
    CHECK(H5Dread(d, rt, H5S_ALL, H5S_ALL, H5P_DEFAULT, rows) >= 0);
    H5Dclose(d);
    size_t with_inf = 0;
    for (size_t j = 0; j < N; j++) {
        with_inf += rows[j].n_nonfinite;
        CHECK_STR_EQ(rows[j].node, cols[j]->key);
        CHECK_STR_EQ(rows[j].attack, g->attacks[cols[j]->attack].name);
        CHECK_INT_EQ(rows[j].n_nonfinite, cols[j]->key[0] < '8');
        size_t uses = 0;
        char first[24] = "";
        for (size_t c = 0; c < p->n_cells; c++)
            for (size_t a = 0; a < g->n_attacks; a++)
                if (&p->nodes[p->cells[c].attack_nodes[a]] == cols[j] && uses++ == 0)
                    snprintf(first, sizeof first, "%zu", c);
        CHECK_INT_EQ(rows[j].n_cells, uses);
        CHECK(strncmp(rows[j].cells, first, strlen(first)) == 0);
    }
    CHECK(with_inf > 0 && with_inf < N);
    H5Tclose(rt);
    H5Tclose(s33);
    H5Tclose(s64);
    H5Tclose(s256);

    /* The singular values of the standardised matrix, against LAPACK. */
    int m = N_ROWS, n = (int)N, k = m < n ? m : n, lwork = -1, info = 0;
    double *z = malloc((size_t)m * (size_t)n * sizeof *z), sv[64], ref[64], wq, right[64 * 64], vt[64 * 64];
    for (int j = 0; j < n; j++) {
        double sum = 0.0, ss = 0.0;
        int cnt = 0;
        for (int i = 0; i < m; i++)
            if (!isnan(expect[i * n + j])) {
                sum += expect[i * n + j];
                cnt++;
            }
        double mean = sum / cnt;
        for (int i = 0; i < m; i++)
            if (!isnan(expect[i * n + j]))
                ss += (expect[i * n + j] - mean) * (expect[i * n + j] - mean);
        double sd = sqrt(ss / cnt);
        for (int i = 0; i < m; i++)
            z[i + j * m] = isnan(expect[i * n + j]) ? 0.0 : (expect[i * n + j] - mean) / sd;
    }
    dgesvd_("N", "A", &m, &n, z, &m, ref, NULL, &m, vt, &n, &wq, &lwork, &info, 1, 1);
    lwork = (int)wq;
    double *work = malloc((size_t)lwork * sizeof *work);
    dgesvd_("N", "A", &m, &n, z, &m, ref, NULL, &m, vt, &n, work, &lwork, &info, 1, 1);
    CHECK_INT_EQ(info, 0);
    d = H5Dopen2(f, "atlas/svd/singular_values", H5P_DEFAULT);
    hid_t sp = H5Dget_space(d);
    CHECK_INT_EQ(H5Sget_simple_extent_npoints(sp), k);
    CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, sv) >= 0);
    H5Sclose(sp);
    H5Dclose(d);
    double worst = 0.0;
    for (int i = 0; i < k; i++)
        worst = fmax(worst, fabs(sv[i] - ref[i]) / ref[0]);
    CHECK_NEAR(worst, 0.0, 1e-12);
    d = H5Dopen2(f, "atlas/svd/right", H5P_DEFAULT);
    CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, right) >= 0);
    H5Dclose(d);
    worst = 0.0;
    for (int c = 0; c < k; c++) {
        double dot = 0.0;
        for (int j = 0; j < n; j++)
            dot += right[j * k + c] * vt[c + j * n];
        for (int j = 0; j < n; j++)
            worst = fmax(worst, fabs(right[j * k + c] - (dot >= 0 ? 1.0 : -1.0) * vt[c + j * n]));
    }
    CHECK_NEAR(worst, 0.0, 1e-10);

    /* A pruned node's masked fc1 spectrum, against LAPACK. */
    const mg_node *pn = NULL;
    for (size_t i = 0; i < p->n_nodes && !pn; i++)
        if (p->nodes[i].kind == MG_NODE_PRUNE)
            pn = &p->nodes[i];
    float w1[40 * 32];
    double a[40 * 32], spec[32], sref[32];
    node_weight(pn, "fc1", 40 * 32, w1);
    for (int i = 0; i < 40; i++)
        for (int j = 0; j < 32; j++)
            a[i + j * 40] = (i * 32 + j) % 2 ? (double)w1[i * 32 + j] : 0.0;
    int r40 = 40, c32 = 32;
    lwork = -1;
    dgesvd_("N", "N", &r40, &c32, a, &r40, sref, NULL, &r40, NULL, &c32, &wq, &lwork, &info, 1, 1);
    free(work);
    lwork = (int)wq;
    work = malloc((size_t)lwork * sizeof *work);
    dgesvd_("N", "N", &r40, &c32, a, &r40, sref, NULL, &r40, NULL, &c32, work, &lwork, &info, 1, 1);
    char dpath[128], state[16];
    snprintf(dpath, sizeof dpath, "atlas/spectra/%s/fc1", pn->key);
    d = H5Dopen2(f, dpath, H5P_DEFAULT);
    CHECK(d >= 0);
    CHECK(H5Dread(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, spec) >= 0);
    mg_error err;
    CHECK_OK(mg_h5_get_attr_str(d, "state", state, sizeof state, &err), &err);
    CHECK_STR_EQ(state, "pruned");
    double spars = 0;
    CHECK_OK(mg_h5_get_attr_f64(d, "sparsity", &spars, &err), &err);
    CHECK_NEAR(spars, 0.5, 1e-15);
    H5Dclose(d);
    worst = 0.0;
    for (int i = 0; i < 32; i++)
        worst = fmax(worst, fabs(spec[i] - sref[i]) / sref[0]);
    CHECK_NEAR(worst, 0.0, 1e-12);
    snprintf(dpath, sizeof dpath, "atlas/spectra/%s/fc2", pn->key);
    CHECK(H5Lexists(f, "atlas/spectra", H5P_DEFAULT) > 0);
    H5E_BEGIN_TRY { CHECK(H5Lexists(f, dpath, H5P_DEFAULT) <= 0); }
    H5E_END_TRY;
    H5Fclose(f);
    free(work);
    free(z);
    free(expect);
    free(got);
    free(mexp);
    free(mgot);
}

static void copy_file(const char *from, const char *to)
{
    FILE *a = fopen(from, "rb"), *b = fopen(to, "wb");
    char buf[65536];
    size_t n;
    while (a && b && (n = fread(buf, 1, sizeof buf, a)) > 0)
        fwrite(buf, 1, n, b);
    if (a)
        fclose(a);
    if (b)
        fclose(b);
}

static void test_errors(const char *store, const mg_plan *p)
{
    char path[1400], out[1400];
    mg_error err;
    mg_atlas_summary sum;
    mg_atlas_opts o = {0};

    snprintf(path, sizeof path, "%s/no-such-store", root_dir);
    o.store = path;
    CHECK_INT_EQ(mg_atlas_run(&o, MPI_COMM_WORLD, &sum, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "no such store directory") != NULL);

    snprintf(path, sizeof path, "%s/empty", root_dir);
    mg_mkdirs(path, NULL);
    CHECK_INT_EQ(mg_atlas_run(&o, MPI_COMM_WORLD, &sum, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "no results.h5") != NULL);

    o.store = store;
    snprintf(out, sizeof out, "%s/no-such-dir/atlas.h5", root_dir);
    o.out = out;
    CHECK_INT_EQ(mg_atlas_run(&o, MPI_COMM_WORLD, &sum, &err), MG_ERR_HDF5);
    CHECK(strstr(err.msg, "cannot create the output file") != NULL);

    /* Break one attack node: skipped (and recorded), or with strict an error. */
    const mg_node *cols[64];
    size_t n = attack_columns(p, cols);
    char node[1400], saved[1400];
    snprintf(node, sizeof node, "%s/nodes/%s.h5", store, cols[0]->key);
    snprintf(saved, sizeof saved, "%s/saved.h5", root_dir);
    copy_file(node, saved);
    FILE *fp = fopen(node, "wb");
    CHECK(fp != NULL);
    if (!fp)
        return;
    fputs("not HDF5", fp);
    fclose(fp);
    snprintf(out, sizeof out, "%s/broken.h5", root_dir);
    CHECK_OK(mg_atlas_run(&o, MPI_COMM_WORLD, &sum, &err), &err);
    CHECK_INT_EQ(sum.n_skipped, 1);
    CHECK_INT_EQ(sum.n_attack_nodes, n - 1);
    hid_t f = H5Fopen(out, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t g = H5Gopen2(f, "atlas", H5P_DEFAULT);
    char skipped[256];
    CHECK_OK(mg_h5_get_attr_str(g, "skipped_nodes", skipped, sizeof skipped, &err), &err);
    CHECK_STR_EQ(skipped, cols[0]->key);
    H5Gclose(g);
    H5Fclose(f);
    o.strict = 1;
    snprintf(out, sizeof out, "%s/strict.h5", root_dir);
    CHECK_INT_EQ(mg_atlas_run(&o, MPI_COMM_WORLD, &sum, &err), MG_ERR_HDF5);
    CHECK(strstr(err.msg, cols[0]->key) != NULL && strstr(err.msg, "--strict") != NULL);
    CHECK(access(out, F_OK) != 0);
    o.strict = 0;

    /* No attack node left. */
    for (size_t j = 1; j < n; j++) {
        snprintf(node, sizeof node, "%s/nodes/%s.h5", store, cols[j]->key);
        char moved[1500];
        snprintf(moved, sizeof moved, "%s.away", node);
        rename(node, moved);
    }
    CHECK_INT_EQ(mg_atlas_run(&o, MPI_COMM_WORLD, &sum, &err), MG_ERR_STATE);
    CHECK(strstr(err.msg, "no complete attack nodes") != NULL);
    for (size_t j = 1; j < n; j++) {
        snprintf(node, sizeof node, "%s/nodes/%s.h5", store, cols[j]->key);
        char moved[1500];
        snprintf(moved, sizeof moved, "%s.away", node);
        rename(moved, node);
    }
    snprintf(node, sizeof node, "%s/nodes/%s.h5", store, cols[0]->key);
    rename(saved, node);
}

static int remove_entry(const char *path, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(path);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    mg_h5_quiet();
    mg_error err;
    const char *tmp = getenv("MG_TEST_TMP");
    snprintf(root_dir, sizeof root_dir, "%s/atlas-run-%ld", tmp && tmp[0] ? tmp : "/tmp", (long)getpid());
    char store[1200];
    snprintf(store, sizeof store, "%s/store", root_dir);
    /* The store creates only its own directory, not the ones above it. */
    CHECK_OK(mg_mkdirs(root_dir, &err), &err);

    mg_grid *g = NULL;
    mg_plan *p = NULL;
    CHECK_OK(mg_grid_parse("atlas-test.yaml", GRID, sizeof GRID - 1, &g, &err), &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (!p) {
        MPI_Finalize();
        MG_TEST_MAIN_END();
    }
    write_store(store, g, p);

    mg_atlas_opts o = {.store = store, .block = 4, .components = 3};
    mg_atlas_summary sum;
    CHECK_OK(mg_atlas_run(&o, MPI_COMM_WORLD, &sum, &err), &err);
    CHECK_INT_EQ(sum.n_attack_nodes, 8);
    CHECK_INT_EQ(sum.n_samples, N_ROWS);
    CHECK_INT_EQ(sum.n_model_nodes, 8);
    CHECK_INT_EQ(sum.n_tensors, 16);
    CHECK_INT_EQ(sum.n_skipped, 0);
    CHECK_INT_EQ(sum.components, 3);
    CHECK(sum.nprow == 1 && sum.npcol == 1 && sum.block == 4);
    char out[1400];
    snprintf(out, sizeof out, "%s/atlas.h5", store);
    CHECK_STR_EQ(sum.out, out);
    /* K = 8 keeps every singular value: compare them all. */
    o.components = 100;
    CHECK_OK(mg_atlas_run(&o, MPI_COMM_WORLD, &sum, &err), &err);
    CHECK_INT_EQ(sum.components, 8);
    check_output(out, g, p);
    test_errors(store, p);

    nftw(root_dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    MPI_Finalize();
    MG_TEST_MAIN_END();
}
