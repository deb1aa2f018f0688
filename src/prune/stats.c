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
                                "layers; its geometry must come from the model's graph",
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

/* A row (filter, neuron) is alive while any of its weights has mask 1. */
static int row_alive(const float *mk, size_t per)
{
    for (size_t i = 0; i < per; i++)
        if (mk[i] != 0.0f)
            return 1;
    return 0;
}

/* MACs of tensor t under geom: positions * the unmasked weights whose input
 * channel is alive. */
static mg_status layer_macs(const mg_model *m, const mg_prune_geom *geom, size_t t, uint64_t *out, mg_error *err)
{
    const mg_tensor_info *ti = mg_model_tensor(m, t);
    const float *masks = mg_model_masks((mg_model *)m), *mk = masks + ti->offset;
    size_t rows, per;
    mg_prune_rows(ti, &rows, &per);
    long p = geom[t].producer;
    *out = 0;
    if (p < 0) {
        uint64_t kept = 0;
        for (size_t i = 0; i < ti->count; i++)
            kept += mk[i] != 0.0f;
        *out = (uint64_t)geom[t].positions * kept;
        return MG_OK;
    }
    if ((size_t)p >= mg_model_n_tensors(m) || (size_t)p == t || !mg_model_tensor(m, (size_t)p)->prunable)
        return mg_error_set(err, MG_ERR_ARG, "layer geometry: the producer %ld of %s is not another prunable tensor", p,
                            ti->name);
    const mg_tensor_info *pi = mg_model_tensor(m, (size_t)p);
    size_t prow, pper;
    mg_prune_rows(pi, &prow, &pper);
    /* Which producer channel each weight of a row reads. */
    size_t group_rows = rows, cin = per, span = 1;
    if (ti->ndim == 4) {
        size_t cg = (size_t)ti->shape[1], groups = cg ? prow / cg : 0;
        if (cg == 0 || prow % cg != 0 || groups == 0 || rows % groups != 0)
            return mg_error_set(err, MG_ERR_ARG,
                                "layer geometry: %s has %zu input channels per group, which does not fit the %zu "
                                "channels of its producer %s",
                                ti->name, cg, prow, pi->name);
        group_rows = rows / groups;
        cin = cg;
        span = per / cg;
    } else {
        if (per % prow != 0)
            return mg_error_set(err, MG_ERR_ARG, "layer geometry: %s has %zu inputs, not a multiple of the %zu rows of "
                                "its producer %s", ti->name, per, prow, pi->name);
        span = per / prow;
    }
    uint64_t n = 0;
    for (size_t o = 0; o < rows; o++) {
        size_t base = ti->ndim == 4 ? (o / group_rows) * cin : 0;
        for (size_t e = 0; e < per; e++) {
            if (mk[o * per + e] == 0.0f)
                continue;
            size_t ch = base + e / span;
            n += (uint64_t)row_alive(masks + pi->offset + ch * pper, pper);
        }
    }
    *out = (uint64_t)geom[t].positions * n;
    return MG_OK;
}

mg_status mg_prune_stats(const mg_model *m, const mg_prune_geom *geom, mg_prune_stats_t *out, mg_error *err)
{
    mg_status st = MG_OK;
    memset(out, 0, sizeof *out);
    size_t nt = mg_model_n_tensors(m), n = 0;
    const float *params = mg_model_params((mg_model *)m), *masks = mg_model_masks((mg_model *)m);
    for (size_t t = 0; t < nt; t++)
        n += (size_t)mg_model_tensor(m, t)->prunable;
    size_t cap = n ? n : 1;
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
        if (geom && geom[t].positions > 0) {
            out->macs_dense[j] = (uint64_t)geom[t].positions * (uint64_t)ti->count;
            MG_CHECK(layer_macs(m, geom, t, &out->macs[j], err));
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
    return st;
}
