/* test_sched.c: the scheduler with a fake executor: dependency order, the
 * most expensive chain first, failures skipping their consumers, stop
 * requests, and the store's failure records driving --retry-failed. */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mg_test.h"
#include "miagrid/grid.h"
#include "miagrid/sched.h"
#include "miagrid/store.h"

static const char GRID[] =
    "name: sched-test\n"
    "seeds: [0]\n"
    "train: {epochs: 2}\n"
    "finetune: {epochs: 1}\n"
    "axes:\n"
    "  arch: [lenet5, {name: mlp, hidden: [8]}]\n"
    "  sparsity: [0.0, 0.5]\n"
    "attacks: [loss]\n";

typedef struct {
    const mg_plan *p;
    size_t order[256];
    size_t n;
    const char *fail_kind;   /* fail every node of this kind and arch */
    size_t fail_arch;
    size_t stop_after;       /* request a stop after this many nodes (0: never) */
} recorder;

static mg_status fake(void *user, int rank, size_t node, mg_error *err)
{
    recorder *r = user;
    (void)rank;
    const mg_node *n = &r->p->nodes[node];
    for (size_t k = 0; k < mg_node_n_deps(n); k++) {
        int seen = 0;
        for (size_t i = 0; i < r->n; i++)
            seen |= r->order[i] == mg_node_dep(n, k);
        if (!seen)
            return mg_error_set(err, MG_ERR_INTERNAL, "node %zu ran before its input %zu", node, mg_node_dep(n, k));
    }
    r->order[r->n++] = node;
    if (r->stop_after && r->n == r->stop_after)
        mg_sched_request_stop();
    if (r->fail_kind && !strcmp(mg_node_kind_str(n->kind), r->fail_kind) && n->arch == r->fail_arch)
        return mg_error_set(err, MG_ERR_NUMERIC, "training diverged (test)");
    return MG_OK;
}

static size_t first_of_arch(const recorder *r, size_t arch)
{
    for (size_t i = 0; i < r->n; i++)
        if (r->p->nodes[r->order[i]].arch == arch && r->p->nodes[r->order[i]].kind == MG_NODE_TRAIN)
            return i;
    return (size_t)-1;
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    CHECK_OK(mg_grid_parse("sched-test.yaml", GRID, strlen(GRID), &g, &err), &err);
    CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (!p)
        MG_TEST_MAIN_END();

    /* Everything runs, inputs first, and LeNet-5's chain (costlier) starts first. */
    recorder r = {.p = p};
    mg_run_opts o = {.quiet = 1, .exec = fake, .exec_user = &r};
    mg_run_summary sum;
    CHECK_OK(mg_run(g, p, NULL, MPI_COMM_WORLD, &o, &sum, &err), &err);
    CHECK_INT_EQ(r.n, p->n_nodes);
    CHECK_INT_EQ(sum.computed, p->n_nodes);
    CHECK(first_of_arch(&r, 0) < first_of_arch(&r, 1));
    CHECK(mg_node_cost(g, &p->nodes[r.order[0]]) > 0);

    /* A failing kind: its consumers are skipped, the rest completes. */
    recorder f = {.p = p, .fail_kind = "train", .fail_arch = 1};
    o.exec_user = &f;
    CHECK(mg_run(g, p, NULL, MPI_COMM_WORLD, &o, &sum, &err) == MG_ERR_STATE);
    CHECK_INT_EQ(sum.failed, 2);          /* the mlp's target and shadow dense models */
    CHECK_INT_EQ(sum.skipped, 4);         /* its two prune nodes and two attack nodes */
    CHECK_INT_EQ(sum.computed, p->n_nodes - 6);
    CHECK(strstr(err.msg, "training diverged (test)") != NULL);
    CHECK(strstr(err.msg, "--retry-failed") != NULL);

    /* Failure records in a store keep failed nodes failed until a retry. */
    char dir[256];
    const char *tmp = getenv("MG_TEST_TMP");
    snprintf(dir, sizeof dir, "%s/sched-%ld", tmp ? tmp : "/tmp", (long)getpid());
    mg_store *s = NULL;
    CHECK_OK(mg_store_open(dir, &s, &err), &err);
    recorder f2 = {.p = p, .fail_kind = "train", .fail_arch = 1};
    o.exec_user = &f2;
    CHECK(mg_run(g, p, s, MPI_COMM_WORLD, &o, &sum, &err) == MG_ERR_STATE);
    recorder again = {.p = p};
    o.exec_user = &again;
    CHECK(mg_run(g, p, s, MPI_COMM_WORLD, &o, &sum, &err) == MG_ERR_STATE);
    CHECK_INT_EQ(sum.failed, 2);
    for (size_t i = 0; i < again.n; i++)
        CHECK(p->nodes[again.order[i]].arch != 1 || p->nodes[again.order[i]].kind != MG_NODE_TRAIN);
    recorder retry = {.p = p};
    o.exec_user = &retry;
    o.retry_failed = 1;
    /* The fake executor writes no node files, so every node runs again. */
    CHECK_OK(mg_run(g, p, s, MPI_COMM_WORLD, &o, &sum, &err), &err);
    CHECK_INT_EQ(sum.failed, 0);
    o.retry_failed = 0;
    mg_store_close(&s);

    /* A stop request: no further node starts, and the run says it can resume. */
    recorder st = {.p = p, .stop_after = 3};
    o.exec_user = &st;
    CHECK(mg_run(g, p, NULL, MPI_COMM_WORLD, &o, &sum, &err) == MG_ERR_INTERRUPTED);
    CHECK_INT_EQ(st.n, 3);
    CHECK_INT_EQ(sum.pending, p->n_nodes - 3);
    CHECK(strstr(err.msg, "resume") != NULL);

    char cmd[400];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    MPI_Finalize();
    MG_TEST_MAIN_END();
}
