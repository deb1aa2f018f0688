/*
 * test_wemem.c: WeMem's primitives: Feldman's subset estimator on matrices
 * with known answers and on simulated models, the memorisation-score CSV
 * reader on good and broken files it writes, the per-class ranking, the
 * sliding window over consecutive epochs, and RMR's batch weight.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/defense.h"
#include "mg_test.h"

/* ---- subset estimator ---------------------------------------------------------------------- */

static void test_subsets_known(void)
{
    /* 4 models, 5 samples. Sample 0: correct exactly when in -> 1. Sample
     * 1: always correct -> 0. Sample 2: in every subset -> undefined.
     * Sample 3: in none -> undefined. Sample 4: in for models 0,1 (correct
     * in one), out for 2,3 (correct in none) -> 0.5. */
    enum { M = 4, N = 5 };
    const uint8_t in[M * N] = {
        1, 1, 1, 0, 1,
        0, 0, 1, 0, 1,
        1, 1, 1, 0, 0,
        0, 0, 1, 0, 0,
    };
    const uint8_t ok[M * N] = {
        1, 1, 1, 1, 1,
        0, 1, 0, 0, 0,
        1, 1, 1, 1, 0,
        0, 1, 0, 0, 0,
    };
    double mem[N];
    size_t undef = 99;
    mg_error err = {0};
    CHECK_OK(mg_memscore_subsets(N, M, in, ok, mem, &undef, &err), &err);
    CHECK_NEAR(mem[0], 1.0, 0.0);
    CHECK_NEAR(mem[1], 0.0, 0.0);
    CHECK_NEAR(mem[2], 0.0, 0.0);
    CHECK_NEAR(mem[3], 0.0, 0.0);
    CHECK_NEAR(mem[4], 0.5, 0.0);
    CHECK_INT_EQ(undef, 2);

    /* Never correct when in, always when out: the other extreme, -1. */
    const uint8_t in2[2] = {1, 0}, ok2[2] = {0, 1};
    CHECK_OK(mg_memscore_subsets(1, 2, in2, ok2, mem, NULL, &err), &err);
    CHECK_NEAR(mem[0], -1.0, 0.0);

    /* Argument errors. */
    CHECK_INT_EQ(mg_memscore_subsets(N, 0, in, ok, mem, &undef, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "0 models") != NULL);
    CHECK_INT_EQ(mg_memscore_subsets(N, -3, in, ok, mem, NULL, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_memscore_subsets(N, M, NULL, ok, mem, NULL, &err), MG_ERR_ARG);
    CHECK_INT_EQ(mg_memscore_subsets(N, M, in, ok, NULL, NULL, &err), MG_ERR_ARG);
    CHECK_OK(mg_memscore_subsets(0, M, NULL, NULL, NULL, &undef, &err), &err);
    CHECK_INT_EQ(undef, 0);
}

static void test_subsets_statistical(void)
{
    /* 200 models on random halves; sample i is correct with probability
     * p_in[i] when in and p_out[i] when out. Each estimate must lie within
     * 4.5 standard errors of p_in - p_out, and the errors must not lean one
     * way (their mean z within 4.5 / sqrt(N) of 0). */
    enum { M = 200, N = 60 };
    uint8_t *in = malloc((size_t)M * N), *ok = malloc((size_t)M * N);
    double p_in[N], p_out[N], mem[N];
    CHECK(in && ok);
    if (!in || !ok) {
        free(in);
        free(ok);
        return;
    }
    mg_rng rng;
    mg_rng_seed(&rng, 20250224, "test_wemem", "probabilities");
    for (int i = 0; i < N; i++) {
        p_in[i] = 0.3 + 0.7 * mg_rng_uniform(&rng);
        p_out[i] = p_in[i] * mg_rng_uniform(&rng);
    }
    p_in[0] = 1.0;
    p_out[0] = 0.0; /* the fully memorised sample: exactly 1 */
    mg_rng_seed(&rng, 20250224, "test_wemem", "models");
    for (int m = 0; m < M; m++) {
        for (int i = 0; i < N; i++) {
            uint8_t is_in = mg_rng_uniform(&rng) < 0.5;
            in[(size_t)m * N + i] = is_in;
            ok[(size_t)m * N + i] = mg_rng_uniform(&rng) < (is_in ? p_in[i] : p_out[i]);
        }
    }
    size_t undef = 99;
    mg_error err = {0};
    CHECK_OK(mg_memscore_subsets(N, M, in, ok, mem, &undef, &err), &err);
    CHECK_INT_EQ(undef, 0);
    CHECK_NEAR(mem[0], 1.0, 0.0);
    double zsum = 0.0;
    int nz = 0;
    for (int i = 1; i < N; i++) {
        int n_in = 0;
        for (int m = 0; m < M; m++)
            n_in += in[(size_t)m * N + i];
        int n_out = M - n_in;
        double se = sqrt(p_in[i] * (1 - p_in[i]) / n_in + p_out[i] * (1 - p_out[i]) / n_out);
        double truth = p_in[i] - p_out[i];
        if (se < 1e-12) {
            CHECK_NEAR(mem[i], truth, 1e-12);
            continue;
        }
        double z = (mem[i] - truth) / se;
        if (!(fabs(z) < 4.5))
            fprintf(stderr, "sample %d: mem %.4f, p_in - p_out %.4f, z %.2f\n", i, mem[i], truth, z);
        CHECK(fabs(z) < 4.5);
        zsum += z;
        nz++;
    }
    CHECK(nz > 0 && fabs(zsum / nz) < 4.5 / sqrt((double)nz));
    free(in);
    free(ok);
}

/* ---- CSV reader ------------------------------------------------------------------------------ */

static void tmp_path(char *buf, size_t n, const char *name)
{
    const char *dir = getenv("MG_TEST_TMP");
    snprintf(buf, n, "%s/%s", dir && *dir ? dir : "/tmp", name);
}

static int write_text(const char *name, const char *text, char *path, size_t n)
{
    tmp_path(path, n, name);
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t len = strlen(text);
    size_t w = fwrite(text, 1, len, f);
    return fclose(f) == 0 && w == len ? 0 : -1;
}

static void test_csv_good(void)
{
    char path[512];
    const uint32_t want_idx[4] = {7, 0, 3, 7};
    double mem[4];
    mg_error err = {0};

    /* A header, rows out of order, an index not asked for. */
    CHECK(write_text("twemem_header.csv", "index,score\n0,0.25\n7,-0.5\n3,1\n5,0.125\n", path, sizeof path) == 0);
    CHECK_OK(mg_memscore_read_csv(path, want_idx, 4, mem, &err), &err);
    CHECK_NEAR(mem[0], -0.5, 0.0);
    CHECK_NEAR(mem[1], 0.25, 0.0);
    CHECK_NEAR(mem[2], 1.0, 0.0);
    CHECK_NEAR(mem[3], -0.5, 0.0);

    /* No header, CRLF, blanks around fields, blank lines, exponents, no
     * final newline. */
    CHECK(write_text("twemem_plain.csv", "\n 3 ,\t1e-1\r\n\r\n0,  2.5E0 \r\n7 ,-0\n  \n1,0.5", path, sizeof path) == 0);
    const uint32_t idx2[3] = {0, 1, 3};
    CHECK_OK(mg_memscore_read_csv(path, idx2, 3, mem, &err), &err);
    CHECK_NEAR(mem[0], 2.5, 0.0);
    CHECK_NEAR(mem[1], 0.5, 0.0);
    CHECK_NEAR(mem[2], 0.1, 0.0);

    /* A header of other names, its first one empty (as pandas writes an
     * unnamed index column), after a UTF-8 byte-order mark. */
    CHECK(write_text("twemem_bom.csv", "\xEF\xBB\xBF  , mem\n2,0.75\n", path, sizeof path) == 0);
    const uint32_t idx3[1] = {2};
    CHECK_OK(mg_memscore_read_csv(path, idx3, 1, mem, &err), &err);
    CHECK_NEAR(mem[0], 0.75, 0.0);
}

static void expect_csv_fail(const char *name, const char *text, const uint32_t *idx, size_t n,
                            mg_status want_status, const char *want_text)
{
    char path[512];
    double mem[8];
    CHECK(write_text(name, text, path, sizeof path) == 0);
    mg_error err = {0};
    mg_status st = mg_memscore_read_csv(path, idx, n, mem, &err);
    CHECK_INT_EQ(st, want_status);
    char want[1024];
    snprintf(want, sizeof want, "%s%s", path, want_text);
    if (!strstr(err.msg, want))
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err.msg, want);
    CHECK(strstr(err.msg, want) != NULL);
}

static void test_csv_errors(void)
{
    const uint32_t idx[2] = {0, 1};
    expect_csv_fail("twemem_extra.csv", "index,score\n0,0.5\n1,0.5,9\n", idx, 2, MG_ERR_CONFIG,
                    ":3: 3 fields; expected 2 (index,score)");
    expect_csv_fail("twemem_one.csv", "0,0.5\n1\n", idx, 2, MG_ERR_CONFIG, ":2: 1 field; expected 2");
    expect_csv_fail("twemem_text.csv", "0,0.5\nx,0.5\n", idx, 2, MG_ERR_CONFIG,
                    ":2: index \"x\" is not an integer");
    expect_csv_fail("twemem_neg.csv", "0,0.5\n-1,0.5\n", idx, 2, MG_ERR_CONFIG,
                    ":2: index \"-1\" is not an integer");
    expect_csv_fail("twemem_frac.csv", "0,0.5\n1.5,0.5\n", idx, 2, MG_ERR_CONFIG,
                    ":2: index \"1.5\" is not an integer");
    expect_csv_fail("twemem_big.csv", "0,0.5\n4294967296,0.5\n", idx, 2, MG_ERR_CONFIG,
                    ":2: index \"4294967296\" is not an integer");
    expect_csv_fail("twemem_score.csv", "0,0.5\n1,abc\n", idx, 2, MG_ERR_CONFIG,
                    ":2: score \"abc\" is not a number");
    expect_csv_fail("twemem_empty_score.csv", "0,0.5\n1, \n", idx, 2, MG_ERR_CONFIG,
                    ":2: score \"\" is not a number");
    expect_csv_fail("twemem_nan.csv", "index,score\n0,nan\n1,0\n", idx, 2, MG_ERR_CONFIG,
                    ":2: score \"nan\" is not finite");
    expect_csv_fail("twemem_inf.csv", "0,0\n1,-inf\n", idx, 2, MG_ERR_CONFIG, ":2: score \"-inf\" is not finite");
    expect_csv_fail("twemem_huge.csv", "0,0\n1,1e999\n", idx, 2, MG_ERR_CONFIG, ":2: score \"1e999\" is not finite");
    expect_csv_fail("twemem_dup.csv", "index,score\n1,0.5\n0,0.5\n\n1,0.25\n", idx, 2, MG_ERR_CONFIG,
                    ":5: index 1 repeats line 2");
    expect_csv_fail("twemem_missing.csv", "index,score\n0,0.5\n2,0.5\n", idx, 2, MG_ERR_CONFIG,
                    ": sample index 1 has no row");
    expect_csv_fail("twemem_norows.csv", "index,score\n\n", idx, 2, MG_ERR_CONFIG, ": no index,score rows");
    /* Only the first line may be a header. */
    expect_csv_fail("twemem_header2.csv", "index,score\nindex,score\n0,1\n", idx, 2, MG_ERR_CONFIG,
                    ":2: index \"index\" is not an integer");
    char longline[6000];
    memset(longline, ' ', sizeof longline);
    memcpy(longline, "0,0.5\n1,", 8);
    memcpy(longline + sizeof longline - 3, "1\n", 3);
    expect_csv_fail("twemem_long.csv", longline, idx, 2, MG_ERR_CONFIG, ":2: line longer than 4096 bytes");

    char missing[512];
    tmp_path(missing, sizeof missing, "twemem_does_not_exist.csv");
    remove(missing);
    double mem[2];
    mg_error err = {0};
    CHECK_INT_EQ(mg_memscore_read_csv(missing, idx, 2, mem, &err), MG_ERR_IO);
    char want[600];
    snprintf(want, sizeof want, "%s: cannot open for reading: No such file or directory", missing);
    CHECK_STR_EQ(err.msg, want);
}

/* ---- RSW ranking and window ------------------------------------------------------------------- */

static void test_rank(void)
{
    /* 9 rows in classes 0, 1 and 3 of K = 4 (class 2 is empty), with
     * ties in scores. */
    enum { N = 9, K = 4 };
    const int32_t y[N] = {1, 0, 1, 3, 0, 1, 0, 1, 3};
    const double mem[N] = {0.5, 0.1, 0.9, 0.0, 0.7, 0.5, 0.1, -0.2, 0.0};
    uint32_t ranked[N];
    size_t cs[K + 1];
    mg_error err = {0};

    CHECK_OK(mg_rsw_rank(y, mem, N, K, 1, ranked, cs, &err), &err);
    const size_t want_cs[K + 1] = {0, 3, 7, 7, 9};
    for (int k = 0; k <= K; k++)
        CHECK_INT_EQ(cs[k], want_cs[k]);
    /* Descending: class 0 rows 4 (0.7), 1 and 6 (0.1 tie, lower row first);
     * class 1 rows 2 (0.9), 0 and 5 (0.5 tie), 7; class 3 rows 3, 8 (tie). */
    const uint32_t want_desc[N] = {4, 1, 6, 2, 0, 5, 7, 3, 8};
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(ranked[i], want_desc[i]);

    CHECK_OK(mg_rsw_rank(y, mem, N, K, 0, ranked, cs, &err), &err);
    for (int k = 0; k <= K; k++)
        CHECK_INT_EQ(cs[k], want_cs[k]);
    /* Ascending: ties still by row. */
    const uint32_t want_asc[N] = {1, 6, 4, 7, 0, 5, 2, 3, 8};
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(ranked[i], want_asc[i]);

    /* Labels out of range and bad arguments. */
    const int32_t ybad[3] = {0, 4, 1};
    CHECK_INT_EQ(mg_rsw_rank(ybad, mem, 3, K, 1, ranked, cs, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "row 1 has label 4, outside 0..3") != NULL);
    const int32_t yneg[2] = {0, -1};
    CHECK_INT_EQ(mg_rsw_rank(yneg, mem, 2, K, 0, ranked, cs, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "row 1 has label -1") != NULL);
    CHECK_INT_EQ(mg_rsw_rank(y, mem, N, 0, 1, ranked, cs, &err), MG_ERR_ARG);
    const double memnan[2] = {0.0, NAN};
    CHECK_INT_EQ(mg_rsw_rank(y, memnan, 2, K, 1, ranked, cs, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "row 1 has a NaN") != NULL);

    /* No rows: every class empty. */
    CHECK_OK(mg_rsw_rank(NULL, NULL, 0, K, 1, NULL, cs, &err), &err);
    for (int k = 0; k <= K; k++)
        CHECK_INT_EQ(cs[k], 0);
}

static size_t min_sz(size_t a, size_t b)
{
    return a < b ? a : b;
}

static void test_window(void)
{
    /* Classes of 23, 10, 3 and 0 rows; ranked rows are their own positions
     * so a window's content is easy to predict. */
    enum { K = 4, N = 36 };
    const size_t cs[K + 1] = {0, 23, 33, 36, 36};
    uint32_t ranked[N], out[N];
    for (uint32_t i = 0; i < N; i++)
        ranked[i] = 1000 + i;

    const int width = 5, step = 4;
    int seen[N] = {0};
    int epochs_to_cover[K] = {0};
    for (int e = 0; e < 10; e++) {
        size_t got = mg_rsw_window(ranked, cs, K, width, step, e, out);
        size_t start = (size_t)e * step, want_total = 0, pos = 0;
        for (int k = 0; k < K; k++) {
            size_t size = cs[k + 1] - cs[k];
            size_t take = start < size ? min_sz((size_t)width, size - start) : 0;
            /* The window of class k: its ranks start .. start + take - 1, in
             * rank order, after the classes before it. */
            for (size_t j = 0; j < take && pos + j < got; j++)
                CHECK_INT_EQ(out[pos + j], ranked[cs[k] + start + j]);
            for (size_t j = 0; j < take; j++)
                seen[cs[k] + start + j] = 1;
            pos += take;
            want_total += take;
            int all = 1;
            for (size_t r = cs[k]; r < cs[k + 1]; r++)
                all &= seen[r];
            if (all && epochs_to_cover[k] == 0)
                epochs_to_cover[k] = e + 1;
        }
        CHECK_INT_EQ(got, want_total);
    }
    /* Width >= step: every row is used, class k within ceil(size / step)
     * epochs (23 rows -> 6, 10 -> 3, 3 -> 1). */
    CHECK_INT_EQ(epochs_to_cover[0], 6);
    CHECK_INT_EQ(epochs_to_cover[1], 3);
    CHECK_INT_EQ(epochs_to_cover[2], 1);

    /* Epoch 0: min(width, size) of every class; class 2 (3 < width rows)
     * gives all of its rows. */
    size_t got = mg_rsw_window(ranked, cs, K, width, step, 0, out);
    CHECK_INT_EQ(got, min_sz(5, 23) + min_sz(5, 10) + min_sz(5, 3));
    CHECK_INT_EQ(out[10], 1033);
    CHECK_INT_EQ(out[12], 1035);
    /* Epoch 2 (start 8): class 0 ranks 8..12, class 1 ranks 8..9 (cut at
     * its end, no wrap), class 2 nothing. */
    got = mg_rsw_window(ranked, cs, K, width, step, 2, out);
    CHECK_INT_EQ(got, 7);
    CHECK_INT_EQ(out[0], 1008);
    CHECK_INT_EQ(out[4], 1012);
    CHECK_INT_EQ(out[5], 1031);
    CHECK_INT_EQ(out[6], 1032);
    /* Epoch 6 (start 24): past every class. */
    CHECK_INT_EQ(mg_rsw_window(ranked, cs, K, width, step, 6, out), 0);
    /* A width larger than every class gives every row at epoch 0. */
    CHECK_INT_EQ(mg_rsw_window(ranked, cs, K, 100, 1, 0, out), N);
    /* Step 0: the same window every epoch. */
    CHECK_INT_EQ(mg_rsw_window(ranked, cs, K, 2, 0, 7, out), 6);
    CHECK_INT_EQ(out[2], 1023);
    /* Invalid arguments give no rows. */
    CHECK_INT_EQ(mg_rsw_window(ranked, cs, K, 0, 1, 0, out), 0);
    CHECK_INT_EQ(mg_rsw_window(ranked, cs, K, 5, -1, 0, out), 0);
    CHECK_INT_EQ(mg_rsw_window(ranked, cs, K, 5, 1, -1, out), 0);

    /* With the ranking of test_rank: descending windows take the highest
     * scores first. */
    const int32_t y[6] = {0, 1, 0, 1, 0, 1};
    const double mem[6] = {0.1, 0.2, 0.9, 0.8, 0.5, 0.4};
    uint32_t r6[6], o6[6];
    size_t cs2[3];
    mg_error err = {0};
    CHECK_OK(mg_rsw_rank(y, mem, 6, 2, 1, r6, cs2, &err), &err);
    CHECK_INT_EQ(mg_rsw_window(r6, cs2, 2, 1, 1, 0, o6), 2);
    CHECK_INT_EQ(o6[0], 2);
    CHECK_INT_EQ(o6[1], 3);
    CHECK_INT_EQ(mg_rsw_window(r6, cs2, 2, 1, 1, 2, o6), 2);
    CHECK_INT_EQ(o6[0], 0);
    CHECK_INT_EQ(o6[1], 1);
}

/* ---- RMR ----------------------------------------------------------------------------------- */

static void test_rmr(void)
{
    const double hi[3] = {0.7, 0.9, 1.0}, lo[3] = {0.1, -0.2, 0.59};
    const double lr = 0.1, lg = 0.0005, tau = 0.6;
    CHECK(mg_rmr_weight(hi, 3, tau, lr, lg) == lr);
    CHECK(mg_rmr_weight(lo, 3, tau, lr, lg) == lg);
    /* Mixed: 2 of 5 risky (0.6 counts: the boundary is inclusive). */
    const double mixed[5] = {0.6, 0.1, 0.95, 0.5999999, -1.0};
    CHECK_NEAR(mg_rmr_weight(mixed, 5, tau, lr, lg), (2 * lr + 3 * lg) / 5, 1e-15);
    const double at[1] = {0.6};
    CHECK(mg_rmr_weight(at, 1, tau, lr, lg) == lr);
    CHECK(mg_rmr_weight(hi, 0, tau, lr, lg) == 0.0);
}

int main(void)
{
    test_subsets_known();
    test_subsets_statistical();
    test_csv_good();
    test_csv_errors();
    test_rank();
    test_window();
    test_rmr();
    MG_TEST_MAIN_END();
}
