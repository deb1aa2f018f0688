/*
 * attack_internal.h: what the attack library's files share: per-sample
 * signals computed from logits, and the small attack networks (the MLP of
 * the classifier attacks, SAMIA's transformer) built from the engine's
 * public kernels, with their training loop.
 */
#ifndef MIAGRID_ATTACK_INTERNAL_H
#define MIAGRID_ATTACK_INTERNAL_H

#include <stddef.h>
#include <stdint.h>

#include "miagrid/attack.h"
#include "miagrid/nn.h"

/* ---- signals from one row of logits z (K), in double ---------------------- */

/* log sum_k exp(z_k), with the maximum factored out. */
double mg_atk_lse(const float *z, int K);
/* log softmax(z)_k, accurate also when p_k rounds to 1 (then -log1p of the
 * other classes' mass). */
double mg_atk_log_softmax(const float *z, int K, int k);
/* log sum_{k != y} exp(z_k); -inf when K == 1. */
double mg_atk_lse_except(const float *z, int K, int y);
/* Carlini et al.'s phi = log(p_y / (1 - p_y)) = z_y - lse_except(z, y). */
double mg_atk_phi(const float *z, int K, int y);
/* The signal of a threshold attack (loss, conf, entropy, mentropy, hconf)
 * or of gap (1 if the first argmax is y, else 0); higher = member. */
double mg_atk_signal(mg_attack_kind kind, const float *z, int K, int y);
/* Softmax of z into p (K), in double then rounded. */
void mg_atk_softmax(float *p, const float *z, int K);

/* ---- attack networks ---------------------------------------------------------- */

typedef struct mg_atk_net mg_atk_net;

#define MG_ATK_MLP_MAX_HIDDEN 4

/* A fully connected net: in -> hidden[0] -> ... -> out, ReLU after each
 * hidden layer followed by dropout[i] (0: none). out_dim 2: two-class
 * cross-entropy; out_dim 1: binary cross-entropy on one logit. xavier 1:
 * xavier-normal weights and zero biases (Yuan & Zhang's weight_init); 0:
 * torch's Linear defaults, U(+-1/sqrt(fan_in)) for weights and biases. */
typedef struct {
    int in_dim;
    int n_hidden;
    int hidden[MG_ATK_MLP_MAX_HIDDEN];
    float dropout[MG_ATK_MLP_MAX_HIDDEN];
    int out_dim;
    int xavier;
} mg_atk_mlp_cfg;

mg_status mg_atk_net_mlp(const mg_atk_mlp_cfg *cfg, mg_atk_net **out, mg_error *err);
/* SAMIA's transformer for K classes (attack.h states the architecture);
 * input (N, 3K) = [softmax | sensitivity | one-hot], two outputs. */
mg_status mg_atk_net_samia(int n_classes, mg_atk_net **out, mg_error *err);
void mg_atk_net_destroy(mg_atk_net **net);

size_t mg_atk_net_n_params(const mg_atk_net *net);
float *mg_atk_net_params(mg_atk_net *net);
float *mg_atk_net_grads(mg_atk_net *net);
int mg_atk_net_in_dim(const mg_atk_net *net);
int mg_atk_net_out_dim(const mg_atk_net *net);
/* Initialise the parameters from rng (tensor by tensor) and reset batch-norm
 * running statistics. */
void mg_atk_net_init(mg_atk_net *net, mg_rng *rng);
/* x (N, in_dim) -> *out (N, out_dim), valid until the next forward. train:
 * dropout draws from drop (may be NULL in eval) and batch norm uses batch
 * statistics (N >= 2) and moves its running ones. The net keeps a copy of x
 * for the backward. */
mg_status mg_atk_net_forward(mg_atk_net *net, const float *x, int N, int train, mg_rng *drop, const float **out,
                             mg_error *err);
/* Backward of the last forward from dout (N, out_dim): parameter gradients
 * accumulate (+=). */
void mg_atk_net_backward(mg_atk_net *net, const float *dout);

typedef struct {
    int epochs;
    int batch;
    mg_optim_cfg optim;   /* optim.lr is the initial rate */
    int n_milestones;     /* lr x gamma once the epoch (0-based) reaches each milestone > 0, */
    int milestones[4];    /* torch's MultiStepLR stepped once per epoch */
    double gamma;
} mg_atk_train_cfg;

/* Train on (x (n, in_dim), member labels y (n) 0/1), shuffling each epoch and
 * drawing dropout from streams derived from rng (which advances by one
 * draw). The parameters must be initialised. name labels error messages. */
mg_status mg_atk_net_train(mg_atk_net *net, const float *x, const uint8_t *y, size_t n, const mg_atk_train_cfg *tc,
                           mg_rng *rng, const char *name, mg_error *err);
/* Eval-mode member log-odds of each row: z1 - z0 with two outputs, z with one. */
mg_status mg_atk_net_score(mg_atk_net *net, const float *x, size_t n, double *score, mg_error *err);


/* ---- the attacks' pieces (run.c, classifier.c, refmodels.c) --------------------------- */

/* Pooled outputs: members and non-members of one or more models, in order. */
typedef struct {
    size_t n;
    float *logits;    /* (n, K) */
    int32_t *labels;  /* (n) */
    float *sens;      /* (n, K) or NULL */
    uint8_t *member;  /* (n) */
} mg_atk_pool;

void mg_atk_pool_free(mg_atk_pool *p);

/* nn, top3-nn, nn-cls, samia, gonon: train on the shadow pool, score the
 * target's samples (t_score, tgt->n) and the shadow's (s_score, shd->n). */
mg_status mg_atk_run_classifier(const mg_attack_cfg *cfg, const mg_atk_pool *shd, const mg_atk_pool *tgt, int K,
                                double *t_score, double *s_score, mg_error *err);

/* LiRA and RMIA on the target's logits tlogits (nt, K): score (nt); with two
 * or more reference models also loo_score (nt), reference model 0 attacked
 * with the others, and *have_loo = 1. rmia stores the a it used in *a_used. */
mg_status mg_atk_run_lira(const mg_attack_cfg *cfg, const mg_attack_inputs *in, const float *tlogits,
                          const int32_t *labels, size_t nt, double *score, double *loo_score, int *have_loo,
                          mg_error *err);
mg_status mg_atk_run_rmia(const mg_attack_cfg *cfg, const mg_attack_inputs *in, const float *tlogits,
                          const int32_t *labels, size_t nt, double *score, double *loo_score, int *have_loo,
                          double *a_used, mg_error *err);

#endif
