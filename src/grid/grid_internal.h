/*
 * grid_internal.h: what the grid parser and the planner share: the limits on
 * a grid's size, the axis numbering that fixes the order of cells, and the
 * exclude entries (resolved at parse time into per-axis match tables).
 */
#ifndef MG_GRID_INTERNAL_H
#define MG_GRID_INTERNAL_H

#include <stddef.h>

#include "miagrid/grid.h"

/* A grid whose axes multiply past this is refused before anything is built:
 * YAML aliases let a short file name a huge product. */
#define MG_GRID_MAX_CELLS 1000000
/* Upper bound on distinct plan nodes (each holds a recipe of a few hundred
 * bytes). */
#define MG_PLAN_MAX_NODES 4000000
/* The limits in force: the environment variables MIAGRID_MAX_CELLS and
 * MIAGRID_MAX_NODES (whole numbers from 1 to 10^12) when set, else the two
 * defaults above; the operator sets them, not the grid, so a grid from
 * elsewhere cannot raise them. An unusable value is an MG_ERR_CONFIG naming
 * the variable. */
mg_status mg_grid_limits(size_t *max_cells, size_t *max_nodes, mg_error *err);
/* YAML nested deeper than this, or a value that contains itself through an
 * alias, is refused before the schema is looked at (a grid needs 6 levels). */
#define MG_GRID_MAX_DEPTH 32
/* The largest grid file accepted. */
#define MG_GRID_MAX_BYTES ((size_t)1 << 24)

/* The axes in cell order: dataset varies slowest, seed fastest. */
enum {
    MG_AXIS_DATASET = 0,
    MG_AXIS_ARCH,
    MG_AXIS_PRUNE,
    MG_AXIS_SPARSITY,
    MG_AXIS_DEFENSE,
    MG_AXIS_SEED,
    MG_AXIS_COUNT
};

struct mg_exclude {
    size_t line, col;                      /* 1-based position of the entry */
    int has[MG_AXIS_COUNT];                /* the entry names this axis */
    unsigned char *match[MG_AXIS_COUNT];   /* match[a][i]: value i of axis a matches (NULL unless has[a]) */
};

/* Number of values on axis `axis` (MG_AXIS_*). */
size_t mg_grid_axis_len(const mg_grid *g, int axis);

/* 1 if any exclude entry matches the combination idx (indices per MG_AXIS_*). */
int mg_grid_excluded(const mg_grid *g, const size_t idx[MG_AXIS_COUNT]);

/* Step idx to the next combination in cell order (seed fastest). Returns 0
 * after the last one, leaving idx back at all zeros. */
int mg_grid_next_combination(const mg_grid *g, size_t idx[MG_AXIS_COUNT]);

/* Compact form of an architecture for listings: "lenet5", "mlp[512,256]/relu". */
void mg_grid_arch_str(const mg_arch_spec *a, char *buf, size_t cap);

#endif
