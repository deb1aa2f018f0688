/* test_dist.c: the atlas's distributed layer on one process: block-cyclic
 * arithmetic against ScaLAPACK's NUMROC, hyperslab selections of every
 * process of simulated grids, collective block reads and writes, and pdgesvd
 * and the weight spectra against LAPACK's dgesvd, on matrices whose sizes the
 * block size does not divide. */
#include <hdf5.h>
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "atlas/atlas_internal.h"
#include "mg_test.h"
#include "miagrid/store.h"

extern int numroc_(const int *n, const int *nb, const int *iproc, const int *isrc, const int *nprocs);
extern void dgesvd_(const char *jobu, const char *jobvt, const int *m, const int *n, double *a, const int *lda,
                    double *s, double *u, const int *ldu, double *vt, const int *ldvt, double *work,
                    const int *lwork, int *info, size_t jobu_len, size_t jobvt_len);

static void tmp_path(char *buf, size_t n, const char *name)
{
    const char *d = getenv("MG_TEST_TMP");
    snprintf(buf, n, "%s/%s", d && d[0] ? d : "/tmp", name);
}

/* A 1-process grid that believes it is process (r, c) of an nprow x npcol
 * grid: enough for the selection and transfer code, which only reads the
 * coordinates. */
static mg_atlas_grid fake_grid(int nprow, int npcol, int r, int c)
{
    mg_atlas_grid g;
    memset(&g, 0, sizeof g);
    g.comm = MPI_COMM_SELF;
    g.size = 1;
    g.nprow = nprow;
    g.npcol = npcol;
    g.myrow = r;
    g.mycol = c;
    g.row_comm = g.col_comm = MPI_COMM_SELF;
    return g;
}

static void random_matrix(double *a, size_t n, const char *stream)
{
    mg_rng rng;
    mg_rng_seed(&rng, 7, "atlas-test", stream);
    for (size_t i = 0; i < n; i++)
        a[i] = mg_rng_normal(&rng);
}

static void test_numroc(void)
{
    int bad = 0;
    for (int n = 0; n <= 40; n++)
        for (int nb = 1; nb <= 9; nb++)
            for (int np = 1; np <= 5; np++) {
                int total = 0;
                for (int p = 0; p < np; p++) {
                    int zero = 0, mine = mg_atlas_numroc(n, nb, p, np);
                    bad += mine != numroc_(&n, &nb, &p, &zero, &np);
                    total += mine;
                    mg_atlas_cyclic d = {(hsize_t)n, (hsize_t)nb, p, np};
                    bad += (int)mg_atlas_cyclic_count(&d) != mine;
                    /* Local indices map to increasing globals owned by p. */
                    int prev = -1;
                    for (int il = 0; il < mine; il++) {
                        int gi = mg_atlas_l2g(il, nb, p, np);
                        bad += gi <= prev || gi >= n || (gi / nb) % np != p;
                        prev = gi;
                    }
                }
                bad += total != n;
            }
    CHECK_INT_EQ(bad, 0);
    int r, c;
    mg_atlas_grid_shape(1, &r, &c);
    CHECK(r == 1 && c == 1);
    mg_atlas_grid_shape(4, &r, &c);
    CHECK(r == 2 && c == 2);
    mg_atlas_grid_shape(6, &r, &c);
    CHECK(r == 2 && c == 3);
    mg_atlas_grid_shape(7, &r, &c);
    CHECK(r == 1 && c == 7);
    mg_atlas_grid_shape(12, &r, &c);
    CHECK(r == 3 && c == 4);
}

/* Every element of an m x n space selected by exactly one process of the
 * grid, the one the block-cyclic rule names. */
static void test_select_covers(int m, int n, int nb, int nprow, int npcol)
{
    int *owner = calloc((size_t)m * (size_t)n, sizeof *owner);
    hsize_t dims[2] = {(hsize_t)m, (hsize_t)n};
    int bad = 0;
    for (int r = 0; r < nprow; r++)
        for (int c = 0; c < npcol; c++) {
            hid_t sp = H5Screate_simple(2, dims, NULL);
            mg_atlas_cyclic d[2] = {{(hsize_t)m, (hsize_t)nb, r, nprow}, {(hsize_t)n, (hsize_t)nb, c, npcol}};
            mg_error err;
            CHECK_OK(mg_atlas_select(sp, 2, d, &err), &err);
            hssize_t np = H5Sget_select_npoints(sp);
            bad += np != (hssize_t)mg_atlas_numroc(m, nb, r, nprow) * mg_atlas_numroc(n, nb, c, npcol);
            if (np > 0) {
                hssize_t nblocks = H5Sget_select_hyper_nblocks(sp);
                hsize_t *bl = malloc((size_t)nblocks * 4 * sizeof *bl);
                H5Sget_select_hyper_blocklist(sp, 0, (hsize_t)nblocks, bl);
                for (hssize_t b = 0; b < nblocks; b++)
                    for (hsize_t i = bl[4 * b]; i <= bl[4 * b + 2]; i++)
                        for (hsize_t j = bl[4 * b + 1]; j <= bl[4 * b + 3]; j++) {
                            bad += owner[i * (hsize_t)n + j] != 0;
                            bad += (int)((i / (hsize_t)nb) % (hsize_t)nprow) != r;
                            bad += (int)((j / (hsize_t)nb) % (hsize_t)npcol) != c;
                            owner[i * (hsize_t)n + j] = 1 + r * npcol + c;
                        }
                free(bl);
            }
            H5Sclose(sp);
        }
    for (int i = 0; i < m * n; i++)
        bad += owner[i] == 0;
    if (bad)
        fprintf(stderr, "selection %dx%d nb %d grid %dx%d: %d problems\n", m, n, nb, nprow, npcol, bad);
    CHECK_INT_EQ(bad, 0);
    free(owner);
}

static void test_select_rank4(void)
{
    /* One cyclic dimension in a 4-D space: whole trailing dimensions. */
    hsize_t dims[4] = {10, 3, 2, 2};
    hid_t sp = H5Screate_simple(4, dims, NULL);
    mg_atlas_cyclic d = {10, 4, 1, 2}; /* rows 4..7 */
    mg_error err;
    CHECK_OK(mg_atlas_select(sp, 1, &d, &err), &err);
    CHECK_INT_EQ(H5Sget_select_npoints(sp), 4 * 12);
    d.iproc = 0; /* rows 0..3 and the partial block 8..9 */
    CHECK_OK(mg_atlas_select(sp, 1, &d, &err), &err);
    CHECK_INT_EQ(H5Sget_select_npoints(sp), 6 * 12);
    mg_atlas_cyclic e = {10, 20, 1, 2}; /* one block, owned by process 0: nothing for 1 */
    CHECK_OK(mg_atlas_select(sp, 1, &e, &err), &err);
    CHECK_INT_EQ(H5Sget_select_npoints(sp), 0);
    H5Sclose(sp);
}

/* Read a 37 x 11 dataset into each process of simulated grids, and write it
 * back piece by piece, with NB = 4. */
static void test_transfer(void)
{
    enum { M = 37, N = 11, NB = 4 };
    char path[512];
    tmp_path(path, sizeof path, "atlas-dist.h5");
    double *a = malloc(M * N * sizeof *a), *back = calloc(M * N, sizeof *back);
    random_matrix(a, M * N, "transfer");
    hid_t fapl = mg_atlas_fapl(MPI_COMM_SELF);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    CHECK(f >= 0);
    hsize_t dims[2] = {M, N};
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t d = H5Dcreate2(f, "a", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t d2 = H5Dcreate2(f, "b", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(H5Dwrite(d, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, a) >= 0);
    int grids[][2] = {{1, 1}, {2, 3}, {3, 2}, {4, 4}};
    for (size_t gi = 0; gi < sizeof grids / sizeof *grids; gi++) {
        int nprow = grids[gi][0], npcol = grids[gi][1];
        double maxdiff = 0.0;
        for (int r = 0; r < nprow; r++)
            for (int c = 0; c < npcol; c++) {
                mg_atlas_grid g = fake_grid(nprow, npcol, r, c);
                int mloc = mg_atlas_numroc(M, NB, r, nprow), nloc = mg_atlas_numroc(N, NB, c, npcol);
                size_t lld = mloc > 1 ? (size_t)mloc : 1;
                double *loc = calloc(lld * (size_t)(nloc > 0 ? nloc : 1), sizeof *loc);
                mg_error err;
                CHECK_OK(mg_atlas_read_blocks(&g, d, H5T_NATIVE_DOUBLE, M, N, NB, loc, lld, &err), &err);
                for (int il = 0; il < mloc; il++)
                    for (int jl = 0; jl < nloc; jl++) {
                        int i = mg_atlas_l2g(il, NB, r, nprow), j = mg_atlas_l2g(jl, NB, c, npcol);
                        double diff = fabs(loc[(size_t)il + (size_t)jl * lld] - a[i * N + j]);
                        maxdiff = diff > maxdiff ? diff : maxdiff;
                    }
                CHECK_OK(mg_atlas_write_blocks(&g, d2, H5T_NATIVE_DOUBLE, M, N, NB, loc, lld, &err), &err);
                free(loc);
            }
        CHECK_NEAR(maxdiff, 0.0, 0.0);
        CHECK(H5Dread(d2, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
        CHECK_TENSOR_NEAR(back, a, M * N, 0.0);
        memset(back, 0, M * N * sizeof *back);
        CHECK(H5Dwrite(d2, H5T_NATIVE_DOUBLE, H5S_ALL, H5S_ALL, H5P_DEFAULT, back) >= 0);
    }
    H5Dclose(d);
    H5Dclose(d2);
    H5Sclose(sp);
    H5Fclose(f);
    H5Pclose(fapl);
    remove(path);
    free(a);
    free(back);
}

/* LAPACK's SVD of the column-major m x n matrix a (copied). */
static void lapack_svd(const double *a, int m, int n, double *s, double *u, double *vt)
{
    int k = m < n ? m : n, lwork = -1, info = 0;
    double *c = malloc((size_t)m * (size_t)n * sizeof *c), wq;
    memcpy(c, a, (size_t)m * (size_t)n * sizeof *c);
    const char *job = u ? "S" : "N";
    dgesvd_(job, job, &m, &n, c, &m, s, u ? u : &wq, &m, vt ? vt : &wq, &k, &wq, &lwork, &info, 1, 1);
    lwork = (int)wq;
    double *work = malloc((size_t)lwork * sizeof *work);
    dgesvd_(job, job, &m, &n, c, &m, s, u ? u : &wq, &m, vt ? vt : &wq, &k, work, &lwork, &info, 1, 1);
    CHECK_INT_EQ(info, 0);
    free(work);
    free(c);
}

/* Largest difference between column c of x and of y (m rows, leading
 * dimensions lx, ly), allowing one sign flip. */
static double vec_diff(const double *x, size_t lx, const double *y, size_t ly, int m, int c)
{
    double dot = 0.0, d = 0.0;
    for (int i = 0; i < m; i++)
        dot += x[i + (size_t)c * lx] * y[i + (size_t)c * ly];
    double sign = dot >= 0.0 ? 1.0 : -1.0;
    for (int i = 0; i < m; i++) {
        double e = fabs(x[i + (size_t)c * lx] - sign * y[i + (size_t)c * ly]);
        d = e > d ? e : d;
    }
    return d;
}

static void test_svd(const mg_atlas_grid *g, int m, int n, int nb)
{
    int k = m < n ? m : n;
    double *a = malloc((size_t)m * (size_t)n * sizeof *a);
    double *s = malloc((size_t)k * sizeof *s), *s_ref = malloc((size_t)k * sizeof *s_ref);
    double *u = malloc((size_t)m * (size_t)k * sizeof *u), *vt = malloc((size_t)k * (size_t)n * sizeof *vt);
    random_matrix(a, (size_t)m * (size_t)n, "svd");
    lapack_svd(a, m, n, s_ref, u, vt);

    mg_atlas_dmat A, U, VT;
    mg_error err;
    CHECK_OK(mg_atlas_dmat_init(&A, g, m, n, nb, &err), &err);
    CHECK_OK(mg_atlas_dmat_init(&U, g, m, k, nb, &err), &err);
    CHECK_OK(mg_atlas_dmat_init(&VT, g, k, n, nb, &err), &err);
    CHECK_INT_EQ(A.mloc, m);
    memcpy(A.a, a, (size_t)m * (size_t)n * sizeof *a);
    CHECK_OK(mg_atlas_svd(g, &A, s, &U, &VT, &err), &err);
    double worst = 0.0, worst_u = 0.0, worst_v = 0.0;
    for (int i = 0; i < k; i++) {
        worst = fmax(worst, fabs(s[i] - s_ref[i]) / s_ref[0]);
        worst_u = fmax(worst_u, vec_diff(U.a, (size_t)U.lld, u, (size_t)m, m, i));
    }
    /* Rows of VT: compare the transposes' columns. */
    for (int i = 0; i < k; i++) {
        double dot = 0.0, d = 0.0;
        for (int j = 0; j < n; j++)
            dot += VT.a[i + (size_t)j * (size_t)VT.lld] * vt[i + (size_t)j * (size_t)k];
        for (int j = 0; j < n; j++)
            d = fmax(d, fabs(VT.a[i + (size_t)j * (size_t)VT.lld] - (dot >= 0 ? 1 : -1) * vt[i + (size_t)j * (size_t)k]));
        worst_v = fmax(worst_v, d);
    }
    CHECK_NEAR(worst, 0.0, 1e-12);
    CHECK_NEAR(worst_u, 0.0, 1e-10);
    CHECK_NEAR(worst_v, 0.0, 1e-10);

    /* Values only. */
    memcpy(A.a, a, (size_t)m * (size_t)n * sizeof *a);
    CHECK_OK(mg_atlas_svd(g, &A, s, NULL, NULL, &err), &err);
    worst = 0.0;
    for (int i = 0; i < k; i++)
        worst = fmax(worst, fabs(s[i] - s_ref[i]) / s_ref[0]);
    CHECK_NEAR(worst, 0.0, 1e-12);
    mg_atlas_dmat_free(&A);
    mg_atlas_dmat_free(&U);
    mg_atlas_dmat_free(&VT);
    free(a);
    free(s);
    free(s_ref);
    free(u);
    free(vt);
}

/* A conv-shaped weight (6, 2, 3, 3) and a 2-D one (37, 11), with masks: the
 * spectrum of the masked OC x (C*KH*KW) matrix. */
static void test_spectrum(const mg_atlas_grid *g)
{
    char path[512];
    tmp_path(path, sizeof path, "atlas-spectrum.h5");
    hsize_t d4[4] = {6, 2, 3, 3}, d2[2] = {37, 11};
    size_t n4 = 6 * 18, n2 = 37 * 11;
    float *w4 = malloc(n4 * sizeof *w4), *w2 = malloc(n2 * sizeof *w2);
    uint8_t *m4 = malloc(n4), *m2 = malloc(n2);
    double *tmp = malloc(n2 * sizeof *tmp);
    random_matrix(tmp, n2, "spectrum");
    for (size_t i = 0; i < n4; i++) {
        w4[i] = (float)tmp[i];
        m4[i] = (uint8_t)(i % 3 != 0);
    }
    for (size_t i = 0; i < n2; i++) {
        w2[i] = (float)tmp[i];
        m2[i] = (uint8_t)(i % 5 != 1);
    }
    hid_t fapl = mg_atlas_fapl(MPI_COMM_SELF);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    hid_t s4 = H5Screate_simple(4, d4, NULL), s2 = H5Screate_simple(2, d2, NULL);
    hid_t dw4 = H5Dcreate2(f, "w4", H5T_NATIVE_FLOAT, s4, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dm4 = H5Dcreate2(f, "m4", H5T_NATIVE_UINT8, s4, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dw2 = H5Dcreate2(f, "w2", H5T_NATIVE_FLOAT, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    hid_t dm2 = H5Dcreate2(f, "m2", H5T_NATIVE_UINT8, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dwrite(dw4, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w4);
    H5Dwrite(dm4, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, m4);
    H5Dwrite(dw2, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, w2);
    H5Dwrite(dm2, H5T_NATIVE_UINT8, H5S_ALL, H5S_ALL, H5P_DEFAULT, m2);

    struct {
        hid_t w, m;
        int rows, cols;
        const float *wv;
        const uint8_t *mv;
    } cases[] = {{dw4, dm4, 6, 18, w4, m4}, {dw2, dm2, 37, 11, w2, m2}, {dw2, -1, 37, 11, w2, NULL}};
    for (size_t c = 0; c < sizeof cases / sizeof *cases; c++) {
        int rows = 0, cols = 0, k = cases[c].rows < cases[c].cols ? cases[c].rows : cases[c].cols;
        double *s = NULL, zf = -1.0, *ref = malloc((size_t)k * sizeof *ref);
        double *colmaj = malloc((size_t)cases[c].rows * (size_t)cases[c].cols * sizeof *colmaj);
        size_t zeros = 0;
        for (int i = 0; i < cases[c].rows; i++)
            for (int j = 0; j < cases[c].cols; j++) {
                size_t at = (size_t)i * (size_t)cases[c].cols + (size_t)j;
                double v = cases[c].mv && !cases[c].mv[at] ? 0.0 : (double)cases[c].wv[at];
                colmaj[(size_t)i + (size_t)j * (size_t)cases[c].rows] = v;
                zeros += v == 0.0;
            }
        lapack_svd(colmaj, cases[c].rows, cases[c].cols, ref, NULL, NULL);
        mg_error err;
        CHECK_OK(mg_atlas_spectrum(g, cases[c].w, cases[c].m, 4, &rows, &cols, &s, &zf, &err), &err);
        CHECK_INT_EQ(rows, cases[c].rows);
        CHECK_INT_EQ(cols, cases[c].cols);
        CHECK_NEAR(zf, (double)zeros / (rows * cols), 1e-15);
        if (s) {
            double worst = 0.0;
            for (int i = 0; i < k; i++)
                worst = fmax(worst, fabs(s[i] - ref[i]) / ref[0]);
            CHECK_NEAR(worst, 0.0, 1e-12);
        }
        free(s);
        free(ref);
        free(colmaj);
    }
    H5Dclose(dw4);
    H5Dclose(dm4);
    H5Dclose(dw2);
    H5Dclose(dm2);
    H5Sclose(s4);
    H5Sclose(s2);
    H5Fclose(f);
    H5Pclose(fapl);
    remove(path);
    free(w4);
    free(w2);
    free(m4);
    free(m2);
    free(tmp);
}

static void test_fix_signs(void)
{
    /* 3 x 2 row-major: component 0's largest entry is -5 (flip), component 1's
     * is 4 (keep); a tie keeps the lower index. */
    double v[6] = {1, 4, -5, -4, 2, 0};
    int flip[2];
    mg_atlas_fix_signs(v, 3, 2, flip);
    CHECK(flip[0] == 1 && flip[1] == 0);
    CHECK(v[0] == -1 && v[2] == 5 && v[4] == -2 && v[1] == 4);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    mg_h5_quiet();
    test_numroc();
    test_select_covers(37, 11, 4, 2, 3);
    test_select_covers(37, 11, 4, 3, 2);
    test_select_covers(8, 8, 4, 2, 2);
    test_select_covers(5, 3, 64, 2, 2);
    test_select_covers(1, 1, 1, 1, 1);
    test_select_rank4();
    test_transfer();
    test_fix_signs();

    mg_atlas_grid g;
    mg_error err;
    CHECK_OK(mg_atlas_grid_init(&g, MPI_COMM_WORLD, &err), &err);
    CHECK(g.nprow == 1 && g.npcol == 1 && g.myrow == 0 && g.mycol == 0);
    test_svd(&g, 37, 11, 4);
    test_svd(&g, 11, 37, 4);
    test_svd(&g, 37, 11, 64);
    test_svd(&g, 1, 5, 4);
    test_spectrum(&g);
    mg_atlas_grid_free(&g);
    MPI_Finalize();
    MG_TEST_MAIN_END();
}
