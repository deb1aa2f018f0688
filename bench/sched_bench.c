/* sched_bench.c: how much work the coordinator does per node. Builds a grid of
 * several thousand nodes, runs it through the real scheduler with an executor
 * that only waits a fixed time per node (no training, no store), and reports
 * rank 0's busy time per node and the nodes per second.
 *
 *   mpirun --oversubscribe -np 9 build/mg_sched_bench [--seeds N] [--work-ms M]
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "miagrid/grid.h"
#include "miagrid/sched.h"

static double work_ms = 0.0;

static mg_status fake_exec(void *user, int rank, size_t node, mg_error *err)
{
    (void)user;
    (void)rank;
    (void)node;
    (void)err;
    if (work_ms > 0) {
        struct timespec ts = {(time_t)(work_ms / 1000), (long)((work_ms - 1000 * (long)(work_ms / 1000)) * 1e6)};
        nanosleep(&ts, NULL);
    }
    return MG_OK;
}

int main(int argc, char **argv)
{
    int rank, size, seeds = 63;
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--seeds"))
            seeds = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--work-ms"))
            work_ms = atof(argv[i + 1]);
    }
    mg_strbuf y;
    mg_strbuf_init(&y);
    mg_strbuf_append(&y, "name: sched-bench\nseeds: [");
    for (int s = 0; s < seeds; s++)
        mg_strbuf_printf(&y, "%s%d", s ? ", " : "", s);
    mg_strbuf_append(&y, "]\naxes:\n  arch: [lenet5, mlp]\n"
                         "  sparsity: [0.0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9]\n"
                         "attacks: [loss, conf]\n");
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    mg_error err;
    if (mg_grid_parse("sched-bench.yaml", y.s, y.len, &g, &err) != MG_OK || mg_plan_build(g, &p, &err) != MG_OK) {
        if (rank == 0)
            fprintf(stderr, "sched_bench: %s\n", err.msg);
        MPI_Abort(MPI_COMM_WORLD, 1);
    }
    mg_run_opts o = {.quiet = 1, .exec = fake_exec};
    mg_run_summary sum;
    MPI_Barrier(MPI_COMM_WORLD);
    mg_status st = mg_run(g, p, NULL, MPI_COMM_WORLD, &o, &sum, &err);
    if (rank == 0) {
        if (st != MG_OK)
            fprintf(stderr, "sched_bench: %s\n", err.msg);
        int workers = size > 1 ? size - 1 : 1;
        printf("nodes=%zu ranks=%d workers=%d work_ms=%.1f wall_s=%.3f nodes_per_s=%.0f "
               "coordinator_busy_us_per_node=%.2f coordinator_busy_fraction=%.4f\n",
               sum.n_nodes, size, workers, work_ms, sum.seconds, (double)sum.computed / sum.seconds,
               1e6 * sum.coordinator_seconds / (double)(sum.computed ? sum.computed : 1),
               sum.coordinator_seconds / sum.seconds);
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    mg_strbuf_free(&y);
    MPI_Finalize();
    return st == MG_OK ? 0 : 1;
}
