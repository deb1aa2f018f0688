/*
 * prune.c: the unstructured methods (L1 magnitude per layer and global,
 * random), the rules the methods share (counts, eligibility, selection by
 * name prefix, order statistics) and the dispatcher mg_prune_apply. A method
 * decides which entries of each prunable tensor to drop, sets their mask to
 * 0 and their value to exactly 0.0f; mg_optim_step keeps them there while
 * fine-tuning.
 */
#include "miagrid/prune.h"
#include "prune/prune_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

size_t mg_prune_round_count(double s, size_t n)
{
    /* nearbyint rounds half to even in the default rounding mode, as Python's round(). */
    return (size_t)nearbyint(s * (double)n);
}

int mg_prune_selected(const mg_prune_opts *opts, const char *name)
{
    if (!opts || !opts->layers || opts->n_layers == 0)
        return 1;
    for (size_t i = 0; i < opts->n_layers; i++)
        if (opts->layers[i] && strncmp(name, opts->layers[i], strlen(opts->layers[i])) == 0)
            return 1;
    return 0;
}

int mg_prune_eligible_any(const mg_model *m, size_t t)
{
    return mg_model_tensor(m, t)->prunable;
}

int mg_prune_is_attention(const char *name)
{
    return strstr(name, "in_proj_weight") != NULL || strstr(name, "out_proj.weight") != NULL;
}

int mg_prune_eligible_rows(const mg_model *m, size_t t)
{
    const mg_tensor_info *ti = mg_model_tensor(m, t);
    if (!ti->prunable || (ti->ndim != 2 && ti->ndim != 4) || mg_prune_is_attention(ti->name))
        return 0;
    /* The output layer is the last prunable tensor: its rows are the classes. */
    for (size_t u = t + 1; u < mg_model_n_tensors(m); u++)
        if (mg_model_tensor(m, u)->prunable)
            return 1;
    return 0;
}

mg_status mg_prune_check_prefixes(const mg_model *m, const mg_prune_opts *opts, mg_prune_eligible_fn eligible,
                                  const char *method, mg_error *err)
{
    if (!opts || !opts->layers)
        return MG_OK;
    for (size_t i = 0; i < opts->n_layers; i++) {
        const char *p = opts->layers[i];
        if (!p || !*p)
            return mg_error_set(err, MG_ERR_ARG, "%s pruning: layer prefix %zu is empty", method, i + 1);
        int found = 0;
        for (size_t t = 0; t < mg_model_n_tensors(m) && !found; t++)
            found = eligible(m, t) && strncmp(mg_model_tensor(m, t)->name, p, strlen(p)) == 0;
        if (!found) {
            /* Name the tensors it could have matched, as many as fit. */
            char names[480];
            size_t len = 0;
            names[0] = '\0';
            for (size_t t = 0; t < mg_model_n_tensors(m) && len < sizeof names; t++) {
                if (!eligible(m, t))
                    continue;
                int w = snprintf(names + len, sizeof names - len, "%s%s", len ? ", " : "", mg_model_tensor(m, t)->name);
                len = w < 0 ? sizeof names : len + (size_t)w;
            }
            if (len >= sizeof names)
                memcpy(names + sizeof names - 5, " ...", 5);
            return mg_error_set(err, MG_ERR_ARG,
                                "%s pruning: layer prefix '%s' matches no tensor this method prunes (those are: %s)",
                                method, p, names);
        }
    }
    return MG_OK;
}

void mg_prune_rows(const mg_tensor_info *ti, size_t *rows, size_t *per_row)
{
    *rows = ti->ndim > 0 && ti->shape[0] > 0 ? (size_t)ti->shape[0] : 1;
    *per_row = ti->count / *rows;
}

float mg_prune_kth_smallest(float *v, size_t n, size_t k)
{
    size_t lo = 0, hi = n;   /* the answer lies in v[lo..hi) */
    while (hi - lo > 1) {
        /* Median of three keeps sorted and reversed inputs linear; the
         * three-way split keeps runs of equal values (zeros) linear too. */
        float a = v[lo], b = v[lo + (hi - lo) / 2], c = v[hi - 1];
        float pivot = a < b ? (b < c ? b : (a < c ? c : a)) : (a < c ? a : (b < c ? c : b));
        size_t lt = lo, i = lo, gt = hi;
        while (i < gt) {
            float x = v[i];
            if (x < pivot) {
                v[i++] = v[lt];
                v[lt++] = x;
            } else if (x > pivot) {
                v[i] = v[--gt];
                v[gt] = x;
            } else {
                i++;
            }
        }
        if (k < lt)
            hi = lt;
        else if (k >= gt)
            lo = gt;
        else
            return pivot;
    }
    return v[lo];
}

static float score_at(const float *w, const float *u, size_t i)
{
    return fabsf(u ? w[i] + u[i] : w[i]);
}

void mg_prune_threshold(const float *w, const float *u, const float *mask, size_t n, size_t r, float *scratch,
                        float *tau, size_t *ties)
{
    *tau = -INFINITY;
    *ties = 0;
    if (r == 0)
        return;
    size_t live = 0;
    for (size_t i = 0; i < n; i++)
        if (!mask || mask[i] != 0.0f)
            scratch[live++] = score_at(w, u, i);
    *tau = mg_prune_kth_smallest(scratch, live, r - 1);
    size_t below = 0;
    for (size_t i = 0; i < n; i++)
        if ((!mask || mask[i] != 0.0f) && score_at(w, u, i) < *tau)
            below++;
    *ties = r - below;
}

/* Drop, among the unmasked entries of one tensor, the r of smallest |w|
 * (ties by lower index), and zero every masked entry. */
static void drop_smallest(float *w, float *mk, size_t n, size_t r, float *scratch)
{
    float tau;
    size_t ties;
    mg_prune_threshold(w, NULL, mk, n, r, scratch, &tau, &ties);
    for (size_t i = 0; i < n; i++) {
        if (mk[i] != 0.0f) {
            float a = fabsf(w[i]);
            if (!(a < tau || (a == tau && ties > 0)))
                continue;
            if (a == tau)
                ties--;
            mk[i] = 0.0f;
        }
        w[i] = 0.0f;
    }
}

static size_t count_masked(const float *mk, size_t n)
{
    size_t z = 0;
    for (size_t i = 0; i < n; i++)
        z += mk[i] == 0.0f;
    return z;
}

/* MG_ERR_NUMERIC naming the first non-finite unmasked weight of tensor t. */
static mg_status check_finite(mg_model *m, size_t t, const char *what, mg_error *err)
{
    const mg_tensor_info *ti = mg_model_tensor(m, t);
    const float *w = mg_model_params(m) + ti->offset, *mk = mg_model_masks(m) + ti->offset;
    for (size_t i = 0; i < ti->count; i++)
        if (mk[i] != 0.0f && !isfinite(w[i]))
            return mg_error_set(err, MG_ERR_NUMERIC, "%s: %s[%zu] is %g; the model has diverged", what, ti->name, i,
                                (double)w[i]);
    return MG_OK;
}

mg_status mg_prune_l1_counts(mg_model *m, const unsigned char *on, const size_t *n_prune, const char *what,
                             mg_error *err)
{
    mg_status st = MG_OK;
    float *scratch = NULL;
    size_t max_count = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (on[t] && ti->prunable && ti->count > max_count)
            max_count = ti->count;
    }
    scratch = mg_malloc(max_count ? max_count : 1, sizeof *scratch, "pruning scratch", err);
    if (!scratch)
        MG_FAIL(MG_ERR_NOMEM, "%s: out of memory for a tensor of %zu entries", what, max_count);
    /* Check every tensor before touching any, so a failure leaves the model as it was. */
    for (size_t t = 0; t < mg_model_n_tensors(m); t++)
        if (on[t] && mg_model_tensor(m, t)->prunable)
            MG_CHECK(check_finite(m, t, what, err));
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!on[t] || !ti->prunable)
            continue;
        float *w = mg_model_params(m) + ti->offset, *mk = mg_model_masks(m) + ti->offset;
        size_t masked = count_masked(mk, ti->count), k = n_prune[t] < ti->count ? n_prune[t] : ti->count;
        /* Earlier prunings survive even when k is smaller than their number. */
        drop_smallest(w, mk, ti->count, k > masked ? k - masked : 0, scratch);
    }
cleanup:
    free(scratch);
    return st;
}

/* Flags and per-tensor counts round(s * count) for the selected eligible tensors. */
static mg_status layer_counts(const mg_model *m, double s, const mg_prune_opts *opts, unsigned char **on,
                              size_t **n_prune, mg_error *err)
{
    size_t nt = mg_model_n_tensors(m);
    *on = mg_calloc(nt ? nt : 1, 1, "pruning flags", err);
    *n_prune = mg_calloc(nt ? nt : 1, sizeof **n_prune, "pruning counts", err);
    if (!*on || !*n_prune)
        return MG_ERR_NOMEM;
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        (*on)[t] = ti->prunable && mg_prune_selected(opts, ti->name);
        (*n_prune)[t] = mg_prune_round_count(s, ti->count);
    }
    return MG_OK;
}

mg_status mg_prune_l1_layers(mg_model *m, double s, const mg_prune_opts *opts, mg_error *err)
{
    mg_status st = MG_OK;
    unsigned char *on = NULL;
    size_t *n_prune = NULL;
    MG_CHECK(mg_prune_check_prefixes(m, opts, mg_prune_eligible_any, "l1-unstructured", err));
    MG_CHECK(layer_counts(m, s, opts, &on, &n_prune, err));
    MG_CHECK(mg_prune_l1_counts(m, on, n_prune, "l1-unstructured pruning", err));
cleanup:
    free(on);
    free(n_prune);
    return st;
}

mg_status mg_prune_l1_unstructured(mg_model *m, double sparsity, mg_error *err)
{
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return mg_error_set(err, MG_ERR_ARG, "l1-unstructured pruning: sparsity %g must be in [0, 1)", sparsity);
    return mg_prune_l1_layers(m, sparsity, NULL, err);
}

mg_status mg_prune_l1_global(mg_model *m, double s, const mg_prune_opts *opts, mg_error *err)
{
    static const char what[] = "l1-unstructured-global pruning";
    mg_status st = MG_OK;
    float *scratch = NULL;
    size_t nt = mg_model_n_tensors(m), total = 0, masked = 0;
    float *params = mg_model_params(m), *masks = mg_model_masks(m);
    MG_CHECK(mg_prune_check_prefixes(m, opts, mg_prune_eligible_any, "l1-unstructured-global", err));
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable || !mg_prune_selected(opts, ti->name))
            continue;
        MG_CHECK(check_finite(m, t, what, err));
        total += ti->count;
        masked += count_masked(masks + ti->offset, ti->count);
    }
    size_t k = mg_prune_round_count(s, total);
    if (k <= masked)
        goto cleanup;
    size_t r = k - masked, live = total - masked;
    scratch = mg_malloc(live, sizeof *scratch, "pruning scratch", err);
    if (!scratch)
        MG_FAIL(MG_ERR_NOMEM, "%s: out of memory for %zu weights", what, live);
    /* One ranking over all selected tensors in table order: the r-th smallest
     * |w| is the threshold, and ties at it go in table order, then by index. */
    size_t j = 0;
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable || !mg_prune_selected(opts, ti->name))
            continue;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
            if (masks[i] != 0.0f)
                scratch[j++] = fabsf(params[i]);
    }
    float tau = mg_prune_kth_smallest(scratch, live, r - 1);
    size_t below = 0;
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable || !mg_prune_selected(opts, ti->name))
            continue;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
            below += masks[i] != 0.0f && fabsf(params[i]) < tau;
    }
    size_t ties = r - below;
    for (size_t t = 0; t < nt; t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable || !mg_prune_selected(opts, ti->name))
            continue;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
            if (masks[i] == 0.0f)
                continue;
            float a = fabsf(params[i]);
            if (a < tau || (a == tau && ties > 0)) {
                if (a == tau)
                    ties--;
                masks[i] = 0.0f;
                params[i] = 0.0f;
            }
        }
    }
cleanup:
    free(scratch);
    return st;
}

mg_status mg_prune_random(mg_model *m, double s, const mg_prune_opts *opts, mg_rng *rng, mg_error *err)
{
    mg_status st = MG_OK;
    size_t *idx = NULL, max_count = 0;
    MG_CHECK(mg_prune_check_prefixes(m, opts, mg_prune_eligible_any, "random-unstructured", err));
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->prunable && mg_prune_selected(opts, ti->name) && ti->count > max_count)
            max_count = ti->count;
    }
    idx = mg_malloc(max_count ? max_count : 1, sizeof *idx, "pruning scratch", err);
    if (!idx)
        MG_FAIL(MG_ERR_NOMEM, "random-unstructured pruning: out of memory for a tensor of %zu entries", max_count);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable || !mg_prune_selected(opts, ti->name))
            continue;
        float *w = mg_model_params(m) + ti->offset, *mk = mg_model_masks(m) + ti->offset;
        size_t live = 0;
        for (size_t i = 0; i < ti->count; i++)
            if (mk[i] != 0.0f)
                idx[live++] = i;
        size_t masked = ti->count - live, k = mg_prune_round_count(s, ti->count);
        size_t r = k > masked ? k - masked : 0;
        /* A partial Fisher-Yates shuffle: the first r of a uniform permutation
         * of the unmasked entries, drawn in index order from rng. */
        for (size_t i = 0; i < r; i++) {
            size_t j = i + (size_t)mg_rng_below(rng, (uint64_t)(live - i));
            size_t tmp = idx[i];
            idx[i] = idx[j];
            idx[j] = tmp;
            mk[idx[i]] = 0.0f;
        }
        for (size_t i = 0; i < ti->count; i++)
            if (mk[i] == 0.0f)
                w[i] = 0.0f;
    }
cleanup:
    free(idx);
    return st;
}

double mg_model_mask_sparsity(const mg_model *m)
{
    size_t total = 0, zero = 0;
    const float *masks = mg_model_masks((mg_model *)m);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        zero += count_masked(masks + ti->offset, ti->count);
        total += ti->count;
    }
    return total ? (double)zero / (double)total : 0.0;
}

/* ---- dispatcher ------------------------------------------------------------------------ */

static const char *const methods[] = {"l1-unstructured", "l1-unstructured-global", "random-unstructured",
                                      "l1-structured", "l2-structured", "slim", "butterfly"};

const char *mg_prune_method_list(void)
{
    return "l1-unstructured, l1-unstructured-global, random-unstructured, l1-structured, l2-structured, slim, "
           "butterfly";
}

int mg_prune_method_known(const char *method)
{
    for (size_t i = 0; method && i < sizeof methods / sizeof methods[0]; i++)
        if (strcmp(method, methods[i]) == 0)
            return 1;
    return 0;
}

mg_status mg_prune_apply(mg_model *m, const char *method, double sparsity, const mg_prune_opts *opts,
                         mg_rng *rng, mg_error *err)
{
    if (!mg_prune_method_known(method))
        return mg_error_set(err, MG_ERR_ARG, "pruning: unknown method '%s' (known: %s)", method ? method : "(null)",
                            mg_prune_method_list());
    if (!(sparsity >= 0.0 && sparsity < 1.0))
        return mg_error_set(err, MG_ERR_ARG, "%s pruning: sparsity %g must be in [0, 1)", method, sparsity);
    if (strcmp(method, "l1-unstructured") == 0)
        return mg_prune_l1_layers(m, sparsity, opts, err);
    if (strcmp(method, "l1-unstructured-global") == 0)
        return mg_prune_l1_global(m, sparsity, opts, err);
    if (strcmp(method, "random-unstructured") == 0) {
        if (!rng)
            return mg_error_set(err, MG_ERR_ARG, "random-unstructured pruning needs a random number generator");
        return mg_prune_random(m, sparsity, opts, rng, err);
    }
    if (strcmp(method, "l1-structured") == 0)
        return mg_prune_ln_structured(m, sparsity, 1, opts, err);
    if (strcmp(method, "l2-structured") == 0)
        return mg_prune_ln_structured(m, sparsity, 2, opts, err);
    if (strcmp(method, "slim") == 0)
        return mg_prune_slim(m, sparsity, opts, err);
    return mg_prune_butterfly(m, sparsity, opts, err);
}
