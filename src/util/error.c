/* error.c: status names and the error-message helpers every module uses. */
#define _POSIX_C_SOURCE 200809L
#include "miagrid/util.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *mg_status_str(mg_status st)
{
    switch (st) {
    case MG_OK: return "ok";
    case MG_ERR_CONFIG: return "config error";
    case MG_ERR_IO: return "I/O error";
    case MG_ERR_DATA: return "data error";
    case MG_ERR_HDF5: return "HDF5 error";
    case MG_ERR_MPI: return "MPI error";
    case MG_ERR_NOMEM: return "out of memory";
    case MG_ERR_NUMERIC: return "numeric error";
    case MG_ERR_ARG: return "invalid argument";
    case MG_ERR_STATE: return "state error";
    case MG_ERR_INTERNAL: return "internal error";
    case MG_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown error";
}

mg_status mg_error_set(mg_error *err, mg_status st, const char *fmt, ...)
{
    if (err) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err->msg, sizeof err->msg, fmt, ap);
        va_end(ap);
        err->status = st;
    }
    return st;
}

mg_status mg_error_prefix(mg_error *err, const char *fmt, ...)
{
    if (!err)
        return MG_OK;
    char pre[512];
    char old[sizeof err->msg];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    memcpy(old, err->msg, sizeof old);
    size_t np = strlen(pre);
    if (np >= sizeof err->msg)
        np = sizeof err->msg - 1;
    memcpy(err->msg, pre, np);
    size_t rest = sizeof err->msg - 1 - np;
    size_t no = strnlen(old, sizeof old);
    if (no > rest)
        no = rest;
    memcpy(err->msg + np, old, no);
    err->msg[np + no] = '\0';
    return err->status;
}

void mg_error_clear(mg_error *err)
{
    if (err) {
        err->status = MG_OK;
        err->msg[0] = '\0';
    }
}

void *mg_calloc(size_t n, size_t size, const char *what, mg_error *err)
{
    if (size && n > SIZE_MAX / size) {
        mg_error_set(err, MG_ERR_NOMEM, "%s: %zu x %zu bytes overflows", what, n, size);
        return NULL;
    }
    void *p = calloc(n ? n : 1, size ? size : 1);
    if (!p)
        mg_error_set(err, MG_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, n * size);
    return p;
}

void *mg_malloc(size_t n, size_t size, const char *what, mg_error *err)
{
    if (size && n > SIZE_MAX / size) {
        mg_error_set(err, MG_ERR_NOMEM, "%s: %zu x %zu bytes overflows", what, n, size);
        return NULL;
    }
    size_t bytes = n * size;
    void *p = malloc(bytes ? bytes : 1);
    if (!p)
        mg_error_set(err, MG_ERR_NOMEM, "%s: cannot allocate %zu bytes", what, n * size);
    return p;
}

char *mg_strdup(const char *s, mg_error *err)
{
    size_t n = strlen(s) + 1;
    char *p = mg_malloc(n, 1, "string", err);
    if (p)
        memcpy(p, s, n);
    return p;
}
