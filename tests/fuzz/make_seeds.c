/*
 * make_seeds.c: writes the generated part of the fuzz seed corpus with
 * miagrid's own writers and the test file writers: valid IDX, CIFAR, CSV,
 * PNG and JPEG inputs (plain and gzip) and node files of every kind, each
 * with the prefix bytes its fuzz target reads first. The grid seeds and the
 * hand-made edge cases are files in the corpus folders themselves.
 *
 * usage: mg_fuzz_seeds tests/fuzz/corpus     (from a -DMG_FUZZ=ON build)
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#include "data/image_test_files.h"
#include "fuzz/harness.h"
#include "miagrid/grid.h"
#include "miagrid/store.h"

static char corpus[1024];

/* corpus/<target>/<name> := prefix then the bytes of file `src` (or nothing). */
static void seed(const char *target, const char *name, const void *prefix, size_t n_prefix, const void *body,
                 size_t n_body)
{
    char dir[1200], path[1400];
    snprintf(dir, sizeof dir, "%s/%s", corpus, target);
    mkdir(dir, 0775);
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(prefix, 1, n_prefix, f) != n_prefix || (n_body && fwrite(body, 1, n_body, f) != n_body) ||
        fclose(f) != 0) {
        perror(path);
        exit(1);
    }
}

static unsigned char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) {
        perror(path);
        exit(1);
    }
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc((size_t)len + 1);
    if (!b || fread(b, 1, (size_t)len, f) != (size_t)len)
        exit(1);
    fclose(f);
    *n = (size_t)len;
    return b;
}

/* The gzip form of b[0..n) (a whole .gz file). */
static unsigned char *gzip(const unsigned char *b, size_t n, size_t *out_n)
{
    char path[600];
    fz_path(path, sizeof path, "gz");
    gzFile g = gzopen(path, "wb");
    if (!g || (n && gzwrite(g, b, (unsigned)n) != (int)n) || gzclose(g) != Z_OK)
        exit(1);
    return slurp(path, out_n);
}

static void be32(unsigned char *p, uint32_t v)
{
    p[0] = (unsigned char)(v >> 24);
    p[1] = (unsigned char)(v >> 16);
    p[2] = (unsigned char)(v >> 8);
    p[3] = (unsigned char)v;
}

/* ---- IDX: [opts][classes][u16 image length][images][labels] --------------------------- */

static void idx_seeds(void)
{
    unsigned char img[16 + 3 * 16], lab[8 + 3];
    be32(img, 0x803);
    be32(img + 4, 3);
    be32(img + 8, 4);
    be32(img + 12, 4);
    for (int i = 0; i < 48; i++)
        img[16 + i] = (unsigned char)(i * 5);
    be32(lab, 0x801);
    be32(lab + 4, 3);
    lab[8] = 0, lab[9] = 9, lab[10] = 3;
    for (int gz = 0; gz < 2; gz++) {
        size_t ni = sizeof img, nl = sizeof lab;
        unsigned char *pi = gz ? gzip(img, sizeof img, &ni) : img, *pl = gz ? gzip(lab, sizeof lab, &nl) : lab;
        unsigned char *buf = malloc(4 + ni + nl);
        buf[0] = (unsigned char)gz;
        buf[1] = 9;
        buf[2] = (unsigned char)(ni >> 8);
        buf[3] = (unsigned char)ni;
        memcpy(buf + 4, pi, ni);
        memcpy(buf + 4 + ni, pl, nl);
        seed("fuzz_idx", gz ? "gen-3x4x4.gz" : "gen-3x4x4", buf, 4 + ni + nl, NULL, 0);
        free(buf);
        if (gz) {
            free(pi);
            free(pl);
        }
    }
}

/* ---- CIFAR: [kind][u16 first length][file 1][file 2] -------------------------------------- */

static void cifar_seeds(void)
{
    for (int kind = 0; kind < 2; kind++) {
        size_t rec = (size_t)(kind ? 2 : 1) + 3072;
        unsigned char *b = calloc(2, rec);
        for (int r = 0; r < 2; r++) {
            b[r * rec] = (unsigned char)(r + 3);
            if (kind)
                b[r * rec + 1] = (unsigned char)(50 + r);
            for (int i = 0; i < 3072; i++)
                b[r * rec + (rec - 3072) + (size_t)i] = (unsigned char)(i + r);
        }
        unsigned char pre[3] = {(unsigned char)kind, 0, 0};
        seed("fuzz_cifar", kind ? "gen-cifar100-2" : "gen-cifar10-2", pre, 3, b, 2 * rec);
        size_t nz = 0;
        unsigned char *z = gzip(b, 2 * rec, &nz);
        pre[1] = (unsigned char)(nz >> 8);
        pre[2] = (unsigned char)nz;
        unsigned char *two = malloc(2 * nz);
        memcpy(two, z, nz);
        memcpy(two + nz, z, nz);
        seed("fuzz_cifar", kind ? "gen-cifar100-gz-2files" : "gen-cifar10-gz-2files", pre, 3, two, 2 * nz);
        free(two);
        free(z);
        free(b);
    }
}

/* ---- CSV: [mode][o1][o2] then the text (texas: [u16 feats length][feats][labels]) ----------- */

static void csv_seeds(void)
{
    static const char generic[] = "label,a,b,c\n0,0.5,1e-3,-2\n1,\"3\",4,5\n\n2,7,8,9\r\n";
    unsigned char pre[3] = {0, 1 << 2, 0}; /* label column 0, header, ',' */
    seed("fuzz_csv", "gen-generic", pre, 3, generic, strlen(generic));
    static const char semi[] = "1;0.1;0.2\n2;0.3;0.4\n";
    pre[1] = (unsigned char)(1 << 3 | 1 << 5); /* ';', label base 1 */
    pre[2] = 2;
    seed("fuzz_csv", "gen-semicolon", pre, 3, semi, strlen(semi));
    static const char loc[] = "\"1\",0,1,0,1\n\"30\",1,1,0,0\n\"7\",0,0,0,1\n";
    pre[0] = 1, pre[1] = 29, pre[2] = 0;
    seed("fuzz_csv", "gen-location", pre, 3, loc, strlen(loc));
    size_t nz = 0;
    unsigned char *z = gzip((const unsigned char *)loc, strlen(loc), &nz);
    seed("fuzz_csv", "gen-location.gz", pre, 3, z, nz);
    free(z);
    static const char feats[] = "0,1,0\n1,1,1\n", labels[] = "3\n1\n";
    unsigned char tx[5] = {2, 99, 0, 0, (unsigned char)strlen(feats)};
    unsigned char body[64];
    memcpy(body, feats, strlen(feats));
    memcpy(body + strlen(feats), labels, strlen(labels));
    seed("fuzz_csv", "gen-texas", tx, 5, body, strlen(feats) + strlen(labels));
}

/* ---- images: [size and channels] then the file ----------------------------------------------- */

static void image_seeds(void)
{
    unsigned char pix[8 * 8 * 4];
    char path[600];
    for (int i = 0; i < (int)sizeof pix; i++)
        pix[i] = (unsigned char)(i * 7);
    static const struct {
        const char *name;
        int jpeg, w, h, comps;
        unsigned char opts;
    } imgs[] = {{"gen-rgb.png", 0, 4, 4, 3, 4 - 1}, {"gen-grey.png", 0, 5, 3, 1, 0x80 | 8},
                {"gen-rgba.png", 0, 3, 3, 4, 6}, {"gen-rgb.jpg", 1, 8, 8, 3, 7}, {"gen-grey.jpg", 1, 8, 4, 1, 0x80 | 3}};
    for (size_t k = 0; k < sizeof imgs / sizeof imgs[0]; k++) {
        fz_path(path, sizeof path, "img");
        int r = imgs[k].jpeg ? tf_write_jpeg(path, pix, imgs[k].w, imgs[k].h, imgs[k].comps, 90)
                             : tf_write_png(path, pix, imgs[k].w, imgs[k].h, imgs[k].comps);
        if (r != 0)
            exit(1);
        size_t n = 0;
        unsigned char *b = slurp(path, &n);
        seed("fuzz_image", imgs[k].name, &imgs[k].opts, 1, b, n);
        free(b);
    }
}

/* ---- node files ------------------------------------------------------------------------------ */

static void write_model_node(hid_t f, mg_error *err)
{
    float logits[5 * 10], w[6 * 25], loss[3] = {2.3f, 1.1f, 0.7f};
    int32_t labels[5] = {0, 1, 2, 3, 4};
    uint32_t index[5] = {10, 20, 30, 40, 50};
    uint8_t mask[6 * 25];
    for (int i = 0; i < 50; i++)
        logits[i] = (float)(i % 7) - 3.0f;
    for (int i = 0; i < 150; i++) {
        w[i] = (float)i / 150.0f;
        mask[i] = (uint8_t)(i % 2);
    }
    hsize_t d2[2] = {5, 10}, d1[1] = {5}, dw[4] = {6, 1, 5, 5}, dl[1] = {3};
    mg_h5_attr_str(f, "role", "target", err);
    mg_h5_write(f, "outputs/member/logits", H5T_NATIVE_FLOAT, 2, d2, logits, err);
    mg_h5_write(f, "outputs/member/labels", H5T_NATIVE_INT32, 1, d1, labels, err);
    mg_h5_write(f, "outputs/member/sample_index", H5T_NATIVE_UINT32, 1, d1, index, err);
    mg_h5_write(f, "outputs/nonmember/logits", H5T_NATIVE_FLOAT, 2, d2, logits, err);
    mg_h5_write(f, "outputs/nonmember/labels", H5T_NATIVE_INT32, 1, d1, labels, err);
    mg_h5_write(f, "outputs/nonmember/sample_index", H5T_NATIVE_UINT32, 1, d1, index, err);
    mg_h5_write(f, "history/loss", H5T_NATIVE_FLOAT, 1, dl, loss, err);
    mg_h5_write(f, "model/conv1/weight", H5T_NATIVE_FLOAT, 4, dw, w, err);
    mg_h5_write(f, "model/conv1/mask", H5T_NATIVE_UINT8, 4, dw, mask, err);
    hid_t g = H5Gcreate2(f, "metrics", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    mg_h5_attr_f64(g, "train_acc", 0.9, err);
    mg_h5_attr_f64(g, "test_acc", 0.8, err);
    H5Gclose(g);
}

static void write_attack_node(hid_t f, mg_error *err)
{
    double score[6] = {0.1, 0.9, 0.4, 0.5, 0.2, 0.7}, fpr[3] = {0, 0.5, 1}, tpr[3] = {0, 0.7, 1};
    uint8_t member[6] = {1, 1, 1, 0, 0, 0};
    uint32_t index[6] = {1, 2, 3, 4, 5, 6};
    hsize_t d6[1] = {6}, d3[1] = {3};
    mg_h5_attr_str(f, "attack", "loss", err);
    mg_h5_write(f, "scores/score", H5T_NATIVE_DOUBLE, 1, d6, score, err);
    mg_h5_write(f, "scores/is_member", H5T_NATIVE_UINT8, 1, d6, member, err);
    mg_h5_write(f, "scores/sample_index", H5T_NATIVE_UINT32, 1, d6, index, err);
    mg_h5_write(f, "roc/fpr", H5T_NATIVE_DOUBLE, 1, d3, fpr, err);
    mg_h5_write(f, "roc/tpr", H5T_NATIVE_DOUBLE, 1, d3, tpr, err);
    for (int i = 0; i < 2; i++) {
        hid_t l = H5Pcreate(H5P_LINK_CREATE);
        H5Pset_create_intermediate_group(l, 1);
        hid_t g = H5Gcreate2(f, i ? "metrics/shadow" : "metrics/target", l, H5P_DEFAULT, H5P_DEFAULT);
        H5Pclose(l);
        mg_h5_attr_f64(g, "balanced_acc", 0.6, err);
        mg_h5_attr_f64(g, "auc", 0.65, err);
        H5Gclose(g);
    }
}

/* Raw seeds: [node index * 4 + root file * 2][checksum line][file], written by the store's own writer. */
static void node_raw_seeds(const mg_plan *p)
{
    mg_error err;
    mg_store *s = NULL;
    char dir[600], path[1200];
    fz_path(dir, sizeof dir, "store");
    if (mg_store_open(dir, &s, &err) != MG_OK) {
        fprintf(stderr, "%s\n", err.msg);
        exit(1);
    }
    for (size_t i = 0; i < p->n_nodes; i++) {
        const mg_node *n = &p->nodes[i];
        mg_node_writer *w = NULL;
        if (mg_node_writer_begin(s, n->key, mg_node_kind_str(n->kind), n->recipe, &w, &err) != MG_OK)
            exit(1);
        if (n->kind == MG_NODE_ATTACK)
            write_attack_node(mg_node_writer_file(w), &err);
        else
            write_model_node(mg_node_writer_file(w), &err);
        if (mg_node_writer_commit(&w, &err) != MG_OK) {
            fprintf(stderr, "%s\n", err.msg);
            exit(1);
        }
        size_t nf = 0, ns = 0;
        mg_store_node_path(s, n->key, path, sizeof path);
        unsigned char *file = slurp(path, &nf);
        strcat(path, ".sha256");
        unsigned char *line = slurp(path, &ns);
        unsigned char *buf = malloc(1 + ns + nf);
        buf[0] = (unsigned char)(i << 2 | (i % 2) << 1);
        memcpy(buf + 1, line, ns);
        memcpy(buf + 1 + ns, file, nf);
        char name[64];
        snprintf(name, sizeof name, "gen-raw-%s-%zu", mg_node_kind_str(n->kind), i);
        seed("fuzz_node", name, buf, 1 + ns + nf, NULL, 0);
        free(buf);
        free(file);
        free(line);
    }
    mg_store_close(&s);
}

/* Built seeds: [node index * 4 + root file * 2 + 1] then operations of fuzz_node.c's little language. */
static void node_built_seeds(const mg_plan *p)
{
    /* key, status, kind, recipe with their right values (variable-length strings). */
    static const unsigned char attrs[] = {0, 0, 4, 0, 1, 4, 0, 2, 4, 0, 3, 4};
    /* outputs/member/logits f32 2x3, labels i32 (2), sample_index u32 (2), history/loss f32 (3). */
    static const unsigned char model[] = {2, 0, 0, 2, 2, 3, 0x00, 0x00, 0x80, 0x3f, 0, 0, 0, 0x40,
                                          2, 1, 2, 1, 2, 1, 0, 0, 0, 2, 0, 0, 0,
                                          2, 2, 3, 1, 2, 7, 0, 0, 0, 9, 0, 0, 0,
                                          2, 6, 0, 1, 3, 0, 0, 0x80, 0x3f,
                                          1, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f,
                                          3, 3, 3, 1};
    /* scores/score f64 (2), is_member u8 (2), metrics/target balanced_acc, an array attribute. */
    static const unsigned char attack[] = {2, 8, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f,
                                           2, 9, 4, 1, 2, 1, 0,
                                           1, 2, 4, 0, 0, 0, 0, 0, 0, 0, 0xe0, 0x3f,
                                           1, 0, 7, 3, 1, 2, 3, 4, 5, 6, 7, 8,
                                           0, 1, 0x21};
    for (size_t i = 0; i < p->n_nodes; i++) {
        const mg_node *n = &p->nodes[i];
        unsigned char buf[256];
        size_t len = 0;
        buf[len++] = (unsigned char)(i << 2 | (i % 2) << 1 | 1);
        memcpy(buf + len, attrs, sizeof attrs);
        len += sizeof attrs;
        const unsigned char *body = n->kind == MG_NODE_ATTACK ? attack : model;
        size_t nb = n->kind == MG_NODE_ATTACK ? sizeof attack : sizeof model;
        memcpy(buf + len, body, nb);
        len += nb;
        char name[64];
        snprintf(name, sizeof name, "gen-built-%s-%zu", mg_node_kind_str(n->kind), i);
        seed("fuzz_node", name, buf, len, NULL, 0);
    }
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
        return 2;
    }
    snprintf(corpus, sizeof corpus, "%s", argv[1]);
    mg_h5_quiet();
    idx_seeds();
    cifar_seeds();
    csv_seeds();
    image_seeds();
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    static const char grid[] = FZ_NODE_GRID;
    if (mg_grid_parse("fz.yaml", grid, sizeof grid - 1, &g, &err) != MG_OK || mg_plan_build(g, &p, &err) != MG_OK) {
        fprintf(stderr, "%s\n", err.msg);
        return 1;
    }
    node_raw_seeds(p);
    node_built_seeds(p);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    printf("seeds written under %s\n", corpus);
    return 0;
}
