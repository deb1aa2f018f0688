/* test_augment.c: random crop with zero padding and horizontal flip against
 * hand-built images, the distribution and determinism of the draws, and
 * augmentation inside the training loop (deterministic, shape checked). */
#include "mg_test.h"
#include "miagrid/nn.h"

enum { C = 2, H = 3, W = 4 };

/* inp[c][r][q] = 100c + 10r + q + 1, so every pixel is nonzero and names itself. */
static void make_image(float *img)
{
    for (int c = 0; c < C; c++)
        for (int r = 0; r < H; r++)
            for (int q = 0; q < W; q++)
                img[(c * H + r) * W + q] = (float)(100 * c + 10 * r + q + 1);
}

static void test_apply_by_hand(void)
{
    float in[C * H * W], out[C * H * W];
    make_image(in);

    mg_aug_draw id = {0, 0, 0};
    mg_augment_apply(out, in, C, H, W, id);
    CHECK(memcmp(in, out, sizeof in) == 0);

    /* Flip only: row 0 of channel 1 reads 104 103 102 101. */
    mg_augment_apply(out, in, C, H, W, (mg_aug_draw){0, 0, 1});
    const float flipped[4] = {104, 103, 102, 101};
    CHECK_TENSOR_NEAR(out + H * W, flipped, 4, 0);

    /* Window one row down and two columns right of the centre (torchvision
     * top = pad+1, left = pad+2): out[r][q] = in[r+1][q+2], zero past the edge. */
    mg_augment_apply(out, in, C, H, W, (mg_aug_draw){1, 2, 0});
    const float shifted_c0[H * W] = {13, 14, 0, 0, 23, 24, 0, 0, 0, 0, 0, 0};
    CHECK_TENSOR_NEAR(out, shifted_c0, H * W, 0);

    /* Crop then flip: flip(crop)[r][q] = crop[r][W-1-q] = in[r-1][W-1-q-1]. */
    mg_augment_apply(out, in, C, H, W, (mg_aug_draw){-1, -1, 1});
    const float both_c1[H * W] = {0, 0, 0, 0, 103, 102, 101, 0, 113, 112, 111, 0};
    CHECK_TENSOR_NEAR(out + H * W, both_c1, H * W, 0);

    /* A shift as large as the image leaves only zeros. */
    mg_augment_apply(out, in, C, H, W, (mg_aug_draw){0, 4, 0});
    float zeros[C * H * W] = {0};
    CHECK_TENSOR_NEAR(out, zeros, C * H * W, 0);
}

static void test_draws(void)
{
    enum { DRAWS = 9000 };
    mg_rng a, b;
    mg_rng_seed(&a, 1, "augment", "test");
    mg_rng_seed(&b, 1, "augment", "test");
    int count_dy[9] = {0}, count_dx[9] = {0}, flips = 0, same = 1;
    for (int i = 0; i < DRAWS; i++) {
        mg_aug_draw d = mg_augment_draw(&a, MG_AUGMENT_CROP | MG_AUGMENT_FLIP, MG_AUGMENT_PAD);
        mg_aug_draw e = mg_augment_draw(&b, MG_AUGMENT_CROP | MG_AUGMENT_FLIP, MG_AUGMENT_PAD);
        same &= d.dy == e.dy && d.dx == e.dx && d.flip == e.flip;
        if (d.dy < -4 || d.dy > 4 || d.dx < -4 || d.dx > 4)
            continue;
        count_dy[d.dy + 4]++;
        count_dx[d.dx + 4]++;
        flips += d.flip;
    }
    CHECK(same);
    int spread_ok = 1, total = 0;
    for (int k = 0; k < 9; k++) {
        /* 1000 expected per offset; 5 standard deviations is about 150. */
        spread_ok &= count_dy[k] > 850 && count_dy[k] < 1150 && count_dx[k] > 850 && count_dx[k] < 1150;
        total += count_dy[k];
    }
    CHECK_INT_EQ(total, DRAWS);
    CHECK(spread_ok);
    printf("  %d flips in %d draws; dy counts %d..%d\n", flips, DRAWS, count_dy[0], count_dy[8]);
    CHECK(flips > 4200 && flips < 4800);

    /* Unset flags draw nothing: the stream does not move. */
    mg_rng before = a;
    mg_aug_draw none = mg_augment_draw(&a, 0, MG_AUGMENT_PAD);
    CHECK(memcmp(&before, &a, sizeof a) == 0);
    CHECK(none.dy == 0 && none.dx == 0 && none.flip == 0);
    mg_aug_draw flip_only = mg_augment_draw(&a, MG_AUGMENT_FLIP, MG_AUGMENT_PAD);
    CHECK(flip_only.dy == 0 && flip_only.dx == 0);
}

/* Augmented training on 1x8x8 "images" is reproducible, differs from
 * unaugmented training, and keeps the shuffle order (the shuffle stream ends
 * in the same state). */
static void test_in_training(void)
{
    enum { N = 48, S = 8, DIM = S * S };
    float x[N * DIM];
    int32_t y[N];
    mg_rng r;
    mg_rng_seed(&r, 9, "augment", "data");
    for (int i = 0; i < N; i++) {
        y[i] = i % 2;
        for (int p = 0; p < DIM; p++)
            x[i * DIM + p] = (float)(mg_rng_uniform(&r) + (y[i] && p % S < S / 2 ? 1.0 : 0.0));
    }
    int hidden[1] = {16};
    mg_model_cfg mc = {.arch = "mlp", .hidden = hidden, .n_hidden = 1, .act = MG_ACT_RELU,
                       .in_c = 1, .in_h = S, .in_w = S, .n_classes = 2};
    mg_model *m[3] = {NULL, NULL, NULL};
    mg_error err = {0};
    for (int k = 0; k < 3; k++) {
        CHECK_OK(mg_model_create(&mc, &m[k], &err), &err);
        if (!m[k])
            return;
        mg_rng ir;
        mg_rng_seed(&ir, 9, "augment", "init");
        mg_model_init_params(m[k], &ir);
    }
    mg_train_cfg tc = {.epochs = 3, .batch = 16, .optim = {.kind = MG_OPT_SGD, .lr = 0.05, .momentum = 0.9},
                       .augment = MG_AUGMENT_CROP | MG_AUGMENT_FLIP};
    mg_train_data d = {.x = x, .y = y, .n = N, .c = 1, .h = S, .w = S};
    mg_rng seed;
    mg_rng_seed(&seed, 9, "augment", "shuffle");
    mg_train_state s[3];
    for (int k = 0; k < 3; k++) {
        tc.augment = k < 2 ? (MG_AUGMENT_CROP | MG_AUGMENT_FLIP) : 0;
        CHECK_OK(mg_train_state_init(&s[k], m[k], &tc, &seed, &err), &err);
        CHECK_OK(mg_train_run(m[k], &d, &s[k], NULL, NULL, &err), &err);
    }
    size_t bytes = mg_model_n_params(m[0]) * sizeof(float);
    CHECK(memcmp(mg_model_params(m[0]), mg_model_params(m[1]), bytes) == 0);
    CHECK(memcmp(mg_model_params(m[0]), mg_model_params(m[2]), bytes) != 0);
    CHECK(memcmp(&s[0].shuffle, &s[2].shuffle, sizeof s[0].shuffle) == 0);
    CHECK(memcmp(&s[0].augment, &s[2].augment, sizeof s[0].augment) != 0);

    /* The image shape must be given and match the model's input. */
    mg_train_state_free(&s[0]);
    tc.augment = MG_AUGMENT_FLIP;
    CHECK_OK(mg_train_state_init(&s[0], m[0], &tc, &seed, &err), &err);
    d.h = 4;
    CHECK_INT_EQ(mg_train_run(m[0], &d, &s[0], NULL, NULL, &err), MG_ERR_ARG);
    printf("  expected error: %s\n", err.msg);
    CHECK_INT_EQ(mg_train(m[0], x, y, N, &tc, &seed, NULL, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "augmentation needs the image shape") != NULL);
    d.c = 1, d.h = 1, d.w = DIM;
    CHECK_INT_EQ(mg_train_run(m[0], &d, &s[0], NULL, NULL, &err), MG_ERR_ARG);
    CHECK(strstr(err.msg, "augmentation needs images, but the samples are 1x1x64") != NULL);
    tc.augment = 8;
    CHECK_INT_EQ(mg_train(m[0], x, y, N, &tc, &seed, NULL, &err), MG_ERR_ARG);
    for (int k = 0; k < 3; k++) {
        mg_train_state_free(&s[k]);
        mg_model_destroy(&m[k]);
    }
}

int main(void)
{
    test_apply_by_hand();
    test_draws();
    test_in_training();
    MG_TEST_MAIN_END();
}
