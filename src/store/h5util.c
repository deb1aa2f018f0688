/* h5util.c: small HDF5 helpers that turn HDF5 failures into mg_status with a
 * message naming the object, so callers never see HDF5's error stack. */
#include "miagrid/store.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mg_h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static hid_t intermediate_lcpl(void)
{
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    if (lcpl >= 0)
        H5Pset_create_intermediate_group(lcpl, 1);
    return lcpl;
}

mg_status mg_h5_write(hid_t loc, const char *path, hid_t type, int ndim, const hsize_t *dims,
                      const void *data, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t space = H5I_INVALID_HID, dset = H5I_INVALID_HID, lcpl = H5I_INVALID_HID,
          dcpl = H5I_INVALID_HID;
    space = ndim == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(ndim, dims, NULL);
    lcpl = intermediate_lcpl();
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (space < 0 || lcpl < 0 || dcpl < 0)
        MG_FAIL(MG_ERR_HDF5, "%s: cannot create HDF5 property lists", path);

    hsize_t count = 1;
    for (int i = 0; i < ndim; i++)
        count *= dims[i];
    size_t esize = H5Tget_size(type);
    if (ndim >= 1 && count * esize > 4096 && H5Tget_class(type) != H5T_STRING) {
        /* Chunks of whole rows, about 1 MiB, so readers of a slice stay cheap. */
        hsize_t chunk[8];
        size_t row = esize;
        for (int i = 1; i < ndim; i++) {
            chunk[i] = dims[i];
            row *= dims[i];
        }
        hsize_t rows = (1u << 20) / (row ? row : 1);
        if (rows < 1)
            rows = 1;
        chunk[0] = dims[0] < rows ? dims[0] : rows;
        if (chunk[0] == 0)
            chunk[0] = 1;
        H5Pset_chunk(dcpl, ndim, chunk);
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, 4);
    }
    dset = H5Dcreate2(loc, path, type, space, lcpl, dcpl, H5P_DEFAULT);
    if (dset < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot create HDF5 dataset '%s' (does it exist already?)", path);
    if (count > 0 && H5Dwrite(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot write HDF5 dataset '%s' (disk full?)", path);
cleanup:
    if (dset >= 0)
        H5Dclose(dset);
    if (space >= 0)
        H5Sclose(space);
    if (lcpl >= 0)
        H5Pclose(lcpl);
    if (dcpl >= 0)
        H5Pclose(dcpl);
    return st;
}

mg_status mg_h5_read(hid_t loc, const char *path, hid_t type, void **data, hsize_t *dims, int *ndim,
                     mg_error *err)
{
    mg_status st = MG_OK;
    hid_t dset = H5I_INVALID_HID, space = H5I_INVALID_HID;
    void *buf = NULL;
    *data = NULL;
    if (H5Lexists(loc, path, H5P_DEFAULT) <= 0)
        MG_FAIL(MG_ERR_HDF5, "HDF5 dataset '%s' is missing", path);
    dset = H5Dopen2(loc, path, H5P_DEFAULT);
    if (dset < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot open HDF5 dataset '%s'", path);
    space = H5Dget_space(dset);
    int r = H5Sget_simple_extent_ndims(space);
    if (r < 0 || r > 4)
        MG_FAIL(MG_ERR_HDF5, "HDF5 dataset '%s' has unsupported rank %d", path, r);
    hsize_t d[4] = {0, 0, 0, 0};
    H5Sget_simple_extent_dims(space, d, NULL);
    hsize_t count = 1;
    for (int i = 0; i < r; i++) {
        if (d[i] && count > SIZE_MAX / d[i])
            MG_FAIL(MG_ERR_HDF5, "HDF5 dataset '%s' has more elements than memory can address", path);
        count *= d[i];
    }
    /* The file must hold what the shape promises: deflate expands at most
     * about 1032 times, so more is a corrupt or foreign file asking for an
     * allocation it cannot fill (unwritten chunks read as fill values). */
    size_t esize = H5Tget_size(type);
    hsize_t stored = H5Dget_storage_size(dset);
    if ((double)count * (double)esize > 1100.0 * (double)stored + 65536.0)
        MG_FAIL(MG_ERR_HDF5, "HDF5 dataset '%s' claims %llu elements but its file holds %llu bytes of them "
                "(corrupt, or not written by miagrid)", path, (unsigned long long)count,
                (unsigned long long)stored);
    buf = mg_malloc((size_t)count, esize, path, err);
    if (!buf)
        MG_FAIL(MG_ERR_NOMEM, "%s: cannot allocate %llu elements", path, (unsigned long long)count);
    if (count > 0 && H5Dread(dset, type, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf) < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot read HDF5 dataset '%s' (corrupt file?)", path);
    if (dims)
        for (int i = 0; i < 4; i++)
            dims[i] = i < r ? d[i] : 0;
    if (ndim)
        *ndim = r;
    *data = buf;
    buf = NULL;
cleanup:
    free(buf);
    if (space >= 0)
        H5Sclose(space);
    if (dset >= 0)
        H5Dclose(dset);
    return st;
}

static mg_status write_attr(hid_t loc, const char *name, hid_t type, const void *value, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t space = H5Screate(H5S_SCALAR), attr = H5I_INVALID_HID;
    if (H5Aexists(loc, name) > 0)
        H5Adelete(loc, name);
    attr = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (attr < 0 || H5Awrite(attr, type, value) < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot write HDF5 attribute '%s'", name);
cleanup:
    if (attr >= 0)
        H5Aclose(attr);
    H5Sclose(space);
    return st;
}

mg_status mg_h5_attr_str(hid_t loc, const char *name, const char *value, mg_error *err)
{
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    mg_status st = write_attr(loc, name, t, &value, err);
    H5Tclose(t);
    return st;
}

mg_status mg_h5_attr_f64(hid_t loc, const char *name, double value, mg_error *err)
{
    return write_attr(loc, name, H5T_NATIVE_DOUBLE, &value, err);
}

mg_status mg_h5_attr_i64(hid_t loc, const char *name, int64_t value, mg_error *err)
{
    return write_attr(loc, name, H5T_NATIVE_INT64, &value, err);
}

/* Attributes miagrid reads hold one value; an array would overrun the
 * caller's variable. */
static int one_element(hid_t attr)
{
    hid_t sp = H5Aget_space(attr);
    int one = sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1;
    if (sp >= 0)
        H5Sclose(sp);
    return one;
}

mg_status mg_h5_get_attr_str(hid_t loc, const char *name, char *buf, size_t n, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t attr = H5I_INVALID_HID, ftype = H5I_INVALID_HID, mtype = H5I_INVALID_HID;
    buf[0] = '\0';
    if (H5Aexists(loc, name) <= 0)
        MG_FAIL(MG_ERR_HDF5, "HDF5 attribute '%s' is missing", name);
    attr = H5Aopen(loc, name, H5P_DEFAULT);
    ftype = attr >= 0 ? H5Aget_type(attr) : H5I_INVALID_HID;
    if (attr < 0 || ftype < 0 || H5Tget_class(ftype) != H5T_STRING || !one_element(attr))
        MG_FAIL(MG_ERR_HDF5, "HDF5 attribute '%s' is not a string", name);
    if (H5Tis_variable_str(ftype) > 0) {
        char *s = NULL;
        mtype = H5Tcopy(H5T_C_S1);
        H5Tset_size(mtype, H5T_VARIABLE);
        H5Tset_cset(mtype, H5Tget_cset(ftype));
        if (H5Aread(attr, mtype, &s) < 0 || !s)
            MG_FAIL(MG_ERR_HDF5, "cannot read HDF5 attribute '%s'", name);
        snprintf(buf, n, "%s", s);
        H5free_memory(s);
    } else {
        size_t sz = H5Tget_size(ftype);
        if (sz == 0 || sz > ((size_t)1 << 20))
            MG_FAIL(MG_ERR_HDF5, "HDF5 attribute '%s' is a string of %zu bytes; expected at most 1 MiB", name, sz);
        char *tmp = calloc(sz + 1, 1);
        if (!tmp)
            MG_FAIL(MG_ERR_NOMEM, "attribute '%s': out of memory", name);
        mtype = H5Tcopy(ftype);
        if (H5Aread(attr, mtype, tmp) < 0) {
            free(tmp);
            MG_FAIL(MG_ERR_HDF5, "cannot read HDF5 attribute '%s'", name);
        }
        snprintf(buf, n, "%s", tmp);
        free(tmp);
    }
cleanup:
    if (mtype >= 0)
        H5Tclose(mtype);
    if (ftype >= 0)
        H5Tclose(ftype);
    if (attr >= 0)
        H5Aclose(attr);
    return st;
}

mg_status mg_h5_get_attr_f64(hid_t loc, const char *name, double *value, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t attr = H5I_INVALID_HID;
    if (H5Aexists(loc, name) <= 0)
        MG_FAIL(MG_ERR_HDF5, "HDF5 attribute '%s' is missing", name);
    attr = H5Aopen(loc, name, H5P_DEFAULT);
    if (attr < 0 || !one_element(attr) || H5Aread(attr, H5T_NATIVE_DOUBLE, value) < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot read HDF5 attribute '%s' as a number", name);
cleanup:
    if (attr >= 0)
        H5Aclose(attr);
    return st;
}
