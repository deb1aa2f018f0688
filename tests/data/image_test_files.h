/*
 * image_test_files.h: writers for the small PNG (libpng's simplified API)
 * and JPEG (libjpeg) files the image tests decode.
 */
#ifndef MG_IMAGE_TEST_FILES_H
#define MG_IMAGE_TEST_FILES_H

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

/* A w x h PNG of `comps` interleaved 8-bit components per pixel: 1 grey,
 * 3 RGB, 4 RGBA. */
static inline int tf_write_png(const char *path, const unsigned char *pix, int w, int h, int comps)
{
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    img.width = (png_uint_32)w;
    img.height = (png_uint_32)h;
    img.format = comps == 1 ? PNG_FORMAT_GRAY : comps == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
    int ok = png_image_write_to_file(&img, path, 0, pix, 0, NULL);
    png_image_free(&img);
    return ok ? 0 : -1;
}

/* A w x h baseline JPEG of 1 (grey) or 3 (RGB) components at `quality`. */
static inline int tf_write_jpeg(const char *path, const unsigned char *pix, int w, int h, int comps, int quality)
{
    struct jpeg_compress_struct c;
    struct jpeg_error_mgr e;
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    c.err = jpeg_std_error(&e);
    jpeg_create_compress(&c);
    jpeg_stdio_dest(&c, f);
    c.image_width = (JDIMENSION)w;
    c.image_height = (JDIMENSION)h;
    c.input_components = comps;
    c.in_color_space = comps == 1 ? JCS_GRAYSCALE : JCS_RGB;
    jpeg_set_defaults(&c);
    jpeg_set_quality(&c, quality, TRUE);
    jpeg_start_compress(&c, TRUE);
    while (c.next_scanline < c.image_height) {
        JSAMPROW row = (JSAMPROW)(pix + (size_t)c.next_scanline * (size_t)w * (size_t)comps);
        jpeg_write_scanlines(&c, &row, 1);
    }
    jpeg_finish_compress(&c);
    jpeg_destroy_compress(&c);
    return fclose(f) == 0 ? 0 : -1;
}

/* Decode a JPEG to interleaved RGB with libjpeg's defaults (rgb holds w*h*3),
 * as an independent reference for the loader. */
static inline int tf_read_jpeg_rgb(const char *path, unsigned char *rgb, int w, int h)
{
    struct jpeg_decompress_struct c;
    struct jpeg_error_mgr e;
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    c.err = jpeg_std_error(&e);
    jpeg_create_decompress(&c);
    jpeg_stdio_src(&c, f);
    jpeg_read_header(&c, TRUE);
    c.out_color_space = JCS_RGB;
    jpeg_start_decompress(&c);
    int ok = (int)c.output_width == w && (int)c.output_height == h;
    while (ok && c.output_scanline < c.output_height) {
        JSAMPROW row = rgb + (size_t)c.output_scanline * (size_t)w * 3;
        jpeg_read_scanlines(&c, &row, 1);
    }
    if (ok)
        jpeg_finish_decompress(&c);
    jpeg_destroy_decompress(&c);
    fclose(f);
    return ok ? 0 : -1;
}

/* Keep the first `keep` bytes of a file. */
static inline int tf_truncate_copy(const char *src, const char *dst, long keep)
{
    FILE *f = fopen(src, "rb");
    if (!f)
        return -1;
    unsigned char *buf = malloc((size_t)keep + 1);
    size_t got = buf ? fread(buf, 1, (size_t)keep, f) : 0;
    fclose(f);
    FILE *g = buf ? fopen(dst, "wb") : NULL;
    int rc = g && fwrite(buf, 1, got, g) == got ? 0 : -1;
    if (g && fclose(g) != 0)
        rc = -1;
    free(buf);
    return rc;
}

static inline long tf_file_size(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return -1;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fclose(f);
    return n;
}

#endif
