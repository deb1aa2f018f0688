/*
 * test_store_hostile.c: what a store does with files it did not write or
 * that were damaged after: checksum files beside node and root files, checked
 * before HDF5 parses anything; node files that pass their checksum but hold
 * the wrong shapes of attribute or dataset; the directories a store creates
 * (only itself and nodes/) and the modes of what it writes.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "mg_test.h"
#include "miagrid/grid.h"
#include "miagrid/store.h"

static char base[1024];

static const char GRID[] = "name: hostile\nseeds: [0]\naxes:\n  arch: lenet5\n  sparsity: [0]\nattacks: [loss]\n";

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    CHECK(f != NULL);
    if (!f)
        return;
    CHECK(fwrite(data, 1, n, f) == n);
    fclose(f);
}

static size_t read_bytes(const char *path, char *buf, size_t cap)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        return 0;
    size_t n = fread(buf, 1, cap - 1, f);
    buf[n] = '\0';
    fclose(f);
    return n;
}

static int mode_of(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 ? (int)(sb.st_mode & 07777) : -1;
}

/* A committed node with one small dataset; its key is the hash of recipe. */
static void write_node(mg_store *s, const char *recipe, char key[33])
{
    mg_error err;
    mg_node_writer *w = NULL;
    mg_sha256_hex(recipe, strlen(recipe), 16, key);
    CHECK_OK(mg_node_writer_begin(s, key, "train", recipe, &w, &err), &err);
    if (!w)
        return;
    float v[4] = {1, 2, 3, 4};
    hsize_t dims[1] = {4};
    CHECK_OK(mg_h5_write(mg_node_writer_file(w), "history/loss", H5T_NATIVE_FLOAT, 1, dims, v, &err), &err);
    CHECK_OK(mg_node_writer_commit(&w, &err), &err);
}

static int count_in(const char *text, const char *what)
{
    int n = 0;
    for (const char *p = text; (p = strstr(p, what)) != NULL; p++)
        n++;
    return n;
}

/* The checksum file is sha256sum's line for the node file, written with it. */
static void test_sidecar(const char *dir)
{
    mg_error err;
    mg_store *s = NULL;
    char key[33], path[4096], sidecar[4200], line[512], hex[65];
    CHECK_OK(mg_store_open(dir, &s, &err), &err);
    if (!s)
        return;
    write_node(s, "{\"sidecar\":1}", key);
    mg_store_node_path(s, key, path, sizeof path);
    snprintf(sidecar, sizeof sidecar, "%s.sha256", path);
    char *bytes = NULL;
    size_t len = 0;
    CHECK_OK(mg_read_file(path, &bytes, &len, &err), &err);
    mg_sha256_hex(bytes, len, 32, hex);
    free(bytes);
    char want[200];
    snprintf(want, sizeof want, "%s  %s.h5\n", hex, key);
    read_bytes(sidecar, line, sizeof line);
    CHECK_STR_EQ(line, want);
    CHECK(mg_store_node_complete(s, key));
    CHECK_OK(mg_store_check_file(path, &err), &err);

    /* The line is what `sha256sum -c` reads. */
    char cmd[8400];
    snprintf(cmd, sizeof cmd, "cd '%s/nodes' && sha256sum --quiet -c '%s.h5.sha256' >/dev/null 2>&1", dir, key);
    if (system("command -v sha256sum >/dev/null 2>&1") == 0)
        CHECK(system(cmd) == 0);
    mg_store_close(&s);
}

/* A damaged byte, a file without a checksum, a checksum of another file, a
 * malformed checksum line: each is refused, named, and never parsed. */
static void test_refused(const char *dir)
{
    mg_error err;
    mg_store *s = NULL;
    const char *other = "fedcba9876543210fedcba9876543210";
    char key[33], path[4096], opath[4096], sidecar[4200], osidecar[4200];
    hid_t f = H5I_INVALID_HID;
    CHECK_OK(mg_store_open(dir, &s, &err), &err);
    if (!s)
        return;
    write_node(s, "{\"refused\":1}", key);
    mg_store_node_path(s, key, path, sizeof path);
    mg_store_node_path(s, other, opath, sizeof opath);
    snprintf(sidecar, sizeof sidecar, "%s.sha256", path);
    snprintf(osidecar, sizeof osidecar, "%s.sha256", opath);
    CHECK(mg_store_node_complete(s, key));

    /* One flipped byte in the middle. A new inode, so nothing remembered applies. */
    char *bytes = NULL;
    size_t len = 0;
    CHECK_OK(mg_read_file(path, &bytes, &len, &err), &err);
    if (!bytes)
        return;
    bytes[len / 2] ^= 0x40;
    unlink(path);
    write_bytes(path, bytes, len);
    CHECK(!mg_store_node_complete(s, key));
    CHECK(mg_store_node_open(s, key, &f, &err) == MG_ERR_DATA);
    CHECK(f < 0);
    CHECK(strstr(err.msg, "its bytes do not match its checksum file") != NULL);
    CHECK(strstr(err.msg, key) != NULL);
    bytes[len / 2] ^= 0x40;
    unlink(path);
    write_bytes(path, bytes, len);
    CHECK(mg_store_node_complete(s, key));

    /* A node file copied under another key, checksum and all. */
    write_bytes(opath, bytes, len);
    char line[512];
    read_bytes(sidecar, line, sizeof line);
    write_bytes(osidecar, line, strlen(line));
    CHECK(!mg_store_node_complete(s, other));
    CHECK(mg_store_node_open(s, other, &f, &err) == MG_ERR_STATE);
    CHECK(strstr(err.msg, "not a checksum line for") != NULL);

    /* No checksum file at all (a foreign file, or a store from before checksums). */
    unlink(osidecar);
    CHECK(!mg_store_node_complete(s, other));
    CHECK(mg_store_node_open(s, other, &f, &err) == MG_ERR_STATE);
    CHECK(strstr(err.msg, "no checksum file") != NULL);

    /* Garbage with a garbage checksum line. */
    static const char garbage[] = "\x89HDF\r\n\x1a\n garbage";
    write_bytes(opath, garbage, sizeof garbage - 1);
    write_bytes(osidecar, "zz  x\n", 6);
    CHECK(!mg_store_node_complete(s, other));
    CHECK(mg_store_node_open(s, other, &f, &err) == MG_ERR_STATE);
    mg_store_close(&s);
    free(bytes);

    /* verify names each problem, and --remove-bad removes file and checksum. */
    FILE *out = tmpfile();
    size_t problems = 0;
    CHECK_OK(mg_store_verify(dir, 0, out, &problems, &err), &err);
    char report[8192] = "";
    rewind(out);
    report[fread(report, 1, sizeof report - 1, out)] = '\0';
    fclose(out);
    CHECK(strstr(report, "not a checksum line") != NULL);
    CHECK(problems >= 1);
    out = tmpfile();
    CHECK_OK(mg_store_verify(dir, 1, out, &problems, &err), &err);
    fclose(out);
    CHECK(access(opath, F_OK) != 0 && access(osidecar, F_OK) != 0);
}

/* Files that pass their checksum (a foreign file someone checksummed) but hold
 * arrays where miagrid reads one value, or datasets whose shape promises far
 * more than the file holds: errors, never overruns or huge allocations. */
static void test_checksummed_foreign(const char *dir)
{
    mg_error err;
    mg_store *s = NULL;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    char path[4096];
    CHECK_OK(mg_grid_parse("hostile.yaml", GRID, sizeof GRID - 1, &g, &err), &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    CHECK_OK(mg_store_open(dir, &s, &err), &err);
    if (!p || !s)
        goto done;
    char key[33];
    write_node(s, p->nodes[0].recipe, key);
    CHECK_STR_EQ(key, p->nodes[0].key);
    mg_store_node_path(s, key, path, sizeof path);

    hid_t f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    CHECK(f >= 0);
    /* metrics: a scalar and an array of 100 numbers. */
    hid_t grp = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    CHECK_OK(mg_h5_attr_f64(grp, "train_acc", 0.75, &err), &err);
    hsize_t n100 = 100;
    double many[100] = {0};
    hid_t sp = H5Screate_simple(1, &n100, NULL);
    hid_t a = H5Acreate2(grp, "gap", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, many);
    H5Aclose(a);
    a = H5Acreate2(f, "seconds", H5T_NATIVE_DOUBLE, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, H5T_NATIVE_DOUBLE, many);
    H5Aclose(a);
    H5Sclose(sp);
    H5Gclose(grp);
    /* A chunked dataset of 10^9 floats of which nothing was ever written. */
    hsize_t big = 1000000000, chunk = 1024;
    sp = H5Screate_simple(1, &big, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_chunk(dcpl, 1, &chunk);
    hid_t d = H5Dcreate2(f, "outputs/member/logits", H5T_NATIVE_FLOAT, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0) {
        hid_t lcpl = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(lcpl, 1);
        d = H5Dcreate2(f, "outputs/member/logits", H5T_NATIVE_FLOAT, sp, lcpl, dcpl, H5P_DEFAULT);
        H5Pclose(lcpl);
    }
    CHECK(d >= 0);
    H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Fclose(f);
    CHECK_OK(mg_store_seal_file(path, path, &err), &err);

    CHECK(mg_store_node_complete(s, key));
    hid_t nf = H5I_INVALID_HID;
    CHECK_OK(mg_store_node_open(s, key, &nf, &err), &err);
    if (nf >= 0) {
        double secs = 0;
        CHECK(mg_h5_get_attr_f64(nf, "seconds", &secs, &err) == MG_ERR_HDF5);
        float *x = NULL;
        CHECK(mg_h5_read(nf, "outputs/member/logits", H5T_NATIVE_FLOAT, (void **)&x, NULL, NULL, &err) ==
              MG_ERR_HDF5);
        CHECK(strstr(err.msg, "claims 1000000000 elements") != NULL);
        CHECK(x == NULL);
        H5Fclose(nf);
    }
    /* The root file takes the scalar metric and leaves the array out. */
    CHECK_OK(mg_store_write_root(s, g, p, NULL, &err), &err);
    FILE *out = tmpfile();
    size_t problems = 0;
    CHECK_OK(mg_store_verify(dir, 0, out, &problems, &err), &err);
    char report[8192] = "";
    rewind(out);
    report[fread(report, 1, sizeof report - 1, out)] = '\0';
    fclose(out);
    CHECK(strstr(report, "dataset outputs/member/logits does not read back") != NULL);
    if (!strstr(report, "dataset outputs/member/logits does not read back"))
        fprintf(stderr, "verify said:\n%s", report);

    /* A link out of the file (external) or within it (soft): HDF5 would
     * follow either into what no checksum vouches for. */
    for (int kind = 0; kind < 2; kind++) {
        f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
        if (H5Lexists(f, "outputs/member/logits", H5P_DEFAULT) > 0)
            H5Ldelete(f, "outputs/member/logits", H5P_DEFAULT);
        if (kind == 0)
            H5Lcreate_external("../../a/nodes/elsewhere.h5", "/x", f, "outputs/member/logits", H5P_DEFAULT,
                               H5P_DEFAULT);
        else
            H5Lcreate_soft("/history/loss", f, "outputs/member/logits", H5P_DEFAULT, H5P_DEFAULT);
        H5Fclose(f);
        CHECK_OK(mg_store_seal_file(path, path, &err), &err);
        nf = H5I_INVALID_HID;
        CHECK(mg_store_node_open(s, key, &nf, &err) == MG_ERR_STATE);
        CHECK(nf < 0 && strstr(err.msg, "holds soft or external links") != NULL);
        out = tmpfile();
        CHECK_OK(mg_store_verify(dir, 0, out, &problems, &err), &err);
        rewind(out);
        report[fread(report, 1, sizeof report - 1, out)] = '\0';
        fclose(out);
        CHECK(strstr(report, "holds soft or external links") != NULL);
    }

    /* status as an array of strings: not complete, and no overrun. */
    f = H5Fopen(path, H5F_ACC_RDWR, H5P_DEFAULT);
    H5Adelete(f, "status");
    hsize_t n4 = 4;
    sp = H5Screate_simple(1, &n4, NULL);
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, 9);
    char strs[4][9] = {"complete", "complete", "complete", "complete"};
    a = H5Acreate2(f, "status", t, sp, H5P_DEFAULT, H5P_DEFAULT);
    H5Awrite(a, t, strs);
    H5Aclose(a);
    H5Tclose(t);
    H5Sclose(sp);
    H5Fclose(f);
    CHECK_OK(mg_store_seal_file(path, path, &err), &err);
    CHECK(!mg_store_node_complete(s, key));
done:
    mg_store_close(&s);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

/* Only the store directory and nodes/ are created; runs/ only for the
 * default location runs/<name>. */
static void test_directories(void)
{
    mg_error err;
    mg_store *s = NULL;
    char dir[1200], parent[1100];
    snprintf(parent, sizeof parent, "%s/no-such-dir", base);
    snprintf(dir, sizeof dir, "%s/store", parent);
    CHECK(mg_store_open(dir, &s, &err) == MG_ERR_IO);
    CHECK(s == NULL);
    CHECK(strstr(err.msg, "cannot create the store directory") != NULL);
    CHECK(strstr(err.msg, parent) != NULL);
    CHECK(access(parent, F_OK) != 0);

    char cwd[1024];
    CHECK(getcwd(cwd, sizeof cwd) != NULL);
    CHECK(chdir(base) == 0);
    CHECK_OK(mg_store_open("runs/default", &s, &err), &err);
    mg_store_close(&s);
    CHECK(access("runs/default/nodes", F_OK) == 0);
    CHECK(mg_store_open("runs/a/b", &s, &err) == MG_ERR_IO);
    CHECK(access("runs/a", F_OK) != 0);
    CHECK(mg_store_open("elsewhere/x", &s, &err) == MG_ERR_IO);
    CHECK(strstr(err.msg, "the directory elsewhere above it does not exist") != NULL);
    CHECK(access("elsewhere", F_OK) != 0);
    CHECK(chdir(cwd) == 0);
}

/* Directories 0775 and files 0664, less the umask; never world-writable. */
static void test_modes(const char *dir, mode_t mask)
{
    mg_error err;
    mg_store *s = NULL;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    char path[4400];
    mode_t old = umask(mask);
    CHECK_OK(mg_store_open(dir, &s, &err), &err);
    CHECK_OK(mg_grid_parse("hostile.yaml", GRID, sizeof GRID - 1, &g, &err), &err);
    if (g)
        CHECK_OK(mg_plan_build(g, &p, &err), &err);
    if (!s || !p)
        goto done;
    int dmode = 0775 & ~(int)mask, fmode = 0664 & ~(int)mask;
    CHECK_OK(mg_store_lock(s, &err), &err);
    char key[33];
    write_node(s, p->nodes[0].recipe, key);
    CHECK_OK(mg_store_record_failure(s, p->nodes[1].key, "test failure", &err), &err);
    CHECK_OK(mg_store_write_root(s, g, p, NULL, &err), &err);
    CHECK_INT_EQ(mode_of(dir), dmode);
    snprintf(path, sizeof path, "%s/nodes", dir);
    CHECK_INT_EQ(mode_of(path), dmode);
    const char *files[] = {"miagrid-store", "lock", "results.h5", "results.h5.sha256", NULL};
    for (int i = 0; files[i]; i++) {
        snprintf(path, sizeof path, "%s/%s", dir, files[i]);
        CHECK_INT_EQ(mode_of(path), fmode);
    }
    snprintf(path, sizeof path, "%s/nodes/%s.h5", dir, p->nodes[0].key);
    CHECK_INT_EQ(mode_of(path), fmode);
    strcat(path, ".sha256");
    CHECK_INT_EQ(mode_of(path), fmode);
    snprintf(path, sizeof path, "%s/nodes/%s.failed", dir, p->nodes[1].key);
    CHECK_INT_EQ(mode_of(path), fmode);

    /* The root file has its checksum too, and verify checks it. */
    snprintf(path, sizeof path, "%s/results.h5", dir);
    CHECK_OK(mg_store_check_file(path, &err), &err);
done:
    umask(old);
    mg_store_close(&s);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
}

/* Checksums left without their node file by a run that died between the two
 * renames go when the store is next locked. */
static void test_orphans(const char *dir)
{
    mg_error err;
    mg_store *s = NULL;
    char orphan[4400], tmp[4400];
    CHECK_OK(mg_store_open(dir, &s, &err), &err);
    if (!s)
        return;
    snprintf(orphan, sizeof orphan, "%s/nodes/aaaabbbbccccddddeeeeffff00001111.h5.sha256", dir);
    snprintf(tmp, sizeof tmp, "%s/nodes/aaaabbbbccccddddeeeeffff00001111.h5.sha256.tmp.host.1", dir);
    write_bytes(orphan, "x", 1);
    write_bytes(tmp, "x", 1);
    FILE *out = tmpfile();
    size_t problems = 0;
    CHECK_OK(mg_store_verify(dir, 0, out, &problems, &err), &err);
    char report[8192] = "";
    rewind(out);
    report[fread(report, 1, sizeof report - 1, out)] = '\0';
    fclose(out);
    CHECK(strstr(report, "checksum of a node file that is not there") != NULL);
    CHECK_INT_EQ(count_in(report, "problem:"), (int)problems);
    CHECK_OK(mg_store_lock(s, &err), &err);
    CHECK(access(orphan, F_OK) != 0 && access(tmp, F_OK) != 0);
    mg_store_close(&s);
}

int main(void)
{
    const char *tmp = getenv("MG_TEST_TMP");
    snprintf(base, sizeof base, "%s/store-hostile-%ld", tmp ? tmp : "/tmp", (long)getpid());
    mkdir(base, 0775);
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/a", base);
    test_sidecar(dir);
    test_refused(dir);
    snprintf(dir, sizeof dir, "%s/b", base);
    test_checksummed_foreign(dir);
    test_directories();
    snprintf(dir, sizeof dir, "%s/modes0", base);
    test_modes(dir, 0);
    snprintf(dir, sizeof dir, "%s/modes22", base);
    test_modes(dir, 022);
    snprintf(dir, sizeof dir, "%s/c", base);
    test_orphans(dir);
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "rm -rf '%s'", base);
    if (system(cmd) != 0)
        fprintf(stderr, "could not remove %s\n", base);
    MG_TEST_MAIN_END();
}
