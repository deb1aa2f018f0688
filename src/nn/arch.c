/*
 * arch.c: the architectures mg_model_create knows, built as graphs of the
 * engine's operations (nn_internal.h) with the layer structure and the
 * state_dict-style parameter names of their usual PyTorch definitions. Each
 * builder states the reference it follows; the parameter counts the tests
 * check come from those references.
 */
#include "miagrid/nn.h"
#include "nn/nn_internal.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* Conv (no bias) then BatchNorm2d, with the ReLU fused when relu is set:
 * the "F.relu(self.bnX(self.convX(x)))" of the reference networks. */
static int conv_bn(mg_model *m, const char *conv, const char *bn, int x, int OC, int k, int stride, int pad,
                   int groups, int relu)
{
    x = mg_g_conv(m, conv, x, OC, k, stride, pad, groups, 0);
    return mg_g_bn(m, bn, x, relu);
}

/* ---- mlp, lenet5, cnn4 ------------------------------------------------------------------ */

static int build_mlp(mg_model *m, const mg_model_cfg *cfg)
{
    char name[32];
    int x = mg_g_flatten(m, 0);
    for (int i = 0; i < cfg->n_hidden; i++) {
        snprintf(name, sizeof name, "fc%d", i + 1);
        x = mg_g_linear(m, name, x, cfg->hidden[i], 1);
        x = mg_g_fuse_act(m, x, cfg->act);
    }
    snprintf(name, sizeof name, "fc%d", cfg->n_hidden + 1);
    return mg_g_linear(m, name, x, cfg->n_classes, 1);
}

/* LeNet-5 as in the usual PyTorch definition (conv1 pads 2 so that 28x28
 * MNIST keeps the classic 16x5x5 feature map): 61,706 parameters on 1x28x28. */
static int build_lenet5(mg_model *m, const mg_model_cfg *cfg)
{
    int x = mg_g_conv(m, "conv1", 0, 6, 5, 1, 2, 1, 1);
    x = mg_g_maxpool(m, mg_g_fuse_act(m, x, MG_ACT_RELU), 2, 2, 0);
    x = mg_g_conv(m, "conv2", x, 16, 5, 1, 0, 1, 1);
    x = mg_g_maxpool(m, mg_g_fuse_act(m, x, MG_ACT_RELU), 2, 2, 0);
    x = mg_g_flatten(m, x);
    x = mg_g_fuse_act(m, mg_g_linear(m, "fc1", x, 120, 1), MG_ACT_RELU);
    x = mg_g_fuse_act(m, mg_g_linear(m, "fc2", x, 84, 1), MG_ACT_RELU);
    return mg_g_linear(m, "fc3", x, cfg->n_classes, 1);
}

/* The four-layer CNN of Rahman et al. (TDP 2018), which Wang et al. (IJCAI
 * 2021, "Against membership inference attack: pruning is all you need",
 * section 5.1) train on CIFAR-10. Wang et al. give no layers, only the
 * citation; Rahman et al. attack the differentially private model of Abadi et
 * al. (CCS 2016), whose CIFAR-10 network (section 5.3) is two convolutional
 * and two fully connected layers before the softmax, so that network is the
 * one used here (the cited paper's own text was not available): two 5x5
 * convolutions with 64 channels, stride 1, each followed by a ReLU and a 2x2
 * max pool, two fully connected layers of 384 units with ReLU, and the
 * classifier. Abadi et al. crop CIFAR to 24x24; here the input keeps its size
 * (padding 2 keeps each convolution's map), so on 3x32x32 the first fully
 * connected layer sees 64x8x8: 1,832,266 parameters for 10 classes. */
static int build_cnn4(mg_model *m, const mg_model_cfg *cfg)
{
    int x = mg_g_conv(m, "conv1", 0, 64, 5, 1, 2, 1, 1);
    x = mg_g_maxpool(m, mg_g_fuse_act(m, x, MG_ACT_RELU), 2, 2, 0);
    x = mg_g_conv(m, "conv2", x, 64, 5, 1, 2, 1, 1);
    x = mg_g_maxpool(m, mg_g_fuse_act(m, x, MG_ACT_RELU), 2, 2, 0);
    x = mg_g_flatten(m, x);
    x = mg_g_fuse_act(m, mg_g_linear(m, "fc1", x, 384, 1), MG_ACT_RELU);
    x = mg_g_fuse_act(m, mg_g_linear(m, "fc2", x, 384, 1), MG_ACT_RELU);
    return mg_g_linear(m, "fc3", x, cfg->n_classes, 1);
}

/* ---- kuangliu/pytorch-cifar ----------------------------------------------------------------- */

/* VGG('VGG16') of pytorch-cifar: each number is Conv2d(3x3, padding 1, with
 * bias) + BatchNorm2d + ReLU, each M a 2x2 max pool, then Linear(512, K). The
 * names are the nn.Sequential indices ("features.0.weight", "features.1.running_mean");
 * the trailing AvgPool2d(1, 1) is the identity and is left out.
 * 14,728,266 parameters on 3x32x32 with 10 classes. */
static int build_vgg16_bn(mg_model *m, const mg_model_cfg *cfg)
{
    static const int plan[] = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0, 512, 512, 512, 0, 512, 512, 512, 0};
    char conv[32], bn[32];
    int x = 0, idx = 0;
    for (size_t i = 0; i < sizeof plan / sizeof plan[0]; i++) {
        if (plan[i] == 0) {
            x = mg_g_maxpool(m, x, 2, 2, 0);
            idx += 1;
            continue;
        }
        snprintf(conv, sizeof conv, "features.%d", idx);
        snprintf(bn, sizeof bn, "features.%d", idx + 1);
        x = mg_g_conv(m, conv, x, plan[i], 3, 1, 1, 1, 1);
        x = mg_g_bn(m, bn, x, 1);
        idx += 3;
    }
    x = mg_g_flatten(m, x);
    return mg_g_linear(m, "classifier", x, cfg->n_classes, 1);
}

/* BasicBlock of pytorch-cifar's ResNet: relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x)),
 * the shortcut a 1x1 conv + BN when the stride or the width changes. */
static int basic_block(mg_model *m, const char *p, int x, int in, int planes, int stride)
{
    char a[48], b[48];
    snprintf(a, sizeof a, "%s.conv1", p);
    snprintf(b, sizeof b, "%s.bn1", p);
    int y = conv_bn(m, a, b, x, planes, 3, stride, 1, 1, 1);
    snprintf(a, sizeof a, "%s.conv2", p);
    snprintf(b, sizeof b, "%s.bn2", p);
    y = conv_bn(m, a, b, y, planes, 3, 1, 1, 1, 0);
    int sc = x;
    if (stride != 1 || in != planes) {
        snprintf(a, sizeof a, "%s.shortcut.0", p);
        snprintf(b, sizeof b, "%s.shortcut.1", p);
        sc = conv_bn(m, a, b, x, planes, 1, stride, 0, 1, 0);
    }
    return mg_g_add(m, y, sc, 1);
}

/* ResNet18 of pytorch-cifar: 3x3 stem with 64 channels, BasicBlock stages
 * [2,2,2,2] of 64/128/256/512 (strides 1,2,2,2), avg_pool2d(4), Linear(512, K).
 * 11,173,962 parameters on 3x32x32 with 10 classes. */
static int build_resnet18(mg_model *m, const mg_model_cfg *cfg)
{
    static const int planes[4] = {64, 128, 256, 512};
    char p[32];
    int x = conv_bn(m, "conv1", "bn1", 0, 64, 3, 1, 1, 1, 1), in = 64;
    for (int l = 0; l < 4; l++)
        for (int i = 0; i < 2; i++) {
            snprintf(p, sizeof p, "layer%d.%d", l + 1, i);
            x = basic_block(m, p, x, in, planes[l], i == 0 && l > 0 ? 2 : 1);
            in = planes[l];
        }
    x = mg_g_flatten(m, mg_g_avgpool(m, x, 4, 4, 0));
    return mg_g_linear(m, "linear", x, cfg->n_classes, 1);
}

/* MobileNetV2 of pytorch-cifar (stem and second stage at stride 1 for 32x32):
 * inverted residual blocks 1x1 expand + BN + ReLU, 3x3 depthwise + BN + ReLU,
 * 1x1 project + BN; stride-1 blocks add a shortcut (1x1 conv + BN when the
 * width changes), stride-2 blocks have none. Then 1x1 conv to 1280 + BN +
 * ReLU, avg_pool2d(4), Linear(1280, K). 2,296,922 parameters on 3x32x32. */
static int build_mobilenetv2(mg_model *m, const mg_model_cfg *cfg)
{
    static const int plan[7][4] = {{1, 16, 1, 1},  {6, 24, 2, 1},  {6, 32, 3, 2},  {6, 64, 4, 2},
                                   {6, 96, 3, 1},  {6, 160, 3, 2}, {6, 320, 1, 1}};
    char a[48], b[48];
    int x = conv_bn(m, "conv1", "bn1", 0, 32, 3, 1, 1, 1, 1), in = 32, blk = 0;
    for (int s = 0; s < 7; s++) {
        for (int r = 0; r < plan[s][2]; r++, blk++) {
            int out = plan[s][1], stride = r == 0 ? plan[s][3] : 1, planes = plan[s][0] * in;
            snprintf(a, sizeof a, "layers.%d.conv1", blk);
            snprintf(b, sizeof b, "layers.%d.bn1", blk);
            int y = conv_bn(m, a, b, x, planes, 1, 1, 0, 1, 1);
            snprintf(a, sizeof a, "layers.%d.conv2", blk);
            snprintf(b, sizeof b, "layers.%d.bn2", blk);
            y = conv_bn(m, a, b, y, planes, 3, stride, 1, planes, 1);
            snprintf(a, sizeof a, "layers.%d.conv3", blk);
            snprintf(b, sizeof b, "layers.%d.bn3", blk);
            y = conv_bn(m, a, b, y, out, 1, 1, 0, 1, 0);
            if (stride == 1) {
                int sc = x;
                if (in != out) {
                    snprintf(a, sizeof a, "layers.%d.shortcut.0", blk);
                    snprintf(b, sizeof b, "layers.%d.shortcut.1", blk);
                    sc = conv_bn(m, a, b, x, out, 1, 1, 0, 1, 0);
                }
                y = mg_g_add(m, y, sc, 0);
            }
            x = y;
            in = out;
        }
    }
    x = conv_bn(m, "conv2", "bn2", x, 1280, 1, 1, 0, 1, 1);
    x = mg_g_flatten(m, mg_g_avgpool(m, x, 4, 4, 0));
    return mg_g_linear(m, "linear", x, cfg->n_classes, 1);
}

/* DenseNet121 of pytorch-cifar (growth 32, blocks [6,12,24,16], reduction
 * 0.5): a 3x3 stem to 64 channels; each bottleneck is BN + ReLU + 1x1 conv to
 * 128, BN + ReLU + 3x3 conv to 32, and cat([new, x]) (new features first);
 * each transition BN + ReLU + 1x1 conv to half the channels + avg_pool2d(2);
 * then BN + ReLU, avg_pool2d(4), Linear(1024, K). 6,956,298 parameters on 3x32x32. */
static int build_densenet121(mg_model *m, const mg_model_cfg *cfg)
{
    static const int blocks[4] = {6, 12, 24, 16};
    const int growth = 32;
    char a[48], b[48];
    int planes = 2 * growth;
    int x = mg_g_conv(m, "conv1", 0, planes, 3, 1, 1, 1, 0);
    for (int d = 0; d < 4; d++) {
        for (int i = 0; i < blocks[d]; i++) {
            snprintf(a, sizeof a, "dense%d.%d.bn1", d + 1, i);
            int y = mg_g_bn(m, a, x, 1);
            snprintf(a, sizeof a, "dense%d.%d.conv1", d + 1, i);
            snprintf(b, sizeof b, "dense%d.%d.bn2", d + 1, i);
            y = conv_bn(m, a, b, y, 4 * growth, 1, 1, 0, 1, 1);
            snprintf(a, sizeof a, "dense%d.%d.conv2", d + 1, i);
            y = mg_g_conv(m, a, y, growth, 3, 1, 1, 1, 0);
            int parts[2] = {y, x};
            x = mg_g_concat(m, 2, parts);
            planes += growth;
        }
        if (d == 3)
            break;
        snprintf(a, sizeof a, "trans%d.bn", d + 1);
        snprintf(b, sizeof b, "trans%d.conv", d + 1);
        x = mg_g_bn(m, a, x, 1);
        planes /= 2;
        x = mg_g_conv(m, b, x, planes, 1, 1, 0, 1, 0);
        x = mg_g_avgpool(m, x, 2, 2, 0);
    }
    x = mg_g_bn(m, "bn", x, 1);
    x = mg_g_flatten(m, mg_g_avgpool(m, x, 4, 4, 0));
    return mg_g_linear(m, "linear", x, cfg->n_classes, 1);
}

/* ---- resnet20, wrn28_2 ------------------------------------------------------------------------ */

/* ResNet20 exactly as the PyTorch reference of bench/ (and its names):
 * 3x3 stem to 16 + BN + ReLU, nine blocks (16,1)x3 (32,2)x3 (64,2)x3 of
 * conv-BN-ReLU-conv-BN plus a shortcut (1x1 conv + BN where the stride or
 * width changes), ReLU after the add, global average pool, Linear(64, K).
 * 272,474 parameters on 3x32x32 with 10 classes. */
static int build_resnet20(mg_model *m, const mg_model_cfg *cfg)
{
    char a[32], b[32];
    int x = conv_bn(m, "c", "b", 0, 16, 3, 1, 1, 1, 1), in = 16;
    for (int i = 0; i < 9; i++) {
        int out = 16 << (i / 3), stride = i % 3 == 0 && i > 0 ? 2 : 1;
        snprintf(a, sizeof a, "L.%d.c1", i);
        snprintf(b, sizeof b, "L.%d.b1", i);
        int y = conv_bn(m, a, b, x, out, 3, stride, 1, 1, 1);
        snprintf(a, sizeof a, "L.%d.c2", i);
        snprintf(b, sizeof b, "L.%d.b2", i);
        y = conv_bn(m, a, b, y, out, 3, 1, 1, 1, 0);
        int sc = x;
        if (stride != 1 || in != out) {
            snprintf(a, sizeof a, "L.%d.sh.0", i);
            snprintf(b, sizeof b, "L.%d.sh.1", i);
            sc = conv_bn(m, a, b, x, out, 1, stride, 0, 1, 0);
        }
        x = mg_g_add(m, y, sc, 1);
        in = out;
    }
    return mg_g_linear(m, "fc", mg_g_gap(m, x), cfg->n_classes, 1);
}

/* Wide-ResNet 28-2 as objax.zoo.wide_resnet.WideResNet(depth=28, width=2),
 * the network LiRA (Carlini et al., S&P 2022) and FixMatch train: a 3x3 stem
 * to 16 channels, three groups of four pre-activation blocks of width 32, 64,
 * 128 (the first block of groups 2 and 3 at stride 2). A block computes
 * o1 = relu(bn1(x)), z = conv2(relu(bn2(conv1(o1)))) and returns z + proj(o1)
 * when the width or stride changes (proj a 1x1 conv without BN) and z + x
 * otherwise. Then BN + ReLU, global average pool, Linear(128, K). Convs have
 * no bias. Padding is PyTorch's symmetric 1 (objax's SAME pads stride-2 convs
 * on one side only), ReLU as in objax (the PyTorch FixMatch ports use a leaky
 * ReLU with the same parameters). 1,467,610 parameters on 3x32x32 with 10 classes. */
static int build_wrn28_2(mg_model *m, const mg_model_cfg *cfg)
{
    static const int widths[3] = {32, 64, 128};
    char a[48], b[48];
    int x = mg_g_conv(m, "conv", 0, 16, 3, 1, 1, 1, 0), in = 16;
    for (int g = 0; g < 3; g++) {
        for (int i = 0; i < 4; i++) {
            int out = widths[g], stride = i == 0 && g > 0 ? 2 : 1;
            snprintf(a, sizeof a, "group%d.%d.bn1", g + 1, i);
            int o1 = mg_g_bn(m, a, x, 1);
            snprintf(a, sizeof a, "group%d.%d.conv1", g + 1, i);
            snprintf(b, sizeof b, "group%d.%d.bn2", g + 1, i);
            int y = conv_bn(m, a, b, o1, out, 3, stride, 1, 1, 1);
            snprintf(a, sizeof a, "group%d.%d.conv2", g + 1, i);
            y = mg_g_conv(m, a, y, out, 3, 1, 1, 1, 0);
            int sc = x;
            if (in != out || stride != 1) {
                snprintf(a, sizeof a, "group%d.%d.proj", g + 1, i);
                sc = mg_g_conv(m, a, o1, out, 1, stride, 0, 1, 0);
            }
            x = mg_g_add(m, y, sc, 0);
            in = out;
        }
    }
    x = mg_g_bn(m, "bn", x, 1);
    return mg_g_linear(m, "fc", mg_g_gap(m, x), cfg->n_classes, 1);
}

/* ---- dispatch ----------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    int (*build)(mg_model *m, const mg_model_cfg *cfg);
} arch_entry;

static const arch_entry archs[] = {
    {"mlp", build_mlp},           {"lenet5", build_lenet5},           {"cnn4", build_cnn4},
    {"vgg16_bn", build_vgg16_bn}, {"resnet18", build_resnet18},       {"resnet20", build_resnet20},
    {"mobilenetv2", build_mobilenetv2}, {"densenet121", build_densenet121}, {"wrn28_2", build_wrn28_2},
};

int mg_model_arch_known(const char *name)
{
    if (!name)
        return 0;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(name, archs[i].name) == 0)
            return 1;
    return 0;
}

const char *mg_model_arch_list(void)
{
    return "mlp, lenet5, cnn4, vgg16_bn, resnet18, resnet20, mobilenetv2, densenet121, wrn28_2";
}

/* The fully connected nets of Nasr et al. (CCS 2018, "Machine learning with
 * membership privacy using adversarial regularization") for Purchase100 and
 * Texas100; ML-Privacy-Meter and the membership-inference literature after it
 * use the same 1024-512-256-128 Tanh stack for Location30. WeMem (Shang et
 * al., the WeMem slides) only says "FC" for the three
 * tabular sets, so these are the nets its baselines use. */
mg_status mg_mlp_preset(const char *preset, int *hidden, int *n_hidden, mg_act *act, mg_error *err)
{
    static const int widths[] = {1024, 512, 256, 128};
    if (!preset || (strcmp(preset, "location") != 0 && strcmp(preset, "purchase") != 0 &&
                    strcmp(preset, "texas") != 0))
        return mg_error_set(err, MG_ERR_CONFIG, "mlp preset '%s' is unknown (known: location, purchase, texas)",
                            preset ? preset : "(null)");
    for (int i = 0; i < 4; i++)
        hidden[i] = widths[i];
    *n_hidden = 4;
    *act = MG_ACT_TANH;
    return MG_OK;
}

/* The memory a model may take: MIAGRID_MAX_MEMORY (bytes, with an optional
 * K, M, G or T suffix) as the data loaders read it, else physical memory. */
static double memory_limit(void)
{
    const char *v = getenv("MIAGRID_MAX_MEMORY");
    char *end = NULL;
    double x = v && *v ? strtod(v, &end) : 0;
    if (x > 0 && end && (!*end || (strchr("KkMmGgTt", *end) && !end[1]))) {
        for (const char *u = "KMGT"; *end && *u; u++) {
            x *= 1024;
            if ((*end & ~0x20) == *u)
                break;
        }
        return x;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    return pages > 0 && page > 0 ? (double)pages * (double)page : 1e30;
}

/* A model is refused before its blocks are allocated when its parameters,
 * gradients and masks could not fit in memory: a wide mlp or a large image
 * multiplies into more than any machine holds. */
static mg_status check_param_memory(const mg_model *m, mg_error *err)
{
    double bytes = 3.0 * sizeof(float) * ((double)m->n_params + (double)m->n_buffers);
    double limit = memory_limit();
    if (bytes <= limit)
        return MG_OK;
    return mg_error_set(err, MG_ERR_CONFIG, "model %s: %zu parameters on input %dx%dx%d would need %.1f GiB "
                        "(parameters, gradients and masks), more than the %.1f GiB there is (the machine's memory, "
                        "or MIAGRID_MAX_MEMORY); expected a smaller architecture or input", m->arch, m->n_params,
                        m->in_c, m->in_h, m->in_w, bytes / 1073741824.0, limit / 1073741824.0);
}

mg_status mg_arch_build(const mg_model_cfg *cfg, mg_model **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_model *m = NULL;
    const arch_entry *e = NULL;
    *out = NULL;
    for (size_t i = 0; i < sizeof archs / sizeof archs[0]; i++)
        if (strcmp(cfg->arch, archs[i].name) == 0)
            e = &archs[i];
    if (!e)
        return mg_error_set(err, MG_ERR_CONFIG, "model: unknown architecture '%s' (known: %s)", cfg->arch,
                            mg_model_arch_list());
    if (strcmp(cfg->arch, "mlp") == 0) {
        if (cfg->n_hidden < 0 || (cfg->n_hidden > 0 && !cfg->hidden))
            return mg_error_set(err, MG_ERR_CONFIG, "model mlp: %d hidden layers but no widths given",
                                cfg->n_hidden);
        for (int i = 0; i < cfg->n_hidden; i++)
            if (cfg->hidden[i] < 1 || cfg->hidden[i] > INT_MAX / 64)
                return mg_error_set(err, MG_ERR_CONFIG, "model mlp: hidden layer %d has width %d (must be positive)",
                                    i + 1, cfg->hidden[i]);
        if (cfg->act != MG_ACT_RELU && cfg->act != MG_ACT_TANH && cfg->act != MG_ACT_RELU6 &&
            cfg->act != MG_ACT_GELU)
            return mg_error_set(err, MG_ERR_CONFIG, "model mlp: unknown activation %d (relu, tanh, relu6 or gelu)",
                                (int)cfg->act);
    }
    int xavier = cfg->init && strcmp(cfg->init, "xavier-normal") == 0;
    MG_CHECK(mg_graph_begin(&m, cfg->arch, cfg->in_c, cfg->in_h, cfg->in_w, cfg->n_classes, xavier, err));
    int logits = e->build(m, cfg);
    if (m->build_st == MG_OK)
        MG_CHECK(check_param_memory(m, err));
    MG_CHECK(mg_graph_finish(&m, logits, err));
    *out = m;
    m = NULL;
cleanup:
    mg_model_destroy(&m);
    return st;
}
