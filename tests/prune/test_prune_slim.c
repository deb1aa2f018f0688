/* test_prune_slim.c: network slimming. Which layer feeds each batch norm, read off
 * the tensor table of every architecture with batch norms; the global |gamma|
 * ranking with exact counts, one channel kept per batch norm, gamma, beta and
 * the feeding filter masked; a pruned channel contributes nothing to the
 * output; the L1 penalty on gamma; refusals. */
#include "mg_test.h"
#include "miagrid/prune.h"

#include <stdint.h>

static mg_model *make(const char *arch, uint64_t seed)
{
    mg_model_cfg cfg = {.arch = arch, .act = MG_ACT_RELU, .in_c = 3, .in_h = 32, .in_w = 32, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, seed, "prune-slim", "init");
    if (m && seed)
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

/* The name of the source of batch norm `bn` ("-" for none); counts the batch norms. */
static const char *source_of(const mg_model *m, const char *bn)
{
    long t = find(m, bn);
    CHECK(t >= 0);
    long s = t >= 0 ? mg_prune_bn_source(m, (size_t)t) : -1;
    return s >= 0 ? mg_model_tensor(m, (size_t)s)->name : "-";
}

static void count_sources(const mg_model *m, int *with, int *without)
{
    *with = *without = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        size_t n = strlen(ti->name);
        if (ti->buffer || ti->prunable || n < 7 || strcmp(ti->name + n - 7, ".weight") != 0)
            continue;
        char rm[80];
        snprintf(rm, sizeof rm, "%.*s.running_mean", (int)(n - 7), ti->name);
        if (find(m, rm) < 0)
            continue;
        if (mg_prune_bn_source(m, t) >= 0)
            (*with)++;
        else
            (*without)++;
    }
}

static void test_sources(void)
{
    int with, without;
    mg_model *m = make("resnet20", 0);
    CHECK_STR_EQ(source_of(m, "b.weight"), "c.weight");
    CHECK_STR_EQ(source_of(m, "L.0.b1.weight"), "L.0.c1.weight");
    CHECK_STR_EQ(source_of(m, "L.3.b2.weight"), "L.3.c2.weight");
    CHECK_STR_EQ(source_of(m, "L.3.sh.1.weight"), "L.3.sh.0.weight");
    /* Not batch norms. */
    CHECK_INT_EQ(mg_prune_bn_source(m, (size_t)find(m, "L.0.c1.weight")), -1);
    CHECK_INT_EQ(mg_prune_bn_source(m, (size_t)find(m, "L.0.b1.bias")), -1);
    CHECK_INT_EQ(mg_prune_bn_source(m, (size_t)find(m, "fc.weight")), -1);
    count_sources(m, &with, &without);
    CHECK_INT_EQ(with, 21);
    CHECK_INT_EQ(without, 0);
    mg_model_destroy(&m);

    /* VGG: a conv with bias between, sibling indices of one Sequential. */
    m = make("vgg16_bn", 0);
    CHECK_STR_EQ(source_of(m, "features.1.weight"), "features.0.weight");
    CHECK_STR_EQ(source_of(m, "features.41.weight"), "features.40.weight");
    count_sources(m, &with, &without);
    CHECK_INT_EQ(with, 13);
    CHECK_INT_EQ(without, 0);
    mg_model_destroy(&m);

    /* Pre-activation blocks: a batch norm after an addition has no source even
     * when a conv of the right width precedes it in the table. */
    m = make("wrn28_2", 0);
    CHECK_STR_EQ(source_of(m, "group1.0.bn1.weight"), "-");
    CHECK_STR_EQ(source_of(m, "group1.0.bn2.weight"), "group1.0.conv1.weight");
    CHECK_STR_EQ(source_of(m, "group1.1.bn1.weight"), "-");
    CHECK_STR_EQ(source_of(m, "group2.0.bn1.weight"), "-");
    CHECK_STR_EQ(source_of(m, "bn.weight"), "-");
    count_sources(m, &with, &without);
    CHECK_INT_EQ(with, 12);
    CHECK_INT_EQ(without, 13);
    mg_model_destroy(&m);

    m = make("densenet121", 0);
    CHECK_STR_EQ(source_of(m, "dense1.0.bn1.weight"), "-");   /* the stem's output is also concatenated */
    CHECK_STR_EQ(source_of(m, "dense1.0.bn2.weight"), "dense1.0.conv1.weight");
    CHECK_STR_EQ(source_of(m, "dense2.0.bn1.weight"), "-");   /* after trans1.conv and a concat */
    CHECK_STR_EQ(source_of(m, "trans1.bn.weight"), "-");
    count_sources(m, &with, &without);
    CHECK_INT_EQ(with, 58);
    CHECK_INT_EQ(without, 62);
    mg_model_destroy(&m);

    m = make("mobilenetv2", 0);
    CHECK_STR_EQ(source_of(m, "layers.0.bn2.weight"), "layers.0.conv2.weight");   /* depthwise */
    CHECK_STR_EQ(source_of(m, "bn2.weight"), "conv2.weight");
    count_sources(m, &with, &without);
    CHECK(with > 50);
    CHECK_INT_EQ(without, 0);
    mg_model_destroy(&m);
}

/* Random gammas (some negative) so the ranking means something. */
static void random_gammas(mg_model *m, uint64_t seed)
{
    mg_rng r;
    mg_rng_seed(&r, seed, "prune-slim", "gamma");
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        size_t n = strlen(ti->name);
        long rm = -1;
        if (!ti->buffer && !ti->prunable && n > 7 && strcmp(ti->name + n - 7, ".weight") == 0) {
            char buf[80];
            snprintf(buf, sizeof buf, "%.*s.running_mean", (int)(n - 7), ti->name);
            rm = find(m, buf);
        }
        if (rm < 0)
            continue;
        for (size_t i = 0; i < ti->count; i++)
            mg_model_params(m)[ti->offset + i] = (float)(mg_rng_uniform(&r) * 2.0 - 1.0);
        /* Betas too, so that a zero beta shows the pruning. */
        long beta = t + 1;
        for (size_t i = 0; i < ti->count; i++)
            mg_model_params(m)[mg_model_tensor(m, (size_t)beta)->offset + i] = 0.5f;
    }
}

static void test_slim(void)
{
    mg_model *m = make("resnet20", 3);
    random_gammas(m, 4);
    /* Starve L.4.b1 (32 channels) so the global threshold would take it all. */
    const mg_tensor_info *starved = mg_model_tensor(m, (size_t)find(m, "L.4.b1.weight"));
    for (size_t i = 0; i < starved->count; i++)
        mg_model_params(m)[starved->offset + i] = 1e-4f * (float)(i + 1);
    size_t np = mg_model_n_params(m);
    float *before = malloc(np * sizeof(float));
    memcpy(before, mg_model_params(m), np * sizeof(float));

    mg_error err = {0};
    CHECK_OK(mg_prune_apply(m, "slim", 0.5, NULL, NULL, &err), &err);
    int total = 0, pruned = 0, bn_count = 0, whole = 1, untouched = 1;
    double max_pruned = 0.0, min_kept = INFINITY;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        long src = mg_prune_bn_source(m, t);
        if (src < 0)
            continue;
        bn_count++;
        const mg_tensor_info *g = mg_model_tensor(m, t), *b = mg_model_tensor(m, t + 1),
                             *w = mg_model_tensor(m, (size_t)src);
        size_t per = w->count / g->count;
        int live = 0;
        for (size_t c = 0; c < g->count; c++) {
            total++;
            const float *mk = mg_model_masks(m), *p = mg_model_params(m);
            int gone = mk[g->offset + c] == 0.0f;
            int row_masked = 1, row_kept = 1;
            for (size_t i = 0; i < per; i++) {
                size_t at = w->offset + c * per + i;
                row_masked &= mk[at] == 0.0f && p[at] == 0.0f;
                row_kept &= mk[at] == 1.0f && p[at] == before[at];
            }
            if (gone) {
                pruned++;
                whole &= mk[b->offset + c] == 0.0f && p[g->offset + c] == 0.0f && p[b->offset + c] == 0.0f &&
                         row_masked;
                if (g != starved)
                    max_pruned = fmax(max_pruned, fabs(before[g->offset + c]));
            } else {
                live++;
                untouched &= mk[b->offset + c] == 1.0f && p[g->offset + c] == before[g->offset + c] &&
                             p[b->offset + c] == 0.5f && row_kept;
                if (g != starved)
                    min_kept = fmin(min_kept, fabs(before[g->offset + c]));
            }
        }
        CHECK(live >= 1);
        if (g == starved) {
            /* Only the largest gamma of the starved batch norm survives. */
            CHECK_INT_EQ(live, 1);
            CHECK(mg_model_masks(m)[g->offset + g->count - 1] == 1.0f);
        }
    }
    printf("  slim: %d of %d channels in %d batch norms\n", pruned, total, bn_count);
    CHECK_INT_EQ(total, 784);
    CHECK_INT_EQ(pruned, 392);
    CHECK(whole);
    CHECK(untouched);
    CHECK(max_pruned <= min_kept);
    /* Conv filters pruned with their channel: the mask sparsity sees them. */
    CHECK(mg_model_mask_sparsity(m) > 0.3);

    /* A pruned channel contributes nothing: garbage in its filters leaves the
     * output (eval and train mode) bit for bit the same. */
    float x[2 * 3 * 32 * 32];
    mg_rng r;
    mg_rng_seed(&r, 5, "prune-slim", "x");
    for (size_t i = 0; i < sizeof x / sizeof x[0]; i++)
        x[i] = (float)mg_rng_normal(&r);
    float ref[20], ref_train[20], got[20];
    const float *logits = NULL;
    CHECK_OK(mg_model_predict(m, x, 2, ref, &err), &err);
    float *saved_buf = malloc(mg_model_n_buffers(m) * sizeof(float));
    memcpy(saved_buf, mg_model_buffers(m), mg_model_n_buffers(m) * sizeof(float));
    CHECK_OK(mg_model_forward(m, x, 2, 1, &logits, &err), &err);
    memcpy(ref_train, logits, sizeof ref_train);
    memcpy(mg_model_buffers(m), saved_buf, mg_model_n_buffers(m) * sizeof(float));
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
            if (mg_model_masks(m)[i] == 0.0f)
                mg_model_params(m)[i] = (float)mg_rng_normal(&r);
    }
    CHECK_OK(mg_model_predict(m, x, 2, got, &err), &err);
    CHECK_TENSOR_NEAR(got, ref, 20, 0.0);
    CHECK_OK(mg_model_forward(m, x, 2, 1, &logits, &err), &err);
    CHECK_TENSOR_NEAR(logits, ref_train, 20, 0.0);
    free(saved_buf);

    /* The penalty: lambda * sign(gamma) on gammas only (0 for pruned ones). */
    mg_model_zero_grad(m);
    mg_prune_slim_penalty(m, 0.01);
    const float *gr = mg_model_grads(m), *p = mg_model_params(m);
    int ok = 1, n_zero = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->buffer)
            continue;
        int is_gamma = mg_prune_bn_source(m, t) >= 0;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
            float want = is_gamma ? (p[i] > 0.0f ? 0.01f : p[i] < 0.0f ? -0.01f : 0.0f) : 0.0f;
            ok &= gr[i] == want;
            n_zero += is_gamma && p[i] == 0.0f;
        }
    }
    CHECK(ok);
    CHECK_INT_EQ(n_zero, 392);
    /* It accumulates. */
    mg_prune_slim_penalty(m, 0.01);
    CHECK_NEAR(mg_model_grads(m)[starved->offset + starved->count - 1], 0.02, 1e-9);

    /* Too much: each batch norm keeps a channel; the model stays as it was. */
    float *masks = malloc(np * sizeof(float));
    memcpy(masks, mg_model_masks(m), np * sizeof(float));
    CHECK_INT_EQ(mg_prune_apply(m, "slim", 0.99, NULL, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK(memcmp(masks, mg_model_masks(m), np * sizeof(float)) == 0);
    /* A lower sparsity revives nothing; the highest reachable one prunes all but one channel per batch norm. */
    CHECK_OK(mg_prune_apply(m, "slim", 0.3, NULL, NULL, &err), &err);
    CHECK(memcmp(masks, mg_model_masks(m), np * sizeof(float)) == 0);
    CHECK_OK(mg_prune_apply(m, "slim", 763.0 / 784.0, NULL, NULL, &err), &err);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        if (mg_prune_bn_source(m, t) < 0)
            continue;
        const mg_tensor_info *g = mg_model_tensor(m, t);
        int live = 0;
        for (size_t c = 0; c < g->count; c++)
            live += mg_model_masks(m)[g->offset + c] != 0.0f;
        CHECK_INT_EQ(live, 1);
    }
    free(masks);
    free(before);
    mg_model_destroy(&m);

    /* Prefixes select batch norms; a non-finite gamma is refused. */
    m = make("resnet20", 3);
    random_gammas(m, 6);
    const char *last[1] = {"L.8."};
    mg_prune_opts o = {.layers = last, .n_layers = 1};
    CHECK_OK(mg_prune_apply(m, "slim", 0.5, &o, NULL, &err), &err);
    int outside = 0, inside = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        if (mg_prune_bn_source(m, t) < 0)
            continue;
        const mg_tensor_info *g = mg_model_tensor(m, t);
        for (size_t c = 0; c < g->count; c++) {
            int gone = mg_model_masks(m)[g->offset + c] == 0.0f;
            if (strncmp(g->name, "L.8.", 4) == 0)
                inside += gone;
            else
                outside += gone;
        }
    }
    CHECK_INT_EQ(inside, 64);
    CHECK_INT_EQ(outside, 0);
    mg_model_params(m)[mg_model_tensor(m, (size_t)find(m, "b.weight"))->offset + 3] = NAN;
    CHECK_INT_EQ(mg_prune_apply(m, "slim", 0.6, NULL, NULL, &err), MG_ERR_NUMERIC);
    printf("  expected error: %s\n", err.msg);
    const char *conv[1] = {"L.8.c1"};
    o.layers = conv;
    CHECK_INT_EQ(mg_prune_apply(m, "slim", 0.5, &o, NULL, &err), MG_ERR_ARG);
    mg_model_destroy(&m);

    /* A batch norm without a source (pre-activation): gamma and beta only. */
    m = make("wrn28_2", 7);
    random_gammas(m, 8);
    const char *pre[1] = {"group1.1.bn1"};
    o.layers = pre;
    CHECK_OK(mg_prune_apply(m, "slim", 0.5, &o, NULL, &err), &err);
    const mg_tensor_info *g = mg_model_tensor(m, (size_t)find(m, "group1.1.bn1.weight")),
                         *b = mg_model_tensor(m, (size_t)find(m, "group1.1.bn1.bias"));
    size_t gone = 0;
    for (size_t c = 0; c < g->count; c++)
        gone += mg_model_masks(m)[g->offset + c] == 0.0f && mg_model_masks(m)[b->offset + c] == 0.0f &&
                mg_model_params(m)[b->offset + c] == 0.0f;
    CHECK_INT_EQ(gone, 16);
    CHECK_NEAR(mg_model_mask_sparsity(m), 0.0, 0.0);
    mg_model_destroy(&m);
}

int main(void)
{
    test_sources();
    test_slim();
    MG_TEST_MAIN_END();
}
