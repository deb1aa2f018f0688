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

/* Datasets a rank keeps loaded between nodes, at most this many (the least
 * recently used goes first), so a worker loads each dataset once. */
#define MG_EXEC_MAX_DATASETS 4

/* What a rank keeps between nodes. */
typedef struct {
    const mg_grid *grid;
    const mg_plan *plan;
    mg_store *store;
    int rank;
    char host[64];
    mg_dataset *data;    /* the dataset of the node being computed: one of cache[] */
    mg_dataset cache[MG_EXEC_MAX_DATASETS];
    size_t cache_index[MG_EXEC_MAX_DATASETS]; /* grid dataset index of each entry */
    uint64_t cache_used[MG_EXEC_MAX_DATASETS]; /* last use, for eviction */
    int cache_n;
    uint64_t uses;
    /* Training state is saved at the end of an epoch when a stop is
     * requested or this many seconds passed since the last save (0: only on
     * stop). A rerun resumes a node from its checkpoint. */
    double checkpoint_seconds;
    /* Called at every epoch end; lets a worker notice a stop sent by rank 0. */
    void (*poll_stop)(void *user);
    void *poll_user;
} mg_exec_ctx;

void mg_exec_init(mg_exec_ctx *ctx, const mg_grid *g, const mg_plan *p, mg_store *s, int rank);
void mg_exec_free(mg_exec_ctx *ctx);

/* Compute node `idx` of the plan from its inputs (which must be complete in
 * the store) and write it. On failure nothing is left in the store. */
mg_status mg_exec_node(mg_exec_ctx *ctx, size_t idx, mg_error *err);

/* How a node is computed. The default (exec == NULL) is mg_exec_node with a
 * per-rank mg_exec_ctx; tests and the scheduler benchmark plug in their own.
 * `rank` is the calling rank. Return MG_ERR_INTERRUPTED when the node stopped
 * on request without failing (it stays pending). */
typedef mg_status (*mg_exec_fn)(void *user, int rank, size_t node, mg_error *err);

typedef struct {
    int quiet;            /* no progress lines */
    int verbose;          /* a line per node started */
    int retry_failed;     /* run nodes with a failure record again */
    double walltime;      /* seconds from the start after which no node is handed out and running
                           * nodes save their state and stop; 0: none */
    double checkpoint_seconds; /* save a running node's training state this often (0: only on stop) */
    mg_exec_fn exec;      /* NULL: mg_exec_node */
    void *exec_user;
} mg_run_opts;

typedef struct {
    size_t n_nodes;
    size_t reused;        /* complete in the store before the run */
    size_t computed;
    size_t failed;        /* failed in this run or earlier (failure record) */
    size_t skipped;       /* not run because an input failed */
    size_t pending;       /* left for a later run (stop requested, wall time) */
    int interrupted;      /* the run stopped early on request */
    double seconds;
    double coordinator_seconds; /* rank 0's busy time handling messages (excludes sleeping) */
    size_t messages;      /* reports rank 0 handled */
} mg_run_summary;

/* Ask the run to stop: no more nodes are handed out, running nodes finish or
 * save their state, the store is left consistent. Async-signal-safe: main's
 * SIGTERM/SIGINT handlers call it. */
void mg_sched_request_stop(void);
int mg_sched_stop_requested(void);

/* Estimated relative cost of computing a node, from its recipe (epochs,
 * samples, architecture size); the coordinator starts expensive chains first. */
double mg_node_cost(const mg_grid *g, const mg_node *n);

/* Run every node of the plan that is not complete in the store. Collective
 * over comm: rank 0 coordinates (with one rank it also computes), the others
 * compute. Among ready nodes the most expensive chains go first. A failed node
 * gets a failure record in the store and its consumers are skipped; the rest
 * completes. Rank 0 rewrites the root file at the end. The summary is valid on
 * rank 0. Returns MG_OK when every node is complete, MG_ERR_STATE when some
 * failed (the message lists them), MG_ERR_INTERRUPTED when a stop was
 * requested or the wall time ran out (rerun to resume), other statuses on
 * fatal errors. */
mg_status mg_run(const mg_grid *g, const mg_plan *p, mg_store *s, MPI_Comm comm,
                 const mg_run_opts *opts, mg_run_summary *summary, mg_error *err);

#ifdef __cplusplus
}
#endif
#endif
