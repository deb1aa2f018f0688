/*
 * signals.c: the per-sample statistics the threshold attacks, LiRA and RMIA
 * read off one row of logits. All in double from the float logits, as log-
 * probabilities relative to the log-partition, so neither a confident
 * member (p_y rounding to 1) nor a confident mistake (p_y underflowing)
 * loses its value. No probability is clamped (Song & Mittal's code clamps
 * at 1e-30 before taking logs; exact values differ from theirs only beyond
 * that).
 */
#include <math.h>

#include "attack/attack_internal.h"

#define LN2 0.69314718055994530942

/* The log-partition as m + L, m the largest logit and L = log(1 + the
 * others' exp(z_k - m)) through log1p: log p_k = (z_k - m) - L then keeps
 * its tiny value for a confident top class, where m + L rounds to m. */
typedef struct {
    double m, L;
} log_partition;

static log_partition partition(const float *z, int K)
{
    int a = mg_argmax(z, K);
    double m = (double)z[a], rest = 0.0;
    for (int k = 0; k < K; k++)
        if (k != a)
            rest += exp((double)z[k] - m);
    log_partition p = {m, log1p(rest)};
    return p;
}

static double log_p(const float *z, int k, log_partition p)
{
    return ((double)z[k] - p.m) - p.L;
}

double mg_atk_lse(const float *z, int K)
{
    log_partition p = partition(z, K);
    return p.m + p.L;
}

double mg_atk_log_softmax(const float *z, int K, int k)
{
    return log_p(z, k, partition(z, K));
}

double mg_atk_lse_except(const float *z, int K, int y)
{
    double m = -INFINITY;
    for (int k = 0; k < K; k++)
        if (k != y && (double)z[k] > m)
            m = (double)z[k];
    if (m == -INFINITY)
        return -INFINITY;
    double s = 0.0;
    for (int k = 0; k < K; k++)
        if (k != y)
            s += exp((double)z[k] - m);
    return m + log(s);
}

double mg_atk_phi(const float *z, int K, int y)
{
    return (double)z[y] - mg_atk_lse_except(z, K, y);
}

void mg_atk_softmax(float *p, const float *z, int K)
{
    log_partition lp = partition(z, K);
    for (int k = 0; k < K; k++)
        p[k] = (float)exp(log_p(z, k, lp));
}

/* 1 - p_k and its log: from p_k while p_k <= 1/2 (expm1, log1p exact
 * there); above, from the other classes' mass, read off their logits. */
static double one_minus_p(const float *z, int K, int k, log_partition p)
{
    double lp = log_p(z, k, p);
    if (lp <= -LN2)
        return -expm1(lp);
    return exp((mg_atk_lse_except(z, K, k) - p.m) - p.L);
}

static double log1m_p(const float *z, int K, int k, log_partition p)
{
    double lp = log_p(z, k, p);
    if (lp <= -LN2)
        return log1p(-exp(lp));
    return (mg_atk_lse_except(z, K, k) - p.m) - p.L;
}

double mg_atk_signal(mg_attack_kind kind, const float *z, int K, int y)
{
    log_partition p = partition(z, K);
    switch (kind) {
    case MG_ATTACK_LOSS:
        return log_p(z, y, p);
    case MG_ATTACK_CONF:
        return exp(log_p(z, y, p));
    case MG_ATTACK_HCONF:
        return exp(log_p(z, mg_argmax(z, K), p));
    case MG_ATTACK_ENTROPY: {
        /* minus the entropy: sum_k p_k log p_k */
        double s = 0.0;
        for (int k = 0; k < K; k++) {
            double lp = log_p(z, k, p);
            s += exp(lp) * lp;
        }
        return s;
    }
    case MG_ATTACK_MENTROPY: {
        /* minus Song & Mittal's Mentr: (1 - p_y) log p_y + sum_{k != y} p_k log(1 - p_k) */
        double s = one_minus_p(z, K, y, p) * log_p(z, y, p);
        for (int k = 0; k < K; k++) {
            if (k == y)
                continue;
            double pk = exp(log_p(z, k, p));
            if (pk > 0.0)
                s += pk * log1m_p(z, K, k, p);
        }
        return s;
    }
    case MG_ATTACK_GAP:
        return mg_argmax(z, K) == y ? 1.0 : 0.0;
    default:
        return NAN;
    }
}
