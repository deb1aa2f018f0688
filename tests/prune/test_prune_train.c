/*
 * test_prune_train.c: the pruning methods that act through the training
 * loop. ADMM's regime (mg_admm_plugin): Z and U stay as initialised through
 * the first epoch and move once per epoch after it; a run checkpointed
 * mid-way and resumed into a fresh model, state and ADMM state gives the
 * bits of a run straight through, and so does a checkpoint of the finished
 * run, which resumes without training; a checkpoint of another sparsity is
 * refused; the hard pruning then reaches exactly the requested count per
 * tensor with the masked weights zero. Slimming's penalty (mg_train_cfg.bn_l1):
 * it shrinks the batch-norm scales against plain training, it is applied
 * after a regime's step (a plain-step regime with the penalty gives the bits
 * of plain training with it), and it joins the checkpoint fingerprint only
 * when on.
 */
#include "mg_test.h"
#include "miagrid/prune.h"
#include "miagrid/store.h"

#include <math.h>
#include <unistd.h>

enum { N = 48, D = 6, K = 3, EPOCHS = 4 };
#define SPARSITY 0.5
#define RHO 0.05

static float X[N * D];
static int32_t Y[N];

static void make_data(void)
{
    mg_rng r;
    mg_rng_seed(&r, 5, "prune-train", "data");
    for (int i = 0; i < N; i++) {
        Y[i] = i % K;
        for (int j = 0; j < D; j++)
            X[i * D + j] = (float)(mg_rng_normal(&r) + (j % K == Y[i] ? 1.5 : 0.0));
    }
}

static mg_model *mlp(void)
{
    static const int hidden[1] = {8};
    mg_model_cfg mc = {.arch = "mlp", .hidden = hidden, .n_hidden = 1, .act = MG_ACT_TANH,
                       .in_c = 1, .in_h = 1, .in_w = D, .n_classes = K};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&mc, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, 9, "prune-train", "init");
    mg_model_init_params(m, &r);
    return m;
}

static mg_train_cfg cfg(int epochs)
{
    mg_train_cfg c;
    memset(&c, 0, sizeof c);
    c.epochs = epochs;
    c.batch = 8;
    c.optim.kind = MG_OPT_SGD;
    c.optim.lr = 0.05;
    c.optim.momentum = 0.9;
    return c;
}

static void state_for(mg_train_state *s, mg_model *m, const mg_train_cfg *c, const mg_train_plugin *p)
{
    mg_error err = {0};
    mg_rng r;
    mg_rng_seed(&r, 1, "prune-train", "shuffle");
    CHECK_OK(mg_train_state_init(s, m, c, &r, &err), &err);
    mg_train_state_set_plugin(s, p);
}

typedef struct {
    const char *path;
    int at;
} stop_hook;

static mg_status save_and_stop(void *user, mg_model *m, const mg_train_state *s, int *stop, mg_error *err)
{
    stop_hook *h = user;
    if (s->epochs_done == h->at) {
        *stop = 1;
        return mg_train_checkpoint_save(h->path, m, s, err);
    }
    return MG_OK;
}

static int same_floats(const float *a, const float *b, size_t n)
{
    return n == 0 || memcmp(a, b, n * sizeof(float)) == 0;
}

static int all_zero(const float *v, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (v[i] != 0.0f)
            return 0;
    return 1;
}

/* A fresh model and ADMM state, a checkpoint loaded, the rest run. */
static void resume_from(const char *path, const mg_model *ref, const mg_admm *aref, int expect_epochs_run)
{
    mg_error err = {0};
    mg_model *m = mlp();
    mg_admm a;
    mg_train_plugin p;
    mg_train_state s;
    mg_train_cfg c = cfg(EPOCHS);
    mg_train_data d = {.x = X, .y = Y, .n = N};
    CHECK_OK(mg_admm_init(&a, m, SPARSITY, NULL, RHO, &err), &err);
    a.rho = 123.0; /* the checkpoint's rho wins */
    mg_admm_plugin(&a, m, &p);
    state_for(&s, m, &c, &p);
    CHECK_OK(mg_train_checkpoint_load(path, m, &s, &err), &err);
    int before = s.epochs_done;
    CHECK_OK(mg_train_run(m, &d, &s, NULL, NULL, &err), &err);
    CHECK_INT_EQ(s.epochs_done - before, expect_epochs_run);
    CHECK(a.rho == RHO);
    CHECK(same_floats(mg_model_params(m), mg_model_params((mg_model *)ref), mg_model_n_params(m)));
    CHECK(same_floats(a.Z, aref->Z, a.n) && same_floats(a.U, aref->U, a.n));
    mg_train_state_free(&s);
    mg_admm_free(&a);
    mg_model_destroy(&m);
}

static void test_admm_regime(void)
{
    char path[512];
    const char *tmp = getenv("MG_TEST_TMP");
    snprintf(path, sizeof path, "%s/prune_train_admm.h5", tmp ? tmp : "/tmp");
    mg_error err = {0};
    mg_train_data d = {.x = X, .y = Y, .n = N};

    /* One epoch: Z is still the projection of the initial W, U still 0. */
    mg_model *m1 = mlp();
    mg_admm a1;
    mg_train_plugin p1;
    mg_train_state s1;
    mg_train_cfg c1 = cfg(1);
    CHECK_OK(mg_admm_init(&a1, m1, SPARSITY, NULL, RHO, &err), &err);
    float *z0 = malloc(a1.n * sizeof(float));
    memcpy(z0, a1.Z, a1.n * sizeof(float));
    mg_admm_plugin(&a1, m1, &p1);
    CHECK(strcmp(p1.name, "admm") == 0 && a1.model == m1);
    state_for(&s1, m1, &c1, &p1);
    CHECK_OK(mg_train_run(m1, &d, &s1, NULL, NULL, &err), &err);
    CHECK(same_floats(z0, a1.Z, a1.n) && all_zero(a1.U, a1.n));
    mg_train_state_free(&s1);
    mg_admm_free(&a1);
    mg_model_destroy(&m1);

    /* Straight through: the updates moved Z and U, and the augmented term
     * pulled W towards Z (it differs from plain training). */
    mg_model *a_m = mlp(), *plain = mlp();
    mg_admm a;
    mg_train_plugin p;
    mg_train_state s;
    mg_train_cfg c = cfg(EPOCHS);
    CHECK_OK(mg_admm_init(&a, a_m, SPARSITY, NULL, RHO, &err), &err);
    mg_admm_plugin(&a, a_m, &p);
    state_for(&s, a_m, &c, &p);
    CHECK_OK(mg_train_run(a_m, &d, &s, NULL, NULL, &err), &err);
    CHECK(!same_floats(z0, a.Z, a.n) && !all_zero(a.U, a.n));
    mg_train_state ps;
    state_for(&ps, plain, &c, NULL);
    CHECK_OK(mg_train_run(plain, &d, &ps, NULL, NULL, &err), &err);
    CHECK(!same_floats(mg_model_params(plain), mg_model_params(a_m), mg_model_n_params(a_m)));
    mg_train_state_free(&ps);
    mg_model_destroy(&plain);
    double res = mg_admm_residual(&a, a_m);
    CHECK(isfinite(res) && res > 0.0 && res < 1.0);
    printf("  primal residual after %d epochs: %g\n", EPOCHS, res);

    /* Stopped after 2 epochs and resumed: the same bits. */
    {
        mg_model *m = mlp();
        mg_admm b;
        mg_train_plugin pb;
        mg_train_state sb;
        CHECK_OK(mg_admm_init(&b, m, SPARSITY, NULL, RHO, &err), &err);
        mg_admm_plugin(&b, m, &pb);
        state_for(&sb, m, &c, &pb);
        stop_hook h = {path, 2};
        CHECK_INT_EQ(mg_train_run(m, &d, &sb, save_and_stop, &h, &err), MG_ERR_INTERRUPTED);
        mg_train_state_free(&sb);
        mg_admm_free(&b);
        mg_model_destroy(&m);
    }
    resume_from(path, a_m, &a, EPOCHS - 2);

    /* Another sparsity does not take that checkpoint, and changes nothing. */
    {
        mg_model *m = mlp();
        mg_admm b;
        mg_train_plugin pb;
        mg_train_state sb;
        CHECK_OK(mg_admm_init(&b, m, 0.25, NULL, RHO, &err), &err);
        float *zb = malloc(b.n * sizeof(float));
        memcpy(zb, b.Z, b.n * sizeof(float));
        mg_admm_plugin(&b, m, &pb);
        state_for(&sb, m, &c, &pb);
        CHECK_INT_EQ(mg_train_checkpoint_load(path, m, &sb, &err), MG_ERR_STATE);
        printf("  expected error: %s\n", err.msg);
        CHECK(sb.epochs_done == 0 && same_floats(zb, b.Z, b.n) && b.rho == RHO);
        free(zb);
        mg_train_state_free(&sb);
        mg_admm_free(&b);
        mg_model_destroy(&m);
    }

    /* The finished run's state resumes without training a step. */
    CHECK_OK(mg_train_checkpoint_save(path, a_m, &s, &err), &err);
    resume_from(path, a_m, &a, 0);
    unlink(path);

    /* Hard pruning: exactly round(s * n) masked per prunable tensor, all 0. */
    CHECK_OK(mg_admm_finalize(&a, a_m, &err), &err);
    const float *w = mg_model_params(a_m), *mk = mg_model_masks(a_m);
    size_t total = 0, masked = 0;
    for (size_t t = 0; t < mg_model_n_tensors(a_m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(a_m, t);
        if (!ti->prunable)
            continue;
        size_t mt = 0;
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++) {
            mt += mk[i] == 0.0f;
            CHECK(mk[i] != 0.0f || w[i] == 0.0f);
        }
        CHECK_INT_EQ((long)mt, (long)a.n_prune[t]);
        CHECK_INT_EQ((long)mt, (long)llround(SPARSITY * (double)ti->count));
        total += ti->count;
        masked += mt;
    }
    CHECK_NEAR(mg_model_mask_sparsity(a_m), (double)masked / (double)total, 1e-15);

    free(z0);
    mg_train_state_free(&s);
    mg_admm_free(&a);
    mg_model_destroy(&a_m);
}

/* ---- slimming's penalty ------------------------------------------------------------------ */

enum { IMG_N = 16 };
static float IX[IMG_N * 3 * 32 * 32];
static int32_t IY[IMG_N];

static mg_model *resnet20(void)
{
    mg_model_cfg mc = {.arch = "resnet20", .act = MG_ACT_RELU, .in_c = 3, .in_h = 32, .in_w = 32, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&mc, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, 4, "prune-train", "resnet");
    mg_model_init_params(m, &r);
    return m;
}

/* Sum of |gamma| over the batch norms fed by a layer of their own. */
static double gamma_l1(const mg_model *m)
{
    double s = 0.0;
    const float *p = mg_model_params((mg_model *)m);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        if (mg_prune_bn_source(m, t) < 0)
            continue;
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        for (size_t i = ti->offset; i < ti->offset + ti->count; i++)
            s += fabs((double)p[i]);
    }
    return s;
}

static mg_status plain_step(void *user, mg_model *m, const float *xb, const int32_t *yb, const uint32_t *rows, int b,
                            int epoch, double *loss, int *n_correct, mg_error *err)
{
    (void)user, (void)rows, (void)epoch;
    mg_status st = mg_model_forward(m, xb, b, 1, NULL, err);
    return st == MG_OK ? mg_model_backward(m, yb, b, loss, n_correct, err) : st;
}

static void run_img(mg_model *m, double bn_l1, const mg_train_plugin *p)
{
    mg_error err = {0};
    mg_train_cfg c = cfg(2);
    c.optim.lr = 0.1;
    c.bn_l1 = bn_l1;
    mg_train_state s;
    mg_train_data d = {.x = IX, .y = IY, .n = IMG_N};
    state_for(&s, m, &c, p);
    CHECK_OK(mg_train_run(m, &d, &s, NULL, NULL, &err), &err);
    mg_train_state_free(&s);
}

static void test_slim_penalty(void)
{
    mg_rng r;
    mg_rng_seed(&r, 6, "prune-train", "images");
    for (int i = 0; i < IMG_N; i++) {
        IY[i] = i % 10;
        for (int j = 0; j < 3 * 32 * 32; j++)
            IX[(size_t)i * 3 * 32 * 32 + (size_t)j] = (float)(0.5 * mg_rng_normal(&r) + 0.1 * IY[i]);
    }
    mg_model *init = resnet20(), *plain = resnet20(), *pen = resnet20(), *reg = resnet20();
    run_img(plain, 0.0, NULL);
    run_img(pen, 0.05, NULL);
    double g0 = gamma_l1(init), g_plain = gamma_l1(plain), g_pen = gamma_l1(pen);
    printf("  sum |gamma|: initial %.4f, plain %.4f, with the penalty %.4f\n", g0, g_plain, g_pen);
    CHECK(g_pen < g_plain - 1.0);

    /* A regime's step: the penalty is added after it. */
    mg_train_plugin p;
    memset(&p, 0, sizeof p);
    p.name = "plain-step";
    p.step = plain_step;
    run_img(reg, 0.05, &p);
    CHECK(same_floats(mg_model_params(reg), mg_model_params(pen), mg_model_n_params(pen)));

    /* Refused when negative or not finite. */
    mg_error err = {0};
    mg_train_cfg c = cfg(1);
    mg_train_state s;
    c.bn_l1 = -1e-4;
    CHECK_INT_EQ(mg_train_state_init(&s, init, &c, &r, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "bn_l1") != NULL);
    mg_train_state_free(&s);
    c.bn_l1 = NAN;
    CHECK_INT_EQ(mg_train_state_init(&s, init, &c, &r, &err), MG_ERR_ARG);
    mg_train_state_free(&s);
    mg_model_destroy(&init);
    mg_model_destroy(&plain);
    mg_model_destroy(&pen);
    mg_model_destroy(&reg);
}

/* The fingerprint names bn_l1 only when it is on: a checkpoint of plain
 * training reads as before, one with the penalty only under the penalty. */
static void test_fingerprint(void)
{
    char path[512];
    const char *tmp = getenv("MG_TEST_TMP");
    snprintf(path, sizeof path, "%s/prune_train_bn.h5", tmp ? tmp : "/tmp");
    mg_error err = {0};
    mg_model *m = mlp();
    mg_train_cfg c = cfg(2), cp = cfg(2);
    cp.bn_l1 = 1e-4;
    mg_train_state s;
    char desc[2048];

    state_for(&s, m, &c, NULL);
    CHECK_OK(mg_train_checkpoint_save(path, m, &s, &err), &err);
    mg_train_state_free(&s);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK(f >= 0);
    CHECK_OK(mg_h5_get_attr_str(f, "train_cfg", desc, sizeof desc, &err), &err);
    H5Fclose(f);
    CHECK(strstr(desc, "bn_l1") == NULL);
    state_for(&s, m, &cp, NULL);
    CHECK_INT_EQ(mg_train_checkpoint_load(path, m, &s, &err), MG_ERR_STATE);
    mg_train_state_free(&s);

    state_for(&s, m, &cp, NULL);
    CHECK_OK(mg_train_checkpoint_save(path, m, &s, &err), &err);
    mg_train_state_free(&s);
    f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    CHECK_OK(mg_h5_get_attr_str(f, "train_cfg", desc, sizeof desc, &err), &err);
    H5Fclose(f);
    CHECK(strstr(desc, " bn_l1=0.0001") != NULL);
    state_for(&s, m, &c, NULL);
    CHECK_INT_EQ(mg_train_checkpoint_load(path, m, &s, &err), MG_ERR_STATE);
    CHECK(strstr(err.msg, "bn_l1") != NULL);
    printf("  expected error: %s\n", err.msg);
    mg_train_state_free(&s);
    state_for(&s, m, &cp, NULL);
    CHECK_OK(mg_train_checkpoint_load(path, m, &s, &err), &err);
    mg_train_state_free(&s);
    unlink(path);
    mg_model_destroy(&m);
}

int main(void)
{
    mg_h5_quiet();
    make_data();
    test_admm_regime();
    test_slim_penalty();
    test_fingerprint();
    MG_TEST_MAIN_END();
}
