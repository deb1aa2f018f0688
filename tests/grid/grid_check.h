/*
 * grid_check.h: what the grid tests share: parsing a grid from a string
 * (named t.yaml in messages) and expecting a configuration error whose
 * message contains a given text.
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

static void expect_error_at(const char *file, int line, const char *text, const char *want)
{
    mg_grid *g = NULL;
    mg_error err;
    mg_status st = parse(text, &g, &err);
    mg_test_checks_++;
    if (st != MG_ERR_CONFIG || g != NULL || !strstr(err.msg, want)) {
        fprintf(stderr, "%s:%d: FAIL: expected a config error containing \"%s\"\n  got status %d: %s\n", file, line,
                want, (int)st, st == MG_OK ? "(no error)" : err.msg);
        mg_test_failures_++;
    } else {
        printf("  expected error: %s\n", err.msg);
    }
    mg_grid_destroy(&g);
}
#define EXPECT_ERROR(text, want) expect_error_at(__FILE__, __LINE__, text, want)

#endif
