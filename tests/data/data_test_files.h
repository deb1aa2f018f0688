/*
 * data_test_files.h: writers for the small IDX and CSV files the data tests
 * load, plain or gzip, in the test scratch directory.
 */
#ifndef MG_DATA_TEST_FILES_H
#define MG_DATA_TEST_FILES_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <zlib.h>

/* MG_TEST_TMP/name (fallback /tmp) into buf. */
static inline void tf_path(char *buf, size_t n, const char *name)
{
    const char *dir = getenv("MG_TEST_TMP");
    snprintf(buf, n, "%s/%s", dir && *dir ? dir : "/tmp", name);
}

static inline int tf_write(const char *path, const void *data, size_t n, int gz)
{
    if (gz) {
        gzFile f = gzopen(path, "wb");
        if (!f)
            return -1;
        int ok = n == 0 || gzwrite(f, data, (unsigned)n) == (int)n;
        return gzclose(f) == Z_OK && ok ? 0 : -1;
    }
    FILE *f = fopen(path, "wb");
    if (!f)
        return -1;
    size_t w = fwrite(data, 1, n, f);
    return fclose(f) == 0 && w == n ? 0 : -1;
}

static inline void tf_be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* An IDX file: magic, dims[0..ndims), then payload bytes (payload_len of
 * them, which the test may make disagree with the dims on purpose). */
static inline int tf_write_idx(const char *path, int gz, uint32_t magic, int ndims, const uint32_t *dims,
                        const unsigned char *payload, size_t payload_len)
{
    size_t hdr = 4 + 4 * (size_t)ndims;
    unsigned char *buf = malloc(hdr + payload_len + 1);
    if (!buf)
        return -1;
    tf_be32(buf, magic);
    for (int i = 0; i < ndims; i++)
        tf_be32(buf + 4 + 4 * i, dims[i]);
    if (payload_len)
        memcpy(buf + hdr, payload, payload_len);
    int r = tf_write(path, buf, hdr + payload_len, gz);
    free(buf);
    return r;
}

#endif
