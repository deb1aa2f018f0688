/*
 * test_ckpt.c: resumable training. For each configuration (SGD with momentum
 * and Nesterov under a multistep schedule, Adam under cosine, AdamW with
 * augmentation, early stopping on a dev set, a batch-norm net with buffers),
 * training N epochs straight must give the same bits as training k epochs,
 * checkpointing to a file from the epoch hook, loading into a fresh model and
 * state, and finishing: parameters, masks, buffers, optimiser state, rng
 * streams and history. Also: a finished checkpoint resumes to a no-op, and
 * loads that must fail (another configuration or model, missing or foreign
 * files) fail cleanly and change nothing.
 */
#include "mg_test.h"
#include "miagrid/nn.h"
#include "miagrid/store.h"

#include <unistd.h>

enum { NTR = 64, NDEV = 32 };

typedef struct {
    const char *name;
    mg_model_cfg mc;
    mg_train_cfg tc;
    int mask;      /* mask every fifth prunable weight */
    int dev;       /* give a dev set */
    int stop_at;   /* epochs trained before the checkpoint */
} ckpt_case;

typedef struct {
    float *x, *dx;
    int32_t *y, *dy;
    int c, h, w;
} dataset;

/* Class k brightens row band k; dev labels are partly noise so that early
 * stopping has something to find. */
static void make_data(dataset *d, int c, int h, int w, int K)
{
    size_t dim = (size_t)c * h * w;
    mg_rng r;
    mg_rng_seed(&r, 31, "ckpt", "data");
    d->c = c, d->h = h, d->w = w;
    d->x = malloc(NTR * dim * sizeof(float));
    d->dx = malloc(NDEV * dim * sizeof(float));
    d->y = malloc(NTR * sizeof(int32_t));
    d->dy = malloc(NDEV * sizeof(int32_t));
    for (int part = 0; part < 2; part++) {
        size_t n = part ? NDEV : NTR;
        float *x = part ? d->dx : d->x;
        int32_t *y = part ? d->dy : d->y;
        for (size_t i = 0; i < n; i++) {
            y[i] = (int32_t)(i % (size_t)K);
            for (size_t p = 0; p < dim; p++) {
                int row = (int)((p / (size_t)w) % (size_t)h);
                x[i * dim + p] = (float)(0.5 * mg_rng_normal(&r) + (row * K / h == y[i] ? 1.0 : 0.0));
            }
            if (part && i % 2)
                y[i] = (int32_t)mg_rng_below(&r, (uint64_t)K);
        }
    }
}

static void free_data(dataset *d)
{
    free(d->x), free(d->dx), free(d->y), free(d->dy);
}

static mg_model *fresh_model(const mg_model_cfg *mc)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(mc, &m, &err), &err);
    return m;
}

/* A model as a training run starts it: initialised, and masked if asked
 * (masked weights keep their values: the first step must zero them). */
static mg_model *start_model(const ckpt_case *k)
{
    mg_model *m = fresh_model(&k->mc);
    if (!m)
        return NULL;
    mg_rng r;
    mg_rng_seed(&r, 32, k->name, "init");
    mg_model_init_params(m, &r);
    for (size_t t = 0; k->mask && t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        for (size_t i = 0; ti->prunable && i < ti->count; i += 5)
            mg_model_masks(m)[ti->offset + i] = 0.0f;
    }
    return m;
}

typedef struct {
    const char *path;
    int stop_at;      /* 0: never stop */
    int calls;
    mg_status saved;  /* status of the last save */
} saver;

/* Saves a checkpoint after every epoch, as a scheduler would on a timer. */
static mg_status save_hook(void *user, mg_model *m, const mg_train_state *s, int *stop, mg_error *err)
{
    saver *sv = user;
    sv->calls++;
    if (sv->path) {
        sv->saved = mg_train_checkpoint_save(sv->path, m, s, err);
        if (sv->saved != MG_OK)
            return sv->saved;
    }
    if (sv->stop_at && s->epochs_done == sv->stop_at)
        *stop = 1;
    return MG_OK;
}

static int same_doubles(const double *a, const double *b, int n)
{
    return n == 0 || memcmp(a, b, (size_t)n * sizeof(double)) == 0;
}

/* Everything a resumed run must reproduce. */
static void compare_runs(const char *name, mg_model *a, const mg_train_state *sa, mg_model *b,
                         const mg_train_state *sb)
{
    size_t np = mg_model_n_params(a), nb = mg_model_n_buffers(a);
    int params = memcmp(mg_model_params(a), mg_model_params(b), np * sizeof(float)) == 0;
    int masks = memcmp(mg_model_masks(a), mg_model_masks(b), np * sizeof(float)) == 0;
    int buffers = nb == 0 || memcmp(mg_model_buffers(a), mg_model_buffers(b), nb * sizeof(float)) == 0;
    int opt = sa->opt.step == sb->opt.step && memcmp(sa->opt.m1, sb->opt.m1, np * sizeof(float)) == 0 &&
              (!sa->opt.m2 || memcmp(sa->opt.m2, sb->opt.m2, np * sizeof(float)) == 0);
    int rngs = memcmp(&sa->shuffle, &sb->shuffle, sizeof sa->shuffle) == 0 &&
               memcmp(&sa->augment, &sb->augment, sizeof sa->augment) == 0 &&
               memcmp(&sa->dropout, &sb->dropout, sizeof sa->dropout) == 0;
    const mg_history *ha = &sa->hist, *hb = &sb->hist;
    int n = ha->n_epochs;
    int hist = n == hb->n_epochs && ha->best_epoch == hb->best_epoch && same_doubles(ha->loss, hb->loss, n) &&
               same_doubles(ha->train_acc, hb->train_acc, n) && same_doubles(ha->lr, hb->lr, n) &&
               same_doubles(ha->dev_acc, hb->dev_acc, n);
    int flags = sa->epochs_done == sb->epochs_done && sa->finished == sb->finished && sb->finished;
    printf("  %-22s params %s, masks %s, buffers %s (%zu), optimiser %s, rng %s, history %s (%d epochs, best %d)\n",
           name, params ? "same" : "DIFFER", masks ? "same" : "DIFFER", buffers ? "same" : "DIFFER", nb,
           opt ? "same" : "DIFFER", rngs ? "same" : "DIFFER", hist ? "same" : "DIFFER", n, ha->best_epoch + 1);
    CHECK(params);
    CHECK(masks);
    CHECK(buffers);
    CHECK(opt);
    CHECK(rngs);
    CHECK(hist);
    CHECK(flags);
}

static void ckpt_path(char *buf, size_t n, const char *leaf)
{
    const char *dir = getenv("MG_TEST_TMP");
    snprintf(buf, n, "%s/ckpt_%s.h5", dir && *dir ? dir : "/tmp", leaf);
}

static void run_case(const ckpt_case *k, const dataset *ds)
{
    mg_error err = {0};
    char path[1024], done_path[1024];
    ckpt_path(path, sizeof path, k->name);
    ckpt_path(done_path, sizeof done_path, "finished");
    mg_train_data d = {.x = ds->x, .y = ds->y, .n = NTR, .c = ds->c, .h = ds->h, .w = ds->w};
    if (k->dev) {
        d.dev_x = ds->dx;
        d.dev_y = ds->dy;
        d.dev_n = NDEV;
    }
    mg_rng seed, other;
    mg_rng_seed(&seed, 33, k->name, "shuffle");
    mg_rng_seed(&other, 34, k->name, "shuffle");

    /* A: straight through. */
    mg_model *a = start_model(k);
    mg_train_state sa;
    if (!a)
        return;
    CHECK_OK(mg_train_state_init(&sa, a, &k->tc, &seed, &err), &err);
    CHECK_OK(mg_train_run(a, &d, &sa, NULL, NULL, &err), &err);

    /* B: stopped by the hook after stop_at epochs, checkpointed every epoch. */
    mg_model *b = start_model(k);
    mg_train_state sb;
    saver sv = {.path = path, .stop_at = k->stop_at};
    CHECK_OK(mg_train_state_init(&sb, b, &k->tc, &seed, &err), &err);
    CHECK_INT_EQ(mg_train_run(b, &d, &sb, save_hook, &sv, &err), MG_ERR_INTERRUPTED);
    CHECK_INT_EQ(sv.calls, k->stop_at);
    CHECK_INT_EQ(sb.epochs_done, k->stop_at);
    mg_train_state_free(&sb);
    mg_model_destroy(&b);

    /* C: a fresh model and state (seeded differently: the file decides) finish the run. */
    mg_model *c = fresh_model(&k->mc);
    mg_train_state sc;
    saver sv2 = {.path = done_path};
    CHECK_OK(mg_train_state_init(&sc, c, &k->tc, &other, &err), &err);
    CHECK_OK(mg_train_checkpoint_load(path, c, &sc, &err), &err);
    CHECK_INT_EQ(sc.epochs_done, k->stop_at);
    CHECK_OK(mg_train_run(c, &d, &sc, save_hook, &sv2, &err), &err);
    CHECK_INT_EQ(sv2.calls, sa.hist.n_epochs - k->stop_at);
    compare_runs(k->name, a, &sa, c, &sc);

    /* D: the checkpoint of the finished run resumes to nothing to do. */
    mg_model *dm = fresh_model(&k->mc);
    mg_train_state sd;
    saver sv3 = {0};
    CHECK_OK(mg_train_state_init(&sd, dm, &k->tc, &other, &err), &err);
    CHECK_OK(mg_train_checkpoint_load(done_path, dm, &sd, &err), &err);
    CHECK_OK(mg_train_run(dm, &d, &sd, save_hook, &sv3, &err), &err);
    CHECK_INT_EQ(sv3.calls, 0);
    compare_runs("  (finished checkpoint)", a, &sa, dm, &sd);

    mg_train_state_free(&sa), mg_train_state_free(&sc), mg_train_state_free(&sd);
    mg_model_destroy(&a), mg_model_destroy(&c), mg_model_destroy(&dm);
    unlink(path);
    unlink(done_path);
}

static void test_resume(void)
{
    static int hidden[2] = {24, 16};
    dataset img;
    make_data(&img, 1, 8, 8, 4);
    const mg_model_cfg mlp = {.arch = "mlp", .hidden = hidden, .n_hidden = 2, .act = MG_ACT_RELU,
                              .in_c = 1, .in_h = 8, .in_w = 8, .n_classes = 4};
    ckpt_case cases[] = {
        {.name = "sgd-nesterov-multistep", .mc = mlp, .mask = 1, .stop_at = 3,
         .tc = {.epochs = 7, .batch = 16,
                .optim = {.kind = MG_OPT_SGD, .lr = 0.05, .momentum = 0.9, .nesterov = 1, .weight_decay = 5e-4},
                .schedule = {.kind = MG_LR_MULTISTEP, .n_milestones = 2, .milestones = {2, 5}, .gamma = 0.3}}},
        {.name = "adam-cosine", .mc = mlp, .mask = 1, .stop_at = 4,
         .tc = {.epochs = 6, .batch = 20,
                .optim = {.kind = MG_OPT_ADAM, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                          .weight_decay = 1e-4},
                .schedule = {.kind = MG_LR_COSINE, .eta_min = 1e-4}}},
        {.name = "adamw-augment", .mc = mlp, .mask = 1, .stop_at = 2,
         .tc = {.epochs = 5, .batch = 16,
                .optim = {.kind = MG_OPT_ADAMW, .lr = 0.01, .beta1 = 0.9, .beta2 = 0.999, .eps = 1e-8,
                          .weight_decay = 0.01},
                .augment = MG_AUGMENT_CROP | MG_AUGMENT_FLIP}},
        /* Best epoch 3 of 6: one checkpoint after it (the best copy travels in
         * the file), one before it. */
        {.name = "early-stopping", .mc = mlp, .mask = 1, .dev = 1, .stop_at = 4,
         .tc = {.epochs = 40, .batch = 16, .patience = 3, .optim = {.kind = MG_OPT_SGD, .lr = 0.1, .momentum = 0.9}}},
        {.name = "early-stopping-2", .mc = mlp, .mask = 1, .dev = 1, .stop_at = 2,
         .tc = {.epochs = 40, .batch = 16, .patience = 3, .optim = {.kind = MG_OPT_SGD, .lr = 0.1, .momentum = 0.9}}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++)
        run_case(&cases[i], &img);

    /* The early-stopping runs really stopped early; the first has its best
     * epoch before its checkpoint, the second after. */
    mg_error err = {0};
    mg_train_data d = {.x = img.x, .y = img.y, .n = NTR, .dev_x = img.dx, .dev_y = img.dy, .dev_n = NDEV};
    for (int i = 3; i <= 4; i++) {
        mg_model *m = start_model(&cases[i]);
        mg_train_state s;
        mg_rng seed;
        mg_rng_seed(&seed, 33, cases[i].name, "shuffle");
        CHECK_OK(mg_train_state_init(&s, m, &cases[i].tc, &seed, &err), &err);
        CHECK_OK(mg_train_run(m, &d, &s, NULL, NULL, &err), &err);
        CHECK(s.hist.n_epochs < 40 && s.hist.best_epoch >= 1);
        if (i == 3)
            CHECK(s.hist.best_epoch < cases[i].stop_at);
        else
            CHECK(s.hist.best_epoch >= cases[i].stop_at);
        mg_train_state_free(&s);
        mg_model_destroy(&m);
    }
    free_data(&img);

    /* Batch norm: the running statistics travel with the checkpoint. */
    dataset rgb;
    make_data(&rgb, 3, 8, 8, 3);
    ckpt_case bn = {.name = "resnet20-buffers", .stop_at = 2, .dev = 1,
                    .mc = {.arch = "resnet20", .in_c = 3, .in_h = 8, .in_w = 8, .n_classes = 3},
                    .tc = {.epochs = 3, .batch = 16, .patience = 5,
                           .optim = {.kind = MG_OPT_SGD, .lr = 0.05, .momentum = 0.9, .weight_decay = 5e-4}}};
    mg_model *probe = NULL;
    if (mg_model_create(&bn.mc, &probe, &err) == MG_OK && mg_model_n_buffers(probe) > 0)
        run_case(&bn, &rgb);
    else
        printf("  resnet20 on 3x8x8 not available here (%s): buffer round trip not exercised\n", err.msg);
    mg_model_destroy(&probe);
    free_data(&rgb);
}

static void test_load_errors(void)
{
    static int hidden[1] = {16}, other_hidden[1] = {17};
    mg_model_cfg mc = {.arch = "mlp", .hidden = hidden, .n_hidden = 1, .act = MG_ACT_RELU,
                       .in_c = 1, .in_h = 1, .in_w = 8, .n_classes = 3};
    mg_train_cfg tc = {.epochs = 4, .batch = 8, .optim = {.kind = MG_OPT_SGD, .lr = 0.1, .momentum = 0.9}};
    mg_error err = {0};
    char path[1024], foreign[1024];
    ckpt_path(path, sizeof path, "errors");
    ckpt_path(foreign, sizeof foreign, "foreign");
    mg_rng r;
    mg_rng_seed(&r, 35, "ckpt", "errors");
    mg_model *m = fresh_model(&mc);
    if (!m)
        return;
    mg_model_init_params(m, &r);
    mg_train_state s;
    CHECK_OK(mg_train_state_init(&s, m, &tc, &r, &err), &err);
    CHECK_OK(mg_train_checkpoint_save(path, m, &s, &err), &err);
    char tmp[1100];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    CHECK(access(path, R_OK) == 0 && access(tmp, F_OK) != 0);
    mg_train_state_free(&s);

    /* Another learning rate: refused, naming it; nothing changed. */
    mg_model *fresh = fresh_model(&mc);
    size_t bytes = mg_model_n_params(fresh) * sizeof(float);
    float *before = malloc(bytes);
    memcpy(before, mg_model_params(fresh), bytes);
    tc.optim.lr = 0.2;
    CHECK_OK(mg_train_state_init(&s, fresh, &tc, &r, &err), &err);
    CHECK_INT_EQ(mg_train_checkpoint_load(path, fresh, &s, &err), MG_ERR_STATE);
    printf("  expected error: %s\n", err.msg);
    CHECK(strstr(err.msg, "checkpoint: lr=0.1; this run: lr=0.2") != NULL);
    CHECK(memcmp(before, mg_model_params(fresh), bytes) == 0);
    CHECK_INT_EQ(s.epochs_done, 0);
    mg_train_state_free(&s);

    /* Another model. */
    tc.optim.lr = 0.1;
    mg_model_cfg mc2 = mc;
    mc2.hidden = other_hidden;
    mg_model *wide = fresh_model(&mc2);
    CHECK_OK(mg_train_state_init(&s, wide, &tc, &r, &err), &err);
    CHECK_INT_EQ(mg_train_checkpoint_load(path, wide, &s, &err), MG_ERR_STATE);
    printf("  expected error: %s\n", err.msg);
    CHECK(strstr(err.msg, "written for another model") != NULL);
    mg_train_state_free(&s);

    /* Missing and foreign files. */
    CHECK_OK(mg_train_state_init(&s, fresh, &tc, &r, &err), &err);
    CHECK_INT_EQ(mg_train_checkpoint_load("/nonexistent/ckpt.h5", fresh, &s, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "/nonexistent/ckpt.h5") != NULL);
    hid_t f = H5Fcreate(foreign, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    CHECK(f >= 0);
    if (f >= 0)
        H5Fclose(f);
    CHECK_INT_EQ(mg_train_checkpoint_load(foreign, fresh, &s, &err), MG_ERR_HDF5);
    printf("  expected error: %s\n", err.msg);
    CHECK(strstr(err.msg, "not a miagrid training checkpoint") != NULL);
    CHECK_INT_EQ(mg_train_checkpoint_save("/nonexistent/dir/ckpt.h5", fresh, &s, &err), MG_ERR_IO);
    mg_train_state_free(&s);

    /* A state set up for one model does not train another. */
    CHECK_OK(mg_train_state_init(&s, m, &tc, &r, &err), &err);
    float x[8 * 8] = {0};
    int32_t y[8] = {0};
    mg_train_data d = {.x = x, .y = y, .n = 8};
    CHECK_INT_EQ(mg_train_run(wide, &d, &s, NULL, NULL, &err), MG_ERR_ARG);
    mg_train_state_free(&s);

    free(before);
    mg_model_destroy(&m), mg_model_destroy(&fresh), mg_model_destroy(&wide);
    unlink(path);
    unlink(foreign);
}

int main(void)
{
    mg_h5_quiet();
    test_resume();
    test_load_errors();
    MG_TEST_MAIN_END();
}
