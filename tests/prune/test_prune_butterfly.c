/* test_prune_butterfly.c: butterfly supports against closed forms. The product of
 * all log2(n) standard factors is dense; of the first K it is
 * 1_{2^K} (x) I_{n/2^K}, of the last K the block diagonal I_{n/2^K} (x)
 * 1_{2^K}; the padded-and-cropped mask is the crop of the boolean product;
 * the mask counts match; Gonon et al.'s monotone chains reproduce their
 * Table 1 on ResNet-20; and the pruning method masks exactly the support. */
#include "mg_test.h"
#include "miagrid/prune.h"

#include <stdint.h>

static size_t count_ones(const unsigned char *s, size_t n)
{
    size_t c = 0;
    for (size_t i = 0; i < n; i++)
        c += s[i];
    return c;
}

/* Factors first..first+k-1 (1-based) of the standard butterfly of size n = 2^L. */
static void standard(int n, int first, int k, mg_bfly_factor *f)
{
    for (int i = 0; i < k; i++) {
        int l = first + i;
        f[i] = (mg_bfly_factor){1 << (l - 1), 2, 2, n >> l};
    }
}

static void test_square(void)
{
    mg_error err = {0};
    mg_bfly_factor f[8];
    static unsigned char s[64 * 64], mk[64 * 64];
    int rows, cols;
    for (int L = 1; L <= 6; L++) {
        int n = 1 << L;
        standard(n, 1, L, f);
        CHECK_OK(mg_butterfly_chain_support(f, L, s, &rows, &cols, &err), &err);
        CHECK(rows == n && cols == n);
        CHECK_INT_EQ(count_ones(s, (size_t)n * n), n * n);   /* dense */
        CHECK_INT_EQ(mg_butterfly_chain_params(f, L), 2 * n * L);
        for (int K = 1; K <= L; K++) {
            /* The first K factors: i = j mod n/2^K, n * 2^K entries. */
            standard(n, 1, K, f);
            CHECK_OK(mg_butterfly_chain_support(f, K, s, &rows, &cols, &err), &err);
            CHECK_INT_EQ(count_ones(s, (size_t)n * n), n << K);
            mg_butterfly_mask(n, n, K, mk);
            CHECK(memcmp(s, mk, (size_t)n * n) == 0);
            CHECK_INT_EQ(mg_butterfly_mask_count(n, n, K), n << K);
            /* The last K factors: the block diagonal of 2^K x 2^K blocks. */
            standard(n, L - K + 1, K, f);
            CHECK_OK(mg_butterfly_chain_support(f, K, s, &rows, &cols, &err), &err);
            int ok = 1;
            for (int i = 0; i < n; i++)
                for (int j = 0; j < n; j++)
                    ok &= s[i * n + j] == ((i >> K) == (j >> K));
            CHECK(ok);
        }
    }
    printf("  butterfly: n = 2^L with L factors is dense, K factors keep n 2^K\n");
    /* A chain with a_1 = 2 and d_L = 3: I_2 (x) 1_{4 x 6} (x) I_3. */
    mg_bfly_factor g[2] = {{2, 2, 3, 6}, {6, 2, 2, 3}};
    CHECK_OK(mg_butterfly_chain_support(g, 2, s, &rows, &cols, &err), &err);
    CHECK(rows == 24 && cols == 36);
    int ok = 1;
    for (int i = 0; i < rows; i++)
        for (int j = 0; j < cols; j++)
            ok &= s[i * cols + j] == (i / 12 == j / 18 && i % 3 == j % 3);
    CHECK(ok);
    /* Not chainable, or not positive. */
    mg_bfly_factor bad[2] = {{1, 2, 2, 2}, {1, 2, 2, 1}};
    CHECK_INT_EQ(mg_butterfly_chain_support(bad, 2, s, &rows, &cols, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    bad[0] = (mg_bfly_factor){1, 0, 2, 2};
    CHECK_INT_EQ(mg_butterfly_chain_support(bad, 1, s, &rows, &cols, &err), MG_ERR_ARG);
}

static void test_rectangular(void)
{
    mg_error err = {0};
    mg_bfly_factor f[8];
    static unsigned char full[64 * 64], mk[64 * 64];
    int rows, cols;
    /* The mask is the top-left crop of the product on the padded square. */
    const int sizes[4][2] = {{10, 24}, {24, 10}, {33, 5}, {16, 16}};
    for (int c = 0; c < 4; c++) {
        int R = sizes[c][0], C = sizes[c][1], n = 1, L = 0;
        while (n < (R > C ? R : C)) {
            n <<= 1;
            L++;
        }
        for (int K = 1; K <= L + 1; K++) {
            int k = K < L ? K : L;
            standard(n, 1, k, f);
            CHECK_OK(mg_butterfly_chain_support(f, k, full, &rows, &cols, &err), &err);
            mg_butterfly_mask(R, C, K, mk);
            int ok = 1;
            size_t ones = 0;
            for (int i = 0; i < R; i++)
                for (int j = 0; j < C; j++) {
                    ok &= mk[i * C + j] == full[i * n + j];
                    ones += mk[i * C + j];
                }
            CHECK(ok);
            CHECK_INT_EQ(mg_butterfly_mask_count(R, C, K), ones);
        }
    }
    /* Counts on sizes too big to spell out against a direct count. */
    const int big[3][2] = {{64, 576}, {120, 400}, {1, 7}};
    static unsigned char m2[120 * 576];
    for (int c = 0; c < 3; c++)
        for (int K = 1; K <= 11; K++) {
            mg_butterfly_mask(big[c][0], big[c][1], K, m2);
            CHECK_INT_EQ(mg_butterfly_mask_count(big[c][0], big[c][1], K),
                         count_ones(m2, (size_t)big[c][0] * (size_t)big[c][1]));
        }
    /* 64 x 576 in a 1024 square: K = 4 gives period 64, one entry per column. */
    CHECK_INT_EQ(mg_butterfly_mask_count(64, 576, 4), 576);
    CHECK_INT_EQ(mg_butterfly_mask_count(64, 576, 10), 64 * 576);
}

static void test_gonon_chains(void)
{
    mg_error err = {0};
    mg_bfly_factor f[4];
    CHECK_OK(mg_butterfly_chain_best(64, 576, 2, f, &err), &err);
    CHECK(f[0].a == 1 && f[0].b == 32 && f[0].c == 32 && f[0].d == 2);
    CHECK(f[1].a == 32 && f[1].b == 2 && f[1].c == 18 && f[1].d == 1);
    CHECK_INT_EQ(mg_butterfly_chain_params(f, 2), 3200);
    /* The chain's product is dense. */
    static unsigned char s[32 * 144];
    int rows, cols;
    CHECK_OK(mg_butterfly_chain_best(32, 144, 3, f, &err), &err);
    CHECK_OK(mg_butterfly_chain_support(f, 3, s, &rows, &cols, &err), &err);
    CHECK(rows == 32 && cols == 144);
    CHECK_INT_EQ(count_ones(s, 32 * 144), 32 * 144);
    /* Tall matrices are monotone the other way. */
    CHECK_OK(mg_butterfly_chain_best(576, 64, 2, f, &err), &err);
    CHECK(f[0].b >= f[0].c && f[1].b >= f[1].c);
    CHECK_INT_EQ(mg_butterfly_chain_best(7, 9, 2, f, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK_OK(mg_butterfly_chain_best(4, 8, 1, f, &err), &err);
    CHECK(f[0].a == 1 && f[0].b == 4 && f[0].c == 8 && f[0].d == 1);

    /* Gonon et al., Table 1: ResNet-20 with the 3x3 convolutions of the last
     * S segments replaced by L-factor butterflies. */
    mg_model_cfg cfg = {.arch = "resnet20", .act = MG_ACT_RELU, .in_c = 3, .in_h = 32, .in_w = 32, .n_classes = 10};
    mg_model *m = NULL;
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    if (!m)
        return;
    const double want[2][3] = {{32.3, 15.9, 11.8}, {29.6, 12.7, 8.5}};
    for (int L = 2; L <= 3; L++)
        for (int S = 1; S <= 3; S++) {
            size_t total = mg_model_n_params(m);
            for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
                const mg_tensor_info *ti = mg_model_tensor(m, t);
                int blk;
                char which;
                if (sscanf(ti->name, "L.%d.%c", &blk, &which) != 2 || which != 'c' || !ti->prunable ||
                    blk < 9 - 3 * S)
                    continue;
                int R = ti->shape[0], C = (int)(ti->count / (size_t)R);
                CHECK_OK(mg_butterfly_chain_best(R, C, L, f, &err), &err);
                total = total - ti->count + mg_butterfly_chain_params(f, L);
            }
            double pct = 100.0 * (double)total / (double)mg_model_n_params(m);
            printf("  butterfly ResNet-20 L=%d S=%d: %zu parameters, %.2f %% (Gonon et al.: %s)\n", L, S, total, pct,
                   L == 3 && S == 2 ? "12.9" : "same");
            CHECK_NEAR(pct, want[L - 2][S - 1], 0.05);
        }
    mg_model_destroy(&m);
}

static void test_method(void)
{
    mg_model_cfg cfg = {.arch = "lenet5", .act = MG_ACT_RELU, .in_c = 1, .in_h = 28, .in_w = 28, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, 1, "prune-bfly", "init");
    mg_model_init_params(m, &r);
    mg_prune_opts o = {.butterfly_factors = 2};
    static unsigned char sup[120 * 400];
    CHECK_OK(mg_prune_apply(m, "butterfly", 0.0, &o, NULL, &err), &err);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        int R = ti->shape[0], C = (int)(ti->count / (size_t)R);
        const float *mk = mg_model_masks(m) + ti->offset, *p = mg_model_params(m) + ti->offset;
        int last = strcmp(ti->name, "fc3.weight") == 0, ok = 1;
        mg_butterfly_mask(R, C, 2, sup);
        for (size_t i = 0; i < ti->count; i++)
            ok &= last ? mk[i] == 1.0f : (mk[i] != 0.0f) == (sup[i] != 0) && (mk[i] != 0.0f || p[i] == 0.0f);
        CHECK(ok);
        size_t kept = 0;
        for (size_t i = 0; i < ti->count; i++)
            kept += mk[i] != 0.0f;
        printf("  butterfly K=2 %-12s %3d x %3d keeps %zu\n", ti->name, R, C, kept);
        if (!last)
            CHECK_INT_EQ(kept, mg_butterfly_mask_count(R, C, 2));
    }
    CHECK_INT_EQ(mg_prune_apply(m, "butterfly", 0.5, &o, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    o.butterfly_factors = -1;
    CHECK_INT_EQ(mg_prune_apply(m, "butterfly", 0.0, &o, NULL, &err), MG_ERR_ARG);
    mg_model_destroy(&m);

    /* From the sparsity: the fewest factors keeping at least 10 % of each layer. */
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_model_init_params(m, &r);
    const char *convs[1] = {"conv"};
    o = (mg_prune_opts){.layers = convs, .n_layers = 1};
    CHECK_OK(mg_prune_apply(m, "butterfly", 0.9, &o, NULL, &err), &err);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        int R = ti->shape[0], C = (int)(ti->count / (size_t)R);
        size_t kept = 0;
        for (size_t i = 0; i < ti->count; i++)
            kept += mg_model_masks(m)[ti->offset + i] != 0.0f;
        if (strncmp(ti->name, "conv", 4) != 0) {
            CHECK_INT_EQ(kept, ti->count);
            continue;
        }
        int K = 1;
        while (mg_butterfly_mask_count(R, C, K) < kept)
            K++;
        printf("  butterfly s=0.9 %-12s K=%d keeps %.3f\n", ti->name, K, (double)kept / (double)ti->count);
        CHECK_INT_EQ(kept, mg_butterfly_mask_count(R, C, K));
        CHECK((double)kept >= 0.1 * (double)ti->count);
        CHECK(K == 1 || (double)mg_butterfly_mask_count(R, C, K - 1) < 0.1 * (double)ti->count);
    }
    mg_model_destroy(&m);
}

int main(void)
{
    test_square();
    test_rectangular();
    test_gonon_chains();
    test_method();
    MG_TEST_MAIN_END();
}
