/*
 * metrics.c: the threshold attack's fit and the metrics that judge any
 * membership score: balanced accuracy at a threshold, AUC, TPR at a fixed
 * low FPR, the membership advantage and the ROC curve; and the
 * Jensen-Shannon divergence between members' and non-members' values.
 *
 * All of them are "member if score >= t", so samples with equal scores
 * always fall on the same side. Each function sorts the scores once
 * (O(n log n)) and then sweeps the groups of equal scores.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/attack.h"

typedef struct {
    double s;
    uint8_t m;
} scored;

/* Ascending by score; NaN sorts below everything so that the order stays
 * total and a NaN score is never predicted a member before a real one. */
static int cmp_scored(const void *a, const void *b)
{
    double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    int xn = isnan(x), yn = isnan(y);
    if (xn || yn)
        return yn - xn;
    return (x > y) - (x < y);
}

static int same_score(double a, double b)
{
    return a == b || (isnan(a) && isnan(b));
}

/* A sorted copy with the class counts; NULL when n is 0 or allocation fails. */
static scored *sorted_copy(const double *score, const uint8_t *member, size_t n, size_t *n_pos,
                           size_t *n_neg)
{
    *n_pos = *n_neg = 0;
    if (n == 0)
        return NULL;
    scored *v = mg_malloc(n, sizeof *v, "sorted scores", NULL);
    if (!v)
        return NULL;
    for (size_t i = 0; i < n; i++) {
        v[i].s = score[i];
        v[i].m = member[i] ? 1 : 0;
        if (v[i].m)
            (*n_pos)++;
        else
            (*n_neg)++;
    }
    qsort(v, n, sizeof *v, cmp_scored);
    return v;
}

/* One sweep from the highest threshold down: after each group of equal
 * scores joins the "member" side, (fpr, tpr) is one ROC point. Fills whichever
 * of tpr_at (for each max_fpr), the ROC arrays, auc and advantage are asked for. */
static void sweep(const scored *v, size_t n, size_t n_pos, size_t n_neg, const double *max_fpr,
                  double *tpr_at, int n_fpr, double **roc_fpr, double **roc_tpr, size_t *n_points,
                  double *auc, double *advantage)
{
    double P = (double)n_pos, N = (double)n_neg;
    size_t tp = 0, fp = 0, pts = 0;
    double auc_count = 0.0, adv = 0.0;
    for (int k = 0; k < n_fpr; k++)
        tpr_at[k] = 0.0;
    if (roc_fpr) {
        (*roc_fpr)[0] = 0.0;
        (*roc_tpr)[0] = 0.0;
    }
    pts = 1;
    size_t i = n;
    while (i > 0) {
        size_t j = i - 1;
        while (j > 0 && same_score(v[j - 1].s, v[i - 1].s))
            j--;
        size_t gp = 0, gn = 0;
        for (size_t t = j; t < i; t++) {
            if (v[t].m)
                gp++;
            else
                gn++;
        }
        /* Mann-Whitney: the group's positives rank above every negative not
         * yet swept outside the group, and tie with the group's own
         * negatives, which count one half. */
        auc_count += (double)gp * ((double)(n_neg - fp - gn) + 0.5 * (double)gn);
        tp += gp;
        fp += gn;
        double tpr = (double)tp / P, fpr = (double)fp / N;
        if (tpr - fpr > adv)
            adv = tpr - fpr;
        for (int k = 0; k < n_fpr; k++)
            if (fpr <= max_fpr[k] && tpr > tpr_at[k])
                tpr_at[k] = tpr;
        if (roc_fpr) {
            (*roc_fpr)[pts] = fpr;
            (*roc_tpr)[pts] = tpr;
        }
        pts++;
        i = j;
    }
    if (n_points)
        *n_points = pts;
    if (auc)
        *auc = auc_count / (P * N);
    if (advantage)
        *advantage = adv;
}

double mg_attack_fit_threshold(const double *score, const uint8_t *member, size_t n)
{
    size_t n_pos = 0, n_neg = 0;
    scored *v = sorted_copy(score, member, n, &n_pos, &n_neg);
    if (!v)
        return -INFINITY;
    double lo = v[0].s, hi = v[n - 1].s;
    double best_t = lo - (fabs(lo) > 1.0 ? fabs(lo) : 1.0);
    if (n_pos == 0 || n_neg == 0 || isnan(lo) || isnan(hi)) {
        free(v);
        return isnan(best_t) ? -INFINITY : best_t;
    }
    /* Balanced accuracy at a cut is (tp/P + tn/N)/2; comparing tp*N + tn*P in
     * integers keeps equal accuracies exactly equal, so the first (smallest)
     * threshold wins ties. Below-all: tp = P, tn = 0. */
    unsigned long long P = n_pos, N = n_neg;
    unsigned long long best = P * N;
    unsigned long long tn = 0, fn = 0;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        while (j < n && v[j].s == v[i].s) {
            if (v[j].m)
                fn++;
            else
                tn++;
            j++;
        }
        unsigned long long val = (P - fn) * N + tn * P;
        if (val > best) {
            best = val;
            if (j < n) {
                double a = v[i].s, b = v[j].s;
                double t = a / 2.0 + b / 2.0;
                /* Adjacent doubles have no midpoint; b itself then splits them. */
                best_t = (t > a && t <= b) ? t : b;
            } else {
                best_t = hi + (fabs(hi) > 1.0 ? fabs(hi) : 1.0);
            }
        }
        i = j;
    }
    free(v);
    return best_t;
}

double mg_metric_auc(const double *score, const uint8_t *member, size_t n)
{
    size_t n_pos = 0, n_neg = 0;
    scored *v = sorted_copy(score, member, n, &n_pos, &n_neg);
    if (!v || n_pos == 0 || n_neg == 0) {
        free(v);
        return NAN;
    }
    double auc = NAN, tpr_dummy = 0.0;
    sweep(v, n, n_pos, n_neg, NULL, &tpr_dummy, 0, NULL, NULL, NULL, &auc, NULL);
    free(v);
    return auc;
}

double mg_metric_tpr_at_fpr(const double *score, const uint8_t *member, size_t n, double max_fpr)
{
    size_t n_pos = 0, n_neg = 0;
    scored *v = sorted_copy(score, member, n, &n_pos, &n_neg);
    if (!v || n_pos == 0 || n_neg == 0) {
        free(v);
        return NAN;
    }
    double tpr = 0.0;
    sweep(v, n, n_pos, n_neg, &max_fpr, &tpr, 1, NULL, NULL, NULL, NULL, NULL);
    free(v);
    return tpr;
}

void mg_attack_evaluate(const double *score, const uint8_t *member, size_t n, double threshold,
                        mg_attack_metrics *out)
{
    size_t n_pos = 0, n_neg = 0, tp = 0, fp = 0;
    for (size_t i = 0; i < n; i++) {
        int pred = score[i] >= threshold;
        if (member[i]) {
            n_pos++;
            tp += (size_t)pred;
        } else {
            n_neg++;
            fp += (size_t)pred;
        }
    }
    out->threshold = threshold;
    out->tpr = n_pos ? (double)tp / (double)n_pos : NAN;
    out->fpr = n_neg ? (double)fp / (double)n_neg : NAN;
    out->balanced_acc = (out->tpr + 1.0 - out->fpr) / 2.0;
    out->precision = out->tpr + out->fpr > 0.0 ? out->tpr / (out->tpr + out->fpr) : NAN;
    out->defense = 200.0 - 200.0 * out->balanced_acc;
    out->auc = out->tpr_at_1fpr = out->tpr_at_01fpr = out->tpr_at_0fpr = out->advantage = NAN;

    scored *v = sorted_copy(score, member, n, &n_pos, &n_neg);
    if (!v || n_pos == 0 || n_neg == 0) {
        free(v);
        return;
    }
    const double max_fpr[3] = {0.01, 0.001, 0.0};
    double tpr_at[3] = {0.0, 0.0, 0.0};
    sweep(v, n, n_pos, n_neg, max_fpr, tpr_at, 3, NULL, NULL, NULL, &out->auc, &out->advantage);
    out->tpr_at_1fpr = tpr_at[0];
    out->tpr_at_01fpr = tpr_at[1];
    out->tpr_at_0fpr = tpr_at[2];
    free(v);
}

mg_status mg_metric_roc(const double *score, const uint8_t *member, size_t n, double **fpr,
                        double **tpr, size_t *n_points, mg_error *err)
{
    mg_status st = MG_OK;
    scored *v = NULL;
    size_t n_pos = 0, n_neg = 0;
    *fpr = *tpr = NULL;
    *n_points = 0;

    for (size_t i = 0; i < n; i++) {
        if (member[i])
            n_pos++;
        else
            n_neg++;
    }
    if (n_pos == 0 || n_neg == 0)
        MG_FAIL(MG_ERR_ARG, "ROC curve needs members and non-members, got %zu and %zu", n_pos, n_neg);
    v = sorted_copy(score, member, n, &n_pos, &n_neg);
    /* At most one point per sample plus (0,0). */
    *fpr = mg_malloc(n + 1, sizeof(double), "ROC fpr", err);
    *tpr = mg_malloc(n + 1, sizeof(double), "ROC tpr", err);
    if (!v || !*fpr || !*tpr)
        MG_FAIL(MG_ERR_NOMEM, "ROC curve: cannot allocate for %zu scores", n);
    double unused = 0.0;
    sweep(v, n, n_pos, n_neg, NULL, &unused, 0, fpr, tpr, n_points, NULL, NULL);

cleanup:
    free(v);
    if (st != MG_OK) {
        free(*fpr);
        free(*tpr);
        *fpr = *tpr = NULL;
        *n_points = 0;
    }
    return st;
}

/* Equal-mass bins of the pooled values keep every bin populated whatever the
 * scale of the statistic (a model's true-class log-odds pile up far in the
 * tail for members), and make the estimate depend on ranks only. */
double mg_metric_js_divergence(const double *stat, const uint8_t *member, size_t n, int n_bins)
{
    size_t n_pos = 0, n_neg = 0;
    if (n_bins < 1)
        return NAN;
    scored *v = sorted_copy(stat, member, n, &n_pos, &n_neg);
    double *count = mg_calloc(2 * (size_t)n_bins, sizeof(double), "JS divergence bins", NULL);
    double js = NAN;
    if (!v || !count || n_pos == 0 || n_neg == 0)
        goto cleanup;
    size_t i = 0;
    while (i < n) {
        size_t j = i;
        /* The whole group of equal values goes to the bin of its first rank. */
        size_t bin = (size_t)((double)i * (double)n_bins / (double)n);
        if (bin >= (size_t)n_bins)
            bin = (size_t)n_bins - 1;
        while (j < n && same_score(v[j].s, v[i].s)) {
            count[2 * bin + (v[j].m ? 0 : 1)] += 1.0;
            j++;
        }
        i = j;
    }
    js = 0.0;
    for (int b = 0; b < n_bins; b++) {
        double p = count[2 * b] / (double)n_pos, q = count[2 * b + 1] / (double)n_neg;
        double m = 0.5 * (p + q);
        if (p > 0.0)
            js += 0.5 * p * log(p / m);
        if (q > 0.0)
            js += 0.5 * q * log(q / m);
    }
    /* Rounding can leave a tiny negative sum for identical histograms. */
    if (js < 0.0)
        js = 0.0;
cleanup:
    free(v);
    free(count);
    return js;
}
