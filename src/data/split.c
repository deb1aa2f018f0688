/*
 * split.c: the deterministic four-way split of a dataset into target and
 * shadow members and non-members, and gathering the chosen rows.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/data.h"

mg_status mg_split_four_way(size_t n_total, const size_t sizes[4], uint64_t seed, const char *stream,
                            mg_split *out, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *perm = NULL;
    memset(out, 0, sizeof *out);

    size_t sum = 0;
    for (int k = 0; k < 4; k++) {
        if (sum > SIZE_MAX - sizes[k])
            MG_FAIL(MG_ERR_CONFIG, "the split sizes (%zu, %zu, %zu, %zu) overflow when added", sizes[0],
                    sizes[1], sizes[2], sizes[3]);
        sum += sizes[k];
    }
    if (sum > n_total)
        MG_FAIL(MG_ERR_CONFIG,
                "the split sizes add up to %zu (%zu + %zu + %zu + %zu) but the dataset holds only %zu samples",
                sum, sizes[0], sizes[1], sizes[2], sizes[3], n_total);
    if (n_total > UINT32_MAX)
        MG_FAIL(MG_ERR_ARG, "a dataset of %zu samples is too large to split (limit %u)", n_total,
                (unsigned)UINT32_MAX);

    perm = mg_malloc(n_total, sizeof *perm, "split permutation", err);
    if (!perm)
        MG_CHECK(MG_ERR_NOMEM);
    for (size_t i = 0; i < n_total; i++)
        perm[i] = (uint32_t)i;
    mg_rng rng;
    mg_rng_seed(&rng, seed, "split", stream);
    mg_rng_shuffle_u32(&rng, perm, n_total);

    size_t at = 0;
    for (int k = 0; k < 4; k++) {
        out->idx[k] = mg_malloc(sizes[k], sizeof(uint32_t), "split part", err);
        if (!out->idx[k])
            MG_CHECK(MG_ERR_NOMEM);
        memcpy(out->idx[k], perm + at, sizes[k] * sizeof(uint32_t));
        out->n[k] = sizes[k];
        at += sizes[k];
    }

cleanup:
    free(perm);
    if (st != MG_OK)
        mg_split_free(out);
    return st;
}

void mg_split_free(mg_split *s)
{
    if (!s)
        return;
    for (int k = 0; k < 4; k++)
        free(s->idx[k]);
    memset(s, 0, sizeof *s);
}

void mg_dataset_gather(const mg_dataset *d, const uint32_t *idx, size_t n, float *x_out, int32_t *y_out)
{
    size_t dim = mg_dataset_dim(d);
    for (size_t i = 0; i < n; i++) {
        memcpy(x_out + i * dim, d->x + (size_t)idx[i] * dim, dim * sizeof(float));
        y_out[i] = d->y[idx[i]];
    }
}
