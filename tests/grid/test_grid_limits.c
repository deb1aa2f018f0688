/*
 * test_grid_limits.c: the bounds a hostile or mistaken grid meets: the cell
 * and node limits (and their environment variables), alias bombs refused
 * before anything is built, YAML nesting depth, values that contain
 * themselves through an alias, and the size of the file.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grid_check.h"
#include "miagrid/grid.h"
#include "mg_test.h"

/* "[v0, v1, ...]" of n numbers a + i * step, printed with %g. */
static void number_list(mg_strbuf *b, size_t n, double a, double step)
{
    mg_strbuf_append(b, "[");
    for (size_t i = 0; i < n; i++)
        mg_strbuf_printf(b, "%s%.12g", i ? ", " : "", a + (double)i * step);
    mg_strbuf_append(b, "]");
}

/* Ten anchors, each a list of ten aliases of the one before: a classic
 * billion laughs, 10^10 values when expanded, in a dozen lines. Used where a
 * list of numbers is expected, it is refused at once, not expanded. */
static void test_billion_laughs(void)
{
    mg_strbuf b;
    mg_strbuf_init(&b);
    mg_strbuf_append(&b, "name: lol\naxes:\n  arch: lenet5\n  sparsity: &l0 [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, "
                         "0.8, 0.9, 0.95]\nseeds: [\n");
    for (int i = 1; i <= 9; i++) {
        mg_strbuf_printf(&b, "  &l%d [", i);
        for (int k = 0; k < 10; k++)
            mg_strbuf_printf(&b, "%s*l%d", k ? ", " : "", i - 1);
        mg_strbuf_append(&b, i < 9 ? "],\n" : "]\n");
    }
    mg_strbuf_append(&b, "]\n");
    double t0 = mg_now();
    EXPECT_ERROR(b.s, "seeds[0]: expected a non-negative integer, got a list");
    CHECK(mg_now() - t0 < 1.0);

    /* The same bomb nested in one place: the depth check walks each shared
     * node once, so it answers at once too. */
    mg_strbuf_free(&b);
    mg_strbuf_init(&b);
    mg_strbuf_append(&b, "name: lol\nseeds: [0, 1, 2]\naxes: {arch: lenet5}\nexclude:\n- {seed: 0}\n- &m0 {seed: 1}\n");
    for (int i = 1; i <= 12; i++) {
        mg_strbuf_printf(&b, "- &m%d [", i);
        for (int k = 0; k < 10; k++)
            mg_strbuf_printf(&b, "%s*m%d", k ? ", " : "", i - 1);
        mg_strbuf_append(&b, "]\n");
    }
    t0 = mg_now();
    EXPECT_ERROR(b.s, "exclude[2]: expected a mapping");
    CHECK(mg_now() - t0 < 1.0);
    mg_strbuf_free(&b);
}

/* Axes whose product passes the cell limit are refused while parsing, before
 * any cell exists: 1,000 seeds x 1,000 sparsities x 2 archs from a 14 KB file. */
static void test_cell_product(void)
{
    mg_strbuf b;
    mg_strbuf_init(&b);
    mg_strbuf_append(&b, "name: wide\nseeds: ");
    number_list(&b, 1000, 0, 1);
    mg_strbuf_append(&b, "\naxes:\n  arch: [lenet5, mlp]\n  sparsity: ");
    number_list(&b, 1000, 0, 0.0009);
    mg_strbuf_append(&b, "\n");
    double t0 = mg_now();
    EXPECT_ERROR(b.s, "1 datasets x 2 archs x 1 prunes x 1000 sparsities x 1 defenses x 1000 seeds is more than "
                        "1000000 cells");
    EXPECT_ERROR(b.s, "MIAGRID_MAX_CELLS");
    CHECK(mg_now() - t0 < 2.0);
    mg_strbuf_free(&b);
}

static const char QUICK[] = "name: q\nseeds: [0, 1]\naxes:\n  arch: [lenet5, mlp]\n  sparsity: [0, 0.5, 0.9]\n";

/* MIAGRID_MAX_CELLS and MIAGRID_MAX_NODES lower (or raise) the limits; the
 * quickstart-sized grid has 12 cells and 48 nodes. */
static void test_env_limits(void)
{
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    mg_error err;

    setenv("MIAGRID_MAX_CELLS", "11", 1);
    EXPECT_ERROR(QUICK, "is more than 11 cells");
    setenv("MIAGRID_MAX_CELLS", "12", 1);
    CHECK_OK(parse(QUICK, &g, &err), &err);
    unsetenv("MIAGRID_MAX_CELLS");

    /* A list longer than the cell limit is refused as such. */
    setenv("MIAGRID_MAX_CELLS", "2", 1);
    EXPECT_ERROR(QUICK, "axes.sparsity: 3 values; expected at most 2");
    unsetenv("MIAGRID_MAX_CELLS");

    setenv("MIAGRID_MAX_NODES", "47", 1);
    mg_error_clear(&err);
    CHECK(g && mg_plan_build(g, &p, &err) == MG_ERR_CONFIG);
    CHECK(p == NULL);
    CHECK(strstr(err.msg, "the plan needs more than 47 nodes") != NULL);
    CHECK(strstr(err.msg, "MIAGRID_MAX_NODES") != NULL);
    setenv("MIAGRID_MAX_NODES", "48", 1);
    CHECK_OK(mg_plan_build(g, &p, &err), &err);
    CHECK(p && p->n_nodes == 48);
    mg_plan_destroy(&p);

    /* Values that are not whole numbers in range name the variable. */
    setenv("MIAGRID_MAX_NODES", "lots", 1);
    CHECK(mg_plan_build(g, &p, &err) == MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "MIAGRID_MAX_NODES: expected a whole number from 1 to 10^12, got \"lots\"") != NULL);
    unsetenv("MIAGRID_MAX_NODES");
    setenv("MIAGRID_MAX_CELLS", "0", 1);
    EXPECT_ERROR(QUICK, "MIAGRID_MAX_CELLS: expected a whole number");
    setenv("MIAGRID_MAX_CELLS", "1e6", 1);
    EXPECT_ERROR(QUICK, "MIAGRID_MAX_CELLS: expected a whole number");
    unsetenv("MIAGRID_MAX_CELLS");
    mg_grid_destroy(&g);
}

static void test_depth(void)
{
    mg_strbuf b;
    /* 6 levels is what a grid needs (exclude[i].arch.hidden[j]); 32 pass. */
    for (int depth = 31; depth <= 40; depth += 9) {
        mg_strbuf_init(&b);
        mg_strbuf_append(&b, "name: deep\naxes: {arch: lenet5}\nseeds: ");
        for (int i = 0; i < depth - 1; i++)
            mg_strbuf_append(&b, "[");
        mg_strbuf_append(&b, "0");
        for (int i = 0; i < depth - 1; i++)
            mg_strbuf_append(&b, "]");
        mg_strbuf_append(&b, "\n");
        if (depth > 32)
            EXPECT_ERROR(b.s, "values nested more than 32 levels deep");
        else
            EXPECT_ERROR(b.s, "seeds[0]: expected a non-negative integer, got a list");
        mg_strbuf_free(&b);
    }
    /* A million brackets: refused, neither a stack overflow nor a hang. */
    mg_strbuf_init(&b);
    mg_strbuf_append(&b, "name: deep\nseeds: ");
    for (int i = 0; i < 1000000; i++)
        mg_strbuf_append(&b, "[");
    double t0 = mg_now();
    EXPECT_ERROR(b.s, "t.yaml:2:40: values nested more than 32 levels deep");
    CHECK(mg_now() - t0 < 1.0);
    mg_strbuf_free(&b);
}

/* An alias inside its own anchor: libyaml links the value to itself. */
static void test_self_reference(void)
{
    EXPECT_ERROR("name: loop\naxes: {arch: lenet5}\nseeds: &a [0, *a]\n", "contains itself through an alias");
    EXPECT_ERROR("name: loop\naxes: &x {arch: lenet5, sparsity: *x}\n", "contains itself through an alias");
}

static void test_file_size(void)
{
    size_t n = ((size_t)1 << 24) + 1;
    char *text = malloc(n + 1);
    CHECK(text != NULL);
    if (!text)
        return;
    memset(text, '#', n);
    memcpy(text, "name: big\n", 10);
    text[n] = '\0';
    mg_grid *g = NULL;
    mg_error err;
    CHECK(mg_grid_parse("big.yaml", text, n, &g, &err) == MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "big.yaml: 16777217 bytes; expected a grid file of at most 16777216 bytes") != NULL);
    free(text);
}

int main(void)
{
    unsetenv("MIAGRID_MAX_CELLS");
    unsetenv("MIAGRID_MAX_NODES");
    test_billion_laughs();
    test_cell_product();
    test_env_limits();
    test_depth();
    test_self_reference();
    test_file_size();
    MG_TEST_MAIN_END();
}
