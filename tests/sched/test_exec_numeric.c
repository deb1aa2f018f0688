/*
 * test_exec_numeric.c: values that are not finite stop a node with the
 * reason, through the real executor and a real store: a data file holding
 * NaN fails its node when the data is loaded, and finite data that makes
 * training diverge fails it with the epoch and step. The failure is recorded
 * in the store, the node's consumers are skipped, and nothing else is lost.
 */
#define _POSIX_C_SOURCE 200809L
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mg_test.h"
#include "miagrid/grid.h"
#include "miagrid/sched.h"
#include "miagrid/store.h"

static const char GRID_FMT[] = "name: numeric\n"
                               "seeds: [0]\n"
                               "data: {split: {target_train: 40, target_test: 40, shadow_train: 40, shadow_test: 40}}\n"
                               "train: {epochs: 2, batch: 20, lr: 0.1}\n"
                               "axes:\n"
                               "  dataset: {name: csv, root: %s, classes: 2}\n"
                               "  arch: {name: mlp, hidden: [4]}\n"
                               "attacks: [loss]\n";

/* 200 rows of 3 features; `bad` replaces row 150's second feature. The
 * rows are scale * (1, -1, 1) and its negation, each with both labels, so
 * that divergence does not hang on the initial weights (which follow from
 * the node key, and so from the data's path): every hidden ReLU is live on
 * one of the two signs, and no weights classify every row, so the first
 * step's gradient is of the order of the scale. */
static void write_csv(const char *path, const char *bad, double scale)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    for (int i = 0; i < 200; i++) {
        double v = (i / 2) % 2 ? -scale : scale;
        if (i == 150 && bad)
            fprintf(f, "%d,1,%s,0.5\n", i % 2, bad);
        else
            fprintf(f, "%d,%g,%g,%g\n", i % 2, v, -v, v);
    }
    fclose(f);
}

/* Runs the grid over the CSV at data into a fresh store; the two dense
 * models must fail with `reason` and the attack be skipped. */
static void run_failing(const char *dir, const char *data, const char *reason)
{
    char text[1024], store_dir[1200], msg[1024];
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    mg_store *s = NULL;
    snprintf(text, sizeof text, GRID_FMT, data);
    snprintf(store_dir, sizeof store_dir, "%s/store-%s", dir, reason[0] == 't' ? "diverge" : "nan");
    CHECK_OK(mg_grid_parse("numeric.yaml", text, strlen(text), &g, &err), &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    CHECK_OK(mg_store_open(store_dir, &s, &err), &err);
    if (!p || !s)
        goto done;
    mg_run_opts o = {.quiet = 1};
    mg_run_summary sum;
    mg_error_clear(&err);
    CHECK(mg_run(g, p, s, MPI_COMM_WORLD, &o, &sum, &err) == MG_ERR_STATE);
    CHECK_INT_EQ(sum.failed, 2);
    CHECK_INT_EQ(sum.skipped, 1);
    CHECK(strstr(err.msg, reason) != NULL);
    if (!strstr(err.msg, reason))
        fprintf(stderr, "run said: %s\n", err.msg);
    for (size_t i = 0; i < p->n_nodes; i++) {
        if (p->nodes[i].kind != MG_NODE_TRAIN)
            continue;
        CHECK(mg_store_node_failed(s, p->nodes[i].key, msg, sizeof msg));
        CHECK(strstr(msg, reason) != NULL);
        CHECK(!mg_store_node_complete(s, p->nodes[i].key));
    }
done:
    mg_store_close(&s);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    char dir[1024], data[1100];
    const char *tmp = getenv("MG_TEST_TMP");
    snprintf(dir, sizeof dir, "%s/exec-numeric-%ld", tmp ? tmp : "/tmp", (long)getpid());
    mkdir(dir, 0775);
    snprintf(data, sizeof data, "%s/data.csv", dir);

    write_csv(data, "nan", 1.0);
    run_failing(dir, data, "field 3 is not a finite float");
    write_csv(data, NULL, 3e37);
    run_failing(dir, data, "training diverged: loss is");

    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    MPI_Finalize();
    MG_TEST_MAIN_END();
}
