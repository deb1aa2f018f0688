/*
 * sched.h: running a plan. mg_exec_node computes one node (train, prune or
 * attack) and writes its file into the store; mg_run drives a whole plan,
 * serially on one rank or with rank 0 coordinating workers over MPI.
 */
#ifndef MIAGRID_SCHED_H
#define MIAGRID_SCHED_H

#include <mpi.h>
#include <stddef.h>

#include "miagrid/data.h"
#include "miagrid/grid.h"
#include "miagrid/store.h"
#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* What a rank keeps between nodes: the dataset it loaded last, so consecutive
 * nodes on the same data do not reload it. */
typedef struct {
    const mg_grid *grid;
    const mg_plan *plan;
    mg_store *store;
    int rank;
    char host[64];
    mg_dataset data;
    int data_loaded;
    size_t data_index;   /* grid dataset index of `data` */
} mg_exec_ctx;

void mg_exec_init(mg_exec_ctx *ctx, const mg_grid *g, const mg_plan *p, mg_store *s, int rank);
void mg_exec_free(mg_exec_ctx *ctx);

/* Compute node `idx` of the plan from its inputs (which must be complete in
 * the store) and write it. On failure nothing is left in the store. */
mg_status mg_exec_node(mg_exec_ctx *ctx, size_t idx, mg_error *err);

typedef struct {
    int quiet;          /* no progress lines */
    int verbose;        /* a line per node started and finished */
} mg_run_opts;

typedef struct {
    size_t n_nodes;
    size_t reused;      /* complete in the store before the run */
    size_t computed;
    size_t failed;
    size_t skipped;     /* not run because an input failed */
    double seconds;
} mg_run_summary;

/* Run every node of the plan that is not complete in the store. Collective
 * over comm: rank 0 coordinates (with one rank it also computes), the others
 * compute. Failed nodes are reported and their consumers skipped; the rest
 * completes. Rank 0 rewrites the root file at the end. The summary is valid on
 * rank 0. Returns MG_OK when every node is complete, MG_ERR_STATE when some
 * failed (the message lists them), other statuses on fatal errors. */
mg_status mg_run(const mg_grid *g, const mg_plan *p, mg_store *s, MPI_Comm comm,
                 const mg_run_opts *opts, mg_run_summary *summary, mg_error *err);

#ifdef __cplusplus
}
#endif
#endif
