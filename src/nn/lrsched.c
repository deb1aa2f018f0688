/*
 * lrsched.c: learning-rate schedules stepped once per epoch: constant (no
 * scheduler), and torch.optim.lr_scheduler's MultiStepLR and
 * CosineAnnealingLR with T_max = the number of epochs. The rate is a pure function of the epoch (torch's closed
 * forms), so a resumed run needs no schedule state beyond the epoch count.
 */
#include "miagrid/nn.h"

#include <math.h>
#include <string.h>

/* Not in ISO C's math.h. */
static const double pi = 3.14159265358979323846;

const char *mg_lr_kind_str(mg_lr_kind k)
{
    switch (k) {
    case MG_LR_CONSTANT: return "constant";
    case MG_LR_MULTISTEP: return "multistep";
    case MG_LR_COSINE: return "cosine";
    }
    return "unknown";
}

mg_status mg_lr_schedule_check(const mg_lr_schedule *s, int epochs, mg_error *err)
{
    switch (s->kind) {
    case MG_LR_CONSTANT:
        return MG_OK;
    case MG_LR_MULTISTEP:
        if (s->n_milestones < 1 || s->n_milestones > MG_LR_MAX_MILESTONES)
            return mg_error_set(err, MG_ERR_ARG, "lr schedule multistep: %d milestones (need 1 to %d)",
                                s->n_milestones, MG_LR_MAX_MILESTONES);
        for (int i = 0; i < s->n_milestones; i++) {
            if (s->milestones[i] < 1 || (i > 0 && s->milestones[i] <= s->milestones[i - 1]))
                return mg_error_set(err, MG_ERR_ARG,
                                    "lr schedule multistep: milestone %d (%d) must be >= 1 and above the one "
                                    "before", i, s->milestones[i]);
            if (s->milestones[i] >= epochs)
                return mg_error_set(err, MG_ERR_ARG,
                                    "lr schedule multistep: milestone %d is not below the %d epochs, so it "
                                    "would never apply", s->milestones[i], epochs);
        }
        if (!(isfinite(s->gamma) && s->gamma > 0.0))
            return mg_error_set(err, MG_ERR_ARG, "lr schedule multistep: gamma %g must be finite and > 0",
                                s->gamma);
        return MG_OK;
    case MG_LR_COSINE:
        if (!(isfinite(s->eta_min) && s->eta_min >= 0.0))
            return mg_error_set(err, MG_ERR_ARG, "lr schedule cosine: eta_min %g must be finite and >= 0",
                                s->eta_min);
        return MG_OK;
    }
    return mg_error_set(err, MG_ERR_ARG, "lr schedule: unknown kind %d (constant, multistep or cosine)",
                        (int)s->kind);
}

double mg_lr_at(const mg_lr_schedule *s, double base_lr, int epoch, int epochs)
{
    switch (s->kind) {
    case MG_LR_MULTISTEP: {
        int k = 0;
        while (k < s->n_milestones && s->milestones[k] <= epoch)
            k++;
        return base_lr * pow(s->gamma, (double)k);
    }
    case MG_LR_COSINE:
        if (epochs < 1)
            return base_lr;
        return s->eta_min + (base_lr - s->eta_min) * (1.0 + cos(pi * (double)epoch / (double)epochs)) / 2.0;
    case MG_LR_CONSTANT:
        break;
    }
    return base_lr;
}
