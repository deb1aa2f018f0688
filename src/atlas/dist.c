/* dist.c: the distributed side of the atlas: a BLACS process grid over a
 * communicator, block-cyclic index arithmetic, the HDF5 hyperslab selection
 * of one process's blocks, collective parallel-HDF5 reads and writes of
 * distributed matrices, and the ScaLAPACK pdgesvd wrapper. */
#include "atlas/atlas_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* BLACS and ScaLAPACK have no C header on Debian; these are their C and
 * Fortran entry points (Fortran: every argument by reference, and the hidden
 * lengths of character arguments last). */
extern int Csys2blacs_handle(MPI_Comm comm);
extern void Cfree_blacs_system_handle(int handle);
extern void Cblacs_gridinit(int *ctxt, const char *order, int nprow, int npcol);
extern void Cblacs_gridinfo(int ctxt, int *nprow, int *npcol, int *myrow, int *mycol);
extern void Cblacs_gridexit(int ctxt);
extern void descinit_(int *desc, const int *m, const int *n, const int *mb, const int *nb, const int *irsrc,
                      const int *icsrc, const int *ictxt, const int *lld, int *info);
extern void pdgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *ia,
                     const int *ja, const int *desca, double *s, double *u, const int *iu, const int *ju,
                     const int *descu, double *vt, const int *ivt, const int *jvt, const int *descvt,
                     double *work, const int *lwork, int *info, size_t jobu_len, size_t jobvt_len);

/* ---- process grid ------------------------------------------------------------ */

void mg_atlas_grid_shape(int size, int *nprow, int *npcol)
{
    int r = 1;
    for (int d = 1; (long)d * d <= size; d++)
        if (size % d == 0)
            r = d;
    *nprow = r;
    *npcol = size / r;
}

mg_status mg_atlas_grid_init(mg_atlas_grid *g, MPI_Comm comm, mg_error *err)
{
    memset(g, 0, sizeof *g);
    g->comm = comm;
    g->ctxt = -1;
    g->sys_ctxt = -1;
    g->row_comm = MPI_COMM_NULL;
    g->col_comm = MPI_COMM_NULL;
    if (MPI_Comm_rank(comm, &g->rank) != MPI_SUCCESS || MPI_Comm_size(comm, &g->size) != MPI_SUCCESS)
        return mg_error_set(err, MG_ERR_MPI, "atlas: cannot query the communicator");
    int nprow, npcol;
    mg_atlas_grid_shape(g->size, &nprow, &npcol);
    g->sys_ctxt = Csys2blacs_handle(comm);
    g->ctxt = g->sys_ctxt;
    Cblacs_gridinit(&g->ctxt, "Row", nprow, npcol);
    Cblacs_gridinfo(g->ctxt, &g->nprow, &g->npcol, &g->myrow, &g->mycol);
    if (g->nprow != nprow || g->npcol != npcol || g->myrow < 0 || g->mycol < 0) {
        mg_atlas_grid_free(g);
        return mg_error_set(err, MG_ERR_MPI, "atlas: BLACS could not build a %d x %d process grid", nprow, npcol);
    }
    if (MPI_Comm_split(comm, g->myrow, g->mycol, &g->row_comm) != MPI_SUCCESS ||
        MPI_Comm_split(comm, g->mycol, g->myrow, &g->col_comm) != MPI_SUCCESS) {
        mg_atlas_grid_free(g);
        return mg_error_set(err, MG_ERR_MPI, "atlas: cannot split the process grid into rows and columns");
    }
    return MG_OK;
}

void mg_atlas_grid_free(mg_atlas_grid *g)
{
    if (g->row_comm != MPI_COMM_NULL)
        MPI_Comm_free(&g->row_comm);
    if (g->col_comm != MPI_COMM_NULL)
        MPI_Comm_free(&g->col_comm);
    if (g->ctxt >= 0 && g->ctxt != g->sys_ctxt)
        Cblacs_gridexit(g->ctxt);
    if (g->sys_ctxt >= 0)
        Cfree_blacs_system_handle(g->sys_ctxt);
    g->ctxt = g->sys_ctxt = -1;
}

/* ---- block-cyclic arithmetic --------------------------------------------------- */

int mg_atlas_numroc(int n, int nb, int iproc, int nprocs)
{
    int nblocks = n / nb;
    int count = (nblocks / nprocs) * nb;
    int extra = nblocks % nprocs;
    if (iproc < extra)
        count += nb;
    else if (iproc == extra)
        count += n % nb;
    return count;
}

int mg_atlas_l2g(int il, int nb, int iproc, int nprocs)
{
    return (il / nb) * nb * nprocs + iproc * nb + il % nb;
}

mg_atlas_cyclic mg_atlas_cyclic_whole(hsize_t n)
{
    mg_atlas_cyclic d = {n, n > 0 ? n : 1, 0, 1};
    return d;
}

/* A dimension's owned set: `count` full blocks from `start` every `stride`,
 * then possibly the partial last block [tail_start, tail_start + tail_len). */
typedef struct {
    hsize_t start, stride, count, block;
    hsize_t tail_start, tail_len;
} cyclic_pattern;

static void pattern_of(const mg_atlas_cyclic *d, cyclic_pattern *p)
{
    hsize_t nb = d->nb ? d->nb : 1, np = (hsize_t)d->nprocs, ip = (hsize_t)d->iproc;
    hsize_t nfull = d->n / nb;
    p->block = nb;
    p->start = ip * nb;
    p->stride = np * nb;
    p->count = nfull > ip ? (nfull - ip - 1) / np + 1 : 0;
    p->tail_start = 0;
    p->tail_len = 0;
    if (d->n % nb != 0 && nfull % np == ip) {
        p->tail_start = nfull * nb;
        p->tail_len = d->n - nfull * nb;
    }
}

hsize_t mg_atlas_cyclic_count(const mg_atlas_cyclic *d)
{
    cyclic_pattern p;
    pattern_of(d, &p);
    return p.count * p.block + p.tail_len;
}

mg_status mg_atlas_select(hid_t space, int ndim, const mg_atlas_cyclic *dims, mg_error *err)
{
    hsize_t full[H5S_MAX_RANK];
    int rank = H5Sget_simple_extent_dims(space, full, NULL);
    if (rank < ndim || ndim < 1 || ndim > 4)
        return mg_error_set(err, MG_ERR_INTERNAL, "atlas: selection of %d dimensions in a dataspace of rank %d",
                            ndim, rank);
    cyclic_pattern p[4];
    for (int i = 0; i < ndim; i++)
        pattern_of(&dims[i], &p[i]);
    int first = 1;
    /* Each dimension's set is (full blocks) or (tail): the product is the
     * union over the 2^ndim choices. */
    for (unsigned choice = 0; choice < (1u << ndim); choice++) {
        hsize_t start[H5S_MAX_RANK], stride[H5S_MAX_RANK], count[H5S_MAX_RANK], block[H5S_MAX_RANK];
        int empty = 0;
        for (int i = 0; i < rank; i++) {
            if (i >= ndim) {
                start[i] = 0;
                stride[i] = 1;
                count[i] = 1;
                block[i] = full[i];
                empty |= full[i] == 0;
            } else if (choice & (1u << i)) {
                start[i] = p[i].tail_start;
                stride[i] = 1;
                count[i] = 1;
                block[i] = p[i].tail_len;
                empty |= p[i].tail_len == 0;
            } else {
                start[i] = p[i].start;
                stride[i] = p[i].stride;
                count[i] = p[i].count;
                block[i] = p[i].block;
                empty |= p[i].count == 0;
            }
        }
        if (empty)
            continue;
        if (H5Sselect_hyperslab(space, first ? H5S_SELECT_SET : H5S_SELECT_OR, start, stride, count, block) < 0)
            return mg_error_set(err, MG_ERR_HDF5, "atlas: cannot build a block-cyclic hyperslab selection");
        first = 0;
    }
    if (first && H5Sselect_none(space) < 0)
        return mg_error_set(err, MG_ERR_HDF5, "atlas: cannot clear a selection");
    return MG_OK;
}

/* ---- distributed matrices ------------------------------------------------------- */

mg_status mg_atlas_dmat_init(mg_atlas_dmat *A, const mg_atlas_grid *g, int m, int n, int nb, mg_error *err)
{
    memset(A, 0, sizeof *A);
    if (m < 1 || n < 1 || nb < 1)
        return mg_error_set(err, MG_ERR_ARG, "atlas: a distributed matrix needs m, n, nb >= 1 (got %d x %d, nb %d)",
                            m, n, nb);
    A->m = m;
    A->n = n;
    A->nb = nb;
    A->mloc = mg_atlas_numroc(m, nb, g->myrow, g->nprow);
    A->nloc = mg_atlas_numroc(n, nb, g->mycol, g->npcol);
    A->lld = A->mloc > 1 ? A->mloc : 1;
    int zero = 0, info = 0;
    descinit_(A->desc, &A->m, &A->n, &A->nb, &A->nb, &zero, &zero, &g->ctxt, &A->lld, &info);
    if (info != 0)
        return mg_error_set(err, MG_ERR_INTERNAL, "atlas: descinit failed (info %d) for %d x %d, nb %d", info, m, n,
                            nb);
    size_t cells = (size_t)A->lld * (size_t)(A->nloc > 0 ? A->nloc : 1);
    A->a = mg_calloc(cells, sizeof *A->a, "distributed matrix", err);
    return A->a ? MG_OK : MG_ERR_NOMEM;
}

void mg_atlas_dmat_free(mg_atlas_dmat *A)
{
    free(A->a);
    A->a = NULL;
}

hid_t mg_atlas_fapl(MPI_Comm comm)
{
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl >= 0 && H5Pset_fapl_mpio(fapl, comm, MPI_INFO_NULL) < 0) {
        H5Pclose(fapl);
        return H5I_INVALID_HID;
    }
    return fapl;
}

hid_t mg_atlas_dxpl_collective(void)
{
    hid_t dxpl = H5Pcreate(H5P_DATASET_XFER);
    if (dxpl >= 0 && H5Pset_dxpl_mpio(dxpl, H5FD_MPIO_COLLECTIVE) < 0) {
        H5Pclose(dxpl);
        return H5I_INVALID_HID;
    }
    return dxpl;
}

/* The shared body of the block reads and writes: `write` selects the direction. */
static mg_status transfer_blocks(const mg_atlas_grid *g, hid_t dset, hid_t memtype, int m, int n, int nb, void *local,
                                 size_t lld, int write, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t fspace = H5I_INVALID_HID, mspace = H5I_INVALID_HID, dxpl = H5I_INVALID_HID;
    unsigned char *buf = NULL;
    mg_atlas_cyclic d[2] = {{(hsize_t)m, (hsize_t)nb, g->myrow, g->nprow}, {(hsize_t)n, (hsize_t)nb, g->mycol, g->npcol}};
    hsize_t mloc = mg_atlas_cyclic_count(&d[0]), nloc = mg_atlas_cyclic_count(&d[1]);
    size_t esize = H5Tget_size(memtype);

    fspace = H5Dget_space(dset);
    if (fspace < 0 || H5Sget_simple_extent_ndims(fspace) != 2)
        MG_FAIL(MG_ERR_HDF5, "atlas: block transfer needs a 2-D dataset");
    hsize_t fdims[2];
    H5Sget_simple_extent_dims(fspace, fdims, NULL);
    if (fdims[0] < (hsize_t)m || fdims[1] < (hsize_t)n)
        MG_FAIL(MG_ERR_INTERNAL, "atlas: region %d x %d exceeds the dataset's %llu x %llu", m, n,
                (unsigned long long)fdims[0], (unsigned long long)fdims[1]);
    MG_CHECK(mg_atlas_select(fspace, 2, d, err));
    hsize_t mdims[2] = {mloc, nloc};
    mspace = H5Screate_simple(2, mdims, NULL);
    dxpl = mg_atlas_dxpl_collective();
    buf = mg_malloc(mloc * nloc > 0 ? mloc * nloc : 1, esize, "block buffer", err);
    if (mspace < 0 || dxpl < 0 || !buf)
        MG_FAIL(MG_ERR_NOMEM, "atlas: cannot set up a block transfer of %llu x %llu", (unsigned long long)mloc,
                (unsigned long long)nloc);
    if (mloc * nloc == 0)
        H5Sselect_none(mspace);
    unsigned char *loc = local;
    /* HDF5 moves the selected elements in row-major order; the local array is column-major. */
    if (write) {
        for (hsize_t i = 0; i < mloc; i++)
            for (hsize_t j = 0; j < nloc; j++)
                memcpy(buf + (i * nloc + j) * esize, loc + (i + j * lld) * esize, esize);
        if (H5Dwrite(dset, memtype, mspace, fspace, dxpl, buf) < 0)
            MG_FAIL(MG_ERR_HDF5, "atlas: collective write of a distributed matrix failed (disk full?)");
    } else {
        if (H5Dread(dset, memtype, mspace, fspace, dxpl, buf) < 0)
            MG_FAIL(MG_ERR_HDF5, "atlas: collective read of a distributed matrix failed");
        for (hsize_t i = 0; i < mloc; i++)
            for (hsize_t j = 0; j < nloc; j++)
                memcpy(loc + (i + j * lld) * esize, buf + (i * nloc + j) * esize, esize);
    }
cleanup:
    if (fspace >= 0)
        H5Sclose(fspace);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (dxpl >= 0)
        H5Pclose(dxpl);
    free(buf);
    return st;
}

mg_status mg_atlas_read_blocks(const mg_atlas_grid *g, hid_t dset, hid_t memtype, int m, int n, int nb,
                               void *local, size_t lld, mg_error *err)
{
    return transfer_blocks(g, dset, memtype, m, n, nb, local, lld, 0, err);
}

mg_status mg_atlas_write_blocks(const mg_atlas_grid *g, hid_t dset, hid_t memtype, int m, int n, int nb,
                                const void *local, size_t lld, mg_error *err)
{
    return transfer_blocks(g, dset, memtype, m, n, nb, (void *)local, lld, 1, err);
}

mg_status mg_atlas_write_root(MPI_Comm comm, hid_t loc, const char *path, hid_t type, int ndim, const hsize_t *dims,
                              const void *data, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t space = H5I_INVALID_HID, dset = H5I_INVALID_HID, dxpl = H5I_INVALID_HID, lcpl = H5I_INVALID_HID;
    int rank = 0;
    MPI_Comm_rank(comm, &rank);
    hsize_t count = 1;
    for (int i = 0; i < ndim; i++)
        count *= dims[i];
    space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
    dxpl = mg_atlas_dxpl_collective();
    lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (space < 0 || dxpl < 0 || lcpl < 0 || H5Pset_create_intermediate_group(lcpl, 1) < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot set up dataset %s", path);
    dset = H5Dcreate2(loc, path, type, space, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    if (dset < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot create dataset %s", path);
    if (count > 0) {
        /* Every rank joins the collective write; only rank 0 brings data. */
        static const unsigned char none[16];
        const void *buf = data;
        if (rank != 0 || !data) {
            H5Sselect_none(space);
            buf = none;
        }
        if (H5Dwrite(dset, type, space, space, dxpl, buf) < 0)
            MG_FAIL(MG_ERR_HDF5, "atlas: cannot write dataset %s (disk full?)", path);
    }
cleanup:
    if (dset >= 0)
        H5Dclose(dset);
    if (space >= 0)
        H5Sclose(space);
    if (dxpl >= 0)
        H5Pclose(dxpl);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    return st;
}

/* ---- singular value decomposition ------------------------------------------------ */

mg_status mg_atlas_svd(const mg_atlas_grid *g, mg_atlas_dmat *A, double *s, mg_atlas_dmat *U, mg_atlas_dmat *VT,
                       mg_error *err)
{
    mg_status st = MG_OK;
    double *work = NULL, wq = 0.0, dummy = 0.0;
    int one = 1, info = 0, lwork = -1;
    int k = A->m < A->n ? A->m : A->n;
    const char *jobu = U ? "V" : "N", *jobvt = VT ? "V" : "N";
    double *u = U ? U->a : &dummy, *vt = VT ? VT->a : &dummy;
    const int *descu = U ? U->desc : A->desc, *descvt = VT ? VT->desc : A->desc;
    if ((U && (U->m != A->m || U->n != k || U->nb != A->nb)) || (VT && (VT->m != k || VT->n != A->n || VT->nb != A->nb)))
        return mg_error_set(err, MG_ERR_INTERNAL, "atlas: singular vector matrices of the wrong shape");

    pdgesvd_(jobu, jobvt, &A->m, &A->n, A->a, &one, &one, A->desc, s, u, &one, &one, descu, vt, &one, &one, descvt,
             &wq, &lwork, &info, 1, 1);
    if (info != 0)
        MG_FAIL(MG_ERR_INTERNAL, "atlas: pdgesvd workspace query failed (info %d)", info);
    /* The query's answer, with headroom: pdgesvd's own estimate has been
     * short by a few entries in some ScaLAPACK releases. */
    double want = wq * 1.01 + 1024.0;
    if (!(want < 2147483647.0))
        MG_FAIL(MG_ERR_NOMEM, "atlas: pdgesvd asks for %.0f doubles of workspace, beyond its 32-bit limit", wq);
    lwork = (int)want;
    work = mg_malloc((size_t)lwork, sizeof *work, "pdgesvd workspace", err);
    if (!work)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory for the SVD workspace (%d doubles)", lwork);
    pdgesvd_(jobu, jobvt, &A->m, &A->n, A->a, &one, &one, A->desc, s, u, &one, &one, descu, vt, &one, &one, descvt,
             work, &lwork, &info, 1, 1);
    if (info > 0 && info <= k)
        MG_FAIL(MG_ERR_NUMERIC, "atlas: the SVD of a %d x %d matrix did not converge (pdgesvd info %d)", A->m, A->n,
                info);
    if (info > k)
        MG_FAIL(MG_ERR_NUMERIC, "atlas: the processes disagree on the singular values of a %d x %d matrix "
                "(pdgesvd info %d): mixed floating-point hardware?", A->m, A->n, info);
    if (info < 0)
        MG_FAIL(MG_ERR_INTERNAL, "atlas: pdgesvd rejected argument %d", -info);
    for (int i = 0; i < k; i++)
        if (!isfinite(s[i]))
            MG_FAIL(MG_ERR_NUMERIC, "atlas: the SVD of a %d x %d matrix gave a non-finite singular value", A->m, A->n);
cleanup:
    free(work);
    return st;
}

void mg_atlas_fix_signs(double *v, size_t n, size_t k, int *flip)
{
    for (size_t c = 0; c < k; c++) {
        double best = 0.0;
        size_t at = 0;
        for (size_t j = 0; j < n; j++) {
            double a = fabs(v[j * k + c]);
            if (a > best) {
                best = a;
                at = j;
            }
        }
        flip[c] = n > 0 && v[at * k + c] < 0.0;
        if (flip[c])
            for (size_t j = 0; j < n; j++)
                v[j * k + c] = -v[j * k + c];
    }
}
