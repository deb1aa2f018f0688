/*
 * test_score.c: the loss and confidence scores against hand-computed values,
 * including logits large enough to overflow a naive softmax.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "miagrid/attack.h"
#include "mg_test.h"

int main(void)
{
    CHECK(mg_attack_known("loss"));
    CHECK(mg_attack_known("conf"));
    CHECK(!mg_attack_known("lira-9"));
    CHECK(!mg_attack_known(NULL));
    CHECK(strstr(mg_attack_known_list(), "loss") != NULL);

    /* lse(1,2,3) = 3 + log(1 + e^-1 + e^-2) = 3.4076059644443806 */
    const float logits[4 * 3] = {1, 2, 3, 1, 2, 3, 1000, 0, -5, -1000, -1000, -1000};
    const int32_t y[4] = {0, 2, 1, 1};
    double loss[4], conf[4];
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_attack_score("loss", logits, y, 4, 3, loss, e), e);
    CHECK_OK(mg_attack_score("conf", logits, y, 4, 3, conf, e), e);
    const double lse = 3.4076059644443806;
    CHECK_NEAR(loss[0], 1.0 - lse, 1e-12);
    CHECK_NEAR(loss[1], 3.0 - lse, 1e-12);
    CHECK_NEAR(conf[0], exp(1.0 - lse), 1e-12);
    CHECK_NEAR(conf[1], 0.6652409557748217, 1e-12);
    /* log(1 + e^-1000 + e^-1005) rounds to 0: the loss is exactly 1000. */
    CHECK_NEAR(loss[2], -1000.0, 1e-9);
    CHECK(conf[2] >= 0.0 && conf[2] < 1e-300);
    CHECK_NEAR(loss[3], -log(3.0), 1e-12);
    CHECK_NEAR(conf[3], 1.0 / 3.0, 1e-12);

    CHECK_INT_EQ(mg_attack_score("nope", logits, y, 4, 3, loss, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "nope") != NULL && strstr(err.msg, "loss, conf") != NULL);
    const int32_t bad_y[1] = {3};
    CHECK_INT_EQ(mg_attack_score("loss", logits, bad_y, 1, 3, loss, &err), MG_ERR_ARG);
    const float nan_logits[3] = {0.0f, NAN, 1.0f};
    CHECK_INT_EQ(mg_attack_score("conf", nan_logits, y, 1, 3, conf, &err), MG_ERR_NUMERIC);
    MG_TEST_MAIN_END();
}
