/*
 * test_split.c: the four-way split (disjoint, sized, deterministic by seed
 * and stream) and gathering rows from a dataset.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/data.h"
#include "mg_test.h"

static int same_split(const mg_split *a, const mg_split *b)
{
    for (int k = 0; k < 4; k++)
        if (a->n[k] != b->n[k] || memcmp(a->idx[k], b->idx[k], a->n[k] * sizeof(uint32_t)) != 0)
            return 0;
    return 1;
}

static void test_split(void)
{
    const size_t n_total = 1000;
    const size_t sizes[4] = {250, 200, 300, 150};
    mg_split s, s2, s3, s4;
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_split_four_way(n_total, sizes, 42, "cell-a", &s, e), e);
    unsigned char *seen = calloc(n_total, 1);
    CHECK(seen != NULL);
    if (!seen)
        return;
    int in_range = 1, disjoint = 1;
    for (int k = 0; k < 4; k++) {
        CHECK_INT_EQ(s.n[k], sizes[k]);
        for (size_t i = 0; i < s.n[k]; i++) {
            uint32_t v = s.idx[k][i];
            if (v >= n_total) {
                in_range = 0;
                continue;
            }
            if (seen[v])
                disjoint = 0;
            seen[v] = 1;
        }
    }
    CHECK(in_range);
    CHECK(disjoint);
    free(seen);

    /* Not just the identity order. */
    size_t fixed = 0;
    for (size_t i = 0; i < s.n[0]; i++)
        fixed += s.idx[0][i] == i;
    CHECK(fixed < 10);

    CHECK_OK(mg_split_four_way(n_total, sizes, 42, "cell-a", &s2, e), e);
    CHECK(same_split(&s, &s2));
    CHECK_OK(mg_split_four_way(n_total, sizes, 43, "cell-a", &s3, e), e);
    CHECK(!same_split(&s, &s3));
    CHECK_OK(mg_split_four_way(n_total, sizes, 42, "cell-b", &s4, e), e);
    CHECK(!same_split(&s, &s4));
    mg_split_free(&s);
    mg_split_free(&s2);
    mg_split_free(&s3);
    mg_split_free(&s4);
    CHECK(s.idx[0] == NULL && s.n[0] == 0);

    /* All of the pool, and empty parts. */
    const size_t whole[4] = {0, 1000, 0, 0};
    CHECK_OK(mg_split_four_way(n_total, whole, 1, "x", &s, e), e);
    CHECK_INT_EQ(s.n[1], 1000);
    CHECK_INT_EQ(s.n[0], 0);
    mg_split_free(&s);

    const size_t too_many[4] = {500, 500, 1, 0};
    CHECK_INT_EQ(mg_split_four_way(n_total, too_many, 1, "x", &s, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "1001") != NULL);
    CHECK(strstr(err.msg, "1000") != NULL);
    CHECK(s.idx[0] == NULL);
    const size_t overflow[4] = {SIZE_MAX, 2, 0, 0};
    CHECK_INT_EQ(mg_split_four_way(n_total, overflow, 1, "x", &s, &err), MG_ERR_CONFIG);
}

static void test_gather(void)
{
    float x[4 * 6];
    int32_t y[4];
    for (int i = 0; i < 24; i++)
        x[i] = (float)i;
    for (int i = 0; i < 4; i++)
        y[i] = 10 + i;
    mg_dataset d = {.x = x, .y = y, .n = 4, .c = 2, .h = 1, .w = 3, .n_classes = 20};
    const uint32_t idx[3] = {3, 0, 3};
    float xo[18];
    int32_t yo[3];
    mg_dataset_gather(&d, idx, 3, xo, yo);
    const float want[18] = {18, 19, 20, 21, 22, 23, 0, 1, 2, 3, 4, 5, 18, 19, 20, 21, 22, 23};
    CHECK_TENSOR_NEAR(xo, want, 18, 0.0);
    CHECK_INT_EQ(yo[0], 13);
    CHECK_INT_EQ(yo[1], 10);
    CHECK_INT_EQ(yo[2], 13);
}

int main(void)
{
    test_split();
    test_gather();
    MG_TEST_MAIN_END();
}
