/* strbuf.c: a growable string, with the JSON helpers canonical recipes use. */
#include "miagrid/util.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

void mg_strbuf_init(mg_strbuf *b)
{
    b->s = NULL;
    b->len = 0;
    b->cap = 0;
    b->oom = 0;
}

void mg_strbuf_free(mg_strbuf *b)
{
    free(b->s);
    mg_strbuf_init(b);
}

static int reserve(mg_strbuf *b, size_t extra)
{
    if (b->oom)
        return -1;
    if (b->len + extra + 1 <= b->cap)
        return 0;
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->len + extra + 1)
        cap *= 2;
    char *s = realloc(b->s, cap);
    if (!s) {
        b->oom = 1;
        return -1;
    }
    b->s = s;
    b->cap = cap;
    return 0;
}

void mg_strbuf_appendn(mg_strbuf *b, const char *s, size_t n)
{
    if (reserve(b, n))
        return;
    memcpy(b->s + b->len, s, n);
    b->len += n;
    b->s[b->len] = '\0';
}

void mg_strbuf_append(mg_strbuf *b, const char *s) { mg_strbuf_appendn(b, s, strlen(s)); }

void mg_strbuf_printf(mg_strbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    if (n < 0 || reserve(b, (size_t)n))
        return;
    va_start(ap, fmt);
    vsnprintf(b->s + b->len, (size_t)n + 1, fmt, ap);
    va_end(ap);
    b->len += (size_t)n;
}

void mg_strbuf_json_str(mg_strbuf *b, const char *s)
{
    mg_strbuf_append(b, "\"");
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        if (*p == '"' || *p == '\\') {
            char e[3] = {'\\', (char)*p, 0};
            mg_strbuf_append(b, e);
        } else if (*p < 0x20) {
            mg_strbuf_printf(b, "\\u%04x", *p);
        } else {
            mg_strbuf_appendn(b, (const char *)p, 1);
        }
    }
    mg_strbuf_append(b, "\"");
}

void mg_strbuf_json_num(mg_strbuf *b, double v)
{
    if (!isfinite(v)) {
        mg_strbuf_append(b, isnan(v) ? "\"nan\"" : (v > 0 ? "\"inf\"" : "\"-inf\""));
        return;
    }
    if (v == floor(v) && fabs(v) < 1e15) {
        mg_strbuf_printf(b, "%.0f", v);
        return;
    }
    /* Shortest "%.Ng" that reads back to the same double. */
    char tmp[40];
    for (int prec = 1; prec <= 17; prec++) {
        snprintf(tmp, sizeof tmp, "%.*g", prec, v);
        if (strtod(tmp, NULL) == v)
            break;
    }
    mg_strbuf_append(b, tmp);
}

char *mg_strbuf_take(mg_strbuf *b)
{
    if (b->oom) {
        mg_strbuf_free(b);
        return NULL;
    }
    if (!b->s && reserve(b, 0))
        return NULL;
    if (b->len == 0)
        b->s[0] = '\0';
    char *s = b->s;
    mg_strbuf_init(b);
    return s;
}
