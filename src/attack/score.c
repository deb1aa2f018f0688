/*
 * score.c: per-sample membership scores computed from a model's logits.
 * Everything is done in double from the float logits, with the maximum
 * subtracted first so that exp never overflows.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "miagrid/attack.h"

int mg_attack_known(const char *attack)
{
    return attack && (strcmp(attack, "loss") == 0 || strcmp(attack, "conf") == 0);
}

const char *mg_attack_known_list(void)
{
    return "loss, conf";
}

int mg_attack_grid_known(const char *attack)
{
    mg_attack_kind k;
    if (!attack || mg_attack_kind_parse(attack, &k) != 0)
        return 0;
    return (mg_attack_needs(k) & ~(unsigned)(MG_ATTACK_NEEDS_SHADOW | MG_ATTACK_NEEDS_SENS |
                                             MG_ATTACK_NEEDS_REF | MG_ATTACK_NEEDS_POP)) == 0;
}

const char *mg_attack_grid_list(void)
{
    static char list[512];
    if (!list[0]) {
        size_t len = 0;
        for (int k = 0; k < MG_ATTACK_N_KINDS; k++) {
            const char *name = mg_attack_kind_str((mg_attack_kind)k);
            if (mg_attack_grid_known(name))
                len += (size_t)snprintf(list + len, sizeof list - len, "%s%s", len ? ", " : "", name);
        }
    }
    return list;
}

mg_status mg_attack_score(const char *attack, const float *logits, const int32_t *y, size_t n,
                          int n_classes, double *score, mg_error *err)
{
    if (!mg_attack_known(attack))
        return mg_error_set(err, MG_ERR_CONFIG, "unknown attack \"%s\" (known: %s)",
                            attack ? attack : "(null)", mg_attack_known_list());
    if (n_classes < 1)
        return mg_error_set(err, MG_ERR_ARG, "attack %s: n_classes must be positive, got %d", attack,
                            n_classes);
    int want_loss = strcmp(attack, "loss") == 0;
    size_t k = (size_t)n_classes;
    for (size_t i = 0; i < n; i++) {
        const float *z = logits + i * k;
        if (y[i] < 0 || y[i] >= n_classes)
            return mg_error_set(err, MG_ERR_ARG, "attack %s: label %d of sample %zu is outside 0..%d",
                                attack, (int)y[i], i, n_classes - 1);
        double m = -INFINITY;
        for (size_t j = 0; j < k; j++) {
            if (!isfinite(z[j]))
                return mg_error_set(err, MG_ERR_NUMERIC, "attack %s: logit %zu of sample %zu is %g",
                                    attack, j, i, (double)z[j]);
            if ((double)z[j] > m)
                m = (double)z[j];
        }
        double sum = 0.0;
        for (size_t j = 0; j < k; j++)
            sum += exp((double)z[j] - m);
        double zy = (double)z[y[i]] - m;
        /* sum >= 1 because the maximum contributes exp(0). */
        score[i] = want_loss ? zy - log(sum) : exp(zy) / sum;
    }
    return MG_OK;
}
