/*
 * mg_test.h: the in-house assertion header. Each check prints file:line and
 * the values it compared; a test executable returns non-zero if any failed.
 */
#ifndef MG_TEST_H
#define MG_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/util.h"

static int mg_test_failures_ = 0;
static int mg_test_checks_ = 0;

#define MG_T_FAIL_(...)                                        \
    do {                                                       \
        fprintf(stderr, "%s:%d: FAIL: ", __FILE__, __LINE__);  \
        fprintf(stderr, __VA_ARGS__);                          \
        fputc('\n', stderr);                                   \
        mg_test_failures_++;                                   \
    } while (0)

#define CHECK(cond)                                            \
    do {                                                       \
        mg_test_checks_++;                                     \
        if (!(cond))                                           \
            MG_T_FAIL_("%s", #cond);                           \
    } while (0)

#define CHECK_INT_EQ(a, b)                                                          \
    do {                                                                            \
        long long a_ = (long long)(a), b_ = (long long)(b);                         \
        mg_test_checks_++;                                                          \
        if (a_ != b_)                                                               \
            MG_T_FAIL_("%s == %s: %lld != %lld", #a, #b, a_, b_);                   \
    } while (0)

#define CHECK_NEAR(a, b, tol)                                                       \
    do {                                                                            \
        double a_ = (double)(a), b_ = (double)(b), t_ = (double)(tol);              \
        mg_test_checks_++;                                                          \
        if (!(fabs(a_ - b_) <= t_))                                                 \
            MG_T_FAIL_("%s ~ %s: %.9g vs %.9g (|diff| %.3g > %.3g)", #a, #b, a_, b_, \
                       fabs(a_ - b_), t_);                                          \
    } while (0)

#define CHECK_STR_EQ(a, b)                                                          \
    do {                                                                            \
        const char *a_ = (a), *b_ = (b);                                            \
        mg_test_checks_++;                                                          \
        if (!a_ || !b_ || strcmp(a_, b_) != 0)                                      \
            MG_T_FAIL_("%s == %s: \"%s\" != \"%s\"", #a, #b, a_ ? a_ : "(null)",    \
                       b_ ? b_ : "(null)");                                         \
    } while (0)

/* The status must be MG_OK; prints the error message otherwise. */
#define CHECK_OK(call, errp)                                                        \
    do {                                                                            \
        int s_ = (int)(call);                                                       \
        const mg_error *e_ = (errp);                                                \
        mg_test_checks_++;                                                          \
        if (s_ != 0)                                                                \
            MG_T_FAIL_("%s returned %d: %s", #call, s_, e_ ? e_->msg : "");         \
    } while (0)

/* Compare two float arrays; prints the max abs difference and its index. */
#define CHECK_TENSOR_NEAR(a, b, n, tol)                                             \
    do {                                                                            \
        double md_ = 0.0;                                                           \
        size_t mi_ = 0;                                                             \
        for (size_t i_ = 0; i_ < (size_t)(n); i_++) {                               \
            double d_ = fabs((double)(a)[i_] - (double)(b)[i_]);                    \
            if (!(d_ <= md_)) { md_ = d_; mi_ = i_; }                               \
        }                                                                           \
        mg_test_checks_++;                                                          \
        if (!(md_ <= (double)(tol)))                                                \
            MG_T_FAIL_("%s ~ %s: max |diff| %.3g at [%zu] > %.3g", #a, #b, md_, mi_,  \
                       (double)(tol));                                              \
    } while (0)

#define MG_TEST_MAIN_END()                                                          \
    do {                                                                            \
        printf("%d checks, %d failed\n", mg_test_checks_, mg_test_failures_);       \
        return mg_test_failures_ ? 1 : 0;                                           \
    } while (0)

/* Exit code CTest treats as "skipped" (set SKIP_RETURN_CODE 77 on the test). */
#define MG_TEST_SKIP 77

#endif
