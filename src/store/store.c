/* store.c: the store directory, its lock and format stamp, and node files
 * written under a temporary name, sealed with a checksum file and renamed
 * into place when whole. */
#define _GNU_SOURCE
#include "store/store_internal.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

struct mg_node_writer {
    mg_store *store;
    char key[65];
    char tmp[4300];
    char final[4096];
    hid_t file;
};

static const char *FORMAT_FILE = "miagrid-store";

static mg_status check_format(const char *dir, mg_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/%s", dir, FORMAT_FILE);
    FILE *f = fopen(path, "r");
    if (!f) {
        if (errno != ENOENT)
            return mg_error_set(err, MG_ERR_IO, "%s: cannot read: %s", path, strerror(errno));
        int fd = mg_store_create_file(path);
        f = fd >= 0 ? fdopen(fd, "w") : NULL;
        if (!f) {
            if (fd >= 0)
                close(fd);
            return mg_error_set(err, MG_ERR_IO, "%s: cannot create: %s", path, strerror(errno));
        }
        fprintf(f, "miagrid store format %d\n", MG_STORE_FORMAT);
        if (fclose(f) != 0)
            return mg_error_set(err, MG_ERR_IO, "%s: cannot write: %s", path, strerror(errno));
        return MG_OK;
    }
    char line[128] = "";
    int version = -1;
    if (fgets(line, sizeof line, f) == NULL || sscanf(line, "miagrid store format %d", &version) != 1) {
        fclose(f);
        return mg_error_set(err, MG_ERR_STATE, "%s: not a miagrid store stamp (first line: \"%.40s\")", path, line);
    }
    fclose(f);
    if (version != MG_STORE_FORMAT)
        return mg_error_set(err, MG_ERR_STATE,
                            "%s: store has format %d but this miagrid (%s) reads format %d; "
                            "use a new store directory or the matching miagrid version",
                            dir, version, MG_VERSION, MG_STORE_FORMAT);
    return MG_OK;
}

/* One directory level; an existing directory is fine. The store never
 * creates the directories above itself: a path from a grid is used as given,
 * and a typo should not leave a tree of folders behind. */
static mg_status make_dir(const char *path, const char *store, mg_error *err)
{
    struct stat sb;
    if (mkdir(path, 0775) == 0)
        return MG_OK;
    int e = errno;
    if (e == EEXIST) {
        if (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode))
            return MG_OK;
        return mg_error_set(err, MG_ERR_IO, "%s: exists and is not a directory", path);
    }
    if (e == ENOENT) {
        char parent[2048];
        snprintf(parent, sizeof parent, "%s", path);
        size_t n = strlen(parent);
        while (n > 1 && parent[n - 1] == '/')
            parent[--n] = '\0';
        char *slash = strrchr(parent, '/');
        if (slash)
            *(slash == parent ? slash + 1 : slash) = '\0';
        else
            snprintf(parent, sizeof parent, ".");
        return mg_error_set(err, MG_ERR_IO,
                            "cannot create the store directory %s: the directory %s above it does not exist "
                            "(miagrid creates only the store directory itself; create %s first)",
                            store, parent, parent);
    }
    return mg_error_set(err, MG_ERR_IO, "%s: cannot create directory: %s", path, strerror(e));
}

/* The default store runs/<name> may create runs/ as well: miagrid chose that
 * place, not the grid. */
static int is_default_location(const char *dir)
{
    if (strncmp(dir, "runs/", 5) != 0)
        return 0;
    const char *name = dir + 5;
    size_t n = strcspn(name, "/");
    return n > 0 && name[n + strspn(name + n, "/")] == '\0';
}

mg_status mg_store_open(const char *dir, mg_store **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_store *s = NULL;
    *out = NULL;
    mg_h5_quiet();
    if (!dir[0] || strlen(dir) >= sizeof s->dir - 64)
        return mg_error_set(err, MG_ERR_ARG, "store path empty or too long: '%s'", dir);
    s = mg_calloc(1, sizeof *s, "store", err);
    if (!s)
        return MG_ERR_NOMEM;
    s->lock_fd = -1;
    snprintf(s->dir, sizeof s->dir, "%s", dir);
    s->verified = mg_calloc(1, sizeof *s->verified, "store", err);
    if (!s->verified)
        MG_CHECK(MG_ERR_NOMEM);
    if (is_default_location(dir))
        MG_CHECK(make_dir("runs", dir, err));
    MG_CHECK(make_dir(dir, dir, err));
    char nodes[4096];
    snprintf(nodes, sizeof nodes, "%s/nodes", dir);
    MG_CHECK(make_dir(nodes, dir, err));
    MG_CHECK(check_format(dir, err));
    *out = s;
    s = NULL;
cleanup:
    mg_store_close(&s);
    return st;
}

void mg_store_close(mg_store **sp)
{
    if (!sp || !*sp)
        return;
    if ((*sp)->lock_fd >= 0)
        close((*sp)->lock_fd); /* releases the flock */
    if ((*sp)->verified)
        free((*sp)->verified->slots);
    free((*sp)->verified);
    free(*sp);
    *sp = NULL;
}

const char *mg_store_dir(const mg_store *s) { return s->dir; }

/* Node files still under a temporary name were left by a run that died, and
 * so were checksum files whose node file never arrived; with the lock held no
 * writer can be alive, so they go. */
static void remove_stale_temporaries(const mg_store *s)
{
    char nodes[4096];
    snprintf(nodes, sizeof nodes, "%s/nodes", s->dir);
    DIR *d = opendir(nodes);
    if (!d)
        return;
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        char path[4400];
        size_t len = strlen(e->d_name);
        snprintf(path, sizeof path, "%s/%s", nodes, e->d_name);
        if (strstr(e->d_name, ".tmp.") != NULL) {
            unlink(path);
        } else if (len > 7 && strcmp(e->d_name + len - 7, ".sha256") == 0) {
            char data[4400];
            snprintf(data, sizeof data, "%.*s", (int)(strlen(path) - 7), path);
            if (access(data, F_OK) != 0 && errno == ENOENT)
                unlink(path);
        }
    }
    closedir(d);
}

mg_status mg_store_lock(mg_store *s, mg_error *err)
{
    char path[4096];
    snprintf(path, sizeof path, "%s/lock", s->dir);
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0664);
    if (fd < 0)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open lock file: %s", path, strerror(errno));
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        char holder[256] = "";
        ssize_t n = pread(fd, holder, sizeof holder - 1, 0);
        holder[n > 0 ? n : 0] = '\0';
        holder[strcspn(holder, "\n")] = '\0';
        close(fd);
        return mg_error_set(err, MG_ERR_STATE,
                            "store %s is in use by another miagrid run (%s); wait for it to end or use another store",
                            s->dir, holder[0] ? holder : "holder unknown");
    }
    char host[128] = "?";
    gethostname(host, sizeof host - 1);
    char who[300];
    int n = snprintf(who, sizeof who, "pid %ld on %s\n", (long)getpid(), host);
    if (ftruncate(fd, 0) != 0 || pwrite(fd, who, (size_t)n, 0) != n) {
        close(fd);
        return mg_error_set(err, MG_ERR_IO, "%s: cannot write lock file: %s", path, strerror(errno));
    }
    s->lock_fd = fd;
    remove_stale_temporaries(s);
    return MG_OK;
}

void mg_store_node_path(const mg_store *s, const char *key, char *buf, size_t n)
{
    snprintf(buf, n, "%s/nodes/%s.h5", s->dir, key);
}

int mg_store_node_complete(const mg_store *s, const char *key)
{
    char path[4096];
    mg_store_node_path(s, key, path, sizeof path);
    if (access(path, R_OK) != 0 || mg_store_check_node(s, key, path, NULL) != MG_OK)
        return 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (f < 0)
        return 0;
    char status[32], k[80];
    int ok = mg_h5_get_attr_str(f, "status", status, sizeof status, NULL) == MG_OK &&
             mg_h5_get_attr_str(f, "key", k, sizeof k, NULL) == MG_OK &&
             strcmp(status, "complete") == 0 && strcmp(k, key) == 0;
    H5Fclose(f);
    return ok;
}

mg_status mg_store_node_open(const mg_store *s, const char *key, hid_t *file, mg_error *err)
{
    char path[4096];
    mg_store_node_path(s, key, path, sizeof path);
    *file = H5I_INVALID_HID;
    mg_status st = mg_store_check_node(s, key, path, err);
    if (st != MG_OK)
        return st;
    *file = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    if (*file < 0)
        return mg_error_set(err, MG_ERR_HDF5, "%s: cannot open node file (missing or corrupt)", path);
    if (!mg_store_only_hard_links(*file)) {
        H5Fclose(*file);
        *file = H5I_INVALID_HID;
        return mg_error_set(err, MG_ERR_STATE, "%s: holds soft or external links, which miagrid never writes; "
                            "not read", path);
    }
    return MG_OK;
}

mg_status mg_node_writer_begin(mg_store *s, const char *key, const char *kind, const char *recipe,
                               mg_node_writer **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_node_writer *w = mg_calloc(1, sizeof *w, "node writer", err);
    *out = NULL;
    if (!w)
        return MG_ERR_NOMEM;
    w->store = s;
    w->file = H5I_INVALID_HID;
    snprintf(w->key, sizeof w->key, "%s", key);
    mg_store_node_path(s, key, w->final, sizeof w->final);
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    /* Unique per process so two writers of one node never share a temporary. */
    snprintf(w->tmp, sizeof w->tmp, "%s.tmp.%s.%ld", w->final, host, (long)getpid());
    /* Created first with the store's file mode, which HDF5 keeps when it truncates. */
    int fd = mg_store_create_file(w->tmp);
    if (fd >= 0)
        close(fd);
    w->file = H5Fcreate(w->tmp, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    if (w->file < 0)
        MG_FAIL(MG_ERR_HDF5, "%s: cannot create node file (is the store writable and the disk not full?)", w->tmp);
    MG_CHECK(mg_h5_attr_str(w->file, "key", key, err));
    MG_CHECK(mg_h5_attr_str(w->file, "kind", kind, err));
    MG_CHECK(mg_h5_attr_str(w->file, "recipe", recipe, err));
    MG_CHECK(mg_h5_attr_str(w->file, "status", "writing", err));
    MG_CHECK(mg_h5_attr_i64(w->file, "store_format", MG_STORE_FORMAT, err));
    MG_CHECK(mg_h5_attr_str(w->file, "miagrid_version", MG_VERSION, err));
    *out = w;
    w = NULL;
cleanup:
    if (w)
        mg_node_writer_abort(&w);
    return st;
}

hid_t mg_node_writer_file(mg_node_writer *w) { return w->file; }

static mg_status fsync_path(const char *path, int dir, mg_error *err)
{
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDONLY) | O_CLOEXEC);
    if (fd < 0)
        return mg_error_set(err, MG_ERR_IO, "%s: cannot open for fsync: %s", path, strerror(errno));
    int rc = fsync(fd);
    close(fd);
    if (rc != 0 && !dir)
        return mg_error_set(err, MG_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
    return MG_OK;
}

mg_status mg_node_writer_commit(mg_node_writer **wp, mg_error *err)
{
    mg_status st = MG_OK;
    mg_node_writer *w = *wp;
    *wp = NULL;
    MG_CHECK(mg_h5_attr_str(w->file, "status", "complete", err));
    if (H5Fclose(w->file) < 0) {
        w->file = H5I_INVALID_HID;
        MG_FAIL(MG_ERR_HDF5, "%s: closing the node file failed (disk full?)", w->tmp);
    }
    w->file = H5I_INVALID_HID;
    MG_CHECK(fsync_path(w->tmp, 0, err));
    MG_CHECK(mg_store_seal_file(w->tmp, w->final, err));
    if (rename(w->tmp, w->final) != 0)
        MG_FAIL(MG_ERR_IO, "cannot rename %s to %s: %s", w->tmp, w->final, strerror(errno));
    char nodes[4096];
    snprintf(nodes, sizeof nodes, "%s/nodes", w->store->dir);
    fsync_path(nodes, 1, NULL);
    free(w);
    return MG_OK;
cleanup:
    mg_node_writer_abort(&w);
    return st;
}

void mg_node_writer_abort(mg_node_writer **wp)
{
    if (!wp || !*wp)
        return;
    mg_node_writer *w = *wp;
    if (w->file >= 0)
        H5Fclose(w->file);
    unlink(w->tmp);
    free(w);
    *wp = NULL;
}

static void failure_path(const mg_store *s, const char *key, char *buf, size_t n)
{
    snprintf(buf, n, "%s/nodes/%s.failed", s->dir, key);
}

mg_status mg_store_record_failure(mg_store *s, const char *key, const char *msg, mg_error *err)
{
    char path[4096], tmp[4200];
    failure_path(s, key, path, sizeof path);
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    int fd = mg_store_create_file(tmp);
    FILE *f = fd >= 0 ? fdopen(fd, "w") : NULL;
    if (!f) {
        if (fd >= 0)
            close(fd);
        return mg_error_set(err, MG_ERR_IO, "%s: cannot write failure record: %s", tmp, strerror(errno));
    }
    char when[40];
    mg_iso_time(when, sizeof when);
    /* One line of message first, so readers need no parser. */
    for (const char *c = msg; *c; c++)
        fputc(*c == '\n' ? ' ' : *c, f);
    fprintf(f, "\nfailed at %s\n", when);
    if (fclose(f) != 0 || rename(tmp, path) != 0) {
        unlink(tmp);
        return mg_error_set(err, MG_ERR_IO, "%s: cannot write failure record: %s", path, strerror(errno));
    }
    return MG_OK;
}

int mg_store_node_failed(const mg_store *s, const char *key, char *buf, size_t n)
{
    char path[4096];
    failure_path(s, key, path, sizeof path);
    FILE *f = fopen(path, "r");
    if (!f)
        return 0;
    if (buf && n) {
        buf[0] = '\0';
        if (fgets(buf, (int)n, f))
            buf[strcspn(buf, "\n")] = '\0';
    }
    fclose(f);
    return 1;
}

void mg_store_clear_failure(mg_store *s, const char *key)
{
    char path[4096];
    failure_path(s, key, path, sizeof path);
    unlink(path);
}
