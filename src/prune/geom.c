/*
 * geom.c: where each layer of a model sits, for counting its multiply-
 * accumulates: the layer geometry of mg_prune_stats (prune.h), read off the
 * model's graph (nn/nn_internal.h), so that every architecture the registry
 * builds gets a MAC count, not only the chains of linear layers.
 *
 * The walk follows the operations in execution order and remembers, for each
 * value, which prunable tensor's output channels its channels are, and along
 * which axis they lie. Only operations that act on each channel by itself
 * pass that on: a channel a pruned filter leaves constant must stay constant
 * (and in place) for the consumer to skip it.
 */
#include "miagrid/prune.h"
#include "nn/nn_internal.h"

#include <stdlib.h>

/* Where a value's channels lie. */
enum {
    LAY_NONE,   /* no prunable tensor's channels, or mixed beyond recognition */
    LAY_CHAN,   /* a convolution's channels: the c axis of (C,H,W) */
    LAY_FEAT    /* the last axis: a linear layer's outputs, or a flattened or
                 * globally pooled map, whose channels then take consecutive
                 * runs of features (channel-major, as mg_prune_stats reads them) */
};

typedef struct {
    long src;   /* tensor index of the producing weight, or -1 */
    int lay;
} chan_src;

/* Index in the tensor table of the parameter at offset `off`, or -1. A
 * model has at most several hundred tensors (DenseNet121), so a scan per
 * layer costs nothing next to building the model. */
static long param_tensor(const mg_model *m, size_t off)
{
    for (size_t t = 0; t < m->n_tensors; t++)
        if (!m->tensors[t].buffer && m->tensors[t].offset == off)
            return (long)t;
    return -1;
}

/* Record the geometry of the weight at offset `off` and return its tensor
 * index; -1 if it is not a prunable tensor, which the graph builders never
 * make (every weight of a convolution, linear layer or attention is one). */
static long set_geom(const mg_model *m, size_t off, long positions, long producer, mg_prune_geom *geom)
{
    long t = off == MG_NO_PARAM ? -1 : param_tensor(m, off);
    if (t < 0 || !m->tensors[t].prunable)
        return -1;
    geom[t] = (mg_prune_geom){positions, producer};
    return t;
}

mg_status mg_prune_geom_model(const mg_model *m, mg_prune_geom *geom, mg_error *err)
{
    mg_status st = MG_OK;
    chan_src *val = NULL;
    for (size_t t = 0; t < m->n_tensors; t++)
        geom[t] = (mg_prune_geom){0, -1};
    val = mg_malloc((size_t)m->n_values, sizeof *val, "layer geometry", err);
    if (!val)
        MG_FAIL(MG_ERR_NOMEM, "layer geometry of %s: out of memory for %d values", m->arch, m->n_values);
    for (int v = 0; v < m->n_values; v++)
        val[v] = (chan_src){-1, LAY_NONE};
    for (int i = 0; i < m->n_ops; i++) {
        const mg_op *op = &m->ops[i];
        const int x = op->in[0];
        const mg_shape3 s = m->values[x].shape;
        /* A feature vector (1,1,F): its only axis is the features. */
        const int vec = s.c == 1 && s.h == 1;
        const chan_src in = val[x];
        chan_src out = {-1, LAY_NONE};
        long t = 0;
        switch (op->kind) {
        case MG_OP_CONV:
            t = set_geom(m, op->w, (long)op->conv.OH * op->conv.OW, in.lay == LAY_CHAN ? in.src : -1, geom);
            out = (chan_src){t, LAY_CHAN};
            break;
        case MG_OP_LINEAR:
            /* Applied to each row of the last axis: c*h rows per sample. */
            t = set_geom(m, op->w, (long)(m->values[x].size / (size_t)op->I), in.lay == LAY_FEAT ? in.src : -1,
                         geom);
            out = (chan_src){t, LAY_FEAT};
            break;
        case MG_OP_ACT:
        case MG_OP_DROPOUT:
            out = in;   /* element-wise */
            break;
        case MG_OP_BN:
            /* Per channel of the c axis, or per feature of a vector: a
             * constant channel stays constant. Batch norm over the c axis of
             * a linear layer's (c,h,O) output would mix its features. */
            if (in.lay == LAY_CHAN || (in.lay == LAY_FEAT && vec))
                out = in;
            break;
        case MG_OP_MAXPOOL:
        case MG_OP_AVGPOOL:
            /* Windows over H and W: within a channel of a map, across features otherwise. */
            if (in.lay == LAY_CHAN)
                out = in;
            break;
        case MG_OP_GAP:
            if (in.lay == LAY_CHAN)
                out = (chan_src){in.src, LAY_FEAT};
            break;
        case MG_OP_FLATTEN:
            /* (C,H,W) -> C runs of H*W features; a vector is left as it is.
             * Flattening a linear layer's (c,h,O) rows would interleave its features. */
            if (in.lay == LAY_CHAN || (in.lay == LAY_FEAT && vec))
                out = (chan_src){in.src, LAY_FEAT};
            break;
        case MG_OP_MHA:
            /* The two projections are linear layers over the L positions; the
             * in-projection reads the features as a linear layer does, the
             * out-projection the heads' mixtures. The attention products
             * themselves have no prunable weight and are not counted. */
            t = set_geom(m, op->w, op->L, in.lay == LAY_FEAT ? in.src : -1, geom);
            if (t >= 0)
                t = set_geom(m, op->w2, op->L, -1, geom);
            break;
        case MG_OP_LN:     /* statistics over the features mix them */
        case MG_OP_ADD:    /* a channel is dead only if every summand's is */
        case MG_OP_CONCAT: /* the channels of several producers */
            break;
        }
        if (t < 0)
            MG_FAIL(MG_ERR_INTERNAL, "layer geometry of %s: a weight of operation %d is not a prunable tensor",
                    m->arch, i);
        val[op->out] = out;
    }
cleanup:
    free(val);
    return st;
}
