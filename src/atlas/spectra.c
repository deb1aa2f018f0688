/* spectra.c: the singular value spectrum of one weight tensor, read straight
 * into ScaLAPACK's block-cyclic layout with collective parallel HDF5 reads
 * and decomposed with pdgesvd. Conv weights (OC, C, KH, KW) are the matrix
 * OC x (C*KH*KW): their row-major storage already is that matrix. */
#include "atlas/atlas_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* Collective: this process's row blocks of the tensor, every column, as
 * memtype into buf (local rows x cols, row-major). Used for tensors of rank
 * > 2, whose columns are not a hyperslab of the file's dataspace. */
static mg_status read_row_strip(const mg_atlas_grid *g, hid_t dset, hid_t memtype, int nb, hsize_t mloc, hsize_t cols,
                                void *buf, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t fspace = H5Dget_space(dset), mspace = H5I_INVALID_HID, dxpl = mg_atlas_dxpl_collective();
    hsize_t fdims[H5S_MAX_RANK];
    if (fspace < 0 || dxpl < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot set up reading a weight tensor");
    H5Sget_simple_extent_dims(fspace, fdims, NULL);
    mg_atlas_cyclic d = {fdims[0], (hsize_t)nb, g->myrow, g->nprow};
    MG_CHECK(mg_atlas_select(fspace, 1, &d, err));
    hsize_t mdims[2] = {mloc, cols};
    mspace = H5Screate_simple(2, mdims, NULL);
    if (mspace < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: cannot set up reading a weight tensor");
    if (mloc * cols == 0)
        H5Sselect_none(mspace);
    if (H5Dread(dset, memtype, mspace, fspace, dxpl, buf) < 0)
        MG_FAIL(MG_ERR_HDF5, "atlas: collective read of a weight tensor failed");
cleanup:
    if (fspace >= 0)
        H5Sclose(fspace);
    if (mspace >= 0)
        H5Sclose(mspace);
    if (dxpl >= 0)
        H5Pclose(dxpl);
    return st;
}

/* Collective: tensor `dset` as the matrix rows x cols into A's local blocks
 * (memtype double) or into `local` (any memtype, column-major, A's lld). */
static mg_status read_matrix(const mg_atlas_grid *g, hid_t dset, int ndim, hid_t memtype, const mg_atlas_dmat *A,
                             void *local, mg_error *err)
{
    if (ndim == 2)
        return mg_atlas_read_blocks(g, dset, memtype, A->m, A->n, A->nb, local, (size_t)A->lld, err);
    mg_status st = MG_OK;
    size_t esize = H5Tget_size(memtype);
    hsize_t mloc = (hsize_t)A->mloc, cols = (hsize_t)A->n;
    unsigned char *strip = mg_malloc(mloc * cols > 0 ? mloc * cols : 1, esize, "weight rows", err), *out = local;
    if (!strip)
        return MG_ERR_NOMEM;
    MG_CHECK(read_row_strip(g, dset, memtype, A->nb, mloc, cols, strip, err));
    for (int jl = 0; jl < A->nloc; jl++) {
        size_t j = (size_t)mg_atlas_l2g(jl, A->nb, g->mycol, g->npcol);
        for (hsize_t il = 0; il < mloc; il++)
            memcpy(out + (il + (size_t)jl * (size_t)A->lld) * esize, strip + (il * cols + j) * esize, esize);
    }
cleanup:
    free(strip);
    return st;
}

mg_status mg_atlas_spectrum(const mg_atlas_grid *g, hid_t weight, hid_t mask, int nb, int *rows, int *cols,
                            double **s, double *zero_fraction, mg_error *err)
{
    mg_status st = MG_OK;
    mg_atlas_dmat A;
    uint8_t *keep = NULL;
    hid_t space = H5Dget_space(weight);
    hsize_t dims[H5S_MAX_RANK], mdims[H5S_MAX_RANK];
    int ndim = space >= 0 ? H5Sget_simple_extent_dims(space, dims, NULL) : -1;
    memset(&A, 0, sizeof A);
    *s = NULL;
    if (space >= 0)
        H5Sclose(space);
    if (ndim < 2 || ndim > 4)
        return mg_error_set(err, MG_ERR_DATA, "atlas: a weight tensor of rank %d is not a matrix", ndim);
    hsize_t ncols = 1;
    for (int i = 1; i < ndim; i++)
        ncols *= dims[i];
    if (dims[0] > 2147483647u || ncols > 2147483647u || dims[0] == 0 || ncols == 0)
        return mg_error_set(err, MG_ERR_DATA, "atlas: a weight tensor of %llu x %llu is out of range",
                            (unsigned long long)dims[0], (unsigned long long)ncols);
    if (mask >= 0) {
        hid_t ms = H5Dget_space(mask);
        int mnd = ms >= 0 ? H5Sget_simple_extent_dims(ms, mdims, NULL) : -1;
        if (ms >= 0)
            H5Sclose(ms);
        if (mnd != ndim || memcmp(dims, mdims, (size_t)ndim * sizeof *dims) != 0)
            return mg_error_set(err, MG_ERR_DATA, "atlas: the mask's shape differs from the weight's");
    }
    *rows = (int)dims[0];
    *cols = (int)ncols;
    MG_CHECK(mg_atlas_dmat_init(&A, g, *rows, *cols, nb, err));
    /* Parallel HDF5 gives up collective I/O when it has to convert types, so
     * single-precision weights are read as they are and widened here. */
    {
        hid_t ft = H5Dget_type(weight);
        int is_float = ft >= 0 && H5Tget_class(ft) == H5T_FLOAT && H5Tget_size(ft) == sizeof(float) &&
                       H5Tget_order(ft) == H5Tget_order(H5T_NATIVE_FLOAT);
        if (ft >= 0)
            H5Tclose(ft);
        if (is_float) {
            size_t n = (size_t)A.lld * (size_t)(A.nloc > 0 ? A.nloc : 1);
            float *f = mg_malloc(n, sizeof *f, "single-precision weights", err);
            if (!f)
                MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory for a weight tensor");
            st = read_matrix(g, weight, ndim, H5T_NATIVE_FLOAT, &A, f, err);
            for (size_t i = 0; st == MG_OK && i < n; i++)
                A.a[i] = (double)f[i];
            free(f);
            MG_CHECK(st);
        } else {
            MG_CHECK(read_matrix(g, weight, ndim, H5T_NATIVE_DOUBLE, &A, A.a, err));
        }
    }
    if (mask >= 0) {
        keep = mg_calloc((size_t)A.lld * (size_t)(A.nloc > 0 ? A.nloc : 1), 1, "mask blocks", err);
        if (!keep)
            MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory for a mask");
        MG_CHECK(read_matrix(g, mask, ndim, H5T_NATIVE_UINT8, &A, keep, err));
    }
    long long zeros = 0;
    for (int jl = 0; jl < A.nloc; jl++)
        for (int il = 0; il < A.mloc; il++) {
            size_t at = (size_t)il + (size_t)jl * (size_t)A.lld;
            if (keep && !keep[at])
                A.a[at] = 0.0;
            zeros += A.a[at] == 0.0;
        }
    if (MPI_Allreduce(MPI_IN_PLACE, &zeros, 1, MPI_LONG_LONG, MPI_SUM, g->comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: counting zero weights failed");
    *zero_fraction = (double)zeros / ((double)*rows * (double)*cols);
    int k = *rows < *cols ? *rows : *cols;
    *s = mg_malloc((size_t)k, sizeof **s, "singular values", err);
    if (!*s)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory for singular values");
    MG_CHECK(mg_atlas_svd(g, &A, *s, NULL, NULL, err));
cleanup:
    if (st != MG_OK) {
        free(*s);
        *s = NULL;
    }
    mg_atlas_dmat_free(&A);
    free(keep);
    return st;
}
