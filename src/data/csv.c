/*
 * csv.c: the label-first CSV loader (the Location / Purchase format of
 * Shokri et al.): each row is a 1-based class label, possibly in double
 * quotes, then the numeric features; no header. Plain or gzip.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "data/data_internal.h"

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

static size_t count_fields(const char *line, const char *eol)
{
    size_t n = 1;
    for (const char *p = line; p < eol; p++)
        if (*p == ',')
            n++;
    return n;
}

static int line_is_blank(const char *line, const char *eol)
{
    for (const char *p = line; p < eol; p++)
        if (*p != ' ' && *p != '\t' && *p != '\r')
            return 0;
    return 1;
}

mg_status mg_data_load_csv_label_first(const char *path, int n_classes, mg_dataset *out, mg_error *err)
{
    mg_status st = MG_OK;
    char *text = NULL;
    size_t len = 0;
    memset(out, 0, sizeof *out);

    if (n_classes < 1)
        return mg_error_set(err, MG_ERR_ARG, "%s: n_classes must be positive, got %d", path, n_classes);
    MG_CHECK(mg_data_read_all(path, &text, &len, err));

    /* Every row takes at least one newline except perhaps the last, so this
     * bounds the row count before parsing. */
    size_t max_rows = 1;
    for (size_t i = 0; i < len; i++)
        if (text[i] == '\n')
            max_rows++;

    size_t n_fields = 0, first_line = 0, dim = 0, row = 0, line_no = 0;
    char *line = text;
    char *text_end = text + len;
    while (line < text_end) {
        char *eol = memchr(line, '\n', (size_t)(text_end - line));
        if (!eol)
            eol = text_end;
        line_no++;
        if (line_is_blank(line, eol)) {
            line = eol + 1;
            continue;
        }
        size_t nf = count_fields(line, eol);
        if (n_fields == 0) {
            if (nf < 2)
                MG_FAIL(MG_ERR_DATA, "%s:%zu: a row needs a label and at least one feature, found %zu field",
                        path, line_no, nf);
            n_fields = nf;
            first_line = line_no;
            dim = nf - 1;
            if (dim > (size_t)2147483647)
                MG_FAIL(MG_ERR_DATA, "%s:%zu: %zu features is too many", path, line_no, dim);
            out->x = mg_malloc(max_rows, dim * sizeof(float), "CSV features", err);
            out->y = mg_malloc(max_rows, sizeof(int32_t), "CSV labels", err);
            if (!out->x || !out->y)
                MG_CHECK(MG_ERR_NOMEM);
        } else if (nf != n_fields) {
            MG_FAIL(MG_ERR_DATA, "%s:%zu: %zu fields, expected %zu (as on line %zu)", path, line_no, nf,
                    n_fields, first_line);
        }

        char *p = line;
        for (size_t k = 0; k < nf; k++) {
            char *comma = memchr(p, ',', (size_t)(eol - p));
            char *fend = comma ? comma : eol;
            char *f = field_trim(p, fend);
            char *endp = NULL;
            errno = 0;
            if (k == 0) {
                long v = strtol(f, &endp, 10);
                if (endp == f || *endp != '\0' || errno == ERANGE)
                    MG_FAIL(MG_ERR_DATA, "%s:%zu: label \"%s\" is not an integer", path, line_no, f);
                if (v < 1 || v > n_classes)
                    MG_FAIL(MG_ERR_DATA, "%s:%zu: label %ld is out of range 1..%d", path, line_no, v,
                            n_classes);
                out->y[row] = (int32_t)(v - 1);
            } else {
                double v = strtod(f, &endp);
                if (endp == f || *endp != '\0')
                    MG_FAIL(MG_ERR_DATA, "%s:%zu: field %zu is not a number: \"%s\"", path, line_no,
                            k + 1, f);
                if (!isfinite(v) || fabs(v) > 3.4028234663852886e38)
                    MG_FAIL(MG_ERR_NUMERIC, "%s:%zu: field %zu is not a finite float: \"%s\"", path,
                            line_no, k + 1, f);
                out->x[row * dim + (k - 1)] = (float)v;
            }
            p = fend + 1;
        }
        row++;
        line = eol + 1;
    }
    if (row == 0)
        MG_FAIL(MG_ERR_DATA, "%s: no rows", path);

    out->n = row;
    out->c = (int)dim;
    out->h = 1;
    out->w = 1;
    out->n_classes = n_classes;
    {
        const char *base = strrchr(path, '/');
        snprintf(out->name, sizeof out->name, "%s", base ? base + 1 : path);
    }

cleanup:
    free(text);
    if (st != MG_OK)
        mg_dataset_free(out);
    return st;
}
