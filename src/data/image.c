/*
 * image.c: decoding PNG (libpng's simplified API) and JPEG (libjpeg) files
 * into 8-bit RGB, converting to float planes, and the bilinear resize. The
 * decoders reuse one set of buffers across images, since a dataset is tens
 * of thousands of small files.
 */
#include <errno.h>
#include <setjmp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jpeglib.h>
#include <png.h>

#include "data/data_internal.h"

void mg_image_scratch_free(mg_image_scratch *s)
{
    if (!s)
        return;
    free(s->file);
    free(s->rgb);
    free(s->planes);
    memset(s, 0, sizeof *s);
}

/* Grow *buf to hold n bytes. */
static mg_status reserve(void **buf, size_t *cap, size_t n, const char *path, mg_error *err)
{
    if (*cap >= n)
        return MG_OK;
    void *p = realloc(*buf, n);
    if (!p)
        return mg_error_set(err, MG_ERR_NOMEM, "%s: cannot allocate %zu bytes to decode it", path, n);
    *buf = p;
    *cap = n;
    return MG_OK;
}

static mg_status check_size(const char *path, const char *format, size_t w, size_t h, mg_error *err)
{
    if (w == 0 || h == 0 || w > MG_IMAGE_MAX_SIDE || h > MG_IMAGE_MAX_SIDE || w * h > MG_IMAGE_MAX_PIXELS)
        return mg_error_set(err, MG_ERR_DATA, "%s: %s of %zux%zu pixels is outside the accepted sizes (1 to %d a "
                            "side, at most %zu pixels)", path, format, w, h, MG_IMAGE_MAX_SIDE,
                            (size_t)MG_IMAGE_MAX_PIXELS);
    return MG_OK;
}

static mg_status decode_png(const char *path, const unsigned char *buf, size_t len, mg_image_scratch *s, int *w,
                            int *h, mg_error *err)
{
    mg_status st = MG_OK;
    png_image img;
    memset(&img, 0, sizeof img);
    img.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&img, buf, len))
        MG_FAIL(MG_ERR_DATA, "%s: not a readable PNG: %s", path, img.message);
    MG_CHECK(check_size(path, "a PNG", img.width, img.height, err));
    img.format = PNG_FORMAT_RGB;
    MG_CHECK(reserve((void **)&s->rgb, &s->rgb_cap, PNG_IMAGE_SIZE(img), path, err));
    png_color black = {0, 0, 0};
    if (!png_image_finish_read(&img, &black, s->rgb, 0, NULL))
        MG_FAIL(MG_ERR_DATA, "%s: corrupt or truncated PNG: %s", path, img.message);
    *w = (int)img.width;
    *h = (int)img.height;
cleanup:
    png_image_free(&img);
    return st;
}

/* libjpeg reports errors through a callback that must not return; it jumps
 * back to the decoder with the message. Corrupt-data warnings (libjpeg would
 * carry on and fill the rest grey) are treated as errors too. */
typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jump;
    char msg[JMSG_LENGTH_MAX];
} jpeg_errors;

typedef struct {
    struct jpeg_decompress_struct cinfo;
    jpeg_errors errors;
    int created;
} jpeg_ctx;

static void jpeg_on_error(j_common_ptr cinfo)
{
    jpeg_errors *e = (jpeg_errors *)cinfo->err;
    (*cinfo->err->format_message)(cinfo, e->msg);
    longjmp(e->jump, 1);
}

static void jpeg_on_message(j_common_ptr cinfo, int level)
{
    if (level < 0)
        jpeg_on_error(cinfo);
}

/* The part of the JPEG decoder that libjpeg may jump out of. Its state lives
 * in *c (the caller's), never in locals of this function, so nothing is lost
 * across the jump. Returns 0, or 1 with c->errors.msg set after a jump, or 2
 * when the header describes an image outside the accepted sizes or colour
 * spaces (c->errors.msg says which). */
static int jpeg_run(jpeg_ctx *c, const unsigned char *buf, size_t len, mg_image_scratch *s)
{
    if (setjmp(c->errors.jump))
        return 1;
    jpeg_create_decompress(&c->cinfo);
    c->created = 1;
    jpeg_mem_src(&c->cinfo, buf, (unsigned long)len);
    jpeg_read_header(&c->cinfo, TRUE);
    if (c->cinfo.jpeg_color_space == JCS_CMYK || c->cinfo.jpeg_color_space == JCS_YCCK) {
        snprintf(c->errors.msg, sizeof c->errors.msg, "CMYK JPEG images are not supported");
        return 2;
    }
    size_t w = c->cinfo.image_width, h = c->cinfo.image_height;
    if (w == 0 || h == 0 || w > MG_IMAGE_MAX_SIDE || h > MG_IMAGE_MAX_SIDE || w * h > MG_IMAGE_MAX_PIXELS) {
        snprintf(c->errors.msg, sizeof c->errors.msg, "a JPEG of %zux%zu pixels is outside the accepted sizes "
                 "(1 to %d a side, at most %zu pixels)", w, h, MG_IMAGE_MAX_SIDE, (size_t)MG_IMAGE_MAX_PIXELS);
        return 2;
    }
    if (s->rgb_cap < w * h * 3) {
        unsigned char *p = realloc(s->rgb, w * h * 3);
        if (!p) {
            snprintf(c->errors.msg, sizeof c->errors.msg, "cannot allocate %zu bytes to decode it", w * h * 3);
            return 2;
        }
        s->rgb = p;
        s->rgb_cap = w * h * 3;
    }
    c->cinfo.out_color_space = JCS_RGB;
    c->cinfo.dct_method = JDCT_ISLOW;
    jpeg_start_decompress(&c->cinfo);
    while (c->cinfo.output_scanline < c->cinfo.output_height) {
        JSAMPROW row = s->rgb + (size_t)c->cinfo.output_scanline * w * 3;
        jpeg_read_scanlines(&c->cinfo, &row, 1);
    }
    jpeg_finish_decompress(&c->cinfo);
    return 0;
}

static mg_status decode_jpeg(const char *path, const unsigned char *buf, size_t len, mg_image_scratch *s, int *w,
                             int *h, mg_error *err)
{
    mg_status st = MG_OK;
    jpeg_ctx *c = mg_calloc(1, sizeof *c, "JPEG decoder", err);
    if (!c)
        return MG_ERR_NOMEM;
    c->cinfo.err = jpeg_std_error(&c->errors.pub);
    c->errors.pub.error_exit = jpeg_on_error;
    c->errors.pub.emit_message = jpeg_on_message;
    int r = jpeg_run(c, buf, len, s);
    if (r == 1)
        MG_FAIL(MG_ERR_DATA, "%s: corrupt or truncated JPEG: %s", path, c->errors.msg);
    if (r == 2)
        MG_FAIL(MG_ERR_DATA, "%s: %s", path, c->errors.msg);
    *w = (int)c->cinfo.image_width;
    *h = (int)c->cinfo.image_height;
cleanup:
    if (c->created)
        jpeg_destroy_decompress(&c->cinfo);
    free(c);
    return st;
}

mg_status mg_image_decode(const char *path, const unsigned char *buf, size_t len, mg_image_scratch *s, int *w,
                          int *h, mg_error *err)
{
    static const unsigned char png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0)
        return decode_png(path, buf, len, s, w, h, err);
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return decode_jpeg(path, buf, len, s, w, h, err);
    if (len == 0)
        return mg_error_set(err, MG_ERR_DATA, "%s: empty file; expected a PNG or JPEG image", path);
    return mg_error_set(err, MG_ERR_DATA, "%s: neither a PNG nor a JPEG image (it starts with bytes %02x %02x)",
                        path, buf[0], len > 1 ? buf[1] : 0);
}

/* Read a whole (small) file into s->file. */
static mg_status read_file(const char *path, mg_image_scratch *s, size_t *len, mg_error *err)
{
    mg_status st = MG_OK;
    FILE *f = fopen(path, "rb");
    *len = 0;
    if (!f)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open for reading: %s", path, strerror(errno));
    for (;;) {
        if (s->file_cap - *len < 4096) {
            size_t want = s->file_cap < 65536 ? 65536 : s->file_cap * 2;
            if (want > (size_t)1 << 31)
                MG_FAIL(MG_ERR_DATA, "%s: larger than 2 GB; not an image this loader reads", path);
            MG_CHECK(reserve((void **)&s->file, &s->file_cap, want, path, err));
        }
        size_t got = fread(s->file + *len, 1, s->file_cap - *len, f);
        *len += got;
        if (got == 0) {
            if (ferror(f))
                MG_FAIL(MG_ERR_IO, "%s: read failed", path);
            break;
        }
    }
cleanup:
    fclose(f);
    return st;
}

void mg_image_resize_bilinear(const float *src, int c, int h, int w, float *dst, int oh, int ow)
{
    double sy_scale = (double)h / oh, sx_scale = (double)w / ow;
    for (int k = 0; k < c; k++) {
        const float *p = src + (size_t)k * h * w;
        float *q = dst + (size_t)k * oh * ow;
        for (int y = 0; y < oh; y++) {
            double sy = (y + 0.5) * sy_scale - 0.5;
            if (sy < 0)
                sy = 0;
            int y0 = (int)sy;
            if (y0 > h - 1)
                y0 = h - 1;
            int y1 = y0 < h - 1 ? y0 + 1 : y0;
            double ly = sy - y0;
            for (int x = 0; x < ow; x++) {
                double sx = (x + 0.5) * sx_scale - 0.5;
                if (sx < 0)
                    sx = 0;
                int x0 = (int)sx;
                if (x0 > w - 1)
                    x0 = w - 1;
                int x1 = x0 < w - 1 ? x0 + 1 : x0;
                double lx = sx - x0;
                double top = (1.0 - lx) * p[(size_t)y0 * w + x0] + lx * p[(size_t)y0 * w + x1];
                double bot = (1.0 - lx) * p[(size_t)y1 * w + x0] + lx * p[(size_t)y1 * w + x1];
                q[(size_t)y * ow + x] = (float)((1.0 - ly) * top + ly * bot);
            }
        }
    }
}

mg_status mg_image_load(const char *path, int channels, int size, mg_image_scratch *s, float *out, mg_error *err)
{
    mg_status st = MG_OK;
    size_t len = 0;
    int w = 0, h = 0;
    if ((channels != 1 && channels != 3) || size < 1)
        return mg_error_set(err, MG_ERR_ARG, "%s: cannot load as %d channels of %dx%d", path, channels, size, size);
    MG_CHECK(read_file(path, s, &len, err));
    MG_CHECK(mg_image_decode(path, s->file, len, s, &w, &h, err));

    size_t npix = (size_t)w * h;
    const unsigned char *rgb = s->rgb;
    if (w == size && h == size) {
        if (channels == 3) {
            for (size_t i = 0; i < npix; i++)
                for (int k = 0; k < 3; k++)
                    out[(size_t)k * npix + i] = (float)rgb[3 * i + k] / 255.0f;
        } else {
            for (size_t i = 0; i < npix; i++) {
                /* PIL's integer luma: L = (19595 R + 38470 G + 7471 B + 2^15) >> 16. */
                unsigned l = (19595u * rgb[3 * i] + 38470u * rgb[3 * i + 1] + 7471u * rgb[3 * i + 2] + 0x8000u) >> 16;
                out[i] = (float)l / 255.0f;
            }
        }
        return MG_OK;
    }
    MG_CHECK(reserve((void **)&s->planes, &s->planes_cap, npix * (size_t)channels * sizeof(float), path, err));
    float *pl = s->planes;
    if (channels == 3) {
        for (size_t i = 0; i < npix; i++)
            for (int k = 0; k < 3; k++)
                pl[(size_t)k * npix + i] = (float)rgb[3 * i + k];
    } else {
        for (size_t i = 0; i < npix; i++)
            pl[i] = (float)((19595u * rgb[3 * i] + 38470u * rgb[3 * i + 1] + 7471u * rgb[3 * i + 2] + 0x8000u) >> 16);
    }
    mg_image_resize_bilinear(pl, channels, h, w, out, size, size);
    size_t nout = (size_t)channels * size * size;
    for (size_t i = 0; i < nout; i++)
        out[i] /= 255.0f;
cleanup:
    return st;
}
