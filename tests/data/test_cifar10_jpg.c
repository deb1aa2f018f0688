/*
 * test_cifar10_jpg.c: the JPEG copy of CIFAR-10 under $MIAGRID_TEST_DATA
 * (cifar10-jpg/cifar10-jpg.tar.gz), when present: extracted once into the test scratch folder, then loaded through
 * the registry as cifar10-jpg (60,000 32x32 images, train before test) and
 * timed, since a run loads it at the start of every worker. Prints
 * "skipped: ..." when the archive is absent.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data_test_files.h"
#include "miagrid/data.h"
#include "mg_test.h"

static int file_exists(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

int main(void)
{
    const char *src = getenv("MIAGRID_TEST_DATA");
    char tarball[1024], dir[512], marker[600], cmd[4096];
    if (!src || !src[0]) {
        printf("skipped: cifar10-jpg (MIAGRID_TEST_DATA not set)\n");
        MG_TEST_MAIN_END();
    }
    snprintf(tarball, sizeof tarball, "%s/cifar10-jpg/cifar10-jpg.tar.gz", src);
    if (!file_exists(tarball)) {
        printf("skipped: cifar10-jpg (no %s)\n", tarball);
        MG_TEST_MAIN_END();
    }
    tf_path(dir, sizeof dir, "cifar10-jpg");
    snprintf(marker, sizeof marker, "%s/.extracted", dir);
    if (!file_exists(marker)) {
        double t0 = mg_now();
        snprintf(cmd, sizeof cmd, "rm -rf '%s' && mkdir -p '%s' && tar xzf '%s' -C '%s' && touch '%s'", dir, dir,
                 tarball, dir, marker);
        CHECK(system(cmd) == 0);
        printf("extracted %s in %.1f s\n", tarball, mg_now() - t0);
    }

    mg_dataset d;
    mg_error err = {0}, *e = &err;
    double t0 = mg_now();
    CHECK_OK(mg_data_load("cifar10-jpg", dir, &d, e), e);
    double secs = mg_now() - t0;
    printf("loaded cifar10-jpg: %zu images in %.2f s\n", d.n, secs);
    CHECK(secs < 60.0);
    CHECK_INT_EQ(d.n, 60000);
    CHECK_INT_EQ(d.n_train, 50000);
    CHECK_INT_EQ(d.n_classes, 10);
    CHECK_INT_EQ(d.c, 3);
    CHECK_INT_EQ(d.h, 32);
    CHECK_INT_EQ(d.w, 32);
    CHECK_INT_EQ(d.n_norm, 3);
    if (d.n == 60000) {
        size_t train[10] = {0}, test[10] = {0};
        int bad = 0;
        for (size_t i = 0; i < d.n; i++) {
            if (d.y[i] < 0 || d.y[i] > 9) {
                bad = 1;
                continue;
            }
            (i < d.n_train ? train : test)[d.y[i]]++;
        }
        CHECK(!bad);
        for (int k = 0; k < 10; k++) {
            CHECK_INT_EQ(train[k], 5000);
            CHECK_INT_EQ(test[k], 1000);
        }
        /* Standardised with CIFAR-10's statistics: each channel's mean near 0 and spread near 1. */
        size_t plane = 1024;
        for (int k = 0; k < 3; k++) {
            double s = 0.0, s2 = 0.0;
            for (size_t i = 0; i < d.n_train; i++) {
                const float *p = d.x + i * 3 * plane + (size_t)k * plane;
                for (size_t j = 0; j < plane; j++) {
                    s += p[j];
                    s2 += (double)p[j] * p[j];
                }
            }
            double cnt = (double)d.n_train * plane, m = s / cnt, sd = sqrt(s2 / cnt - m * m);
            printf("channel %d: mean %.4f, std %.4f\n", k, m, sd);
            CHECK_NEAR(m, 0.0, 0.05);
            CHECK_NEAR(sd, 1.0, 0.05);
        }
    }
    mg_dataset_free(&d);
    MG_TEST_MAIN_END();
}
