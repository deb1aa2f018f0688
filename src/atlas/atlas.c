/* atlas.c: the vulnerability atlas from start to end: checks that every rank
 * sees the store, gathers and consolidates the scores (gather.c), reads the
 * matrix back into ScaLAPACK's block-cyclic layout, and writes the per-sample
 * statistics, the leading singular triplets and the weight spectra. */
#define _POSIX_C_SOURCE 200809L
#include "atlas/atlas_internal.h"

#include <errno.h>
#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "miagrid/store.h"

mg_status mg_atlas_agree(MPI_Comm comm, mg_status st, mg_error *err)
{
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    int mine = st != MG_OK ? rank : size, first = size;
    if (MPI_Allreduce(&mine, &first, 1, MPI_INT, MPI_MIN, comm) != MPI_SUCCESS)
        return mg_error_set(err, MG_ERR_MPI, "atlas: the ranks could not agree on an outcome");
    if (first == size)
        return MG_OK;
    struct {
        int st;
        char msg[sizeof ((mg_error *)0)->msg];
    } m;
    memset(&m, 0, sizeof m);
    if (rank == first) {
        m.st = (int)st;
        snprintf(m.msg, sizeof m.msg, "%s", err ? err->msg : mg_status_str(st));
    }
    if (MPI_Bcast(&m, (int)sizeof m, MPI_BYTE, first, comm) != MPI_SUCCESS)
        return mg_error_set(err, MG_ERR_MPI, "atlas: rank %d failed and its message could not be shared", first);
    if (first != 0)
        return mg_error_set(err, (mg_status)m.st, "rank %d: %s", first, m.msg);
    return mg_error_set(err, (mg_status)m.st, "%s", m.msg);
}

/* ---- the store must be one store, seen by every rank -------------------------------- */

typedef struct {
    int problem; /* 0 fine, 1 cannot see the store, 2 sees a different results.h5 */
    char host[64];
} visibility;

static mg_status check_store(mg_atlas_ctx *c, mg_error *err)
{
    mg_status st = MG_OK;
    struct stat sb;
    long long ref[3] = {0, 0, 0}; /* rank 0's results.h5: size, mtime seconds, nanoseconds */
    visibility me, *all = NULL;
    mg_strbuf msg;
    mg_strbuf_init(&msg);

    if (c->rank == 0) {
        if (stat(c->store, &sb) != 0 || !S_ISDIR(sb.st_mode))
            st = mg_error_set(err, MG_ERR_IO, "%s: no such store directory", c->store);
        else if (stat(c->results, &sb) != 0)
            st = mg_error_set(err, MG_ERR_IO, "%s: no results.h5 in the store (not a miagrid store, or no run "
                              "has written it yet: run miagrid on its grid)", c->store);
        else {
            ref[0] = (long long)sb.st_size;
            ref[1] = (long long)sb.st_mtim.tv_sec;
            ref[2] = (long long)sb.st_mtim.tv_nsec;
        }
    }
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    if (MPI_Bcast(ref, 3, MPI_LONG_LONG, 0, c->comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: broadcasting the store's identity failed");

    memset(&me, 0, sizeof me);
    gethostname(me.host, sizeof me.host - 1);
    char nodes[4200];
    snprintf(nodes, sizeof nodes, "%s/nodes", c->store);
    if (stat(c->results, &sb) != 0 || access(c->results, R_OK) != 0 || access(nodes, R_OK | X_OK) != 0)
        me.problem = 1;
    else if ((long long)sb.st_size != ref[0] || (long long)sb.st_mtim.tv_sec != ref[1] ||
             (long long)sb.st_mtim.tv_nsec != ref[2])
        me.problem = 2;
    all = mg_calloc((size_t)c->size, sizeof *all, "visibility", err);
    st = all ? MG_OK : MG_ERR_NOMEM;
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    if (MPI_Allgather(&me, (int)sizeof me, MPI_BYTE, all, (int)sizeof me, MPI_BYTE, c->comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: gathering the ranks' view of the store failed");
    /* Every rank builds the same message from the same table. */
    for (int kind = 1; kind <= 2; kind++) {
        int n = 0;
        for (int r = 0; r < c->size; r++) {
            if (all[r].problem != kind)
                continue;
            if (n++ == 0)
                mg_strbuf_printf(&msg, "%s%s", msg.len ? "; " : "",
                                 kind == 1 ? "cannot read the store from" : "sees a different results.h5 (size or "
                                                                            "modification time differ from rank 0's) on");
            if (n <= 8)
                mg_strbuf_printf(&msg, "%s rank %d (%s)", n > 1 ? "," : "", r, all[r].host);
            else if (n == 9)
                mg_strbuf_append(&msg, ", ...");
        }
    }
    if (msg.len)
        MG_FAIL(MG_ERR_STATE, "%s: %s: the store must be on a file system every rank sees, not changing while the "
                "atlas runs", c->store, msg.s);
cleanup:
    free(all);
    mg_strbuf_free(&msg);
    return st;
}

/* ---- writing helpers ---------------------------------------------------------------------- */

static hid_t str_type(size_t n)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, n);
    H5Tset_strpad(t, H5T_STR_NULLTERM);
    return t;
}

static hid_t sample_row_type(void)
{
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(mg_atlas_sample_row));
    H5Tinsert(t, "sample_index", HOFFSET(mg_atlas_sample_row, sample_index), H5T_NATIVE_UINT32);
    H5Tinsert(t, "n_scores", HOFFSET(mg_atlas_sample_row, n_scores), H5T_NATIVE_UINT32);
    H5Tinsert(t, "n_members", HOFFSET(mg_atlas_sample_row, n_members), H5T_NATIVE_UINT32);
    H5Tinsert(t, "member_fraction", HOFFSET(mg_atlas_sample_row, member_fraction), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "mean_z", HOFFSET(mg_atlas_sample_row, mean_z), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "exposed_fraction", HOFFSET(mg_atlas_sample_row, exposed_fraction), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "max_z", HOFFSET(mg_atlas_sample_row, max_z), H5T_NATIVE_DOUBLE);
    return t;
}

/* Collective: create a contiguous dataset without a fill pass. */
static hid_t create_dataset(hid_t loc, const char *path, hid_t type, int ndim, const hsize_t *dims)
{
    hid_t space = H5Screate_simple(ndim, dims, NULL), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE), d = H5I_INVALID_HID;
    if (space >= 0 && dcpl >= 0 && lcpl >= 0) {
        H5Pset_fill_time(dcpl, H5D_FILL_TIME_NEVER);
        H5Pset_alloc_time(dcpl, H5D_ALLOC_TIME_EARLY);
        H5Pset_create_intermediate_group(lcpl, 1);
        d = H5Dcreate2(loc, path, type, space, lcpl, dcpl, H5P_DEFAULT);
    }
    if (space >= 0)
        H5Sclose(space);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    return d;
}

/* Collective: /atlas/sample_stats, each process row's rows written by its
 * process in column 0. */
static mg_status write_sample_stats(const mg_atlas_grid *g, hid_t grp, const mg_atlas_sample_row *rows, int m, int nb,
                                    mg_error *err)
{
    mg_status st = MG_OK;
    hid_t type = sample_row_type(), dset = H5I_INVALID_HID, fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID;
    hid_t dxpl = mg_atlas_dxpl_collective();
    hsize_t dims[1] = {(hsize_t)m};
    dset = create_dataset(grp, "sample_stats", type, 1, dims);
    fspace = dset >= 0 ? H5Dget_space(dset) : H5I_INVALID_HID;
    if (fspace < 0 || dxpl < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot create /atlas/sample_stats");
    mg_atlas_cyclic d = {(hsize_t)m, (hsize_t)nb, g->myrow, g->nprow};
    hsize_t mine = g->mycol == 0 ? mg_atlas_cyclic_count(&d) : 0;
    if (g->mycol == 0)
        MG_CHECK(mg_atlas_select(fspace, 1, &d, err));
    else
        H5Sselect_none(fspace);
    mspace = H5Screate_simple(1, &mine, NULL);
    if (mspace < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot set up /atlas/sample_stats");
    if (mine == 0)
        H5Sselect_none(mspace);
    static const mg_atlas_sample_row none;
    if (H5Dwrite(dset, type, mspace, fspace, dxpl, mine ? (const void *)rows : (const void *)&none) < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: collective write of /atlas/sample_stats failed (disk full?)");
cleanup:
    if (dset >= 0)
        H5Dclose(dset);
    if (fspace >= 0)
        H5Sclose(fspace);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (dxpl >= 0)
        H5Pclose(dxpl);
    H5Tclose(type);
    return st;
}

/* ---- the analyses --------------------------------------------------------------------------- */

/* Per-sample statistics and the most exposed samples, from S and member
 * (this process's blocks); S is then standardised in place. */
static mg_status analyse_samples(mg_atlas_ctx *c, const mg_atlas_grid *g, hid_t grp, mg_atlas_dmat *S,
                                 const int8_t *member, mg_atlas_summary *sum, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t type = sample_row_type();
    mg_atlas_sample_row *rows = mg_calloc((size_t)S->mloc + 1, sizeof *rows, "sample statistics", err);
    mg_atlas_sample_row top[MG_ATLAS_TOP_EXPOSED];
    size_t n_top = 0;
    memset(top, 0, sizeof top);
    st = rows ? MG_OK : MG_ERR_NOMEM;
    if (st == MG_OK)
        st = mg_atlas_sample_stats(g, S, member, c->colstat, c->sample_index, rows, err);
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    MG_CHECK(write_sample_stats(g, grp, rows, S->m, S->nb, err));
    st = mg_atlas_top_exposed(g, rows, (size_t)S->mloc, MG_ATLAS_TOP_EXPOSED, top, &n_top, err);
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    hsize_t nt = n_top;
    MG_CHECK(mg_atlas_write_root(c->comm, grp, "top_exposed", type, 1, &nt, top, err));
    for (size_t i = 0; i < n_top && i < MG_ATLAS_SUMMARY_KEEP; i++) {
        sum->top_sample[i] = top[i].sample_index;
        sum->top_exposed[i] = top[i].exposed_fraction;
        sum->n_top = i + 1;
    }
    mg_atlas_standardise(S, g, c->colstat);
cleanup:
    free(rows);
    H5Tclose(type);
    return st;
}

/* The K leading singular triplets of the standardised matrix S (destroyed). */
static mg_status analyse_svd(mg_atlas_ctx *c, const mg_atlas_grid *g, hid_t grp, mg_atlas_dmat *S,
                             mg_atlas_summary *sum, mg_error *err)
{
    mg_status st = MG_OK;
    int M = S->m, N = S->n, kmin = M < N ? M : N, K = c->components < kmin ? c->components : kmin;
    mg_atlas_dmat U, VT;
    double *sv = NULL, *v = NULL, *expl = NULL;
    int *flip = NULL;
    hid_t sg = H5I_INVALID_HID, left = H5I_INVALID_HID;
    memset(&U, 0, sizeof U);
    memset(&VT, 0, sizeof VT);
    st = mg_atlas_dmat_init(&U, g, M, kmin, S->nb, err);
    if (st == MG_OK)
        st = mg_atlas_dmat_init(&VT, g, kmin, N, S->nb, err);
    sv = mg_malloc((size_t)kmin, sizeof *sv, "singular values", err);
    v = mg_calloc((size_t)N * (size_t)K, sizeof *v, "right singular vectors", err);
    expl = mg_calloc((size_t)K, sizeof *expl, "explained variance", err);
    flip = mg_calloc((size_t)K, sizeof *flip, "signs", err);
    if (st == MG_OK && (!sv || !v || !expl || !flip))
        st = MG_ERR_NOMEM;
    if (st == MG_OK)
        st = mg_atlas_svd(g, S, sv, &U, &VT, err);
    MG_CHECK(mg_atlas_agree(c->comm, st, err));

    /* The right vectors (nodes x K) are small: every rank gets them whole,
     * each entry from its one owner, so the sum is exact. */
    for (int il = 0; il < VT.mloc; il++) {
        int r = mg_atlas_l2g(il, VT.nb, g->myrow, g->nprow);
        if (r >= K)
            continue;
        for (int jl = 0; jl < VT.nloc; jl++) {
            int j = mg_atlas_l2g(jl, VT.nb, g->mycol, g->npcol);
            v[(size_t)j * (size_t)K + (size_t)r] = VT.a[(size_t)il + (size_t)jl * (size_t)VT.lld];
        }
    }
    if (MPI_Allreduce(MPI_IN_PLACE, v, N * K, MPI_DOUBLE, MPI_SUM, c->comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: gathering the right singular vectors failed");
    mg_atlas_fix_signs(v, (size_t)N, (size_t)K, flip);
    for (int jl = 0; jl < U.nloc; jl++) {
        int col = mg_atlas_l2g(jl, U.nb, g->mycol, g->npcol);
        if (col < K && flip[col])
            for (int il = 0; il < U.mloc; il++)
                U.a[(size_t)il + (size_t)jl * (size_t)U.lld] *= -1.0;
    }
    double total = 0.0;
    for (int i = 0; i < kmin; i++)
        total += sv[i] * sv[i];
    for (int i = 0; i < K; i++)
        expl[i] = total > 0.0 ? sv[i] * sv[i] / total : 0.0;

    sg = H5Gcreate2(grp, "svd", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (sg < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot create /atlas/svd");
    hsize_t dk = (hsize_t)K, dv[2] = {(hsize_t)N, (hsize_t)K}, du[2] = {(hsize_t)M, (hsize_t)K};
    MG_CHECK(mg_atlas_write_root(c->comm, sg, "singular_values", H5T_NATIVE_DOUBLE, 1, &dk, sv, err));
    MG_CHECK(mg_atlas_write_root(c->comm, sg, "explained", H5T_NATIVE_DOUBLE, 1, &dk, expl, err));
    MG_CHECK(mg_atlas_write_root(c->comm, sg, "right", H5T_NATIVE_DOUBLE, 2, dv, v, err));
    left = create_dataset(sg, "left", H5T_NATIVE_DOUBLE, 2, du);
    if (left < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot create /atlas/svd/left");
    MG_CHECK(mg_atlas_write_blocks(g, left, H5T_NATIVE_DOUBLE, M, K, U.nb, U.a, (size_t)U.lld, err));
    MG_CHECK(mg_h5_attr_i64(sg, "components", K, err));
    MG_CHECK(mg_h5_attr_f64(sg, "total_variance", total, err));
    MG_CHECK(mg_h5_attr_str(sg, "matrix", "/atlas/scores with each column z-scored over its samples, missing = 0",
                            err));
    MG_CHECK(mg_h5_attr_str(sg, "layout", "left: samples x K (rows of /atlas/sample_index); right: nodes x K (rows "
                            "of /atlas/nodes); signs: the largest |entry| of each right vector is positive", err));
    sum->components = K;
    for (int i = 0; i < K && i < MG_ATLAS_SUMMARY_KEEP; i++) {
        sum->sv[i] = sv[i];
        sum->explained[i] = expl[i];
        sum->n_sv = (size_t)i + 1;
    }
cleanup:
    if (left >= 0)
        H5Dclose(left);
    if (sg >= 0)
        H5Gclose(sg);
    mg_atlas_dmat_free(&U);
    mg_atlas_dmat_free(&VT);
    free(sv);
    free(v);
    free(expl);
    free(flip);
    return st;
}

typedef struct {
    char node[33];
    char kind[8];
    char state[8];
    char role[16];
    char layer[64];
    char input[33];
    uint32_t rows, cols, numerical_rank;
    double requested_sparsity, sparsity, sigma_max, sigma_min, frobenius, stable_rank;
} spectrum_row;

static hid_t spectrum_row_type(void)
{
    hid_t s33 = str_type(33), s8 = str_type(8), s16 = str_type(16), s64 = str_type(64);
    hid_t t = H5Tcreate(H5T_COMPOUND, sizeof(spectrum_row));
    H5Tinsert(t, "node", HOFFSET(spectrum_row, node), s33);
    H5Tinsert(t, "kind", HOFFSET(spectrum_row, kind), s8);
    H5Tinsert(t, "state", HOFFSET(spectrum_row, state), s8);
    H5Tinsert(t, "role", HOFFSET(spectrum_row, role), s16);
    H5Tinsert(t, "layer", HOFFSET(spectrum_row, layer), s64);
    H5Tinsert(t, "input", HOFFSET(spectrum_row, input), s33);
    H5Tinsert(t, "rows", HOFFSET(spectrum_row, rows), H5T_NATIVE_UINT32);
    H5Tinsert(t, "cols", HOFFSET(spectrum_row, cols), H5T_NATIVE_UINT32);
    H5Tinsert(t, "numerical_rank", HOFFSET(spectrum_row, numerical_rank), H5T_NATIVE_UINT32);
    H5Tinsert(t, "requested_sparsity", HOFFSET(spectrum_row, requested_sparsity), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "sparsity", HOFFSET(spectrum_row, sparsity), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "sigma_max", HOFFSET(spectrum_row, sigma_max), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "sigma_min", HOFFSET(spectrum_row, sigma_min), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "frobenius", HOFFSET(spectrum_row, frobenius), H5T_NATIVE_DOUBLE);
    H5Tinsert(t, "stable_rank", HOFFSET(spectrum_row, stable_rank), H5T_NATIVE_DOUBLE);
    H5Tclose(s33);
    H5Tclose(s8);
    H5Tclose(s16);
    H5Tclose(s64);
    return t;
}

static void fill_spectrum_row(spectrum_row *r, const mg_atlas_ctx *c, const mg_atlas_tensor *t, int rows, int cols,
                              const double *s, double sparsity)
{
    int k = rows < cols ? rows : cols;
    memset(r, 0, sizeof *r);
    snprintf(r->node, sizeof r->node, "%s", c->keys[t->node]);
    snprintf(r->kind, sizeof r->kind, "%s", t->kind == MG_ATLAS_NODE_PRUNE ? "prune" : "train");
    snprintf(r->state, sizeof r->state, "%s", t->kind == MG_ATLAS_NODE_PRUNE ? "pruned" : "dense");
    snprintf(r->role, sizeof r->role, "%s", t->role);
    snprintf(r->layer, sizeof r->layer, "%s", t->layer);
    snprintf(r->input, sizeof r->input, "%s", t->input);
    r->rows = (uint32_t)rows;
    r->cols = (uint32_t)cols;
    r->requested_sparsity = t->requested_sparsity;
    r->sparsity = sparsity;
    r->sigma_max = s[0];
    r->sigma_min = s[k - 1];
    double ss = 0.0;
    for (int i = 0; i < k; i++)
        ss += s[i] * s[i];
    r->frobenius = sqrt(ss);
    r->stable_rank = s[0] > 0.0 ? ss / (s[0] * s[0]) : 0.0;
    /* LAPACK's rank threshold: sigma > sigma_max * max(rows, cols) * eps. */
    double tol = s[0] * (double)(rows > cols ? rows : cols) * DBL_EPSILON;
    for (int i = 0; i < k; i++)
        r->numerical_rank += s[i] > tol;
}

static mg_status write_spectrum_attrs(hid_t d, const spectrum_row *r, const mg_atlas_tensor *t, mg_error *err)
{
    mg_status st = MG_OK;
    char tensor[96], shape[96];
    snprintf(tensor, sizeof tensor, "model/%s/weight", t->layer);
    size_t len = 0;
    for (int i = 0; i < t->ndim && len < sizeof shape; i++)
        len += (size_t)snprintf(shape + len, sizeof shape - len, "%s%llu", i ? "x" : "", (unsigned long long)t->dims[i]);
    MG_CHECK(mg_h5_attr_str(d, "tensor", tensor, err));
    MG_CHECK(mg_h5_attr_str(d, "shape", shape, err));
    MG_CHECK(mg_h5_attr_str(d, "kind", r->kind, err));
    MG_CHECK(mg_h5_attr_str(d, "state", r->state, err));
    MG_CHECK(mg_h5_attr_str(d, "role", r->role, err));
    MG_CHECK(mg_h5_attr_i64(d, "rows", r->rows, err));
    MG_CHECK(mg_h5_attr_i64(d, "cols", r->cols, err));
    MG_CHECK(mg_h5_attr_f64(d, "sparsity", r->sparsity, err));
    if (t->kind == MG_ATLAS_NODE_PRUNE) {
        MG_CHECK(mg_h5_attr_f64(d, "requested_sparsity", r->requested_sparsity, err));
        MG_CHECK(mg_h5_attr_str(d, "input", r->input, err));
    }
cleanup:
    return st;
}

/* The spectrum of every listed weight matrix, one collective SVD each. */
static mg_status analyse_spectra(mg_atlas_ctx *c, const mg_atlas_grid *g, hid_t grp, mg_atlas_summary *sum,
                                 mg_error *err)
{
    mg_status st = MG_OK;
    hid_t fapl = mg_atlas_fapl(c->comm), nf = H5I_INVALID_HID, w = H5I_INVALID_HID, mk = H5I_INVALID_HID;
    hid_t sg = H5I_INVALID_HID, rt = spectrum_row_type();
    spectrum_row *rows = mg_calloc(c->n_tensors + 1, sizeof *rows, "spectra table", err);
    double *s = NULL;
    long open_node = -1;
    if (!rows || fapl < 0)
        st = mg_error_set(err, MG_ERR_NOMEM, "atlas: cannot set up the spectra");
    MG_CHECK(mg_atlas_agree(c->comm, st, err));
    sg = H5Gcreate2(grp, "spectra", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (sg < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot create /atlas/spectra");
    for (size_t i = 0; i < c->n_tensors; i++) {
        const mg_atlas_tensor *t = &c->tensors[i];
        const char *key = c->keys[t->node];
        char path[4200], dpath[160];
        if ((long)t->node != open_node) {
            if (nf >= 0)
                H5Fclose(nf);
            snprintf(path, sizeof path, "%s/nodes/%s.h5", c->store, key);
            nf = H5Fopen(path, H5F_ACC_RDONLY, fapl);
            if (nf < 0)
                MG_FAIL(MG_ERR_HDF5, "%s: cannot open the node file with the MPI-IO driver", path);
            open_node = (long)t->node;
        }
        snprintf(dpath, sizeof dpath, "model/%s/weight", t->layer);
        w = H5Dopen2(nf, dpath, H5P_DEFAULT);
        snprintf(dpath, sizeof dpath, "model/%s/mask", t->layer);
        mk = t->has_mask ? H5Dopen2(nf, dpath, H5P_DEFAULT) : H5I_INVALID_HID;
        if (w < 0 || (t->has_mask && mk < 0))
            MG_FAIL(MG_ERR_HDF5, "%s/nodes/%s.h5: cannot open model/%s", c->store, key, t->layer);
        int nr = 0, nc = 0;
        double zeros = 0.0;
        st = mg_atlas_spectrum(g, w, mk, c->nb, &nr, &nc, &s, &zeros, err);
        if (st != MG_OK)
            mg_error_prefix(err, "%s/nodes/%s.h5 model/%s: ", c->store, key, t->layer);
        MG_CHECK(mg_atlas_agree(c->comm, st, err));
        H5Dclose(w);
        w = H5I_INVALID_HID;
        if (mk >= 0)
            H5Dclose(mk);
        mk = H5I_INVALID_HID;

        fill_spectrum_row(&rows[i], c, t, nr, nc, s, zeros);
        snprintf(dpath, sizeof dpath, "%s/%s", key, t->layer);
        hsize_t k = (hsize_t)(nr < nc ? nr : nc);
        MG_CHECK(mg_atlas_write_root(c->comm, sg, dpath, H5T_NATIVE_DOUBLE, 1, &k, s, err));
        hid_t d = H5Dopen2(sg, dpath, H5P_DEFAULT);
        if (d < 0)
            MG_FAIL(MG_ERR_HDF5, "atlas: cannot reopen /atlas/spectra/%s", dpath);
        st = write_spectrum_attrs(d, &rows[i], t, err);
        H5Dclose(d);
        MG_CHECK(st);
        free(s);
        s = NULL;
    }
    hsize_t n = c->n_tensors;
    MG_CHECK(mg_atlas_write_root(c->comm, grp, "spectra_summary", rt, 1, &n, rows, err));
    sum->n_tensors = c->n_tensors;
cleanup:
    free(s);
    free(rows);
    if (w >= 0)
        H5Dclose(w);
    if (mk >= 0)
        H5Dclose(mk);
    if (nf >= 0)
        H5Fclose(nf);
    if (sg >= 0)
        H5Gclose(sg);
    if (fapl >= 0)
        H5Pclose(fapl);
    H5Tclose(rt);
    return st;
}

/* ---- the run ------------------------------------------------------------------------------------ */

mg_status mg_atlas_run(const mg_atlas_opts *o, MPI_Comm comm, mg_atlas_summary *sum_out, mg_error *err_out)
{
    mg_status st = MG_OK;
    mg_error e, *err = &e;
    mg_atlas_ctx c;
    mg_atlas_grid g;
    mg_atlas_dmat S;
    mg_atlas_summary sum;
    int have_grid = 0;
    int8_t *member = NULL;
    hid_t fapl = H5I_INVALID_HID, file = H5I_INVALID_HID, grp = H5I_INVALID_HID, dset = H5I_INVALID_HID;
    char out[4096], tmp[4200] = "";
    double t0 = MPI_Wtime(), t;
    mg_error_clear(&e);
    memset(&c, 0, sizeof c);
    memset(&S, 0, sizeof S);
    memset(&sum, 0, sizeof sum);
    memset(&g, 0, sizeof g);

    c.comm = comm;
    MPI_Comm_rank(comm, &c.rank);
    MPI_Comm_size(comm, &c.size);
    if (!o || !o->store || !o->store[0])
        MG_FAIL(MG_ERR_ARG, "atlas: no store directory given");
    if (o->block < 0 || o->block > 1048576)
        MG_FAIL(MG_ERR_ARG, "atlas: block size %d out of range (1 to 1048576)", o->block);
    if (o->components < 0)
        MG_FAIL(MG_ERR_ARG, "atlas: number of components %d is negative", o->components);
    c.nb = o->block ? o->block : MG_ATLAS_DEFAULT_BLOCK;
    c.components = o->components ? o->components : MG_ATLAS_DEFAULT_COMPONENTS;
    c.strict = o->strict;
    if (snprintf(c.store, sizeof c.store, "%s", o->store) >= (int)sizeof c.store)
        MG_FAIL(MG_ERR_ARG, "atlas: store path too long");
    snprintf(c.results, sizeof c.results, "%s/results.h5", c.store);
    int len = o->out && o->out[0] ? snprintf(out, sizeof out, "%s", o->out)
                                  : snprintf(out, sizeof out, "%.4000s/atlas.h5", c.store);
    if (len < 0 || len >= (int)sizeof out - 64)
        MG_FAIL(MG_ERR_ARG, "atlas: output path too long");
    snprintf(sum.out, sizeof sum.out, "%s", out);
    mg_h5_quiet();

    /* 1. gather and consolidate */
    MG_CHECK(check_store(&c, err));
    MG_CHECK(mg_atlas_gather(&c, err));
    /* Written under a temporary name and renamed when whole, like the store's
     * own files; rank 0 picks the name. */
    {
        long pid = (long)getpid();
        if (MPI_Bcast(&pid, 1, MPI_LONG, 0, comm) != MPI_SUCCESS)
            MG_FAIL(MG_ERR_MPI, "atlas: broadcasting the output name failed");
        snprintf(tmp, sizeof tmp, "%s.tmp.%ld", out, pid);
    }
    fapl = mg_atlas_fapl(comm);
    file = fapl >= 0 ? H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl) : H5I_INVALID_HID;
    st = file >= 0 ? MG_OK
                   : mg_error_set(err, MG_ERR_HDF5, "%s: cannot create the output file (directory missing or not "
                                  "writable? every rank must see it)", tmp);
    MG_CHECK(mg_atlas_agree(comm, st, err));
    st = mg_atlas_write_matrix(&c, file, err);
    MG_CHECK(mg_atlas_agree(comm, st, err));
    /* Closing and reopening makes every rank's collective writes visible to
     * every rank's reads (MPI-IO consistency). */
    H5Fclose(file);
    file = H5Fopen(tmp, H5F_ACC_RDWR, fapl);
    st = file >= 0 ? MG_OK : mg_error_set(err, MG_ERR_HDF5, "%s: cannot reopen the output file", tmp);
    MG_CHECK(mg_atlas_agree(comm, st, err));
    for (size_t i = 0; i < c.n_raw; i++) {
        free(c.raw[i].sample_index);
        free(c.raw[i].score);
        free(c.raw[i].is_member);
    }
    c.n_raw = 0;
    free(c.local_score);
    free(c.local_member);
    c.local_score = NULL;
    c.local_member = NULL;
    t = MPI_Wtime();
    sum.sec_gather = t - t0;

    /* 2. the block-cyclic matrix, read collectively */
    st = mg_atlas_grid_init(&g, comm, err);
    have_grid = st == MG_OK;
    MG_CHECK(mg_atlas_agree(comm, st, err));
    st = mg_atlas_dmat_init(&S, &g, (int)c.n_samples, (int)c.n_cols, c.nb, err);
    if (st == MG_OK) {
        member = mg_calloc((size_t)S.lld * (size_t)(S.nloc > 0 ? S.nloc : 1), sizeof *member, "membership blocks", err);
        st = member ? MG_OK : MG_ERR_NOMEM;
    }
    MG_CHECK(mg_atlas_agree(comm, st, err));
    grp = H5Gopen2(file, "atlas", H5P_DEFAULT);
    dset = grp >= 0 ? H5Dopen2(grp, "scores", H5P_DEFAULT) : H5I_INVALID_HID;
    st = dset >= 0 ? mg_atlas_read_blocks(&g, dset, H5T_NATIVE_DOUBLE, S.m, S.n, S.nb, S.a, (size_t)S.lld, err)
                   : mg_error_set(err, MG_ERR_HDF5, "%s: cannot open /atlas/scores", tmp);
    if (dset >= 0)
        H5Dclose(dset);
    dset = st == MG_OK ? H5Dopen2(grp, "is_member", H5P_DEFAULT) : H5I_INVALID_HID;
    if (st == MG_OK)
        st = dset >= 0 ? mg_atlas_read_blocks(&g, dset, H5T_NATIVE_INT8, S.m, S.n, S.nb, member, (size_t)S.lld, err)
                       : mg_error_set(err, MG_ERR_HDF5, "%s: cannot open /atlas/is_member", tmp);
    if (dset >= 0)
        H5Dclose(dset);
    dset = H5I_INVALID_HID;
    MG_CHECK(mg_atlas_agree(comm, st, err));
    sum.sec_distribute = MPI_Wtime() - t;

    /* 3. per-sample statistics, then 4. the singular triplets */
    t = MPI_Wtime();
    MG_CHECK(analyse_samples(&c, &g, grp, &S, member, &sum, err));
    sum.sec_stats = MPI_Wtime() - t;
    t = MPI_Wtime();
    MG_CHECK(analyse_svd(&c, &g, grp, &S, &sum, err));
    sum.sec_svd = MPI_Wtime() - t;

    /* 5. weight spectra */
    t = MPI_Wtime();
    MG_CHECK(analyse_spectra(&c, &g, grp, &sum, err));
    sum.sec_spectra = MPI_Wtime() - t;

    sum.n_samples = c.n_samples;
    sum.n_attack_nodes = c.n_cols;
    sum.n_model_nodes = c.n_model_nodes;
    sum.nprow = g.nprow;
    sum.npcol = g.npcol;
    sum.block = c.nb;
    for (size_t i = 0; i < c.n_keys; i++)
        sum.n_skipped += c.kind[i] == MG_ATLAS_NODE_SKIPPED;
    st = mg_h5_attr_i64(grp, "ranks", c.size, err);
    if (st == MG_OK)
        st = mg_h5_attr_i64(grp, "nprow", g.nprow, err);
    if (st == MG_OK)
        st = mg_h5_attr_i64(grp, "npcol", g.npcol, err);
    if (st == MG_OK)
        st = mg_h5_attr_i64(grp, "block", c.nb, err);
    MG_CHECK(mg_atlas_agree(comm, st, err));
    H5Gclose(grp);
    grp = H5I_INVALID_HID;
    st = H5Fclose(file) >= 0 ? MG_OK : mg_error_set(err, MG_ERR_HDF5, "%s: closing the output failed (disk full?)", tmp);
    file = H5I_INVALID_HID;
    MG_CHECK(mg_atlas_agree(comm, st, err));
    if (c.rank == 0 && rename(tmp, out) != 0)
        st = mg_error_set(err, MG_ERR_IO, "cannot rename %s to %s: %s", tmp, out, strerror(errno));
    MG_CHECK(mg_atlas_agree(comm, st, err));
    tmp[0] = '\0';
    sum.sec_total = MPI_Wtime() - t0;

cleanup:
    if (dset >= 0)
        H5Dclose(dset);
    if (grp >= 0)
        H5Gclose(grp);
    if (file >= 0)
        H5Fclose(file);
    if (fapl >= 0)
        H5Pclose(fapl);
    if (st != MG_OK && tmp[0] && c.rank == 0)
        unlink(tmp);
    mg_atlas_dmat_free(&S);
    free(member);
    if (have_grid)
        mg_atlas_grid_free(&g);
    mg_atlas_ctx_free(&c);
    if (sum_out)
        *sum_out = sum;
    if (st != MG_OK && err_out) {
        err_out->status = st;
        snprintf(err_out->msg, sizeof err_out->msg, "%s", e.msg);
    }
    return st;
}
