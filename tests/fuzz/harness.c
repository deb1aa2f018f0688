/*
 * harness.c: the shared parts of the fuzz targets (harness.h).
 */
#define _GNU_SOURCE
#include "harness.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static char tmpdir[512];

static void remove_tree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        struct dirent *e;
        while (d && (e = readdir(d)) != NULL) {
            if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                continue;
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
            remove_tree(sub);
        }
        if (d)
            closedir(d);
        rmdir(path);
    } else {
        unlink(path);
    }
}

static void remove_tmpdir(void)
{
    if (tmpdir[0])
        remove_tree(tmpdir);
}

const char *fz_tmpdir(void)
{
    if (!tmpdir[0]) {
        /* Memory-backed when there is one: every input is written to disk. */
        const char *base = getenv("MG_FUZZ_TMPDIR");
        if (!base || !*base)
            base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : getenv("TMPDIR");
        snprintf(tmpdir, sizeof tmpdir, "%s/mg-fuzz-XXXXXX", base && *base ? base : "/tmp");
        if (!mkdtemp(tmpdir)) {
            perror("fuzz harness: mkdtemp");
            abort();
        }
        atexit(remove_tmpdir);
    }
    return tmpdir;
}

void fz_path(char *buf, size_t n, const char *name)
{
    snprintf(buf, n, "%s/%s", fz_tmpdir(), name);
}

void fz_write(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || (n && fwrite(data, 1, n, f) != n) || fclose(f) != 0) {
        perror(path);
        abort();
    }
}

void fz_require(int cond, const char *what)
{
    if (!cond) {
        fprintf(stderr, "fuzz invariant broken: %s\n", what);
        abort();
    }
}

uint8_t fz_byte(fz_input *in)
{
    if (in->n == 0)
        return 0;
    in->n--;
    return *in->p++;
}

uint16_t fz_u16(fz_input *in)
{
    uint16_t hi = fz_byte(in);
    return (uint16_t)(hi << 8 | fz_byte(in));
}

const uint8_t *fz_take(fz_input *in, size_t n, size_t *got)
{
    const uint8_t *p = in->p;
    *got = n < in->n ? n : in->n;
    in->p += *got;
    in->n -= *got;
    return p;
}
