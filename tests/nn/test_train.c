/* test_train.c: the training loop learns a separable problem, is bitwise
 * reproducible for the same rng, honours masks, and reports divergence;
 * early stopping on a dev set keeps the best epoch's parameters; the epoch
 * hook sees every epoch and can stop or fail training. */
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
    /* Without a dev set: the constant rate, no dev accuracy, no best epoch. */
    CHECK(h.lr[0] == 0.05 && h.lr[9] == 0.05);
    CHECK(isnan(h.dev_acc[0]));
    CHECK_INT_EQ(h.best_epoch, -1);

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

/* What the hook saw: a copy of the parameters after every epoch. */
typedef struct {
    float *snap;       /* (max_epochs, n_params) */
    size_t n_params;
    int max_epochs;
    int calls;
    int stop_after;    /* ask to stop after this many epochs (0: never) */
    int fail_after;    /* return MG_ERR_IO after this many epochs (0: never) */
    int consistent;    /* every call saw epochs_done == calls and n_epochs == epochs_done */
} hook_log;

static mg_status log_hook(void *user, mg_model *m, const mg_train_state *s, int *stop, mg_error *err)
{
    hook_log *L = user;
    L->calls++;
    L->consistent &= s->epochs_done == L->calls && s->hist.n_epochs == s->epochs_done;
    if (L->calls <= L->max_epochs)
        memcpy(L->snap + (size_t)(L->calls - 1) * L->n_params, mg_model_params(m), L->n_params * sizeof(float));
    if (L->fail_after && L->calls == L->fail_after)
        return mg_error_set(err, MG_ERR_IO, "hook failed on purpose");
    if (L->stop_after && L->calls == L->stop_after)
        *stop = 1;
    return MG_OK;
}

static void test_early_stopping(void)
{
    enum { NTR = 400, NDEV = 200, EPOCHS = 40, PATIENCE = 3 };
    float *x = malloc(NTR * DIM * sizeof(float)), *dx = malloc(NDEV * DIM * sizeof(float));
    int32_t *y = malloc(NTR * sizeof(int32_t)), *dy = malloc(NDEV * sizeof(int32_t));
    mg_rng r;
    mg_rng_seed(&r, 21, "blobs", "data");
    make_blobs(x, y, NTR, &r);
    make_blobs(dx, dy, NDEV, &r);
    /* Half the dev labels scrambled: dev accuracy climbs for a few epochs and
     * then wanders, so early stopping has something to do. */
    for (size_t i = 0; i < NDEV; i++)
        if (i % 2 != 0)
            dy[i] = (int32_t)mg_rng_below(&r, CLASSES);
    mg_model *m = make_mlp(22);
    size_t np = mg_model_n_params(m);
    hook_log L = {.snap = malloc(EPOCHS * np * sizeof(float)), .n_params = np, .max_epochs = EPOCHS,
                  .consistent = 1};
    mg_train_cfg tc = {.epochs = EPOCHS, .batch = 32, .patience = PATIENCE,
                       .optim = {.kind = MG_OPT_SGD, .lr = 0.01}};
    mg_train_data d = {.x = x, .y = y, .n = NTR, .dev_x = dx, .dev_y = dy, .dev_n = NDEV};
    mg_train_state s;
    mg_error err = {0};
    mg_rng_seed(&r, 21, "train", "shuffle");
    CHECK_OK(mg_train_state_init(&s, m, &tc, &r, &err), &err);
    CHECK_OK(mg_train_run(m, &d, &s, log_hook, &L, &err), &err);
    const mg_history *h = &s.hist;
    int best = h->best_epoch;
    printf("  early stopping: %d of %d epochs, best epoch %d (dev acc %.3f)\n", h->n_epochs, EPOCHS, best + 1,
           best >= 0 ? h->dev_acc[best] : -1.0);
    CHECK(s.finished);
    CHECK(L.consistent);
    CHECK_INT_EQ(L.calls, h->n_epochs);
    CHECK(h->n_epochs < EPOCHS);
    CHECK(best >= 1);
    CHECK_INT_EQ(h->n_epochs - 1 - best, PATIENCE);
    int first_max = best >= 0;
    for (int e = 0; e < h->n_epochs && best >= 0; e++)
        first_max &= e < best ? h->dev_acc[e] < h->dev_acc[best] : h->dev_acc[e] <= h->dev_acc[best];
    CHECK(first_max);
    /* The parameters are the best epoch's, as the hook saw them then. */
    if (best >= 0 && best < h->n_epochs - 1)
        CHECK(memcmp(mg_model_params(m), L.snap + (size_t)best * np, np * sizeof(float)) == 0);
    /* Running a finished state again changes nothing. */
    CHECK_OK(mg_train_run(m, &d, &s, log_hook, &L, &err), &err);
    CHECK_INT_EQ(L.calls, h->n_epochs);
    mg_train_state_free(&s);

    /* A dev set without patience: recorded, nothing restored, every epoch runs. */
    mg_model *m2 = make_mlp(22);
    L.calls = 0;
    tc.patience = 0;
    tc.epochs = 6;
    mg_rng_seed(&r, 21, "train", "shuffle");
    CHECK_OK(mg_train_state_init(&s, m2, &tc, &r, &err), &err);
    CHECK(s.best_params == NULL);
    CHECK_OK(mg_train_run(m2, &d, &s, log_hook, &L, &err), &err);
    CHECK_INT_EQ(s.hist.n_epochs, 6);
    CHECK(s.hist.best_epoch >= 0 && s.hist.dev_acc[5] >= 0.0);
    CHECK(memcmp(mg_model_params(m2), L.snap + 5 * np, np * sizeof(float)) == 0);
    mg_train_state_free(&s);

    /* The hook stops training (consistent state, MG_ERR_INTERRUPTED) or fails it. */
    L.calls = 0;
    L.stop_after = 2;
    mg_rng_seed(&r, 21, "train", "shuffle");
    CHECK_OK(mg_train_state_init(&s, m2, &tc, &r, &err), &err);
    CHECK_INT_EQ(mg_train_run(m2, &d, &s, log_hook, &L, &err), MG_ERR_INTERRUPTED);
    printf("  expected stop: %s\n", err.msg);
    CHECK_INT_EQ(s.epochs_done, 2);
    CHECK(!s.finished);
    L.stop_after = 0;
    L.fail_after = 3;
    CHECK_INT_EQ(mg_train_run(m2, &d, &s, log_hook, &L, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "hook failed on purpose") != NULL);
    mg_train_state_free(&s);

    /* Early stopping needs a dev set; dev labels are checked too. */
    tc.patience = 2;
    CHECK_INT_EQ(mg_train(m2, x, y, NTR, &tc, &r, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK(strstr(err.msg, "needs a dev set") != NULL);
    dy[7] = -1;
    CHECK_OK(mg_train_state_init(&s, m2, &tc, &r, &err), &err);
    CHECK_INT_EQ(mg_train_run(m2, &d, &s, NULL, NULL, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "of dev sample 7") != NULL);
    mg_train_state_free(&s);
    tc.patience = -1;
    CHECK_INT_EQ(mg_train_state_init(&s, m2, &tc, &r, &err), MG_ERR_ARG);
    mg_train_state_free(&s);

    mg_model_destroy(&m), mg_model_destroy(&m2);
    free(L.snap), free(x), free(y), free(dx), free(dy);
}

int main(void)
{
    test_learns_and_repeats();
    test_lenet_masked();
    test_divergence();
    test_early_stopping();
    MG_TEST_MAIN_END();
}
