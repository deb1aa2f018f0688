/*
 * rdp.c: the Renyi-DP accountant of DP-SGD. One DP-SGD step is the sampled
 * Gaussian mechanism: each example joins the batch with probability q and the
 * clipped gradient sum gets N(0, sigma^2) noise per unit of sensitivity. Its
 * Renyi divergence of order alpha is log(A_alpha) / (alpha - 1), where
 *
 *   A_alpha = E_{z ~ N(0, sigma^2)} [((1 - q) + q exp((2z - 1) / (2 sigma^2)))^alpha]
 *
 * (Mironov, Talwar & Zhang 2019). An integer alpha expands the power by the
 * binomial theorem into alpha + 1 Gaussian moments, each in closed form. A
 * fractional alpha splits the integral at z0, where q*mu1 = (1 - q)*mu0, so
 * that on each side the ratio inside the binomial series is at most 1 and
 * the series converges; each term is a Gaussian moment times a normal tail
 * (their section 3.3). The numbers follow TF Privacy's and Opacus's
 * accountant, including the threshold at which the fractional series stops.
 *
 * Everything runs in log space and long double: the terms span hundreds of
 * orders of magnitude (a small sigma puts i^2 / (2 sigma^2) in the exponent),
 * and log(A_alpha) itself is about q^2 alpha (alpha - 1) / (2 sigma^2) for a
 * small q, so the sum of terms near 1 must keep more digits than a double
 * has.
 *
 * The (eps, delta) conversion is Theorem 21 of Balle et al. 2020, the one
 * Opacus's get_privacy_spent applies, minimised over the default orders.
 */
#include "miagrid/defense.h"

#include <math.h>

typedef long double ldbl;

/* Not in ISO C's math.h. */
static const ldbl ln2 = 0.693147180559945309417232121458176568L;
static const ldbl ln_sqrt_pi = 0.572364942924700087071713675676529356L;

/* The fractional-order series stops once both of a step's terms are below
 * exp(-30), as the reference accountants' series does, so that published
 * figures are reproduced to their last digit; but not before i passes alpha.
 * Up to there every coefficient is positive and the terms follow a binomial
 * distribution, whose first terms are below exp(-30) when alpha is large
 * (alpha log(1 - q) < -30): stopping there would drop the whole sum. Past
 * alpha the terms alternate and shrink. On the accountant's own orders the
 * two rules differ only by terms below exp(-30) (a few 1e-14 in
 * log(A_alpha) at most, at q near 1e-6), the later stop being the closer to
 * the exact integral. */
static const ldbl series_floor = -30.0L;

/* From this argument on, log(erfc) comes from its asymptotic series: erfc
 * itself soon underflows (a double's near 27, an x87 long double's near
 * 106), and there each term of the series is at most 1/1352 of the one
 * before it for the first terms, (2n - 1) / (2 x^2). */
static const ldbl erfc_asymptotic_from = 26.0L;

/* log(e^a + e^b). */
static ldbl log_add(ldbl a, ldbl b)
{
    if (a < b) {
        ldbl t = a;
        a = b;
        b = t;
    }
    if (b == -INFINITY || a == INFINITY)
        return a;
    return a + log1pl(expl(b - a));
}

/* log(e^a - e^b) for b <= a. The partial sums of the series never go below
 * zero in exact arithmetic; if rounding brings b up to a, the difference is
 * taken as zero. expm1 keeps the digits when b is close to a. */
static ldbl log_sub(ldbl a, ldbl b)
{
    if (b == -INFINITY || a == INFINITY)
        return a;
    if (b >= a)
        return -INFINITY;
    return a + logl(-expm1l(b - a));
}

/* log(erfc(x)) without underflow for large x and without losing the small
 * tail for negative x. */
static ldbl log_erfc(ldbl x)
{
    if (x < 0.0L)
        return ln2 + log1pl(-0.5L * erfcl(-x));
    if (x < erfc_asymptotic_from)
        return logl(erfcl(x));
    /* erfc(x) = exp(-x^2) / (x sqrt(pi)) * sum_n (-1)^n (2n-1)!! / (2x^2)^n;
     * the terms shrink while n < x^2, far beyond the few needed here. */
    ldbl inv = 1.0L / (2.0L * x * x), term = 1.0L, sum = 1.0L;
    for (int n = 1; n < 40 && fabsl(term) > 1e-22L; n++) {
        term *= -(ldbl)(2 * n - 1) * inv;
        sum += term;
    }
    return -x * x - logl(x) - ln_sqrt_pi + logl(sum);
}

/* k / (2 sigma^2) with 0 for k == 0, so that a sigma whose square underflows
 * does not turn 0 * inf into NaN. */
static ldbl over_2s2(ldbl k, ldbl inv_2s2)
{
    return k == 0.0L ? 0.0L : k * inv_2s2;
}

/* log(A_alpha) for an integer alpha >= 2 and 0 < q < 1:
 * log sum_i C(alpha, i) q^i (1-q)^(alpha-i) exp((i^2 - i) / (2 sigma^2)). */
static ldbl log_a_int(double q, double sigma, long alpha)
{
    const ldbl lq = logl((ldbl)q), l1q = log1pl(-(ldbl)q);
    const ldbl inv_2s2 = 1.0L / (2.0L * (ldbl)sigma * (ldbl)sigma);
    ldbl log_binom = 0.0L, acc = -INFINITY;
    for (long i = 0; i <= alpha; i++) {
        if (i > 0)
            log_binom += logl((ldbl)(alpha - i + 1) / (ldbl)i);
        ldbl t = log_binom + (ldbl)i * lq + (ldbl)(alpha - i) * l1q +
                 over_2s2((ldbl)i * (ldbl)(i - 1), inv_2s2);
        acc = log_add(acc, t);
    }
    return acc;
}

/* log(A_alpha) for a fractional alpha > 1 and 0 < q < 1: the integrals below
 * and above z0 as two binomial series, term i of the lower one weighted by
 * the normal tail below z0 of N(i, sigma^2) and term i of the upper one by
 * the tail above z0 of N(alpha - i, sigma^2). The generalized binomial
 * coefficient C(alpha, i) changes sign at each i past alpha + 1, so terms are
 * added or subtracted in log space. */
static ldbl log_a_frac(double q, double sigma, double alpha)
{
    const ldbl lq = logl((ldbl)q), l1q = log1pl(-(ldbl)q);
    const ldbl s = (ldbl)sigma, inv_2s2 = 1.0L / (2.0L * s * s), inv_s_sqrt2 = 1.0L / (sqrtl(2.0L) * s);
    const ldbl z0 = s * s * (l1q - lq) + 0.5L; /* sigma^2 log(1/q - 1) + 1/2 */
    const ldbl a = (ldbl)alpha;
    ldbl log_a0 = -INFINITY, log_a1 = -INFINITY;
    ldbl log_coef = 0.0L; /* log |C(alpha, i)| */
    int negative = 0;     /* sign of C(alpha, i) */
    for (long i = 0;; i++) {
        if (i > 0) {
            ldbl f = a - (ldbl)(i - 1); /* C(alpha, i) = C(alpha, i-1) (alpha - i + 1) / i */
            log_coef += logl(fabsl(f)) - logl((ldbl)i);
            if (f < 0.0L)
                negative = !negative;
        }
        const ldbl fi = (ldbl)i, j = a - fi;
        ldbl log_t0 = log_coef + fi * lq + j * l1q;
        ldbl log_t1 = log_coef + j * lq + fi * l1q;
        ldbl log_e0 = log_erfc((fi - z0) * inv_s_sqrt2) - ln2;
        ldbl log_e1 = log_erfc((z0 - j) * inv_s_sqrt2) - ln2;
        ldbl log_s0 = log_t0 + over_2s2(fi * fi - fi, inv_2s2) + log_e0;
        ldbl log_s1 = log_t1 + over_2s2(j * j - j, inv_2s2) + log_e1;
        if (negative) {
            log_a0 = log_sub(log_a0, log_s0);
            log_a1 = log_sub(log_a1, log_s1);
        } else {
            log_a0 = log_add(log_a0, log_s0);
            log_a1 = log_add(log_a1, log_s1);
        }
        /* NaN terms (sigma so small that its square underflows) end the
         * loop too rather than spinning. */
        if (fi > a && !(fmaxl(log_s0, log_s1) >= series_floor))
            break;
    }
    return log_add(log_a0, log_a1);
}

/* Integer orders up to this take the finite binomial sum; the bound only
 * keeps the conversion to long exact. */
static const double max_int_order = 4503599627370496.0; /* 2^52 */

double mg_rdp_sgm(double q, double sigma, double order)
{
    if (!(q >= 0.0 && q <= 1.0) || !(sigma >= 0.0) || !(order > 1.0))
        return NAN;
    if (q == 0.0)
        return 0.0;
    if (sigma == 0.0)
        return INFINITY;
    if (isinf(sigma))
        return 0.0;
    if (q == 1.0)
        return order / (2.0 * sigma * sigma);
    if (isinf(order))
        return INFINITY;
    ldbl log_a;
    if (order == floor(order) && order <= max_int_order)
        log_a = log_a_int(q, sigma, (long)order);
    else
        log_a = log_a_frac(q, sigma, order);
    /* A Renyi divergence is never negative; when it is below the rounding
     * of log(A_alpha) around 0 (tiny q, huge sigma), the sum can land a hair
     * under 0. NaN (sigma's square underflowed) is kept. */
    ldbl rdp = log_a / ((ldbl)order - 1.0L);
    return rdp < 0.0L ? 0.0 : (double)rdp;
}

/* The k-th of the MG_RDP_N_ORDERS orders, computed as the reference lists
 * compute them (1 + x/10.0 in double), so that 2.0, 3.0, ... 10.0 come out
 * integral and take the integer path there too. */
static double rdp_order(int k)
{
    if (k < 99)
        return 1.0 + (double)(k + 1) / 10.0;
    return (double)(k - 99 + 12);
}

const double *mg_rdp_orders(void)
{
    static double orders[MG_RDP_N_ORDERS];
    static int ready = 0;
    if (!ready) {
        for (int k = 0; k < MG_RDP_N_ORDERS; k++)
            orders[k] = rdp_order(k);
        ready = 1;
    }
    return orders;
}

mg_status mg_rdp_epsilon_curve(const double *rdp, double delta, double *eps, double *order_out, mg_error *err)
{
    if (!eps || !rdp)
        return mg_error_set(err, MG_ERR_ARG, "rdp accountant: no RDP curve or no place for epsilon");
    if (!(delta > 0.0 && delta < 1.0))
        return mg_error_set(err, MG_ERR_ARG, "rdp accountant: delta = %g is outside (0, 1)", delta);
    /* The first smallest eps, NaNs skipped, as numpy's nanargmin picks it. */
    const double log_delta = log(delta);
    double best = NAN, best_order = NAN;
    for (int k = 0; k < MG_RDP_N_ORDERS; k++) {
        const double a = rdp_order(k);
        const double e = rdp[k] - (log_delta + log(a)) / (a - 1.0) + log1p(-1.0 / a);
        if (isnan(e))
            continue;
        if (isnan(best) || e < best) {
            best = e;
            best_order = a;
        }
    }
    *eps = isnan(best) ? INFINITY : best;
    if (order_out)
        *order_out = best_order;
    return MG_OK;
}

mg_status mg_rdp_epsilon(double q, double sigma, long steps, double delta, double *eps, double *order_out,
                         mg_error *err)
{
    if (!eps)
        return mg_error_set(err, MG_ERR_ARG, "rdp accountant: no place for epsilon (eps is NULL)");
    if (!(q >= 0.0 && q <= 1.0))
        return mg_error_set(err, MG_ERR_ARG, "rdp accountant: sampling rate q = %g is outside [0, 1]", q);
    if (!(sigma >= 0.0))
        return mg_error_set(err, MG_ERR_ARG, "rdp accountant: noise multiplier sigma = %g must be >= 0", sigma);
    if (steps < 0)
        return mg_error_set(err, MG_ERR_ARG, "rdp accountant: steps = %ld must be >= 0", steps);
    if (!(delta > 0.0 && delta < 1.0))
        return mg_error_set(err, MG_ERR_ARG, "rdp accountant: delta = %g is outside (0, 1)", delta);
    /* No steps (or no sampling) is no privacy loss at any order; computing
     * it as inf * 0 for sigma == 0 would give NaN. */
    double rdp[MG_RDP_N_ORDERS];
    for (int k = 0; k < MG_RDP_N_ORDERS; k++)
        rdp[k] = (steps == 0 || q == 0.0) ? 0.0 : mg_rdp_sgm(q, sigma, rdp_order(k)) * (double)steps;
    return mg_rdp_epsilon_curve(rdp, delta, eps, order_out, err);
}
