/*
 * test_csv.c: the label-first CSV loader on small files the test writes,
 * plain and gzip, and the malformed rows it must reject naming file:line.
 */
#include <string.h>

#include "data_test_files.h"
#include "miagrid/data.h"
#include "mg_test.h"

static void write_text(const char *name, const char *text, int gz, char *path, size_t n)
{
    tf_path(path, n, name);
    CHECK(tf_write(path, text, strlen(text), gz) == 0);
}

static void test_good(int gz)
{
    /* Quoted and bare labels, CRLF, a trailing blank line, real numbers. */
    const char *text = "\"3\",0,1,0.5\n"
                       "1,1,0,-2.25\r\n"
                       "\"30\",0,0,1e-3\n"
                       "\n";
    char path[512];
    write_text(gz ? "tcsv_good.csv.gz" : "tcsv_good.csv", text, gz, path, sizeof path);
    mg_dataset d;
    mg_error err = {0}, *e = &err;
    CHECK_OK(mg_data_load_csv_label_first(path, 30, &d, e), e);
    CHECK_INT_EQ(d.n, 3);
    CHECK_INT_EQ(d.c, 3);
    CHECK_INT_EQ(d.h, 1);
    CHECK_INT_EQ(d.w, 1);
    CHECK_INT_EQ(d.n_classes, 30);
    if (d.n == 3) {
        const float want[9] = {0, 1, 0.5f, 1, 0, -2.25f, 0, 0, 1e-3f};
        CHECK_TENSOR_NEAR(d.x, want, 9, 0.0);
        CHECK_INT_EQ(d.y[0], 2);
        CHECK_INT_EQ(d.y[1], 0);
        CHECK_INT_EQ(d.y[2], 29);
    }
    mg_dataset_free(&d);
}

static void expect_fail(const char *name, const char *text, int gz, int n_classes, mg_status want_status,
                        const char *want_text)
{
    char path[512];
    write_text(name, text, gz, path, sizeof path);
    mg_dataset d;
    mg_error err = {0};
    mg_status st = mg_data_load_csv_label_first(path, n_classes, &d, &err);
    CHECK_INT_EQ(st, want_status);
    char want[1024];
    snprintf(want, sizeof want, "%s%s", path, want_text);
    if (!strstr(err.msg, want))
        fprintf(stderr, "message \"%s\" lacks \"%s\"\n", err.msg, want);
    CHECK(strstr(err.msg, want) != NULL);
    CHECK(d.x == NULL && d.y == NULL && d.n == 0);
}

static void test_malformed(int gz)
{
    expect_fail("tcsv_fields.csv", "\"1\",0,1\n\"2\",1\n", gz, 30, MG_ERR_DATA,
                ":2: 2 fields, expected 3 (as on line 1)");
    expect_fail("tcsv_number.csv", "\"1\",0,1\n\"2\",1,x1\n", gz, 30, MG_ERR_DATA,
                ":2: field 3 is not a number: \"x1\"");
    expect_fail("tcsv_empty_field.csv", "\"1\",0,1\n\"2\",,1\n", gz, 30, MG_ERR_DATA,
                ":2: field 2 is not a number");
    expect_fail("tcsv_label_hi.csv", "\"1\",0,1\n\n\"31\",1,0\n", gz, 30, MG_ERR_DATA,
                ":3: label 31 is out of range 1..30");
    expect_fail("tcsv_label_zero.csv", "0,0,1\n", gz, 30, MG_ERR_DATA, ":1: label 0 is out of range 1..30");
    expect_fail("tcsv_label_text.csv", "\"a\",0,1\n", gz, 30, MG_ERR_DATA, ":1: label \"a\" is not an integer");
    expect_fail("tcsv_label_only.csv", "\"1\"\n", gz, 30, MG_ERR_DATA, ":1: a row needs a label");
    expect_fail("tcsv_inf.csv", "\"1\",inf,1\n", gz, 30, MG_ERR_NUMERIC, ":1: field 2 is not a finite float");
    expect_fail("tcsv_norows.csv", "\n\n", gz, 30, MG_ERR_DATA, ": no rows");

    char missing[512];
    tf_path(missing, sizeof missing, "tcsv_does_not_exist.csv");
    mg_dataset d;
    mg_error err = {0};
    CHECK_INT_EQ(mg_data_load_csv_label_first(missing, 30, &d, &err), MG_ERR_IO);
    CHECK(strstr(err.msg, missing) != NULL);
}

int main(void)
{
    test_good(0);
    test_good(1);
    test_malformed(0);
    test_malformed(1);
    MG_TEST_MAIN_END();
}
