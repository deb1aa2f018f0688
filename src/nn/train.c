/*
 * train.c: the mini-batch training loop. Each epoch draws a fresh permutation
 * from the state's shuffle stream and, with augmentation, each sample's crop
 * and flip from its augment stream, so a (model, data, state) triple always
 * yields the same bits; the loop itself adds no threads or reductions whose
 * order could vary. Everything that carries over between epochs lives in
 * mg_train_state, which is what makes a run resumable from a checkpoint at
 * any epoch boundary (ckpt.c).
 */
#include "miagrid/nn.h"
#include "miagrid/prune.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void mg_history_free(mg_history *h)
{
    if (!h)
        return;
    free(h->loss);
    free(h->train_acc);
    free(h->seconds);
    free(h->lr);
    free(h->dev_acc);
    memset(h, 0, sizeof *h);
    h->best_epoch = -1;
}

void mg_train_state_free(mg_train_state *s)
{
    if (!s)
        return;
    mg_optim_free(&s->opt);
    mg_history_free(&s->hist);
    free(s->best_params);
    free(s->best_buffers);
    s->best_params = s->best_buffers = NULL;
}

void mg_train_state_set_plugin(mg_train_state *s, const mg_train_plugin *p)
{
    s->plugin = p;
}

void mg_train_state_take_history(mg_train_state *s, mg_history *out)
{
    *out = s->hist;
    memset(&s->hist, 0, sizeof s->hist);
    s->hist.best_epoch = -1;
}

mg_status mg_train_state_init(mg_train_state *s, const mg_model *m, const mg_train_cfg *cfg, const mg_rng *rng,
                              mg_error *err)
{
    mg_status st = MG_OK;
    memset(s, 0, sizeof *s);
    s->hist.best_epoch = -1;
    if (cfg->epochs < 0 || cfg->batch < 1)
        MG_FAIL(MG_ERR_ARG, "training: epochs (%d) must be >= 0 and batch (%d) >= 1", cfg->epochs, cfg->batch);
    if (cfg->patience < 0)
        MG_FAIL(MG_ERR_ARG, "training: patience %d must be >= 0 (0 turns early stopping off)", cfg->patience);
    if (cfg->augment & ~(unsigned)(MG_AUGMENT_CROP | MG_AUGMENT_FLIP))
        MG_FAIL(MG_ERR_ARG, "training: unknown augmentation flags 0x%x", cfg->augment);
    if (!(cfg->bn_l1 >= 0.0) || !isfinite(cfg->bn_l1))
        MG_FAIL(MG_ERR_ARG, "training: bn_l1 %g must be finite and >= 0 (0 turns the penalty off)", cfg->bn_l1);
    MG_CHECK(mg_lr_schedule_check(&cfg->schedule, cfg->epochs, err));
    s->cfg = *cfg;
    s->n_params = mg_model_n_params(m);
    s->n_buffers = mg_model_n_buffers(m);
    MG_CHECK(mg_optim_init(&s->opt, &cfg->optim, s->n_params, err));

    size_t cap = cfg->epochs > 0 ? (size_t)cfg->epochs : 1;
    double **arrays[] = {&s->hist.loss, &s->hist.train_acc, &s->hist.seconds, &s->hist.lr, &s->hist.dev_acc};
    for (size_t i = 0; i < sizeof arrays / sizeof arrays[0]; i++) {
        *arrays[i] = mg_calloc(cap, sizeof(double), "training history", err);
        if (!*arrays[i])
            MG_CHECK(MG_ERR_NOMEM);
    }
    if (cfg->patience > 0) {
        s->best_params = mg_calloc(s->n_params ? s->n_params : 1, sizeof(float), "best parameters", err);
        if (!s->best_params)
            MG_CHECK(MG_ERR_NOMEM);
        if (s->n_buffers) {
            s->best_buffers = mg_calloc(s->n_buffers, sizeof(float), "best buffers", err);
            if (!s->best_buffers)
                MG_CHECK(MG_ERR_NOMEM);
        }
    }
    /* The other streams are seeded from a copy, so the shuffle stream (and
     * with it the batch order) is the same whether or not they are used. */
    s->shuffle = *rng;
    mg_rng probe = *rng;
    uint64_t base = mg_rng_next(&probe);
    mg_rng_seed(&s->augment, base, "mg_train", "augment");
    mg_rng_seed(&s->dropout, base, "mg_train", "dropout");
cleanup:
    if (st != MG_OK)
        mg_train_state_free(s);
    return st;
}

static mg_status check_labels(const int32_t *y, size_t n, int K, const char *what, mg_error *err)
{
    for (size_t i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= K)
            return mg_error_set(err, MG_ERR_ARG, "training: label %d of %s sample %zu is outside [0, %d)", (int)y[i],
                                what, i, K);
    return MG_OK;
}

/* Early stopping's end: the parameters and buffers of the best epoch. */
static void finish(mg_model *m, mg_train_state *s)
{
    if (s->best_params && s->hist.best_epoch >= 0) {
        memcpy(mg_model_params(m), s->best_params, s->n_params * sizeof(float));
        if (s->best_buffers)
            memcpy(mg_model_buffers(m), s->best_buffers, s->n_buffers * sizeof(float));
    }
    s->finished = 1;
}

mg_status mg_train_run(mg_model *m, const mg_train_data *d, mg_train_state *s, mg_train_hook hook, void *user,
                       mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *perm = NULL;
    float *xb = NULL, *dev_logits = NULL;
    int32_t *yb = NULL;
    int attached = 0;
    const mg_train_cfg *cfg = &s->cfg;
    const size_t n = d->n;
    const mg_train_plugin *plug = s->plugin;

    if (!s->opt.m1 || s->n_params != mg_model_n_params(m) || s->n_buffers != mg_model_n_buffers(m))
        MG_FAIL(MG_ERR_ARG, "training: the state was set up for another model (%zu parameters and %zu buffers; "
                "this one has %zu and %zu)", s->n_params, s->n_buffers, mg_model_n_params(m), mg_model_n_buffers(m));
    if (s->finished || s->epochs_done >= cfg->epochs) {
        s->finished = 1;
        return MG_OK;
    }
    if (n == 0 || n > UINT32_MAX)
        MG_FAIL(MG_ERR_ARG, "training: %zu samples (need between 1 and %u)", n, (unsigned)UINT32_MAX);
    const int K = mg_model_n_classes(m);
    MG_CHECK(check_labels(d->y, n, K, "training", err));
    MG_CHECK(check_labels(d->dev_y, d->dev_n, K, "dev", err));
    if (cfg->patience > 0 && d->dev_n == 0)
        MG_FAIL(MG_ERR_ARG, "training: early stopping (patience %d) needs a dev set", cfg->patience);

    const size_t dim = (size_t)mg_model_in_dim(m);
    if (cfg->augment && (d->c < 1 || d->h < 1 || d->w < 1 || (size_t)d->c * (size_t)d->h * (size_t)d->w != dim))
        MG_FAIL(MG_ERR_ARG, "training: augmentation needs the image shape of a sample (given %dx%dx%d for %zu "
                "inputs)", d->c, d->h, d->w, dim);
    if (cfg->augment && (d->h < 2 || d->w < 2))
        MG_FAIL(MG_ERR_ARG, "training: augmentation needs images, but the samples are %dx%dx%d (tabular data?)", d->c,
                d->h, d->w);
    const int bmax = (size_t)cfg->batch < n ? cfg->batch : (int)n;
    perm = mg_malloc(n, sizeof *perm, "training permutation", err);
    xb = mg_malloc((size_t)bmax * dim, sizeof *xb, "training batch", err);
    yb = mg_malloc((size_t)bmax, sizeof *yb, "training batch", err);
    if (!perm || !xb || !yb)
        MG_FAIL(MG_ERR_NOMEM, "training: out of memory for %zu samples", n);
    if (d->dev_n) {
        dev_logits = mg_malloc(d->dev_n * (size_t)K, sizeof *dev_logits, "dev logits", err);
        if (!dev_logits)
            MG_CHECK(MG_ERR_NOMEM);
    }
    mg_model_set_rng(m, &s->dropout);
    attached = 1;

    mg_history *h = &s->hist;
    float *params = mg_model_params(m), *grads = mg_model_grads(m);
    const float *masks = mg_model_masks(m);
    for (int e = s->epochs_done; e < cfg->epochs; e++) {
        double t0 = mg_now();
        double lr = mg_lr_at(&cfg->schedule, cfg->optim.lr, e, cfg->epochs);
        s->opt.cfg.lr = lr;
        for (size_t i = 0; i < n; i++)
            perm[i] = (uint32_t)i;
        size_t n_rows = n;
        if (plug && plug->epoch_rows) {
            MG_CHECK(plug->epoch_rows(plug->user, e, perm, &n_rows, err));
            if (n_rows < 1 || n_rows > n)
                MG_FAIL(MG_ERR_ARG, "training: the %s regime chose %zu rows for epoch %d (need 1 to %zu)",
                        plug->name, n_rows, e + 1, n);
            for (size_t i = 0; i < n_rows; i++)
                if (perm[i] >= n)
                    MG_FAIL(MG_ERR_ARG, "training: the %s regime chose row %u of %zu", plug->name,
                            (unsigned)perm[i], n);
        }
        mg_rng_shuffle_u32(&s->shuffle, perm, n_rows);
        double loss_sum = 0.0;
        size_t correct = 0;
        long step = 0;
        for (size_t start = 0; start < n_rows; start += (size_t)bmax, step++) {
            int b = (int)(n_rows - start < (size_t)bmax ? n_rows - start : (size_t)bmax);
            for (int j = 0; j < b; j++) {
                uint32_t r = perm[start + (size_t)j];
                const float *src = d->x + (size_t)r * dim;
                float *dst = xb + (size_t)j * dim;
                if (cfg->augment)
                    mg_augment_apply(dst, src, d->c, d->h, d->w,
                                     mg_augment_draw(&s->augment, cfg->augment, MG_AUGMENT_PAD));
                else
                    memcpy(dst, src, dim * sizeof(float));
                yb[j] = d->y[r];
            }
            double loss = 0.0;
            int nc = 0;
            mg_model_zero_grad(m);
            if (plug && plug->step) {
                MG_CHECK(plug->step(plug->user, m, xb, yb, perm + start, b, e, &loss, &nc, err));
            } else {
                MG_CHECK(mg_model_forward(m, xb, b, 1, NULL, err));
                MG_CHECK(mg_model_backward(m, yb, b, &loss, &nc, err));
            }
            if (!isfinite(loss))
                MG_FAIL(MG_ERR_NUMERIC, "training diverged: loss is %s at epoch %d, step %ld (lr %g)",
                        isnan(loss) ? "nan" : "inf", e + 1, step + 1, lr);
            /* After the regime's step, so that the penalty composes with any
             * regime that replaces the forward and backward. */
            if (cfg->bn_l1 > 0.0)
                mg_prune_slim_penalty(m, cfg->bn_l1);
            mg_optim_step(&s->opt, params, grads, masks);
            loss_sum += loss * b;
            correct += (size_t)nc;
        }
        h->loss[e] = loss_sum / (double)n_rows;
        h->train_acc[e] = (double)correct / (double)n_rows;
        h->lr[e] = lr;
        h->dev_acc[e] = NAN;
        if (d->dev_n) {
            MG_CHECK(mg_model_predict(m, d->dev_x, d->dev_n, dev_logits, err));
            double acc = mg_accuracy(dev_logits, d->dev_y, d->dev_n, K);
            h->dev_acc[e] = acc;
            if (h->best_epoch < 0 || acc > h->dev_acc[h->best_epoch]) {
                h->best_epoch = e;
                if (s->best_params)
                    memcpy(s->best_params, params, s->n_params * sizeof(float));
                if (s->best_buffers)
                    memcpy(s->best_buffers, mg_model_buffers(m), s->n_buffers * sizeof(float));
            }
        }
        h->seconds[e] = mg_now() - t0;
        h->n_epochs = e + 1;
        s->epochs_done = e + 1;
        int stalled = cfg->patience > 0 && e - h->best_epoch >= cfg->patience;
        if (stalled || e + 1 == cfg->epochs)
            finish(m, s);
        if (hook) {
            int stop = 0;
            MG_CHECK(hook(user, m, s, &stop, err));
            if (stop && !s->finished)
                MG_FAIL(MG_ERR_INTERRUPTED, "training stopped on request after epoch %d of %d", e + 1,
                        cfg->epochs);
        }
        if (s->finished)
            break;
    }
cleanup:
    if (attached)
        mg_model_set_rng(m, NULL);
    free(perm);
    free(xb);
    free(yb);
    free(dev_logits);
    return st;
}

mg_status mg_train(mg_model *m, const float *x, const int32_t *y, size_t n, const mg_train_cfg *cfg,
                   mg_rng *rng, mg_history *hist, mg_error *err)
{
    mg_train_state s;
    mg_train_data d = {.x = x, .y = y, .n = n};
    if (hist) {
        memset(hist, 0, sizeof *hist);
        hist->best_epoch = -1;
    }
    mg_status st = mg_train_state_init(&s, m, cfg, rng, err);
    if (st != MG_OK)
        return st;
    st = mg_train_run(m, &d, &s, NULL, NULL, err);
    *rng = s.shuffle;
    if (st == MG_OK && hist)
        mg_train_state_take_history(&s, hist);
    mg_train_state_free(&s);
    return st;
}
