/*
 * fuzz_image.c: libFuzzer target for the image decoders as the image-folder
 * loader uses them: the bytes (PNG or JPEG, told apart by content) become the
 * only image of a one-class folder, loaded at a size and channel count from
 * the first byte, so decoding, grey conversion and resizing all run.
 */
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "harness.h"
#include "miagrid/data.h"

static char root[600], image[700];

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    char cls[700];
    fz_path(root, sizeof root, "folder");
    snprintf(cls, sizeof cls, "%s/class", root);
    snprintf(image, sizeof image, "%s/image.png", cls);
    fz_require(mkdir(root, 0700) == 0 && mkdir(cls, 0700) == 0, "the image folder is made");
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input in = {data, size};
    uint8_t o = fz_byte(&in);
    size_t n = 0;
    const uint8_t *p = fz_take(&in, in.n, &n);
    fz_write(image, p, n);
    mg_image_opts io = {.image_size = 1 + (o & 0x3f), .channels = o & 0x80 ? 1 : 3};
    mg_dataset d;
    mg_error err;
    if (mg_data_load_image_folder(root, &io, &d, &err) == MG_OK) {
        size_t dim = (size_t)io.channels * io.image_size * io.image_size;
        fz_require(d.n == 1 && d.n_classes == 1 && d.y[0] == 0, "one image of one class");
        fz_require(mg_dataset_dim(&d) == dim, "the image has the size asked for");
        for (size_t i = 0; i < dim; i++)
            fz_require(d.x[i] >= 0.0f && d.x[i] <= 1.0f, "pixels are in [0, 1]");
        mg_dataset_free(&d);
    } else {
        fz_require(strstr(err.msg, "image.png") != NULL, "an image error names the file");
    }
    return 0;
}
