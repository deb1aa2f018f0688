/*
 * defense.h: the mechanisms of the membership-inference defenses of the
 * papers, each a pure piece the training loop calls (sched/exec.c wires them
 * to nodes):
 *
 *   rdp.c       the Renyi-DP accountant of the sampled Gaussian mechanism
 *               (DP-SGD's epsilon at a given delta);
 *   logitloss.c losses that only change the logits' gradient: PPB (Yuan &
 *               Zhang 2022) and RelaxLoss (Chen et al. 2022);
 *   advreg.c    Nasr et al.'s (2018) min-max adversarial regularisation: the
 *               inference model and the classifier's adversarial term;
 *   wemem.c     WeMem (Shang et al.): memorisation scores (Feldman's subset
 *               estimator, or a CSV file), the ranked sliding window (RSW)
 *               and the risky-memory L2 weight (RMR).
 *
 * Logit gradients follow mg_model_backward_from_dlogits: dlogits is (b, K),
 * row-major, the gradient of the batch's scalar loss with respect to the
 * logits, and functions ADD (+=) into it.
 */
#ifndef MIAGRID_DEFENSE_H
#define MIAGRID_DEFENSE_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>

#include "miagrid/grid.h"
#include "miagrid/nn.h"
#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

/* ---- DP-SGD accounting (rdp.c) ------------------------------------------------------------- */

/* The RDP orders the accountant evaluates (those of Opacus's and TF Privacy's
 * defaults): 1 + x/10 for x = 1..99, then 12..63. */
#define MG_RDP_N_ORDERS 151

/* Renyi divergence of order `order` of one step of the sampled Gaussian
 * mechanism with sampling rate q in [0, 1] and noise multiplier sigma > 0
 * (Mironov, Talwar & Zhang 2019), for every order > 1 (integer orders in
 * closed form, fractional ones by the series of their section 3.3). q == 0
 * gives 0; sigma == 0 gives +inf. Arguments outside these ranges (q outside
 * [0, 1], sigma < 0, order <= 1, or any NaN) give NaN. */
double mg_rdp_sgm(double q, double sigma, double order);

/* (eps, delta)-DP after `steps` steps: eps = min over the orders of
 * rdp(order) * steps - (log(delta) + log(order)) / (order - 1) +
 * log((order - 1) / order) (Balle et al. 2020, the conversion Opacus uses).
 * *order_out (may be NULL) receives the minimising order. q in [0, 1], sigma
 * >= 0, steps >= 0 and delta in (0, 1), else MG_ERR_ARG naming the value.
 * sigma == 0 with steps > 0 and q > 0 gives eps = +inf. */
mg_status mg_rdp_epsilon(double q, double sigma, long steps, double delta, double *eps, double *order_out,
                         mg_error *err);

/* The MG_RDP_N_ORDERS orders, ascending. */
const double *mg_rdp_orders(void);

/* The same conversion from an RDP curve: rdp[i] the total RDP at order
 * mg_rdp_orders()[i] (composition adds curves). Orders whose value is NaN
 * are skipped; all +inf gives eps = +inf. delta in (0, 1) (MG_ERR_ARG). */
mg_status mg_rdp_epsilon_curve(const double *rdp, double delta, double *eps, double *order_out, mg_error *err);

/* ---- PPB and RelaxLoss (logitloss.c) ------------------------------------------------------- */

/* The largest number of classes mg_ppb_term accepts: it sorts two rows at a
 * time in index buffers of this size on the stack (32 KiB), so that a
 * function returning a loss value needs no allocation that could fail. */
#define MG_PPB_MAX_CLASSES 4096

/* PPB's regulariser (Yuan & Zhang 2022, section 6), as the authors' released
 * code computes it. Each row's logits are sorted in descending order (so the
 * term sees the confidence profile, not the class); with n = floor(b/2), row
 * i of the first half is paired with row n + i of the second half (an odd
 * last row takes no part), and the term is
 *   lambda * (1/n) * sum_i KL(softmax(sort(z_{n+i})) || softmax(sort(z_i))),
 * the second half's profile being the reference distribution (torch's
 * kl_div(log_softmax(first), softmax(second), reduction="batchmean")).
 * Neither side is held fixed: the gradient reaches both rows of every pair,
 * back through the sort to each logit's own class. Adds lambda times that
 * gradient to dlogits and returns the term (0 when b < 2). K >
 * MG_PPB_MAX_CLASSES: returns NaN and leaves dlogits as it is. */
double mg_ppb_term(const float *logits, int b, int K, double lambda, float *dlogits);

/* RelaxLoss (Chen et al. 2022, Algorithm 1) for one batch at 0-based epoch
 * `epoch`, target loss alpha > 0, as the authors' image-classification code
 * computes it. With p_i = softmax(z_i), CE_i = -log p_i[y_i] and L the
 * batch's mean of CE_i:
 *   even epochs: |L - alpha| (gradient ascent on L when L < alpha; no
 *     gradient when L == alpha);
 *   odd epochs with L > alpha: L;
 *   odd epochs with L <= alpha, posterior flattening: the batch mean of
 *     (1 - c_i) * CE(t_i, p_i) - CE_i, where c_i is 1 when the first largest
 *     logit is y_i, CE(t, p) = -sum_k t_k log p_k, and the soft target t_i
 *     keeps s_i = p_i[y_i] on the true class (their clamp of s_i to
 *     [0, upper] with upper = 1, the value of all their image
 *     configurations, changes nothing) and gives (1 - s_i) / (K - 1) to every
 *     other class. So correctly classified samples get gradient ascent on
 *     their cross-entropy, misclassified ones the soft-target cross-entropy
 *     minus their cross-entropy; t_i is not detached, so the gradient also
 *     flows through s_i.
 * Writes (=, not +=) the gradient of the returned loss with respect to the
 * logits into dlogits and returns that loss; *ce (may be NULL) receives L.
 * b < 1 returns 0 (and *ce = 0) and leaves dlogits as it is. */
double mg_relaxloss(const float *logits, const int32_t *y, int b, int K, double alpha, int epoch, float *dlogits,
                    double *ce);

/* ---- adversarial regularisation (advreg.c) -------------------------------------------------- */

typedef struct {
    int n_classes;      /* K of the classifier it attacks */
    int k_steps;        /* inference-model steps per classifier step (Nasr et al.: k) */
    double gamma;       /* weight of the adversarial term in the classifier's loss (Nasr et al.: lambda) */
    double lr;          /* the inference model's learning rate (Adam) */
} mg_advreg_cfg;

typedef struct mg_advreg mg_advreg;

/* An inference model h(softmax(z), onehot(y)) -> P(member), initialised from
 * seed; its architecture is documented in advreg.c. cfg is checked
 * (MG_ERR_ARG). Free with mg_advreg_destroy. */
mg_status mg_advreg_create(const mg_advreg_cfg *cfg, uint64_t seed, mg_advreg **out, mg_error *err);
void mg_advreg_destroy(mg_advreg **a);
const mg_advreg_cfg *mg_advreg_config(const mg_advreg *a);

/* One step of the inference model maximising its gain, the mean of
 * log h(member) + mean of log(1 - h(reference non-member)), on the
 * classifier's logits of nm training members and nr reference samples.
 * *gain (may be NULL) receives the gain before the step. */
mg_status mg_advreg_attack_step(mg_advreg *a, const float *mem_logits, const int32_t *mem_y, int nm,
                                const float *ref_logits, const int32_t *ref_y, int nr, double *gain,
                                mg_error *err);

/* The classifier's adversarial term on a batch of members: gamma times the
 * mean over the batch of log h(softmax(z_i), y_i). Adds its gradient with
 * respect to the logits to dlogits and stores the term in *value. The
 * inference model's parameters are not changed. For both functions: labels
 * outside [0, K) or empty batches give MG_ERR_ARG, non-finite logits
 * MG_ERR_NUMERIC. */
mg_status mg_advreg_penalty(mg_advreg *a, const float *logits, const int32_t *y, int b, float *dlogits,
                            double *value, mg_error *err);

/* The inference model's parameters and optimiser state into the group loc
 * (empty of these names), and back: a resumed classifier sees the same
 * inference model. Load checks the shape (MG_ERR_STATE). */
mg_status mg_advreg_save(const mg_advreg *a, hid_t loc, mg_error *err);
mg_status mg_advreg_load(mg_advreg *a, hid_t loc, mg_error *err);

/* ---- WeMem (wemem.c) ------------------------------------------------------------------------ */

/* Feldman's subset estimator: given n_models models each trained on a
 * subset of the n samples (in_subset[m*n + i] != 0 when sample i was in
 * model m's subset) and whether each model classifies each sample correctly
 * (correct[m*n + i] != 0), mem[i] = P(correct | i in) - P(correct | i out),
 * the frequencies over the models. A sample that is in every subset or in
 * none gets 0 and is counted in *n_undefined (may be NULL). n_models < 1 or
 * a NULL array with n > 0: MG_ERR_ARG. */
mg_status mg_memscore_subsets(size_t n, int n_models, const uint8_t *in_subset, const uint8_t *correct,
                              double *mem, size_t *n_undefined, mg_error *err);

/* Memorisation scores from a CSV file of `index,score` rows (index is the
 * sample's index in the dataset, a decimal integer in 0..2^32-1): mem[i]
 * receives the score of sample_index[i]. Fields are comma-separated with
 * blanks around them allowed; blank lines are skipped; the first non-blank
 * line is a header, and skipped, when its first field is not a number. An
 * unreadable file is MG_ERR_IO naming it; MG_ERR_CONFIG names file:line for
 * a line without exactly two fields, a bad index, a score that is not a
 * finite number, a repeated index (and the line it repeats) or a line over
 * 4096 bytes, and names the file and the index for a sample without a row;
 * a file without rows is MG_ERR_CONFIG too. */
mg_status mg_memscore_read_csv(const char *path, const uint32_t *sample_index, size_t n, double *mem,
                               mg_error *err);

/* WeMem's ranking: within each class, the sample rows ordered by mem score
 * (descending when `descending`, the authors' "H->L" RSW; else ascending,
 * their "L->H"), ties by row in both orders. ranked (n) receives the rows
 * class by class, class_start (K + 1) where each class begins. Labels must
 * be in [0, K) and scores not NaN (MG_ERR_ARG naming the row). */
mg_status mg_rsw_rank(const int32_t *y, const double *mem, size_t n, int K, int descending, uint32_t *ranked,
                      size_t *class_start, mg_error *err);

/* The ranked sliding window of 0-based epoch `epoch` (the authors' code
 * counts epochs from 0 again in every pruning round): from each class's
 * ranking, the rows at positions epoch * step .. epoch * step + width - 1,
 * cut at the class's end and never wrapping, so a class has fewer rows once
 * the window reaches its end and none once epoch * step >= its size (step 0
 * keeps the window at the top of the ranking). Writes
 * the rows class by class to rows_out (room for n) and returns how many: 0
 * once the window has passed every class, and 0 for width < 1, step < 0 or
 * epoch < 0. */
size_t mg_rsw_window(const uint32_t *ranked, const size_t *class_start, int K, int width, int step, int epoch,
                     uint32_t *rows_out);

/* RMR's L2 weight for a batch whose samples have memorisation scores
 * mem_rows (b): the mean over the batch of lambda_r (mem >= tau) or
 * lambda_g (mem < tau), so that adding weight * theta to the gradient is
 * the gradient of the batch mean of RMR's per-sample penalty. A batch of
 * one kind gets that lambda exactly (the authors' code trains an epoch's
 * risky and other samples in separate batches); b < 1 gives 0. */
double mg_rmr_weight(const double *mem_rows, int b, double tau, double lambda_r, double lambda_g);

/* ---- regimes: a grid's defense applied to one node's training (regime.c) --------------------- */

/* What a regime trains on, besides the model. */
typedef struct {
    const int32_t *y;              /* (n) labels of the training members */
    const uint32_t *sample_index;  /* (n) their indices in the dataset (memorisation scores) */
    size_t n;
    const float *x;                /* (n, in_dim) the members (adv-reg draws its member batches here) */
    const float *ref_x;            /* (ref_n, in_dim) the role's dev part: adv-reg's reference non-members */
    const int32_t *ref_y;
    size_t ref_n;
    size_t in_dim;
    const double *mem;             /* (n) memorisation scores of the members for rsw, rmr and swmr, or NULL:
                                    * read them from the defense's mem_scores file */
} mg_regime_data;

typedef struct mg_regime mg_regime;

/* Set up the defense d (a parsed grid's, name other than "none") for one
 * training of model m on data with configuration *tc. base changes *tc
 * (weight decay and early stopping), label-smoothing the model's loss; the
 * others make a training plugin (mg_regime_plugin). seed and key (the node's)
 * seed the regime's random streams. Fails with MG_ERR_CONFIG naming what is
 * missing (a dev part for base and adv-reg, batch norm under dp-sgd,
 * memorisation scores for a sample) and MG_ERR_IO for an unreadable score
 * file. Free with mg_regime_destroy. */
mg_status mg_regime_create(const mg_defense_spec *d, mg_model *m, mg_train_cfg *tc,
                           const mg_regime_data *data, uint64_t seed, const char *key, mg_regime **out,
                           mg_error *err);
void mg_regime_destroy(mg_regime **r);
/* The plugin to train with (mg_train_state_set_plugin), or NULL when the
 * defense needs none (base, label-smoothing). Owned by r. */
const mg_train_plugin *mg_regime_plugin(const mg_regime *r);

/* After training: attributes of the group `metrics` of the node file f:
 * defense_seconds (the time inside the defense's own computations; DP-SGD's
 * clipped backward, which replaces the plain one, counts whole), and for
 * dp-sgd epsilon at delta (attributes epsilon, delta), the RDP of this
 * training (epochs_run epochs) composed with rdp_in (MG_RDP_N_ORDERS values,
 * the model's earlier training; NULL: none), also stored as the dataset
 * defense/rdp for the nodes that continue from this model. in_private says
 * whether all earlier training of the model was DP-SGD: if not, epsilon is
 * +inf (no guarantee survives non-private training on the same data). */
mg_status mg_regime_write(const mg_regime *r, hid_t f, int epochs_run, const double *rdp_in, int in_private,
                          mg_error *err);

#ifdef __cplusplus
}
#endif
#endif
