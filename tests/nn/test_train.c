/* test_train.c: the training loop learns a separable problem, is bitwise
 * reproducible for the same rng, honours masks, and reports divergence. */
#include "mg_test.h"
#include "miagrid/nn.h"

#include <stdint.h>

enum { DIM = 8, CLASSES = 4 };

/* Four Gaussian blobs, class k centred at +3 on axis k: linearly separable in practice. */
static void make_blobs(float *x, int32_t *y, size_t n, mg_rng *rng)
{
    for (size_t i = 0; i < n; i++) {
        int k = (int)(i % CLASSES);
        y[i] = k;
        for (int d = 0; d < DIM; d++)
            x[i * DIM + d] = (float)(0.5 * mg_rng_normal(rng) + (d == k ? 3.0 : 0.0));
    }
}

static mg_model *make_mlp(uint64_t seed)
{
    int hidden[1] = {32};
    mg_model_cfg cfg = {.arch = "mlp", .hidden = hidden, .n_hidden = 1, .act = MG_ACT_RELU,
                        .in_c = 1, .in_h = 1, .in_w = DIM, .n_classes = CLASSES};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, seed, "mlp", "init");
    mg_model_init_params(m, &r);
    return m;
}

static void test_learns_and_repeats(void)
{
    const size_t n = 600;
    float *x = malloc(n * DIM * sizeof(float)), *logits = malloc(n * CLASSES * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    mg_rng data_rng;
    mg_rng_seed(&data_rng, 1, "blobs", "data");
    make_blobs(x, y, n, &data_rng);

    /* batch 64 leaves a partial last batch of 24 */
    mg_train_cfg tc = {.epochs = 10, .batch = 64,
                       .optim = {.kind = MG_OPT_SGD, .lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4}};
    mg_model *a = make_mlp(7), *b = make_mlp(7), *c = make_mlp(7);
    mg_rng ra, rb, rc;
    mg_rng_seed(&ra, 11, "train", "shuffle");
    mg_rng_seed(&rb, 11, "train", "shuffle");
    mg_rng_seed(&rc, 12, "train", "shuffle");
    mg_history h = {0};
    mg_error err = {0};
    CHECK_OK(mg_train(a, x, y, n, &tc, &ra, &h, &err), &err);
    CHECK_OK(mg_train(b, x, y, n, &tc, &rb, NULL, &err), &err);
    CHECK_OK(mg_train(c, x, y, n, &tc, &rc, NULL, &err), &err);

    CHECK_INT_EQ(h.n_epochs, 10);
    for (int e = 0; e < h.n_epochs; e++)
        printf("  epoch %2d loss %.4f train acc %.3f (%.4f s)\n", e + 1, h.loss[e], h.train_acc[e], h.seconds[e]);
    CHECK(h.loss[9] < 0.5 * h.loss[0]);
    CHECK(h.train_acc[9] > 0.95);
    CHECK(h.seconds[0] >= 0.0);

    CHECK_OK(mg_model_predict(a, x, n, logits, &err), &err);
    double acc = mg_accuracy(logits, y, n, CLASSES);
    printf("  accuracy after training %.4f\n", acc);
    CHECK(acc > 0.95);

    /* Same model seed and shuffle rng: identical bits; a different shuffle: different bits. */
    size_t bytes = mg_model_n_params(a) * sizeof(float);
    CHECK(memcmp(mg_model_params(a), mg_model_params(b), bytes) == 0);
    CHECK(memcmp(mg_model_params(a), mg_model_params(c), bytes) != 0);
    CHECK(memcmp(&ra, &rb, sizeof ra) == 0);

    /* Adam learns it too; a batch larger than the data set is one batch. */
    mg_model *d = make_mlp(8);
    tc.optim = (mg_optim_cfg){.kind = MG_OPT_ADAM, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8};
    tc.batch = 1000;
    tc.epochs = 60;
    CHECK_OK(mg_train(d, x, y, n, &tc, &rc, NULL, &err), &err);
    CHECK_OK(mg_model_predict(d, x, n, logits, &err), &err);
    acc = mg_accuracy(logits, y, n, CLASSES);
    printf("  adam full-batch accuracy %.4f\n", acc);
    CHECK(acc > 0.95);

    mg_history_free(&h);
    CHECK(h.loss == NULL && h.n_epochs == 0);
    mg_model_destroy(&a), mg_model_destroy(&b), mg_model_destroy(&c), mg_model_destroy(&d);
    free(x), free(y), free(logits);
}

/* LeNet-5 through mg_train: the conv path is deterministic too, and masks hold. */
static void test_lenet_masked(void)
{
    const size_t n = 40;
    mg_model_cfg cfg = {.arch = "lenet5", .in_c = 1, .in_h = 12, .in_w = 12, .n_classes = 3};
    mg_model *a = NULL, *b = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &a, &err), &err);
    CHECK_OK(mg_model_create(&cfg, &b, &err), &err);
    float *x = malloc(n * 144 * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    mg_rng r;
    mg_rng_seed(&r, 2, "lenet", "data");
    for (size_t i = 0; i < n * 144; i++)
        x[i] = (float)mg_rng_uniform(&r);
    for (size_t i = 0; i < n; i++)
        y[i] = (int32_t)(i % 3);
    mg_rng ia, ib;
    mg_rng_seed(&ia, 2, "lenet", "init");
    mg_rng_seed(&ib, 2, "lenet", "init");
    mg_model_init_params(a, &ia);
    mg_model_init_params(b, &ib);
    /* Mask every fifth weight of every prunable tensor (values left nonzero on purpose). */
    for (mg_model *m = a; m; m = m == a ? b : NULL)
        for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
            const mg_tensor_info *ti = mg_model_tensor(m, t);
            for (size_t i = 0; ti->prunable && i < ti->count; i += 5)
                mg_model_masks(m)[ti->offset + i] = 0.0f;
        }
    mg_train_cfg tc = {.epochs = 3, .batch = 16,
                       .optim = {.kind = MG_OPT_SGD, .lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4}};
    mg_rng sa, sb;
    mg_rng_seed(&sa, 3, "lenet", "shuffle");
    mg_rng_seed(&sb, 3, "lenet", "shuffle");
    CHECK_OK(mg_train(a, x, y, n, &tc, &sa, NULL, &err), &err);
    CHECK_OK(mg_train(b, x, y, n, &tc, &sb, NULL, &err), &err);
    CHECK(memcmp(mg_model_params(a), mg_model_params(b), mg_model_n_params(a) * sizeof(float)) == 0);
    size_t bad = 0, masked = 0, want_masked = 0;
    for (size_t t = 0; t < mg_model_n_tensors(a); t++)
        if (mg_model_tensor(a, t)->prunable)
            want_masked += (mg_model_tensor(a, t)->count + 4) / 5;
    for (size_t i = 0; i < mg_model_n_params(a); i++)
        if (mg_model_masks(a)[i] == 0.0f) {
            masked++;
            float v = mg_model_params(a)[i];
            bad += !(v == 0.0f && !signbit(v));
        }
    printf("  lenet5: %zu masked parameters, %zu not exactly +0\n", masked, bad);
    CHECK_INT_EQ(masked, want_masked);
    CHECK_INT_EQ(bad, 0);
    mg_model_destroy(&a), mg_model_destroy(&b);
    free(x), free(y);
}

static void test_divergence(void)
{
    const size_t n = 100;
    float *x = malloc(n * DIM * sizeof(float));
    int32_t *y = malloc(n * sizeof(int32_t));
    mg_rng r;
    mg_rng_seed(&r, 4, "blobs", "data");
    make_blobs(x, y, n, &r);
    x[37 * DIM + 2] = NAN;
    mg_model *m = make_mlp(9);
    mg_train_cfg tc = {.epochs = 3, .batch = 16, .optim = {.kind = MG_OPT_SGD, .lr = 0.1}};
    mg_history h = {0};
    mg_error err = {0};
    CHECK_INT_EQ(mg_train(m, x, y, n, &tc, &r, &h, &err), MG_ERR_NUMERIC);
    printf("  expected error: %s\n", err.msg);
    CHECK(strstr(err.msg, "loss is nan at epoch 1, step") != NULL);
    CHECK(h.loss == NULL && h.n_epochs == 0);

    /* Bad arguments. */
    x[37 * DIM + 2] = 0.0f;
    tc.batch = 0;
    CHECK_INT_EQ(mg_train(m, x, y, n, &tc, &r, NULL, &err), MG_ERR_ARG);
    tc.batch = 16;
    y[3] = CLASSES;
    CHECK_INT_EQ(mg_train(m, x, y, n, &tc, &r, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    mg_model_destroy(&m);
    free(x), free(y);
}

int main(void)
{
    test_learns_and_repeats();
    test_lenet_masked();
    test_divergence();
    MG_TEST_MAIN_END();
}
