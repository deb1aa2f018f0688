/*
 * logitloss.c: the two defenses that change nothing but the gradient of the
 * logits, PPB (Yuan & Zhang, "Membership Inference Attacks and Defenses in
 * Neural Network Pruning", USENIX Security 2022) and RelaxLoss (Chen, Yu &
 * Fritz, "RelaxLoss: Defending Membership Inference Attacks without Losing
 * Utility", ICLR 2022). Both follow what the authors' released training code
 * computes (the mia_prune repository's PPB fine-tuning loop and the RelaxLoss
 * repository's CIFAR trainer), including which factors carry a gradient, so
 * that our runs are comparable with their numbers; defense.h states the
 * formulas.
 *
 * Everything is computed in double from the float logits: the PPB term is a
 * difference of nearly equal log-probabilities, and the finite-difference
 * tests need the loss values to more digits than float has.
 */
#include "miagrid/defense.h"

#include <math.h>
#include <stddef.h>

/* log(sum_k exp(z_k)), shifted by the largest logit so that no exp overflows.
 * A NaN logit becomes the shift, so the NaN reaches the loss instead of being
 * skipped by the comparisons. */
static double log_partition(const float *z, int K)
{
    double mx = z[0];
    for (int k = 1; k < K; k++)
        if (z[k] > mx || isnan(z[k]))
            mx = z[k];
    double sum = 0.0;
    for (int k = 0; k < K; k++)
        sum += exp((double)z[k] - mx);
    return mx + log(sum);
}

/* ---- PPB ------------------------------------------------------------------------------------ */

/* Whether class i comes before class j in a descending sort of the row z.
 * Equal logits are ordered by class so that the order, and with it which
 * class receives which rank's gradient, is the same on every run. */
static int ranks_before(const float *z, int i, int j)
{
    return z[i] > z[j] || (z[i] == z[j] && i < j);
}

/* Heap sort of the class indices by ranks_before: O(K log K) with no scratch
 * beyond idx, where a library qsort would need the row as hidden context. The
 * heap keeps at its root the class that comes last, which the loop then moves
 * to the end. */
static void sift_down(int *idx, int root, int end, const float *z)
{
    for (;;) {
        int child = 2 * root + 1;
        if (child >= end)
            return;
        if (child + 1 < end && ranks_before(z, idx[child], idx[child + 1]))
            child++;
        if (!ranks_before(z, idx[root], idx[child]))
            return;
        int t = idx[root];
        idx[root] = idx[child];
        idx[child] = t;
        root = child;
    }
}

static void sort_descending(int *idx, const float *z, int K)
{
    for (int k = 0; k < K; k++)
        idx[k] = k;
    for (int s = K / 2 - 1; s >= 0; s--)
        sift_down(idx, s, K, z);
    for (int end = K - 1; end > 0; end--) {
        int t = idx[0];
        idx[0] = idx[end];
        idx[end] = t;
        sift_down(idx, 0, end, z);
    }
}

double mg_ppb_term(const float *logits, int b, int K, double lambda, float *dlogits)
{
    if (b < 2 || K < 1)
        return 0.0;
    if (K > MG_PPB_MAX_CLASSES)
        return NAN;
    /* rank r of row i holds class order_a[r]; that of its partner, order_b[r] */
    int order_a[MG_PPB_MAX_CLASSES], order_b[MG_PPB_MAX_CLASSES];
    const int n = b / 2;
    const double w = lambda / n; /* the batchmean over the n pairs, times lambda */
    double total = 0.0;
    for (int i = 0; i < n; i++) {
        const float *za = logits + (size_t)i * K;       /* the log-probabilities' side */
        const float *zb = logits + (size_t)(n + i) * K; /* the reference distribution's side */
        float *da = dlogits + (size_t)i * K;
        float *db = dlogits + (size_t)(n + i) * K;
        sort_descending(order_a, za, K);
        sort_descending(order_b, zb, K);
        /* Sorting permutes a row's softmax without changing its normaliser. */
        const double lza = log_partition(za, K), lzb = log_partition(zb, K);
        double kl = 0.0;
        for (int r = 0; r < K; r++) {
            double lp = (double)za[order_a[r]] - lza, lq = (double)zb[order_b[r]] - lzb;
            kl += exp(lq) * (lq - lp);
        }
        total += kl;
        /* d KL(q||p)/d a_r = p_r - q_r (the log-softmax side), and
         * d KL/d c_r = q_r (log q_r - log p_r - KL) (the softmax side, which
         * their code does not detach); each lands on the class that held rank r. */
        for (int r = 0; r < K; r++) {
            double lp = (double)za[order_a[r]] - lza, lq = (double)zb[order_b[r]] - lzb;
            double p = exp(lp), q = exp(lq);
            da[order_a[r]] += (float)(w * (p - q));
            db[order_b[r]] += (float)(w * q * ((lq - lp) - kl));
        }
    }
    return lambda * total / n;
}

/* ---- RelaxLoss ------------------------------------------------------------------------------ */

/* Their clamp of the true class's confidence in the soft target: "upper" is 1
 * in every configuration of their image trainer, where the clamp is the
 * identity in value and, torch's clamp passing the gradient on [min, max]
 * inclusive, in gradient too. (Their tabular trainer uses 0.3 and 0.1, but
 * with a different flattening loss, which this function does not offer.) */
static const double relax_upper = 1.0;

/* The first class of largest logit, torch.argmax's choice among ties; a NaN
 * counts as the largest, as there. */
static int first_argmax(const float *z, int K)
{
    int best = 0;
    for (int k = 1; k < K; k++)
        if (!isnan(z[best]) && (z[k] > z[best] || isnan(z[k])))
            best = k;
    return best;
}

/* dlogits = scale * (softmax(z) - onehot(y)) / b, scale being +1 for descent
 * on the mean cross-entropy, -1 for ascent and 0 where |L - alpha| has its
 * kink. */
static void write_ce_gradient(const float *logits, const int32_t *y, int b, int K, double scale, float *dlogits)
{
    const double s = scale / b;
    for (int i = 0; i < b; i++) {
        const float *z = logits + (size_t)i * K;
        float *d = dlogits + (size_t)i * K;
        const double lz = log_partition(z, K);
        for (int k = 0; k < K; k++)
            d[k] = (float)(s * (exp((double)z[k] - lz) - (k == y[i] ? 1.0 : 0.0)));
    }
}

double mg_relaxloss(const float *logits, const int32_t *y, int b, int K, double alpha, int epoch, float *dlogits,
                    double *ce)
{
    if (b < 1 || K < 1) {
        if (ce)
            *ce = 0.0;
        return 0.0;
    }
    double L = 0.0;
    for (int i = 0; i < b; i++) {
        const float *z = logits + (size_t)i * K;
        L += log_partition(z, K) - (double)z[y[i]];
    }
    L /= b;
    if (ce)
        *ce = L;

    /* Their epoch counter starts at 0 and alternates on its parity (Python's,
     * which calls -1 odd, as C's remainder test below does too). */
    if (epoch % 2 == 0) {
        /* |L - alpha|: autograd's abs gives the sign of L - alpha, 0 at equality. */
        double sign = (L > alpha) ? 1.0 : (L < alpha) ? -1.0 : 0.0;
        write_ce_gradient(logits, y, b, K, sign, dlogits);
        return fabs(L - alpha);
    }
    if (L > alpha) {
        write_ce_gradient(logits, y, b, K, 1.0, dlogits);
        return L;
    }

    /* Posterior flattening. Every sample contributes -CE_i (ascent), and a
     * misclassified one also CE(t_i, p_i) with t_i built from its own,
     * undetached, softmax. With s = p_y clamped to u, S the sum of the other
     * classes' log-probabilities and lp_y = log p_y:
     *   CE(t, p) = -u lp_y - (1 - u)/(K - 1) S,
     * whose gradient is p - t at fixed t (t sums to 1) plus
     * dCE/du * du/ds * ds/dz = -(lp_y - S/(K - 1)) * [s <= upper] * s (e_y - p). */
    double total = 0.0;
    const double inv_b = 1.0 / b;
    for (int i = 0; i < b; i++) {
        const float *z = logits + (size_t)i * K;
        float *d = dlogits + (size_t)i * K;
        const int yi = y[i];
        const double lz = log_partition(z, K);
        const double lpy = (double)z[yi] - lz;
        if (first_argmax(z, K) == yi) {
            total += lpy; /* -CE_i */
            for (int k = 0; k < K; k++)
                d[k] = (float)(-inv_b * (exp((double)z[k] - lz) - (k == yi ? 1.0 : 0.0)));
            continue;
        }
        const double s = exp(lpy);
        const double u = s < 0.0 ? 0.0 : s > relax_upper ? relax_upper : s;
        const double through = (s >= 0.0 && s <= relax_upper) ? 1.0 : 0.0;
        double S = 0.0;
        for (int k = 0; k < K; k++)
            if (k != yi)
                S += (double)z[k] - lz;
        /* K == 1 has no other class: its soft target is the one-hot label. */
        const double other = K > 1 ? (1.0 - u) / (K - 1) : 0.0;
        const double mean_other = K > 1 ? S / (K - 1) : 0.0;
        total += (-u * lpy - other * S) + lpy; /* CE(t_i, p_i) - CE_i */
        const double dce_ds = -(lpy - mean_other) * through;
        for (int k = 0; k < K; k++) {
            const double p = exp((double)z[k] - lz);
            const double onehot = k == yi ? 1.0 : 0.0;
            const double t = k == yi ? u : other;
            /* (p - t) + dce_ds * s * (onehot - p), minus the CE gradient p - onehot */
            d[k] = (float)(inv_b * ((onehot - t) + dce_ds * s * (onehot - p)));
        }
    }
    return total * inv_b;
}
