/*
 * test_train_plugin.c: training regimes (mg_train_plugin). A step that does
 * the plain forward and backward gives plain training's bits; an epoch hook
 * that picks rows restricts every batch to them; a regime with random state
 * of its own, checkpointed mid-training and resumed into a fresh model,
 * state and regime, gives the bits of a run straight through; checkpoints
 * of one regime do not load under another or under none; bad row choices
 * are refused.
 */
#include "mg_test.h"
#include "miagrid/nn.h"
#include "miagrid/store.h"

#include <unistd.h>

enum { N = 48, D = 6, K = 3, EPOCHS = 4 };

static float X[N * D];
static int32_t Y[N];

static void make_data(void)
{
    mg_rng r;
    mg_rng_seed(&r, 5, "plugin", "data");
    for (int i = 0; i < N; i++) {
        Y[i] = i % K;
        for (int j = 0; j < D; j++)
            X[i * D + j] = (float)(mg_rng_normal(&r) + (j % K == Y[i] ? 1.5 : 0.0));
    }
}

static mg_model *model(void)
{
    static const int hidden[1] = {8};
    mg_model_cfg mc = {.arch = "mlp", .hidden = hidden, .n_hidden = 1, .act = MG_ACT_TANH,
                       .in_c = 1, .in_h = 1, .in_w = D, .n_classes = K};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&mc, &m, &err), &err);
    mg_rng r;
    mg_rng_seed(&r, 9, "plugin", "init");
    mg_model_init_params(m, &r);
    return m;
}

static mg_train_cfg cfg(void)
{
    mg_train_cfg c;
    memset(&c, 0, sizeof c);
    c.epochs = EPOCHS;
    c.batch = 8;
    c.optim.kind = MG_OPT_SGD;
    c.optim.lr = 0.05;
    c.optim.momentum = 0.9;
    return c;
}

/* A regime whose step is the plain one plus, when `noisy`, a draw from
 * its own stream added to every gradient; it records the rows it saw. */
typedef struct {
    int noisy;
    mg_rng rng;
    int seen[N];
    int half;      /* epoch_rows: keep the even rows only */
    int bad;       /* epoch_rows: claim more rows than there are */
} toy;

static mg_status toy_step(void *user, mg_model *m, const float *xb, const int32_t *yb, const uint32_t *rows, int b,
                          int epoch, double *loss, int *n_correct, mg_error *err)
{
    toy *t = user;
    for (int i = 0; i < b; i++)
        t->seen[rows[i]]++;
    mg_status st = mg_model_forward(m, xb, b, 1, NULL, err);
    if (st == MG_OK)
        st = mg_model_backward(m, yb, b, loss, n_correct, err);
    if (st == MG_OK && t->noisy) {
        float *g = mg_model_grads(m);
        for (size_t i = 0; i < mg_model_n_params(m); i++)
            g[i] += (float)(0.01 * mg_rng_normal(&t->rng));
    }
    return st;
}

static mg_status toy_rows(void *user, int epoch, uint32_t *rows, size_t *n_rows, mg_error *err)
{
    toy *t = user;
    if (t->bad) {
        *n_rows = N + 1;
        return MG_OK;
    }
    size_t k = 0;
    for (size_t i = 0; i < N; i += 2)
        rows[k++] = (uint32_t)i;
    *n_rows = k;
    return MG_OK;
}

static mg_status toy_save(void *user, hid_t loc, mg_error *err)
{
    toy *t = user;
    hsize_t four = 4;
    return mg_h5_write(loc, "rng", H5T_NATIVE_UINT64, 1, &four, t->rng.s, err);
}

static mg_status toy_load(void *user, hid_t loc, mg_error *err)
{
    toy *t = user;
    void *buf = NULL;
    hsize_t d[4];
    int nd = 0;
    mg_status st = mg_h5_read(loc, "rng", H5T_NATIVE_UINT64, &buf, d, &nd, err);
    if (st != MG_OK)
        return st;
    if (nd != 1 || d[0] != 4)
        st = mg_error_set(err, MG_ERR_STATE, "rng is not 4 numbers");
    else
        memcpy(t->rng.s, buf, sizeof t->rng.s);
    free(buf);
    return st;
}

static void plugin_of(toy *t, mg_train_plugin *p, const char *name)
{
    memset(p, 0, sizeof *p);
    p->name = name;
    p->user = t;
    p->step = toy_step;
    p->epoch_rows = t->half || t->bad ? toy_rows : NULL;
    p->save = toy_save;
    p->load = toy_load;
}

static mg_status train(mg_model *m, const mg_train_plugin *p, mg_train_hook hook, void *user, mg_train_state *s)
{
    mg_error err = {0};
    mg_train_cfg c = cfg();
    mg_rng r;
    mg_rng_seed(&r, 1, "plugin", "shuffle");
    mg_train_data d = {.x = X, .y = Y, .n = N};
    CHECK_OK(mg_train_state_init(s, m, &c, &r, &err), &err);
    mg_train_state_set_plugin(s, p);
    return mg_train_run(m, &d, s, hook, user, &err);
}

static void test_plain_step_is_plain(void)
{
    mg_model *a = model(), *b = model();
    mg_train_state sa, sb;
    toy t;
    mg_train_plugin p;
    memset(&t, 0, sizeof t);
    plugin_of(&t, &p, "toy");
    CHECK_INT_EQ(train(a, NULL, NULL, NULL, &sa), MG_OK);
    CHECK_INT_EQ(train(b, &p, NULL, NULL, &sb), MG_OK);
    CHECK(memcmp(mg_model_params(a), mg_model_params(b), mg_model_n_params(a) * sizeof(float)) == 0);
    CHECK(memcmp(sa.hist.loss, sb.hist.loss, EPOCHS * sizeof(double)) == 0);
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(t.seen[i], EPOCHS);
    mg_train_state_free(&sa);
    mg_train_state_free(&sb);
    mg_model_destroy(&a);
    mg_model_destroy(&b);
}

static void test_epoch_rows(void)
{
    mg_model *m = model();
    mg_train_state s;
    toy t;
    mg_train_plugin p;
    memset(&t, 0, sizeof t);
    t.half = 1;
    plugin_of(&t, &p, "toy");
    CHECK_INT_EQ(train(m, &p, NULL, NULL, &s), MG_OK);
    for (int i = 0; i < N; i++)
        CHECK_INT_EQ(t.seen[i], i % 2 ? 0 : EPOCHS);
    CHECK(s.hist.train_acc[EPOCHS - 1] >= 0.0 && s.hist.train_acc[EPOCHS - 1] <= 1.0);
    mg_train_state_free(&s);

    t.bad = 1;
    mg_error err = {0};
    mg_train_cfg c = cfg();
    mg_rng r;
    mg_rng_seed(&r, 1, "plugin", "shuffle");
    mg_train_data d = {.x = X, .y = Y, .n = N};
    plugin_of(&t, &p, "toy");
    CHECK_OK(mg_train_state_init(&s, m, &c, &r, &err), &err);
    mg_train_state_set_plugin(&s, &p);
    CHECK_INT_EQ(mg_train_run(m, &d, &s, NULL, NULL, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "toy") != NULL);
    mg_train_state_free(&s);
    mg_model_destroy(&m);
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

static void test_resume(void)
{
    char path[512];
    const char *tmp = getenv("MG_TEST_TMP");
    snprintf(path, sizeof path, "%s/plugin_ckpt.h5", tmp ? tmp : "/tmp");
    mg_error err = {0};

    /* straight through */
    mg_model *a = model();
    mg_train_state sa;
    toy ta;
    mg_train_plugin pa;
    memset(&ta, 0, sizeof ta);
    ta.noisy = 1;
    mg_rng_seed(&ta.rng, 3, "plugin", "noise");
    plugin_of(&ta, &pa, "toy");
    CHECK_INT_EQ(train(a, &pa, NULL, NULL, &sa), MG_OK);

    /* two epochs, checkpoint, stop */
    mg_model *b = model();
    mg_train_state sb;
    toy tb;
    mg_train_plugin pb;
    memset(&tb, 0, sizeof tb);
    tb.noisy = 1;
    mg_rng_seed(&tb.rng, 3, "plugin", "noise");
    plugin_of(&tb, &pb, "toy");
    stop_hook h = {path, 2};
    CHECK_INT_EQ(train(b, &pb, save_and_stop, &h, &sb), MG_ERR_INTERRUPTED);
    mg_train_state_free(&sb);
    mg_model_destroy(&b);

    /* a fresh model, state and regime (its stream seeded elsewhere) resume */
    mg_model *c = model();
    mg_train_state sc;
    toy tc;
    mg_train_plugin pc;
    memset(&tc, 0, sizeof tc);
    tc.noisy = 1;
    mg_rng_seed(&tc.rng, 77, "plugin", "other");
    plugin_of(&tc, &pc, "toy");
    mg_train_cfg cf = cfg();
    mg_rng r;
    mg_rng_seed(&r, 1, "plugin", "shuffle");
    mg_train_data d = {.x = X, .y = Y, .n = N};
    CHECK_OK(mg_train_state_init(&sc, c, &cf, &r, &err), &err);
    mg_train_state_set_plugin(&sc, &pc);
    CHECK_OK(mg_train_checkpoint_load(path, c, &sc, &err), &err);
    CHECK_OK(mg_train_run(c, &d, &sc, NULL, NULL, &err), &err);
    CHECK(memcmp(mg_model_params(a), mg_model_params(c), mg_model_n_params(a) * sizeof(float)) == 0);
    CHECK(memcmp(ta.rng.s, tc.rng.s, sizeof ta.rng.s) == 0);
    mg_train_state_free(&sc);

    /* another regime, or none, does not resume it */
    mg_train_plugin other;
    plugin_of(&tc, &other, "other");
    CHECK_OK(mg_train_state_init(&sc, c, &cf, &r, &err), &err);
    mg_train_state_set_plugin(&sc, &other);
    CHECK_INT_EQ(mg_train_checkpoint_load(path, c, &sc, &err), MG_ERR_STATE);
    CHECK(strstr(err.msg, "regime") != NULL);
    mg_train_state_free(&sc);
    CHECK_OK(mg_train_state_init(&sc, c, &cf, &r, &err), &err);
    CHECK_INT_EQ(mg_train_checkpoint_load(path, c, &sc, &err), MG_ERR_STATE);
    mg_train_state_free(&sc);

    unlink(path);
    mg_train_state_free(&sa);
    mg_model_destroy(&a);
    mg_model_destroy(&c);
}

int main(void)
{
    mg_h5_quiet();
    make_data();
    test_plain_step_is_plain();
    test_epoch_rows();
    test_resume();
    MG_TEST_MAIN_END();
}
