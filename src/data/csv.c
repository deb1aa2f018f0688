/*
 * csv.c: delimited text datasets, plain or gzip: the label-first format of
 * Shokri et al.'s Location and Purchase100 (a 1-based label, possibly in
 * double quotes, then the features; no header), Texas100's separate
 * features and labels files, and generic CSV with a configurable label
 * column, header and delimiter. Files are streamed a line at a time, since
 * Texas100's features alone are most of a gigabyte of text.
 */
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

/* The read buffer; a line may be longer (it is then assembled piecewise). */
enum { READ_CHUNK = 1 << 20 };
/* Longer lines are refused rather than grown without bound. */
#define MAX_LINE ((size_t)1 << 28)
/* Classes inferred from the labels, at most (as the grid's `classes`). */
#define MG_CSV_MAX_CLASSES 1000000

typedef struct {
    gzFile f;
    const char *path;
    char *buf; /* READ_CHUNK + 1 bytes, so a line ending the data can be terminated in place */
    size_t len, pos;
    int eof;
    char *line; /* lines that straddle a refill are assembled here */
    size_t line_cap;
    size_t line_no;
} line_reader;

static void reader_close(line_reader *r)
{
    if (r->f)
        gzclose(r->f);
    free(r->buf);
    free(r->line);
    memset(r, 0, sizeof *r);
}

static mg_status reader_open(line_reader *r, const char *path, mg_error *err)
{
    memset(r, 0, sizeof *r);
    r->path = path;
    mg_status st = mg_data_gz_open(path, &r->f, err);
    if (st != MG_OK)
        return st;
    r->buf = mg_malloc(READ_CHUNK + 1, 1, "CSV read buffer", err);
    return r->buf ? MG_OK : MG_ERR_NOMEM;
}

/* The next line, NUL-terminated and without its '\n', in memory the caller
 * may modify up to the terminator; *line is NULL at the end of the data. */
static mg_status next_line(line_reader *r, char **line, mg_error *err)
{
    size_t have = 0;
    int assembling = 0;
    *line = NULL;
    for (;;) {
        if (r->pos == r->len) {
            if (r->eof)
                break;
            size_t got = 0;
            mg_status st = mg_data_gz_read(r->f, r->path, r->buf, READ_CHUNK, &got, err);
            if (st != MG_OK)
                return st;
            r->len = got;
            r->pos = 0;
            if (got < READ_CHUNK)
                r->eof = 1;
            if (got == 0)
                break;
        }
        char *start = r->buf + r->pos;
        char *nl = memchr(start, '\n', r->len - r->pos);
        size_t take = nl ? (size_t)(nl - start) : r->len - r->pos;
        if (nl && !assembling) {
            *nl = '\0';
            r->pos += take + 1;
            r->line_no++;
            *line = start;
            return MG_OK;
        }
        if (have + take + 1 > r->line_cap) {
            if (have + take + 1 > MAX_LINE)
                return mg_error_set(err, MG_ERR_DATA, "%s:%zu: line longer than %zu bytes", r->path, r->line_no + 1,
                                    MAX_LINE);
            size_t cap = r->line_cap ? r->line_cap : 4096;
            while (cap < have + take + 1)
                cap *= 2;
            char *p = realloc(r->line, cap);
            if (!p)
                return mg_error_set(err, MG_ERR_NOMEM, "%s:%zu: cannot allocate %zu bytes for a line", r->path,
                                    r->line_no + 1, cap);
            r->line = p;
            r->line_cap = cap;
        }
        memcpy(r->line + have, start, take);
        have += take;
        assembling = 1;
        r->pos += take + (nl ? 1 : 0);
        if (nl)
            break;
    }
    if (!assembling)
        return MG_OK;
    r->line[have] = '\0';
    r->line_no++;
    *line = r->line;
    return MG_OK;
}

/* A field without its surrounding blanks and double quotes, NUL-terminated
 * in place (the buffer is ours). */
static char *field_trim(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    if (end - s >= 2 && *s == '"' && end[-1] == '"') {
        s++;
        end--;
    }
    *end = '\0';
    return s;
}

static int line_is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r')
            return 0;
    return 1;
}

/* A number: plain integers (all of the binary datasets) take a fast path,
 * everything else strtod. Returns -1 if f is not entirely a number. */
static int parse_number(const char *f, double *v)
{
    const char *p = f;
    int neg = *p == '-';
    p += neg;
    if (*p >= '0' && *p <= '9') {
        long long acc = 0;
        int digits = 0;
        while (*p >= '0' && *p <= '9' && digits < 15) {
            acc = acc * 10 + (*p - '0');
            p++;
            digits++;
        }
        if (*p == '\0') {
            *v = neg ? -(double)acc : (double)acc;
            return 0;
        }
    }
    char *end = NULL;
    double d = strtod(f, &end);
    if (end == f || *end != '\0')
        return -1;
    *v = d;
    return 0;
}

/* What one file looks like and which labels it may hold. */
typedef struct {
    char delim;
    int header;
    long label_column; /* -1: no label */
    int need_features; /* a row must hold at least one feature */
    long label_lo;     /* accepted labels lo..hi; they are stored as label - lo */
    long label_hi;     /* LONG_MAX: no upper bound */
} csv_fmt;

typedef struct {
    float *x;
    int32_t *y;
    size_t n, dim, cap;
    long max_label; /* after subtracting label_lo; -1 when there are none */
} csv_rows;

static void rows_free(csv_rows *r)
{
    free(r->x);
    free(r->y);
    memset(r, 0, sizeof *r);
}

static mg_status rows_grow(csv_rows *r, int with_labels, const char *path, mg_error *err)
{
    size_t per = r->dim ? r->dim : 1;
    /* The first block holds at most about a million values, so a file of one
     * very wide row does not reserve a thousand of them. */
    size_t first = ((size_t)1 << 20) / per;
    size_t cap = r->cap ? r->cap * 2 : first < 1 ? 1 : first > 1024 ? 1024 : first;
    if (cap > UINT32_MAX || cap > SIZE_MAX / sizeof(float) / per)
        return mg_error_set(err, MG_ERR_NOMEM, "%s: more than %zu rows of %zu values is too large", path, r->cap,
                            r->dim);
    mg_status st = mg_data_check_memory(path, (double)cap * ((double)r->dim * sizeof(float) + sizeof(int32_t)),
                                        "the rows read so far", err);
    if (st != MG_OK)
        return st;
    if (r->dim) {
        float *x = realloc(r->x, cap * r->dim * sizeof(float));
        if (!x)
            return mg_error_set(err, MG_ERR_NOMEM, "%s: cannot allocate %zu rows of %zu values", path, cap, r->dim);
        r->x = x;
    }
    if (with_labels) {
        int32_t *y = realloc(r->y, cap * sizeof(int32_t));
        if (!y)
            return mg_error_set(err, MG_ERR_NOMEM, "%s: cannot allocate %zu labels", path, cap);
        r->y = y;
    }
    r->cap = cap;
    return MG_OK;
}

static mg_status parse_label(const char *path, size_t line_no, const char *f, const csv_fmt *fmt, int32_t *out,
                             long *max_label, mg_error *err)
{
    char *endp = NULL;
    errno = 0;
    long v = strtol(f, &endp, 10);
    if (endp == f || *endp != '\0' || errno == ERANGE)
        return mg_error_set(err, MG_ERR_DATA, "%s:%zu: label \"%s\" is not an integer", path, line_no, f);
    if (v < fmt->label_lo || v > fmt->label_hi) {
        if (fmt->label_hi == LONG_MAX)
            return mg_error_set(err, MG_ERR_DATA, "%s:%zu: label %ld is below %ld, the first class's label (label_base)",
                                path, line_no, v, fmt->label_lo);
        return mg_error_set(err, MG_ERR_DATA, "%s:%zu: label %ld is out of range %ld..%ld", path, line_no, v,
                            fmt->label_lo, fmt->label_hi);
    }
    if (v - fmt->label_lo > INT32_MAX - 1)
        return mg_error_set(err, MG_ERR_DATA, "%s:%zu: label %ld is too large", path, line_no, v);
    *out = (int32_t)(v - fmt->label_lo);
    if (*out > *max_label)
        *max_label = *out;
    return MG_OK;
}

static mg_status csv_read(const char *path, const csv_fmt *fmt, csv_rows *out, mg_error *err)
{
    mg_status st = MG_OK;
    line_reader r;
    char *line = NULL;
    size_t n_fields = 0, first_line = 0;
    int header_left = fmt->header;
    int with_labels = fmt->label_column >= 0;
    memset(out, 0, sizeof *out);
    out->max_label = -1;

    MG_CHECK(reader_open(&r, path, err));
    for (;;) {
        MG_CHECK(next_line(&r, &line, err));
        if (!line)
            break;
        if (line_is_blank(line))
            continue;
        if (header_left) {
            header_left = 0;
            continue;
        }
        size_t line_no = r.line_no;
        char *eol = line + strlen(line);
        size_t nf = 1;
        for (const char *p = line; p < eol; p++)
            nf += *p == fmt->delim;
        if (n_fields == 0) {
            if (with_labels && (size_t)fmt->label_column >= nf) {
                if (fmt->label_column == 0)
                    MG_FAIL(MG_ERR_DATA, "%s:%zu: a row needs a label and at least one feature, found %zu field", path,
                            line_no, nf);
                MG_FAIL(MG_ERR_DATA, "%s:%zu: the label is in column %ld (counting from 0) but the row has %zu fields",
                        path, line_no, fmt->label_column, nf);
            }
            if (fmt->need_features && nf < (size_t)(with_labels ? 2 : 1))
                MG_FAIL(MG_ERR_DATA, "%s:%zu: a row needs a label and at least one feature, found %zu field", path,
                        line_no, nf);
            n_fields = nf;
            first_line = line_no;
            out->dim = nf - (with_labels ? 1 : 0);
            if (out->dim > INT_MAX)
                MG_FAIL(MG_ERR_DATA, "%s:%zu: %zu features is too many", path, line_no, out->dim);
        } else if (nf != n_fields) {
            MG_FAIL(MG_ERR_DATA, "%s:%zu: %zu fields, expected %zu (as on line %zu)", path, line_no, nf, n_fields,
                    first_line);
        }
        if (out->n == out->cap)
            MG_CHECK(rows_grow(out, with_labels, path, err));

        float *xr = out->x ? out->x + out->n * out->dim : NULL;
        size_t col = 0;
        char *p = line;
        for (size_t k = 0; k < nf; k++) {
            char *sep = memchr(p, fmt->delim, (size_t)(eol - p));
            char *fend = sep ? sep : eol;
            char *f = field_trim(p, fend);
            if (with_labels && (long)k == fmt->label_column) {
                MG_CHECK(parse_label(path, line_no, f, fmt, &out->y[out->n], &out->max_label, err));
            } else {
                double v = 0.0;
                if (parse_number(f, &v) != 0)
                    MG_FAIL(MG_ERR_DATA, "%s:%zu: field %zu is not a number: \"%.40s\"", path, line_no, k + 1, f);
                if (!isfinite(v) || fabs(v) > 3.4028234663852886e38)
                    MG_FAIL(MG_ERR_NUMERIC, "%s:%zu: field %zu is not a finite float: \"%.40s\"", path, line_no,
                            k + 1, f);
                xr[col++] = (float)v;
            }
            p = fend + 1;
        }
        out->n++;
    }
    if (out->n == 0)
        MG_FAIL(MG_ERR_DATA, "%s: no rows", path);

cleanup:
    reader_close(&r);
    if (st != MG_OK)
        rows_free(out);
    return st;
}

/* Move parsed rows into a dataset of (n, dim, 1, 1) features. */
static void rows_to_dataset(csv_rows *rows, int n_classes, const char *path, mg_dataset *out)
{
    memset(out, 0, sizeof *out);
    out->x = rows->x;
    out->y = rows->y;
    out->n = rows->n;
    out->n_train = rows->n;
    out->c = (int)rows->dim;
    out->h = 1;
    out->w = 1;
    out->n_classes = n_classes;
    snprintf(out->name, sizeof out->name, "%s", mg_data_basename(path));
    memset(rows, 0, sizeof *rows);
}

mg_status mg_data_load_csv_label_first(const char *path, int n_classes, mg_dataset *out, mg_error *err)
{
    csv_rows rows;
    memset(out, 0, sizeof *out);
    if (n_classes < 1)
        return mg_error_set(err, MG_ERR_ARG, "%s: n_classes must be positive, got %d", path, n_classes);
    csv_fmt fmt = {.delim = ',', .header = 0, .label_column = 0, .need_features = 1, .label_lo = 1,
                   .label_hi = n_classes};
    mg_status st = csv_read(path, &fmt, &rows, err);
    if (st != MG_OK)
        return st;
    rows_to_dataset(&rows, n_classes, path, out);
    return MG_OK;
}

mg_status mg_data_load_csv(const char *path, const mg_csv_opts *opts, mg_dataset *out, mg_error *err)
{
    csv_rows rows;
    memset(out, 0, sizeof *out);
    if (!opts || opts->label_column < 0 || opts->n_classes < 0 || (opts->header != 0 && opts->header != 1) ||
        opts->delimiter == '"' || opts->delimiter == '\n' || opts->delimiter == '\r')
        return mg_error_set(err, MG_ERR_ARG, "%s: invalid CSV options (label column >= 0, classes >= 0, header 0 "
                            "or 1, a delimiter other than a quote or line break)", path);
    csv_fmt fmt = {.delim = opts->delimiter ? opts->delimiter : ',', .header = opts->header,
                   .label_column = opts->label_column, .need_features = 1, .label_lo = opts->label_base,
                   .label_hi = opts->n_classes > 0 ? (long)opts->label_base + opts->n_classes - 1 : LONG_MAX};
    mg_status st = csv_read(path, &fmt, &rows, err);
    if (st != MG_OK)
        return st;
    if (opts->n_classes == 0 && rows.max_label >= MG_CSV_MAX_CLASSES) {
        long top = rows.max_label;
        rows_free(&rows);
        return mg_error_set(err, MG_ERR_DATA, "%s: the labels go up to %ld, which would make %ld classes; expected "
                            "at most %d (set the dataset's classes, or label_base)", path, top + opts->label_base,
                            top + 1, MG_CSV_MAX_CLASSES);
    }
    int n_classes = opts->n_classes > 0 ? opts->n_classes : (int)(rows.max_label + 1);
    rows_to_dataset(&rows, n_classes, path, out);
    return MG_OK;
}

mg_status mg_data_load_texas(const char *feats_path, const char *labels_path, int n_classes, mg_dataset *out,
                             mg_error *err)
{
    mg_status st = MG_OK;
    csv_rows feats, labels;
    memset(out, 0, sizeof *out);
    memset(&feats, 0, sizeof feats);
    memset(&labels, 0, sizeof labels);
    if (n_classes < 1)
        return mg_error_set(err, MG_ERR_ARG, "%s: n_classes must be positive, got %d", labels_path, n_classes);
    csv_fmt ff = {.delim = ',', .label_column = -1, .need_features = 1, .label_lo = 1, .label_hi = n_classes};
    csv_fmt lf = {.delim = ',', .label_column = 0, .need_features = 0, .label_lo = 1, .label_hi = n_classes};
    MG_CHECK(csv_read(labels_path, &lf, &labels, err));
    if (labels.dim != 0)
        MG_FAIL(MG_ERR_DATA, "%s: %zu fields per line; expected one label per line", labels_path, labels.dim + 1);
    MG_CHECK(csv_read(feats_path, &ff, &feats, err));
    if (feats.n != labels.n)
        MG_FAIL(MG_ERR_DATA, "%s holds %zu rows of features but %s holds %zu labels; expected one label per row",
                feats_path, feats.n, labels_path, labels.n);
    feats.y = labels.y;
    labels.y = NULL;
    rows_to_dataset(&feats, n_classes, feats_path, out);
cleanup:
    rows_free(&feats);
    rows_free(&labels);
    return st;
}
