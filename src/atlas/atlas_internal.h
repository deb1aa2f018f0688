/*
 * atlas_internal.h: the pieces of the vulnerability atlas, exposed to its
 * unit tests: the BLACS process grid, block-cyclic index arithmetic and HDF5
 * hyperslab selections, distributed matrices read and written with collective
 * parallel HDF5 I/O, the pdgesvd wrapper, and the statistics kernels.
 *
 * Block-cyclic layout (ScaLAPACK's, first block on process 0): global index i
 * of a dimension with block size nb over np processes lives on process
 * (i / nb) % np at local index (i / (nb*np)) * nb + i % nb. Local arrays are
 * column-major with leading dimension lld >= max(1, local rows).
 */
#ifndef MG_ATLAS_INTERNAL_H
#define MG_ATLAS_INTERNAL_H

#include <hdf5.h>
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "miagrid/atlas.h"
#include "miagrid/util.h"

/* ---- process grid ------------------------------------------------------------ */

typedef struct {
    MPI_Comm comm;
    int rank, size;
    int sys_ctxt, ctxt; /* BLACS system handle of comm and the grid context */
    int nprow, npcol, myrow, mycol;
    MPI_Comm row_comm; /* the ranks of my process row, ordered by process column */
    MPI_Comm col_comm; /* the ranks of my process column, ordered by process row */
} mg_atlas_grid;

/* The grid shape for `size` ranks: nprow x npcol = size with nprow <= npcol
 * and nprow the largest divisor of size not above sqrt(size). */
void mg_atlas_grid_shape(int size, int *nprow, int *npcol);

/* Collective over comm: a row-major BLACS grid over all its ranks and the
 * row and column communicators. Free with mg_atlas_grid_free. */
mg_status mg_atlas_grid_init(mg_atlas_grid *g, MPI_Comm comm, mg_error *err);
void mg_atlas_grid_free(mg_atlas_grid *g);

/* ---- block-cyclic arithmetic --------------------------------------------------- */

/* Number of the n indices that process iproc of nprocs owns (ScaLAPACK NUMROC
 * with source process 0). */
int mg_atlas_numroc(int n, int nb, int iproc, int nprocs);
/* Global index of local index il on process iproc. */
int mg_atlas_l2g(int il, int nb, int iproc, int nprocs);

/* One dimension of a selection: the indices of [0, n) that process iproc of
 * nprocs owns in blocks of nb. {n, n, 0, 1} is the whole dimension. */
typedef struct {
    hsize_t n;
    hsize_t nb;
    int iproc, nprocs;
} mg_atlas_cyclic;

mg_atlas_cyclic mg_atlas_cyclic_whole(hsize_t n);
/* How many indices of the dimension the process owns. */
hsize_t mg_atlas_cyclic_count(const mg_atlas_cyclic *d);
/* Select in `space` (rank >= ndim) the product of the owned index sets of the
 * first ndim dimensions (ndim <= 4), and every index of the remaining ones.
 * The selection is a union of at most 2^ndim regular hyperslabs (the full
 * blocks, and the partial last block where this process owns it); an empty
 * product selects nothing. Elements come out in row-major order of their
 * global indices, which is the order of their local indices. */
mg_status mg_atlas_select(hid_t space, int ndim, const mg_atlas_cyclic *dims, mg_error *err);

/* ---- distributed matrices ------------------------------------------------------- */

typedef struct {
    int m, n, nb;
    int mloc, nloc, lld;
    int desc[9]; /* ScaLAPACK array descriptor */
    double *a;   /* lld x nloc, column-major, zeroed; never NULL */
} mg_atlas_dmat;

/* An m x n matrix distributed over the grid in nb x nb blocks. */
mg_status mg_atlas_dmat_init(mg_atlas_dmat *A, const mg_atlas_grid *g, int m, int n, int nb, mg_error *err);
void mg_atlas_dmat_free(mg_atlas_dmat *A);

/* Collective: read the region [0,m) x [0,n) of the 2-D dataset dset into this
 * process's blocks (block size nb over the grid), as memtype, into `local`
 * (column-major, leading dimension lld). One hyperslab selection per rank and
 * one collective H5Dread. */
mg_status mg_atlas_read_blocks(const mg_atlas_grid *g, hid_t dset, hid_t memtype, int m, int n, int nb,
                               void *local, size_t lld, mg_error *err);
/* Collective: the reverse, writing this process's blocks of [0,m) x [0,n). */
mg_status mg_atlas_write_blocks(const mg_atlas_grid *g, hid_t dset, hid_t memtype, int m, int n, int nb,
                                const void *local, size_t lld, mg_error *err);

/* Collective: singular values of A (destroyed) into s[min(m,n)], descending,
 * identical on every rank. U (m x min(m,n)) and VT (min(m,n) x n), when not
 * NULL, must be initialised with A's block size and receive the singular
 * vectors. Uses ScaLAPACK pdgesvd. */
mg_status mg_atlas_svd(const mg_atlas_grid *g, mg_atlas_dmat *A, double *s, mg_atlas_dmat *U, mg_atlas_dmat *VT,
                       mg_error *err);

/* ---- HDF5 under MPI-IO ------------------------------------------------------------ */

/* A file access list with the MPI-IO driver on comm, and a transfer list for
 * collective I/O. Close with H5Pclose. */
hid_t mg_atlas_fapl(MPI_Comm comm);
hid_t mg_atlas_dxpl_collective(void);

/* Collective: create dataset `path` (ndim <= 2, contiguous) in loc and write
 * `data` from rank 0 of comm; the other ranks take part with an empty
 * selection and may pass NULL. */
mg_status mg_atlas_write_root(MPI_Comm comm, hid_t loc, const char *path, hid_t type, int ndim, const hsize_t *dims,
                              const void *data, mg_error *err);

/* ---- statistics --------------------------------------------------------------------- */

/* Per attack node (column): over the samples with a score. */
typedef struct {
    double mean;             /* mean score over members and non-members */
    double std;              /* population standard deviation (0 when constant or empty) */
    double median_nonmember; /* median score of the non-members (NaN without any) */
    uint32_t n_scores;       /* samples with a finite score */
    uint32_t n_members;      /* of those, members */
} mg_atlas_colstat;

/* Statistics of one column: score[i] NaN means no score; member[i] is 1, 0,
 * or -1 for no score. Sums run in index order, so the result does not depend
 * on the rank count. */
mg_status mg_atlas_column_stats(const double *score, const int8_t *member, size_t n, mg_atlas_colstat *out,
                                mg_error *err);

/* One row of /atlas/sample_stats. Over the nodes where the sample is a
 * member (and has a score): the mean and max of its per-node z-scored score,
 * and the fraction of those nodes where its score exceeds the node's median
 * non-member score. NaN where the sample is a member of no node. */
typedef struct {
    uint32_t sample_index;
    uint32_t n_scores;  /* nodes with a score for the sample */
    uint32_t n_members; /* nodes where it is a member */
    double member_fraction;
    double mean_z;
    double exposed_fraction;
    double max_z;
} mg_atlas_sample_row;

/* z-score of `score` in column `c` (0 when the column is constant). */
double mg_atlas_zscore(double score, const mg_atlas_colstat *c);

/* Collective over the grid: rows[il] for each of this process's local rows
 * of S (scores, NaN missing) and member (int8, same layout and lld), reduced
 * across the process row, so every process of a row holds its rows whole.
 * cols has S->n entries, sample_index S->m. */
mg_status mg_atlas_sample_stats(const mg_atlas_grid *g, const mg_atlas_dmat *S, const int8_t *member,
                                const mg_atlas_colstat *cols, const uint32_t *sample_index,
                                mg_atlas_sample_row *rows, mg_error *err);

/* In place: each present score becomes its column z-score, each missing one 0. */
void mg_atlas_standardise(mg_atlas_dmat *S, const mg_atlas_grid *g, const mg_atlas_colstat *cols);

/* Order of exposure: exposed_fraction descending, then mean_z descending,
 * then sample_index ascending (a total order on member samples). */
int mg_atlas_exposure_cmp(const void *a, const void *b);

/* Collective over the grid: the k most exposed samples over all processes'
 * rows (those with n_members > 0), taken from process column 0, into top[]
 * on every rank; *n_top receives how many (<= k). */
mg_status mg_atlas_top_exposed(const mg_atlas_grid *g, const mg_atlas_sample_row *rows, size_t n_local, size_t k,
                               mg_atlas_sample_row *top, size_t *n_top, mg_error *err);

/* ---- spectra ---------------------------------------------------------------------------- */

/* Collective over the grid: the singular values of the weight tensor `weight`
 * (OC x ... read as OC x prod(rest), as double), multiplied elementwise by
 * `mask` when mask >= 0 (same shape, nonzero keeps). s receives min(rows,
 * cols) values on every rank; *zero_fraction the fraction of zero entries of
 * the masked matrix. Both datasets must be open in a file opened with
 * mg_atlas_fapl on g->comm. */
mg_status mg_atlas_spectrum(const mg_atlas_grid *g, hid_t weight, hid_t mask, int nb, int *rows, int *cols,
                            double **s, double *zero_fraction, mg_error *err);

/* Flip singular pairs so that the largest-magnitude entry (lowest index on
 * ties) of each of the k right vectors is positive. v is n x k row-major;
 * flip[c] receives 1 where component c was negated (the caller negates the
 * matching left vector). */
void mg_atlas_fix_signs(double *v, size_t n, size_t k, int *flip);

/* ---- the run (atlas.c and gather.c) ------------------------------------------------ */

enum {
    MG_ATLAS_NODE_NONE = 0, /* not read (yet) */
    MG_ATLAS_NODE_ATTACK,
    MG_ATLAS_NODE_TRAIN,
    MG_ATLAS_NODE_PRUNE,
    MG_ATLAS_NODE_OTHER,  /* a kind the atlas does not use */
    MG_ATLAS_NODE_SKIPPED /* listed, but its file could not be read */
};

/* A weight matrix of a model node, as the rank that listed it saw it. Plain
 * data: it travels between ranks as bytes. */
typedef struct {
    uint32_t node; /* index into mg_atlas_ctx.keys */
    int32_t kind;  /* MG_ATLAS_NODE_TRAIN or _PRUNE */
    char layer[64];
    char role[16];
    char input[33]; /* prune nodes: the dense model's key */
    double requested_sparsity; /* prune nodes; NaN otherwise */
    int32_t ndim, has_mask;
    uint64_t dims[4];
} mg_atlas_tensor;

/* One attack node's scores, on the rank that read them. */
typedef struct {
    uint32_t node;
    size_t n;
    uint32_t *sample_index;
    double *score;
    uint8_t *is_member;
} mg_atlas_raw;

/* A row of results.h5 /cells, the fields the atlas reports. */
typedef struct {
    uint32_t cell_id;
    char dataset[64], arch[64], prune[64];
    double sparsity;
    char defense[64];
    int64_t seed;
    char target_model[33], shadow_model[33];
    char axes[512];
} mg_atlas_cell;

/* An attack node used by a cell (from results.h5 /metrics). */
typedef struct {
    uint32_t node;
    uint32_t cell_id;
    char attack[64];
} mg_atlas_use;

typedef struct {
    MPI_Comm comm;
    int rank, size;
    int nb, components, strict;
    char store[4096];
    char results[4200]; /* <store>/results.h5 */

    /* nodes linked from results.h5, sorted by key, and their kinds (every rank) */
    size_t n_keys;
    char (*keys)[33];
    int *kind;

    /* the attack nodes: columns of the score matrix, in key order (every rank) */
    size_t n_cols;
    uint32_t *col_node;
    mg_atlas_colstat *colstat;
    uint32_t *nonfinite;

    /* rows: the union of the attack nodes' sample indices, sorted (every rank) */
    size_t n_samples;
    uint32_t *sample_index;

    /* the attack nodes this rank read, then their columns of the matrix:
     * n_samples x n_raw, row-major, columns in key order (NaN / -1 missing) */
    size_t n_raw;
    mg_atlas_raw *raw;
    double *local_score;
    int8_t *local_member;

    /* from results.h5, on rank 0 only: its cells and which attack node each uses */
    size_t n_cells, n_uses;
    mg_atlas_cell *cells;
    mg_atlas_use *uses;

    /* weight matrices for spectra, sorted by (node key, layer) (every rank) */
    size_t n_tensors;
    mg_atlas_tensor *tensors;
    size_t n_model_nodes;
} mg_atlas_ctx;

void mg_atlas_ctx_free(mg_atlas_ctx *c);

/* Collective over comm: the worst outcome of all ranks. On failure every rank
 * returns the status of the lowest failing rank and receives its message in
 * err (prefixed with "rank R: " when comm has several ranks). */
mg_status mg_atlas_agree(MPI_Comm comm, mg_status st, mg_error *err);

/* Collective: list the nodes of results.h5, read every node file on one rank
 * (node i on rank i % size), and build the sample union, the column
 * statistics and the tensor list. */
mg_status mg_atlas_gather(mg_atlas_ctx *c, mg_error *err);

/* Collective: write /atlas/{sample_index,node_key,scores,is_member,nodes} into
 * `file` (opened with mg_atlas_fapl on c->comm): every rank writes the columns
 * of the nodes it read, in one collective write per dataset. */
mg_status mg_atlas_write_matrix(mg_atlas_ctx *c, hid_t file, mg_error *err);

#endif
