/*
 * stats.c: what a pruned model keeps: per-layer and total non-zero weights,
 * the compression ratio of Wang et al. (IJCAI 2021, Table 4), and the
 * multiply-accumulates of its convolutions and linear layers given where each
 * layer sits (prune.h states the counting rule).
 */
#include "miagrid/prune.h"
#include "prune/prune_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mg_prune_stats_free(mg_prune_stats_t *s)
{
    free(s->tensor);
    free(s->count);
    free(s->kept);
    free(s->nonzero);
    free(s->macs_dense);
    free(s->macs);
    memset(s, 0, sizeof *s);
}

mg_status mg_prune_geom_chain(const mg_model *m, mg_prune_geom *geom, mg_error *err)
{
    long prev = -1;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        geom[t] = (mg_prune_geom){0, -1};
        if (!ti->prunable)
            continue;
        if (ti->ndim != 2 || mg_prune_is_attention(ti->name))
            return mg_error_set(err, MG_ERR_ARG,
                                "layer geometry: %s is not a linear layer, so the model is not a chain of linear "
                                "layers; its geometry must come from the model's graph (mg_prune_geom_model)",
                                ti->name);
        if (prev >= 0 && mg_model_tensor(m, (size_t)prev)->shape[0] != ti->shape[1])
            return mg_error_set(err, MG_ERR_ARG, "layer geometry: %s takes %d inputs but %s gives %d outputs", ti->name,
                                ti->shape[1], mg_model_tensor(m, (size_t)prev)->name,
                                mg_model_tensor(m, (size_t)prev)->shape[0]);
        geom[t] = (mg_prune_geom){1, prev};
        prev = (long)t;
    }
    return MG_OK;
}

/* Rows of every prunable tensor, alive or not, in one block: tensor t's rows
 * start at first[t]. */
typedef struct {
    size_t *first;          /* (n_tensors) */
    unsigned char *alive;   /* (rows of all prunable tensors) */
} row_life;

/* Walk tensor t under geom: mark which of its rows are alive (a weight with
 * mask 1 on an alive input channel, or on any input without a producer) and,
 * in *macs, count positions * such weights. The producer's rows must already
 * be marked: producers come first in the table, as the graph orders them. */
static mg_status layer_macs(const mg_model *m, const mg_prune_geom *geom, size_t t, row_life *life, uint64_t *macs,
                            mg_error *err)
{
    const mg_tensor_info *ti = mg_model_tensor(m, t);
    const float *mk = mg_model_masks((mg_model *)m) + ti->offset;
    unsigned char *alive = life->alive + life->first[t];
    const unsigned char *in_alive = NULL;
    size_t rows, per;
    mg_prune_rows(ti, &rows, &per);
    long p = geom[t].producer;
    /* Which producer channel each weight of a row reads: base(row) + e / span. */
    size_t group_rows = rows, cin = per, span = 1;
    if (p >= 0) {
        if ((size_t)p >= t || !mg_model_tensor(m, (size_t)p)->prunable)
            return mg_error_set(err, MG_ERR_ARG,
                                "layer geometry: the producer %ld of %s is not an earlier prunable tensor", p,
                                ti->name);
        const mg_tensor_info *pi = mg_model_tensor(m, (size_t)p);
        size_t prow, pper;
        mg_prune_rows(pi, &prow, &pper);
        in_alive = life->alive + life->first[p];
        if (ti->ndim == 4) {
            /* Grouped (depthwise) convolutions: group g of the rows reads
             * channels g*cg .. g*cg+cg-1 of the producer's. */
            size_t cg = (size_t)ti->shape[1], groups = cg ? prow / cg : 0;
            if (cg == 0 || prow % cg != 0 || groups == 0 || rows % groups != 0)
                return mg_error_set(err, MG_ERR_ARG,
                                    "layer geometry: %s has %zu input channels per group, which does not fit the "
                                    "%zu channels of its producer %s",
                                    ti->name, cg, prow, pi->name);
            group_rows = rows / groups;
            cin = cg;
            span = per / cg;
        } else {
            /* A flattened map gives each channel a run of inputs. */
            if (per % prow != 0)
                return mg_error_set(err, MG_ERR_ARG,
                                    "layer geometry: %s has %zu inputs, not a multiple of the %zu rows of its "
                                    "producer %s",
                                    ti->name, per, prow, pi->name);
            span = per / prow;
        }
    }
    uint64_t n = 0;
    for (size_t o = 0; o < rows; o++) {
        size_t base = ti->ndim == 4 ? (o / group_rows) * cin : 0, live = 0;
        for (size_t e = 0; e < per; e++)
            live += mk[o * per + e] != 0.0f && (!in_alive || in_alive[base + e / span]);
        /* A row whose inputs are all dead outputs a constant, which the next
         * layer takes as folded away as it would a masked filter's. */
        alive[o] = live > 0;
        n += live;
    }
    *macs = (uint64_t)(geom[t].positions > 0 ? geom[t].positions : 0) * n;
    return MG_OK;
}

mg_status mg_prune_stats(const mg_model *m, const mg_prune_geom *geom, mg_prune_stats_t *out, mg_error *err)
{
    mg_status st = MG_OK;
    row_life life = {NULL, NULL};
    memset(out, 0, sizeof *out);
    size_t nt = mg_model_n_tensors(m), n = 0, all_rows = 0;
    const float *params = mg_model_params((mg_model *)m), *masks = mg_model_masks((mg_model *)m);
    for (size_t t = 0; t < nt; t++)
        n += (size_t)mg_model_tensor(m, t)->prunable;
    size_t cap = n ? n : 1;
    if (geom) {
        life.first = mg_calloc(nt ? nt : 1, sizeof *life.first, "pruning statistics", err);
        if (!life.first)
            MG_FAIL(MG_ERR_NOMEM, "pruning statistics: out of memory for %zu tensors", nt);
        for (size_t t = 0; t < nt; t++) {
            size_t rows = 0, per;
            if (mg_model_tensor(m, t)->prunable)
                mg_prune_rows(mg_model_tensor(m, t), &rows, &per);
            life.first[t] = all_rows;
            all_rows += rows;
        }
        life.alive = mg_calloc(all_rows ? all_rows : 1, 1, "pruning statistics", err);
        if (!life.alive)
            MG_FAIL(MG_ERR_NOMEM, "pruning statistics: out of memory for %zu rows", all_rows);
    }
    out->tensor = mg_calloc(cap, sizeof *out->tensor, "pruning statistics", err);
    out->count = mg_calloc(cap, sizeof *out->count, "pruning statistics", err);
    out->kept = mg_calloc(cap, sizeof *out->kept, "pruning statistics", err);
    out->nonzero = mg_calloc(cap, sizeof *out->nonzero, "pruning statistics", err);
    out->macs_dense = mg_calloc(cap, sizeof *out->macs_dense, "pruning statistics", err);
    out->macs = mg_calloc(cap, sizeof *out->macs, "pruning statistics", err);
    if (!out->tensor || !out->count || !out->kept || !out->nonzero || !out->macs_dense || !out->macs)
        MG_FAIL(MG_ERR_NOMEM, "pruning statistics: out of memory for %zu tensors", n);
    out->n = n;
    out->has_macs = geom != NULL;
    size_t j = 0;
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        size_t kept = 0, nonzero = 0;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
            kept += masks[i] != 0.0f;
            nonzero += params[i] != 0.0f;
        }
        out->tensor[j] = t;
        out->count[j] = ti->count;
        out->kept[j] = kept;
        out->nonzero[j] = nonzero;
        if (geom) {
            /* Every prunable tensor's rows, counted or not, for the layers they feed. */
            MG_CHECK(layer_macs(m, geom, t, &life, &out->macs[j], err));
            if (geom[t].positions > 0)
                out->macs_dense[j] = (uint64_t)geom[t].positions * (uint64_t)ti->count;
        }
        out->total += ti->count;
        out->total_kept += kept;
        out->total_nonzero += nonzero;
        out->macs_dense_total += out->macs_dense[j];
        out->macs_total += out->macs[j];
        j++;
    }
    out->compression = out->total_nonzero ? (double)out->total / (double)out->total_nonzero : INFINITY;
    out->n_params = mg_model_n_params(m);
    for (size_t i = 0; i < out->n_params; i++)
        out->n_params_masked += masks[i] == 0.0f;
    out->macs_saved = geom && out->macs_dense_total
                          ? 1.0 - (double)out->macs_total / (double)out->macs_dense_total
                          : NAN;
cleanup:
    free(life.first);
    free(life.alive);
    return st;
}
