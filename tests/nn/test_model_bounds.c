/*
 * test_model_bounds.c: shapes whose products no machine holds (a huge mlp
 * width, a huge image) are refused when the model is created, with a message
 * naming the model and the sizes, before any block is allocated.
 */
#define _POSIX_C_SOURCE 200809L
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/nn.h"
#include "mg_test.h"

static void expect_refused_at(int line, const mg_model_cfg *cfg, const char *text)
{
    mg_model *m = NULL;
    mg_error err;
    mg_error_clear(&err);
    double t0 = mg_now();
    mg_status st = mg_model_create(cfg, &m, &err);
    mg_test_checks_++;
    if (st != MG_ERR_CONFIG || m != NULL || !strstr(err.msg, text) || mg_now() - t0 > 1.0) {
        fprintf(stderr, "%s:%d: FAIL: expected a quick config error with \"%s\", got %d: %s\n", __FILE__, line, text,
                (int)st, st == MG_OK ? "(no error)" : err.msg);
        mg_test_failures_++;
    }
    mg_model_destroy(&m);
}
#define EXPECT_REFUSED(cfg, text) expect_refused_at(__LINE__, cfg, text)

static void test_wide_mlp(void)
{
    /* The grid allows widths up to 1,000,000: two such layers are 10^12 weights. */
    int hidden[2] = {1000000, 1000000};
    mg_model_cfg c = {.arch = "mlp", .hidden = hidden, .n_hidden = 2, .act = MG_ACT_RELU,
                      .in_c = 1, .in_h = 28, .in_w = 28, .n_classes = 10};
    EXPECT_REFUSED(&c, "model mlp: 1000796000010 parameters on input 1x28x28 would need");
    hidden[0] = INT_MAX;
    c.n_hidden = 1;
    EXPECT_REFUSED(&c, "hidden layer 1 has width");
    /* A CSV whose labels made a million classes behind a wide layer. */
    hidden[0] = 100000;
    c.n_classes = 1000000;
    EXPECT_REFUSED(&c, "would need");
}

static void test_huge_image(void)
{
    /* image_size 4096 RGB: the grid's largest. */
    mg_model_cfg c = {.arch = "lenet5", .in_c = 3, .in_h = 4096, .in_w = 4096, .n_classes = 10};
    EXPECT_REFUSED(&c, "input shape 3x4096x4096 is too large");
    c.arch = "mlp";
    int hidden[1] = {512};
    c.hidden = hidden;
    c.n_hidden = 1;
    c.act = MG_ACT_RELU;
    c.in_c = 1;
    c.in_h = c.in_w = 4096;
    setenv("MIAGRID_MAX_MEMORY", "16G", 1);
    EXPECT_REFUSED(&c, "model mlp: 8589940234 parameters on input 1x4096x4096 would need 96.0 GiB");
    unsetenv("MIAGRID_MAX_MEMORY");
}

/* MIAGRID_MAX_MEMORY stands for the machine: what fits is created. */
static void test_memory_limit(void)
{
    int hidden[2] = {512, 256};
    mg_model_cfg c = {.arch = "mlp", .hidden = hidden, .n_hidden = 2, .act = MG_ACT_RELU,
                      .in_c = 1, .in_h = 28, .in_w = 28, .n_classes = 10};
    mg_model *m = NULL;
    mg_error err;
    setenv("MIAGRID_MAX_MEMORY", "1M", 1);
    EXPECT_REFUSED(&c, "535818 parameters on input 1x28x28 would need 0.0 GiB");
    setenv("MIAGRID_MAX_MEMORY", "7M", 1);
    CHECK_OK(mg_model_create(&c, &m, &err), &err);
    mg_model_destroy(&m);
    unsetenv("MIAGRID_MAX_MEMORY");
}

int main(void)
{
    unsetenv("MIAGRID_MAX_MEMORY");
    test_wide_mlp();
    test_huge_image();
    test_memory_limit();
    MG_TEST_MAIN_END();
}
