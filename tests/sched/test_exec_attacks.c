/*
 * test_exec_attacks.c: attack nodes through the real executor and a real
 * store, on a small CSV: k = 2 shadow models, each trained on its own part
 * of the split and pooled by the attack (the stored scores are exactly
 * mg_attack_run's on the three models' stored outputs), and samia and gonon,
 * whose nodes compute sensitivity features from the models they rebuild,
 * giving the same bits when computed again.
 */
#define _POSIX_C_SOURCE 200809L
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mg_test.h"
#include "miagrid/attack.h"
#include "miagrid/grid.h"
#include "miagrid/sched.h"
#include "miagrid/store.h"

static const char GRID_FMT[] =
    "name: pooled\n"
    "seeds: [3]\n"
    "data: {split: {protocol: explicit, target_train: 40, target_test: 40, shadow_train: 40, shadow_test: 40, "
    "shadows: 2}}\n"
    "train: {epochs: 3, batch: 20, lr: 0.1}\n"
    "axes:\n"
    "  dataset: {name: csv, root: %s, classes: 2}\n"
    "  arch: {name: mlp, hidden: [8]}\n"
    "attacks: [loss, {name: gonon, depth: 1}, samia]\n";

/* 400 rows of 3 features, the class shifting the first. */
static void write_csv(const char *path)
{
    FILE *f = fopen(path, "w");
    CHECK(f != NULL);
    if (!f)
        return;
    for (int i = 0; i < 400; i++)
        fprintf(f, "%d,%g,%g,%g\n", i % 2, (i % 2) + 0.3 * ((i * 7919) % 13 - 6), 0.1 * (i % 5), 0.05 * (i % 11));
    fclose(f);
}

/* Stored outputs of a model node (both parts), as mg_attack_run takes them. */
typedef struct {
    float *logits[2];
    int32_t *labels[2];
    uint32_t *index[2];
    size_t n[2];
} stored;

static void stored_free(stored *o)
{
    for (int i = 0; i < 2; i++) {
        free(o->logits[i]);
        free(o->labels[i]);
        free(o->index[i]);
    }
}

static void read_stored(mg_store *s, const char *key, stored *o)
{
    static const char *const part[2] = {"member", "nonmember"};
    mg_error err;
    hid_t f = H5I_INVALID_HID;
    memset(o, 0, sizeof *o);
    CHECK_OK(mg_store_node_open(s, key, &f, &err), &err);
    if (f < 0)
        return;
    for (int i = 0; i < 2; i++) {
        char path[64];
        hsize_t d[4];
        int nd = 0;
        snprintf(path, sizeof path, "outputs/%s/logits", part[i]);
        CHECK_OK(mg_h5_read(f, path, H5T_NATIVE_FLOAT, (void **)&o->logits[i], d, &nd, &err), &err);
        o->n[i] = (size_t)d[0];
        snprintf(path, sizeof path, "outputs/%s/labels", part[i]);
        CHECK_OK(mg_h5_read(f, path, H5T_NATIVE_INT32, (void **)&o->labels[i], NULL, NULL, &err), &err);
        snprintf(path, sizeof path, "outputs/%s/sample_index", part[i]);
        CHECK_OK(mg_h5_read(f, path, H5T_NATIVE_UINT32, (void **)&o->index[i], NULL, NULL, &err), &err);
    }
    H5Fclose(f);
}

/* scores/score of an attack node (n values), or NULL. */
static double *read_scores(mg_store *s, const char *key, size_t *n)
{
    mg_error err;
    hid_t f = H5I_INVALID_HID;
    double *score = NULL;
    hsize_t d[4] = {0};
    int nd = 0;
    *n = 0;
    CHECK_OK(mg_store_node_open(s, key, &f, &err), &err);
    if (f < 0)
        return NULL;
    CHECK_OK(mg_h5_read(f, "scores/score", H5T_NATIVE_DOUBLE, (void **)&score, d, &nd, &err), &err);
    H5Fclose(f);
    *n = (size_t)d[0];
    return score;
}

static void test_pooled(const char *dir, const char *data)
{
    char text[2048], store_dir[1200], path[1400];
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    mg_store *s = NULL;
    stored o[3];
    mg_attack_result res;
    memset(o, 0, sizeof o);
    memset(&res, 0, sizeof res);
    snprintf(text, sizeof text, GRID_FMT, data);
    snprintf(store_dir, sizeof store_dir, "%s/store", dir);
    CHECK_OK(mg_grid_parse("pooled.yaml", text, strlen(text), &g, &err), &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    CHECK_OK(mg_store_open(store_dir, &s, &err), &err);
    if (!p || !s)
        goto done;
    mg_run_opts opts = {.quiet = 1};
    mg_run_summary sum;
    CHECK_OK(mg_run(g, p, s, MPI_COMM_WORLD, &opts, &sum, &err), &err);
    CHECK_INT_EQ(sum.computed, 3 + 3); /* target, 2 shadow models; 3 attacks */

    const mg_cell *c = &p->cells[0];
    CHECK_INT_EQ(c->n_shadows, 2);
    read_stored(s, p->nodes[c->model[MG_ROLE_TARGET]].key, &o[0]);
    read_stored(s, p->nodes[c->shadows[0]].key, &o[1]);
    read_stored(s, p->nodes[c->shadows[1]].key, &o[2]);
    /* The explicit protocol's shadow splits are disjoint: shadow model 1 trained on its own. */
    int disjoint = o[1].n[0] == 40 && o[2].n[0] == 40;
    for (size_t i = 0; disjoint && i < 40; i++)
        for (size_t j = 0; j < 40; j++)
            disjoint = disjoint && o[1].index[0][i] != o[2].index[0][j];
    CHECK(disjoint);

    /* The loss attack node's scores are mg_attack_run's on the pooled shadows. */
    mg_attack_cfg cfg;
    CHECK_OK(mg_attack_cfg_init(&cfg, "loss", &err), &err);
    mg_attack_outputs shadows[2];
    for (int k = 0; k < 2; k++) {
        shadows[k].member = (mg_attack_split){o[1 + k].logits[0], o[1 + k].labels[0], NULL, o[1 + k].n[0]};
        shadows[k].nonmember = (mg_attack_split){o[1 + k].logits[1], o[1 + k].labels[1], NULL, o[1 + k].n[1]};
    }
    mg_attack_inputs in;
    memset(&in, 0, sizeof in);
    in.n_classes = 2;
    in.target.member = (mg_attack_split){o[0].logits[0], o[0].labels[0], NULL, o[0].n[0]};
    in.target.nonmember = (mg_attack_split){o[0].logits[1], o[0].labels[1], NULL, o[0].n[1]};
    in.shadow = shadows;
    in.n_shadow = 2;
    CHECK_OK(mg_attack_run(&cfg, &in, &res, &err), &err);
    size_t n = 0;
    double *stored_score = read_scores(s, p->nodes[c->attack_nodes[0]].key, &n);
    CHECK_INT_EQ(n, 80);
    CHECK(stored_score && res.score && n == res.n && memcmp(stored_score, res.score, n * sizeof(double)) == 0);
    free(stored_score);

    /* samia and gonon: scores for every target sample, the same bits when
     * the node is computed again (its noise comes from its own seed). */
    for (size_t a = 1; a < 3; a++) {
        const char *key = p->nodes[c->attack_nodes[a]].key;
        double *first = read_scores(s, key, &n);
        int finite = first && n == 80;
        for (size_t i = 0; finite && i < n; i++)
            finite = isfinite(first[i]);
        CHECK(finite);
        snprintf(path, sizeof path, "%s/nodes/%s.h5", store_dir, key);
        CHECK_INT_EQ(unlink(path), 0);
        snprintf(path, sizeof path, "%s/nodes/%s.h5.sha256", store_dir, key);
        CHECK_INT_EQ(unlink(path), 0);
        CHECK_OK(mg_run(g, p, s, MPI_COMM_WORLD, &opts, &sum, &err), &err);
        CHECK_INT_EQ(sum.computed, 1);
        size_t n2 = 0;
        double *again = read_scores(s, key, &n2);
        CHECK(first && again && n2 == n && memcmp(first, again, n * sizeof(double)) == 0);
        free(first);
        free(again);
    }
done:
    mg_attack_result_free(&res);
    for (int k = 0; k < 3; k++)
        stored_free(&o[k]);
    mg_store_close(&s);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    mg_h5_quiet();
    char dir[1024], data[1100];
    const char *tmp = getenv("MG_TEST_TMP");
    snprintf(dir, sizeof dir, "%s/exec-attacks-%ld", tmp ? tmp : "/tmp", (long)getpid());
    mkdir(dir, 0775);
    snprintf(data, sizeof data, "%s/data.csv", dir);
    write_csv(data);
    test_pooled(dir, data);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    MPI_Finalize();
    MG_TEST_MAIN_END();
}
