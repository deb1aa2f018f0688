/*
 * attack.h: membership-inference attacks and the metrics that judge them.
 * Scores are "higher means more likely a member". Threshold attacks fit their
 * threshold on a shadow model's members and non-members and apply it to the
 * target's.
 */
#ifndef MIAGRID_ATTACK_H
#define MIAGRID_ATTACK_H

#include <stddef.h>
#include <stdint.h>

#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Per-sample membership scores from a model's logits (n, K) and true labels:
 *   "loss": minus the cross-entropy loss (Yeom et al.), computed stably from logits;
 *   "conf": softmax probability of the true class.
 * Unknown attack: MG_ERR_CONFIG. */
mg_status mg_attack_score(const char *attack, const float *logits, const int32_t *y, size_t n,
                          int n_classes, double *score, mg_error *err);
int mg_attack_known(const char *attack);
const char *mg_attack_known_list(void);
/* The attacks a grid may name: every attack of mg_attack_run. Attack nodes
 * compute what they need from the target's and the shadow models' outputs and
 * sensitivity features, and lira and rmia get reference models that the grid
 * trains as nodes of their own. */
int mg_attack_grid_known(const char *attack);
const char *mg_attack_grid_list(void);

/* The threshold t maximising balanced accuracy when "member" is predicted for
 * score >= t, over the given labelled scores (member[i] is 1 or 0; both classes
 * must be present). Candidates are midpoints between consecutive distinct
 * scores, plus below-all and above-all; ties go to the smallest such t. */
double mg_attack_fit_threshold(const double *score, const uint8_t *member, size_t n);

typedef struct {
    double threshold;      /* the threshold applied */
    double balanced_acc;   /* (TPR + TNR) / 2 at the threshold */
    double tpr, fpr;       /* at the threshold */
    double auc;            /* area under the ROC curve; ties count one half */
    double tpr_at_1fpr;    /* largest TPR with FPR <= 1 % over all thresholds */
    double tpr_at_01fpr;   /* ... FPR <= 0.1 % */
    double advantage;      /* max over thresholds of TPR - FPR */
    /* Added with mg_attack_run; mg_attack_evaluate fills them too. Members and
     * non-members weigh one half each (the expected value on equal numbers of
     * both, with no sample dropped), as balanced_acc above: */
    double tpr_at_0fpr;    /* largest TPR with no false positive */
    double precision;      /* TPR / (TPR + FPR) at the threshold; NaN when nothing is predicted a member */
    double defense;        /* Gonon et al.'s D = 200 - 2A, A = 100 * balanced_acc (percent) */
} mg_attack_metrics;

void mg_attack_evaluate(const double *score, const uint8_t *member, size_t n, double threshold,
                        mg_attack_metrics *out);

/* Here and in mg_attack_evaluate: with no members or no non-members, the
 * rates that divide by their count, AUC, TPR at FPR and advantage are NaN. */
double mg_metric_auc(const double *score, const uint8_t *member, size_t n);
double mg_metric_tpr_at_fpr(const double *score, const uint8_t *member, size_t n, double max_fpr);

/* The ROC curve: (0,0), then one point per distinct score (the threshold at
 * that score), fpr ascending; the last point is (1,1). Caller frees *fpr and
 * *tpr. Both classes must be present (MG_ERR_ARG otherwise). */
mg_status mg_metric_roc(const double *score, const uint8_t *member, size_t n, double **fpr,
                        double **tpr, size_t *n_points, mg_error *err);

/* Jensen-Shannon divergence (natural log, so in [0, ln 2]) between the
 * distributions of a scalar statistic over members and over non-members,
 * estimated from histograms whose n_bins bins hold equal numbers of the
 * pooled values (pooled quantiles; equal values share a bin, so a bin may
 * hold more). Depends only on the ranks of stat, so any increasing
 * transformation of it gives the same value. NaN when either group is empty
 * or n_bins < 1. */
double mg_metric_js_divergence(const double *stat, const uint8_t *member, size_t n, int n_bins);

/* ==== the attack library: mg_attack_run ====================================
 *
 * One call per attack node. The attacker's knowledge comes in
 * mg_attack_inputs: the target model's outputs on its members and
 * non-members (always), k shadow models' outputs on theirs (pooled, as Yuan
 * & Zhang pool k shadow models), per-sample sensitivity features (samia,
 * gonon), and N reference models' logits on the target's samples with their
 * membership (lira, rmia) plus population samples (rmia). The result holds
 * one score per target sample (higher = member), the threshold that turns
 * scores into decisions, and the metrics.
 *
 * Attacks (name: reference, exact variant):
 *   loss      Yeom et al. (CSF 2018): minus the cross-entropy of the true
 *             class, one threshold per class (below);
 *   conf      true-class softmax probability, one threshold per class;
 *   entropy   minus the prediction entropy -sum_k p_k log p_k, per class;
 *   mentropy  Song & Mittal (USENIX Security 2021): minus the modified
 *             entropy -(1-p_y) log p_y - sum_{k!=y} p_k log(1-p_k), per class;
 *   hconf     the highest softmax probability, ONE global threshold (Yuan &
 *             Zhang's "top1-conf").
 *     The per-class threshold attacks are Song & Mittal's as Yuan & Zhang's
 *     code runs them: for each class c the threshold maximising balanced
 *     accuracy on the pooled shadow samples of true class c (members vs
 *     non-members; mg_attack_fit_threshold), or, for a class without both
 *     shadow members and non-members, the global threshold fitted on all
 *     shadow samples. The score is the signal minus its class's threshold
 *     and the result's threshold is 0. NOTE: "loss" and "conf" here are
 *     per-class; the older global form (mg_attack_score +
 *     mg_attack_fit_threshold, one threshold) is kept unchanged above.
 *   nn        Shokri et al. / Salem et al. as Yuan & Zhang's baseline: an MLP
 *             on the softmax vector;
 *   top3-nn   the same on the three largest probabilities, sorted descending
 *             (Salem et al.; needs K >= 3);
 *   nn-cls    the same on the softmax vector and the one-hot label (Nasr et
 *             al.'s inputs);
 *     MLP (Yuan & Zhang's MIAFC): in -> 512 -> 256 -> 128 -> 2, ReLU,
 *     dropout 0.2 after the first two hidden layers; xavier-normal weights,
 *     zero biases; 2-class cross-entropy; SGD lr 0.001, momentum 0.9,
 *     weight decay 5e-4, batch 128, 100 epochs, lr x0.1 after epochs/2 and
 *     3*epochs/4 (their MiaAttack and BaseModel defaults).
 *   samia     Yuan & Zhang (USENIX Security 2022): the self-attention attack
 *             of their transformer.py on [softmax (K), sensitivity (K),
 *             one-hot label (K)]: BatchNorm1d(3K); K tokens of 3 values
 *             (p_k, s_k, onehot_k); Linear(3, 64) + GELU; three post-norm
 *             transformer encoder layers (d_model 64, 4 heads, feed-forward
 *             128, GELU, dropout 0.2, layer-norm eps 1e-5); flatten to 64K;
 *             Linear(64K, 64) + ReLU; Linear(64, 2). Same initialisation
 *             (attention in-projection xavier-uniform, out-projection
 *             torch's default, both biases 0; equal in the three layers,
 *             as torch deep-copies one layer and their weight_init redraws
 *             only the Linear and norm modules) and training as the MLP.
 *             One deviation: torch also drops attention probabilities
 *             (p 0.2) inside the attention; mg_mha_forward has no dropout,
 *             so that one is absent. A final training batch of one sample
 *             is skipped (batch norm needs two; torch would stop).
 *   gonon     Gonon et al. (2023): a perceptron on [one-hot class (K),
 *             softmax (K), sensitivity (K)] with the sensitivity over 5
 *             draws, eps 0.001; features standardised with the training
 *             part's mean and deviation (the paper leaves scaling open);
 *             ReLU hidden layers, one logit, binary cross-entropy, Adam
 *             (0.9, 0.999, 1e-8), no weight decay, 80 epochs, batch 256
 *             (not given in the paper), torch's default initialisation.
 *             gonon_depth 1, 2 or 3 trains their discriminator with 1 x 30,
 *             2 x 30 or 3 x 100 hidden units at cfg lr; gonon_depth 0 (the
 *             default) runs their grid: the three depths x lr {0.01, 0.001,
 *             0.0001}, each trained on 80 % of the pooled shadow samples
 *             (a random split from cfg rng), and keeps the one with the best
 *             balanced accuracy on the other 20 % (the first on ties).
 *     Classifier scores are the member log-odds (logit of "member" minus
 *     logit of "non-member", or the single logit of gonon) of the attack
 *     model in eval mode; the threshold is 0 (the argmax decision).
 *   lira      Carlini et al. (S&P 2022) on phi = log(p_y / (1 - p_y)),
 *             computed from logits as z_y - logsumexp_{k != y} z_k. For each
 *             target sample, the reference models that did not train on it
 *             ("out") and, online, those that did ("in") give Gaussians
 *             N(mu, sigma^2): mu is the mean of their phi, sigma^2 the
 *             population variance (ddof 0) per example, or, with global
 *             variance (lira_global_var), the pooled within-example variance
 *             sum_i sum_r (phi_ri - mu_i)^2 / sum_i n_i over the examples
 *             with two or more values (with none such, e.g. one reference
 *             model, the variance of all values around their mean);
 *             s = sqrt(sigma^2) + 1e-30 as the released code.
 *             Online score: log N(phi; mu_in, s_in) - log N(phi; mu_out, s_out).
 *             Offline score (one-sided, Algorithm 1): (phi - mu_out) / s_out,
 *             which orders samples exactly as Pr[Z <= phi], Z ~ N(mu_out,
 *             s_out^2), without its rounding to 1. A sample with fewer than
 *             two in (out) values takes the global variance, one with none
 *             the mean over all examples. No augmentation queries: one phi
 *             per model and sample. Differences from the released code
 *             (which uses medians, a global deviation around the global
 *             mean, and a two-sided offline test): noted here for
 *             comparisons.
 *   rmia      Zarifzadeh et al. (ICML 2024), offline, as ML Privacy Meter's
 *             run_rmia: Pr(x|theta) is the true-class softmax probability;
 *             Pr(x) = (1+a)/2 * mean over out reference models + (1-a)/2;
 *             Pr(z) the same over all reference models (population samples
 *             are in no training set); score(x) = fraction of population z
 *             with [Pr(x|T)/Pr(x)] / [Pr(z|T)/Pr(z)] > gamma (strictly).
 *             A sample with no out reference model takes the mean over all
 *             of them for Pr_out. rmia_a < 0 tunes a over {0, 0.1, ..., 1}
 *             by the AUC of attacking reference model 0 with the others
 *             (ML Privacy Meter's tune_offline_a).
 *   gap       the label-only gap attack (Yeom et al., CSF 2018; the baseline
 *             of Choquette-Choo et al., ICML 2021): member iff the prediction
 *             (first argmax) is the true label; score 1 or 0, threshold 1, so
 *             its balanced accuracy is (train_acc + 1 - test_acc) / 2. It
 *             needs no shadow model; given some, the shadow summary is theirs.
 *     lira and rmia have no shadow model to fit a threshold on: they attack
 *     reference model 0 with the other reference models (leave-one-out;
 *     its membership is known), report that as the "shadow" summary and
 *     take the threshold maximising balanced accuracy there. With a single
 *     reference model, or when model 0 trained on all or none of the
 *     target's samples, the threshold is the test's own: 0 for lira (a
 *     likelihood ratio of 1, or Pr[Z <= phi] = 1/2 offline), 0.5 for rmia,
 *     and the shadow summary is NaN. AUC and TPR at low FPR do not depend
 *     on the threshold.
 */

typedef enum {
    MG_ATTACK_LOSS = 0,
    MG_ATTACK_CONF,
    MG_ATTACK_ENTROPY,
    MG_ATTACK_MENTROPY,
    MG_ATTACK_HCONF,
    MG_ATTACK_NN,
    MG_ATTACK_TOP3_NN,
    MG_ATTACK_NN_CLS,
    MG_ATTACK_SAMIA,
    MG_ATTACK_GONON,
    MG_ATTACK_LIRA,
    MG_ATTACK_RMIA,
    MG_ATTACK_GAP,
    MG_ATTACK_N_KINDS
} mg_attack_kind;

/* The names above ("loss", ..., "top3-nn", "nn-cls", ...). kind_str never
 * returns NULL; parse returns 0, or -1 for an unknown name. */
const char *mg_attack_kind_str(mg_attack_kind k);
int mg_attack_kind_parse(const char *name, mg_attack_kind *out);
/* "loss, conf, entropy, ...", for error messages. A static string. */
const char *mg_attack_kind_list(void);

/* What an attack needs in mg_attack_inputs besides the target's outputs. */
enum {
    MG_ATTACK_NEEDS_SHADOW = 1u,  /* shadow models' outputs on members and non-members */
    MG_ATTACK_NEEDS_SENS = 2u,    /* sensitivity features of every target and shadow sample */
    MG_ATTACK_NEEDS_REF = 4u,     /* reference models' logits on the target's samples, and membership */
    MG_ATTACK_NEEDS_POP = 8u      /* population samples: target's and reference models' logits */
};
unsigned mg_attack_needs(mg_attack_kind k);

typedef struct {
    mg_attack_kind kind;
    mg_rng rng;          /* classifier attacks draw initialisation, shuffling, dropout and
                          * gonon's split from a copy of it: the same cfg, the same bits */
    /* classifier attacks; mg_attack_cfg_init sets the paper's values */
    int epochs;
    int batch;
    double lr;           /* gonon with gonon_depth 0 ignores it (it tries three) */
    int gonon_depth;     /* 0: gonon's grid with held-out selection; 1..3: one discriminator */
    /* sensitivity features, for the caller of mg_attack_sensitivity: samia 10 draws,
     * gonon 5, both eps 0.001; 0 for the others */
    int sens_draws;
    double sens_eps;
    /* lira */
    int lira_online;     /* 1: in and out reference models (default); 0: offline */
    int lira_global_var; /* 1: one variance for all examples; 0: per example; -1 (default):
                          * global below 64 reference models, per example from 64 on, as
                          * Carlini et al. advise (per-example variances need many models) */
    /* rmia */
    double rmia_a;       /* in [0, 1]; < 0: tuned (above). Default 0.33 */
    double rmia_gamma;   /* > 0; default 1 */
    /* metrics */
    int js_bins;         /* bins of mg_metric_js_divergence; default 20 */
} mg_attack_cfg;

/* Defaults for the named attack; rng seeded from ("attack", name): callers
 * set it from their node's seed. Unknown name: MG_ERR_CONFIG listing the
 * known ones. */
mg_status mg_attack_cfg_init(mg_attack_cfg *cfg, const char *name, mg_error *err);

/* One model's outputs on one group of samples. logits (n, K) row-major,
 * labels (n) in [0, K), sens (n, K) the sensitivity features of
 * mg_attack_sensitivity for the same samples in the same order (NULL when
 * the attack does not need them). */
typedef struct {
    const float *logits;
    const int32_t *labels;
    const float *sens;
    size_t n;
} mg_attack_split;

typedef struct {
    mg_attack_split member, nonmember;
} mg_attack_outputs;

typedef struct {
    int n_classes;                    /* K */
    mg_attack_outputs target;
    const mg_attack_outputs *shadow;  /* n_shadow models, pooled by concatenation */
    size_t n_shadow;
    /* Target samples are numbered i = 0 .. n_t-1: the target's members in
     * order, then its non-members (n_t = target.member.n + target.nonmember.n). */
    size_t n_ref;
    const float *ref_logits;   /* (n_ref, n_t, K): reference model r's logits on sample i */
    const uint8_t *ref_in;     /* (n_ref, n_t): 1 iff sample i was in reference model r's training set */
    size_t n_pop;
    const float *pop_logits;     /* (n_pop, K): the target model on population sample j */
    const int32_t *pop_labels;   /* (n_pop) */
    const float *pop_ref_logits; /* (n_ref, n_pop, K): reference model r on population sample j */
} mg_attack_inputs;

/* The metrics of one model against one attack over a group of samples. */
typedef struct {
    mg_attack_metrics attack;   /* at the result's threshold */
    double js_divergence;       /* Wang et al.'s d (below) */
    double train_acc;           /* model accuracy (first argmax == label) on the members */
    double test_acc;            /* ... on the non-members */
    double acc_gap;             /* train_acc - test_acc */
    size_t n_member, n_nonmember;
} mg_attack_summary;
/* Wang et al.'s d is JS(p_f || p'_f), the Jensen-Shannon divergence between
 * the distributions of the model's output f(x) on members and on
 * non-members (their eq. 10: the best attacker's gain is -log 4 + 2 d, so d
 * is in nats). It is estimated as mg_metric_js_divergence of the true-class
 * log-odds phi = z_y - logsumexp_{k != y} z_k (a function of f(x) and y,
 * so the estimate is, up to sampling error, a lower bound on d) with
 * cfg.js_bins equal-mass bins. */

typedef struct {
    size_t n;            /* target samples: members then non-members */
    double *score;       /* (n) higher = more likely a member */
    uint8_t *member;     /* (n) 1 for the members */
    int32_t *label;      /* (n) true labels */
    double threshold;    /* decisions are score >= threshold */
    mg_attack_summary target;
    mg_attack_summary shadow;   /* on the data the attack was fitted on: the pooled shadow
                                 * samples (threshold and classifier attacks, gap), reference
                                 * model 0 (lira, rmia; NaN when there was no calibration) */
    int n_classes;
    mg_attack_summary *per_class; /* (n_classes): the target's samples of true label c; NaN
                                   * metrics for a class without members or non-members */
    double rmia_a;       /* rmia: the a used (tuned or given); NaN otherwise */
} mg_attack_result;

void mg_attack_result_free(mg_attack_result *r);

/* Run the attack of cfg on the inputs into *res (zeroed first; free it with
 * mg_attack_result_free, also after a failure). The inputs are only read.
 * Errors: MG_ERR_CONFIG for an unknown attack; MG_ERR_ARG naming the
 * missing or malformed input (fewer than one class, no shadow model, no
 * sensitivity features, no reference or population logits, labels out of
 * range, a target or shadow without members or non-members, top3-nn with
 * K < 3, lira online without any "in" reference value); MG_ERR_NUMERIC for
 * non-finite logits or features or a diverging attack model; MG_ERR_NOMEM. */
mg_status mg_attack_run(const mg_attack_cfg *cfg, const mg_attack_inputs *in, mg_attack_result *res,
                        mg_error *err);

/* Wang et al.'s empirical gain (their eq. 1), which MIA-Pruning minimises:
 * the inference model of cfg (a classifier attack: nn, top3-nn or nn-cls;
 * MG_ERR_ARG otherwise) is fitted on a random half of one model's members
 * and of its non-members (the halves drawn from cfg->rng), and on the other
 * halves *gain = mean over members of log f_A + mean over non-members of
 * log(1 - f_A), f_A the attack model's member probability (the sigmoid of
 * its log-odds score). A coin scores -log 4, a perfect attacker 0.
 * *balanced_acc gets the attack's balanced accuracy on those halves. Needs
 * at least 2 members and 2 non-members. */
mg_status mg_attack_gain(const mg_attack_cfg *cfg, int n_classes, const mg_attack_outputs *out, double *gain,
                         double *balanced_acc, mg_error *err);

/* Sensitivity features (Yuan & Zhang's predict_target_sensitivity; Gonon et
 * al.'s noise feature): for each sample x (a row of x, shaped as the model's
 * input, exactly what the model is fed) and class k,
 *     out[i][k] = (1/draws) sum_j |softmax(f(x + eps u_j))_k - softmax(f(x))_k| / eps
 * with u_j standard normal over the whole input, f the model in eval mode.
 * out is (n, K). The normals are drawn from rng sample by sample, draw by
 * draw, input element by element, so the result does not depend on how the
 * work is batched; rng advances past them. draws >= 1 and eps > 0 (MG_ERR_ARG). */
typedef struct mg_model mg_model;
mg_status mg_attack_sensitivity(mg_model *m, const float *x, size_t n, int draws, double eps, mg_rng *rng,
                                float *out, mg_error *err);

#ifdef __cplusplus
}
#endif
#endif
