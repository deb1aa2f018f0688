/* store_internal.h: the store handle, shared by the store's own files only. */
#ifndef MG_STORE_INTERNAL_H
#define MG_STORE_INTERNAL_H

#include <sys/types.h>

#include "miagrid/store.h"

/* A node file whose checksum this process has checked, with the identity it
 * had then; the check is redone when any of these change. */
typedef struct {
    char key[33]; /* "" marks an empty slot */
    dev_t dev;
    ino_t ino;
    off_t size;
    long long mtime_ns;
} mg_verified_file;

typedef struct {
    mg_verified_file *slots; /* open addressing on the key; n_slots is a power of two */
    size_t n, n_slots;
} mg_verified_table;

struct mg_store {
    char dir[2048];
    int lock_fd;
    mg_verified_table *verified; /* behind a pointer: readers with a const store still remember */
};

/* Create (or truncate) a file for writing with mode 0664 less the umask, so
 * nothing miagrid writes into a store is world-writable whatever the umask.
 * Returns an open descriptor, or -1 with errno set. */
int mg_store_create_file(const char *path);

/* 1 if every link in the open file f is a hard link. miagrid writes no
 * other kind; a soft or external link in a node file would have HDF5 follow
 * it into another file that no checksum vouches for. */
int mg_store_only_hard_links(hid_t f);

/* Pass a node file's checksum (mg_store_check_file), remembering files
 * already checked by this process so that rewriting the root file every
 * minute does not read every node file again. */
mg_status mg_store_check_node(const mg_store *s, const char *key, const char *path, mg_error *err);

#endif
