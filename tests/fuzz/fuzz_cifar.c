/*
 * fuzz_cifar.c: libFuzzer target for the CIFAR-10/100 binary loader. The
 * input is the kind (CIFAR-10, CIFAR-100 fine or coarse), the length of the
 * first file (0: one file), then the file bytes (plain or gzip).
 */
#include <string.h>

#include "harness.h"
#include "miagrid/data.h"

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    fz_tmpdir();
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const mg_cifar_kind kinds[3] = {MG_CIFAR10, MG_CIFAR100_FINE, MG_CIFAR100_COARSE};
    static const int classes[3] = {10, 100, 20};
    fz_input in = {data, size};
    char a[600], b[600];
    size_t na = 0, nb = 0;
    int k = fz_byte(&in) % 3;
    size_t split = fz_u16(&in);
    const uint8_t *pa = fz_take(&in, split ? split : in.n, &na);
    const uint8_t *pb = fz_take(&in, in.n, &nb);
    fz_path(a, sizeof a, "data_batch_1.bin");
    fz_path(b, sizeof b, "test_batch.bin");
    fz_write(a, pa, na);
    fz_write(b, pb, nb);
    const char *paths[2] = {a, b};
    size_t n_files = split ? 2 : 1;

    mg_dataset d;
    mg_error err;
    if (mg_data_load_cifar(paths, n_files, 1, kinds[k], &d, &err) == MG_OK) {
        fz_require(d.n >= n_files && d.c == 3 && d.h == 32 && d.w == 32, "CIFAR images are 3x32x32");
        fz_require(d.n_classes == classes[k] && d.n_train >= 1 && d.n_train <= d.n, "CIFAR classes and parts");
        for (size_t i = 0; i < d.n; i++)
            fz_require(d.y[i] >= 0 && d.y[i] < classes[k], "labels are in range");
        for (size_t i = 0; i < d.n * 3072; i++)
            fz_require(d.x[i] >= 0.0f && d.x[i] <= 1.0f, "pixels are in [0, 1]");
        mg_dataset_free(&d);
    } else {
        fz_require(strstr(err.msg, ".bin") != NULL, "a CIFAR error names the file");
    }
    return 0;
}
