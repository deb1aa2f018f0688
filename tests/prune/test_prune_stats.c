/* test_prune_stats.c: statistics of a pruned model: per-tensor and total counts,
 * the compression ratio, and multiply-accumulates by the documented rule,
 * checked against hand counts on an MLP, LeNet-5 (a removed filter takes
 * its own MACs and the next layer's on its channel, through a flatten too)
 * and a depthwise convolution. */
#include "mg_test.h"
#include "miagrid/prune.h"

#include <stdint.h>

static mg_model *make(const char *arch, int c, int h, int w, const int *hidden, int n_hidden)
{
    mg_model_cfg cfg = {.arch = arch, .hidden = hidden, .n_hidden = n_hidden, .act = MG_ACT_RELU,
                        .in_c = c, .in_h = h, .in_w = w, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, 1, "prune-stats", "init");
    if (m)
        mg_model_init_params(m, &r);
    return m;
}

static long find(const mg_model *m, const char *name)
{
    for (size_t t = 0; t < mg_model_n_tensors(m); t++)
        if (strcmp(mg_model_tensor(m, t)->name, name) == 0)
            return (long)t;
    return -1;
}

static void mask_row(mg_model *m, const char *name, size_t row)
{
    const mg_tensor_info *ti = mg_model_tensor(m, (size_t)find(m, name));
    size_t per = ti->count / (size_t)ti->shape[0];
    for (size_t i = 0; i < per; i++) {
        mg_model_masks(m)[ti->offset + row * per + i] = 0.0f;
        mg_model_params(m)[ti->offset + row * per + i] = 0.0f;
    }
}

static void test_mlp(void)
{
    int hidden[2] = {20, 12};
    mg_model *m = make("mlp", 1, 4, 4, hidden, 2);
    mg_error err = {0};
    mg_prune_geom geom[6];
    CHECK_OK(mg_prune_geom_chain(m, geom, &err), &err);
    CHECK(geom[0].positions == 1 && geom[0].producer == -1 && geom[2].producer == 0 && geom[4].producer == 2);
    CHECK(geom[1].positions == 0);
    mg_prune_stats_t s;
    CHECK_OK(mg_prune_stats(m, geom, &s, &err), &err);
    CHECK_INT_EQ(s.n, 3);
    CHECK_INT_EQ(s.total, 16 * 20 + 20 * 12 + 12 * 10);
    CHECK_INT_EQ(s.total_kept, s.total);
    CHECK_INT_EQ(s.total_nonzero, s.total);
    CHECK_NEAR(s.compression, 1.0, 0.0);
    CHECK_INT_EQ(s.macs_dense_total, s.total);
    CHECK_INT_EQ(s.macs_total, s.total);
    CHECK_NEAR(s.macs_saved, 0.0, 0.0);
    CHECK_INT_EQ(s.n_params, mg_model_n_params(m));
    CHECK_INT_EQ(s.n_params_masked, 0);
    mg_prune_stats_free(&s);

    /* Half of fc1's neurons: fc1 loses their rows, fc2 their columns. */
    CHECK_OK(mg_prune_apply(m, "l2-structured", 0.5, NULL, NULL, &err), &err);
    CHECK_OK(mg_prune_stats(m, geom, &s, &err), &err);
    /* l2-structured also took half of fc2's rows (6 of 12); fc3 reads 6 live neurons. */
    CHECK_INT_EQ(s.kept[0], 10 * 16);
    CHECK_INT_EQ(s.macs[0], 10 * 16);
    CHECK_INT_EQ(s.kept[1], 6 * 20);
    CHECK_INT_EQ(s.macs[1], 6 * 10);
    CHECK_INT_EQ(s.kept[2], 120);
    CHECK_INT_EQ(s.macs[2], 10 * 6);
    CHECK_INT_EQ(s.macs_total, 160 + 60 + 60);
    CHECK_NEAR(s.compression, 680.0 / 400.0, 1e-12);
    CHECK_NEAR(s.macs_saved, 1.0 - 280.0 / 680.0, 1e-12);
    printf("  mlp l2-structured 0.5: %zu of %zu weights, compression %.3f, MACs saved %.3f\n", s.total_nonzero,
           s.total, s.compression, s.macs_saved);
    mg_prune_stats_free(&s);
    /* Without a geometry: counts only. */
    CHECK_OK(mg_prune_stats(m, NULL, &s, &err), &err);
    CHECK(!s.has_macs && s.macs_total == 0 && isnan(s.macs_saved));
    CHECK_INT_EQ(s.total_nonzero, 400);
    mg_prune_stats_free(&s);
    mg_model_destroy(&m);

    m = make("lenet5", 1, 28, 28, NULL, 0);
    mg_prune_geom g[10];
    CHECK_INT_EQ(mg_prune_geom_chain(m, g, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    mg_model_destroy(&m);
}

static void test_lenet(void)
{
    mg_model *m = make("lenet5", 1, 28, 28, NULL, 0);
    mg_error err = {0};
    size_t nt = mg_model_n_tensors(m);
    mg_prune_geom geom[16];
    for (size_t t = 0; t < nt; t++)
        geom[t] = (mg_prune_geom){0, -1};
    long c1 = find(m, "conv1.weight"), c2 = find(m, "conv2.weight"), f1 = find(m, "fc1.weight"),
         f2 = find(m, "fc2.weight"), f3 = find(m, "fc3.weight");
    geom[c1] = (mg_prune_geom){28 * 28, -1};
    geom[c2] = (mg_prune_geom){10 * 10, c1};
    geom[f1] = (mg_prune_geom){1, c2};
    geom[f2] = (mg_prune_geom){1, f1};
    geom[f3] = (mg_prune_geom){1, f2};
    mg_prune_stats_t s;
    CHECK_OK(mg_prune_stats(m, geom, &s, &err), &err);
    CHECK_INT_EQ(s.macs_dense_total, 416520);   /* LeNet-5's well-known 0.42 M MACs */
    mg_prune_stats_free(&s);
    /* conv1 filter 0: its 784 * 25 MACs and conv2's 100 * 16 * 25 on channel 0. */
    mask_row(m, "conv1.weight", 0);
    CHECK_OK(mg_prune_stats(m, geom, &s, &err), &err);
    CHECK_INT_EQ(s.macs[0], 98000);
    CHECK_INT_EQ(s.macs[1], 200000);
    CHECK_INT_EQ(s.macs_total, 356920);
    mg_prune_stats_free(&s);
    /* conv2 filter 3: 100 * 5 * 25 (channel 0 already gone) and fc1's 120 * 25 on its flattened inputs. */
    mask_row(m, "conv2.weight", 3);
    CHECK_OK(mg_prune_stats(m, geom, &s, &err), &err);
    CHECK_INT_EQ(s.macs[1], 187500);
    CHECK_INT_EQ(s.macs[2], 45000);
    CHECK_INT_EQ(s.macs_total, 341420);
    CHECK_INT_EQ(s.kept[1], 2400 - 150);
    CHECK_INT_EQ(s.nonzero[1], 2400 - 150);
    mg_prune_stats_free(&s);
    /* Unstructured: each masked weight takes positions MACs. */
    mg_model_masks(m)[mg_model_tensor(m, (size_t)c1)->offset + 30] = 0.0f;
    mg_model_params(m)[mg_model_tensor(m, (size_t)c1)->offset + 30] = 0.0f;
    CHECK_OK(mg_prune_stats(m, geom, &s, &err), &err);
    CHECK_INT_EQ(s.macs[0], 98000 - 784);
    mg_prune_stats_free(&s);

    /* l1-unstructured at 0.9: compression about 10 (Wang et al.'s Table 4 measure). */
    CHECK_OK(mg_prune_apply(m, "l1-unstructured", 0.9, NULL, NULL, &err), &err);
    CHECK_OK(mg_prune_stats(m, geom, &s, &err), &err);
    printf("  lenet5 l1 0.9: %zu of %zu weights, compression %.2f, %llu of %llu MACs\n", s.total_nonzero, s.total,
           s.compression, (unsigned long long)s.macs_total, (unsigned long long)s.macs_dense_total);
    CHECK_INT_EQ(s.total, 61470);
    CHECK_NEAR(s.compression, 61470.0 / (double)s.total_nonzero, 1e-12);
    CHECK(s.compression > 9.9 && s.compression < 10.1);
    CHECK_INT_EQ(s.n_params_masked, s.total - s.total_kept);
    mg_prune_stats_free(&s);

    /* Bad geometries. */
    geom[f1].producer = f1 + 1;   /* fc1.bias: not prunable */
    CHECK_INT_EQ(mg_prune_stats(m, geom, &s, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    mg_prune_stats_free(&s);
    geom[f1].producer = c1;       /* 400 inputs are not a multiple of 6 channels */
    CHECK_INT_EQ(mg_prune_stats(m, geom, &s, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    mg_prune_stats_free(&s);
    mg_model_destroy(&m);
}

static void test_depthwise(void)
{
    mg_model *m = make("mobilenetv2", 3, 32, 32, NULL, 0);
    mg_error err = {0};
    size_t nt = mg_model_n_tensors(m);
    mg_prune_geom *geom = malloc(nt * sizeof *geom);
    for (size_t t = 0; t < nt; t++)
        geom[t] = (mg_prune_geom){0, -1};
    long a = find(m, "layers.0.conv1.weight"), b = find(m, "layers.0.conv2.weight");
    CHECK(mg_model_tensor(m, (size_t)b)->shape[0] == 32 && mg_model_tensor(m, (size_t)b)->shape[1] == 1);
    geom[a] = (mg_prune_geom){32 * 32, -1};
    geom[b] = (mg_prune_geom){32 * 32, a};
    /* Expand filter 5 gone: depthwise filter 5 reads nothing. */
    mask_row(m, "layers.0.conv1.weight", 5);
    mg_prune_stats_t s;
    CHECK_OK(mg_prune_stats(m, geom, &s, &err), &err);
    size_t ia = 0, ib = 0;
    for (size_t j = 0; j < s.n; j++) {
        if (s.tensor[j] == (size_t)a)
            ia = j;
        if (s.tensor[j] == (size_t)b)
            ib = j;
    }
    CHECK_INT_EQ(s.macs_dense[ib], 1024 * 32 * 9);
    CHECK_INT_EQ(s.macs[ib], 1024 * 31 * 9);
    CHECK_INT_EQ(s.macs[ia], 1024 * 31 * 32);
    CHECK_INT_EQ(s.macs_dense_total, 1024 * (32 * 9 + 32 * 32));
    mg_prune_stats_free(&s);
    free(geom);
    mg_model_destroy(&m);
}

int main(void)
{
    test_mlp();
    test_lenet();
    test_depthwise();
    MG_TEST_MAIN_END();
}
