/*
 * gzio.c: reading data files through zlib, so every loader accepts a file
 * plain or gzip-compressed alike, without holding the compressed bytes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "data/data_internal.h"

/* gzread takes an int count, so large reads go through in bounded chunks. */
enum { GZ_CHUNK = 1 << 20 };

mg_status mg_data_gz_open(const char *path, gzFile *out, mg_error *err)
{
    /* gzopen leaves errno unreliable, so a plain open reports why a file is unreadable. */
    FILE *probe = fopen(path, "rb");
    *out = NULL;
    if (!probe)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open for reading: %s", path, strerror(errno));
    fclose(probe);
    *out = gzopen(path, "rb");
    if (!*out)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open for reading", path);
    /* A larger buffer than zlib's 8 KB default: the loaders read tens of megabytes. */
    gzbuffer(*out, 1 << 17);
    return MG_OK;
}

mg_status mg_data_gz_read(gzFile f, const char *path, void *buf, size_t n, size_t *got, mg_error *err)
{
    unsigned char *p = buf;
    *got = 0;
    while (*got < n) {
        size_t want = n - *got;
        if (want > GZ_CHUNK)
            want = GZ_CHUNK;
        int r = gzread(f, p + *got, (unsigned)want);
        if (r < 0) {
            int zerr = 0;
            const char *msg = gzerror(f, &zerr);
            return mg_error_set(err, MG_ERR_IO, "%s: read failed: %s", path, msg ? msg : "zlib error");
        }
        if (r == 0)
            break;
        *got += (size_t)r;
    }
    return MG_OK;
}

mg_status mg_data_read_all(const char *path, char **out, size_t *len, mg_error *err)
{
    mg_status st = MG_OK;
    gzFile f = NULL;
    char *buf = NULL;
    size_t cap = 1 << 16, used = 0;
    *out = NULL;
    *len = 0;

    MG_CHECK(mg_data_gz_open(path, &f, err));
    buf = mg_malloc(cap, 1, "file buffer", err);
    if (!buf)
        MG_CHECK(MG_ERR_NOMEM);
    for (;;) {
        if (cap - used < 2) {
            if (cap > SIZE_MAX / 2)
                MG_FAIL(MG_ERR_NOMEM, "%s: file too large", path);
            MG_CHECK(mg_data_check_memory(path, 2.0 * (double)cap, "reading the file whole", err));
            char *nb = realloc(buf, cap * 2);
            if (!nb)
                MG_FAIL(MG_ERR_NOMEM, "%s: cannot allocate %zu bytes", path, cap * 2);
            buf = nb;
            cap *= 2;
        }
        size_t want = cap - used - 1, got = 0;
        MG_CHECK(mg_data_gz_read(f, path, buf + used, want, &got, err));
        used += got;
        if (got < want)
            break;
    }
    buf[used] = '\0';
    *out = buf;
    *len = used;
    buf = NULL;

cleanup:
    free(buf);
    if (f)
        gzclose(f);
    return st;
}

mg_status mg_data_gz_capacity(gzFile f, const char *path, uint64_t *max_bytes, int *plain, mg_error *err)
{
    struct stat sb;
    *max_bytes = 0;
    if (stat(path, &sb) != 0)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot stat: %s", path, strerror(errno));
    uint64_t size = sb.st_size > 0 ? (uint64_t)sb.st_size : 0;
    *plain = gzdirect(f);
    if (*plain)
        *max_bytes = size;
    else
        *max_bytes = size > UINT64_MAX / MG_GZ_MAX_EXPANSION ? UINT64_MAX : size * MG_GZ_MAX_EXPANSION;
    return MG_OK;
}

/* MIAGRID_MAX_MEMORY when set, else the physical memory; -1 when the
 * variable is not a size. */
static int memory_limit(uint64_t *out)
{
    const char *v = getenv("MIAGRID_MAX_MEMORY");
    if (v && *v) {
        char *end = NULL;
        errno = 0;
        double x = strtod(v, &end);
        double unit = 1;
        if (end != v && *end) {
            static const char units[] = "KMGT";
            const char *u = strchr(units, *end & ~0x20);
            unit = u && *end && end[1] == '\0' ? (double)((uint64_t)1 << (10 * (u - units + 1))) : -1;
        }
        if (end == v || errno != 0 || unit < 0 || !(x > 0) || x * unit >= 1.8e19)
            return -1;
        *out = (uint64_t)(x * unit);
        return 0;
    }
    long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGESIZE);
    *out = pages > 0 && page > 0 ? (uint64_t)pages * (uint64_t)page : UINT64_MAX;
    return 0;
}

mg_status mg_data_check_memory(const char *path, double bytes, const char *what, mg_error *err)
{
    uint64_t limit = 0;
    if (memory_limit(&limit) != 0)
        return mg_error_set(err, MG_ERR_CONFIG, "environment variable MIAGRID_MAX_MEMORY: expected a size in "
                            "bytes with an optional K, M, G or T suffix, got \"%.40s\"", getenv("MIAGRID_MAX_MEMORY"));
    if (bytes <= (double)limit)
        return MG_OK;
    return mg_error_set(err, MG_ERR_NOMEM, "%s: %s would need %.2f GiB of memory, more than the %.2f GiB there is "
                        "(the machine's memory, or MIAGRID_MAX_MEMORY)", path, what, bytes / 1073741824.0,
                        (double)limit / 1073741824.0);
}

const char *mg_data_basename(const char *path)
{
    const char *base = strrchr(path, '/');
    return base ? base + 1 : path;
}
