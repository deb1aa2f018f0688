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

#ifdef __cplusplus
}
#endif
#endif
