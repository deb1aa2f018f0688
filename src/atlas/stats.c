/* stats.c: the atlas's statistics: per attack node (column) standardisation
 * and median non-member score, per sample (row) exposure over the nodes where
 * it is a member, reduced across the BLACS process rows, and the ranking of
 * the most exposed samples. */
#include "atlas/atlas_internal.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

mg_status mg_atlas_column_stats(const double *score, const int8_t *member, size_t n, mg_atlas_colstat *out,
                                mg_error *err)
{
    double *nonmember = NULL;
    size_t n_scores = 0, n_members = 0, n_non = 0;
    double sum = 0.0;
    memset(out, 0, sizeof *out);
    for (size_t i = 0; i < n; i++) {
        if (isnan(score[i]))
            continue;
        n_scores++;
        sum += score[i];
        n_members += member[i] == 1;
        n_non += member[i] == 0;
    }
    out->n_scores = (uint32_t)n_scores;
    out->n_members = (uint32_t)n_members;
    out->median_nonmember = NAN;
    if (n_scores == 0)
        return MG_OK;
    out->mean = sum / (double)n_scores;
    /* Two passes: the squared deviations from the mean, not E[x^2] - mean^2,
     * which cancels badly for scores far from zero. */
    double ss = 0.0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(score[i]))
            ss += (score[i] - out->mean) * (score[i] - out->mean);
    out->std = sqrt(ss / (double)n_scores);
    if (n_non == 0)
        return MG_OK;
    nonmember = mg_malloc(n_non, sizeof *nonmember, "non-member scores", err);
    if (!nonmember)
        return MG_ERR_NOMEM;
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (!isnan(score[i]) && member[i] == 0)
            nonmember[k++] = score[i];
    qsort(nonmember, n_non, sizeof *nonmember, cmp_double);
    out->median_nonmember =
        n_non % 2 ? nonmember[n_non / 2] : 0.5 * (nonmember[n_non / 2 - 1] + nonmember[n_non / 2]);
    free(nonmember);
    return MG_OK;
}

double mg_atlas_zscore(double score, const mg_atlas_colstat *c)
{
    return c->std > 0.0 ? (score - c->mean) / c->std : 0.0;
}

/* Partial sums of one local row, reduced across the process row. */
enum { ACC_SUM_Z, ACC_SCORES, ACC_MEMBERS, ACC_EXPOSED, ACC_N };

mg_status mg_atlas_sample_stats(const mg_atlas_grid *g, const mg_atlas_dmat *S, const int8_t *member,
                                const mg_atlas_colstat *cols, const uint32_t *sample_index,
                                mg_atlas_sample_row *rows, mg_error *err)
{
    mg_status st = MG_OK;
    size_t mloc = (size_t)S->mloc;
    double *acc = mg_calloc(mloc * ACC_N + 1, sizeof *acc, "sample sums", err);
    double *mx = mg_malloc(mloc + 1, sizeof *mx, "sample maxima", err);
    if (!acc || !mx)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory for per-sample statistics");
    for (size_t il = 0; il < mloc; il++)
        mx[il] = -INFINITY;
    for (int jl = 0; jl < S->nloc; jl++) {
        const mg_atlas_colstat *c = &cols[mg_atlas_l2g(jl, S->nb, g->mycol, g->npcol)];
        const double *col = S->a + (size_t)jl * (size_t)S->lld;
        const int8_t *mcol = member + (size_t)jl * (size_t)S->lld;
        for (size_t il = 0; il < mloc; il++) {
            double s = col[il];
            if (isnan(s))
                continue;
            double *a = acc + il * ACC_N;
            a[ACC_SCORES] += 1.0;
            if (mcol[il] != 1)
                continue;
            double z = mg_atlas_zscore(s, c);
            a[ACC_SUM_Z] += z;
            a[ACC_MEMBERS] += 1.0;
            /* A node without non-members has a NaN median: never exceeded. */
            a[ACC_EXPOSED] += s > c->median_nonmember;
            if (z > mx[il])
                mx[il] = z;
        }
    }
    /* Counts are whole numbers far below 2^53, so their sums are exact. */
    if (mloc > 0 && (MPI_Allreduce(MPI_IN_PLACE, acc, (int)(mloc * ACC_N), MPI_DOUBLE, MPI_SUM, g->row_comm) !=
                         MPI_SUCCESS ||
                     MPI_Allreduce(MPI_IN_PLACE, mx, (int)mloc, MPI_DOUBLE, MPI_MAX, g->row_comm) != MPI_SUCCESS))
        MG_FAIL(MG_ERR_MPI, "atlas: reducing per-sample statistics across process rows failed");
    for (size_t il = 0; il < mloc; il++) {
        const double *a = acc + il * ACC_N;
        mg_atlas_sample_row *r = &rows[il];
        r->sample_index = sample_index[mg_atlas_l2g((int)il, S->nb, g->myrow, g->nprow)];
        r->n_scores = (uint32_t)a[ACC_SCORES];
        r->n_members = (uint32_t)a[ACC_MEMBERS];
        r->member_fraction = r->n_scores ? a[ACC_MEMBERS] / a[ACC_SCORES] : NAN;
        if (r->n_members) {
            r->mean_z = a[ACC_SUM_Z] / a[ACC_MEMBERS];
            r->exposed_fraction = a[ACC_EXPOSED] / a[ACC_MEMBERS];
            r->max_z = mx[il];
        } else {
            r->mean_z = r->exposed_fraction = r->max_z = NAN;
        }
    }
cleanup:
    free(acc);
    free(mx);
    return st;
}

void mg_atlas_standardise(mg_atlas_dmat *S, const mg_atlas_grid *g, const mg_atlas_colstat *cols)
{
    for (int jl = 0; jl < S->nloc; jl++) {
        const mg_atlas_colstat *c = &cols[mg_atlas_l2g(jl, S->nb, g->mycol, g->npcol)];
        double *col = S->a + (size_t)jl * (size_t)S->lld;
        for (int il = 0; il < S->mloc; il++)
            col[il] = isnan(col[il]) ? 0.0 : mg_atlas_zscore(col[il], c);
    }
}

int mg_atlas_exposure_cmp(const void *a, const void *b)
{
    const mg_atlas_sample_row *x = a, *y = b;
    if (x->exposed_fraction != y->exposed_fraction)
        return x->exposed_fraction > y->exposed_fraction ? -1 : 1;
    if (x->mean_z != y->mean_z)
        return x->mean_z > y->mean_z ? -1 : 1;
    return (x->sample_index > y->sample_index) - (x->sample_index < y->sample_index);
}

mg_status mg_atlas_top_exposed(const mg_atlas_grid *g, const mg_atlas_sample_row *rows, size_t n_local, size_t k,
                               mg_atlas_sample_row *top, size_t *n_top, mg_error *err)
{
    mg_status st = MG_OK;
    mg_atlas_sample_row *mine = NULL, *all = NULL;
    int *counts = NULL, *displs = NULL;
    size_t n_mine = 0;
    *n_top = 0;
    /* Every process of a row holds the same rows; column 0 speaks for it. */
    if (g->mycol == 0) {
        mine = mg_malloc(n_local + 1, sizeof *mine, "exposure candidates", err);
        if (!mine)
            MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory ranking samples");
        for (size_t i = 0; i < n_local; i++)
            if (rows[i].n_members > 0)
                mine[n_mine++] = rows[i];
        qsort(mine, n_mine, sizeof *mine, mg_atlas_exposure_cmp);
        if (n_mine > k)
            n_mine = k;
    }
    counts = mg_calloc((size_t)g->size, sizeof *counts, "candidate counts", err);
    displs = mg_calloc((size_t)g->size, sizeof *displs, "candidate offsets", err);
    if (!counts || !displs)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory ranking samples");
    int bytes = (int)(n_mine * sizeof(mg_atlas_sample_row));
    if (MPI_Allgather(&bytes, 1, MPI_INT, counts, 1, MPI_INT, g->comm) != MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: gathering exposure candidates failed");
    size_t total = 0;
    for (int r = 0; r < g->size; r++) {
        displs[r] = (int)total;
        total += (size_t)counts[r];
    }
    all = mg_malloc(total + 1, 1, "exposure candidates", err);
    if (!all)
        MG_FAIL(MG_ERR_NOMEM, "atlas: out of memory ranking samples");
    if (MPI_Allgatherv(mine ? (void *)mine : (void *)all, bytes, MPI_BYTE, all, counts, displs, MPI_BYTE, g->comm) !=
        MPI_SUCCESS)
        MG_FAIL(MG_ERR_MPI, "atlas: gathering exposure candidates failed");
    size_t n_all = total / sizeof(mg_atlas_sample_row);
    qsort(all, n_all, sizeof *all, mg_atlas_exposure_cmp);
    *n_top = n_all < k ? n_all : k;
    memcpy(top, all, *n_top * sizeof *top);
cleanup:
    free(mine);
    free(all);
    free(counts);
    free(displs);
    return st;
}
