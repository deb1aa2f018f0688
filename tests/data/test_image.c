/*
 * test_image.c: PNG and JPEG decoding (files the test writes with libpng and
 * libjpeg), the bilinear resize against hand-computed values, grey
 * conversion, the image-folder layouts and their ordering, the registry's
 * image-folder datasets, and the corrupt files and bad layouts that must be
 * reported by name.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "data/data_internal.h"
#include "data_test_files.h"
#include "image_test_files.h"
#include "miagrid/data.h"
#include "mg_test.h"
#include "tree_test_files.h"

static void test_resize(void)
{
    /* Upscaling 2x2 -> 4x4: the values PyTorch's bilinear (align_corners=False) gives. */
    const float src[4] = {0, 10, 20, 30};
    const float up[16] = {0, 2.5f, 7.5f, 10, 5, 7.5f, 12.5f, 15, 15, 17.5f, 22.5f, 25, 20, 22.5f, 27.5f, 30};
    float dst[16];
    mg_image_resize_bilinear(src, 1, 2, 2, dst, 4, 4);
    CHECK_TENSOR_NEAR(dst, up, 16, 1e-6);

    /* Downscaling 4x4 -> 2x2 by two samples each output pixel between its four sources. */
    float big[16], small[4];
    for (int i = 0; i < 16; i++)
        big[i] = (float)i;
    mg_image_resize_bilinear(big, 1, 4, 4, small, 2, 2);
    const float down[4] = {2.5f, 4.5f, 10.5f, 12.5f};
    CHECK_TENSOR_NEAR(small, down, 4, 1e-6);

    /* Two planes, a non-square source: each plane resized on its own; same size is the identity. */
    float two[2 * 6], same[2 * 6];
    for (int i = 0; i < 12; i++)
        two[i] = (float)(i * i);
    mg_image_resize_bilinear(two, 2, 2, 3, same, 2, 3);
    CHECK_TENSOR_NEAR(same, two, 12, 0.0);
    float row[2];
    const float col[2] = {0, 1};
    mg_image_resize_bilinear(col, 1, 2, 1, row, 1, 1);
    CHECK_NEAR(row[0], 0.5, 1e-7);
}

/* 4x4 RGB test pattern. */
static void pattern(unsigned char *rgb, int w, int h, int seed)
{
    for (int i = 0; i < w * h; i++) {
        rgb[3 * i] = (unsigned char)(i * 13 + seed);
        rgb[3 * i + 1] = (unsigned char)(255 - i * 7 - seed);
        rgb[3 * i + 2] = (unsigned char)((i * 29 + seed * 3) & 0xff);
    }
}

static unsigned luma(const unsigned char *p)
{
    return (19595u * p[0] + 38470u * p[1] + 7471u * p[2] + 0x8000u) >> 16;
}

static void test_png(void)
{
    char path[512];
    unsigned char rgb[4 * 4 * 3], grey[16], rgba[4 * 4];
    float out[3 * 16], want[3 * 16];
    mg_image_scratch s;
    memset(&s, 0, sizeof s);
    mg_error err = {0}, *e = &err;

    pattern(rgb, 4, 4, 5);
    tf_path(path, sizeof path, "timg_rgb.png");
    CHECK(tf_write_png(path, rgb, 4, 4, 3) == 0);
    CHECK_OK(mg_image_load(path, 3, 4, &s, out, e), e);
    for (int i = 0; i < 16; i++)
        for (int k = 0; k < 3; k++)
            want[k * 16 + i] = (float)rgb[3 * i + k] / 255.0f;
    CHECK_TENSOR_NEAR(out, want, 48, 0.0);

    CHECK_OK(mg_image_load(path, 1, 4, &s, out, e), e);
    for (int i = 0; i < 16; i++)
        want[i] = (float)luma(rgb + 3 * i) / 255.0f;
    CHECK_TENSOR_NEAR(out, want, 16, 0.0);

    /* A grey PNG read as RGB repeats its value in the three planes. */
    for (int i = 0; i < 16; i++)
        grey[i] = (unsigned char)(i * 16 + 3);
    tf_path(path, sizeof path, "timg_grey.png");
    CHECK(tf_write_png(path, grey, 4, 4, 1) == 0);
    CHECK_OK(mg_image_load(path, 3, 4, &s, out, e), e);
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 16; i++)
            want[k * 16 + i] = (float)grey[i] / 255.0f;
    CHECK_TENSOR_NEAR(out, want, 48, 0.0);

    /* Alpha: opaque pixels keep their colour, transparent ones become black. */
    unsigned char px[2 * 2 * 4] = {200, 100, 50, 255, 200, 100, 50, 0, 10, 20, 30, 255, 90, 90, 90, 0};
    (void)rgba;
    tf_path(path, sizeof path, "timg_rgba.png");
    CHECK(tf_write_png(path, px, 2, 2, 4) == 0);
    CHECK_OK(mg_image_load(path, 3, 2, &s, out, e), e);
    const float wa[12] = {200 / 255.0f, 0, 10 / 255.0f, 0, 100 / 255.0f, 0, 20 / 255.0f, 0,
                          50 / 255.0f,  0, 30 / 255.0f, 0};
    CHECK_TENSOR_NEAR(out, wa, 12, 0.0);

    /* Resized on load: the planes of the decoded image through the bilinear resize. */
    unsigned char big[8 * 8 * 3];
    pattern(big, 8, 8, 9);
    tf_path(path, sizeof path, "timg_big.png");
    CHECK(tf_write_png(path, big, 8, 8, 3) == 0);
    float planes[3 * 64], small[3 * 9];
    for (int i = 0; i < 64; i++)
        for (int k = 0; k < 3; k++)
            planes[k * 64 + i] = big[3 * i + k];
    mg_image_resize_bilinear(planes, 3, 8, 8, small, 3, 3);
    for (int i = 0; i < 27; i++)
        small[i] /= 255.0f;
    CHECK_OK(mg_image_load(path, 3, 3, &s, out, e), e);
    CHECK_TENSOR_NEAR(out, small, 27, 0.0);
    mg_image_scratch_free(&s);
}

static void test_jpeg(void)
{
    char path[512];
    unsigned char flat[16 * 16 * 3], grey[16 * 16];
    float out[3 * 256];
    mg_image_scratch s;
    memset(&s, 0, sizeof s);
    mg_error err = {0}, *e = &err;
    for (int i = 0; i < 256; i++) {
        flat[3 * i] = 200;
        flat[3 * i + 1] = 100;
        flat[3 * i + 2] = 50;
        grey[i] = 77;
    }
    tf_path(path, sizeof path, "timg_flat.jpg");
    CHECK(tf_write_jpeg(path, flat, 16, 16, 3, 100) == 0);
    CHECK_OK(mg_image_load(path, 3, 16, &s, out, e), e);
    double md = 0.0;
    for (int k = 0; k < 3; k++)
        for (int i = 0; i < 256; i++) {
            double d = fabs(out[k * 256 + i] - flat[k] / 255.0);
            md = d > md ? d : md;
        }
    CHECK_NEAR(md, 0.0, 2.5 / 255.0);

    tf_path(path, sizeof path, "timg_grey.jpg");
    CHECK(tf_write_jpeg(path, grey, 16, 16, 1, 100) == 0);
    CHECK_OK(mg_image_load(path, 1, 16, &s, out, e), e);
    md = 0.0;
    for (int i = 0; i < 256; i++) {
        double d = fabs(out[i] - 77 / 255.0);
        md = d > md ? d : md;
    }
    CHECK_NEAR(md, 0.0, 1.5 / 255.0);
    /* Decoding is deterministic: the same file gives the same bits. */
    float again[256];
    CHECK_OK(mg_image_load(path, 1, 16, &s, again, e), e);
    CHECK(memcmp(out, again, sizeof again) == 0);
    mg_image_scratch_free(&s);
}

static void expect_image_fail(const char *path, mg_status want_status, const char *want_text)
{
    mg_image_scratch s;
    memset(&s, 0, sizeof s);
    float out[3 * 64 * 64];
    mg_error err = {0};
    CHECK_INT_EQ(mg_image_load(path, 3, 8, &s, out, &err), want_status);
    if (!strstr(err.msg, path) || !strstr(err.msg, want_text))
        fprintf(stderr, "message \"%s\" lacks \"%s\" or the path\n", err.msg, want_text);
    CHECK(strstr(err.msg, path) != NULL && strstr(err.msg, want_text) != NULL);
    mg_image_scratch_free(&s);
}

static void test_corrupt(void)
{
    char good[512], bad[512];
    unsigned char noise[64 * 64 * 3];
    uint32_t r = 12345;
    for (size_t i = 0; i < sizeof noise; i++) {
        r = r * 1103515245u + 12345u;
        noise[i] = (unsigned char)(r >> 24);
    }
    tf_path(good, sizeof good, "timg_noise.png");
    CHECK(tf_write_png(good, noise, 64, 64, 3) == 0);
    tf_path(bad, sizeof bad, "timg_trunc.png");
    CHECK(tf_truncate_copy(good, bad, tf_file_size(good) / 2) == 0);
    expect_image_fail(bad, MG_ERR_DATA, "corrupt or truncated PNG");
    CHECK(tf_truncate_copy(good, bad, 20) == 0);
    expect_image_fail(bad, MG_ERR_DATA, "PNG");

    tf_path(good, sizeof good, "timg_noise.jpg");
    CHECK(tf_write_jpeg(good, noise, 64, 64, 3, 90) == 0);
    tf_path(bad, sizeof bad, "timg_trunc.jpg");
    CHECK(tf_truncate_copy(good, bad, tf_file_size(good) * 6 / 10) == 0);
    expect_image_fail(bad, MG_ERR_DATA, "corrupt or truncated JPEG");
    const unsigned char junk_jpeg[16] = {0xff, 0xd8, 0xff, 0x00, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12};
    tf_path(bad, sizeof bad, "timg_junk.jpg");
    CHECK(tf_write(bad, junk_jpeg, sizeof junk_jpeg, 0) == 0);
    expect_image_fail(bad, MG_ERR_DATA, "corrupt or truncated JPEG");

    tf_path(bad, sizeof bad, "timg_text.png");
    CHECK(tf_write(bad, "hello", 5, 0) == 0);
    expect_image_fail(bad, MG_ERR_DATA, "neither a PNG nor a JPEG image (it starts with bytes 68 65)");
    tf_path(bad, sizeof bad, "timg_empty.png");
    CHECK(tf_write(bad, "", 0, 0) == 0);
    expect_image_fail(bad, MG_ERR_DATA, "empty file");
    tf_path(bad, sizeof bad, "timg_missing.png");
    remove(bad);
    expect_image_fail(bad, MG_ERR_IO, "cannot open");
}

/* dir/name as a 4x4 RGB PNG (or JPEG) of pattern `seed`. */
static void put_image(const char *dir, const char *name, int seed, int jpeg)
{
    char path[1024];
    unsigned char rgb[4 * 4 * 3];
    pattern(rgb, 4, 4, seed);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    CHECK((jpeg ? tf_write_jpeg(path, rgb, 4, 4, 3, 95) : tf_write_png(path, rgb, 4, 4, 3)) == 0);
}

static void make_dirs(const char *root, const char *const *subs, size_t n)
{
    char p[1024];
    for (size_t i = 0; i < n; i++) {
        snprintf(p, sizeof p, "%s/%s", root, subs[i]);
        CHECK(mkdir(p, 0755) == 0);
    }
}

static void check_png_row(const mg_dataset *d, size_t row, int seed)
{
    unsigned char rgb[4 * 4 * 3];
    float want[48];
    pattern(rgb, 4, 4, seed);
    for (int i = 0; i < 16; i++)
        for (int k = 0; k < 3; k++)
            want[k * 16 + i] = (float)rgb[3 * i + k] / 255.0f;
    CHECK_TENSOR_NEAR(d->x + row * 48, want, 48, 0.0);
}

static void test_folder_split(void)
{
    char root[512], p[1024];
    static const char *const subs[] = {"train", "test", "train/dog", "train/cat", "test/cat", "test/dog"};
    tf_path(root, sizeof root, "timg_split");
    CHECK(tf_fresh_dir(root) == 0);
    make_dirs(root, subs, 6);
    snprintf(p, sizeof p, "%s/train/cat", root);
    put_image(p, "b.png", 1, 0);
    put_image(p, "a.jpg", 2, 1);
    put_image(p, ".hidden.png", 3, 0);
    CHECK(tf_write(strcat(p, "/notes.txt"), "not an image", 12, 0) == 0);
    snprintf(p, sizeof p, "%s/train/dog", root);
    put_image(p, "x.PNG", 4, 0);
    snprintf(p, sizeof p, "%s/test/cat", root);
    put_image(p, "c.png", 5, 0);
    snprintf(p, sizeof p, "%s/test/dog", root);
    put_image(p, "d.jpeg", 6, 1);
    snprintf(p, sizeof p, "%s/train/readme.txt", root);
    CHECK(tf_write(p, "x", 1, 0) == 0);

    mg_image_opts o = {.image_size = 4, .channels = 3};
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_data_load_image_folder(root, &o, &d, e), e);
    CHECK_INT_EQ(d.n, 5);
    CHECK_INT_EQ(d.n_train, 3);
    CHECK_INT_EQ(d.n_classes, 2);
    CHECK_INT_EQ(d.c, 3);
    CHECK_INT_EQ(d.h, 4);
    CHECK_INT_EQ(d.w, 4);
    if (d.n == 5) {
        /* cat before dog; within a folder a.jpg before b.png; train before test. */
        const int32_t wy[5] = {0, 0, 1, 0, 1};
        for (int i = 0; i < 5; i++)
            CHECK_INT_EQ(d.y[i], wy[i]);
        check_png_row(&d, 1, 1);
        check_png_row(&d, 2, 4);
        check_png_row(&d, 3, 5);
        /* The JPEG row is what libjpeg decodes, and near its (lossy) pattern. */
        unsigned char rgb[48], dec[48];
        snprintf(p, sizeof p, "%s/train/cat/a.jpg", root);
        CHECK(tf_read_jpeg_rgb(p, dec, 4, 4) == 0);
        pattern(rgb, 4, 4, 2);
        float want[48];
        double sum = 0.0;
        for (int i = 0; i < 16; i++)
            for (int k = 0; k < 3; k++) {
                want[k * 16 + i] = (float)dec[3 * i + k] / 255.0f;
                sum += fabs(d.x[k * 16 + i] - rgb[3 * i + k] / 255.0);
            }
        CHECK_TENSOR_NEAR(d.x, want, 48, 0.0);
        CHECK(sum / 48 < 0.2);
    }
    mg_dataset_free(&d);

    /* Classes that differ between train and test. */
    snprintf(p, sizeof p, "%s/test/emu", root);
    CHECK(mkdir(p, 0755) == 0);
    put_image(p, "e.png", 7, 0);
    CHECK_INT_EQ(mg_data_load_image_folder(root, &o, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, "hold different class folders (2 and 3; \"emu\" is in only one)") != NULL);
    tf_rmtree(p);

    /* An empty class folder. */
    snprintf(p, sizeof p, "%s/test/dog/d.jpeg", root);
    remove(p);
    CHECK_INT_EQ(mg_data_load_image_folder(root, &o, &d, &err), MG_ERR_DATA);
    snprintf(p, sizeof p, "%s/test/dog: no .png, .jpg or .jpeg files", root);
    CHECK(strstr(err.msg, p) != NULL);

    /* A corrupt image is named. */
    snprintf(p, sizeof p, "%s/test/dog/z.png", root);
    CHECK(tf_write(p, "\x89PNG\r\n\x1a\n garbage", 17, 0) == 0);
    CHECK_INT_EQ(mg_data_load_image_folder(root, &o, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, p) != NULL && strstr(err.msg, "PNG") != NULL);
    CHECK(d.x == NULL && d.n == 0);

    /* train/ without test/. */
    snprintf(p, sizeof p, "%s/test", root);
    tf_rmtree(p);
    CHECK_INT_EQ(mg_data_load_image_folder(root, &o, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, "has train/ but no test/ folder") != NULL);
}

static void test_folder_flat(void)
{
    char root[512], p[1024];
    static const char *const subs[] = {"zebra", "apple"};
    tf_path(root, sizeof root, "timg_flat");
    CHECK(tf_fresh_dir(root) == 0);
    mg_image_opts o = {.image_size = 2, .channels = 1};
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    CHECK_INT_EQ(mg_data_load_image_folder(root, &o, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, "no class folders") != NULL);
    make_dirs(root, subs, 2);
    snprintf(p, sizeof p, "%s/zebra", root);
    put_image(p, "1.png", 11, 0);
    snprintf(p, sizeof p, "%s/apple", root);
    put_image(p, "1.png", 12, 0);
    put_image(p, "2.png", 13, 0);
    CHECK_OK(mg_data_load_image_folder(root, &o, &d, e), e);
    CHECK_INT_EQ(d.n, 3);
    CHECK_INT_EQ(d.n_train, 3);
    CHECK_INT_EQ(d.c, 1);
    CHECK_INT_EQ(d.h, 2);
    if (d.n == 3) {
        CHECK_INT_EQ(d.y[0], 0);
        CHECK_INT_EQ(d.y[2], 1);
        /* Row 2 is zebra's image, grey, then 4x4 -> 2x2. */
        unsigned char rgb[48];
        float g[16], want[4];
        pattern(rgb, 4, 4, 11);
        for (int i = 0; i < 16; i++)
            g[i] = (float)luma(rgb + 3 * i);
        mg_image_resize_bilinear(g, 1, 4, 4, want, 2, 2);
        for (int i = 0; i < 4; i++)
            want[i] /= 255.0f;
        CHECK_TENSOR_NEAR(d.x + 8, want, 4, 0.0);
    }
    mg_dataset_free(&d);

    snprintf(p, sizeof p, "%s/nowhere", root);
    CHECK_INT_EQ(mg_data_load_image_folder(p, &o, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, p) != NULL && strstr(err.msg, "no such folder") != NULL);
}

static void test_registry(void)
{
    char root[512], p[1024];
    tf_path(root, sizeof root, "timg_cinic");
    CHECK(tf_fresh_dir(root) == 0);
    static const char *const parts[] = {"train", "test"};
    make_dirs(root, parts, 2);
    for (int part = 0; part < 2; part++)
        for (int c = 0; c < 10; c++) {
            snprintf(p, sizeof p, "%s/%s/class%d", root, parts[part], c);
            CHECK(mkdir(p, 0755) == 0);
            put_image(p, "img.png", c + 20 * part, 0);
        }
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    unsetenv("MIAGRID_DATA_IMAGEFOLDER");
    unsetenv("MIAGRID_DATA_CINIC10");

    /* imagefolder needs its size; with one it is the folders as they are, in [0,1]. */
    CHECK_INT_EQ(mg_data_load("imagefolder", root, &d, &err), MG_ERR_CONFIG);
    CHECK(strstr(err.msg, "imagefolder: needs an image size") != NULL);
    mg_data_options opts;
    memset(&opts, 0, sizeof opts);
    opts.image_size = 4;
    CHECK_OK(mg_data_load_opts("imagefolder", root, &opts, &d, e), e);
    CHECK_INT_EQ(d.n, 20);
    CHECK_INT_EQ(d.n_train, 10);
    CHECK_INT_EQ(d.n_classes, 10);
    CHECK_INT_EQ(d.n_norm, 0);
    CHECK_STR_EQ(d.name, "imagefolder");
    if (d.n == 20)
        check_png_row(&d, 13, 23);
    mg_dataset_free(&d);

    /* cinic10 at 4x4 through the environment: CINIC-10's normalisation. */
    setenv("MIAGRID_DATA_CINIC10", root, 1);
    CHECK_OK(mg_data_load_opts("cinic10", NULL, &opts, &d, e), e);
    unsetenv("MIAGRID_DATA_CINIC10");
    CHECK_INT_EQ(d.n_norm, 3);
    CHECK(mg_data_is_image_folder("cinic10") && mg_data_is_image_folder("cifar10-jpg"));
    CHECK(!mg_data_is_image_folder("cifar10"));
    CHECK_INT_EQ(mg_data_default_image_size("cinic10"), 32);
    CHECK_INT_EQ(mg_data_default_image_size("imagefolder"), 0);
    if (d.n == 20) {
        unsigned char rgb[48];
        pattern(rgb, 4, 4, 20 + 3);
        const float mean[3] = {0.47889522f, 0.47227842f, 0.43047404f};
        const float sd[3] = {0.24205776f, 0.23828046f, 0.25874835f};
        float want[48];
        for (int i = 0; i < 16; i++)
            for (int k = 0; k < 3; k++)
                want[k * 16 + i] = ((float)rgb[3 * i + k] / 255.0f - mean[k]) / sd[k];
        CHECK_TENSOR_NEAR(d.x + 13 * 48, want, 48, 0.0);
    }
    mg_dataset_free(&d);

    /* Grey cinic10 is left in [0,1]. */
    opts.channels = 1;
    CHECK_OK(mg_data_load_opts("cinic10", root, &opts, &d, e), e);
    CHECK_INT_EQ(d.n_norm, 0);
    CHECK_INT_EQ(d.c, 1);
    mg_dataset_free(&d);

    /* The wrong number of classes for a registry dataset. */
    snprintf(p, sizeof p, "%s/train/class9", root);
    tf_rmtree(p);
    snprintf(p, sizeof p, "%s/test/class9", root);
    tf_rmtree(p);
    CHECK_INT_EQ(mg_data_load_opts("cinic10", root, &opts, &d, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, "holds 9 class folders; expected 10") != NULL);

    snprintf(p, sizeof p, "%s/none", root);
    CHECK_INT_EQ(mg_data_load("cifar10-jpg", p, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, "cifar10-jpg: no folder ") != NULL && strstr(err.msg, "cifar10-jpg.tar.gz") != NULL &&
          strstr(err.msg, "MIAGRID_DATA_CIFAR10_JPG") != NULL);
}

/* An image folder is the images the loader reads: the same tree elsewhere
 * has the same digest; files it skips leave the digest alone; an edited,
 * renamed or added image changes it; a layout it refuses is refused. */
static void test_folder_digest(void)
{
    char root[512], copy[512], p[1024], q[1024], base[65], hex[65];
    mg_error err = {0}, *e = &err;
    static const char *const subs[] = {"train", "test", "train/cat", "train/dog", "test/cat", "test/dog"};
    const char *roots[2] = {root, copy};
    tf_path(root, sizeof root, "timg_digest");
    tf_path(copy, sizeof copy, "timg_digest_copy");
    for (int r = 0; r < 2; r++) {
        CHECK(tf_fresh_dir(roots[r]) == 0);
        make_dirs(roots[r], subs, 6);
        for (int k = 0; k < 4; k++) {
            snprintf(p, sizeof p, "%s/%s", roots[r], subs[2 + k]);
            put_image(p, "a.png", k, 0);
            put_image(p, "b.jpg", 10 + k, 1);
        }
    }
    CHECK_OK(mg_data_digest("imagefolder", root, base, e), e);
    CHECK_OK(mg_data_digest("imagefolder", copy, hex, e), e);
    CHECK_STR_EQ(hex, base);

    snprintf(p, sizeof p, "%s/train/cat/notes.txt", copy);
    CHECK(tf_write(p, "not an image", 12, 0) == 0);
    snprintf(p, sizeof p, "%s/train/cat", copy);
    put_image(p, ".hidden.png", 7, 0);
    CHECK_OK(mg_data_digest("imagefolder", copy, hex, e), e);
    CHECK_STR_EQ(hex, base);

    snprintf(p, sizeof p, "%s/test/dog", copy);
    put_image(p, "a.png", 9, 0);
    CHECK_OK(mg_data_digest("imagefolder", copy, hex, e), e);
    CHECK(strcmp(hex, base) != 0);
    put_image(p, "a.png", 3, 0);
    CHECK_OK(mg_data_digest("imagefolder", copy, hex, e), e);
    CHECK_STR_EQ(hex, base);

    snprintf(p, sizeof p, "%s/test/dog/a.png", copy);
    snprintf(q, sizeof q, "%s/test/dog/c.png", copy);
    CHECK(rename(p, q) == 0);
    CHECK_OK(mg_data_digest("imagefolder", copy, hex, e), e);
    CHECK(strcmp(hex, base) != 0);
    snprintf(p, sizeof p, "%s/test/cat/c.png", copy);
    CHECK(rename(q, p) == 0);
    snprintf(q, sizeof q, "%s/test/cat", copy);
    put_image(q, "a.png", 2, 0);
    snprintf(q, sizeof q, "%s/test/dog", copy);
    put_image(q, "a.png", 3, 0);
    CHECK_OK(mg_data_digest("imagefolder", copy, hex, e), e);
    CHECK(strcmp(hex, base) != 0);
    CHECK(remove(p) == 0);
    CHECK_OK(mg_data_digest("imagefolder", copy, hex, e), e);
    CHECK_STR_EQ(hex, base);

    /* What the loader refuses, the digest refuses with the same message. */
    snprintf(p, sizeof p, "%s/test/bird", copy);
    CHECK(mkdir(p, 0755) == 0);
    put_image(p, "a.png", 5, 0);
    CHECK_INT_EQ(mg_data_digest("imagefolder", copy, hex, &err), MG_ERR_DATA);
    CHECK(strstr(err.msg, "hold different class folders") != NULL && strstr(err.msg, "\"bird\"") != NULL);

    snprintf(p, sizeof p, "%s/none", root);
    CHECK_INT_EQ(mg_data_digest("imagefolder", p, hex, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, p) != NULL && strstr(err.msg, "no such folder") != NULL);
    tf_rmtree(root);
    tf_rmtree(copy);
}

int main(void)
{
    test_resize();
    test_png();
    test_jpeg();
    test_corrupt();
    test_folder_split();
    test_folder_flat();
    test_registry();
    test_folder_digest();
    MG_TEST_MAIN_END();
}
