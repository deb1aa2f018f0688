/* test_store.c: node files appear only when whole, the format stamp and the
 * lock refuse what they should, and HDF5 helpers round-trip. */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "mg_test.h"
#include "miagrid/store.h"

static char dir[1024];

static void test_node_lifecycle(void)
{
    mg_error err;
    mg_store *s = NULL;
    CHECK_OK(mg_store_open(dir, &s, &err), &err);
    if (!s)
        return;
    const char *key = "0123456789abcdef0123456789abcdef";
    CHECK(!mg_store_node_complete(s, key));

    /* An aborted node leaves nothing behind. */
    mg_node_writer *w = NULL;
    CHECK_OK(mg_node_writer_begin(s, key, "train", "{\"v\":1}", &w, &err), &err);
    CHECK(!mg_store_node_complete(s, key));
    mg_node_writer_abort(&w);
    CHECK(w == NULL);
    CHECK(!mg_store_node_complete(s, key));
    char path[4096];
    mg_store_node_path(s, key, path, sizeof path);
    CHECK(access(path, F_OK) != 0);

    /* A committed node is complete and its data reads back. */
    CHECK_OK(mg_node_writer_begin(s, key, "train", "{\"v\":1}", &w, &err), &err);
    float v[6] = {1, 2, 3, 4, 5, 6};
    hsize_t dims[2] = {2, 3};
    CHECK_OK(mg_h5_write(mg_node_writer_file(w), "model/fc1/weight", H5T_NATIVE_FLOAT, 2, dims, v, &err), &err);
    CHECK_OK(mg_h5_attr_f64(mg_node_writer_file(w), "seconds", 1.5, &err), &err);
    CHECK(!mg_store_node_complete(s, key)); /* still under its temporary name */
    CHECK_OK(mg_node_writer_commit(&w, &err), &err);
    CHECK(mg_store_node_complete(s, key));

    hid_t f;
    CHECK_OK(mg_store_node_open(s, key, &f, &err), &err);
    float *back = NULL;
    hsize_t d[4];
    int nd = 0;
    CHECK_OK(mg_h5_read(f, "model/fc1/weight", H5T_NATIVE_FLOAT, (void **)&back, d, &nd, &err), &err);
    CHECK_INT_EQ(nd, 2);
    CHECK_INT_EQ(d[0], 2);
    CHECK_INT_EQ(d[1], 3);
    if (back)
        CHECK_TENSOR_NEAR(back, v, 6, 0.0);
    free(back);
    char kind[32];
    CHECK_OK(mg_h5_get_attr_str(f, "kind", kind, sizeof kind, &err), &err);
    CHECK_STR_EQ(kind, "train");
    double secs = 0;
    CHECK_OK(mg_h5_get_attr_f64(f, "seconds", &secs, &err), &err);
    CHECK_NEAR(secs, 1.5, 0);
    CHECK(mg_h5_read(f, "model/nope", H5T_NATIVE_FLOAT, (void **)&back, NULL, NULL, &err) == MG_ERR_HDF5);
    CHECK(strstr(err.msg, "model/nope") != NULL);
    H5Fclose(f);

    /* A file that is not a node (garbage bytes) is not complete. */
    const char *bad = "fedcba9876543210fedcba9876543210";
    mg_store_node_path(s, bad, path, sizeof path);
    FILE *g = fopen(path, "w");
    fputs("not hdf5", g);
    fclose(g);
    CHECK(!mg_store_node_complete(s, bad));
    mg_store_close(&s);
    CHECK(s == NULL);
}

static void test_lock(void)
{
    mg_error err;
    mg_store *a = NULL, *b = NULL;
    CHECK_OK(mg_store_open(dir, &a, &err), &err);
    CHECK_OK(mg_store_open(dir, &b, &err), &err);
    CHECK_OK(mg_store_lock(a, &err), &err);
    CHECK(mg_store_lock(b, &err) == MG_ERR_STATE);
    CHECK(strstr(err.msg, "in use by another miagrid run") != NULL);
    mg_store_close(&a);
    CHECK_OK(mg_store_lock(b, &err), &err); /* released with the first handle */
    mg_store_close(&b);
}

static void test_format(void)
{
    char other[1100], stamp[1200];
    snprintf(other, sizeof other, "%s-old", dir);
    mg_error err;
    mg_store *s = NULL;
    CHECK_OK(mg_mkdirs(other, &err), &err);
    snprintf(stamp, sizeof stamp, "%s/miagrid-store", other);
    FILE *f = fopen(stamp, "w");
    fprintf(f, "miagrid store format 999\n");
    fclose(f);
    CHECK(mg_store_open(other, &s, &err) == MG_ERR_STATE);
    CHECK(strstr(err.msg, "format 999") != NULL);
    CHECK(s == NULL);
    f = fopen(stamp, "w");
    fprintf(f, "something else\n");
    fclose(f);
    CHECK(mg_store_open(other, &s, &err) == MG_ERR_STATE);
    CHECK(strstr(err.msg, "not a miagrid store") != NULL);
}

int main(void)
{
    const char *tmp = getenv("MG_TEST_TMP");
    snprintf(dir, sizeof dir, "%s/store-%ld", tmp ? tmp : "/tmp", (long)getpid());
    test_node_lifecycle();
    test_lock();
    test_format();
    char cmd[2200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s-old'", dir, dir);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", dir);
    MG_TEST_MAIN_END();
}
