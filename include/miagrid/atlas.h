/*
 * atlas.h: the vulnerability atlas. Reads every complete attack node of a
 * store, consolidates their per-sample membership scores into one
 * samples x attack-nodes matrix in an HDF5 file written in parallel, and
 * analyses that matrix distributed over all ranks with ScaLAPACK:
 * per-sample exposure statistics, the leading singular vectors of the
 * column-standardised matrix, and the singular value spectra of the weight
 * matrices of every model node (dense against pruned).
 *
 * The output layout (default <store>/atlas.h5) is documented in README.md,
 * section "The vulnerability atlas".
 */
#ifndef MIAGRID_ATLAS_H
#define MIAGRID_ATLAS_H

#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MG_ATLAS_DEFAULT_BLOCK 64
#define MG_ATLAS_DEFAULT_COMPONENTS 10
#define MG_ATLAS_TOP_EXPOSED 50
/* How many leading singular values and top samples the summary keeps for printing. */
#define MG_ATLAS_SUMMARY_KEEP 10

typedef struct {
    const char *store; /* store directory (required) */
    const char *out;   /* output file; NULL or "" means <store>/atlas.h5 */
    int block;         /* ScaLAPACK block size NB; 0 means MG_ATLAS_DEFAULT_BLOCK */
    int components;    /* K leading singular triplets kept; 0 means MG_ATLAS_DEFAULT_COMPONENTS */
    int strict;        /* 1: an unreadable node file is an error; 0: warn on stderr and skip it */
} mg_atlas_opts;

typedef struct {
    char out[4096];           /* the file written */
    size_t n_samples;         /* rows of the score matrix */
    size_t n_attack_nodes;    /* its columns */
    size_t n_model_nodes;     /* train and prune nodes read for spectra */
    size_t n_tensors;         /* weight matrices whose spectra were computed */
    size_t n_skipped;         /* node files that could not be read (listed in /atlas attr skipped_nodes) */
    int nprow, npcol, block;  /* the BLACS process grid and block size used */
    int components;           /* K actually kept (at most min(samples, nodes)) */
    size_t n_sv;              /* entries of sv[] filled */
    double sv[MG_ATLAS_SUMMARY_KEEP];          /* leading singular values of the standardised matrix */
    double explained[MG_ATLAS_SUMMARY_KEEP];   /* sv^2 / sum of all sv^2 */
    size_t n_top;
    uint32_t top_sample[MG_ATLAS_SUMMARY_KEEP]; /* most exposed sample indices, most exposed first */
    double top_exposed[MG_ATLAS_SUMMARY_KEEP];  /* their exposed fractions */
    double sec_gather, sec_distribute, sec_stats, sec_svd, sec_spectra, sec_total;
} mg_atlas_summary;

/* Build the atlas of the store o->store. Collective over comm: every rank
 * must call it with the same options. Ranks read disjoint subsets of the node
 * files; the output is written with the MPI-IO driver under a temporary name
 * and renamed into place by the lowest rank when whole.
 *
 * Returns MG_OK, or on every rank the same status and message (the message of
 * the lowest failing rank, prefixed with its rank when comm has several):
 * MG_ERR_IO / MG_ERR_STATE for a missing store, no complete attack nodes, or a
 * store some rank cannot see; MG_ERR_HDF5 for unreadable root or output files;
 * MG_ERR_ARG for bad options. Node files that cannot be read are skipped with
 * a warning on stderr naming them (or, with o->strict, are an error).
 * sum may be NULL; it is filled on every rank. */
mg_status mg_atlas_run(const mg_atlas_opts *o, MPI_Comm comm, mg_atlas_summary *sum, mg_error *err);

#ifdef __cplusplus
}
#endif
#endif
