/* test_stats.c: the atlas's statistics on one process against plain C: the
 * per-node mean, standard deviation and median non-member score, the
 * per-sample exposure over a 37 x 11 block-cyclic matrix (NB = 4) with
 * missing entries, the standardisation, and the ranking of exposed samples. */
#include <math.h>
#include <mpi.h>
#include <stdlib.h>
#include <string.h>

#include "atlas/atlas_internal.h"
#include "mg_test.h"

static void test_column_stats(void)
{
    mg_error err;
    mg_atlas_colstat cs;
    /* Three non-members (median of an odd count), two members, one missing. */
    double s1[] = {1.0, 4.0, NAN, 2.0, 10.0, 3.0};
    int8_t m1[] = {0, 1, -1, 0, 1, 0};
    CHECK_OK(mg_atlas_column_stats(s1, m1, 6, &cs, &err), &err);
    CHECK_INT_EQ(cs.n_scores, 5);
    CHECK_INT_EQ(cs.n_members, 2);
    CHECK_NEAR(cs.mean, 4.0, 1e-15);
    CHECK_NEAR(cs.std, sqrt((9.0 + 0.0 + 4.0 + 36.0 + 1.0) / 5.0), 1e-15);
    CHECK_NEAR(cs.median_nonmember, 2.0, 0.0);
    /* An even count of non-members: the mean of the middle two. */
    double s2[] = {5.0, 1.0, 2.0, 8.0};
    int8_t m2[] = {0, 0, 0, 0};
    CHECK_OK(mg_atlas_column_stats(s2, m2, 4, &cs, &err), &err);
    CHECK_NEAR(cs.median_nonmember, 3.5, 0.0);
    /* No non-members: no median; a constant column: std 0 and z-scores 0. */
    double s3[] = {2.0, 2.0};
    int8_t m3[] = {1, 1};
    CHECK_OK(mg_atlas_column_stats(s3, m3, 2, &cs, &err), &err);
    CHECK(isnan(cs.median_nonmember));
    CHECK_NEAR(cs.std, 0.0, 0.0);
    CHECK_NEAR(mg_atlas_zscore(5.0, &cs), 0.0, 0.0);
    /* Nothing at all. */
    double s4[] = {NAN};
    int8_t m4[] = {-1};
    CHECK_OK(mg_atlas_column_stats(s4, m4, 1, &cs, &err), &err);
    CHECK_INT_EQ(cs.n_scores, 0);
    CHECK(isnan(cs.median_nonmember));
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* The per-sample statistics of a random 37 x 11 matrix with about a fifth
 * of its entries missing, against a direct computation. */
static void test_sample_stats(const mg_atlas_grid *g)
{
    enum { M = 37, N = 11, NB = 4 };
    double s[M * N]; /* row-major */
    int8_t mem[M * N];
    uint32_t index[M];
    mg_rng rng;
    mg_rng_seed(&rng, 3, "atlas-test", "stats");
    for (int i = 0; i < M; i++)
        index[i] = (uint32_t)(1000 + 7 * i);
    for (int i = 0; i < M * N; i++) {
        double u = mg_rng_uniform(&rng);
        mem[i] = u < 0.2 ? -1 : u < 0.6 ? 1 : 0;
        s[i] = mem[i] < 0 ? NAN : mg_rng_normal(&rng) + (mem[i] == 1 ? 0.7 : 0.0);
    }
    /* Sample 5 is a member nowhere. */
    for (int j = 0; j < N; j++)
        if (mem[5 * N + j] == 1)
            mem[5 * N + j] = 0;

    /* Reference column statistics. */
    mg_atlas_colstat cols[N];
    double mean[N], sd[N], med[N];
    for (int j = 0; j < N; j++) {
        double sum = 0.0, ss = 0.0, non[M];
        int n = 0, nn = 0;
        for (int i = 0; i < M; i++)
            if (!isnan(s[i * N + j])) {
                sum += s[i * N + j];
                n++;
                if (mem[i * N + j] == 0)
                    non[nn++] = s[i * N + j];
            }
        mean[j] = sum / n;
        for (int i = 0; i < M; i++)
            if (!isnan(s[i * N + j]))
                ss += (s[i * N + j] - mean[j]) * (s[i * N + j] - mean[j]);
        sd[j] = sqrt(ss / n);
        qsort(non, (size_t)nn, sizeof *non, cmp_d);
        med[j] = nn % 2 ? non[nn / 2] : 0.5 * (non[nn / 2 - 1] + non[nn / 2]);

        double col[M];
        int8_t mc[M];
        for (int i = 0; i < M; i++) {
            col[i] = s[i * N + j];
            mc[i] = mem[i * N + j];
        }
        mg_error err;
        CHECK_OK(mg_atlas_column_stats(col, mc, M, &cols[j], &err), &err);
        CHECK_NEAR(cols[j].mean, mean[j], 1e-14);
        CHECK_NEAR(cols[j].std, sd[j], 1e-14);
        CHECK_NEAR(cols[j].median_nonmember, med[j], 0.0);
    }

    mg_atlas_dmat S;
    mg_error err;
    CHECK_OK(mg_atlas_dmat_init(&S, g, M, N, NB, &err), &err);
    int8_t *ml = calloc((size_t)S.lld * (size_t)S.nloc, 1);
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            S.a[i + j * S.lld] = s[i * N + j];
            ml[i + j * S.lld] = mem[i * N + j];
        }
    mg_atlas_sample_row rows[M];
    memset(rows, 0, sizeof rows);
    CHECK_OK(mg_atlas_sample_stats(g, &S, ml, cols, index, rows, &err), &err);
    int bad = 0;
    double worst = 0.0;
    for (int i = 0; i < M; i++) {
        int nsc = 0, nm = 0, ne = 0;
        double sz = 0.0, mz = -INFINITY;
        for (int j = 0; j < N; j++) {
            double v = s[i * N + j];
            if (isnan(v))
                continue;
            nsc++;
            if (mem[i * N + j] != 1)
                continue;
            double z = (v - mean[j]) / sd[j];
            nm++;
            sz += z;
            ne += v > med[j];
            mz = z > mz ? z : mz;
        }
        const mg_atlas_sample_row *r = &rows[i];
        bad += r->sample_index != index[i] || (int)r->n_scores != nsc || (int)r->n_members != nm;
        if (nm == 0) {
            bad += !isnan(r->mean_z) || !isnan(r->exposed_fraction) || !isnan(r->max_z);
        } else {
            worst = fmax(worst, fabs(r->mean_z - sz / nm));
            worst = fmax(worst, fabs(r->max_z - mz));
            bad += r->exposed_fraction != (double)ne / nm;
        }
        bad += nsc ? r->member_fraction != (double)nm / nsc : !isnan(r->member_fraction);
    }
    CHECK_INT_EQ(bad, 0);
    CHECK_NEAR(worst, 0.0, 1e-13);
    CHECK_INT_EQ(rows[5].n_members, 0);

    /* The ranking: against qsort of the member samples. */
    mg_atlas_sample_row top[10], ref[M];
    size_t n_top = 0, n_ref = 0;
    CHECK_OK(mg_atlas_top_exposed(g, rows, M, 10, top, &n_top, &err), &err);
    for (int i = 0; i < M; i++)
        if (rows[i].n_members)
            ref[n_ref++] = rows[i];
    qsort(ref, n_ref, sizeof *ref, mg_atlas_exposure_cmp);
    CHECK_INT_EQ(n_top, 10);
    for (size_t i = 0; i < n_top; i++)
        CHECK_INT_EQ(top[i].sample_index, ref[i].sample_index);
    for (size_t i = 1; i < n_top; i++)
        CHECK(top[i - 1].exposed_fraction >= top[i].exposed_fraction);
    mg_atlas_sample_row every[M];
    CHECK_OK(mg_atlas_top_exposed(g, rows, M, M, every, &n_top, &err), &err);
    CHECK_INT_EQ(n_top, n_ref);

    /* Standardised: z where a score exists, 0 where it does not. */
    mg_atlas_standardise(&S, g, cols);
    worst = 0.0;
    bad = 0;
    for (int i = 0; i < M; i++)
        for (int j = 0; j < N; j++) {
            double v = s[i * N + j], z = S.a[i + j * S.lld];
            if (isnan(v))
                bad += z != 0.0;
            else
                worst = fmax(worst, fabs(z - (v - mean[j]) / sd[j]));
        }
    CHECK_INT_EQ(bad, 0);
    CHECK_NEAR(worst, 0.0, 1e-14);
    mg_atlas_dmat_free(&S);
    free(ml);
}

static void test_exposure_order(void)
{
    mg_atlas_sample_row r[4];
    memset(r, 0, sizeof r);
    r[0] = (mg_atlas_sample_row){.sample_index = 9, .exposed_fraction = 0.5, .mean_z = 1.0};
    r[1] = (mg_atlas_sample_row){.sample_index = 3, .exposed_fraction = 0.75, .mean_z = -1.0};
    r[2] = (mg_atlas_sample_row){.sample_index = 4, .exposed_fraction = 0.5, .mean_z = 1.0};
    r[3] = (mg_atlas_sample_row){.sample_index = 1, .exposed_fraction = 0.5, .mean_z = 2.0};
    qsort(r, 4, sizeof *r, mg_atlas_exposure_cmp);
    CHECK(r[0].sample_index == 3 && r[1].sample_index == 1 && r[2].sample_index == 4 && r[3].sample_index == 9);
}

int main(int argc, char **argv)
{
    MPI_Init(&argc, &argv);
    test_column_stats();
    test_exposure_order();
    mg_atlas_grid g;
    mg_error err;
    CHECK_OK(mg_atlas_grid_init(&g, MPI_COMM_WORLD, &err), &err);
    test_sample_stats(&g);
    mg_atlas_grid_free(&g);
    MPI_Finalize();
    MG_TEST_MAIN_END();
}
