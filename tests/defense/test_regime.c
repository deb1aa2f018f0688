/*
 * test_regime.c: the grid's defenses as the training loop sees them. base
 * sets weight decay and early stopping and needs a dev part; label-smoothing
 * changes the loss; dp-sgd bounds the update by the clipping norm, refuses
 * batch norm and reports the accountant's epsilon, composed over trainings
 * and infinite after non-private training; ppb with identical halves and
 * relaxloss above its target are plain cross-entropy, relaxloss below it
 * ascends; rmr adds its weight times the parameters; rsw's epochs see the
 * window and a schedule that outruns the classes is refused; adv-reg and
 * dp-sgd resume from a checkpoint with the bits of a run straight through;
 * an unreadable score file is named.
 */
#include "mg_test.h"
#include "miagrid/defense.h"
#include "miagrid/store.h"
#include "nn/nn_internal.h"

#include <unistd.h>

enum { N = 60, NDEV = 20, D = 8, K = 3 };

static float X[N * D], DX[NDEV * D];
static int32_t Y[N], DY[NDEV];
static uint32_t IDX[N];

static void make_data(void)
{
    mg_rng r;
    mg_rng_seed(&r, 11, "regime", "data");
    for (int i = 0; i < N + NDEV; i++) {
        float *x = i < N ? X + i * D : DX + (i - N) * D;
        int32_t y = (int32_t)(i % K);
        if (i < N) {
            Y[i] = y;
            IDX[i] = (uint32_t)(1000 + 3 * i);
        } else {
            DY[i - N] = y;
        }
        for (int j = 0; j < D; j++)
            x[j] = (float)(mg_rng_normal(&r) + (j % K == y ? 1.0 : 0.0));
    }
}

static mg_model *mlp(void)
{
    static const int hidden[1] = {10};
    mg_model_cfg mc = {.arch = "mlp", .hidden = hidden, .n_hidden = 1, .act = MG_ACT_TANH,
                       .in_c = 1, .in_h = 1, .in_w = D, .n_classes = K};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&mc, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, 2, "regime", "init");
    mg_model_init_params(m, &r);
    return m;
}

static mg_train_cfg cfg(int epochs)
{
    mg_train_cfg c;
    memset(&c, 0, sizeof c);
    c.epochs = epochs;
    c.batch = 10;
    c.optim.kind = MG_OPT_SGD;
    c.optim.lr = 0.05;
    c.optim.momentum = 0.9;
    return c;
}

static mg_regime_data data(int with_dev)
{
    mg_regime_data d = {.y = Y, .sample_index = IDX, .n = N, .x = X, .in_dim = D};
    if (with_dev) {
        d.ref_x = DX;
        d.ref_y = DY;
        d.ref_n = NDEV;
    }
    return d;
}

static mg_defense_spec spec(const char *name)
{
    mg_defense_spec s;
    memset(&s, 0, sizeof s);
    snprintf(s.name, sizeof s.name, "%s", name);
    s.phase = MG_PHASE_BOTH;
    s.weight_decay = 5e-4;
    s.patience = 3;
    s.smoothing = 0.1;
    s.gamma = 1.0;
    s.k_steps = 2;
    s.attack_lr = 1e-3;
    s.noise_multiplier = 1.1;
    s.max_grad_norm = 1.0;
    s.delta = 1e-5;
    s.alpha = 1.0;
    s.lambda = 1.0;
    s.width = 5;
    s.step = 2;
    s.tau = 0.5;
    s.lambda_r = 0.1;
    s.lambda_g = 5e-4;
    return s;
}

static const char *tmp_path(const char *leaf, char *buf, size_t n)
{
    const char *t = getenv("MG_TEST_TMP");
    snprintf(buf, n, "%s/%s", t ? t : "/tmp", leaf);
    return buf;
}

/* Scores for the training samples: sample i of the data gets (i % 10) / 10. */
static void write_scores(const char *path)
{
    FILE *f = fopen(path, "w");
    if (!f) {
        CHECK(f != NULL);
        return;
    }
    fprintf(f, "index,score\n");
    for (int i = N - 1; i >= 0; i--)
        fprintf(f, "%u,%.1f\n", (unsigned)IDX[i], (i % 10) / 10.0);
    fclose(f);
}

/* The regime's gradient for one batch (the first b rows) at `epoch`. */
static void regime_grads(mg_regime *r, mg_model *m, int b, int epoch, float *out)
{
    mg_error err = {0};
    uint32_t rows[N];
    for (int i = 0; i < b; i++)
        rows[i] = (uint32_t)i;
    const mg_train_plugin *p = mg_regime_plugin(r);
    double loss = 0.0;
    int nc = 0;
    mg_model_zero_grad(m);
    CHECK_OK(p->step(p->user, m, X, Y, rows, b, epoch, &loss, &nc, &err), &err);
    memcpy(out, mg_model_grads(m), mg_model_n_params(m) * sizeof(float));
}

static void plain_grads(mg_model *m, const float *x, const int32_t *y, int b, float *out)
{
    mg_error err = {0};
    double loss = 0.0;
    int nc = 0;
    mg_model_zero_grad(m);
    CHECK_OK(mg_model_forward(m, x, b, 1, NULL, &err), &err);
    CHECK_OK(mg_model_backward(m, y, b, &loss, &nc, &err), &err);
    memcpy(out, mg_model_grads(m), mg_model_n_params(m) * sizeof(float));
}

static void test_base_and_smoothing(void)
{
    mg_error err = {0};
    mg_model *m = mlp();
    mg_train_cfg c = cfg(5);
    mg_defense_spec s = spec("base");
    mg_regime_data d = data(1);
    mg_regime *r = NULL;
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), &err);
    CHECK(mg_regime_plugin(r) == NULL);
    CHECK_NEAR(c.optim.weight_decay, 5e-4, 0);
    CHECK_INT_EQ(c.patience, 3);
    mg_regime_destroy(&r);
    d = data(0);
    CHECK_INT_EQ(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "dev part") != NULL);
    CHECK(r == NULL);

    /* label smoothing: the model's loss becomes the smoothed one */
    double plain = 0.0, smooth = 0.0;
    int nc = 0;
    CHECK_OK(mg_model_forward(m, X, 10, 1, NULL, &err), &err);
    CHECK_OK(mg_model_backward(m, Y, 10, &plain, &nc, &err), &err);
    s = spec("label-smoothing");
    d = data(0);
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), &err);
    CHECK(mg_regime_plugin(r) == NULL);
    CHECK_OK(mg_model_forward(m, X, 10, 1, NULL, &err), &err);
    CHECK_OK(mg_model_backward(m, Y, 10, &smooth, &nc, &err), &err);
    CHECK(fabs(smooth - plain) > 1e-4);
    mg_regime_destroy(&r);
    mg_model_destroy(&m);
}

static double norm(const float *g, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        s += (double)g[i] * g[i];
    return sqrt(s);
}

static void test_dp(void)
{
    mg_error err = {0};
    mg_model *m = mlp();
    size_t P = mg_model_n_params(m);
    float *g = malloc(P * sizeof(float));
    mg_train_cfg c = cfg(4);
    mg_defense_spec s = spec("dp-sgd");
    s.noise_multiplier = 0.0;
    s.max_grad_norm = 0.01;
    mg_regime_data d = data(0);
    mg_regime *r = NULL;
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), &err);
    /* Without noise the update is the mean of clipped gradients: at most C. */
    regime_grads(r, m, 10, 0, g);
    CHECK(norm(g, P) <= 0.01 * (1 + 1e-5));
    CHECK(norm(g, P) > 0.0);
    mg_regime_destroy(&r);

    /* With noise, epsilon is the accountant's for q = 10/60 over the steps run. */
    s = spec("dp-sgd");
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), &err);
    char path[512];
    tmp_path("regime_dp.h5", path, sizeof path);
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    hid_t grp = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Gclose(grp);
    CHECK_OK(mg_regime_write(r, f, 4, NULL, 1, &err), &err);
    double eps = 0.0, want = 0.0, twice = 0.0;
    CHECK_OK(mg_rdp_epsilon(10.0 / 60.0, 1.1, 4 * 6, 1e-5, &want, NULL, &err), &err);
    CHECK_OK(mg_rdp_epsilon(10.0 / 60.0, 1.1, 8 * 6, 1e-5, &twice, NULL, &err), &err);
    grp = H5Gopen2(f, "metrics", H5P_DEFAULT);
    CHECK_OK(mg_h5_get_attr_f64(grp, "epsilon", &eps, &err), &err);
    CHECK_NEAR(eps, want, 1e-9 * want);
    H5Gclose(grp);
    /* Composition: the same training again on top of this one. */
    void *rdp = NULL;
    hsize_t dims[4];
    int nd = 0;
    CHECK_OK(mg_h5_read(f, "defense/rdp", H5T_NATIVE_DOUBLE, &rdp, dims, &nd, &err), &err);
    H5Fclose(f);
    f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    grp = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK_OK(mg_regime_write(r, f, 4, rdp, 1, &err), &err);
    CHECK_OK(mg_h5_get_attr_f64(grp, "epsilon", &eps, &err), &err);
    CHECK_NEAR(eps, twice, 1e-9 * twice);
    H5Gclose(grp);
    H5Fclose(f);
    /* After non-private training nothing is guaranteed. */
    f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    grp = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK_OK(mg_regime_write(r, f, 4, NULL, 0, &err), &err);
    CHECK_OK(mg_h5_get_attr_f64(grp, "epsilon", &eps, &err), &err);
    CHECK(isinf(eps));
    H5Gclose(grp);
    H5Fclose(f);
    unlink(path);
    free(rdp);
    mg_regime_destroy(&r);
    mg_model_destroy(&m);
    free(g);

    /* Batch norm mixes the samples: DP-SGD is refused with the reason. */
    CHECK_OK(mg_graph_begin(&m, "bn", 1, 4, 4, K, 0, &err), &err);
    int x = mg_g_conv(m, "c", 0, 4, 3, 1, 1, 1, 0);
    x = mg_g_bn(m, "bn", x, 1);
    x = mg_g_linear(m, "fc", mg_g_gap(m, x), K, 1);
    CHECK_OK(mg_graph_finish(&m, x, &err), &err);
    s = spec("dp-sgd");
    mg_regime_data d16 = {.y = Y, .sample_index = IDX, .n = N, .x = X, .in_dim = 16};
    CHECK_INT_EQ(mg_regime_create(&s, m, &c, &d16, 1, "k", &r, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "dp-sgd") != NULL && strstr(err.msg, "batch norm") != NULL);
    mg_model_destroy(&m);
}

static void test_logit_losses(void)
{
    mg_error err = {0};
    mg_model *m = mlp();
    size_t P = mg_model_n_params(m);
    float *g = malloc(P * sizeof(float)), *h = malloc(P * sizeof(float));
    float xx[10 * D];
    int32_t yy[10];
    mg_train_cfg c = cfg(2);
    mg_regime_data d = data(0);
    mg_regime *r = NULL;

    /* ppb on a batch whose halves are the same samples: plain cross-entropy. */
    mg_defense_spec s = spec("ppb");
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), &err);
    for (int i = 0; i < 10; i++) {
        memcpy(xx + i * D, X + (i % 5) * D, D * sizeof(float));
        yy[i] = Y[i % 5];
    }
    {
        uint32_t rows[10] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4};
        const mg_train_plugin *p = mg_regime_plugin(r);
        double loss = 0.0;
        int nc = 0;
        mg_model_zero_grad(m);
        CHECK_OK(p->step(p->user, m, xx, yy, rows, 10, 0, &loss, &nc, &err), &err);
        memcpy(g, mg_model_grads(m), P * sizeof(float));
    }
    plain_grads(m, xx, yy, 10, h);
    CHECK_TENSOR_NEAR(g, h, P, 1e-6);
    mg_regime_destroy(&r);

    /* relaxloss above its target: descent on cross-entropy; below: ascent. */
    s = spec("relaxloss");
    s.alpha = 1e-3;
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), &err);
    regime_grads(r, m, 10, 0, g);
    plain_grads(m, X, Y, 10, h);
    CHECK_TENSOR_NEAR(g, h, P, 1e-6);
    mg_regime_destroy(&r);
    s.alpha = 100.0;
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), &err);
    regime_grads(r, m, 10, 0, g);
    for (size_t i = 0; i < P; i++)
        h[i] = -h[i];
    CHECK_TENSOR_NEAR(g, h, P, 1e-6);
    mg_regime_destroy(&r);
    mg_model_destroy(&m);
    free(g);
    free(h);
}

static void test_wemem(void)
{
    mg_error err = {0};
    char path[512];
    tmp_path("regime_mem.csv", path, sizeof path);
    write_scores(path);
    mg_model *m = mlp();
    size_t P = mg_model_n_params(m);
    float *g = malloc(P * sizeof(float)), *h = malloc(P * sizeof(float));
    mg_train_cfg c = cfg(3);
    mg_regime_data d = data(0);
    mg_regime *r = NULL;

    /* rmr: rows 0..9 have scores 0.0..0.9; tau 0.5 makes 5 of 10 risky. */
    mg_defense_spec s = spec("rmr");
    snprintf(s.mem_scores, sizeof s.mem_scores, "%s", path);
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), &err);
    CHECK(mg_regime_plugin(r)->epoch_rows == NULL);
    regime_grads(r, m, 10, 0, g);
    plain_grads(m, X, Y, 10, h);
    const float *p = mg_model_params(m);
    float w = (float)(0.5 * 0.1 + 0.5 * 5e-4);
    for (size_t i = 0; i < P; i++)
        h[i] += w * p[i];
    CHECK_TENSOR_NEAR(g, h, P, 1e-7);
    mg_regime_destroy(&r);

    /* rsw: each class of 20 ranked by score, windows of 5 sliding by 2. */
    s = spec("rsw");
    snprintf(s.mem_scores, sizeof s.mem_scores, "%s", path);
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), &err);
    const mg_train_plugin *pl = mg_regime_plugin(r);
    CHECK(pl->step == NULL && pl->epoch_rows != NULL);
    uint32_t rows[N];
    for (int e = 0; e < 3; e++) {
        size_t n = N;
        for (int i = 0; i < N; i++)
            rows[i] = (uint32_t)i;
        CHECK_OK(pl->epoch_rows(pl->user, e, rows, &n, &err), &err);
        CHECK_INT_EQ(n, 15);
        for (size_t i = 0; i < n; i++)
            CHECK(rows[i] < N);
    }
    mg_regime_destroy(&r);
    /* 10 epochs of step 2 run past classes of 20: refused before training. */
    c = cfg(11);
    CHECK_INT_EQ(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "step") != NULL);
    c = cfg(3);

    /* A missing score file is named. */
    snprintf(s.mem_scores, sizeof s.mem_scores, "%s.missing", path);
    CHECK(mg_regime_create(&s, m, &c, &d, 1, "k", &r, &err) != MG_OK);
    CHECK(strstr(err.msg, "regime_mem.csv.missing") != NULL);
    unlink(path);
    mg_model_destroy(&m);
    free(g);
    free(h);
}

typedef struct {
    const char *path;
} save_hook_t;

static mg_status save_at_1(void *user, mg_model *m, const mg_train_state *s, int *stop, mg_error *err)
{
    save_hook_t *h = user;
    if (s->epochs_done == 1) {
        *stop = 1;
        return mg_train_checkpoint_save(h->path, m, s, err);
    }
    return MG_OK;
}

/* Train 3 epochs under a fresh regime; with `path`, stop after epoch 1 and
 * resume from the checkpoint in a fresh model, state and regime. */
static mg_model *train_under(const char *name, const char *path)
{
    mg_error err = {0};
    mg_model *m = mlp();
    mg_train_cfg c = cfg(3);
    mg_defense_spec s = spec(name);
    mg_regime_data d = data(1);
    mg_regime *r = NULL;
    mg_train_state st;
    mg_rng rng;
    mg_train_data td = {.x = X, .y = Y, .n = N, .dev_x = DX, .dev_y = DY, .dev_n = NDEV};
    mg_rng_seed(&rng, 4, "regime", "shuffle");
    CHECK_OK(mg_regime_create(&s, m, &c, &d, 7, "node", &r, &err), &err);
    CHECK_OK(mg_train_state_init(&st, m, &c, &rng, &err), &err);
    mg_train_state_set_plugin(&st, mg_regime_plugin(r));
    if (!path) {
        CHECK_OK(mg_train_run(m, &td, &st, NULL, NULL, &err), &err);
    } else {
        save_hook_t h = {path};
        CHECK_INT_EQ(mg_train_run(m, &td, &st, save_at_1, &h, &err), MG_ERR_INTERRUPTED);
        mg_train_state_free(&st);
        mg_regime_destroy(&r);
        mg_model_destroy(&m);
        m = mlp();
        c = cfg(3);
        CHECK_OK(mg_regime_create(&s, m, &c, &d, 7, "node", &r, &err), &err);
        CHECK_OK(mg_train_state_init(&st, m, &c, &rng, &err), &err);
        mg_train_state_set_plugin(&st, mg_regime_plugin(r));
        CHECK_OK(mg_train_checkpoint_load(path, m, &st, &err), &err);
        CHECK_OK(mg_train_run(m, &td, &st, NULL, NULL, &err), &err);
    }
    mg_train_state_free(&st);
    mg_regime_destroy(&r);
    return m;
}

static void test_resume(void)
{
    static const char *const names[] = {"adv-reg", "dp-sgd"};
    char path[512];
    tmp_path("regime_ckpt.h5", path, sizeof path);
    for (int i = 0; i < 2; i++) {
        mg_model *a = train_under(names[i], NULL);
        mg_model *b = train_under(names[i], path);
        int same = memcmp(mg_model_params(a), mg_model_params(b), mg_model_n_params(a) * sizeof(float)) == 0;
        if (!same)
            fprintf(stderr, "%s: a resumed run differs from one straight through\n", names[i]);
        CHECK(same);
        unlink(path);
        mg_model_destroy(&a);
        mg_model_destroy(&b);
    }
}

int main(void)
{
    mg_h5_quiet();
    make_data();
    test_base_and_smoothing();
    test_dp();
    test_logit_losses();
    test_wemem();
    test_resume();
    MG_TEST_MAIN_END();
}
