/*
 * fuzz_csv.c: libFuzzer target for the delimited-text loaders: generic CSV
 * (options from the first bytes: label column, header, delimiter, label base,
 * class count), label-first CSV (Location, Purchase100) and Texas100's pair of
 * files. Plain or gzip, as the bytes come.
 */
#include <math.h>
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

static void check_rows(const mg_dataset *d)
{
    fz_require(d->n >= 1 && d->c >= 1 && d->h == 1 && d->w == 1, "a table has rows and features");
    fz_require(d->n_classes >= 1 && d->n_train == d->n, "a table has classes and no test part");
    for (size_t i = 0; i < d->n; i++)
        fz_require(d->y[i] >= 0 && d->y[i] < d->n_classes, "labels are in range");
    for (size_t i = 0; i < d->n * (size_t)d->c; i++)
        fz_require(isfinite(d->x[i]), "features are finite");
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static const char delims[4] = {',', ';', '\t', ' '};
    fz_input in = {data, size};
    char a[600], b[600];
    uint8_t mode = fz_byte(&in) % 3, o1 = fz_byte(&in), o2 = fz_byte(&in);
    mg_dataset d;
    mg_error err;
    mg_status st;
    size_t na = 0, nb = 0;
    fz_path(a, sizeof a, "table.csv");
    fz_path(b, sizeof b, "labels");
    if (mode == 2) {
        const uint8_t *pa = fz_take(&in, fz_u16(&in), &na);
        const uint8_t *pb = fz_take(&in, in.n, &nb);
        fz_write(a, pa, na);
        fz_write(b, pb, nb);
        st = mg_data_load_texas(a, b, 1 + o1 % 100, &d, &err);
    } else {
        const uint8_t *pa = fz_take(&in, in.n, &na);
        fz_write(a, pa, na);
        if (mode == 1) {
            st = mg_data_load_csv_label_first(a, 1 + o1 % 100, &d, &err);
        } else {
            mg_csv_opts o = {.label_column = o1 % 4, .header = (o1 >> 2) & 1, .delimiter = delims[(o1 >> 3) & 3],
                             .label_base = (o1 >> 5) & 1, .n_classes = o2 % 8};
            st = mg_data_load_csv(a, &o, &d, &err);
        }
    }
    if (st == MG_OK) {
        check_rows(&d);
        mg_dataset_free(&d);
    } else {
        fz_require(strstr(err.msg, "table.csv") || strstr(err.msg, "labels"), "a table error names the file");
    }
    return 0;
}
