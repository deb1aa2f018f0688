/* test_prune_geom.c: the layer geometry read off a model's graph
 * (mg_prune_geom_model) and the multiply-accumulates mg_prune_stats counts
 * with it: dense MACs per sample against hand counts for LeNet-5, ResNet20
 * and MobileNetV2 (cross-checked with the training FLOPs the benchmark
 * quotes), against the usual per-layer sums for the other architectures,
 * what structured pruning of ResNet20 saves (a removed filter takes the next
 * layer's MACs on its channel, except across a residual addition), what a
 * dead channel does through a depthwise convolution, and that unstructured
 * pruning leaves positions * kept per layer; and, on small hand-built graphs,
 * the rules for grouped convolutions, linear layers over rows, layer norm and
 * attention. */
#include "mg_test.h"
#include "miagrid/prune.h"
#include "nn/nn_internal.h"

#include <stdint.h>

static mg_model *make(const char *arch, int c, int h, int w, const int *hidden, int n_hidden)
{
    mg_model_cfg cfg = {.arch = arch, .hidden = hidden, .n_hidden = n_hidden, .act = MG_ACT_RELU,
                        .in_c = c, .in_h = h, .in_w = w, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, 1, "prune-geom", "init");
    if (m)
        mg_model_init_params(m, &r);
    return m;
}

static long find(const mg_model *m, const char *name)
{
    for (size_t t = 0; t < mg_model_n_tensors(m); t++)
        if (strcmp(mg_model_tensor(m, t)->name, name) == 0)
            return (long)t;
    fprintf(stderr, "no tensor %s\n", name);
    return -1;
}

/* The geometry of every tensor; NULL (and a failed check) on error. */
static mg_prune_geom *geometry(const mg_model *m)
{
    mg_error err = {0};
    mg_prune_geom *g = malloc(mg_model_n_tensors(m) * sizeof *g);
    CHECK(g != NULL);
    if (!g)
        return NULL;
    CHECK_OK(mg_prune_geom_model(m, g, &err), &err);
    return g;
}

/* positions and producer (by name, NULL for -1) of tensor `name`. */
static void check_geom(const mg_model *m, const mg_prune_geom *g, const char *name, long positions,
                       const char *producer)
{
    long t = find(m, name), p = producer ? find(m, producer) : -1;
    CHECK(t >= 0);
    if (t < 0)
        return;
    if (g[t].positions != positions || g[t].producer != p)
        fprintf(stderr, "%s: positions %ld producer %ld, expected %ld and %ld (%s)\n", name, g[t].positions,
                g[t].producer, positions, p, producer ? producer : "none");
    CHECK_INT_EQ(g[t].positions, positions);
    CHECK_INT_EQ(g[t].producer, p);
}

/* Index into the statistics of tensor `name`. */
static size_t at(const mg_model *m, const mg_prune_stats_t *s, const char *name)
{
    long t = find(m, name);
    for (size_t j = 0; j < s->n; j++)
        if ((long)s->tensor[j] == t)
            return j;
    CHECK(!"tensor in the statistics");
    return 0;
}

/* Every prunable tensor has a place, and the dense model's MACs are the dense count. */
static void check_dense(const mg_model *m, const mg_prune_geom *g, const mg_prune_stats_t *s)
{
    uint64_t sum = 0;
    for (size_t j = 0; j < s->n; j++) {
        CHECK(g[s->tensor[j]].positions > 0);
        CHECK(g[s->tensor[j]].producer < (long)s->tensor[j]);
        sum += (uint64_t)g[s->tensor[j]].positions * s->count[j];
    }
    CHECK(s->has_macs);
    CHECK_INT_EQ(s->macs_dense_total, sum);
    CHECK_INT_EQ(s->macs_total, s->macs_dense_total);
    CHECK_NEAR(s->macs_saved, 0.0, 0.0);
}

/* FLOPs of one training sample as the benchmark counts them: 2 per MAC, the
 * forward's MACs three times (forward, weight gradient, input gradient)
 * except for the layer reading the network input (no input gradient). */
static double train_flops(uint64_t macs, uint64_t first_layer_macs)
{
    return 2.0 * (3.0 * (double)macs - (double)first_layer_macs);
}

static void test_lenet5(void)
{
    mg_model *m = make("lenet5", 1, 28, 28, NULL, 0);
    mg_error err = {0};
    mg_prune_geom *g = geometry(m);
    check_geom(m, g, "conv1.weight", 28 * 28, NULL);
    check_geom(m, g, "conv2.weight", 10 * 10, "conv1.weight");   /* through ReLU and max pool */
    check_geom(m, g, "fc1.weight", 1, "conv2.weight");            /* through max pool and flatten */
    check_geom(m, g, "fc2.weight", 1, "fc1.weight");
    check_geom(m, g, "fc3.weight", 1, "fc2.weight");
    CHECK_INT_EQ(g[find(m, "conv1.bias")].positions, 0);
    mg_prune_stats_t s;
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    check_dense(m, g, &s);
    /* LeNet-5 on 1x28x28 (arch.c: conv1 5x5 pad 2, 2x2 pools, conv2 5x5 valid):
     *   conv1  6 x 1x5x5  at 28x28:  6 * 25 * 784    = 117,600
     *   conv2 16 x 6x5x5  at 10x10: 16 * 150 * 100   = 240,000
     *   fc1   400 -> 120:                             48,000
     *   fc2   120 -> 84:                              10,080
     *   fc3    84 -> 10:                                 840
     *   total                                        416,520 MACs per sample.
     * Training: 2 * (3 * 416,520 - 117,600) = 2,263,920 FLOPs, the 2.26 MFLOP
     * of the benchmark. */
    CHECK_INT_EQ(s.macs_dense[at(m, &s, "conv1.weight")], 117600);
    CHECK_INT_EQ(s.macs_dense[at(m, &s, "conv2.weight")], 240000);
    CHECK_INT_EQ(s.macs_dense_total, 416520);
    CHECK_NEAR(train_flops(s.macs_dense_total, 117600), 2263920.0, 0.0);
    CHECK_NEAR(train_flops(s.macs_dense_total, 117600) / 1e6, 2.26, 0.005);
    mg_prune_stats_free(&s);

    /* Unstructured pruning at s keeps count - round(s * count) per layer and
     * leaves every row some weights, so each layer costs positions * kept:
     * (1 - s) of 416,520 here, since every layer's count is a multiple of 5. */
    static const double sparsity[2] = {0.5, 0.8};
    static const uint64_t expect[2] = {208260, 83304};
    for (int k = 0; k < 2; k++) {
        CHECK_OK(mg_prune_apply(m, "l1-unstructured", sparsity[k], NULL, NULL, &err), &err);
        CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
        for (size_t j = 0; j < s.n; j++) {
            CHECK_INT_EQ(s.kept[j], s.count[j] - (size_t)(sparsity[k] * (double)s.count[j] + 0.5));
            CHECK_INT_EQ(s.macs[j], (uint64_t)g[s.tensor[j]].positions * s.kept[j]);
        }
        CHECK_INT_EQ(s.macs_total, expect[k]);
        CHECK_NEAR(s.macs_saved, sparsity[k], 1e-12);
        printf("  lenet5 l1-unstructured %.1f: %llu of %llu MACs\n", sparsity[k],
               (unsigned long long)s.macs_total, (unsigned long long)s.macs_dense_total);
        mg_prune_stats_free(&s);
    }
    free(g);
    mg_model_destroy(&m);
}

static void test_resnet20(void)
{
    mg_model *m = make("resnet20", 3, 32, 32, NULL, 0);
    mg_error err = {0};
    mg_prune_geom *g = geometry(m);
    check_geom(m, g, "c.weight", 1024, NULL);
    check_geom(m, g, "L.0.c1.weight", 1024, "c.weight");     /* the stem's BN + ReLU only */
    check_geom(m, g, "L.0.c2.weight", 1024, "L.0.c1.weight");
    check_geom(m, g, "L.1.c1.weight", 1024, NULL);            /* after a residual addition */
    check_geom(m, g, "L.3.c1.weight", 256, NULL);
    check_geom(m, g, "L.3.c2.weight", 256, "L.3.c1.weight");
    check_geom(m, g, "L.3.sh.0.weight", 256, NULL);
    check_geom(m, g, "L.6.sh.0.weight", 64, NULL);
    check_geom(m, g, "L.8.c2.weight", 64, "L.8.c1.weight");
    check_geom(m, g, "fc.weight", 1, NULL);                   /* global pool of an addition */
    mg_prune_stats_t s;
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    check_dense(m, g, &s);
    /* ResNet20 on 3x32x32 (arch.c: 3x3 convs, 1x1 shortcuts where the width
     * changes, stages at 32x32, 16x16, 8x8):
     *   stem    16 x 3x3x3 at 1024:                        442,368
     *   stage 1 six 16 x 16x3x3 at 1024: 6 * 2,359,296  = 14,155,776
     *   stage 2 L.3.c1 32 x 16x3x3 at 256:               1,179,648
     *           five 32 x 32x3x3 at 256: 5 * 2,359,296  = 11,796,480
     *           L.3.sh 32 x 16 at 256:                     131,072   (13,107,200)
     *   stage 3 the same at 64 positions with twice the channels: 13,107,200
     *   fc      64 -> 10:                                      640
     *   total                                           40,813,184 MACs per sample.
     * Training: 2 * (3 * 40,813,184 - 442,368) = 243,994,368 FLOPs, the 244
     * MFLOP of the benchmark. */
    CHECK_INT_EQ(s.macs_dense[at(m, &s, "c.weight")], 442368);
    CHECK_INT_EQ(s.macs_dense[at(m, &s, "L.3.sh.0.weight")], 131072);
    CHECK_INT_EQ(s.macs_dense_total, 40813184);
    CHECK_NEAR(train_flops(s.macs_dense_total, 442368), 243994368.0, 0.0);
    CHECK_NEAR(train_flops(s.macs_dense_total, 442368) / 1e6, 244.0, 0.5);
    mg_prune_stats_free(&s);

    /* l1-structured at 0.5: every convolution keeps half its filters (fc,
     * the output layer, is left alone). A convolution reading another's
     * channels directly (the stem into L.0.c1, each c1 into its c2) reads
     * half its inputs; one reading a residual sum reads all of them:
     *   stem   1024 *  8 * 27                   =   221,184
     *   L.0    2 * 1024 * 8 * 8 * 9             = 1,179,648
     *   L.1-2  2 * 1024 * (8*16*9 + 8*8*9)      = 3,538,944
     *   L.3    256 * (16*16*9 * 2 + 16*16)      = 1,245,184
     *   L.4-5  2 * 256 * (16*32*9 + 16*16*9)    = 3,538,944
     *   L.6-8  as L.3-5 (64 positions, twice the channels) = 4,784,128
     *   fc     640
     *   total  14,508,672 of 40,813,184. */
    CHECK_OK(mg_prune_apply(m, "l1-structured", 0.5, NULL, NULL, &err), &err);
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    for (size_t j = 0; j < s.n; j++) {
        const mg_prune_geom *gj = &g[s.tensor[j]];
        uint64_t full = (uint64_t)gj->positions * s.kept[j];
        CHECK_INT_EQ(s.macs[j], gj->producer < 0 ? full : full / 2);
    }
    CHECK_INT_EQ(s.macs[at(m, &s, "c.weight")], 221184);
    CHECK_INT_EQ(s.macs[at(m, &s, "L.0.c2.weight")], 1024 * 8 * 8 * 9);
    CHECK_INT_EQ(s.macs[at(m, &s, "L.1.c1.weight")], 1024 * 8 * 16 * 9);
    CHECK_INT_EQ(s.macs[at(m, &s, "L.3.sh.0.weight")], 256 * 16 * 16);
    CHECK_INT_EQ(s.macs[at(m, &s, "fc.weight")], 640);
    CHECK_INT_EQ(s.macs_total, 14508672);
    CHECK_NEAR(s.macs_saved, 1.0 - 14508672.0 / 40813184.0, 1e-12);
    printf("  resnet20 l1-structured 0.5: %llu of %llu MACs, %.1f %% saved\n", (unsigned long long)s.macs_total,
           (unsigned long long)s.macs_dense_total, 100.0 * s.macs_saved);
    mg_prune_stats_free(&s);
    free(g);
    mg_model_destroy(&m);
}

/* Mask and zero row `row` of tensor `name`. */
static void mask_row(mg_model *m, const char *name, size_t row)
{
    const mg_tensor_info *ti = mg_model_tensor(m, (size_t)find(m, name));
    size_t per = ti->count / (size_t)ti->shape[0];
    for (size_t i = 0; i < per; i++) {
        mg_model_masks(m)[ti->offset + row * per + i] = 0.0f;
        mg_model_params(m)[ti->offset + row * per + i] = 0.0f;
    }
}

static void test_mobilenetv2(void)
{
    mg_model *m = make("mobilenetv2", 3, 32, 32, NULL, 0);
    mg_error err = {0};
    mg_prune_geom *g = geometry(m);
    check_geom(m, g, "conv1.weight", 1024, NULL);
    check_geom(m, g, "layers.0.conv1.weight", 1024, "conv1.weight");
    check_geom(m, g, "layers.0.conv2.weight", 1024, "layers.0.conv1.weight");   /* depthwise */
    check_geom(m, g, "layers.0.conv3.weight", 1024, "layers.0.conv2.weight");
    check_geom(m, g, "layers.0.shortcut.0.weight", 1024, "conv1.weight");
    check_geom(m, g, "layers.1.conv1.weight", 1024, NULL);   /* after the shortcut's addition */
    check_geom(m, g, "layers.3.conv2.weight", 256, "layers.3.conv1.weight");   /* stride 2 */
    check_geom(m, g, "layers.4.conv1.weight", 256, "layers.3.conv3.weight");   /* a stride-2 block adds nothing */
    check_geom(m, g, "conv2.weight", 16, NULL);
    check_geom(m, g, "linear.weight", 1, "conv2.weight");    /* through BN, ReLU, 4x4 pool, flatten */
    mg_prune_stats_t s;
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    check_dense(m, g, &s);
    /* MobileNetV2 on 3x32x32 (arch.c): a block in -> p = t*in -> out at
     * stride st, input side S and output side S' = S/st, costs
     * S^2*in*p (expand) + S'^2*p*9 (depthwise) + S'^2*p*out (project)
     * + S'^2*in*out (1x1 shortcut, stride-1 blocks whose width changes):
     *   stem      32 x 3x3x3 at 1024:                          884,736
     *   stage 1   32->32->16 at 32, shortcut:                2,392,064
     *   stage 2   16->96->24 (+shortcut), 24->144->24 at 32: 13,615,104
     *   stage 3   24->144->32 to 16, two 32->192->32 at 16:  12,226,560
     *   stage 4   32->192->64 to 8, three 64->384->64 at 8:  12,570,624
     *   stage 5   64->384->96 (+shortcut), two 96->576->96:  19,365,888
     *   stage 6   96->576->160 to 4, two 160->960->160 at 4: 15,203,328
     *   stage 7   160->960->320 at 4, shortcut:              8,330,240
     *   conv2     1280 x 320 at 16:                          6,553,600
     *   linear    1280 -> 10:                                   12,800
     *   total                                               91,154,944 MACs per sample. */
    CHECK_INT_EQ(s.macs_dense[at(m, &s, "layers.3.conv2.weight")], 256 * 144 * 9);
    CHECK_INT_EQ(s.macs_dense_total, 91154944);
    uint64_t dense = s.macs_dense_total;
    mg_prune_stats_free(&s);

    /* Expand filter 5 of block 3 gone: its 1024 * 24 MACs, the depthwise
     * filter 5 it feeds (256 * 9), which then outputs a constant, and that
     * channel in the projection (256 * 32); the next block reads the
     * projection's filters, all alive. */
    mask_row(m, "layers.3.conv1.weight", 5);
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    CHECK_INT_EQ(s.macs[at(m, &s, "layers.3.conv1.weight")], 1024 * 24 * 143);
    CHECK_INT_EQ(s.macs[at(m, &s, "layers.3.conv2.weight")], 256 * 9 * 143);
    CHECK_INT_EQ(s.macs[at(m, &s, "layers.3.conv3.weight")], 256 * 32 * 143);
    CHECK_INT_EQ(s.macs[at(m, &s, "layers.4.conv1.weight")], 256 * 32 * 192);
    CHECK_INT_EQ(s.macs_total, dense - (1024 * 24 + 256 * 9 + 256 * 32));
    mg_prune_stats_free(&s);
    /* A depthwise filter pruned itself: its channel in the projection goes too. */
    mask_row(m, "layers.3.conv2.weight", 7);
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    CHECK_INT_EQ(s.macs[at(m, &s, "layers.3.conv1.weight")], 1024 * 24 * 143);
    CHECK_INT_EQ(s.macs[at(m, &s, "layers.3.conv2.weight")], 256 * 9 * 142);
    CHECK_INT_EQ(s.macs[at(m, &s, "layers.3.conv3.weight")], 256 * 32 * 142);
    mg_prune_stats_free(&s);

    CHECK_OK(mg_prune_apply(m, "l1-structured", 0.5, NULL, NULL, &err), &err);
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    /* Every layer but the classifier loses half its filters, and more where
     * its producer's rows are gone too. */
    for (size_t j = 0; j + 1 < s.n; j++)
        CHECK(s.macs[j] <= (uint64_t)g[s.tensor[j]].positions * s.kept[j]);
    CHECK(s.macs_saved > 0.5 && s.macs_saved < 1.0);
    printf("  mobilenetv2 l1-structured 0.5: %llu of %llu MACs, %.1f %% saved\n",
           (unsigned long long)s.macs_total, (unsigned long long)s.macs_dense_total, 100.0 * s.macs_saved);
    mg_prune_stats_free(&s);
    free(g);
    mg_model_destroy(&m);
}

/* The other architectures: every prunable tensor placed, dense MACs the sums
 * over layers of C_out * C_in/groups * k^2 * OH * OW (and in * out for linear
 * layers) at 3x32x32 with 10 classes, which are the usual CIFAR figures
 * (VGG16 0.31 G, ResNet18 0.56 G, DenseNet121 0.89 G); structured pruning
 * saves something on each. The MLP's geometry is the chain's. */
static void test_all(void)
{
    static const struct {
        const char *arch;
        uint64_t macs;
    } cases[] = {
        {"cnn4", 32853760},       /* 64x3x25 at 1024 + 64x64x25 at 256 + 4096*384 + 384*384 + 3840 */
        {"vgg16_bn", 313201664},
        {"resnet18", 555422720},
        {"densenet121", 888350720},
        {"wrn28_2", 214353152},
    };
    mg_error err = {0};
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        mg_model *m = make(cases[i].arch, 3, 32, 32, NULL, 0);
        if (!m)
            continue;
        mg_prune_geom *g = geometry(m);
        mg_prune_stats_t s;
        CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
        check_dense(m, g, &s);
        CHECK_INT_EQ(s.macs_dense_total, cases[i].macs);
        mg_prune_stats_free(&s);
        CHECK_OK(mg_prune_apply(m, "l1-structured", 0.5, NULL, NULL, &err), &err);
        CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
        CHECK(s.macs_saved >= 0.5 && s.macs_saved < 1.0);
        printf("  %s: %.1f M MACs dense, l1-structured 0.5 saves %.1f %%\n", cases[i].arch,
               (double)s.macs_dense_total / 1e6, 100.0 * s.macs_saved);
        mg_prune_stats_free(&s);
        free(g);
        mg_model_destroy(&m);
    }

    int hidden[3] = {64, 32, 16};
    mg_model *m = make("mlp", 1, 1, 100, hidden, 3);
    size_t nt = mg_model_n_tensors(m);
    mg_prune_geom *g = geometry(m), *c = malloc(nt * sizeof *c);
    CHECK_OK(mg_prune_geom_chain(m, c, &err), &err);
    for (size_t t = 0; t < nt; t++) {
        CHECK_INT_EQ(g[t].positions, c[t].positions);
        CHECK_INT_EQ(g[t].producer, c[t].producer);
    }
    free(c);
    free(g);
    mg_model_destroy(&m);
}

/* Grouped convolutions and a flatten, on a graph built by hand. */
static void test_graph_conv(void)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "geom-conv", 2, 6, 6, 3, 0, &err), &err);
    if (!m)
        return;
    int x = mg_g_conv(m, "c1", 0, 4, 3, 1, 1, 1, 1);              /* (4,6,6) */
    x = mg_g_maxpool(m, mg_g_act(m, x, MG_ACT_RELU6), 2, 2, 0);   /* (4,3,3) */
    x = mg_g_bn(m, "b2", mg_g_conv(m, "c2", x, 4, 1, 1, 0, 2, 0), 1);   /* two groups of two channels */
    int logits = mg_g_linear(m, "fc", mg_g_dropout(m, mg_g_flatten(m, x), 0.1f), 3, 1);
    CHECK_OK(mg_graph_finish(&m, logits, &err), &err);
    if (!m)
        return;
    mg_prune_geom *g = geometry(m);
    check_geom(m, g, "c1.weight", 36, NULL);
    check_geom(m, g, "c2.weight", 9, "c1.weight");
    check_geom(m, g, "fc.weight", 1, "c2.weight");
    /* Filter 1 of c1 gone: c2's first group (rows 0 and 1, reading channels
     * 0 and 1) loses one weight a row at 9 positions; fc reads c2's rows, all alive. */
    mask_row(m, "c1.weight", 1);
    mg_prune_stats_t s;
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    CHECK_INT_EQ(s.macs_dense_total, 36 * 4 * 18 + 9 * 4 * 2 + 36 * 3);
    CHECK_INT_EQ(s.macs[at(m, &s, "c1.weight")], 36 * 3 * 18);
    CHECK_INT_EQ(s.macs[at(m, &s, "c2.weight")], 9 * (8 - 2));
    CHECK_INT_EQ(s.macs[at(m, &s, "fc.weight")], 36 * 3);
    mg_prune_stats_free(&s);
    /* Filter 3 of c2 gone: fc's 9 inputs of channel 3 go. */
    mask_row(m, "c2.weight", 3);
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    CHECK_INT_EQ(s.macs[at(m, &s, "fc.weight")], 27 * 3);
    mg_prune_stats_free(&s);
    free(g);
    mg_model_destroy(&m);
}

/* Linear layers over the rows of a sequence, layer norm and attention. */
static void test_graph_seq(void)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "geom-seq", 1, 4, 6, 3, 0, &err), &err);
    if (!m)
        return;
    int e = mg_g_linear(m, "embed", 0, 8, 1);                     /* (1,4,8) */
    int x = mg_g_fuse_act(m, mg_g_linear(m, "mix", e, 8, 1), MG_ACT_TANH);
    x = mg_g_mha(m, "attn", x, 2);
    x = mg_g_linear(m, "post", mg_g_layernorm(m, "ln", x), 8, 1);
    int logits = mg_g_linear(m, "head", mg_g_flatten(m, x), 3, 1);   /* rows interleave the features */
    CHECK_OK(mg_graph_finish(&m, logits, &err), &err);
    if (!m)
        return;
    mg_prune_geom *g = geometry(m);
    check_geom(m, g, "embed.weight", 4, NULL);
    check_geom(m, g, "mix.weight", 4, "embed.weight");
    check_geom(m, g, "attn.in_proj_weight", 4, "mix.weight");
    check_geom(m, g, "attn.out_proj.weight", 4, NULL);
    check_geom(m, g, "post.weight", 4, NULL);
    check_geom(m, g, "head.weight", 1, NULL);
    mg_prune_stats_t s;
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    check_dense(m, g, &s);
    CHECK_INT_EQ(s.macs_dense_total, 4 * (8 * 6 + 8 * 8 + 24 * 8 + 8 * 8 + 8 * 8) + 32 * 3);
    mg_prune_stats_free(&s);
    /* Neuron 2 of mix gone: the in-projection's column 2 at each of the 4 rows. */
    mask_row(m, "mix.weight", 2);
    CHECK_OK(mg_prune_stats(m, g, &s, &err), &err);
    CHECK_INT_EQ(s.macs[at(m, &s, "attn.in_proj_weight")], 4 * 24 * 7);
    mg_prune_stats_free(&s);
    free(g);
    mg_model_destroy(&m);
}

int main(void)
{
    test_lenet5();
    test_resnet20();
    test_mobilenetv2();
    test_all();
    test_graph_conv();
    test_graph_seq();
    MG_TEST_MAIN_END();
}
