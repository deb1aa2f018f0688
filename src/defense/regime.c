/*
 * regime.c: a grid's defense applied to one node's training. Each defense
 * becomes settings of the plain loop (base, label-smoothing) or an
 * mg_train_plugin whose step replaces the plain forward and backward
 * (dp-sgd, adv-reg, relaxloss, ppb, rmr, swmr) or whose epoch hook picks the
 * epoch's samples (rsw, swmr). The regime keeps its random streams and the
 * adversary of adv-reg in checkpoints, so a resumed node gives the same bits,
 * and it times its own computations for the defense's cost.
 */
#include "miagrid/defense.h"
#include "miagrid/store.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

struct mg_regime {
    const mg_defense_spec *d;
    mg_train_plugin plugin;
    int has_plugin;
    mg_regime_data data;
    int K, bmax;
    size_t n_params;
    double seconds;          /* inside the defense's own computations */
    float *probs, *dl;       /* (bmax, K) scratch */
    /* dp-sgd */
    mg_rng noise;
    double q;                /* sampling rate batch / n */
    long steps_per_epoch;
    /* adv-reg */
    mg_advreg *adv;
    mg_rng draw;             /* the member and reference batches of the inference model */
    int ab;                  /* their size */
    float *ax, *alog;        /* (ab, in_dim), (ab, K) */
    int32_t *ay;
    float *rlog;
    int32_t *ry;
    /* WeMem */
    double *mem;             /* (n) memorisation score of each training row */
    uint32_t *ranked;        /* (n) rows ranked within their class */
    size_t *class_start;     /* (K + 1) */
    double *mem_rows;        /* (bmax) */
};

static int is(const mg_regime *r, const char *name)
{
    return strcmp(r->d->name, name) == 0;
}

/* Forward in training mode and the count of correct predictions. */
static mg_status forward_counted(const mg_regime *r, mg_model *m, const float *xb, const int32_t *yb, int b,
                                 const float **logits, int *n_correct, mg_error *err)
{
    mg_status st = mg_model_forward(m, xb, b, 1, logits, err);
    if (st == MG_OK)
        *n_correct = (int)mg_count_correct(*logits, yb, (size_t)b, r->K);
    return st;
}

/* Forward in training mode and the plain cross-entropy's logit gradient
 * (=) in r->dl, ready for the defense to add its own. */
static mg_status forward_xent(mg_regime *r, mg_model *m, const float *xb, const int32_t *yb, int b,
                              const float **logits, double *loss, int *n_correct, mg_error *err)
{
    mg_status st = forward_counted(r, m, xb, yb, b, logits, n_correct, err);
    if (st != MG_OK)
        return st;
    *loss = mg_softmax_xent_forward(r->probs, *logits, yb, b, r->K);
    memset(r->dl, 0, (size_t)b * r->K * sizeof *r->dl);
    mg_softmax_xent_backward(r->dl, r->probs, yb, b, r->K);
    return MG_OK;
}

/* ---- dp-sgd ------------------------------------------------------------------------------- */

static mg_status dp_step(void *user, mg_model *m, const float *xb, const int32_t *yb, const uint32_t *rows,
                         int b, int epoch, double *loss, int *n_correct, mg_error *err)
{
    mg_regime *r = user;
    const float *logits = NULL;
    mg_status st = forward_counted(r, m, xb, yb, b, &logits, n_correct, err);
    if (st != MG_OK)
        return st;
    double t0 = mg_now();
    st = mg_model_dp_backward(m, yb, b, r->d->max_grad_norm, loss, NULL, err);
    if (st != MG_OK)
        return st;
    mg_dp_add_noise(mg_model_grads(m), mg_model_masks(m), r->n_params,
                    r->d->noise_multiplier * r->d->max_grad_norm, (double)b, &r->noise);
    r->seconds += mg_now() - t0;
    return MG_OK;
}

/* ---- adv-reg ------------------------------------------------------------------------------ */

/* ab random rows of (x, y) (with replacement, as minibatches of a stream)
 * and the classifier's logits on them, in eval mode. */
static mg_status draw_logits(mg_regime *r, mg_model *m, const float *x, const int32_t *y, size_t n,
                             float *logits, int32_t *labels, mg_error *err)
{
    size_t dim = r->data.in_dim;
    for (int i = 0; i < r->ab; i++) {
        size_t row = (size_t)mg_rng_below(&r->draw, n);
        memcpy(r->ax + (size_t)i * dim, x + row * dim, dim * sizeof(float));
        labels[i] = y[row];
    }
    return mg_model_predict(m, r->ax, (size_t)r->ab, logits, err);
}

static mg_status advreg_step(void *user, mg_model *m, const float *xb, const int32_t *yb, const uint32_t *rows,
                             int b, int epoch, double *loss, int *n_correct, mg_error *err)
{
    mg_regime *r = user;
    mg_status st = MG_OK;
    double t0 = mg_now();
    /* k steps of the inference model against the classifier as it is, then
     * one classifier step against the inference model (Nasr et al., Alg. 1). */
    for (int k = 0; k < r->d->k_steps; k++) {
        MG_CHECK(draw_logits(r, m, r->data.x, r->data.y, r->data.n, r->alog, r->ay, err));
        MG_CHECK(draw_logits(r, m, r->data.ref_x, r->data.ref_y, r->data.ref_n, r->rlog, r->ry, err));
        MG_CHECK(mg_advreg_attack_step(r->adv, r->alog, r->ay, r->ab, r->rlog, r->ry, r->ab, NULL, err));
    }
    r->seconds += mg_now() - t0;
    const float *logits = NULL;
    MG_CHECK(forward_xent(r, m, xb, yb, b, &logits, loss, n_correct, err));
    double t1 = mg_now(), value = 0.0;
    MG_CHECK(mg_advreg_penalty(r->adv, logits, yb, b, r->dl, &value, err));
    r->seconds += mg_now() - t1;
    MG_CHECK(mg_model_backward_from_dlogits(m, r->dl, b, err));
cleanup:
    return st;
}

/* ---- relaxloss and ppb -------------------------------------------------------------------- */

static mg_status relaxloss_step(void *user, mg_model *m, const float *xb, const int32_t *yb, const uint32_t *rows,
                                int b, int epoch, double *loss, int *n_correct, mg_error *err)
{
    mg_regime *r = user;
    const float *logits = NULL;
    mg_status st = forward_counted(r, m, xb, yb, b, &logits, n_correct, err);
    if (st != MG_OK)
        return st;
    double t0 = mg_now();
    mg_relaxloss(logits, yb, b, r->K, r->d->alpha, epoch, r->dl, loss); /* history keeps the plain loss */
    r->seconds += mg_now() - t0;
    return mg_model_backward_from_dlogits(m, r->dl, b, err);
}

static mg_status ppb_step(void *user, mg_model *m, const float *xb, const int32_t *yb, const uint32_t *rows,
                          int b, int epoch, double *loss, int *n_correct, mg_error *err)
{
    mg_regime *r = user;
    const float *logits = NULL;
    mg_status st = forward_xent(r, m, xb, yb, b, &logits, loss, n_correct, err);
    if (st != MG_OK)
        return st;
    double t0 = mg_now();
    mg_ppb_term(logits, b, r->K, r->d->lambda, r->dl);
    r->seconds += mg_now() - t0;
    return mg_model_backward_from_dlogits(m, r->dl, b, err);
}

/* ---- WeMem -------------------------------------------------------------------------------- */

/* RMR: the plain step, then the batch's mean L2 weight times the parameters. */
static mg_status rmr_step(void *user, mg_model *m, const float *xb, const int32_t *yb, const uint32_t *rows,
                          int b, int epoch, double *loss, int *n_correct, mg_error *err)
{
    mg_regime *r = user;
    mg_status st = mg_model_forward(m, xb, b, 1, NULL, err);
    if (st == MG_OK)
        st = mg_model_backward(m, yb, b, loss, n_correct, err);
    if (st != MG_OK)
        return st;
    double t0 = mg_now();
    for (int i = 0; i < b; i++)
        r->mem_rows[i] = r->mem[rows[i]];
    float w = (float)mg_rmr_weight(r->mem_rows, b, r->d->tau, r->d->lambda_r, r->d->lambda_g);
    float *g = mg_model_grads(m);
    const float *p = mg_model_params(m);
    for (size_t i = 0; i < r->n_params; i++)
        g[i] += w * p[i];
    r->seconds += mg_now() - t0;
    return MG_OK;
}

static mg_status rsw_rows(void *user, int epoch, uint32_t *rows, size_t *n_rows, mg_error *err)
{
    mg_regime *r = user;
    double t0 = mg_now();
    *n_rows = mg_rsw_window(r->ranked, r->class_start, r->K, r->d->width, r->d->step, epoch, rows);
    r->seconds += mg_now() - t0;
    return MG_OK;
}

/* ---- checkpoints -------------------------------------------------------------------------- */

static mg_status save_state(void *user, hid_t loc, mg_error *err)
{
    mg_regime *r = user;
    mg_status st = MG_OK;
    hsize_t four = 4;
    MG_CHECK(mg_h5_attr_f64(loc, "seconds", r->seconds, err));
    MG_CHECK(mg_h5_write(loc, "rng_noise", H5T_NATIVE_UINT64, 1, &four, r->noise.s, err));
    MG_CHECK(mg_h5_write(loc, "rng_draw", H5T_NATIVE_UINT64, 1, &four, r->draw.s, err));
    if (r->adv) {
        hid_t g = H5Gcreate2(loc, "adversary", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (g < 0)
            MG_FAIL(MG_ERR_HDF5, "cannot create group adversary");
        st = mg_advreg_save(r->adv, g, err);
        H5Gclose(g);
    }
cleanup:
    return st;
}

static mg_status read_rng(hid_t loc, const char *path, mg_rng *out, mg_error *err)
{
    void *buf = NULL;
    hsize_t dims[4];
    int nd = 0;
    mg_status st = mg_h5_read(loc, path, H5T_NATIVE_UINT64, &buf, dims, &nd, err);
    if (st != MG_OK)
        return st;
    if (nd != 1 || dims[0] != 4)
        st = mg_error_set(err, MG_ERR_STATE, "the regime's %s is not 4 numbers", path);
    else
        memcpy(out->s, buf, sizeof out->s);
    free(buf);
    return st;
}

static mg_status load_state(void *user, hid_t loc, mg_error *err)
{
    mg_regime *r = user;
    mg_status st = MG_OK;
    mg_rng noise, draw;
    double seconds = 0.0;
    hid_t g = H5I_INVALID_HID;
    MG_CHECK(mg_h5_get_attr_f64(loc, "seconds", &seconds, err));
    MG_CHECK(read_rng(loc, "rng_noise", &noise, err));
    MG_CHECK(read_rng(loc, "rng_draw", &draw, err));
    if (r->adv) {
        g = H5Gopen2(loc, "adversary", H5P_DEFAULT);
        if (g < 0)
            MG_FAIL(MG_ERR_STATE, "no adversary of adv-reg in the checkpoint");
        MG_CHECK(mg_advreg_load(r->adv, g, err)); /* the last step that can fail */
    }
    r->seconds = seconds;
    r->noise = noise;
    r->draw = draw;
cleanup:
    if (g >= 0)
        H5Gclose(g);
    return st;
}

/* ---- set-up ------------------------------------------------------------------------------- */

void mg_regime_destroy(mg_regime **rp)
{
    if (!rp || !*rp)
        return;
    mg_regime *r = *rp;
    mg_advreg_destroy(&r->adv);
    free(r->probs);
    free(r->dl);
    free(r->ax);
    free(r->alog);
    free(r->ay);
    free(r->rlog);
    free(r->ry);
    free(r->mem);
    free(r->ranked);
    free(r->class_start);
    free(r->mem_rows);
    free(r);
    *rp = NULL;
}

const mg_train_plugin *mg_regime_plugin(const mg_regime *r)
{
    return r && r->has_plugin ? &r->plugin : NULL;
}

mg_status mg_regime_create(const mg_defense_spec *d, mg_model *m, mg_train_cfg *tc, const mg_regime_data *data,
                           uint64_t seed, const char *key, mg_regime **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_regime *r = NULL;
    *out = NULL;
    r = mg_calloc(1, sizeof *r, "defense", err);
    if (!r)
        return MG_ERR_NOMEM;
    r->d = d;
    r->data = *data;
    r->K = mg_model_n_classes(m);
    r->bmax = (size_t)tc->batch < data->n ? tc->batch : (int)data->n;
    r->n_params = mg_model_n_params(m);
    mg_rng_seed(&r->noise, seed, key, "defense-noise");
    mg_rng_seed(&r->draw, seed, key, "defense-draw");
    r->plugin.name = d->name;
    r->plugin.user = r;
    if (data->n == 0 || r->bmax < 1)
        MG_FAIL(MG_ERR_ARG, "defense %s: no training samples", d->name);

    if (is(r, "base")) {
        if (data->ref_n == 0)
            MG_FAIL(MG_ERR_CONFIG, "defense base stops early on the dev part, but the split has none: give "
                    "data.split dev sizes (target_dev, shadow_dev) or use protocol mia-prune");
        tc->optim.weight_decay = d->weight_decay;
        tc->patience = d->patience;
    } else if (is(r, "label-smoothing")) {
        mg_model_set_label_smoothing(m, (float)d->smoothing);
    } else if (is(r, "dp-sgd")) {
        if (mg_model_enable_per_example(m, err) != MG_OK)
            MG_FAIL(MG_ERR_CONFIG, "defense dp-sgd: %s", err->msg);
        r->q = (double)r->bmax / (double)data->n;
        r->steps_per_epoch = (long)((data->n + (size_t)r->bmax - 1) / (size_t)r->bmax);
        r->plugin.step = dp_step;
    } else if (is(r, "adv-reg")) {
        if (data->ref_n == 0)
            MG_FAIL(MG_ERR_CONFIG, "defense adv-reg trains its inference model against reference non-members "
                    "from the dev part, but the split has none: give data.split dev sizes (target_dev, "
                    "shadow_dev) or use protocol mia-prune");
        mg_advreg_cfg ac = {.n_classes = r->K, .k_steps = d->k_steps, .gamma = d->gamma, .lr = d->attack_lr};
        MG_CHECK(mg_advreg_create(&ac, mg_rng_next(&r->draw), &r->adv, err));
        r->ab = r->bmax < (int)data->ref_n ? r->bmax : (int)data->ref_n;
        r->ax = mg_malloc((size_t)r->ab * data->in_dim, sizeof(float), "adversary batch", err);
        r->alog = mg_malloc((size_t)r->ab * r->K, sizeof(float), "adversary batch", err);
        r->rlog = mg_malloc((size_t)r->ab * r->K, sizeof(float), "adversary batch", err);
        r->ay = mg_malloc((size_t)r->ab, sizeof(int32_t), "adversary batch", err);
        r->ry = mg_malloc((size_t)r->ab, sizeof(int32_t), "adversary batch", err);
        if (!r->ax || !r->alog || !r->rlog || !r->ay || !r->ry)
            MG_CHECK(MG_ERR_NOMEM);
        r->plugin.step = advreg_step;
    } else if (is(r, "relaxloss")) {
        r->plugin.step = relaxloss_step;
    } else if (is(r, "ppb")) {
        if (r->K > MG_PPB_MAX_CLASSES)
            MG_FAIL(MG_ERR_CONFIG, "defense ppb sorts each prediction in a buffer of %d classes; this model has %d",
                    MG_PPB_MAX_CLASSES, r->K);
        r->plugin.step = ppb_step;
    } else if (is(r, "rsw") || is(r, "rmr") || is(r, "swmr")) {
        double t0 = mg_now();
        r->mem = mg_malloc(data->n, sizeof(double), "memorisation scores", err);
        if (!r->mem)
            MG_CHECK(MG_ERR_NOMEM);
        if (data->mem)
            memcpy(r->mem, data->mem, data->n * sizeof *r->mem);
        else if (d->mem_scores[0])
            MG_CHECK(mg_memscore_read_csv(d->mem_scores, data->sample_index, data->n, r->mem, err));
        else
            MG_FAIL(MG_ERR_ARG, "defense %s: no memorisation scores given", d->name);
        if (!is(r, "rmr")) {
            r->ranked = mg_malloc(data->n, sizeof(uint32_t), "ranking", err);
            r->class_start = mg_malloc((size_t)r->K + 1, sizeof(size_t), "ranking", err);
            if (!r->ranked || !r->class_start)
                MG_CHECK(MG_ERR_NOMEM);
            MG_CHECK(mg_rsw_rank(data->y, r->mem, data->n, r->K, !d->ascending, r->ranked, r->class_start, err));
            /* The window never wraps (as the authors' code): every epoch must still see a class. */
            size_t largest = 0;
            for (int k = 0; k < r->K; k++)
                if (r->class_start[k + 1] - r->class_start[k] > largest)
                    largest = r->class_start[k + 1] - r->class_start[k];
            if (tc->epochs > 0 && (size_t)(tc->epochs - 1) * (size_t)d->step >= largest)
                MG_FAIL(MG_ERR_CONFIG, "defense %s: with step %d, epoch %d's window starts at rank %zu, past the "
                        "end of every class (the largest has %zu samples here): lower step or the epochs", d->name,
                        d->step, tc->epochs, (size_t)(tc->epochs - 1) * (size_t)d->step, largest);
            r->plugin.epoch_rows = rsw_rows;
        }
        if (!is(r, "rsw")) {
            r->mem_rows = mg_malloc((size_t)r->bmax, sizeof(double), "scores", err);
            if (!r->mem_rows)
                MG_CHECK(MG_ERR_NOMEM);
            r->plugin.step = rmr_step;
        }
        r->seconds += mg_now() - t0;
    } else {
        MG_FAIL(MG_ERR_ARG, "unknown defense \"%s\"", d->name);
    }
    r->has_plugin = r->plugin.step || r->plugin.epoch_rows;
    if (r->has_plugin) {
        r->plugin.save = save_state;
        r->plugin.load = load_state;
        r->probs = mg_malloc((size_t)r->bmax * r->K, sizeof(float), "defense scratch", err);
        r->dl = mg_malloc((size_t)r->bmax * r->K, sizeof(float), "defense scratch", err);
        if (!r->probs || !r->dl)
            MG_CHECK(MG_ERR_NOMEM);
    }
    *out = r;
    r = NULL;
cleanup:
    mg_regime_destroy(&r);
    return st;
}

mg_status mg_regime_write(const mg_regime *r, hid_t f, int epochs_run, const double *rdp_in, int in_private,
                          mg_error *err)
{
    mg_status st = MG_OK;
    hid_t grp = H5Gopen2(f, "metrics", H5P_DEFAULT);
    double *rdp = NULL;
    if (grp < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot open group /metrics");
    MG_CHECK(mg_h5_attr_f64(grp, "defense_seconds", r->seconds, err));
    if (is(r, "dp-sgd")) {
        const double *orders = mg_rdp_orders();
        long steps = (long)epochs_run * r->steps_per_epoch;
        double eps = INFINITY, order = NAN;
        rdp = mg_malloc(MG_RDP_N_ORDERS, sizeof *rdp, "RDP curve", err);
        if (!rdp)
            MG_CHECK(MG_ERR_NOMEM);
        for (int i = 0; i < MG_RDP_N_ORDERS; i++) {
            double v = in_private ? mg_rdp_sgm(r->q, r->d->noise_multiplier, orders[i]) * (double)steps
                                  : INFINITY;
            rdp[i] = rdp_in && in_private ? v + rdp_in[i] : v;
        }
        MG_CHECK(mg_rdp_epsilon_curve(rdp, r->d->delta, &eps, &order, err));
        MG_CHECK(mg_h5_attr_f64(grp, "epsilon", eps, err));
        MG_CHECK(mg_h5_attr_f64(grp, "delta", r->d->delta, err));
        hsize_t n = MG_RDP_N_ORDERS;
        MG_CHECK(mg_h5_write(f, "defense/rdp", H5T_NATIVE_DOUBLE, 1, &n, rdp, err));
        MG_CHECK(mg_h5_write(f, "defense/rdp_orders", H5T_NATIVE_DOUBLE, 1, &n, orders, err));
    }
cleanup:
    if (grp >= 0)
        H5Gclose(grp);
    free(rdp);
    return st;
}
