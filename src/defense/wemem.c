/*
 * wemem.c: the pieces of WeMem (Shang et al., "Defending Against Membership
 * Inference Attacks on Iteratively Pruned Deep Neural Networks", NDSS 2025)
 * that do not touch the network: memorisation scores (Feldman & Zhang's
 * subset estimator, or a CSV file of precomputed scores), the per-class
 * ranking and sliding window of RSW, and the per-batch L2 weight of RMR.
 *
 * Where the paper leaves a detail open, the authors' released code (their
 * data_process.py, prune_modi.py and base_model.py) settles it; each such
 * place says so.
 */
#include <errno.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/defense.h"

/* ---- Feldman's subset estimator ----------------------------------------------------------- */

mg_status mg_memscore_subsets(size_t n, int n_models, const uint8_t *in_subset, const uint8_t *correct,
                              double *mem, size_t *n_undefined, mg_error *err)
{
    mg_status st = MG_OK;
    int *n_in = NULL, *c_in = NULL, *c_out = NULL;
    if (n_undefined)
        *n_undefined = 0;
    if (n_models < 1)
        return mg_error_set(err, MG_ERR_ARG, "memorisation scores: %d models; expected at least 1", n_models);
    if (n == 0)
        return MG_OK;
    if (!in_subset || !correct || !mem)
        return mg_error_set(err, MG_ERR_ARG, "memorisation scores: a NULL matrix or output for %zu samples", n);
    if (n > SIZE_MAX / (size_t)n_models)
        return mg_error_set(err, MG_ERR_ARG, "memorisation scores: %d models x %zu samples overflows", n_models, n);

    n_in = mg_calloc(n, sizeof *n_in, "memorisation counts", err);
    c_in = mg_calloc(n, sizeof *c_in, "memorisation counts", err);
    c_out = mg_calloc(n, sizeof *c_out, "memorisation counts", err);
    if (!n_in || !c_in || !c_out)
        MG_CHECK(MG_ERR_NOMEM);
    /* Model-major, as the matrices are laid out, so each pass reads one
     * contiguous row; the counts fit an int since there are n_models rows. */
    for (int m = 0; m < n_models; m++) {
        const uint8_t *in = in_subset + (size_t)m * n;
        const uint8_t *ok = correct + (size_t)m * n;
        for (size_t i = 0; i < n; i++) {
            if (in[i]) {
                n_in[i]++;
                c_in[i] += ok[i] != 0;
            } else {
                c_out[i] += ok[i] != 0;
            }
        }
    }
    size_t undefined = 0;
    for (size_t i = 0; i < n; i++) {
        int n_out = n_models - n_in[i];
        if (n_in[i] == 0 || n_out == 0) {
            /* One of the two frequencies has no models behind it. Feldman &
             * Zhang's published estimator divides by max(count, tiny), which
             * silently yields a one-sided frequency here; a score of 0 and a
             * count the caller can check make the gap visible instead. */
            mem[i] = 0.0;
            undefined++;
            continue;
        }
        mem[i] = (double)c_in[i] / (double)n_in[i] - (double)c_out[i] / (double)n_out;
    }
    if (n_undefined)
        *n_undefined = undefined;

cleanup:
    free(n_in);
    free(c_in);
    free(c_out);
    return st;
}

/* ---- scores from a CSV file ------------------------------------------------------------------ */

/* A line of `index,score` is a few dozen bytes; a longer one is not such a
 * file, and refusing it bounds what one line can make us hold. */
#define MEMSCORE_MAX_LINE 4096

typedef struct {
    uint32_t index;
    double score;
    size_t line;
} score_row;

static int score_row_cmp(const void *a, const void *b)
{
    const score_row *x = a, *y = b;
    if (x->index != y->index)
        return x->index < y->index ? -1 : 1;
    /* The earlier line first, so a repeat is reported at its second line. */
    return (x->line > y->line) - (x->line < y->line);
}

/* Reads one line into buf (without its '\n'). *len = (size_t)-1 at end of
 * file; *too_long / *has_nul flag lines that are not text of this format. */
static mg_status read_line(FILE *f, const char *path, char *buf, size_t *len, int *too_long, int *has_nul,
                           mg_error *err)
{
    size_t k = 0;
    int c, any = 0;
    *too_long = 0;
    *has_nul = 0;
    while ((c = getc(f)) != EOF) {
        any = 1;
        if (c == '\n')
            break;
        if (c == '\0')
            *has_nul = 1;
        if (k < MEMSCORE_MAX_LINE)
            buf[k++] = (char)c;
        else
            *too_long = 1;
    }
    if (ferror(f))
        return mg_error_set(err, MG_ERR_IO, "%s: read error: %s", path, strerror(errno));
    buf[k] = '\0';
    *len = any ? k : (size_t)-1;
    return MG_OK;
}

/* The field [s, end) without surrounding blanks, NUL-terminated in place. */
static char *trim_field(char *s, char *end)
{
    while (s < end && (*s == ' ' || *s == '\t'))
        s++;
    while (end > s && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *end = '\0';
    return s;
}

static int is_blank(const char *s)
{
    for (; *s; s++)
        if (*s != ' ' && *s != '\t' && *s != '\r')
            return 0;
    return 1;
}

/* A sample index: decimal digits only (no sign, point or exponent, which
 * would mean the columns are not what we think), at most UINT32_MAX. */
static int parse_index(const char *s, uint32_t *out)
{
    uint64_t v = 0;
    if (!*s)
        return -1;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -1;
        v = v * 10 + (uint64_t)(*s - '0');
        if (v > UINT32_MAX)
            return -1;
    }
    *out = (uint32_t)v;
    return 0;
}

/* Whether s is entirely a number as strtod reads it (the header test). */
static int is_number(const char *s)
{
    char *end = NULL;
    if (!*s)
        return 0;
    (void)strtod(s, &end);
    return end != s && *end == '\0';
}

mg_status mg_memscore_read_csv(const char *path, const uint32_t *sample_index, size_t n, double *mem,
                               mg_error *err)
{
    mg_status st = MG_OK;
    FILE *f = NULL;
    char *buf = NULL;
    score_row *rows = NULL;
    size_t n_rows = 0, cap = 0, line_no = 0;
    int seen_content = 0;

    if (!path || (n > 0 && (!sample_index || !mem)))
        return mg_error_set(err, MG_ERR_ARG, "memorisation scores: a NULL path, index list or output");
    f = fopen(path, "rb");
    if (!f)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open for reading: %s", path, strerror(errno));
    buf = mg_malloc(MEMSCORE_MAX_LINE + 1, 1, "memorisation score line", err);
    if (!buf)
        MG_CHECK(MG_ERR_NOMEM);

    for (;;) {
        size_t len = 0;
        int too_long = 0, has_nul = 0;
        MG_CHECK(read_line(f, path, buf, &len, &too_long, &has_nul, err));
        if (len == (size_t)-1)
            break;
        line_no++;
        if (too_long)
            MG_FAIL(MG_ERR_CONFIG, "%s:%zu: line longer than %d bytes; expected index,score", path, line_no,
                    MEMSCORE_MAX_LINE);
        if (has_nul)
            MG_FAIL(MG_ERR_CONFIG, "%s:%zu: a NUL byte; expected a text line index,score", path, line_no);
        char *line = buf;
        /* Spreadsheet programs may start a UTF-8 file with a byte-order mark. */
        if (line_no == 1 && (unsigned char)line[0] == 0xEF && (unsigned char)line[1] == 0xBB &&
            (unsigned char)line[2] == 0xBF)
            line += 3;
        if (is_blank(line))
            continue;

        char *eol = line + strlen(line);
        char *comma = memchr(line, ',', (size_t)(eol - line));
        char *first = trim_field(line, comma ? comma : eol);
        if (!seen_content) {
            seen_content = 1;
            /* The first line is a header exactly when its first field is not
             * a number; its other fields are not looked at. */
            if (!is_number(first))
                continue;
        }
        size_t nf = 1;
        for (const char *p = comma; p && p < eol; p = memchr(p + 1, ',', (size_t)(eol - p - 1)))
            nf++;
        if (nf != 2)
            MG_FAIL(MG_ERR_CONFIG, "%s:%zu: %zu field%s; expected 2 (index,score)", path, line_no, nf,
                    nf == 1 ? "" : "s");
        char *second = trim_field(comma + 1, eol);
        uint32_t idx = 0;
        if (parse_index(first, &idx) != 0)
            MG_FAIL(MG_ERR_CONFIG, "%s:%zu: index \"%.40s\" is not an integer in 0..%lu", path, line_no, first,
                    (unsigned long)UINT32_MAX);
        char *end = NULL;
        double score = strtod(second, &end);
        if (!*second || end == second || *end != '\0')
            MG_FAIL(MG_ERR_CONFIG, "%s:%zu: score \"%.40s\" is not a number", path, line_no, second);
        if (!isfinite(score))
            MG_FAIL(MG_ERR_CONFIG, "%s:%zu: score \"%.40s\" is not finite", path, line_no, second);

        if (n_rows == cap) {
            size_t ncap = cap ? cap * 2 : 1024;
            if (ncap > SIZE_MAX / sizeof *rows)
                MG_FAIL(MG_ERR_NOMEM, "%s:%zu: too many rows", path, line_no);
            score_row *p = realloc(rows, ncap * sizeof *rows);
            if (!p)
                MG_FAIL(MG_ERR_NOMEM, "%s:%zu: cannot allocate %zu rows", path, line_no, ncap);
            rows = p;
            cap = ncap;
        }
        rows[n_rows].index = idx;
        rows[n_rows].score = score;
        rows[n_rows].line = line_no;
        n_rows++;
    }
    if (n_rows == 0)
        MG_FAIL(MG_ERR_CONFIG, "%s: no index,score rows", path);

    /* Sorting by index finds repeats as neighbours and lets each sample be
     * found by bisection: O((rows + n) log rows) whatever the indices are. */
    qsort(rows, n_rows, sizeof *rows, score_row_cmp);
    for (size_t k = 1; k < n_rows; k++)
        if (rows[k].index == rows[k - 1].index)
            MG_FAIL(MG_ERR_CONFIG, "%s:%zu: index %lu repeats line %zu", path, rows[k].line,
                    (unsigned long)rows[k].index, rows[k - 1].line);
    for (size_t i = 0; i < n; i++) {
        uint32_t want = sample_index[i];
        size_t lo = 0, hi = n_rows;
        while (lo < hi) {
            size_t mid = lo + (hi - lo) / 2;
            if (rows[mid].index < want)
                lo = mid + 1;
            else
                hi = mid;
        }
        if (lo == n_rows || rows[lo].index != want)
            MG_FAIL(MG_ERR_CONFIG, "%s: sample index %lu has no row", path, (unsigned long)want);
        mem[i] = rows[lo].score;
    }

cleanup:
    if (f)
        fclose(f);
    free(buf);
    free(rows);
    return st;
}

/* ---- RSW: ranking and sliding window --------------------------------------------------------- */

typedef struct {
    double key;
    uint32_t row;
} rank_item;

/* Ties go to the lower row in both orders: the authors rank with Python's
 * sorted(), which is stable also with reverse=True, over the rows in their
 * training-list order. */
static int rank_cmp_asc(const void *a, const void *b)
{
    const rank_item *x = a, *y = b;
    if (x->key != y->key)
        return x->key < y->key ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

static int rank_cmp_desc(const void *a, const void *b)
{
    const rank_item *x = a, *y = b;
    if (x->key != y->key)
        return x->key > y->key ? -1 : 1;
    return (x->row > y->row) - (x->row < y->row);
}

mg_status mg_rsw_rank(const int32_t *y, const double *mem, size_t n, int K, int descending, uint32_t *ranked,
                      size_t *class_start, mg_error *err)
{
    mg_status st = MG_OK;
    rank_item *items = NULL;
    size_t *fill = NULL;
    if (K < 1)
        return mg_error_set(err, MG_ERR_ARG, "RSW ranking: %d classes; expected at least 1", K);
    if (!class_start || (n > 0 && (!y || !mem || !ranked)))
        return mg_error_set(err, MG_ERR_ARG, "RSW ranking: a NULL label, score or output array");
    if (n > UINT32_MAX)
        return mg_error_set(err, MG_ERR_ARG, "RSW ranking: %zu rows; rows are 32-bit", n);
    for (size_t i = 0; i < n; i++) {
        if (y[i] < 0 || y[i] >= K)
            return mg_error_set(err, MG_ERR_ARG, "RSW ranking: row %zu has label %ld, outside 0..%d", i,
                                (long)y[i], K - 1);
        /* A NaN compares unordered and would make the order depend on qsort. */
        if (isnan(mem[i]))
            return mg_error_set(err, MG_ERR_ARG, "RSW ranking: row %zu has a NaN memorisation score", i);
    }

    items = mg_malloc(n ? n : 1, sizeof *items, "RSW ranking", err);
    fill = mg_calloc((size_t)K, sizeof *fill, "RSW class offsets", err);
    if (!items || !fill)
        MG_CHECK(MG_ERR_NOMEM);
    /* Counting sort by class, rows ascending within each class, then each
     * class's slice sorted by score. */
    for (int k = 0; k <= K; k++)
        class_start[k] = 0;
    for (size_t i = 0; i < n; i++)
        class_start[y[i] + 1]++;
    for (int k = 0; k < K; k++)
        class_start[k + 1] += class_start[k];
    for (size_t i = 0; i < n; i++) {
        size_t at = class_start[y[i]] + fill[y[i]]++;
        items[at].key = mem[i];
        items[at].row = (uint32_t)i;
    }
    for (int k = 0; k < K; k++) {
        size_t lo = class_start[k], cnt = class_start[k + 1] - lo;
        if (cnt > 1)
            qsort(items + lo, cnt, sizeof *items, descending ? rank_cmp_desc : rank_cmp_asc);
    }
    for (size_t i = 0; i < n; i++)
        ranked[i] = items[i].row;

cleanup:
    free(items);
    free(fill);
    return st;
}

size_t mg_rsw_window(const uint32_t *ranked, const size_t *class_start, int K, int width, int step, int epoch,
                     uint32_t *rows_out)
{
    if (!ranked || !class_start || !rows_out || K < 1 || width < 1 || step < 0 || epoch < 0)
        return 0;
    /* The authors' slide_window: the window starts at epoch * step in every
     * class and stops at the class's end, never wrapping, so a class whose
     * ranking is used up contributes nothing from then on. Their loop clips
     * the window's end for one class and keeps the clipped end for the
     * classes after it in the same epoch, which shortens the window of a
     * later, larger class; the window here is clipped per class, the
     * paper's window of width w over each class's ranking. */
    size_t start = (size_t)epoch * (size_t)step;
    size_t out = 0;
    for (int k = 0; k < K; k++) {
        size_t lo = class_start[k], size = class_start[k + 1] - lo;
        if (start >= size)
            continue;
        size_t take = size - start < (size_t)width ? size - start : (size_t)width;
        memcpy(rows_out + out, ranked + lo + start, take * sizeof *rows_out);
        out += take;
    }
    return out;
}

/* ---- RMR ----------------------------------------------------------------------------------- */

double mg_rmr_weight(const double *mem_rows, int b, double tau, double lambda_r, double lambda_g)
{
    if (!mem_rows || b < 1)
        return 0.0;
    int risky = 0;
    for (int i = 0; i < b; i++)
        risky += mem_rows[i] >= tau;
    /* Mixed as frac * lambda_r + (1 - frac) * lambda_g so that a batch of
     * one kind gets that lambda exactly, as in the authors' code, which
     * trains the risky and the other samples in separate batches. */
    double frac = (double)risky / (double)b;
    return frac * lambda_r + (1.0 - frac) * lambda_g;
}
