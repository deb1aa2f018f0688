/*
 * grid_check.h: what the grid tests share: parsing a grid from a string
 * (named t.yaml in messages) and expecting it refused, with a status and
 * a message that contains a given text.
 */
#ifndef MG_GRID_CHECK_H
#define MG_GRID_CHECK_H

#include <stdio.h>
#include <string.h>

#include "miagrid/grid.h"
#include "mg_test.h"

static mg_status parse(const char *text, mg_grid **g, mg_error *err)
{
    mg_error_clear(err);
    return mg_grid_parse("t.yaml", text, strlen(text), g, err);
}

/* The text must be refused with status want_st and a message holding want. */
static void expect_status_at(const char *file, int line, const char *text, mg_status want_st, const char *want)
{
    mg_grid *g = NULL;
    mg_error err;
    mg_status st = parse(text, &g, &err);
    mg_test_checks_++;
    if (st != want_st || g != NULL || !strstr(err.msg, want)) {
        fprintf(stderr, "%s:%d: FAIL: expected status %d with \"%s\"\n  got status %d: %s\n", file, line,
                (int)want_st, want, (int)st, st == MG_OK ? "(no error)" : err.msg);
        mg_test_failures_++;
    } else {
        printf("  expected error: %s\n", err.msg);
    }
    mg_grid_destroy(&g);
}
#define EXPECT_ERROR(text, want) expect_status_at(__FILE__, __LINE__, text, MG_ERR_CONFIG, want)

#endif
