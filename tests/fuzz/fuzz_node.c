/*
 * fuzz_node.c: libFuzzer target for the store's node files: everything
 * miagrid does with a node file it finds in a store. The first byte picks
 * the plan node whose file the input becomes (bits 2-7), whether the root
 * file is written from the store too (bit 1), and one of two modes (bit 0):
 *
 *  - raw (even): the input is a checksum line (up to its first newline) and
 *    the file's bytes, written as nodes/<key>.h5.sha256 and nodes/<key>.h5
 *    as they come, as a damaged or foreign store would hold them;
 *  - built (odd): the input is a little program of HDF5 writes (attributes,
 *    datasets, groups and links of any type, shape and name miagrid reads),
 *    so the file is valid HDF5 with hostile contents, and is then sealed with
 *    a correct checksum, as a foreign file someone checksummed would be.
 *
 * Then: mg_store_node_complete, mg_store_node_open with mg_h5_read of every
 * dataset and attribute miagrid reads, mg_store_verify over the store and, on
 * request, the root file written and the summary printed from it.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "harness.h"
#include "miagrid/grid.h"
#include "miagrid/store.h"

static const char GRID[] = FZ_NODE_GRID;

static mg_grid *grid;
static mg_plan *plan;
static mg_store *store;
static char store_dir[600], nodes_dir[700];
static FILE *devnull;

int LLVMFuzzerInitialize(int *argc, char ***argv)
{
    (void)argc;
    (void)argv;
    mg_error err;
    fz_path(store_dir, sizeof store_dir, "store");
    snprintf(nodes_dir, sizeof nodes_dir, "%s/nodes", store_dir);
    fz_require(mg_grid_parse("fz.yaml", GRID, sizeof GRID - 1, &grid, &err) == MG_OK, "the grid parses");
    fz_require(mg_plan_build(grid, &plan, &err) == MG_OK, "the plan builds");
    fz_require(mg_store_open(store_dir, &store, &err) == MG_OK, "the store opens");
    devnull = fopen("/dev/null", "w");
    fz_require(devnull != NULL, "/dev/null opens");
    /* HDF5 frees blocks above its free-list limits (its metadata cache among
     * them) at every file close, and callocs them fresh at the next open; under
     * the sanitizers that is most of an execution. Unlimited lists reuse them. */
    fz_require(H5set_free_list_limits(-1, -1, -1, -1, -1, -1) >= 0, "HDF5 free-list limits lift");
    return 0;
}

/* Every file of the previous input goes. */
static void clear_store(void)
{
    DIR *d = opendir(nodes_dir);
    struct dirent *e;
    char path[1200];
    while (d && (e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.')
            continue;
        snprintf(path, sizeof path, "%s/%s", nodes_dir, e->d_name);
        unlink(path);
    }
    if (d)
        closedir(d);
    snprintf(path, sizeof path, "%s/results.h5", store_dir);
    unlink(path);
    snprintf(path, sizeof path, "%s/results.h5.sha256", store_dir);
    unlink(path);
}

/* ---- the built mode ------------------------------------------------------------------ */

static const char *const ATTR_NAMES[] = {"key", "status", "kind", "recipe", "role", "attack", "store_format",
                                         "seconds", "requested_sparsity", "best_epoch"};
static const char *const NUM_NAMES[] = {"train_acc", "test_acc", "gap", "sparsity", "balanced_acc", "auc",
                                        "threshold", "tpr", "fpr", "advantage", "seconds", "x"};
static const char *const GROUPS[] = {"/", "metrics", "metrics/target", "metrics/shadow", "outputs/member",
                                     "model/conv1", "scores"};
static const char *const DATASETS[] = {
    "outputs/member/logits", "outputs/member/labels", "outputs/member/sample_index", "outputs/nonmember/logits",
    "outputs/nonmember/labels", "outputs/nonmember/sample_index", "history/loss", "history/train_acc",
    "scores/score", "scores/is_member", "scores/sample_index", "roc/fpr", "roc/tpr", "model/conv1/weight",
    "model/conv1/mask", "model/conv1/bias", "model/fc3/weight", "metrics", "outputs", "model"};
#define COUNT(a) (sizeof(a) / sizeof((a)[0]))

static hid_t lcpl_intermediate(void)
{
    hid_t l = H5Pcreate(H5P_LINK_CREATE);
    H5Pset_create_intermediate_group(l, 1);
    return l;
}

/* The group at path, created with its parents if missing (or a failure). */
static hid_t group_at(hid_t f, const char *path)
{
    if (!strcmp(path, "/"))
        return H5Gopen2(f, "/", H5P_DEFAULT);
    if (H5Lexists(f, path, H5P_DEFAULT) > 0)
        return H5Gopen2(f, path, H5P_DEFAULT);
    hid_t l = lcpl_intermediate();
    hid_t g = H5Gcreate2(f, path, l, H5P_DEFAULT, H5P_DEFAULT);
    H5Pclose(l);
    return g;
}

static void put_attr(hid_t loc, const char *name, hid_t type, hid_t space, const void *value)
{
    if (H5Aexists(loc, name) > 0)
        H5Adelete(loc, name);
    hid_t a = H5Acreate2(loc, name, type, space, H5P_DEFAULT, H5P_DEFAULT);
    if (a >= 0) {
        H5Awrite(a, type, value);
        H5Aclose(a);
    }
}

static void op_string_attr(hid_t f, fz_input *in, const mg_node *node)
{
    const char *name = ATTR_NAMES[fz_byte(in) % COUNT(ATTR_NAMES)];
    uint8_t how = fz_byte(in);
    char value[300];
    if (how % 4 == 0) {
        const char *right = !strcmp(name, "key") ? node->key : !strcmp(name, "status") ? "complete"
                          : !strcmp(name, "kind") ? mg_node_kind_str(node->kind)
                          : !strcmp(name, "recipe") ? node->recipe : "target";
        snprintf(value, sizeof value, "%s", right);
    } else {
        size_t n = 0;
        const uint8_t *p = fz_take(in, fz_byte(in) % 80, &n);
        memcpy(value, p, n);
        value[n] = '\0';
    }
    hid_t t = H5Tcopy(H5T_C_S1);
    hid_t sp;
    if (how & 4) {
        H5Tset_size(t, H5T_VARIABLE);
        const char *v = value;
        sp = H5Screate(H5S_SCALAR);
        put_attr(f, name, t, sp, &v);
    } else {
        /* Fixed-length strings, one or (an array where one is read) several. */
        hsize_t n = 1 + (how >> 4) % 4;
        size_t len = strlen(value) + 1;
        H5Tset_size(t, len);
        char *buf = calloc(n, len);
        for (hsize_t i = 0; buf && i < n; i++)
            memcpy(buf + i * len, value, len);
        sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
        if (buf)
            put_attr(f, name, t, sp, buf);
        free(buf);
    }
    H5Sclose(sp);
    H5Tclose(t);
}

static void op_number_attr(hid_t f, fz_input *in)
{
    static const hid_t *const types[] = {&H5T_NATIVE_DOUBLE_g, &H5T_NATIVE_FLOAT_g, &H5T_NATIVE_INT_g,
                                         &H5T_NATIVE_UINT8_g};
    hid_t g = group_at(f, GROUPS[fz_byte(in) % 4]);
    const char *name = NUM_NAMES[fz_byte(in) % COUNT(NUM_NAMES)];
    uint8_t how = fz_byte(in);
    double v[4];
    size_t got = 0;
    const uint8_t *p = fz_take(in, sizeof v, &got);
    memset(v, 0, sizeof v);
    memcpy(v, p, got);
    hsize_t n = 1 + how % 4;
    hid_t sp = n == 1 ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t t = *types[(how >> 2) % 4];
    double conv[4];
    if (g >= 0) {
        /* The numbers are written as doubles and converted by HDF5. */
        memcpy(conv, v, sizeof conv);
        if (H5Aexists(g, name) > 0)
            H5Adelete(g, name);
        hid_t a = H5Acreate2(g, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
        if (a >= 0) {
            H5Awrite(a, H5T_NATIVE_DOUBLE, conv);
            H5Aclose(a);
        }
        H5Gclose(g);
    }
    H5Sclose(sp);
}

static void op_dataset(hid_t f, fz_input *in)
{
    const char *path = DATASETS[fz_byte(in) % COUNT(DATASETS)];
    uint8_t how = fz_byte(in), shape = fz_byte(in);
    hsize_t dims[4];
    int rank = shape % 5;
    hsize_t count = 1;
    for (int i = 0; i < rank; i++) {
        dims[i] = fz_byte(in) % 9;
        count *= dims[i];
    }
    if (how & 0x40 && rank > 0)
        dims[0] = 100000000; /* a shape promising far more than the file holds */
    hid_t t;
    switch (how % 7) {
    case 0: t = H5Tcopy(H5T_NATIVE_FLOAT); break;
    case 1: t = H5Tcopy(H5T_NATIVE_DOUBLE); break;
    case 2: t = H5Tcopy(H5T_NATIVE_INT32); break;
    case 3: t = H5Tcopy(H5T_NATIVE_UINT32); break;
    case 4: t = H5Tcopy(H5T_NATIVE_UINT8); break;
    case 5: t = H5Tcopy(H5T_NATIVE_INT64); break;
    default:
        t = H5Tcopy(H5T_C_S1);
        H5Tset_size(t, 8);
        break;
    }
    hid_t sp = rank == 0 ? H5Screate(H5S_SCALAR) : H5Screate_simple(rank, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (how & 0x80 && rank > 0) {
        hsize_t chunk[4];
        for (int i = 0; i < rank; i++)
            chunk[i] = dims[i] ? (dims[i] < 4 ? dims[i] : 4) : 1;
        H5Pset_chunk(dcpl, rank, chunk);
        H5Pset_deflate(dcpl, 1);
    } else if (how & 0x40 && rank > 0) {
        hsize_t chunk[4] = {1024, 1, 1, 1};
        for (int i = 1; i < rank; i++)
            chunk[i] = dims[i] ? dims[i] : 1;
        H5Pset_chunk(dcpl, rank, chunk);
    }
    hid_t l = lcpl_intermediate();
    hid_t d = H5Dcreate2(f, path, t, sp, l, dcpl, H5P_DEFAULT);
    if (d >= 0 && !(how & 0x40) && count > 0 && count <= 4096) {
        size_t bytes = (size_t)count * H5Tget_size(t);
        unsigned char *buf = calloc(1, bytes);
        size_t got = 0;
        const uint8_t *p = fz_take(in, bytes, &got);
        if (buf) {
            memcpy(buf, p, got);
            H5Dwrite(d, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, buf);
        }
        free(buf);
    }
    if (d >= 0)
        H5Dclose(d);
    H5Pclose(l);
    H5Pclose(dcpl);
    H5Sclose(sp);
    H5Tclose(t);
}

static void op_link(hid_t f, fz_input *in)
{
    const char *path = DATASETS[fz_byte(in) % COUNT(DATASETS)];
    const char *target = DATASETS[fz_byte(in) % COUNT(DATASETS)];
    uint8_t how = fz_byte(in);
    hid_t l = lcpl_intermediate();
    if (how % 3 == 0)
        H5Lcreate_soft(target, f, path, l, H5P_DEFAULT);
    else if (how % 3 == 1)
        H5Lcreate_external(how & 4 ? "../results.h5" : "elsewhere.h5", "/", f, path, l, H5P_DEFAULT);
    else
        H5Gclose(group_at(f, path));
    H5Pclose(l);
}

static void build_file(const char *path, fz_input *in, const mg_node *node)
{
    hid_t f = H5Fcreate(path, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    fz_require(f >= 0, "a node file can be created");
    for (int ops = 0; ops < 48 && in->n > 0; ops++) {
        switch (fz_byte(in) % 4) {
        case 0: op_string_attr(f, in, node); break;
        case 1: op_number_attr(f, in); break;
        case 2: op_dataset(f, in); break;
        default: op_link(f, in); break;
        }
    }
    H5Fclose(f);
}

/* ---- what miagrid does with a node file ----------------------------------------------------- */

static void read_like_miagrid(const mg_node *node)
{
    static const char *const model_sets[] = {"outputs/member/logits", "outputs/nonmember/logits", "history/loss",
                                             "model/conv1/weight", "model/fc3/weight", NULL};
    static const char *const label_sets[] = {"outputs/member/labels", "outputs/nonmember/labels", NULL};
    static const char *const index_sets[] = {"outputs/member/sample_index", "outputs/nonmember/sample_index",
                                             "scores/sample_index", NULL};
    static const char *const attack_sets[] = {"scores/score", "roc/fpr", "roc/tpr", NULL};
    mg_error err;
    hid_t f = H5I_INVALID_HID;
    if (mg_store_node_open(store, node->key, &f, &err) != MG_OK) {
        fz_require(f < 0 && err.msg[0], "a refused node file is not open and has a message");
        return;
    }
    char buf[256];
    double v;
    mg_h5_get_attr_str(f, "kind", buf, sizeof buf, &err);
    mg_h5_get_attr_str(f, "recipe", buf, sizeof buf, &err);
    mg_h5_get_attr_str(f, "role", buf, sizeof buf, &err);
    mg_h5_get_attr_f64(f, "seconds", &v, &err);
    mg_h5_get_attr_f64(f, "requested_sparsity", &v, &err);
    struct {
        const char *const *paths;
        hid_t type;
    } reads[] = {{model_sets, H5T_NATIVE_FLOAT}, {label_sets, H5T_NATIVE_INT32}, {index_sets, H5T_NATIVE_UINT32},
                 {attack_sets, H5T_NATIVE_DOUBLE}};
    for (size_t r = 0; r < COUNT(reads); r++) {
        for (int i = 0; reads[r].paths[i]; i++) {
            void *data = NULL;
            hsize_t dims[4];
            int nd = -1;
            if (mg_h5_read(f, reads[r].paths[i], reads[r].type, &data, dims, &nd, &err) == MG_OK) {
                fz_require(nd >= 0 && nd <= 4, "a dataset read has a rank miagrid handles");
                free(data);
            } else {
                fz_require(data == NULL && err.msg[0], "a failed read gives no data and a message");
            }
        }
    }
    void *mask = NULL;
    if (mg_h5_read(f, "model/conv1/mask", H5T_NATIVE_UINT8, &mask, NULL, NULL, &err) == MG_OK)
        free(mask);
    H5Fclose(f);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    fz_input in = {data, size};
    mg_error err;
    clear_store();
    uint8_t head = fz_byte(&in);
    const mg_node *node = &plan->nodes[(head >> 2) % plan->n_nodes];
    char path[1200], sidecar[1300];
    mg_store_node_path(store, node->key, path, sizeof path);
    snprintf(sidecar, sizeof sidecar, "%s.sha256", path);

    if (head % 2 == 0) {
        size_t n_line = 0, n_file = 0;
        const uint8_t *nl = memchr(in.p, '\n', in.n < 200 ? in.n : 200);
        const uint8_t *line = fz_take(&in, nl ? (size_t)(nl - in.p) + 1 : 0, &n_line);
        const uint8_t *bytes = fz_take(&in, in.n, &n_file);
        fz_write(path, bytes, n_file);
        /* MG_FUZZ_TRUST_RAW=1 hands HDF5 the raw bytes with a correct
         * checksum: how the README's libhdf5 crashes were found. */
        if (getenv("MG_FUZZ_TRUST_RAW"))
            fz_require(mg_store_seal_file(path, path, &err) == MG_OK, "the raw file is sealed");
        else
            fz_write(sidecar, line, n_line);
    } else {
        build_file(path, &in, node);
        fz_require(mg_store_seal_file(path, path, &err) == MG_OK, "the built file is sealed");
    }

    int complete = mg_store_node_complete(store, node->key);
    read_like_miagrid(node);
    size_t problems = 0;
    fz_require(mg_store_verify(store_dir, 0, devnull, &problems, &err) == MG_OK, "verify runs on the store");
    fz_require(complete || problems > 0, "a node file that is not complete is a problem for verify");
    if ((head & 2) && mg_store_write_root(store, grid, plan, NULL, &err) == MG_OK)
        mg_store_print_summary(store, grid, plan, devnull, &err);
    return 0;
}
