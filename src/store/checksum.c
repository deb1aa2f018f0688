/* checksum.c: the checksum files beside a store's node and root files
 * (<file>.sha256, sha256sum's format). HDF5 1.10 can crash on a malformed
 * file, so nothing in a store reaches it before its bytes match the checksum
 * miagrid wrote when the file was whole. */
#define _GNU_SOURCE
#include "store/store_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* A checksum line is 64 digits, two separators, a file name and a newline. */
enum { SIDECAR_MAX = 64 + 2 + 256 + 1 };

int mg_store_create_file(const char *path)
{
    return open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0664);
}

static const char *base_name(const char *path)
{
    const char *b = strrchr(path, '/');
    return b ? b + 1 : path;
}

/* The lower-case hex SHA-256 of the file's bytes into hex (65 bytes). */
static mg_status hash_file(const char *path, char *hex, mg_error *err)
{
    unsigned char digest[32];
    mg_sha256_ctx ctx;
    mg_sha256_init(&ctx);
    mg_status st = mg_sha256_update_file(&ctx, path, NULL, err);
    if (st != MG_OK)
        return st;
    mg_sha256_final(&ctx, digest);
    mg_sha256_digest_hex(digest, hex);
    return MG_OK;
}

/* The digest a checksum file gives for `name`, or an error saying why the
 * file is not a checksum line for it. */
static mg_status read_sidecar(const char *path, const char *name, char *hex, mg_error *err)
{
    char sidecar[4200], line[SIDECAR_MAX + 1];
    snprintf(sidecar, sizeof sidecar, "%s.sha256", path);
    int fd = open(sidecar, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        if (errno == ENOENT)
            return mg_error_set(err, MG_ERR_STATE,
                                "%s: no checksum file %s.sha256, so miagrid will not read it (written by a run that "
                                "died before finishing it, copied without it, or not written by miagrid)",
                                path, name);
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open: %s", sidecar, strerror(errno));
    }
    ssize_t n = read(fd, line, sizeof line);
    close(fd);
    if (n < 0)
        return mg_error_set(err, MG_ERR_IO, "%s: read failed: %s", sidecar, strerror(errno));
    size_t len = (size_t)n, nlen = strlen(name);
    int ok = len == 64 + 2 + nlen + 1 && line[64] == ' ' && (line[65] == ' ' || line[65] == '*') &&
             memcmp(line + 66, name, nlen) == 0 && line[len - 1] == '\n';
    for (int i = 0; ok && i < 64; i++)
        ok = (line[i] >= '0' && line[i] <= '9') || (line[i] >= 'a' && line[i] <= 'f');
    if (!ok)
        return mg_error_set(err, MG_ERR_STATE, "%s: not a checksum line for %s (expected \"<64 hex digits>  %s\")",
                            sidecar, name, name);
    memcpy(hex, line, 64);
    hex[64] = '\0';
    return MG_OK;
}

mg_status mg_store_check_file(const char *path, mg_error *err)
{
    char want[65], have[65];
    const char *name = base_name(path);
    mg_status st = read_sidecar(path, name, want, err);
    if (st != MG_OK)
        return st;
    st = hash_file(path, have, err);
    if (st != MG_OK)
        return st;
    if (strcmp(want, have) != 0)
        return mg_error_set(err, MG_ERR_DATA,
                            "%s: its bytes do not match its checksum file %s.sha256 (damaged, or changed after "
                            "miagrid wrote it); miagrid store verify --remove-bad removes it so that it is "
                            "computed again", path, name);
    return MG_OK;
}

mg_status mg_store_seal_file(const char *path, const char *final_path, mg_error *err)
{
    char hex[65], sidecar[4200], tmp[4400], host[64] = "host";
    mg_status st = hash_file(path, hex, err);
    if (st != MG_OK)
        return st;
    const char *name = base_name(final_path);
    if (strlen(name) > 256)
        return mg_error_set(err, MG_ERR_ARG, "%s: file name too long for a checksum line", final_path);
    gethostname(host, sizeof host - 1);
    snprintf(sidecar, sizeof sidecar, "%s.sha256", final_path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%s.%ld", sidecar, host, (long)getpid());
    char line[SIDECAR_MAX + 1];
    int len = snprintf(line, sizeof line, "%s  %s\n", hex, name);
    int fd = mg_store_create_file(tmp);
    if (fd < 0)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int ok = write(fd, line, (size_t)len) == len && fsync(fd) == 0;
    int saved = errno;
    if (close(fd) != 0)
        ok = 0;
    if (!ok || rename(tmp, sidecar) != 0) {
        if (ok)
            saved = errno;
        unlink(tmp);
        return mg_error_set(err, MG_ERR_IO, "%s: cannot write the checksum file: %s", sidecar, strerror(saved));
    }
    return MG_OK;
}

static herr_t hard_link_cb(hid_t group, const char *name, const H5L_info_t *info, void *op)
{
    (void)group;
    (void)name;
    (void)op;
    return info->type == H5L_TYPE_HARD ? 0 : 1;
}

int mg_store_only_hard_links(hid_t f)
{
    return H5Lvisit(f, H5_INDEX_NAME, H5_ITER_INC, hard_link_cb, NULL) == 0;
}

/* ---- what this process has checked ---------------------------------------------------- */

static size_t key_slot(const mg_verified_table *t, const char *key)
{
    size_t h = 1469598103934665603u;
    for (const char *c = key; *c; c++)
        h = (h ^ (unsigned char)*c) * 1099511628211u;
    size_t mask = t->n_slots - 1;
    for (size_t i = h & mask;; i = (i + 1) & mask)
        if (!t->slots[i].key[0] || strcmp(t->slots[i].key, key) == 0)
            return i;
}

static void identity(const struct stat *sb, const char *key, mg_verified_file *v)
{
    snprintf(v->key, sizeof v->key, "%s", key);
    v->dev = sb->st_dev;
    v->ino = sb->st_ino;
    v->size = sb->st_size;
    v->mtime_ns = (long long)sb->st_mtim.tv_sec * 1000000000LL + sb->st_mtim.tv_nsec;
}

static int same_identity(const mg_verified_file *a, const mg_verified_file *b)
{
    return a->dev == b->dev && a->ino == b->ino && a->size == b->size && a->mtime_ns == b->mtime_ns;
}

/* Remember v; a full table doubles. Forgetting is harmless (the file is
 * checked again), so running out of memory only costs time. */
static void remember(mg_verified_table *t, const mg_verified_file *v)
{
    if (2 * (t->n + 1) > t->n_slots) {
        size_t n = t->n_slots ? 2 * t->n_slots : 256;
        mg_verified_file *old = t->slots;
        size_t n_old = t->n_slots;
        t->slots = calloc(n, sizeof *t->slots);
        if (!t->slots) {
            t->slots = old;
            return;
        }
        t->n_slots = n;
        for (size_t i = 0; i < n_old; i++)
            if (old[i].key[0])
                t->slots[key_slot(t, old[i].key)] = old[i];
        free(old);
    }
    size_t i = key_slot(t, v->key);
    t->n += !t->slots[i].key[0];
    t->slots[i] = *v;
}

mg_status mg_store_check_node(const mg_store *s, const char *key, const char *path, mg_error *err)
{
    struct stat before, after;
    mg_verified_file now, later;
    mg_verified_table *t = s->verified;
    if (stat(path, &before) != 0)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open node file: %s", path, strerror(errno));
    identity(&before, key, &now);
    if (t && t->n_slots) {
        const mg_verified_file *v = &t->slots[key_slot(t, key)];
        if (v->key[0] && same_identity(v, &now))
            return MG_OK;
    }
    mg_status st = mg_store_check_file(path, err);
    if (st != MG_OK)
        return st;
    /* Remembered only if nothing changed the file while it was read. */
    if (t && stat(path, &after) == 0) {
        identity(&after, key, &later);
        if (same_identity(&now, &later))
            remember(t, &now);
    }
    return MG_OK;
}
