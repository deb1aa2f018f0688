/*
 * ckpt.c: the full training state to and from HDF5, so a node's training can
 * stop at any epoch boundary (a signal, a wall-time limit) and resume later,
 * on another rank or host, with the same bits as an uninterrupted run.
 *
 * Layout (in the group or file given):
 *   attributes  format, train_cfg, model_layout, epochs_done, finished,
 *               best_epoch, optim_step, next_lr
 *   model/params, model/masks, model/buffers   float, one flat block each
 *   optim/m1, optim/m2                          float (m2 for Adam and AdamW)
 *   rng/shuffle, rng/augment, rng/dropout       uint64[4] xoshiro state
 *   best/params, best/buffers                   float (early stopping only)
 *   history/{loss,train_acc,seconds,lr,dev_acc} double[epochs_done]
 *   regime/                                     a training regime's own state (mg_train_plugin)
 * train_cfg (which names the regime, if any) and model_layout are fingerprints checked on load: a checkpoint
 * only resumes the training it was written by.
 */
#include "miagrid/nn.h"
#include "miagrid/store.h"

#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define CKPT_FORMAT "miagrid train state 1"
/* Longest configuration fingerprint: about 30 numbers and names. */
#define CFG_DESC_MAX 2048

/* "key=value" tokens separated by spaces, numbers in shortest round-trip form. */
static void describe_cfg(const mg_train_cfg *c, mg_strbuf *b)
{
    const mg_optim_cfg *o = &c->optim;
    const mg_lr_schedule *s = &c->schedule;
    mg_strbuf_printf(b, "epochs=%d batch=%d optimizer=%s lr=", c->epochs, c->batch, mg_opt_kind_str(o->kind));
    mg_strbuf_json_num(b, o->lr);
    mg_strbuf_append(b, " momentum=");
    mg_strbuf_json_num(b, o->momentum);
    mg_strbuf_printf(b, " nesterov=%d weight_decay=", o->nesterov != 0);
    mg_strbuf_json_num(b, o->weight_decay);
    mg_strbuf_append(b, " beta1=");
    mg_strbuf_json_num(b, o->beta1);
    mg_strbuf_append(b, " beta2=");
    mg_strbuf_json_num(b, o->beta2);
    mg_strbuf_append(b, " eps=");
    mg_strbuf_json_num(b, o->eps);
    mg_strbuf_printf(b, " schedule=%s", mg_lr_kind_str(s->kind));
    if (s->kind == MG_LR_MULTISTEP) {
        mg_strbuf_append(b, " milestones=");
        for (int i = 0; i < s->n_milestones; i++)
            mg_strbuf_printf(b, "%s%d", i ? "," : "", s->milestones[i]);
        mg_strbuf_append(b, " gamma=");
        mg_strbuf_json_num(b, s->gamma);
    } else if (s->kind == MG_LR_COSINE) {
        mg_strbuf_append(b, " eta_min=");
        mg_strbuf_json_num(b, s->eta_min);
    }
    mg_strbuf_printf(b, " patience=%d augment=%s%s%s", c->patience, c->augment ? "" : "none",
                     (c->augment & MG_AUGMENT_CROP) ? "crop" : "",
                     (c->augment & MG_AUGMENT_FLIP) ? ((c->augment & MG_AUGMENT_CROP) ? ",flip" : "flip") : "");
    /* Only when on, so checkpoints written before the penalty existed still load. */
    if (c->bn_l1 != 0.0) {
        mg_strbuf_append(b, " bn_l1=");
        mg_strbuf_json_num(b, c->bn_l1);
    }
}

/* Hash of the tensor table (names, shapes, kinds), so a checkpoint is not
 * loaded into a different architecture that happens to have as many numbers. */
static void model_layout(const mg_model *m, char hex[33])
{
    mg_sha256_ctx c;
    uint8_t digest[32];
    mg_sha256_init(&c);
    for (size_t i = 0; i < mg_model_n_tensors(m); i++) {
        const mg_tensor_info *t = mg_model_tensor(m, i);
        char line[160];
        int n = snprintf(line, sizeof line, "%s:%d:%d:%d:%d:%d:%d:%d:%zu;", t->name, t->ndim, t->shape[0],
                         t->shape[1], t->shape[2], t->shape[3], t->prunable, t->buffer, t->count);
        mg_sha256_update(&c, line, n > 0 && (size_t)n < sizeof line ? (size_t)n : sizeof line - 1);
    }
    mg_sha256_final(&c, digest);
    for (int i = 0; i < 16; i++)
        snprintf(hex + 2 * i, 3, "%02x", digest[i]);
}

static mg_status write_floats(hid_t loc, const char *path, const float *v, size_t n, mg_error *err)
{
    hsize_t dims[1] = {(hsize_t)n};
    return mg_h5_write(loc, path, H5T_NATIVE_FLOAT, 1, dims, v, err);
}

static mg_status write_doubles(hid_t loc, const char *path, const double *v, size_t n, mg_error *err)
{
    hsize_t dims[1] = {(hsize_t)n};
    return mg_h5_write(loc, path, H5T_NATIVE_DOUBLE, 1, dims, v, err);
}

static mg_status write_rng(hid_t loc, const char *path, const mg_rng *r, mg_error *err)
{
    hsize_t dims[1] = {4};
    return mg_h5_write(loc, path, H5T_NATIVE_UINT64, 1, dims, r->s, err);
}

/* A regime's name joins the fingerprint: its state is part of what resumes. */
static void describe_regime(const mg_train_state *s, mg_strbuf *b)
{
    if (s->plugin)
        mg_strbuf_printf(b, " regime=%s", s->plugin->name ? s->plugin->name : "unnamed");
}

mg_status mg_train_state_save(hid_t loc, mg_model *m, const mg_train_state *s, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t grp = H5I_INVALID_HID;
    mg_strbuf desc;
    char layout[33];
    mg_strbuf_init(&desc);
    describe_cfg(&s->cfg, &desc);
    describe_regime(s, &desc);
    if (desc.oom)
        MG_FAIL(MG_ERR_NOMEM, "checkpoint: out of memory");
    model_layout(m, layout);
    if (s->n_params != mg_model_n_params(m) || s->n_buffers != mg_model_n_buffers(m))
        MG_FAIL(MG_ERR_ARG, "checkpoint: the training state belongs to another model");
    const int next = s->epochs_done < s->cfg.epochs ? s->epochs_done : s->cfg.epochs - 1;

    MG_CHECK(mg_h5_attr_str(loc, "format", CKPT_FORMAT, err));
    MG_CHECK(mg_h5_attr_str(loc, "train_cfg", desc.s, err));
    MG_CHECK(mg_h5_attr_str(loc, "model_layout", layout, err));
    MG_CHECK(mg_h5_attr_i64(loc, "epochs_done", s->epochs_done, err));
    MG_CHECK(mg_h5_attr_i64(loc, "finished", s->finished, err));
    MG_CHECK(mg_h5_attr_i64(loc, "best_epoch", s->hist.best_epoch, err));
    MG_CHECK(mg_h5_attr_i64(loc, "optim_step", s->opt.step, err));
    /* For people reading the file; the rate is recomputed from the epoch. */
    MG_CHECK(mg_h5_attr_f64(loc, "next_lr", mg_lr_at(&s->cfg.schedule, s->cfg.optim.lr, next, s->cfg.epochs),
                            err));

    MG_CHECK(write_floats(loc, "model/params", mg_model_params(m), s->n_params, err));
    MG_CHECK(write_floats(loc, "model/masks", mg_model_masks(m), s->n_params, err));
    if (s->n_buffers)
        MG_CHECK(write_floats(loc, "model/buffers", mg_model_buffers(m), s->n_buffers, err));
    MG_CHECK(write_floats(loc, "optim/m1", s->opt.m1, s->opt.n, err));
    if (s->opt.m2)
        MG_CHECK(write_floats(loc, "optim/m2", s->opt.m2, s->opt.n, err));
    MG_CHECK(write_rng(loc, "rng/shuffle", &s->shuffle, err));
    MG_CHECK(write_rng(loc, "rng/augment", &s->augment, err));
    MG_CHECK(write_rng(loc, "rng/dropout", &s->dropout, err));
    if (s->best_params)
        MG_CHECK(write_floats(loc, "best/params", s->best_params, s->n_params, err));
    if (s->best_buffers)
        MG_CHECK(write_floats(loc, "best/buffers", s->best_buffers, s->n_buffers, err));
    if (s->epochs_done > 0) {
        const size_t e = (size_t)s->epochs_done;
        MG_CHECK(write_doubles(loc, "history/loss", s->hist.loss, e, err));
        MG_CHECK(write_doubles(loc, "history/train_acc", s->hist.train_acc, e, err));
        MG_CHECK(write_doubles(loc, "history/seconds", s->hist.seconds, e, err));
        MG_CHECK(write_doubles(loc, "history/lr", s->hist.lr, e, err));
        MG_CHECK(write_doubles(loc, "history/dev_acc", s->hist.dev_acc, e, err));
    }
    if (s->plugin && s->plugin->save) {
        grp = H5Gcreate2(loc, "regime", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        if (grp < 0)
            MG_FAIL(MG_ERR_HDF5, "checkpoint: cannot create group regime");
        MG_CHECK(s->plugin->save(s->plugin->user, grp, err));
    }
cleanup:
    if (grp >= 0)
        H5Gclose(grp);
    mg_strbuf_free(&desc);
    return st;
}

/* ---- loading ------------------------------------------------------------------------- */

/* A dataset of exactly `count` elements, converted to `type`. */
static mg_status read_exact(hid_t loc, const char *path, hid_t type, size_t count, void **out, mg_error *err)
{
    hsize_t dims[4];
    int nd = 0;
    mg_status st = mg_h5_read(loc, path, type, out, dims, &nd, err);
    if (st != MG_OK)
        return st;
    hsize_t have = 1;
    for (int i = 0; i < nd; i++)
        have *= dims[i];
    if (have != (hsize_t)count) {
        free(*out);
        *out = NULL;
        return mg_error_set(err, MG_ERR_STATE, "%s has %llu values, this model and configuration need %zu", path,
                            (unsigned long long)have, count);
    }
    return MG_OK;
}

static mg_status read_int(hid_t loc, const char *name, long lo, long hi, long *out, mg_error *err)
{
    double v = 0.0;
    mg_status st = mg_h5_get_attr_f64(loc, name, &v, err);
    if (st != MG_OK)
        return st;
    if (!(v >= (double)lo && v <= (double)hi) || v != floor(v))
        return mg_error_set(err, MG_ERR_STATE, "attribute %s = %g is outside [%ld, %ld]", name, v, lo, hi);
    *out = (long)v;
    return MG_OK;
}

/* The first "key=value" token where the two fingerprints differ. */
static void first_difference(const char *a, const char *b, char *ta, char *tb, size_t cap)
{
    snprintf(ta, cap, "%s", a);
    snprintf(tb, cap, "%s", b);
    while (*a || *b) {
        size_t la = strcspn(a, " "), lb = strcspn(b, " ");
        if (la != lb || strncmp(a, b, la) != 0) {
            snprintf(ta, cap, "%.*s", (int)la, a);
            snprintf(tb, cap, "%.*s", (int)lb, b);
            return;
        }
        a += la + (a[la] == ' ');
        b += lb + (b[lb] == ' ');
    }
}

mg_status mg_train_state_load(hid_t loc, mg_model *m, mg_train_state *s, mg_error *err)
{
    mg_status st = MG_OK;
    hid_t grp = H5I_INVALID_HID;
    mg_strbuf desc;
    char *text = NULL, layout[33], *ta = NULL, *tb = NULL;
    float *params = NULL, *masks = NULL, *buffers = NULL, *m1 = NULL, *m2 = NULL, *bp = NULL, *bb = NULL;
    uint64_t *rngs[3] = {NULL, NULL, NULL};
    double *hist[5] = {NULL, NULL, NULL, NULL, NULL};
    static const char *const rng_paths[3] = {"rng/shuffle", "rng/augment", "rng/dropout"};
    static const char *const hist_paths[5] = {"history/loss", "history/train_acc", "history/seconds",
                                              "history/lr", "history/dev_acc"};
    long epochs_done = 0, finished = 0, best_epoch = -1, step = 0;
    mg_strbuf_init(&desc);

    text = mg_malloc(CFG_DESC_MAX, 1, "checkpoint", err);
    ta = mg_malloc(CFG_DESC_MAX, 1, "checkpoint", err);
    tb = mg_malloc(CFG_DESC_MAX, 1, "checkpoint", err);
    if (!text || !ta || !tb)
        MG_CHECK(MG_ERR_NOMEM);
    if (mg_h5_get_attr_str(loc, "format", text, CFG_DESC_MAX, NULL) != MG_OK)
        MG_FAIL(MG_ERR_HDF5, "not a miagrid training checkpoint (no format attribute)");
    if (strcmp(text, CKPT_FORMAT) != 0)
        MG_FAIL(MG_ERR_HDF5, "not a miagrid training checkpoint of this version (format \"%.100s\", expected \"%s\")",
                text, CKPT_FORMAT);
    describe_cfg(&s->cfg, &desc);
    describe_regime(s, &desc);
    if (desc.oom)
        MG_FAIL(MG_ERR_NOMEM, "checkpoint: out of memory");
    MG_CHECK(mg_h5_get_attr_str(loc, "train_cfg", text, CFG_DESC_MAX, err));
    if (strcmp(text, desc.s) != 0) {
        first_difference(text, desc.s, ta, tb, CFG_DESC_MAX);
        MG_FAIL(MG_ERR_STATE, "written for another training configuration (checkpoint: %.200s; this run: %.200s)",
                ta, tb);
    }
    model_layout(m, layout);
    MG_CHECK(mg_h5_get_attr_str(loc, "model_layout", text, CFG_DESC_MAX, err));
    if (strcmp(text, layout) != 0 || s->n_params != mg_model_n_params(m) || s->n_buffers != mg_model_n_buffers(m))
        MG_FAIL(MG_ERR_STATE, "written for another model (tensor layout %.40s, this model's is %s)", text, layout);

    const int E = s->cfg.epochs;
    MG_CHECK(read_int(loc, "epochs_done", 0, E, &epochs_done, err));
    MG_CHECK(read_int(loc, "finished", 0, 1, &finished, err));
    MG_CHECK(read_int(loc, "best_epoch", -1, epochs_done - 1, &best_epoch, err));
    MG_CHECK(read_int(loc, "optim_step", 0, (long)1 << 52, &step, err));

    MG_CHECK(read_exact(loc, "model/params", H5T_NATIVE_FLOAT, s->n_params, (void **)&params, err));
    MG_CHECK(read_exact(loc, "model/masks", H5T_NATIVE_FLOAT, s->n_params, (void **)&masks, err));
    if (s->n_buffers)
        MG_CHECK(read_exact(loc, "model/buffers", H5T_NATIVE_FLOAT, s->n_buffers, (void **)&buffers, err));
    MG_CHECK(read_exact(loc, "optim/m1", H5T_NATIVE_FLOAT, s->opt.n, (void **)&m1, err));
    if (s->opt.m2)
        MG_CHECK(read_exact(loc, "optim/m2", H5T_NATIVE_FLOAT, s->opt.n, (void **)&m2, err));
    for (int i = 0; i < 3; i++)
        MG_CHECK(read_exact(loc, rng_paths[i], H5T_NATIVE_UINT64, 4, (void **)&rngs[i], err));
    if (s->best_params)
        MG_CHECK(read_exact(loc, "best/params", H5T_NATIVE_FLOAT, s->n_params, (void **)&bp, err));
    if (s->best_buffers)
        MG_CHECK(read_exact(loc, "best/buffers", H5T_NATIVE_FLOAT, s->n_buffers, (void **)&bb, err));
    for (int i = 0; i < 5 && epochs_done > 0; i++)
        MG_CHECK(read_exact(loc, hist_paths[i], H5T_NATIVE_DOUBLE, (size_t)epochs_done, (void **)&hist[i], err));

    /* The regime checks its own state before changing it, and nothing after
     * it can fail. */
    if (s->plugin && s->plugin->load) {
        grp = H5Gopen2(loc, "regime", H5P_DEFAULT);
        if (grp < 0)
            MG_FAIL(MG_ERR_STATE, "no state of the %s regime in the checkpoint", s->plugin->name);
        MG_CHECK(s->plugin->load(s->plugin->user, grp, err));
    }
    /* Everything is read and checked: commit. */
    memcpy(mg_model_params(m), params, s->n_params * sizeof(float));
    memcpy(mg_model_masks(m), masks, s->n_params * sizeof(float));
    if (s->n_buffers)
        memcpy(mg_model_buffers(m), buffers, s->n_buffers * sizeof(float));
    memcpy(s->opt.m1, m1, s->opt.n * sizeof(float));
    if (s->opt.m2)
        memcpy(s->opt.m2, m2, s->opt.n * sizeof(float));
    s->opt.step = step;
    mg_rng *streams[3] = {&s->shuffle, &s->augment, &s->dropout};
    for (int i = 0; i < 3; i++)
        memcpy(streams[i]->s, rngs[i], sizeof streams[i]->s);
    if (s->best_params)
        memcpy(s->best_params, bp, s->n_params * sizeof(float));
    if (s->best_buffers)
        memcpy(s->best_buffers, bb, s->n_buffers * sizeof(float));
    double *dst[5] = {s->hist.loss, s->hist.train_acc, s->hist.seconds, s->hist.lr, s->hist.dev_acc};
    for (int i = 0; i < 5 && epochs_done > 0; i++)
        memcpy(dst[i], hist[i], (size_t)epochs_done * sizeof(double));
    s->hist.n_epochs = (int)epochs_done;
    s->hist.best_epoch = (int)best_epoch;
    s->epochs_done = (int)epochs_done;
    s->finished = (int)finished;
cleanup:
    if (grp >= 0)
        H5Gclose(grp);
    mg_strbuf_free(&desc);
    free(text), free(ta), free(tb);
    free(params), free(masks), free(buffers), free(m1), free(m2), free(bp), free(bb);
    for (int i = 0; i < 3; i++)
        free(rngs[i]);
    for (int i = 0; i < 5; i++)
        free(hist[i]);
    if (st != MG_OK)
        mg_error_prefix(err, "training checkpoint: ");
    return st;
}

/* ---- whole files ------------------------------------------------------------------------ */

static mg_status fsync_file(const char *path, mg_error *err)
{
    int fd = open(path, O_RDONLY);
    if (fd < 0)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    int e = errno;
    close(fd);
    if (rc != 0)
        return mg_error_set(err, MG_ERR_IO, "%s: fsync failed: %s", path, strerror(e));
    return MG_OK;
}

mg_status mg_train_checkpoint_save(const char *path, mg_model *m, const mg_train_state *s, mg_error *err)
{
    mg_status st = MG_OK;
    char tmp[4200];
    hid_t f = H5I_INVALID_HID;
    int made = 0;
    if (snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid()) >= (int)sizeof tmp)
        MG_FAIL(MG_ERR_ARG, "checkpoint path too long: %s", path);
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (f < 0)
        MG_FAIL(MG_ERR_IO, "%s: cannot create the checkpoint file (directory missing or not writable?)", tmp);
    made = 1;
    MG_CHECK(mg_train_state_save(f, m, s, err));
    herr_t rc = H5Fclose(f);
    f = H5I_INVALID_HID;
    if (rc < 0)
        MG_FAIL(MG_ERR_HDF5, "%s: cannot close the checkpoint file (disk full?)", tmp);
    MG_CHECK(fsync_file(tmp, err));
    if (rename(tmp, path) != 0)
        MG_FAIL(MG_ERR_IO, "cannot rename %s to %s: %s", tmp, path, strerror(errno));
    made = 0;
cleanup:
    if (f >= 0)
        H5Fclose(f);
    if (made)
        unlink(tmp);
    return st;
}

mg_status mg_train_checkpoint_load(const char *path, mg_model *m, mg_train_state *s, mg_error *err)
{
    if (access(path, R_OK) != 0)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot read the checkpoint: %s", path, strerror(errno));
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return mg_error_set(err, MG_ERR_HDF5, "%s: not an HDF5 file (damaged checkpoint?)", path);
    mg_status st = mg_train_state_load(f, m, s, err);
    H5Fclose(f);
    if (st != MG_OK)
        mg_error_prefix(err, "%s: ", path);
    return st;
}
