/* exec.c: computing one node. A train node trains a dense model on its role's
 * members; a prune node prunes its input model (for ADMM, after a phase of
 * ADMM training) and fine-tunes it with the mask held; an attack node scores
 * the target and shadow models' outputs (and the sensitivity features of the
 * models it rebuilds, for samia and gonon); a select node (MIA-Pruning)
 * picks among pruned candidates and copies the pick. Each writes one node file; inputs
 * are read back from the store, so a node gives the same bits whichever rank
 * runs it. */
#define _GNU_SOURCE
#include "miagrid/sched.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "miagrid/attack.h"
#include "miagrid/defense.h"
#include "miagrid/nn.h"
#include "miagrid/prune.h"

void mg_exec_init(mg_exec_ctx *ctx, const mg_grid *g, const mg_plan *p, mg_store *s, int rank)
{
    memset(ctx, 0, sizeof *ctx);
    ctx->grid = g;
    ctx->plan = p;
    ctx->store = s;
    ctx->rank = rank;
    if (gethostname(ctx->host, sizeof ctx->host - 1) != 0)
        snprintf(ctx->host, sizeof ctx->host, "unknown");
}

void mg_exec_free(mg_exec_ctx *ctx)
{
    for (int i = 0; i < ctx->cache_n; i++)
        mg_dataset_free(&ctx->cache[i]);
    ctx->cache_n = 0;
    ctx->data = NULL;
}

static mg_status ensure_data(mg_exec_ctx *ctx, size_t di, mg_error *err)
{
    ctx->uses++;
    for (int i = 0; i < ctx->cache_n; i++)
        if (ctx->cache_index[i] == di) {
            ctx->cache_used[i] = ctx->uses;
            ctx->data = &ctx->cache[i];
            return MG_OK;
        }
    int slot = ctx->cache_n;
    if (slot == MG_EXEC_MAX_DATASETS) {
        slot = 0;
        for (int i = 1; i < ctx->cache_n; i++)
            if (ctx->cache_used[i] < ctx->cache_used[slot])
                slot = i;
        mg_dataset_free(&ctx->cache[slot]);
    } else {
        ctx->cache_n++;
    }
    const mg_dataset_spec *d = &ctx->grid->datasets[di];
    const char *root = d->root[0] ? d->root : ctx->grid->data_root;
    mg_status st = mg_data_load_opts(d->name, root, &d->opts, &ctx->cache[slot], err);
    if (st != MG_OK) {
        /* Keep the cache dense: move the last entry into the failed slot. */
        ctx->cache_n--;
        if (slot != ctx->cache_n) {
            ctx->cache[slot] = ctx->cache[ctx->cache_n];
            ctx->cache_index[slot] = ctx->cache_index[ctx->cache_n];
            ctx->cache_used[slot] = ctx->cache_used[ctx->cache_n];
        }
        ctx->data = NULL;
        return st;
    }
    ctx->cache_index[slot] = di;
    ctx->cache_used[slot] = ctx->uses;
    ctx->data = &ctx->cache[slot];
    return MG_OK;
}

/* The member and non-member samples of a role, drawn from the seed's four-way split. */
typedef struct {
    float *x[3];       /* members, non-members, dev */
    int32_t *y[3];
    uint32_t *idx[3];
    size_t n[3];
} role_data;

static void role_data_free(role_data *r)
{
    for (int i = 0; i < 3; i++) {
        free(r->x[i]);
        free(r->y[i]);
        free(r->idx[i]);
    }
    memset(r, 0, sizeof *r);
}

static mg_status load_role_data(mg_exec_ctx *ctx, const mg_node *node, role_data *out, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_grid *g = ctx->grid;
    mg_split_roles roles;
    memset(&roles, 0, sizeof roles);
    memset(out, 0, sizeof *out);
    MG_CHECK(ensure_data(ctx, node->dataset, err));
    /* The stream name is fixed so that every protocol draws from the same
     * generator the original four-way split used: old stores stay valid. */
    MG_CHECK(mg_split_roles_make(&g->split.cfg, ctx->data->n, ctx->data->n_train, g->seeds[node->seed], "four-way",
                                 &roles, err));
    const mg_index_list *parts[3];
    if (node->role == MG_ROLE_TARGET) {
        parts[0] = &roles.target_train;
        parts[1] = &roles.target_test;
        parts[2] = &roles.target_dev;
    } else {
        size_t i = (size_t)node->shadow_index;
        if (i >= roles.n_shadows)
            MG_FAIL(MG_ERR_STATE, "node %s is shadow model %zu, but the split has %zu", node->key, i, roles.n_shadows);
        parts[0] = &roles.shadow_train[i];
        parts[1] = &roles.shadow_test[i];
        parts[2] = &roles.shadow_dev[i];
    }
    size_t dim = mg_dataset_dim(ctx->data);
    for (int part = 0; part < 3; part++) {
        size_t n = parts[part]->n;
        out->n[part] = n;
        out->x[part] = mg_malloc(n * dim, sizeof(float), "samples", err);
        out->y[part] = mg_malloc(n, sizeof(int32_t), "labels", err);
        out->idx[part] = mg_malloc(n, sizeof(uint32_t), "indices", err);
        if (!out->x[part] || !out->y[part] || !out->idx[part])
            MG_FAIL(MG_ERR_NOMEM, "out of memory gathering %zu samples", n);
        if (n) /* an empty part (no dev split) has no index array */
            memcpy(out->idx[part], parts[part]->idx, n * sizeof(uint32_t));
        mg_dataset_gather(ctx->data, parts[part]->idx, n, out->x[part], out->y[part]);
    }
cleanup:
    mg_split_roles_free(&roles);
    if (st != MG_OK)
        role_data_free(out);
    return st;
}

static mg_status make_model(mg_exec_ctx *ctx, const mg_node *node, mg_model **m, mg_error *err)
{
    const mg_arch_spec *a = &ctx->grid->archs[node->arch];
    mg_model_cfg cfg = {
        .arch = a->name,
        .init = a->init,
        .hidden = a->hidden,
        .n_hidden = a->n_hidden,
        .act = strcmp(a->act, "tanh") == 0 ? MG_ACT_TANH
               : strcmp(a->act, "relu6") == 0 ? MG_ACT_RELU6
               : strcmp(a->act, "gelu") == 0 ? MG_ACT_GELU
                                               : MG_ACT_RELU,
        .in_c = ctx->data->c,
        .in_h = ctx->data->h,
        .in_w = ctx->data->w,
        .n_classes = ctx->data->n_classes,
    };
    return mg_model_create(&cfg, m, err);
}

static void train_cfg_from(const mg_train_spec *t, mg_train_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->epochs = t->epochs;
    c->batch = t->batch;
    if (mg_opt_kind_parse(t->optimizer, &c->optim.kind) != 0)
        c->optim.kind = MG_OPT_SGD; /* the grid accepts only names mg_opt_kind_parse knows */
    c->optim.lr = t->lr;
    c->optim.momentum = t->momentum;
    c->optim.weight_decay = t->weight_decay;
    c->optim.beta1 = t->beta1;
    c->optim.beta2 = t->beta2;
    c->optim.eps = t->eps;
    c->optim.nesterov = t->nesterov;
    if (strcmp(t->schedule, "multistep") == 0) {
        c->schedule.kind = MG_LR_MULTISTEP;
        c->schedule.n_milestones = t->n_milestones;
        memcpy(c->schedule.milestones, t->milestones, (size_t)t->n_milestones * sizeof(int));
        c->schedule.gamma = t->gamma;
    } else if (strcmp(t->schedule, "cosine") == 0) {
        c->schedule.kind = MG_LR_COSINE;
        c->schedule.eta_min = t->eta_min;
    }
    c->patience = t->patience;
    c->augment = (t->augment_crop ? MG_AUGMENT_CROP : 0u) | (t->augment_flip ? MG_AUGMENT_FLIP : 0u);
}

/* "conv1.weight" -> "model/conv1/weight"; its mask is "model/conv1/mask" (a
 * weight's) or "model/conv1/bias_mask" (any other parameter's). */
static void tensor_path(const char *name, int mask, char *buf, size_t n)
{
    char layer[64];
    snprintf(layer, sizeof layer, "%s", name);
    char *dot = strrchr(layer, '.');
    const char *field = "param";
    if (dot) {
        *dot = '\0';
        field = dot + 1;
    }
    if (!mask)
        snprintf(buf, n, "model/%s/%s", layer, field);
    else if (strcmp(field, "weight") == 0)
        snprintf(buf, n, "model/%s/mask", layer);
    else
        snprintf(buf, n, "model/%s/%s_mask", layer, field);
}

static mg_status write_model(hid_t f, mg_model *m, mg_error *err)
{
    mg_status st = MG_OK;
    float *params = mg_model_params(m);
    float *masks = mg_model_masks(m);
    uint8_t *mask8 = NULL;
    for (size_t i = 0; i < mg_model_n_tensors(m); i++) {
        const mg_tensor_info *t = mg_model_tensor(m, i);
        hsize_t dims[4];
        for (int d = 0; d < t->ndim; d++)
            dims[d] = (hsize_t)t->shape[d];
        char path[160];
        const float *base = t->buffer ? mg_model_buffers(m) : params; /* running stats live apart */
        tensor_path(t->name, 0, path, sizeof path);
        MG_CHECK(mg_h5_write(f, path, H5T_NATIVE_FLOAT, t->ndim, dims, base + t->offset, err));
        int any_masked = 0;
        if (!t->buffer)
            for (size_t j = 0; j < t->count && !any_masked; j++)
                any_masked = masks[t->offset + j] == 0.0f;
        /* Prunable weights always carry a mask; other parameters (slim's
         * batch-norm scales) only when something in them is masked. */
        if (t->prunable || any_masked) {
            mask8 = mg_malloc(t->count, 1, "mask", err);
            if (!mask8)
                MG_FAIL(MG_ERR_NOMEM, "out of memory writing masks");
            for (size_t j = 0; j < t->count; j++)
                mask8[j] = masks[t->offset + j] != 0.0f;
            tensor_path(t->name, 1, path, sizeof path);
            MG_CHECK(mg_h5_write(f, path, H5T_NATIVE_UINT8, t->ndim, dims, mask8, err));
            free(mask8);
            mask8 = NULL;
        }
    }
cleanup:
    free(mask8);
    return st;
}

static mg_status read_model(hid_t f, mg_model *m, const char *key, mg_error *err)
{
    mg_status st = MG_OK;
    float *params = mg_model_params(m);
    float *masks = mg_model_masks(m);
    void *buf = NULL;
    for (size_t i = 0; i < mg_model_n_tensors(m); i++) {
        const mg_tensor_info *t = mg_model_tensor(m, i);
        char path[160];
        hsize_t dims[4];
        int nd = 0;
        tensor_path(t->name, 0, path, sizeof path);
        MG_CHECK(mg_h5_read(f, path, H5T_NATIVE_FLOAT, &buf, dims, &nd, err));
        hsize_t count = 1;
        for (int d = 0; d < nd; d++)
            count *= dims[d];
        if (count != t->count)
            MG_FAIL(MG_ERR_STATE, "node %s: %s has %llu values, the model expects %zu", key, path,
                    (unsigned long long)count, t->count);
        float *base = t->buffer ? mg_model_buffers(m) : params;
        memcpy(base + t->offset, buf, t->count * sizeof(float));
        free(buf);
        buf = NULL;
        tensor_path(t->name, 1, path, sizeof path);
        if (!t->buffer && (t->prunable || H5Lexists(f, path, H5P_DEFAULT) > 0)) {
            MG_CHECK(mg_h5_read(f, path, H5T_NATIVE_UINT8, &buf, NULL, NULL, err));
            const uint8_t *m8 = buf;
            for (size_t j = 0; j < t->count; j++)
                masks[t->offset + j] = m8[j] ? 1.0f : 0.0f;
            free(buf);
            buf = NULL;
        }
    }
cleanup:
    free(buf);
    return st;
}

static mg_status write_history(hid_t f, const mg_history *h, mg_error *err)
{
    mg_status st = MG_OK;
    hsize_t n = (hsize_t)h->n_epochs;
    MG_CHECK(mg_h5_write(f, "history/loss", H5T_NATIVE_DOUBLE, 1, &n, h->loss, err));
    MG_CHECK(mg_h5_write(f, "history/train_acc", H5T_NATIVE_DOUBLE, 1, &n, h->train_acc, err));
    MG_CHECK(mg_h5_write(f, "history/seconds", H5T_NATIVE_DOUBLE, 1, &n, h->seconds, err));
    MG_CHECK(mg_h5_write(f, "history/lr", H5T_NATIVE_DOUBLE, 1, &n, h->lr, err));
    MG_CHECK(mg_h5_write(f, "history/dev_acc", H5T_NATIVE_DOUBLE, 1, &n, h->dev_acc, err));
cleanup:
    return st;
}

/* Logits on members and non-members, and the model's accuracy metrics. */
static mg_status write_outputs(hid_t f, mg_model *m, const role_data *rd, mg_error *err)
{
    mg_status st = MG_OK;
    int K = mg_model_n_classes(m);
    float *logits[2] = {NULL, NULL};
    double acc[2] = {0, 0};
    static const char *part[2] = {"member", "nonmember"};
    hid_t grp = H5I_INVALID_HID;
    for (int i = 0; i < 2; i++) {
        logits[i] = mg_malloc(rd->n[i] * (size_t)K, sizeof(float), "logits", err);
        if (!logits[i])
            MG_FAIL(MG_ERR_NOMEM, "out of memory for logits");
        MG_CHECK(mg_model_predict(m, rd->x[i], rd->n[i], logits[i], err));
        for (size_t j = 0; j < rd->n[i] * (size_t)K; j++)
            if (!isfinite(logits[i][j]))
                MG_FAIL(MG_ERR_NUMERIC, "the model's outputs are not finite (training diverged?)");
        acc[i] = mg_accuracy(logits[i], rd->y[i], rd->n[i], K);
        char path[64];
        hsize_t d2[2] = {rd->n[i], (hsize_t)K}, d1[1] = {rd->n[i]};
        snprintf(path, sizeof path, "outputs/%s/logits", part[i]);
        MG_CHECK(mg_h5_write(f, path, H5T_NATIVE_FLOAT, 2, d2, logits[i], err));
        snprintf(path, sizeof path, "outputs/%s/labels", part[i]);
        MG_CHECK(mg_h5_write(f, path, H5T_NATIVE_INT32, 1, d1, rd->y[i], err));
        snprintf(path, sizeof path, "outputs/%s/sample_index", part[i]);
        MG_CHECK(mg_h5_write(f, path, H5T_NATIVE_UINT32, 1, d1, rd->idx[i], err));
    }
    grp = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    if (grp < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot create group /metrics");
    size_t total = 0, nonzero = 0;
    const float *params = mg_model_params(m);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        total += ti->count;
        for (size_t j = 0; j < ti->count; j++)
            nonzero += params[ti->offset + j] != 0.0f;
    }
    MG_CHECK(mg_h5_attr_f64(grp, "train_acc", acc[0], err));
    MG_CHECK(mg_h5_attr_f64(grp, "test_acc", acc[1], err));
    MG_CHECK(mg_h5_attr_f64(grp, "gap", acc[0] - acc[1], err));
    MG_CHECK(mg_h5_attr_f64(grp, "sparsity", mg_model_mask_sparsity(m), err));
    MG_CHECK(mg_h5_attr_f64(grp, "prunable_params", (double)total, err));
    MG_CHECK(mg_h5_attr_f64(grp, "nonzero_params", (double)nonzero, err));
cleanup:
    if (grp >= 0)
        H5Gclose(grp);
    free(logits[0]);
    free(logits[1]);
    return st;
}

/* The training's wall time (the epochs', summed over resumed runs): the
 * time-cost column of the defense comparisons. */
static mg_status write_train_seconds(hid_t f, const mg_history *h, mg_error *err)
{
    double t = 0.0;
    for (int e = 0; e < h->n_epochs; e++)
        t += h->seconds[e];
    hid_t grp = H5Gopen2(f, "metrics", H5P_DEFAULT);
    if (grp < 0)
        return mg_error_set(err, MG_ERR_HDF5, "cannot open group /metrics");
    mg_status st = mg_h5_attr_f64(grp, "train_seconds", t, err);
    H5Gclose(grp);
    return st;
}

/* Where a node's training state lives between runs. Not a ".tmp." name: the
 * store removes those at start-up, and this file must survive a stop. A
 * training phase before the node's main one (phase non-NULL: ADMM's) has a
 * file of its own, "<key>.<phase>.ckpt.h5". */
static void checkpoint_path(const mg_exec_ctx *ctx, const mg_node *node, const char *phase, char *buf, size_t n)
{
    if (phase)
        snprintf(buf, n, "%s/nodes/%s.%s.ckpt.h5", mg_store_dir(ctx->store), node->key, phase);
    else
        snprintf(buf, n, "%s/nodes/%s.ckpt.h5", mg_store_dir(ctx->store), node->key);
}

typedef struct {
    mg_exec_ctx *ctx;
    const char *path;
    double last_save;
    int stop_after;   /* >= 0: an imp rewind point, done after that many epochs */
} hook_state;

/* After every epoch: save the state when a stop was asked for (then stop) or
 * when the last save is older than the checkpoint interval, so a killed run
 * loses at most that much of a long node. */
static mg_status epoch_hook(void *user, mg_model *m, const mg_train_state *s, int *stop, mg_error *err)
{
    hook_state *h = user;
    if (h->stop_after >= 0 && s->epochs_done >= h->stop_after) {
        *stop = 1;
        return MG_OK;
    }
    if (h->ctx->poll_stop)
        h->ctx->poll_stop(h->ctx->poll_user);
    int stopping = mg_sched_stop_requested();
    int due = h->ctx->checkpoint_seconds > 0 && mg_now() - h->last_save >= h->ctx->checkpoint_seconds;
    if ((stopping || due) && !s->finished) {
        mg_status st = mg_train_checkpoint_save(h->path, m, s, err);
        if (st != MG_OK)
            return st;
        h->last_save = mg_now();
    }
    if (stopping)
        *stop = 1;
    return MG_OK;
}

/* Train from the node's checkpoint if a stopped run left one, else from the
 * start; the result is bit-identical either way. A phase before the main
 * training (phase non-NULL) has its own checkpoint and random streams, and
 * saves its final state, which a restart then loads instead of training
 * again: the file goes only when the node completes. */
static mg_status train_resumable(mg_exec_ctx *ctx, const mg_node *node, mg_model *m, const mg_train_cfg *tc,
                                 const mg_train_plugin *plugin, const role_data *rd, const char *phase,
                                 mg_history *hist, mg_error *err)
{
    mg_status st = MG_OK;
    mg_train_state ts;
    mg_rng rng;
    char path[4200], stream[3][32];
    uint64_t seed = ctx->grid->seeds[node->seed];
    int state_ready = 0;
    memset(&ts, 0, sizeof ts);
    checkpoint_path(ctx, node, phase, path, sizeof path);
    static const char *const names[3] = {"shuffle", "augment", "dropout"};
    for (int i = 0; i < 3; i++)
        snprintf(stream[i], sizeof stream[i], "%s%s%s", phase ? phase : "", phase ? "-" : "", names[i]);
    mg_rng_seed(&rng, seed, node->key, stream[0]);
    MG_CHECK(mg_train_state_init(&ts, m, tc, &rng, err));
    state_ready = 1;
    mg_train_state_set_plugin(&ts, plugin);
    mg_rng_seed(&ts.augment, seed, node->key, stream[1]);
    mg_rng_seed(&ts.dropout, seed, node->key, stream[2]);
    if (access(path, R_OK) == 0) {
        mg_error e;
        if (mg_train_checkpoint_load(path, m, &ts, &e) != MG_OK) {
            /* A checkpoint that does not fit is not worth failing the node:
             * start over (and say so). */
            fprintf(stderr, "miagrid: %s: ignoring checkpoint: %s\n", path, e.msg);
            unlink(path);
        }
    }
    mg_train_data d = {
        .x = rd->x[0], .y = rd->y[0], .n = rd->n[0],
        .c = ctx->data->c, .h = ctx->data->h, .w = ctx->data->w,
        .dev_x = rd->x[2], .dev_y = rd->y[2], .dev_n = rd->n[2],
    };
    hook_state hs = {ctx, path, mg_now(), node->kind == MG_NODE_TRAIN ? node->stop_epoch : -1};
    int was_finished = ts.finished;
    if (hs.stop_after != 0) {
        st = mg_train_run(m, &d, &ts, epoch_hook, &hs, err);
        /* A rewind point stops on purpose; only then is an interruption done. */
        if (st == MG_ERR_INTERRUPTED && hs.stop_after >= 0 && ts.epochs_done >= hs.stop_after)
            st = MG_OK;
        if (st != MG_OK)
            goto cleanup;
    }
    if (phase && !was_finished)
        MG_CHECK(mg_train_checkpoint_save(path, m, &ts, err));
    mg_train_state_take_history(&ts, hist);
cleanup:
    if (state_ready)
        mg_train_state_free(&ts);
    return st;
}

/* Prune a model read from the node's first input by the cell's method; for
 * imp, rewind the surviving weights to the dense training's rewind point
 * (the second input). */
static mg_status prune_stage(mg_exec_ctx *ctx, const mg_node *node, mg_model *m, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_prune_spec *ps = &ctx->grid->prunes[node->prune];
    mg_model *rw = NULL;
    hid_t in = H5I_INVALID_HID;
    mg_rng rng;
    mg_prune_opts opts;
    memset(&opts, 0, sizeof opts);
    opts.butterfly_factors = ps->factors;
    const char *layers[MG_MAX_PRUNE_LAYERS];
    for (int i = 0; i < ps->n_layers; i++)
        layers[i] = ps->layers[i];
    opts.layers = ps->n_layers ? layers : NULL;
    opts.n_layers = (size_t)ps->n_layers;
    mg_rng_seed(&rng, ctx->grid->seeds[node->seed], node->key, "prune");
    /* With a fixed number of butterfly factors the support sets the sparsity. */
    double s = strcmp(ps->method, "butterfly") == 0 && ps->factors > 0 ? 0.0 : node->sparsity;
    MG_CHECK(mg_prune_apply(m, ps->method, s, &opts, &rng, err));
    if (node->n_inputs == 2) {
        const mg_node *src = &ctx->plan->nodes[node->inputs[1]];
        MG_CHECK(make_model(ctx, node, &rw, err));
        MG_CHECK(mg_store_node_open(ctx->store, src->key, &in, err));
        MG_CHECK(read_model(in, rw, src->key, err));
        mg_prune_rewind(m, mg_model_params(rw));
        if (mg_model_n_buffers(m))
            memcpy(mg_model_buffers(m), mg_model_buffers(rw), mg_model_n_buffers(m) * sizeof(float));
    }
cleanup:
    if (in >= 0)
        H5Fclose(in);
    mg_model_destroy(&rw);
    return st;
}

/* ADMM pruning (Zhang et al., ECCV 2018) from the input model: admm_epochs
 * epochs of training on the augmented Lagrangian (mg_admm_plugin) with the
 * finetune optimiser, batch and augmentation at a constant learning rate and
 * without the cell's defense, which acts on the masked retraining that
 * follows; then the hard pruning that sets the masks. The schedule and early
 * stopping are left to the retraining: restoring an earlier epoch's weights
 * would undo what the Z and U updates converge. The phase's final state stays
 * in its checkpoint until the node completes, so a restart during the
 * retraining does not redo it. *residual: ||W - Z|| / ||W|| after the last
 * epoch; *seconds: the phase's epochs' wall time. */
static mg_status admm_stage(mg_exec_ctx *ctx, const mg_node *node, mg_model *m, const role_data *rd,
                            double *residual, double *seconds, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_prune_spec *ps = &ctx->grid->prunes[node->prune];
    mg_admm a;
    mg_train_plugin plug;
    mg_train_cfg tc;
    mg_history h;
    memset(&a, 0, sizeof a);
    memset(&h, 0, sizeof h);
    MG_CHECK(mg_admm_init(&a, m, node->sparsity, NULL, ps->rho, err));
    mg_admm_plugin(&a, m, &plug);
    train_cfg_from(&ctx->grid->finetune, &tc);
    tc.epochs = ps->admm_epochs;
    memset(&tc.schedule, 0, sizeof tc.schedule);
    tc.patience = 0;
    MG_CHECK(train_resumable(ctx, node, m, &tc, &plug, rd, "admm", &h, err));
    *residual = mg_admm_residual(&a, m);
    *seconds = 0.0;
    for (int e = 0; e < h.n_epochs; e++)
        *seconds += h.seconds[e];
    MG_CHECK(mg_admm_finalize(&a, m, err));
cleanup:
    mg_history_free(&h);
    mg_admm_free(&a);
    return st;
}

/* ADMM's record: its final primal residual and the time of its epochs. */
static mg_status write_admm_metrics(hid_t f, double residual, double seconds, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t grp = H5Gopen2(f, "metrics", H5P_DEFAULT);
    if (grp < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot open group /metrics");
    MG_CHECK(mg_h5_attr_f64(grp, "admm_residual", residual, err));
    MG_CHECK(mg_h5_attr_f64(grp, "admm_seconds", seconds, err));
cleanup:
    if (grp >= 0)
        H5Gclose(grp);
    return st;
}

/* Per-layer and total non-zeros, the compression ratio (Wang et al., Table 4)
 * and the multiply-accumulates saved, with the layer geometry read off the
 * model's graph. */
static mg_status write_prune_stats(hid_t f, const mg_model *m, mg_error *err)
{
    mg_status st = MG_OK;
    mg_prune_stats_t ps;
    mg_prune_geom *geom = NULL;
    hid_t grp = H5I_INVALID_HID;
    uint64_t *buf = NULL;
    memset(&ps, 0, sizeof ps);
    geom = mg_calloc(mg_model_n_tensors(m), sizeof *geom, "layer geometry", err);
    if (!geom)
        MG_FAIL(MG_ERR_NOMEM, "out of memory for pruning statistics");
    MG_CHECK(mg_prune_geom_model(m, geom, err));
    MG_CHECK(mg_prune_stats(m, geom, &ps, err));
    grp = H5Gopen2(f, "metrics", H5P_DEFAULT);
    if (grp < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot open group /metrics");
    MG_CHECK(mg_h5_attr_f64(grp, "compression", ps.compression, err));
    if (ps.has_macs)
        MG_CHECK(mg_h5_attr_f64(grp, "macs_saved", ps.macs_saved, err));
    hsize_t n = ps.n;
    buf = mg_calloc(ps.n ? ps.n : 1, sizeof *buf, "statistics", err);
    if (!buf)
        MG_FAIL(MG_ERR_NOMEM, "out of memory for pruning statistics");
    const size_t *cols[3] = {ps.count, ps.kept, ps.nonzero};
    static const char *const names[3] = {"prune_stats/count", "prune_stats/kept", "prune_stats/nonzero"};
    for (int c = 0; c < 3; c++) {
        for (size_t i = 0; i < ps.n; i++)
            buf[i] = cols[c][i];
        MG_CHECK(mg_h5_write(f, names[c], H5T_NATIVE_UINT64, 1, &n, buf, err));
    }
    if (ps.has_macs) {
        MG_CHECK(mg_h5_write(f, "prune_stats/macs_dense", H5T_NATIVE_UINT64, 1, &n, ps.macs_dense, err));
        MG_CHECK(mg_h5_write(f, "prune_stats/macs", H5T_NATIVE_UINT64, 1, &n, ps.macs, err));
    }
    {
        /* The tensor names, so the arrays can be read per layer. */
        hid_t t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 64);
        char *names_buf = mg_calloc(ps.n ? ps.n : 1, 64, "tensor names", err);
        if (!names_buf) {
            H5Tclose(t);
            MG_FAIL(MG_ERR_NOMEM, "out of memory for pruning statistics");
        }
        for (size_t i = 0; i < ps.n; i++)
            snprintf(names_buf + 64 * i, 64, "%s", mg_model_tensor(m, ps.tensor[i])->name);
        st = mg_h5_write(f, "prune_stats/tensor", t, 1, &n, names_buf, err);
        free(names_buf);
        H5Tclose(t);
        if (st != MG_OK)
            goto cleanup;
    }
cleanup:
    if (grp >= 0)
        H5Gclose(grp);
    free(buf);
    free(geom);
    mg_prune_stats_free(&ps);
    return st;
}

/* The members a subset model trains on: round(fraction * n) of the role's
 * members (at least 1, at most n - 1, so every estimate has both sides),
 * drawn from the node's own stream and kept in row order. The role's full
 * member arrays move to *full (whose idx[1..2] stay NULL) and rd->*[0]
 * become the subset's; in_sub (n) marks the chosen rows. */
static mg_status take_subset(const mg_exec_ctx *ctx, const mg_node *node, role_data *rd, role_data *full,
                             uint8_t **in_sub, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_defense_spec *d = &ctx->grid->defenses[node->defense];
    const size_t n = rd->n[0], dim = mg_dataset_dim(ctx->data);
    uint32_t *perm = NULL;
    float *x = NULL;
    int32_t *y = NULL;
    uint32_t *idx = NULL;
    mg_rng rng;
    if (n < 2)
        MG_FAIL(MG_ERR_CONFIG, "a memorisation-score estimate needs at least 2 members, the role has %zu", n);
    size_t m = (size_t)llround(d->subset_fraction * (double)n);
    m = m < 1 ? 1 : m > n - 1 ? n - 1 : m;
    perm = mg_malloc(n, sizeof *perm, "subset", err);
    *in_sub = mg_calloc(n, 1, "subset", err);
    x = mg_malloc(m * dim, sizeof *x, "subset", err);
    y = mg_malloc(m, sizeof *y, "subset", err);
    idx = mg_malloc(m, sizeof *idx, "subset", err);
    if (!perm || !*in_sub || !x || !y || !idx)
        MG_FAIL(MG_ERR_NOMEM, "out of memory drawing a subset of %zu members", n);
    for (size_t i = 0; i < n; i++)
        perm[i] = (uint32_t)i;
    mg_rng_seed(&rng, ctx->grid->seeds[node->seed], node->key, "subset");
    mg_rng_shuffle_u32(&rng, perm, n);
    for (size_t i = 0; i < m; i++)
        (*in_sub)[perm[i]] = 1;
    for (size_t i = 0, k = 0; i < n; i++) {
        if (!(*in_sub)[i])
            continue;
        memcpy(x + k * dim, rd->x[0] + i * dim, dim * sizeof *x);
        y[k] = rd->y[0][i];
        idx[k++] = rd->idx[0][i];
    }
    memset(full, 0, sizeof *full);
    full->x[0] = rd->x[0], full->y[0] = rd->y[0], full->idx[0] = rd->idx[0], full->n[0] = n;
    rd->x[0] = x, rd->y[0] = y, rd->idx[0] = idx, rd->n[0] = m;
    x = NULL, y = NULL, idx = NULL;
cleanup:
    free(perm);
    free(x);
    free(y);
    free(idx);
    return st;
}

/* A subset model's record for the estimate: which members it trained on and
 * which of all the members it classifies correctly. */
static mg_status write_subset_record(hid_t f, mg_model *m, const role_data *full, const uint8_t *in_sub,
                                     mg_error *err)
{
    mg_status st = MG_OK;
    const size_t n = full->n[0];
    const int K = mg_model_n_classes(m);
    float *logits = mg_malloc(n * (size_t)K, sizeof *logits, "logits", err);
    uint8_t *correct = mg_malloc(n, 1, "correct", err);
    if (!logits || !correct)
        MG_FAIL(MG_ERR_NOMEM, "out of memory scoring %zu members", n);
    MG_CHECK(mg_model_predict(m, full->x[0], n, logits, err));
    for (size_t i = 0; i < n; i++)
        correct[i] = mg_argmax(logits + i * (size_t)K, K) == full->y[0][i];
    hsize_t d = n;
    MG_CHECK(mg_h5_write(f, "memscore/in_subset", H5T_NATIVE_UINT8, 1, &d, in_sub, err));
    MG_CHECK(mg_h5_write(f, "memscore/correct", H5T_NATIVE_UINT8, 1, &d, correct, err));
    MG_CHECK(mg_h5_write(f, "memscore/sample_index", H5T_NATIVE_UINT32, 1, &d, full->idx[0], err));
cleanup:
    free(logits);
    free(correct);
    return st;
}

/* Feldman's estimate from the node's subset models, for the role's members
 * in rd's order: *mem (n) and the count of members no model left out or took. */
static mg_status estimate_scores(mg_exec_ctx *ctx, const mg_node *node, const role_data *rd, double **mem,
                                 size_t *n_undefined, mg_error *err)
{
    mg_status st = MG_OK;
    const size_t n = rd->n[0], K = node->n_extra;
    uint8_t *in = NULL, *correct = NULL;
    void *buf = NULL;
    hid_t f = H5I_INVALID_HID;
    const mg_node *src = NULL;
    in = mg_malloc(K * n, 1, "memorisation estimate", err);
    correct = mg_malloc(K * n, 1, "memorisation estimate", err);
    *mem = mg_malloc(n ? n : 1, sizeof **mem, "memorisation scores", err);
    if (!in || !correct || !*mem)
        MG_FAIL(MG_ERR_NOMEM, "out of memory estimating memorisation scores");
    for (size_t k = 0; k < K; k++) {
        src = &ctx->plan->nodes[node->extra_first + k];
        static const char *const paths[3] = {"memscore/in_subset", "memscore/correct", "memscore/sample_index"};
        MG_CHECK(mg_store_node_open(ctx->store, src->key, &f, err));
        for (int p = 0; p < 3; p++) {
            hsize_t d[4];
            int nd = 0;
            MG_CHECK(mg_h5_read(f, paths[p], p == 2 ? H5T_NATIVE_UINT32 : H5T_NATIVE_UINT8, &buf, d, &nd, err));
            if (nd != 1 || d[0] != n)
                MG_FAIL(MG_ERR_STATE, "node %s: %s has %llu values for %zu members", src->key, paths[p],
                        (unsigned long long)(nd == 1 ? d[0] : 0), n);
            if (p < 2)
                memcpy((p ? correct : in) + k * n, buf, n);
            else if (n && memcmp(buf, rd->idx[0], n * sizeof(uint32_t)) != 0)
                MG_FAIL(MG_ERR_STATE, "node %s scored other members than this node trains on", src->key);
            free(buf);
            buf = NULL;
        }
        H5Fclose(f);
        f = H5I_INVALID_HID;
    }
    MG_CHECK(mg_memscore_subsets(n, (int)K, in, correct, *mem, n_undefined, err));
cleanup:
    if (f >= 0)
        H5Fclose(f);
    free(buf);
    free(in);
    free(correct);
    if (st != MG_OK) {
        free(*mem);
        *mem = NULL;
    }
    return st;
}

/* ---- reference models of lira and rmia ------------------------------------------------- */

/* A reference model's pool. Offline (offline lira, rmia): the first half of
 * the split's population; its second half is RMIA's comparison set z, which
 * no model trains on. Online (lira): the target's candidates, its members
 * and non-members, as in Carlini et al.'s online setting, where the target
 * and the references are random halves of one pool; the references then
 * train on as many samples as the target (for equal member and non-member
 * parts), and adding population samples to the pool would make them fit
 * more data than the target and leak less than it. Which of the N
 * references of a pool train on a sample is drawn as Carlini et al.'s
 * released code draws it: per sample, a random N/2 of the N models (for an
 * odd N, floor or ceil of N/2 by a coin), so each sample is in exactly half
 * of an even number of references and each model trains on about half the
 * pool. The draw goes sample by sample from a stream named by the pool and
 * N, not by a node key, so the N nodes agree on it. */
typedef struct {
    float *cand_x;        /* (n_cand, dim): the target's members, then its non-members */
    int32_t *cand_y;
    uint32_t *cand_idx;
    uint8_t *cand_in;     /* 1: this reference trained on the candidate */
    size_t n_cand;
    float *pop_x;         /* (n_pop, dim): the comparison set z (offline pools only) */
    int32_t *pop_y;
    uint32_t *pop_idx;
    size_t n_pop;
} ref_data;

static void ref_data_free(ref_data *r)
{
    free(r->cand_x);
    free(r->cand_y);
    free(r->cand_idx);
    free(r->cand_in);
    free(r->pop_x);
    free(r->pop_y);
    free(r->pop_idx);
    memset(r, 0, sizeof *r);
}

/* Gather the rows of `idx` whose in[] equals `want` into part `part` of rd. */
static mg_status gather_part(const mg_dataset *data, const uint32_t *idx, const uint8_t *in, size_t n, int want,
                             role_data *rd, int part, mg_error *err)
{
    size_t k = 0, dim = mg_dataset_dim(data);
    for (size_t i = 0; i < n; i++)
        k += in[i] == want;
    rd->n[part] = k;
    rd->x[part] = mg_malloc(k ? k * dim : 1, sizeof(float), "reference samples", err);
    rd->y[part] = mg_malloc(k ? k : 1, sizeof(int32_t), "reference labels", err);
    rd->idx[part] = mg_malloc(k ? k : 1, sizeof(uint32_t), "reference indices", err);
    if (!rd->x[part] || !rd->y[part] || !rd->idx[part])
        return mg_error_set(err, MG_ERR_NOMEM, "out of memory gathering %zu reference samples", k);
    for (size_t i = 0, j = 0; i < n; i++)
        if (in[i] == want)
            rd->idx[part][j++] = idx[i];
    mg_dataset_gather(data, rd->idx[part], k, rd->x[part], rd->y[part]);
    return MG_OK;
}

/* Turn the target's role data rd into a reference model's: rd's members and
 * non-members (the target's candidates) move to *ref, and rd's parts 0 and 1
 * become the half of the pool the model trains on and the other half (its
 * outputs and accuracies are reported on those); the dev part stays, for
 * early stopping. */
static mg_status take_reference(mg_exec_ctx *ctx, const mg_node *node, role_data *rd, ref_data *ref, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_grid *g = ctx->grid;
    const size_t dim = mg_dataset_dim(ctx->data);
    mg_split_roles roles;
    uint32_t *pool = NULL, *perm = NULL;
    uint8_t *in = NULL;
    mg_strbuf key;
    mg_rng rng;
    memset(&roles, 0, sizeof roles);
    memset(ref, 0, sizeof *ref);
    mg_strbuf_init(&key);
    MG_CHECK(mg_split_roles_make(&g->split.cfg, ctx->data->n, ctx->data->n_train, g->seeds[node->seed], "four-way",
                                 &roles, err));
    const size_t n_p = roles.population.n, n_t = (n_p + 1) / 2, n_c = rd->n[0] + rd->n[1];
    if (!node->ref_online && n_p < 4)
        MG_FAIL(MG_ERR_CONFIG, "offline reference models need a population of at least 4 samples, the split has %zu",
                n_p);
    /* The candidates, members then non-members, as the target's outputs. */
    ref->n_cand = n_c;
    ref->cand_x = mg_malloc(n_c * dim, sizeof(float), "candidates", err);
    ref->cand_y = mg_malloc(n_c, sizeof(int32_t), "candidates", err);
    ref->cand_idx = mg_malloc(n_c, sizeof(uint32_t), "candidates", err);
    ref->cand_in = mg_calloc(n_c, 1, "candidates", err);
    ref->n_pop = node->ref_online ? 0 : n_p - n_t;
    ref->pop_x = mg_malloc(ref->n_pop ? ref->n_pop * dim : 1, sizeof(float), "population", err);
    ref->pop_y = mg_malloc(ref->n_pop ? ref->n_pop : 1, sizeof(int32_t), "population", err);
    ref->pop_idx = mg_malloc(ref->n_pop ? ref->n_pop : 1, sizeof(uint32_t), "population", err);
    const size_t m = node->ref_online ? n_c : n_t;
    pool = mg_malloc(m, sizeof *pool, "reference pool", err);
    perm = mg_malloc((size_t)node->ref_count, sizeof *perm, "reference pool", err);
    in = mg_calloc(m, 1, "reference pool", err);
    if (!ref->cand_x || !ref->cand_y || !ref->cand_idx || !ref->cand_in || !ref->pop_x || !ref->pop_y ||
        !ref->pop_idx || !pool || !perm || !in)
        MG_FAIL(MG_ERR_NOMEM, "out of memory for a reference model's pool of %zu samples", m);
    for (int part = 0; part < 2; part++) {
        size_t at = part ? rd->n[0] : 0;
        memcpy(ref->cand_x + at * dim, rd->x[part], rd->n[part] * dim * sizeof(float));
        memcpy(ref->cand_y + at, rd->y[part], rd->n[part] * sizeof(int32_t));
        memcpy(ref->cand_idx + at, rd->idx[part], rd->n[part] * sizeof(uint32_t));
    }
    if (ref->n_pop) {
        memcpy(ref->pop_idx, roles.population.idx + n_t, ref->n_pop * sizeof(uint32_t));
        mg_dataset_gather(ctx->data, ref->pop_idx, ref->n_pop, ref->pop_x, ref->pop_y);
    }
    memcpy(pool, node->ref_online ? ref->cand_idx : roles.population.idx, m * sizeof(uint32_t));

    const uint32_t N = (uint32_t)node->ref_count, me = (uint32_t)(node->reference - 1);
    mg_strbuf_printf(&key, "%u reference models of %s on %s, split %s", (unsigned)N,
                     node->ref_online ? "candidates" : "population", g->datasets[node->dataset].canon,
                     g->split.canon);
    if (key.oom)
        MG_FAIL(MG_ERR_NOMEM, "out of memory naming a reference pool");
    mg_rng_seed(&rng, g->seeds[node->seed], key.s, "keep");
    for (size_t i = 0; i < m; i++) {
        for (uint32_t r = 0; r < N; r++)
            perm[r] = r;
        mg_rng_shuffle_u32(&rng, perm, N);
        uint32_t k = N / 2 + (N % 2 ? (uint32_t)(mg_rng_next(&rng) >> 63) : 0u);
        for (uint32_t r = 0; r < k; r++)
            in[i] |= perm[r] == me;
    }
    if (node->ref_online)
        memcpy(ref->cand_in, in, n_c);
    for (int part = 0; part < 2; part++) {
        free(rd->x[part]);
        free(rd->y[part]);
        free(rd->idx[part]);
        rd->x[part] = NULL, rd->y[part] = NULL, rd->idx[part] = NULL;
        MG_CHECK(gather_part(ctx->data, pool, in, m, part == 0, rd, part, err));
    }
cleanup:
    mg_strbuf_free(&key);
    mg_split_roles_free(&roles);
    free(pool);
    free(perm);
    free(in);
    if (st != MG_OK)
        ref_data_free(ref);
    return st;
}

/* What the attacks read from a reference model: its logits on the target's
 * candidates with their "in" marks, and on the comparison set z. */
static mg_status write_reference_record(hid_t f, mg_model *m, const mg_node *node, const ref_data *ref,
                                        mg_error *err)
{
    mg_status st = MG_OK;
    const hsize_t K = (hsize_t)mg_model_n_classes(m);
    float *logits = NULL;
    logits = mg_malloc((ref->n_cand > ref->n_pop ? ref->n_cand : ref->n_pop) * K, sizeof *logits, "logits", err);
    if (!logits)
        MG_FAIL(MG_ERR_NOMEM, "out of memory for a reference model's logits");
    MG_CHECK(mg_h5_attr_i64(f, "reference_index", node->reference - 1, err));
    MG_CHECK(mg_h5_attr_str(f, "reference_pool", node->ref_online ? "candidates" : "population", err));
    hsize_t d2[2] = {ref->n_cand, K}, d1 = ref->n_cand;
    MG_CHECK(mg_model_predict(m, ref->cand_x, ref->n_cand, logits, err));
    MG_CHECK(mg_h5_write(f, "reference/candidates/logits", H5T_NATIVE_FLOAT, 2, d2, logits, err));
    MG_CHECK(mg_h5_write(f, "reference/candidates/labels", H5T_NATIVE_INT32, 1, &d1, ref->cand_y, err));
    MG_CHECK(mg_h5_write(f, "reference/candidates/sample_index", H5T_NATIVE_UINT32, 1, &d1, ref->cand_idx, err));
    MG_CHECK(mg_h5_write(f, "reference/candidates/in", H5T_NATIVE_UINT8, 1, &d1, ref->cand_in, err));
    if (!ref->n_pop)
        goto cleanup; /* online: no comparison set */
    d2[0] = d1 = ref->n_pop;
    MG_CHECK(mg_model_predict(m, ref->pop_x, ref->n_pop, logits, err));
    MG_CHECK(mg_h5_write(f, "reference/population/logits", H5T_NATIVE_FLOAT, 2, d2, logits, err));
    MG_CHECK(mg_h5_write(f, "reference/population/labels", H5T_NATIVE_INT32, 1, &d1, ref->pop_y, err));
    MG_CHECK(mg_h5_write(f, "reference/population/sample_index", H5T_NATIVE_UINT32, 1, &d1, ref->pop_idx, err));
cleanup:
    free(logits);
    return st;
}

/* The inputs of lira and rmia from the attack node's reference models (its
 * extra inputs), checked against the target's candidates (idx, n: members,
 * non-members); for rmia also the target model's logits on z, predicted here
 * from the target's node file (model nodes store no outputs on z). */
typedef struct {
    float *ref_logits;      /* (n_ref, n_t, K) */
    uint8_t *ref_in;        /* (n_ref, n_t) */
    float *pop_logits;      /* (n_pop, K): the target model */
    int32_t *pop_labels;
    float *pop_ref_logits;  /* (n_ref, n_pop, K) */
    uint32_t *pop_idx;
    size_t n_ref, n_t, n_pop;
} ref_inputs;

static void ref_inputs_free(ref_inputs *r)
{
    free(r->ref_logits);
    free(r->ref_in);
    free(r->pop_logits);
    free(r->pop_labels);
    free(r->pop_ref_logits);
    free(r->pop_idx);
    memset(r, 0, sizeof *r);
}

/* Read one of a reference node's arrays, checking its length (rows of `cols`). */
static mg_status read_ref_array(hid_t f, const char *key, const char *path, hid_t type, size_t rows, size_t cols,
                                void **out, mg_error *err)
{
    hsize_t d[4] = {0, 0, 0, 0};
    int nd = 0;
    mg_status st = mg_h5_read(f, path, type, out, d, &nd, err);
    if (st != MG_OK)
        return st;
    if (nd != (cols ? 2 : 1) || d[0] != rows || (cols && d[1] != cols))
        return mg_error_set(err, MG_ERR_STATE, "node %s: %s has shape %llux%llu, expected %zux%zu", key, path,
                            (unsigned long long)d[0], (unsigned long long)(nd > 1 ? d[1] : 1), rows,
                            cols ? cols : 1);
    return MG_OK;
}

static mg_status load_references(mg_exec_ctx *ctx, const mg_node *node, const uint32_t *const idx[2],
                                 const size_t n[2], int K, int need_pop, ref_inputs *out, mg_error *err)
{
    mg_status st = MG_OK;
    const size_t R = node->n_extra, nt = n[0] + n[1], Kz = (size_t)K;
    hid_t f = H5I_INVALID_HID;
    void *buf = NULL;
    float *x = NULL;
    mg_model *m = NULL;
    memset(out, 0, sizeof *out);
    out->n_ref = R;
    out->n_t = nt;
    out->ref_logits = mg_malloc(R * nt * Kz, sizeof(float), "reference logits", err);
    out->ref_in = mg_malloc(R * nt, 1, "reference membership", err);
    if (!out->ref_logits || !out->ref_in)
        MG_FAIL(MG_ERR_NOMEM, "out of memory for %zu reference models' logits", R);
    for (size_t r = 0; r < R; r++) {
        const char *key = ctx->plan->nodes[node->extra_first + r].key;
        MG_CHECK(mg_store_node_open(ctx->store, key, &f, err));
        MG_CHECK(read_ref_array(f, key, "reference/candidates/sample_index", H5T_NATIVE_UINT32, nt, 0, &buf, err));
        const uint32_t *ci = buf;
        if ((n[0] && memcmp(ci, idx[0], n[0] * sizeof *ci) != 0) ||
            (n[1] && memcmp(ci + n[0], idx[1], n[1] * sizeof *ci) != 0))
            MG_FAIL(MG_ERR_STATE, "node %s scored other samples than the target's members and non-members", key);
        free(buf);
        buf = NULL;
        MG_CHECK(read_ref_array(f, key, "reference/candidates/logits", H5T_NATIVE_FLOAT, nt, Kz, &buf, err));
        memcpy(out->ref_logits + r * nt * Kz, buf, nt * Kz * sizeof(float));
        free(buf);
        buf = NULL;
        MG_CHECK(read_ref_array(f, key, "reference/candidates/in", H5T_NATIVE_UINT8, nt, 0, &buf, err));
        memcpy(out->ref_in + r * nt, buf, nt);
        free(buf);
        buf = NULL;
        if (need_pop) {
            if (r == 0) {
                hsize_t d[4] = {0};
                int nd = 0;
                MG_CHECK(mg_h5_read(f, "reference/population/sample_index", H5T_NATIVE_UINT32,
                                    (void **)&out->pop_idx, d, &nd, err));
                out->n_pop = nd == 1 ? (size_t)d[0] : 0;
                if (out->n_pop == 0)
                    MG_FAIL(MG_ERR_STATE, "node %s: no population samples to compare with", key);
                out->pop_ref_logits = mg_malloc(R * out->n_pop * Kz, sizeof(float), "population logits", err);
                if (!out->pop_ref_logits)
                    MG_FAIL(MG_ERR_NOMEM, "out of memory for %zu reference models' population logits", R);
            } else {
                MG_CHECK(read_ref_array(f, key, "reference/population/sample_index", H5T_NATIVE_UINT32, out->n_pop,
                                        0, &buf, err));
                if (memcmp(buf, out->pop_idx, out->n_pop * sizeof(uint32_t)) != 0)
                    MG_FAIL(MG_ERR_STATE, "node %s compared with other population samples than node %s", key,
                            ctx->plan->nodes[node->extra_first].key);
                free(buf);
                buf = NULL;
            }
            MG_CHECK(read_ref_array(f, key, "reference/population/logits", H5T_NATIVE_FLOAT, out->n_pop, Kz, &buf,
                                    err));
            memcpy(out->pop_ref_logits + r * out->n_pop * Kz, buf, out->n_pop * Kz * sizeof(float));
            free(buf);
            buf = NULL;
        }
        H5Fclose(f);
        f = H5I_INVALID_HID;
    }
    if (need_pop) {
        /* The target model on z: rebuilt from its node file. */
        const mg_node *tn = &ctx->plan->nodes[node->inputs[0]];
        const size_t P = out->n_pop;
        MG_CHECK(ensure_data(ctx, node->dataset, err));
        const size_t dim = mg_dataset_dim(ctx->data);
        x = mg_malloc(P * dim, sizeof *x, "population samples", err);
        out->pop_labels = mg_malloc(P, sizeof(int32_t), "population labels", err);
        out->pop_logits = mg_malloc(P * Kz, sizeof(float), "population logits", err);
        if (!x || !out->pop_labels || !out->pop_logits)
            MG_FAIL(MG_ERR_NOMEM, "out of memory for %zu population samples", P);
        for (size_t j = 0; j < P; j++)
            if (out->pop_idx[j] >= ctx->data->n)
                MG_FAIL(MG_ERR_STATE, "population sample %u is outside the dataset of %zu samples",
                        (unsigned)out->pop_idx[j], ctx->data->n);
        mg_dataset_gather(ctx->data, out->pop_idx, P, x, out->pop_labels);
        MG_CHECK(make_model(ctx, tn, &m, err));
        if (mg_model_n_classes(m) != K)
            MG_FAIL(MG_ERR_STATE, "the target model has %d classes, its outputs %d", mg_model_n_classes(m), K);
        MG_CHECK(mg_store_node_open(ctx->store, tn->key, &f, err));
        MG_CHECK(read_model(f, m, tn->key, err));
        MG_CHECK(mg_model_predict(m, x, P, out->pop_logits, err));
    }
cleanup:
    if (f >= 0)
        H5Fclose(f);
    free(buf);
    free(x);
    mg_model_destroy(&m);
    if (st != MG_OK)
        ref_inputs_free(out);
    return st;
}

/* lira and rmia: the grid's options into cfg and the reference models'
 * outputs into in (which points into *refs). */
static mg_status reference_inputs(mg_exec_ctx *ctx, const mg_node *node, const uint32_t *const idx[2],
                                  const size_t n[2], mg_attack_cfg *cfg, mg_attack_inputs *in, ref_inputs *refs,
                                  mg_error *err)
{
    const mg_attack_spec *as = &ctx->grid->attacks[node->attack];
    cfg->lira_online = as->lira_online;
    cfg->lira_global_var = as->lira_global_var;
    cfg->rmia_a = as->rmia_a;
    cfg->rmia_gamma = as->rmia_gamma;
    int need_pop = (mg_attack_needs(cfg->kind) & MG_ATTACK_NEEDS_POP) != 0;
    mg_status st = load_references(ctx, node, idx, n, in->n_classes, need_pop, refs, err);
    if (st != MG_OK)
        return st;
    in->n_ref = refs->n_ref;
    in->ref_logits = refs->ref_logits;
    in->ref_in = refs->ref_in;
    in->n_pop = refs->n_pop;
    in->pop_logits = refs->pop_logits;
    in->pop_labels = refs->pop_labels;
    in->pop_ref_logits = refs->pop_ref_logits;
    return MG_OK;
}

static mg_status exec_model(mg_exec_ctx *ctx, const mg_node *node, mg_node_writer *w, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_grid *g = ctx->grid;
    role_data rd;
    mg_model *m = NULL;
    mg_history hist;
    mg_train_cfg tc;
    mg_rng rng;
    hid_t in = H5I_INVALID_HID;
    uint64_t seed = g->seeds[node->seed];
    mg_regime *regime = NULL;
    double *rdp_in = NULL, *mem = NULL;
    size_t n_undefined = 0;
    role_data full;
    uint8_t *in_sub = NULL;
    double admm_residual = 0.0, admm_seconds = 0.0;
    int admm_ran = 0;
    ref_data ref;
    memset(&hist, 0, sizeof hist);
    memset(&rd, 0, sizeof rd);
    memset(&full, 0, sizeof full);
    memset(&ref, 0, sizeof ref);

    MG_CHECK(load_role_data(ctx, node, &rd, err));
    if (node->subset)
        MG_CHECK(take_subset(ctx, node, &rd, &full, &in_sub, err));
    if (node->reference)
        MG_CHECK(take_reference(ctx, node, &rd, &ref, err));
    if (node->n_extra)
        MG_CHECK(estimate_scores(ctx, node, &rd, &mem, &n_undefined, err));
    MG_CHECK(make_model(ctx, node, &m, err));
    if (node->kind == MG_NODE_TRAIN) {
        mg_rng_seed(&rng, seed, node->key, "init");
        mg_model_init_params(m, &rng);
        train_cfg_from(&g->train, &tc);
    } else {
        const mg_node *src = &ctx->plan->nodes[node->inputs[0]];
        MG_CHECK(mg_store_node_open(ctx->store, src->key, &in, err));
        MG_CHECK(read_model(in, m, src->key, err));
        H5Fclose(in);
        in = H5I_INVALID_HID;
        if (strcmp(g->prunes[node->prune].method, "admm") == 0) {
            MG_CHECK(admm_stage(ctx, node, m, &rd, &admm_residual, &admm_seconds, err));
            admm_ran = 1;
        } else {
            MG_CHECK(prune_stage(ctx, node, m, err));
        }
        /* imp retrains from the rewound weights; the others fine-tune. */
        train_cfg_from(node->n_inputs == 2 ? &g->train : &g->finetune, &tc);
    }
    if (node->kind == MG_NODE_TRAIN)
        tc.bn_l1 = node->bn_l1; /* slimming's sparsity training, whatever the defense's step */
    /* The defense acts on this training when its phase covers the node's kind. */
    const mg_defense_spec *ds = node->defense != MG_NO_INDEX && !node->subset ? &g->defenses[node->defense] : NULL;
    unsigned phase = node->kind == MG_NODE_TRAIN ? MG_PHASE_DENSE : MG_PHASE_PRUNE;
    if (ds && (ds->phase & phase)) {
        mg_regime_data rdat = {
            .y = rd.y[0], .sample_index = rd.idx[0], .n = rd.n[0], .x = rd.x[0],
            .ref_x = rd.x[2], .ref_y = rd.y[2], .ref_n = rd.n[2], .in_dim = (size_t)mg_model_in_dim(m),
            .mem = mem,
        };
        MG_CHECK(mg_regime_create(ds, m, &tc, &rdat, seed, node->key, &regime, err));
    }
    MG_CHECK(train_resumable(ctx, node, m, &tc, mg_regime_plugin(regime), &rd, NULL, &hist, err));

    hid_t f = mg_node_writer_file(w);
    MG_CHECK(mg_h5_attr_str(f, "role", mg_role_str(node->role), err));
    if (node->kind == MG_NODE_PRUNE)
        MG_CHECK(mg_h5_attr_f64(f, "requested_sparsity", node->sparsity, err));
    MG_CHECK(write_model(f, m, err));
    MG_CHECK(write_history(f, &hist, err));
    if (hist.best_epoch > 0)
        MG_CHECK(mg_h5_attr_i64(f, "best_epoch", hist.best_epoch, err));
    MG_CHECK(write_outputs(f, m, &rd, err));
    MG_CHECK(write_train_seconds(f, &hist, err));
    if (admm_ran)
        MG_CHECK(write_admm_metrics(f, admm_residual, admm_seconds, err));
    if (node->subset)
        MG_CHECK(write_subset_record(f, m, &full, in_sub, err));
    if (node->reference)
        MG_CHECK(write_reference_record(f, m, node, &ref, err));
    if (mem) {
        hsize_t d = rd.n[0];
        MG_CHECK(mg_h5_write(f, "defense/mem_scores", H5T_NATIVE_DOUBLE, 1, &d, mem, err));
        MG_CHECK(mg_h5_write(f, "defense/mem_sample_index", H5T_NATIVE_UINT32, 1, &d, rd.idx[0], err));
        MG_CHECK(mg_h5_attr_i64(f, "mem_scores_undefined", (int64_t)n_undefined, err));
    }
    if (node->kind == MG_NODE_PRUNE)
        MG_CHECK(write_prune_stats(f, m, err));
    if (regime) {
        /* DP-SGD composes with the input model's training, when that was private too. */
        int in_private = !admm_ran; /* ADMM's training is not private */
        if (node->kind == MG_NODE_PRUNE && !admm_ran) {
            const mg_node *src = &ctx->plan->nodes[node->inputs[0]];
            MG_CHECK(mg_store_node_open(ctx->store, src->key, &in, err));
            in_private = H5Lexists(in, "defense", H5P_DEFAULT) > 0 && H5Lexists(in, "defense/rdp", H5P_DEFAULT) > 0;
            if (in_private) {
                hsize_t d[4];
                int nd = 0;
                MG_CHECK(mg_h5_read(in, "defense/rdp", H5T_NATIVE_DOUBLE, (void **)&rdp_in, d, &nd, err));
                if (nd != 1 || d[0] != MG_RDP_N_ORDERS)
                    MG_FAIL(MG_ERR_STATE, "node %s: defense/rdp has %llu values, expected %d", src->key,
                            (unsigned long long)d[0], MG_RDP_N_ORDERS);
            }
        }
        MG_CHECK(mg_regime_write(regime, f, hist.n_epochs, rdp_in, in_private, err));
    }
cleanup:
    free(rdp_in);
    free(mem);
    free(in_sub);
    role_data_free(&full);
    ref_data_free(&ref);
    mg_regime_destroy(&regime);
    if (in >= 0)
        H5Fclose(in);
    mg_history_free(&hist);
    mg_model_destroy(&m);
    role_data_free(&rd);
    return st;
}

/* One model's outputs as the attack sees them. */
typedef struct {
    float *logits[2];
    int32_t *labels[2];
    uint32_t *index[2];
    float *sens[2];    /* sensitivity features (n, K), for the attacks that need them; else NULL */
    size_t n[2];
    int K;
} outputs;

static void outputs_free(outputs *o)
{
    for (int i = 0; i < 2; i++) {
        free(o->logits[i]);
        free(o->labels[i]);
        free(o->index[i]);
        free(o->sens[i]);
    }
    memset(o, 0, sizeof *o);
}

static mg_status read_outputs(mg_exec_ctx *ctx, const char *key, outputs *o, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t f = H5I_INVALID_HID;
    static const char *part[2] = {"member", "nonmember"};
    memset(o, 0, sizeof *o);
    MG_CHECK(mg_store_node_open(ctx->store, key, &f, err));
    for (int i = 0; i < 2; i++) {
        char path[64];
        hsize_t d[4];
        int nd;
        snprintf(path, sizeof path, "outputs/%s/logits", part[i]);
        MG_CHECK(mg_h5_read(f, path, H5T_NATIVE_FLOAT, (void **)&o->logits[i], d, &nd, err));
        if (nd != 2)
            MG_FAIL(MG_ERR_STATE, "node %s: %s is not a matrix", key, path);
        o->n[i] = (size_t)d[0];
        o->K = (int)d[1];
        snprintf(path, sizeof path, "outputs/%s/labels", part[i]);
        MG_CHECK(mg_h5_read(f, path, H5T_NATIVE_INT32, (void **)&o->labels[i], d, &nd, err));
        snprintf(path, sizeof path, "outputs/%s/sample_index", part[i]);
        MG_CHECK(mg_h5_read(f, path, H5T_NATIVE_UINT32, (void **)&o->index[i], d, &nd, err));
    }
cleanup:
    if (f >= 0)
        H5Fclose(f);
    if (st != MG_OK) {
        mg_error_prefix(err, "reading outputs of node %s: ", key);
        outputs_free(o);
    }
    return st;
}

static mg_status write_metrics(hid_t f, const char *path, const mg_attack_summary *sm, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_attack_metrics *m = &sm->attack;
    hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(lcpl, 1);
    hid_t grp = H5Gcreate2(f, path, lcpl, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(lcpl);
    if (grp < 0)
        MG_FAIL(MG_ERR_HDF5, "cannot create group %s", path);
    const struct {
        const char *name;
        double v;
    } rows[] = {
        {"balanced_acc", m->balanced_acc}, {"auc", m->auc},
        {"tpr_at_1pct_fpr", m->tpr_at_1fpr}, {"tpr_at_0.1pct_fpr", m->tpr_at_01fpr},
        {"tpr_at_0fpr", m->tpr_at_0fpr}, {"advantage", m->advantage},
        {"precision", m->precision}, {"defense_level", m->defense},
        {"threshold", m->threshold}, {"tpr", m->tpr}, {"fpr", m->fpr},
        {"js_divergence", sm->js_divergence},
    };
    for (size_t i = 0; i < sizeof rows / sizeof *rows; i++)
        MG_CHECK(mg_h5_attr_f64(grp, rows[i].name, rows[i].v, err));
cleanup:
    if (grp >= 0)
        H5Gclose(grp);
    return st;
}

static mg_attack_split as_split(const outputs *o, int part)
{
    mg_attack_split s = {o->logits[part], o->labels[part], o->sens[part], o->n[part]};
    return s;
}

/* Shadow model s of an attack node (inputs[1] is shadow model 0). */
static size_t attack_shadow(const mg_node *node, size_t s)
{
    return s == 0 || !node->shadows ? node->inputs[1] : node->shadows[s];
}

/* The sensitivity features (samia, gonon) of one model on its members and
 * non-members, into o->sens. The model is rebuilt from its node file and fed
 * the samples of its role's split, which must be those its stored outputs
 * were computed on, in the same order. */
static mg_status model_sensitivity(mg_exec_ctx *ctx, const mg_node *model_node, const mg_attack_cfg *cfg,
                                   mg_rng *rng, outputs *o, mg_error *err)
{
    static const char *const part[2] = {"member", "nonmember"};
    mg_status st = MG_OK;
    role_data rd;
    mg_model *m = NULL;
    hid_t f = H5I_INVALID_HID;
    memset(&rd, 0, sizeof rd);
    MG_CHECK(load_role_data(ctx, model_node, &rd, err));
    MG_CHECK(make_model(ctx, model_node, &m, err));
    MG_CHECK(mg_store_node_open(ctx->store, model_node->key, &f, err));
    MG_CHECK(read_model(f, m, model_node->key, err));
    if (mg_model_n_classes(m) != o->K)
        MG_FAIL(MG_ERR_STATE, "the model has %d classes, its stored outputs %d", mg_model_n_classes(m), o->K);
    for (int i = 0; i < 2; i++) {
        if (rd.n[i] != o->n[i] || (o->n[i] && memcmp(rd.idx[i], o->index[i], o->n[i] * sizeof(uint32_t)) != 0))
            MG_FAIL(MG_ERR_STATE, "outputs/%s/sample_index are not the %zu samples its role's split gives (the "
                    "split changed since it was computed?)", part[i], rd.n[i]);
        o->sens[i] = mg_malloc(o->n[i] ? o->n[i] * (size_t)o->K : 1, sizeof(float), "sensitivity features", err);
        if (!o->sens[i])
            MG_FAIL(MG_ERR_NOMEM, "out of memory for the sensitivity features of %zu samples", o->n[i]);
        MG_CHECK(mg_attack_sensitivity(m, rd.x[i], rd.n[i], cfg->sens_draws, cfg->sens_eps, rng, o->sens[i], err));
    }
cleanup:
    if (f >= 0)
        H5Fclose(f);
    mg_model_destroy(&m);
    role_data_free(&rd);
    if (st != MG_OK)
        mg_error_prefix(err, "sensitivity features of node %s: ", model_node->key);
    return st;
}

/* Sensitivity features of the target and of every shadow model, from one
 * generator of the attack node's own, drawn in that order (target, then
 * shadow models 0, 1, ...; members before non-members). */
static mg_status attack_sensitivity(mg_exec_ctx *ctx, const mg_node *node, const mg_attack_cfg *cfg, outputs *tgt,
                                    outputs *shd, size_t n_shd, mg_error *err)
{
    mg_rng rng;
    mg_rng_seed(&rng, ctx->grid->seeds[node->seed], node->key, "sensitivity");
    mg_status st = model_sensitivity(ctx, &ctx->plan->nodes[node->inputs[0]], cfg, &rng, tgt, err);
    for (size_t s = 0; st == MG_OK && s < n_shd; s++)
        st = model_sensitivity(ctx, &ctx->plan->nodes[attack_shadow(node, s)], cfg, &rng, &shd[s], err);
    return st;
}

static mg_status exec_attack(mg_exec_ctx *ctx, const mg_node *node, mg_node_writer *w, mg_error *err)
{
    mg_status st = MG_OK;
    const char *attack = ctx->grid->attacks[node->attack].name;
    outputs tgt;
    outputs *shd = NULL;
    mg_attack_outputs *shadow = NULL;
    mg_attack_cfg cfg;
    mg_attack_result res;
    double *fpr = NULL, *tpr = NULL, *pc = NULL;
    uint32_t *index = NULL;
    size_t npts = 0, n_shd = node->n_shadows ? node->n_shadows : 1;
    ref_inputs refs;
    memset(&refs, 0, sizeof refs);
    memset(&tgt, 0, sizeof tgt);
    memset(&res, 0, sizeof res);

    shd = mg_calloc(n_shd, sizeof *shd, "shadow outputs", err);
    shadow = mg_calloc(n_shd, sizeof *shadow, "shadow outputs", err);
    if (!shd || !shadow)
        MG_FAIL(MG_ERR_NOMEM, "out of memory for %zu shadow models' outputs", n_shd);
    MG_CHECK(read_outputs(ctx, ctx->plan->nodes[node->inputs[0]].key, &tgt, err));
    for (size_t s = 0; s < n_shd; s++) {
        MG_CHECK(read_outputs(ctx, ctx->plan->nodes[attack_shadow(node, s)].key, &shd[s], err));
        if (tgt.K != shd[s].K)
            MG_FAIL(MG_ERR_STATE, "target and shadow model %zu have %d and %d classes", s, tgt.K, shd[s].K);
    }
    /* lira-offline is lira with online off (reference_inputs sets it). */
    MG_CHECK(mg_attack_cfg_init(&cfg, strcmp(attack, "lira-offline") ? attack : "lira", err));
    mg_rng_seed(&cfg.rng, ctx->grid->seeds[node->seed], node->key, "attack");
    cfg.gonon_depth = ctx->grid->attacks[node->attack].gonon_depth;
    if (mg_attack_needs(cfg.kind) & MG_ATTACK_NEEDS_SENS)
        MG_CHECK(attack_sensitivity(ctx, node, &cfg, &tgt, shd, n_shd, err));
    mg_attack_inputs in;
    memset(&in, 0, sizeof in);
    in.n_classes = tgt.K;
    in.target.member = as_split(&tgt, 0);
    in.target.nonmember = as_split(&tgt, 1);
    /* k shadow models are pooled: the attack fits on all their samples. */
    for (size_t s = 0; s < n_shd; s++) {
        shadow[s].member = as_split(&shd[s], 0);
        shadow[s].nonmember = as_split(&shd[s], 1);
    }
    in.shadow = shadow;
    in.n_shadow = n_shd;
    if (node->n_extra) {
        const uint32_t *const tidx[2] = {tgt.index[0], tgt.index[1]};
        MG_CHECK(reference_inputs(ctx, node, tidx, tgt.n, &cfg, &in, &refs, err));
    }
    /* The attacker fits on the shadow models, where it knows membership, and
     * applies what it learnt to the target. */
    MG_CHECK(mg_attack_run(&cfg, &in, &res, err));

    hid_t f = mg_node_writer_file(w);
    MG_CHECK(mg_h5_attr_str(f, "attack", attack, err));
    if (!isnan(res.rmia_a))
        MG_CHECK(mg_h5_attr_f64(f, "rmia_a", res.rmia_a, err));
    MG_CHECK(write_metrics(f, "metrics/target", &res.target, err));
    MG_CHECK(write_metrics(f, "metrics/shadow", &res.shadow, err));
    index = mg_malloc(res.n ? res.n : 1, sizeof *index, "indices", err);
    pc = mg_malloc((size_t)res.n_classes * 4, sizeof *pc, "per-class metrics", err);
    if (!index || !pc)
        MG_FAIL(MG_ERR_NOMEM, "out of memory writing attack results");
    memcpy(index, tgt.index[0], tgt.n[0] * sizeof *index);
    memcpy(index + tgt.n[0], tgt.index[1], tgt.n[1] * sizeof *index);
    hsize_t d = res.n;
    MG_CHECK(mg_h5_write(f, "scores/score", H5T_NATIVE_DOUBLE, 1, &d, res.score, err));
    MG_CHECK(mg_h5_write(f, "scores/is_member", H5T_NATIVE_UINT8, 1, &d, res.member, err));
    MG_CHECK(mg_h5_write(f, "scores/sample_index", H5T_NATIVE_UINT32, 1, &d, index, err));
    MG_CHECK(mg_h5_write(f, "scores/label", H5T_NATIVE_INT32, 1, &d, res.label, err));
    MG_CHECK(mg_metric_roc(res.score, res.member, res.n, &fpr, &tpr, &npts, err));
    hsize_t dp = npts;
    MG_CHECK(mg_h5_write(f, "roc/fpr", H5T_NATIVE_DOUBLE, 1, &dp, fpr, err));
    MG_CHECK(mg_h5_write(f, "roc/tpr", H5T_NATIVE_DOUBLE, 1, &dp, tpr, err));
    /* Per class of the true label: balanced accuracy, AUC, TPR at 1 % FPR, d. */
    for (int c = 0; c < res.n_classes; c++) {
        pc[4 * c] = res.per_class[c].attack.balanced_acc;
        pc[4 * c + 1] = res.per_class[c].attack.auc;
        pc[4 * c + 2] = res.per_class[c].attack.tpr_at_1fpr;
        pc[4 * c + 3] = res.per_class[c].js_divergence;
    }
    hsize_t d2[2] = {(hsize_t)res.n_classes, 4};
    MG_CHECK(mg_h5_write(f, "per_class/metrics", H5T_NATIVE_DOUBLE, 2, d2, pc, err));
    MG_CHECK(mg_h5_attr_str(f, "per_class_columns", "balanced_acc,auc,tpr_at_1pct_fpr,js_divergence", err));
cleanup:
    outputs_free(&tgt);
    for (size_t s = 0; shd && s < n_shd; s++)
        outputs_free(&shd[s]);
    free(shd);
    free(shadow);
    ref_inputs_free(&refs);
    mg_attack_result_free(&res);
    free(fpr);
    free(tpr);
    free(pc);
    free(index);
    return st;
}

/* ---- MIA-Pruning's selection --------------------------------------------------------- */

/* Root attributes that say which node a file is and where it ran: a select
 * node has its own. The others (role, requested_sparsity, best_epoch, ...)
 * describe the model and come along with it. */
static const char *const NODE_IDENTITY_ATTRS[] = {"key", "kind", "recipe", "status", "store_format",
                                                  "miagrid_version", "rank", "host", "started", "ended",
                                                  "seconds", NULL};

typedef struct {
    hid_t dst;
    const char *key;
    mg_error *err;
    mg_status st;
} copy_ctx;

static herr_t copy_link(hid_t src, const char *name, const H5L_info_t *info, void *user)
{
    (void)info;
    copy_ctx *cc = user;
    if (H5Ocopy(src, name, cc->dst, name, H5P_DEFAULT, H5P_DEFAULT) < 0) {
        cc->st = mg_error_set(cc->err, MG_ERR_HDF5, "copying /%s of node %s failed", name, cc->key);
        return -1;
    }
    return 0;
}

static herr_t copy_attr(hid_t src, const char *name, const H5A_info_t *info, void *user)
{
    (void)info;
    copy_ctx *cc = user;
    for (int i = 0; NODE_IDENTITY_ATTRS[i]; i++)
        if (strcmp(name, NODE_IDENTITY_ATTRS[i]) == 0)
            return 0;
    hid_t a = H5Aopen(src, name, H5P_DEFAULT);
    hid_t t = a >= 0 ? H5Aget_type(a) : H5I_INVALID_HID;
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    if (t >= 0)
        H5Tclose(t);
    if (a >= 0)
        H5Aclose(a);
    char buf[4096];
    double f = 0.0;
    int64_t v = 0;
    if (cls == H5T_STRING) {
        if ((cc->st = mg_h5_get_attr_str(src, name, buf, sizeof buf, cc->err)) == MG_OK)
            cc->st = mg_h5_attr_str(cc->dst, name, buf, cc->err);
    } else if (cls == H5T_FLOAT) {
        if ((cc->st = mg_h5_get_attr_f64(src, name, &f, cc->err)) == MG_OK)
            cc->st = mg_h5_attr_f64(cc->dst, name, f, cc->err);
    } else if (cls == H5T_INTEGER) {
        a = H5Aopen(src, name, H5P_DEFAULT);
        if (a < 0 || H5Aread(a, H5T_NATIVE_INT64, &v) < 0)
            cc->st = mg_error_set(cc->err, MG_ERR_HDF5, "node %s: attribute %s does not read", cc->key, name);
        else
            cc->st = mg_h5_attr_i64(cc->dst, name, v, cc->err);
        if (a >= 0)
            H5Aclose(a);
    } else {
        cc->st = mg_error_set(cc->err, MG_ERR_STATE, "node %s: attribute %s is of a kind miagrid does not write",
                              cc->key, name);
    }
    return cc->st == MG_OK ? 0 : -1;
}

/* Everything a model node holds (its groups and datasets, and the root
 * attributes that describe the model) into the node being written. */
static mg_status copy_model_node(mg_exec_ctx *ctx, const char *key, hid_t dst, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t src = H5I_INVALID_HID;
    copy_ctx cc = {dst, key, err, MG_OK};
    MG_CHECK(mg_store_node_open(ctx->store, key, &src, err));
    if (H5Literate(src, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_link, &cc) < 0 ||
        H5Aiterate2(src, H5_INDEX_NAME, H5_ITER_INC, NULL, copy_attr, &cc) < 0) {
        st = cc.st != MG_OK ? cc.st : mg_error_set(err, MG_ERR_HDF5, "node %s does not copy", key);
        goto cleanup;
    }
cleanup:
    if (src >= 0)
        H5Fclose(src);
    return st;
}

/* The select node of role target: for each candidate, the gain of the
 * selection's attack on each pruned shadow model (mg_attack_gain), averaged
 * over the shadow models; the candidate of least gain wins (on a tie the
 * sparser). Its target model is copied into the node, with the record of
 * the choice. The target's own members and non-members play no part. */
static mg_status select_decide(mg_exec_ctx *ctx, const mg_node *node, hid_t f, size_t *chosen, double *chosen_gain,
                               mg_error *err)
{
    mg_status st = MG_OK;
    const mg_prune_spec *ps = &ctx->grid->prunes[node->prune];
    size_t nc = node->n_candidates, per = node->n_cands / nc, best = 0;
    double *gain = NULL, *bacc = NULL, *sparsity = NULL;
    outputs o;
    memset(&o, 0, sizeof o);
    gain = mg_calloc(nc, sizeof *gain, "selection gains", err);
    bacc = mg_calloc(nc, sizeof *bacc, "selection gains", err);
    sparsity = mg_calloc(nc, sizeof *sparsity, "selection gains", err);
    if (!gain || !bacc || !sparsity)
        MG_CHECK(MG_ERR_NOMEM);
    for (size_t k = 0; k < nc; k++) {
        sparsity[k] = ctx->plan->nodes[node->cands[k * per]].sparsity;
        for (size_t m = 1; m < per; m++) {
            const mg_node *sh = &ctx->plan->nodes[node->cands[k * per + m]];
            mg_attack_cfg cfg;
            double g = 0.0, b = 0.0;
            MG_CHECK(mg_attack_cfg_init(&cfg, ps->select_attack, err));
            /* The same halves and attack-model draws for every candidate. */
            mg_rng_seed(&cfg.rng, ctx->grid->seeds[node->seed], ctx->plan->nodes[node->cands[m]].key, "select");
            MG_CHECK(read_outputs(ctx, sh->key, &o, err));
            mg_attack_outputs out = {as_split(&o, 0), as_split(&o, 1)};
            st = mg_attack_gain(&cfg, o.K, &out, &g, &b, err);
            outputs_free(&o);
            if (st != MG_OK) {
                mg_error_prefix(err, "sparsity %g, shadow model %zu: ", sparsity[k], m - 1);
                goto cleanup;
            }
            gain[k] += g / (double)(per - 1);
            bacc[k] += b / (double)(per - 1);
        }
        if (gain[k] <= gain[best])
            best = k;
    }
    MG_CHECK(copy_model_node(ctx, ctx->plan->nodes[node->cands[best * per]].key, f, err));
    hsize_t d = nc;
    MG_CHECK(mg_h5_write(f, "selection/sparsity", H5T_NATIVE_DOUBLE, 1, &d, sparsity, err));
    MG_CHECK(mg_h5_write(f, "selection/gain", H5T_NATIVE_DOUBLE, 1, &d, gain, err));
    MG_CHECK(mg_h5_write(f, "selection/balanced_acc", H5T_NATIVE_DOUBLE, 1, &d, bacc, err));
    hid_t sel = H5Gopen2(f, "selection", H5P_DEFAULT);
    if (sel < 0)
        MG_FAIL(MG_ERR_HDF5, "the selection group does not open");
    st = mg_h5_attr_str(sel, "attack", ps->select_attack, err);
    if (st == MG_OK)
        st = mg_h5_attr_i64(sel, "chosen", (int64_t)best, err);
    H5Gclose(sel);
    MG_CHECK(st);
    *chosen = best;
    *chosen_gain = gain[best];
cleanup:
    outputs_free(&o);
    free(gain);
    free(bacc);
    free(sparsity);
    return st;
}

/* The decision a shadow model's select node follows, read from the
 * target's select node: the index of the chosen candidate and its gain. */
static mg_status read_decision(mg_exec_ctx *ctx, const mg_node *node, size_t *chosen, double *chosen_gain,
                               mg_error *err)
{
    mg_status st = MG_OK;
    const char *decider = ctx->plan->nodes[node->inputs[0]].key;
    hid_t in = H5I_INVALID_HID;
    int64_t c = -1;
    double *gain = NULL;
    hsize_t d[4];
    int nd = 0;
    MG_CHECK(mg_store_node_open(ctx->store, decider, &in, err));
    hid_t sel = H5Gopen2(in, "selection", H5P_DEFAULT);
    if (sel < 0 || H5Aexists(sel, "chosen") <= 0) {
        if (sel >= 0)
            H5Gclose(sel);
        MG_FAIL(MG_ERR_STATE, "node %s has no selection/chosen", decider);
    }
    hid_t a = H5Aopen(sel, "chosen", H5P_DEFAULT);
    herr_t rc = a >= 0 ? H5Aread(a, H5T_NATIVE_INT64, &c) : -1;
    if (a >= 0)
        H5Aclose(a);
    H5Gclose(sel);
    if (rc < 0 || c < 0 || (size_t)c >= node->n_candidates)
        MG_FAIL(MG_ERR_STATE, "node %s: selection/chosen is not one of its %zu candidates", decider,
                node->n_candidates);
    MG_CHECK(mg_h5_read(in, "selection/gain", H5T_NATIVE_DOUBLE, (void **)&gain, d, &nd, err));
    if (nd != 1 || d[0] != node->n_candidates)
        MG_FAIL(MG_ERR_STATE, "node %s: selection/gain has %llu values for %zu candidates", decider,
                (unsigned long long)d[0], node->n_candidates);
    *chosen = (size_t)c;
    *chosen_gain = gain[c];
cleanup:
    if (in >= 0)
        H5Fclose(in);
    free(gain);
    return st;
}

/* A select node: the target's decides, a shadow model's follows the
 * decision read from the target's node file. Either holds a copy of the
 * chosen candidate's model, and its metrics say which sparsity won and
 * with what gain. */
static mg_status exec_select(mg_exec_ctx *ctx, const mg_node *node, mg_node_writer *w, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t f = mg_node_writer_file(w);
    size_t chosen = 0, per = 1;
    double gain = 0.0;
    if (node->role == MG_ROLE_TARGET) {
        MG_CHECK(select_decide(ctx, node, f, &chosen, &gain, err));
        per = node->n_cands / node->n_candidates;
    } else {
        MG_CHECK(read_decision(ctx, node, &chosen, &gain, err));
        MG_CHECK(copy_model_node(ctx, ctx->plan->nodes[node->cands[chosen]].key, f, err));
    }
    /* In the metrics, so that the results table has them. */
    hid_t m = H5Lexists(f, "metrics", H5P_DEFAULT) > 0 ? H5Gopen2(f, "metrics", H5P_DEFAULT)
                                                        : H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT,
                                                                     H5P_DEFAULT);
    if (m < 0)
        MG_FAIL(MG_ERR_HDF5, "the metrics group does not open");
    st = mg_h5_attr_f64(m, "selected_sparsity", ctx->plan->nodes[node->cands[chosen * per]].sparsity, err);
    if (st == MG_OK)
        st = mg_h5_attr_f64(m, "selection_gain", gain, err);
    H5Gclose(m);
    MG_CHECK(st);
cleanup:
    return st;
}

mg_status mg_exec_node(mg_exec_ctx *ctx, size_t idx, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_node *node = &ctx->plan->nodes[idx];
    mg_node_writer *w = NULL;
    double t0 = mg_now();
    char started[40];
    mg_iso_time(started, sizeof started);

    MG_CHECK(mg_node_writer_begin(ctx->store, node->key, mg_node_kind_str(node->kind), node->recipe, &w, err));
    if (node->kind == MG_NODE_ATTACK)
        MG_CHECK(exec_attack(ctx, node, w, err));
    else if (node->kind == MG_NODE_SELECT)
        MG_CHECK(exec_select(ctx, node, w, err));
    else
        MG_CHECK(exec_model(ctx, node, w, err));
    hid_t f = mg_node_writer_file(w);
    char ended[40];
    mg_iso_time(ended, sizeof ended);
    MG_CHECK(mg_h5_attr_i64(f, "rank", ctx->rank, err));
    MG_CHECK(mg_h5_attr_str(f, "host", ctx->host, err));
    MG_CHECK(mg_h5_attr_str(f, "started", started, err));
    MG_CHECK(mg_h5_attr_str(f, "ended", ended, err));
    MG_CHECK(mg_h5_attr_f64(f, "seconds", mg_now() - t0, err));
    MG_CHECK(mg_node_writer_commit(&w, err));
    if (node->kind == MG_NODE_TRAIN || node->kind == MG_NODE_PRUNE) {
        char ckpt[4200];
        checkpoint_path(ctx, node, NULL, ckpt, sizeof ckpt);
        unlink(ckpt);
        checkpoint_path(ctx, node, "admm", ckpt, sizeof ckpt);
        unlink(ckpt);
    }
cleanup:
    if (w)
        mg_node_writer_abort(&w);
    if (st != MG_OK)
        mg_error_prefix(err, "%s node %.12s: ", mg_node_kind_str(node->kind), node->key);
    return st;
}
