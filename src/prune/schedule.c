/*
 * schedule.c: iterative pruning. The per-round targets of gradual pruning
 * (WeMem) and of iterative magnitude pruning with a fixed rate per round
 * (Frankle & Carbin; Gonon et al.), and weight rewinding between rounds.
 */
#include "miagrid/prune.h"

#include <math.h>

double mg_prune_iter_keep(double final_sparsity, int round, int rounds)
{
    if (!(final_sparsity >= 0.0 && final_sparsity < 1.0) || rounds < 1 || round < 0 || round > rounds)
        return NAN;
    if (round == rounds)
        return 1.0 - final_sparsity;   /* exact at the last round, whatever pow rounds to */
    return pow(1.0 - final_sparsity, (double)round / (double)rounds);
}

double mg_prune_imp_sparsity(int rounds, double rate)
{
    if (rounds < 0 || !(rate > 0.0 && rate < 1.0))
        return NAN;
    return 1.0 - pow(1.0 - rate, (double)rounds);
}

int mg_prune_imp_rounds(double target, double rate)
{
    if (!(target >= 0.0 && target < 1.0) || !(rate > 0.0 && rate < 1.0))
        return -1;
    /* Each round multiplies the kept fraction by 1 - rate < 1, so the loop
     * ends; the tolerance absorbs the rounding of pow (0.8^2 is 0.64000000000000001). */
    int r = 0;
    while (mg_prune_imp_sparsity(r, rate) < target - 1e-12)
        r++;
    return r;
}

void mg_prune_rewind(mg_model *m, const float *rewind_params)
{
    float *p = mg_model_params(m);
    const float *mk = mg_model_masks(m);
    for (size_t i = 0; i < mg_model_n_params(m); i++)
        p[i] = mk[i] != 0.0f ? rewind_params[i] : 0.0f;
}
