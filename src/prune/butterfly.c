/*
 * butterfly.c: butterfly supports. Gonon et al. ("Sparsity can improve
 * privacy of neural networks", 2023, section 3.2) constrain weight matrices
 * to products of L sparse factors with butterfly supports, using for
 * rectangular sizes the monotone chains of deformable butterflies (Lin et
 * al., NeurIPS 2021) with the fewest parameters. Here: the supports of
 * factors and of their products, that chain and its parameter count, and
 * the fixed-support pruning method, which masks each weight outside the
 * support of a product of standard butterfly factors.
 */
#include "miagrid/prune.h"
#include "prune/prune_internal.h"

#include <stdlib.h>
#include <string.h>

/* A factor's support has (a*b*d) rows indexed (ia, ib, id) and (a*c*d)
 * columns indexed (ja, jc, jd); entry 1 iff ia == ja and id == jd. */
mg_status mg_butterfly_chain_support(const mg_bfly_factor *f, int L, unsigned char *out, int *rows, int *cols,
                                     mg_error *err)
{
    mg_status st = MG_OK;
    unsigned char *cur = NULL, *next = NULL;
    if (L < 1)
        MG_FAIL(MG_ERR_ARG, "butterfly chain: %d factors (need at least one)", L);
    for (int l = 0; l < L; l++) {
        if (f[l].a < 1 || f[l].b < 1 || f[l].c < 1 || f[l].d < 1)
            MG_FAIL(MG_ERR_ARG, "butterfly chain: factor %d is (%d, %d, %d, %d); all four must be positive", l + 1,
                    f[l].a, f[l].b, f[l].c, f[l].d);
        if (l + 1 < L && (f[l + 1].a != f[l].a * f[l].c || f[l].d != f[l + 1].b * f[l + 1].d))
            MG_FAIL(MG_ERR_ARG,
                    "butterfly chain: factors %d and %d do not chain (need a%d = a%d c%d and d%d = b%d d%d)", l + 1,
                    l + 2, l + 2, l + 1, l + 1, l + 1, l + 2, l + 2);
    }
    size_t R = (size_t)f[0].a * (size_t)f[0].b * (size_t)f[0].d, max_inner = 0;
    for (int l = 0; l < L; l++) {
        size_t q = (size_t)f[l].a * (size_t)f[l].c * (size_t)f[l].d;
        if (q > max_inner)
            max_inner = q;
    }
    cur = mg_calloc(R * max_inner, 1, "butterfly support", err);
    next = mg_calloc(R * max_inner, 1, "butterfly support", err);
    if (!cur || !next)
        MG_FAIL(MG_ERR_NOMEM, "butterfly chain: out of memory for a %zu x %zu support", R, max_inner);
    /* The first factor's support. */
    size_t q = (size_t)f[0].a * (size_t)f[0].c * (size_t)f[0].d;
    for (size_t i = 0; i < R; i++) {
        size_t bd = (size_t)f[0].b * (size_t)f[0].d, cd = (size_t)f[0].c * (size_t)f[0].d, d = (size_t)f[0].d;
        for (size_t j = 0; j < q; j++)
            cur[i * q + j] = i / bd == j / cd && i % d == j % d;
    }
    /* Boolean products with the next factors: column j = (ja, jc, jd) of
     * factor l draws on its rows k = (ja, kb, jd) for every kb. */
    for (int l = 1; l < L; l++) {
        size_t b = (size_t)f[l].b, c = (size_t)f[l].c, d = (size_t)f[l].d;
        size_t p = (size_t)f[l].a * b * d, nq = (size_t)f[l].a * c * d;
        for (size_t i = 0; i < R; i++)
            for (size_t j = 0; j < nq; j++) {
                size_t ja = j / (c * d), jd = j % d;
                unsigned char v = 0;
                for (size_t kb = 0; kb < b && !v; kb++)
                    v = cur[i * p + (ja * b + kb) * d + jd];
                next[i * nq + j] = v;
            }
        unsigned char *tmp = cur;
        cur = next;
        next = tmp;
        q = nq;
    }
    memcpy(out, cur, R * q);
    *rows = (int)R;
    *cols = (int)q;
cleanup:
    free(cur);
    free(next);
    return st;
}

size_t mg_butterfly_chain_params(const mg_bfly_factor *f, int L)
{
    size_t n = 0;
    for (int l = 0; l < L; l++)
        n += (size_t)f[l].a * (size_t)f[l].b * (size_t)f[l].c * (size_t)f[l].d;
    return n;
}

#define BFLY_MAX_FACTORS 16

/* Every ordered factorisation of n into L factors >= 2, in lexicographic
 * order, appended to list (L ints each). Returns the count, or -1 when the
 * list is full. */
static long factorisations(int n, int L, int depth, int *cur, int *list, long count, long cap)
{
    if (depth == L - 1) {
        if (n < 2)
            return count;
        if (count >= cap)
            return -1;
        cur[depth] = n;
        memcpy(list + count * L, cur, (size_t)L * sizeof *cur);
        return count + 1;
    }
    for (int v = 2; v <= n; v++) {
        if (n % v != 0)
            continue;
        cur[depth] = v;
        count = factorisations(n / v, L, depth + 1, cur, list, count, cap);
        if (count < 0)
            return -1;
    }
    return count;
}

mg_status mg_butterfly_chain_best(int rows, int cols, int L, mg_bfly_factor *f, mg_error *err)
{
    mg_status st = MG_OK;
    int *bl = NULL, *cl = NULL, cur[BFLY_MAX_FACTORS];
    const long cap = 1 << 16;
    if (rows < 1 || cols < 1 || L < 1 || L > BFLY_MAX_FACTORS)
        MG_FAIL(MG_ERR_ARG,
                "butterfly chain: a %d x %d matrix with %d factors (need positive sizes and 1 to %d factors)", rows,
                cols, L, BFLY_MAX_FACTORS);
    bl = mg_malloc((size_t)cap * (size_t)L, sizeof *bl, "butterfly chains", err);
    cl = mg_malloc((size_t)cap * (size_t)L, sizeof *cl, "butterfly chains", err);
    if (!bl || !cl)
        MG_FAIL(MG_ERR_NOMEM, "butterfly chain: out of memory");
    long nb = factorisations(rows, L, 0, cur, bl, 0, cap), nc = factorisations(cols, L, 0, cur, cl, 0, cap);
    if (nb < 0 || nc < 0)
        MG_FAIL(MG_ERR_ARG, "butterfly chain: %d x %d has too many factorisations into %d factors", rows, cols, L);
    size_t best = 0;
    long best_b = -1, best_c = -1;
    for (long ib = 0; ib < nb; ib++) {
        const int *b = bl + ib * L;
        for (long ic = 0; ic < nc; ic++) {
            const int *c = cl + ic * L;
            int ok = 1;
            for (int l = 0; l < L && ok; l++)
                ok = rows <= cols ? c[l] >= b[l] : c[l] <= b[l];
            if (!ok)
                continue;
            /* Factor l has a = c_1..c_{l-1} and d = b_{l+1}..b_L, so a*b*c*d = (c_1..c_l)(b_l..b_L). */
            size_t total = 0;
            for (int l = 0; l < L; l++) {
                size_t p = 1;
                for (int i = 0; i <= l; i++)
                    p *= (size_t)c[i];
                for (int i = l; i < L; i++)
                    p *= (size_t)b[i];
                total += p;
            }
            if (best_b < 0 || total < best) {
                best = total;
                best_b = ib;
                best_c = ic;
            }
        }
    }
    if (best_b < 0)
        MG_FAIL(MG_ERR_ARG,
                "butterfly chain: a %d x %d matrix has no monotone chain of %d factors with at least two non-zeros "
                "per row and column",
                rows, cols, L);
    const int *b = bl + best_b * L, *c = cl + best_c * L;
    for (int l = 0; l < L; l++) {
        int a = 1, d = 1;
        for (int i = 0; i < l; i++)
            a *= c[i];
        for (int i = l + 1; i < L; i++)
            d *= b[i];
        f[l] = (mg_bfly_factor){a, b[l], c[l], d};
    }
cleanup:
    free(bl);
    free(cl);
    return st;
}

/* Side of the padded square and the residue period n / 2^K of the support. */
static size_t mask_period(int rows, int cols, int K)
{
    size_t side = (size_t)(rows > cols ? rows : cols), n = 1;
    int levels = 0;
    while (n < side) {
        n <<= 1;
        levels++;
    }
    return K >= levels ? 1 : n >> K;
}

void mg_butterfly_mask(int rows, int cols, int K, unsigned char *out)
{
    size_t d = mask_period(rows, cols, K);
    for (size_t i = 0; i < (size_t)rows; i++)
        for (size_t j = 0; j < (size_t)cols; j++)
            out[i * (size_t)cols + j] = i % d == j % d;
}

size_t mg_butterfly_mask_count(int rows, int cols, int K)
{
    size_t d = mask_period(rows, cols, K), n = 0;
    /* Rows and columns with residue r mod d, multiplied, over the residues both have. */
    for (size_t r = 0; r < d && r < (size_t)rows && r < (size_t)cols; r++)
        n += (((size_t)rows - 1 - r) / d + 1) * (((size_t)cols - 1 - r) / d + 1);
    return n;
}

mg_status mg_prune_butterfly(mg_model *m, double s, const mg_prune_opts *opts, mg_error *err)
{
    int K = opts ? opts->butterfly_factors : 0;
    if (K < 0)
        return mg_error_set(err, MG_ERR_ARG, "butterfly pruning: %d factors (need at least one, or 0 to derive them "
                            "from the sparsity)", K);
    if (K > 0 && s != 0.0)
        return mg_error_set(err, MG_ERR_ARG,
                            "butterfly pruning: with %d factors the support fixes the sparsity; pass sparsity 0 (got "
                            "%g) or set the factors to 0 to derive them from the sparsity",
                            K, s);
    mg_status st = mg_prune_check_prefixes(m, opts, mg_prune_eligible_rows, "butterfly", err);
    if (st != MG_OK)
        return st;
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!mg_prune_eligible_rows(m, t) || !mg_prune_selected(opts, ti->name))
            continue;
        size_t rows, cols;
        mg_prune_rows(ti, &rows, &cols);
        int k = K;
        if (k == 0) {
            /* The fewest factors keeping at least 1 - s of the entries; the
             * dense support is always reached at log2 of the padded side. */
            double want = (1.0 - s) * (double)ti->count;
            k = 1;
            while (mask_period((int)rows, (int)cols, k) > 1 &&
                   (double)mg_butterfly_mask_count((int)rows, (int)cols, k) < want)
                k++;
        }
        size_t d = mask_period((int)rows, (int)cols, k);
        float *w = mg_model_params(m) + ti->offset, *mk = mg_model_masks(m) + ti->offset;
        for (size_t i = 0; i < rows; i++)
            for (size_t j = 0; j < cols; j++)
                if (i % d != j % d || mk[i * cols + j] == 0.0f) {
                    mk[i * cols + j] = 0.0f;
                    w[i * cols + j] = 0.0f;
                }
    }
    return MG_OK;
}
