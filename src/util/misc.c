/* misc.c: checked number parsing, clocks, whole-file reads, mkdir -p. */
#define _POSIX_C_SOURCE 200809L
#include "miagrid/util.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>

int mg_parse_double(const char *s, double *out)
{
    if (!s || !*s)
        return -1;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (end == s || *end != '\0' || errno == ERANGE || isnan(v))
        return -1;
    *out = v;
    return 0;
}

int mg_parse_long(const char *s, long *out)
{
    if (!s || !*s)
        return -1;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (end == s || *end != '\0' || errno == ERANGE)
        return -1;
    *out = v;
    return 0;
}

double mg_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

void mg_iso_time(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

mg_status mg_read_file(const char *path, char **out, size_t *len, mg_error *err)
{
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    mg_strbuf b;
    mg_strbuf_init(&b);
    char chunk[65536];
    size_t n;
    while ((n = fread(chunk, 1, sizeof chunk, f)) > 0)
        mg_strbuf_appendn(&b, chunk, n);
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        mg_strbuf_free(&b);
        return mg_error_set(err, MG_ERR_IO, "%s: read failed", path);
    }
    size_t l = b.len;
    char *s = mg_strbuf_take(&b);
    if (!s)
        return mg_error_set(err, MG_ERR_NOMEM, "%s: out of memory reading file", path);
    *out = s;
    if (len)
        *len = l;
    return MG_OK;
}

mg_status mg_mkdirs(const char *path, mg_error *err)
{
    char buf[4096];
    size_t n = strlen(path);
    if (n == 0 || n >= sizeof buf)
        return mg_error_set(err, MG_ERR_ARG, "directory path is empty or too long: '%s'", path);
    memcpy(buf, path, n + 1);
    for (size_t i = 1; i <= n; i++) {
        if (buf[i] == '/' || buf[i] == '\0') {
            char c = buf[i];
            buf[i] = '\0';
            if (mkdir(buf, 0775) != 0 && errno != EEXIST)
                return mg_error_set(err, MG_ERR_IO, "%s: cannot create directory: %s", buf, strerror(errno));
            buf[i] = c;
        }
    }
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISDIR(st.st_mode))
        return mg_error_set(err, MG_ERR_IO, "%s: exists and is not a directory", path);
    return MG_OK;
}
