/* test_arch.c: every architecture mg_model_create knows: the parameter counts
 * of the reference PyTorch definitions (3x32x32 input, 10 classes unless
 * noted), state_dict-style names, buffers for every batch norm, and a
 * forward/backward smoke test on a batch of 2 (finite loss, gradients reach
 * the first layer, eval logits finite); the MLP presets; the architecture
 * list. */
#include "mg_test.h"
#include "miagrid/nn.h"

#include <stdint.h>

static const mg_tensor_info *find(const mg_model *m, const char *name)
{
    for (size_t i = 0; i < mg_model_n_tensors(m); i++)
        if (strcmp(mg_model_tensor(m, i)->name, name) == 0)
            return mg_model_tensor(m, i);
    return NULL;
}

typedef struct {
    const char *arch;
    size_t params;
    const char *names[4];   /* tensors that must exist */
} arch_case;

static void smoke(mg_model *m, const char *arch, mg_rng *rng)
{
    const int B = 2, D = mg_model_in_dim(m), K = mg_model_n_classes(m);
    float *x = malloc((size_t)B * D * sizeof(float)), *z2 = malloc((size_t)B * K * sizeof(float));
    int32_t y[2] = {3, 7 % K};
    for (size_t i = 0; i < (size_t)B * D; i++)
        x[i] = (float)mg_rng_normal(rng);
    mg_error err = {0};
    const float *z = NULL;
    double loss = NAN, t0 = mg_now();
    mg_model_zero_grad(m);
    CHECK_OK(mg_model_forward(m, x, B, 1, &z, &err), &err);
    double t1 = mg_now();
    CHECK_OK(mg_model_backward(m, y, B, &loss, NULL, &err), &err);
    double t2 = mg_now();
    CHECK(isfinite(loss) && loss > 0.0);
    /* Every parameter tensor's gradient is finite, and the first layer's is not all zero. */
    int finite = 1;
    for (size_t i = 0; i < mg_model_n_params(m); i++)
        finite &= isfinite(mg_model_grads(m)[i]) != 0;
    CHECK(finite);
    const mg_tensor_info *first = mg_model_tensor(m, 0);
    double gnorm = 0.0;
    for (size_t i = 0; i < first->count; i++)
        gnorm += fabs(mg_model_grads(m)[first->offset + i]);
    CHECK(gnorm > 0.0);
    /* The training forward moved the running statistics; eval logits are finite. */
    int moved = mg_model_n_buffers(m) == 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->buffer && strstr(ti->name, "running_mean"))
            for (size_t i = 0; i < ti->count; i++)
                moved |= mg_model_buffers(m)[ti->offset + i] != 0.0f;
    }
    CHECK(moved);
    CHECK_OK(mg_model_predict(m, x, (size_t)B, z2, &err), &err);
    int zf = 1;
    for (int i = 0; i < B * K; i++)
        zf &= isfinite(z2[i]) != 0;
    CHECK(zf);
    printf("  %-12s batch %d: forward %.1f ms, backward %.1f ms, loss %.4f\n", arch, B, 1e3 * (t1 - t0),
           1e3 * (t2 - t1), loss);
    free(x);
    free(z2);
}

static void check_arch(const arch_case *c, mg_rng *rng)
{
    mg_model_cfg cfg = {.arch = c->arch, .in_c = 3, .in_h = 32, .in_w = 32, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    if (!m)
        return;
    printf("%s: %zu parameters, %zu buffer values, %zu tensors\n", c->arch, mg_model_n_params(m),
           mg_model_n_buffers(m), mg_model_n_tensors(m));
    CHECK_INT_EQ(mg_model_n_params(m), c->params);
    for (int i = 0; i < 4 && c->names[i]; i++) {
        mg_test_checks_++;
        if (!find(m, c->names[i]))
            MG_T_FAIL_("%s has no tensor %s", c->arch, c->names[i]);
    }
    /* Unique names; batch-norm parameters are never prunable and each has its two buffers. */
    int unique = 1, bn_ok = 1;
    size_t n_bn = 0, n_buf = 0;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        for (size_t u = 0; u < t && unique; u++)
            unique &= strcmp(mg_model_tensor(m, u)->name, ti->name) != 0;
        n_buf += ti->buffer;
        const char *dot = strrchr(ti->name, '.');
        if (dot && strcmp(dot, ".running_var") == 0) {
            char w[64];
            snprintf(w, sizeof w, "%.*s.weight", (int)(dot - ti->name), ti->name);
            const mg_tensor_info *g = find(m, w);
            bn_ok &= g && !g->prunable && !g->buffer && g->count == ti->count;
            n_bn++;
        }
    }
    CHECK(unique && bn_ok);
    CHECK_INT_EQ(n_buf, 2 * n_bn);
    mg_model_init_params(m, rng);
    smoke(m, c->arch, rng);
    mg_model_destroy(&m);
}

static void test_archs(mg_rng *rng)
{
    static const arch_case cases[] = {
        {"cnn4", 1832266, {"conv1.weight", "conv2.bias", "fc1.weight", "fc3.bias"}},
        {"vgg16_bn", 14728266, {"features.0.weight", "features.1.running_mean", "features.41.weight", "classifier.weight"}},
        {"resnet18", 11173962, {"conv1.weight", "layer1.0.conv1.weight", "layer2.0.shortcut.1.running_var", "linear.bias"}},
        {"resnet20", 272474, {"c.weight", "L.3.sh.0.weight", "L.8.b2.bias", "fc.weight"}},
        {"mobilenetv2", 2296922, {"layers.0.conv2.weight", "layers.0.shortcut.0.weight", "layers.16.bn3.bias", "linear.weight"}},
        {"densenet121", 6956298, {"dense1.0.bn1.weight", "trans3.conv.weight", "dense4.15.conv2.weight", "bn.running_mean"}},
        {"wrn28_2", 1467610, {"conv.weight", "group1.0.proj.weight", "group3.3.conv2.weight", "fc.bias"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        check_arch(&cases[i], rng);

    /* Depthwise convolutions of MobileNetV2: one input channel per filter. */
    mg_model_cfg cfg = {.arch = "mobilenetv2", .in_c = 3, .in_h = 32, .in_w = 32, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    const mg_tensor_info *dw = m ? find(m, "layers.1.conv2.weight") : NULL;
    CHECK(dw && dw->shape[0] == 96 && dw->shape[1] == 1 && dw->shape[2] == 3);
    mg_model_destroy(&m);
    /* 100 classes change only the classifier. */
    cfg.arch = "resnet20";
    cfg.n_classes = 100;
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    CHECK_INT_EQ(m ? mg_model_n_params(m) : 0, 272474 + 90 * 65);
    mg_model_destroy(&m);
    /* An input the CIFAR nets cannot pool down to 4x4 is a configuration error. */
    cfg.arch = "resnet18";
    cfg.in_h = cfg.in_w = 16;
    CHECK_INT_EQ(mg_model_create(&cfg, &m, &err), MG_ERR_CONFIG);
    printf("  expected error: %s\n", err.msg);
}

static void test_small_archs(mg_rng *rng)
{
    /* LeNet-5 keeps its classic count on MNIST. */
    mg_model_cfg cfg = {.arch = "lenet5", .in_c = 1, .in_h = 28, .in_w = 28, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    CHECK_INT_EQ(mg_model_n_params(m), 61706);
    CHECK_INT_EQ(mg_model_n_buffers(m), 0);
    mg_model_init_params(m, rng);
    smoke(m, "lenet5", rng);
    mg_model_destroy(&m);

    /* The tabular presets: Purchase100 600-1024-512-256-128-100 and Texas100
     * 6169-...-100 with Tanh, Location30 446-...-30. */
    int hidden[8], nh = 0;
    mg_act act = MG_ACT_RELU;
    static const struct {
        const char *preset;
        int in, classes;
        size_t params;
    } presets[] = {
        {"purchase", 600, 100, 1317348},
        {"texas", 6169, 100, 7020004},
        {"location", 446, 30, 1150622},
    };
    for (int i = 0; i < 3; i++) {
        CHECK_OK(mg_mlp_preset(presets[i].preset, hidden, &nh, &act, &err), &err);
        CHECK_INT_EQ(nh, 4);
        CHECK(act == MG_ACT_TANH && hidden[0] == 1024 && hidden[3] == 128);
        mg_model_cfg mc = {.arch = "mlp", .hidden = hidden, .n_hidden = nh, .act = act, .in_c = 1, .in_h = 1,
                           .in_w = presets[i].in, .n_classes = presets[i].classes};
        CHECK_OK(mg_model_create(&mc, &m, &err), &err);
        CHECK_INT_EQ(m ? mg_model_n_params(m) : 0, presets[i].params);
        if (m && i == 0) {
            mg_model_init_params(m, rng);
            smoke(m, "mlp-purchase", rng);
        }
        mg_model_destroy(&m);
    }
    CHECK_INT_EQ(mg_mlp_preset("adult", hidden, &nh, &act, &err), MG_ERR_CONFIG);
    printf("  expected error: %s\n", err.msg);

    /* Every activation of the MLP. */
    const mg_act acts[4] = {MG_ACT_RELU, MG_ACT_TANH, MG_ACT_RELU6, MG_ACT_GELU};
    int h2[2] = {16, 8};
    for (int i = 0; i < 4; i++) {
        mg_model_cfg mc = {.arch = "mlp", .hidden = h2, .n_hidden = 2, .act = acts[i], .in_c = 2, .in_h = 3,
                           .in_w = 3, .n_classes = 4};
        CHECK_OK(mg_model_create(&mc, &m, &err), &err);
        CHECK_INT_EQ(m ? mg_model_n_params(m) : 0, 18 * 16 + 16 + 16 * 8 + 8 + 8 * 4 + 4);
        mg_model_destroy(&m);
    }
    mg_model_cfg bad = {.arch = "mlp", .hidden = h2, .n_hidden = 2, .act = (mg_act)9, .in_c = 1, .in_h = 1,
                        .in_w = 4, .n_classes = 2};
    CHECK_INT_EQ(mg_model_create(&bad, &m, &err), MG_ERR_CONFIG);
}

static void test_names(void)
{
    const char *list = mg_model_arch_list();
    const char *expect[] = {"mlp", "lenet5", "cnn4", "vgg16_bn", "resnet18", "resnet20", "mobilenetv2",
                            "densenet121", "wrn28_2"};
    for (int i = 0; i < 9; i++) {
        CHECK(mg_model_arch_known(expect[i]));
        CHECK(strstr(list, expect[i]) != NULL);
    }
    CHECK(!mg_model_arch_known("resnet"));
    CHECK(!mg_model_arch_known(NULL));
    CHECK(!mg_model_arch_known("vgg16"));
    mg_model_cfg cfg = {.arch = "vgg19", .in_c = 3, .in_h = 32, .in_w = 32, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_INT_EQ(mg_model_create(&cfg, &m, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "vgg19") && strstr(err.msg, "densenet121"));
}

int main(void)
{
    mg_rng rng;
    mg_rng_seed(&rng, 7, "test", "arch");
    test_names();
    test_small_archs(&rng);
    test_archs(&rng);
    MG_TEST_MAIN_END();
}
