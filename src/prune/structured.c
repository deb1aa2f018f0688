/*
 * structured.c: pruning whole rows (conv filters, linear neurons) by their
 * L1 or L2 norm, and network slimming (Liu et al., ICCV 2017): batch-norm
 * channels ranked by |gamma| across the model, with the sparsity penalty on
 * gamma used while training for it. The batch norms and the layers feeding
 * them are read off the public tensor table (names, shapes, order), not the
 * engine's graph.
 */
#include "miagrid/prune.h"
#include "prune/prune_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- reading batch norms off the tensor table ---------------------------------------- */

/* Length of `name` without `suffix` if it ends with it, else 0. */
static size_t strip_suffix(const char *name, const char *suffix)
{
    size_t n = strlen(name), s = strlen(suffix);
    return n > s && strcmp(name + n - s, suffix) == 0 ? n - s : 0;
}

/* Index of the tensor named prefix[0..len) + leaf among the parameters
 * (buffer 0) or buffers (buffer 1), or -1. */
static long find_tensor(const mg_model *m, const char *prefix, size_t len, const char *leaf, int buffer)
{
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->buffer == buffer && strncmp(ti->name, prefix, len) == 0 && strcmp(ti->name + len, leaf) == 0)
            return (long)t;
    }
    return -1;
}

/* A batch norm's gamma: a 1-d trained "<p>.weight" that is not prunable and
 * has a "<p>.running_mean" buffer (layer norms have none). */
static int is_bn_gamma(const mg_model *m, size_t t)
{
    const mg_tensor_info *ti = mg_model_tensor(m, t);
    size_t len = strip_suffix(ti->name, ".weight");
    return !ti->buffer && !ti->prunable && ti->ndim == 1 && len > 0 &&
           find_tensor(m, ti->name, len, ".running_mean", 1) >= 0;
}

/* Length of the parent module of a tensor's module: "L.0" for "L.0.c1.weight", 0 for "c.weight". */
static size_t parent_len(const char *name, size_t module_len)
{
    for (size_t i = module_len; i > 0; i--)
        if (name[i - 1] == '.')
            return i - 1;
    return 0;
}

long mg_prune_bn_source(const mg_model *m, size_t bn_weight)
{
    if (bn_weight == 0 || bn_weight >= mg_model_n_tensors(m) || !is_bn_gamma(m, bn_weight))
        return -1;
    const mg_tensor_info *bn = mg_model_tensor(m, bn_weight);
    size_t src = bn_weight - 1;
    const mg_tensor_info *prev = mg_model_tensor(m, src);
    if (!prev->prunable) {
        /* Only the source's own bias may sit between it and the batch norm. */
        size_t blen = strip_suffix(prev->name, ".bias");
        if (blen == 0 || src == 0)
            return -1;
        src--;
        const mg_tensor_info *w = mg_model_tensor(m, src);
        if (strip_suffix(w->name, ".weight") != blen || strncmp(w->name, prev->name, blen) != 0)
            return -1;
        prev = w;
    }
    size_t wlen = strip_suffix(prev->name, ".weight"), glen = strip_suffix(bn->name, ".weight");
    if (!prev->prunable || (prev->ndim != 2 && prev->ndim != 4) || mg_prune_is_attention(prev->name) ||
        wlen == 0 || prev->shape[0] != bn->shape[0])
        return -1;
    size_t pw = parent_len(prev->name, wlen), pg = parent_len(bn->name, glen);
    if (pw != pg || strncmp(prev->name, bn->name, pw) != 0)
        return -1;
    return (long)src;
}

mg_status mg_prune_find_bns(const mg_model *m, mg_prune_bn **out, size_t *n, mg_error *err)
{
    size_t nt = mg_model_n_tensors(m), k = 0;
    *out = NULL;
    *n = 0;
    mg_prune_bn *bns = mg_malloc(nt ? nt : 1, sizeof *bns, "batch-norm table", err);
    if (!bns)
        return MG_ERR_NOMEM;
    for (size_t t = 0; t < nt; t++) {
        if (!is_bn_gamma(m, t))
            continue;
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        long beta = find_tensor(m, ti->name, strip_suffix(ti->name, ".weight"), ".bias", 0);
        if (beta < 0 || mg_model_tensor(m, (size_t)beta)->count != ti->count) {
            free(bns);
            return mg_error_set(err, MG_ERR_INTERNAL, "batch norm %s has no bias of its size", ti->name);
        }
        bns[k].gamma = t;
        bns[k].beta = (size_t)beta;
        bns[k].source = mg_prune_bn_source(m, t);
        bns[k].channels = ti->shape[0];
        k++;
    }
    *out = bns;
    *n = k;
    return MG_OK;
}

/* ---- row ranking (structured and slimming) -------------------------------------------- */

typedef struct {
    double score;
    size_t group;   /* layer (structured) or batch norm (slim) */
    size_t row;
    int pruned;
} row_key;

/* Pruned rows first (so they stay pruned), then the score, then group and
 * row, which makes the order total and the choice deterministic. */
static int cmp_row(const void *pa, const void *pb)
{
    const row_key *a = pa, *b = pb;
    if (a->pruned != b->pruned)
        return a->pruned ? -1 : 1;
    if (a->score != b->score)
        return a->score < b->score ? -1 : 1;
    if (a->group != b->group)
        return a->group < b->group ? -1 : 1;
    return (a->row > b->row) - (a->row < b->row);
}

static void drop_row(mg_model *m, const mg_tensor_info *ti, size_t row)
{
    size_t rows, per;
    mg_prune_rows(ti, &rows, &per);
    float *w = mg_model_params(m) + ti->offset + row * per, *mk = mg_model_masks(m) + ti->offset + row * per;
    for (size_t i = 0; i < per; i++) {
        w[i] = 0.0f;
        mk[i] = 0.0f;
    }
}

mg_status mg_prune_ln_structured(mg_model *m, double s, int norm, const mg_prune_opts *opts, mg_error *err)
{
    const char *method = norm == 1 ? "l1-structured" : "l2-structured";
    mg_status st = MG_OK;
    row_key *keys = NULL;
    size_t max_rows = 0, nt = mg_model_n_tensors(m);
    MG_CHECK(mg_prune_check_prefixes(m, opts, mg_prune_eligible_rows, method, err));
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!mg_prune_eligible_rows(m, t) || !mg_prune_selected(opts, ti->name))
            continue;
        const float *w = mg_model_params(m) + ti->offset, *mk = mg_model_masks(m) + ti->offset;
        for (size_t i = 0; i < ti->count; i++)
            if (mk[i] != 0.0f && !isfinite(w[i]))
                MG_FAIL(MG_ERR_NUMERIC, "%s pruning: %s[%zu] is %g; the model has diverged", method, ti->name, i,
                        (double)w[i]);
        if ((size_t)ti->shape[0] > max_rows)
            max_rows = (size_t)ti->shape[0];
    }
    keys = mg_malloc(max_rows ? max_rows : 1, sizeof *keys, "pruning scratch", err);
    if (!keys)
        MG_FAIL(MG_ERR_NOMEM, "%s pruning: out of memory for %zu rows", method, max_rows);
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!mg_prune_eligible_rows(m, t) || !mg_prune_selected(opts, ti->name))
            continue;
        size_t rows, per, masked_rows = 0;
        mg_prune_rows(ti, &rows, &per);
        for (size_t r = 0; r < rows; r++) {
            const float *w = mg_model_params(m) + ti->offset + r * per, *mk = mg_model_masks(m) + ti->offset + r * per;
            double acc = 0.0;
            int live = 0;
            for (size_t i = 0; i < per; i++) {
                acc += norm == 1 ? fabs((double)w[i]) : (double)w[i] * (double)w[i];
                live |= mk[i] != 0.0f;
            }
            keys[r] = (row_key){norm == 1 ? acc : sqrt(acc), t, r, !live};
            masked_rows += !live;
        }
        qsort(keys, rows, sizeof *keys, cmp_row);
        size_t k = mg_prune_round_count(s, rows);
        if (k < masked_rows)
            k = masked_rows;
        for (size_t j = 0; j < k; j++)
            drop_row(m, ti, keys[j].row);
    }
cleanup:
    free(keys);
    return st;
}

/* ---- network slimming ---------------------------------------------------------------------- */

static int eligible_bn(const mg_model *m, size_t t)
{
    return is_bn_gamma(m, t);
}

mg_status mg_prune_slim(mg_model *m, double s, const mg_prune_opts *opts, mg_error *err)
{
    mg_status st = MG_OK;
    mg_prune_bn *bns = NULL;
    row_key *keys = NULL;
    size_t *live = NULL, n_bn = 0, n_sel = 0, total = 0, pruned = 0;
    float *params = mg_model_params(m), *masks = mg_model_masks(m);
    MG_CHECK(mg_prune_check_prefixes(m, opts, eligible_bn, "slim", err));
    MG_CHECK(mg_prune_find_bns(m, &bns, &n_bn, err));
    /* Keep the selected batch norms only. */
    for (size_t b = 0; b < n_bn; b++)
        if (mg_prune_selected(opts, mg_model_tensor(m, bns[b].gamma)->name))
            bns[n_sel++] = bns[b];
    if (n_sel == 0)
        MG_FAIL(MG_ERR_ARG, "slim pruning: the model has no batch-norm layers to rank channels by");
    for (size_t b = 0; b < n_sel; b++)
        total += (size_t)bns[b].channels;
    keys = mg_malloc(total, sizeof *keys, "pruning scratch", err);
    live = mg_calloc(n_sel, sizeof *live, "pruning scratch", err);
    if (!keys || !live)
        MG_FAIL(MG_ERR_NOMEM, "slim pruning: out of memory for %zu channels", total);
    size_t j = 0;
    for (size_t b = 0; b < n_sel; b++) {
        const mg_tensor_info *g = mg_model_tensor(m, bns[b].gamma);
        for (size_t c = 0; c < g->count; c++) {
            float gamma = params[g->offset + c];
            int was = masks[g->offset + c] == 0.0f;
            if (!was && !isfinite(gamma))
                MG_FAIL(MG_ERR_NUMERIC, "slim pruning: %s[%zu] is %g; the model has diverged", g->name, c,
                        (double)gamma);
            keys[j++] = (row_key){fabs((double)gamma), b, c, was};
            pruned += (size_t)was;
            live[b] += (size_t)!was;
        }
    }
    size_t k = mg_prune_round_count(s, total), reachable = pruned;
    for (size_t b = 0; b < n_sel; b++)
        reachable += live[b] > 1 ? live[b] - 1 : 0;
    if (k > reachable)
        MG_FAIL(MG_ERR_ARG,
                "slim pruning: sparsity %g would prune %zu of %zu batch-norm channels, but each of the %zu batch "
                "norms keeps at least one",
                s, k, total, n_sel);
    qsort(keys, total, sizeof *keys, cmp_row);
    for (size_t i = 0; i < total && pruned < k; i++) {
        const row_key *key = &keys[i];
        if (key->pruned || live[key->group] <= 1)
            continue;
        const mg_prune_bn *bn = &bns[key->group];
        const mg_tensor_info *g = mg_model_tensor(m, bn->gamma), *be = mg_model_tensor(m, bn->beta);
        params[g->offset + key->row] = masks[g->offset + key->row] = 0.0f;
        params[be->offset + key->row] = masks[be->offset + key->row] = 0.0f;
        if (bn->source >= 0)
            drop_row(m, mg_model_tensor(m, (size_t)bn->source), key->row);
        live[key->group]--;
        pruned++;
    }
cleanup:
    free(bns);
    free(keys);
    free(live);
    return st;
}

void mg_prune_slim_penalty(mg_model *m, double lambda)
{
    const float *params = mg_model_params(m);
    float *grads = mg_model_grads(m);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        if (!is_bn_gamma(m, t))
            continue;
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
            float g = params[i];
            grads[i] += (float)(lambda * (double)((g > 0.0f) - (g < 0.0f)));
        }
    }
}
