/*
 * augment.c: the usual image augmentation for CIFAR-style training, as
 * torchvision's RandomCrop(size, padding=pad) followed by
 * RandomHorizontalFlip(): each sample is shifted by up to `pad` pixels with
 * zero fill, then mirrored with probability 1/2. Draws come from an explicit
 * rng, so a training run augments the same way every time.
 */
#include "miagrid/nn.h"

#include <string.h>

mg_aug_draw mg_augment_draw(mg_rng *rng, unsigned flags, int pad)
{
    mg_aug_draw d = {0, 0, 0};
    if ((flags & MG_AUGMENT_CROP) && pad > 0) {
        /* RandomCrop draws the top row of the window, then its left column,
         * each uniform over the 2*pad+1 positions of the padded image. */
        d.dy = (int)mg_rng_below(rng, (uint64_t)(2 * pad + 1)) - pad;
        d.dx = (int)mg_rng_below(rng, (uint64_t)(2 * pad + 1)) - pad;
    }
    if (flags & MG_AUGMENT_FLIP)
        d.flip = mg_rng_uniform(rng) < 0.5;
    return d;
}

/* out (C,H,W), inp (C,H,W): out[c][r][q] = inp[c][r+dy][s+dx] with s = W-1-q
 * when flipped, else q; zero where that falls outside the input. */
void mg_augment_apply(float *out, const float *inp, int C, int H, int W, mg_aug_draw d)
{
    for (int c = 0; c < C; c++) {
        const float *ic = inp + (size_t)c * H * W;
        float *oc = out + (size_t)c * H * W;
        for (int r = 0; r < H; r++) {
            float *orow = oc + (size_t)r * W;
            int sr = r + d.dy;
            if (sr < 0 || sr >= H) {
                memset(orow, 0, (size_t)W * sizeof *orow);
                continue;
            }
            const float *irow = ic + (size_t)sr * W;
            for (int q = 0; q < W; q++) {
                int sq = (d.flip ? W - 1 - q : q) + d.dx;
                orow[q] = sq >= 0 && sq < W ? irow[sq] : 0.0f;
            }
        }
    }
}
