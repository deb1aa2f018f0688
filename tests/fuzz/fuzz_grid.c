/*
 * fuzz_grid.c: libFuzzer target for the grid file: the bytes are a grid
 * YAML, parsed (mg_grid_parse), expanded and planned (mg_plan_build) and
 * printed as --dry-run prints it. A grid either loads into a consistent plan
 * or is refused with a message naming the file.
 */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "miagrid/grid.h"

static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    /* Small limits keep each input fast; the limit checks themselves are
     * what large products exercise. */
    setenv("MIAGRID_MAX_CELLS", "500", 1);
    setenv("MIAGRID_MAX_NODES", "2000", 1);
    devnull = fopen("/dev/null", "w");
    fz_require(devnull != NULL, "/dev/null opens");
    return 0;
}

static void check_plan(const mg_grid *g, const mg_plan *p)
{
    fz_require(p->n_cells >= 1 && p->n_cells <= 500, "a plan has 1 to max_cells cells");
    fz_require(p->n_nodes >= 1 && p->n_nodes <= 2000, "a plan has 1 to max_nodes nodes");
    for (size_t i = 0; i < p->n_nodes; i++) {
        const mg_node *n = &p->nodes[i];
        fz_require(mg_plan_find(p, n->key) == i, "every node is found by its key");
        fz_require(strlen(n->key) == 32 && n->recipe && n->recipe[0] == '{', "a node has a key and a recipe");
        for (size_t k = 0; k < mg_node_n_deps(n); k++)
            fz_require(mg_node_dep(n, k) < i, "inputs precede their consumers");
        fz_require(n->n_uses >= 1, "every node is used");
    }
    for (size_t i = 0; i < p->n_cells; i++) {
        const mg_cell *c = &p->cells[i];
        fz_require(c->dataset < g->n_datasets && c->arch < g->n_archs && c->prune < g->n_prunes &&
                       c->sparsity < g->n_sparsities && c->defense < g->n_defenses && c->seed < g->n_seeds,
                   "cell axis indices are in range");
        fz_require(c->model[0] < p->n_nodes && c->model[1] < p->n_nodes, "cell models are nodes");
        for (size_t a = 0; a < g->n_attacks; a++)
            fz_require(c->attack_nodes[a] < p->n_nodes, "cell attack nodes are nodes");
        if (i < 8) {
            char *json = mg_cell_axes_json(g, c);
            fz_require(json && json[0] == '{', "a cell's axes print as JSON");
            free(json);
        }
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    mg_error err;
    mg_error_clear(&err);
    mg_status st = mg_grid_parse("fuzz.yaml", (const char *)data, size, &g, &err);
    if (st != MG_OK) {
        fz_require(g == NULL, "a refused grid is not returned");
        fz_require(err.status == st && err.msg[0], "a refused grid has a message");
        if (st == MG_ERR_CONFIG)
            fz_require(strncmp(err.msg, "fuzz.yaml:", 10) == 0, "a grid error names the file");
        return 0;
    }
    fz_require(g->n_datasets && g->n_archs && g->n_prunes && g->n_sparsities && g->n_defenses && g->n_seeds &&
                   g->n_attacks,
               "a parsed grid has every axis");
    st = mg_plan_build(g, &p, &err);
    if (st == MG_OK) {
        check_plan(g, p);
        mg_plan_print(g, p, devnull);
    } else {
        fz_require(p == NULL && err.msg[0], "a refused plan has a message");
    }
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    return 0;
}
