/*
 * store.h: the content-addressed HDF5 store.
 *
 * Layout of a store directory:
 *   results.h5          the root file analysts open (written by rank 0 only,
 *                       replaced atomically; rebuildable from the node files)
 *   nodes/<key>.h5      one file per completed node, written by the worker that
 *                       ran it under a temporary name and renamed when whole,
 *                       so a crash leaves each node either complete or absent
 *   miagrid-store       a one-line text file naming the store format version
 *   lock                held (flock) by the run that owns the store
 *
 * Every node file and the root file have a checksum file beside them,
 * <file>.sha256 in sha256sum's format, written before the file is renamed
 * into place. A file is checked against it before HDF5 parses it (HDF5 1.10
 * can crash on malformed files), so a damaged or foreign file is refused
 * rather than read. miagrid creates the store directory itself and its
 * nodes/ folder (mode 0775), never the directories above it (except runs/
 * for the default store runs/<name>), and its files with mode 0664, both
 * less the umask.
 */
#ifndef MIAGRID_STORE_H
#define MIAGRID_STORE_H

#include <hdf5.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "miagrid/grid.h"
#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MG_STORE_FORMAT 1

typedef struct mg_store mg_store;

/* Open (creating if needed) the store directory. Only the directory itself
 * and its nodes/ folder are created: a missing parent is an MG_ERR_IO naming
 * it, except "runs" for a store at runs/<name> (the default). A store of
 * another format version is refused with MG_ERR_STATE naming the versions. */
mg_status mg_store_open(const char *dir, mg_store **out, mg_error *err);
void mg_store_close(mg_store **s);
const char *mg_store_dir(const mg_store *s);

/* Take the store's lock for this run (non-blocking). A store in use by another
 * run gives MG_ERR_STATE naming the holder. Released by mg_store_close. */
mg_status mg_store_lock(mg_store *s, mg_error *err);

/* Path of a node's file into buf. */
void mg_store_node_path(const mg_store *s, const char *key, char *buf, size_t n);
/* 1 if the node's file exists, matches its checksum file, opens, and records
 * status "complete" with the same key. */
int mg_store_node_complete(const mg_store *s, const char *key);

/* ---- writing a node ------------------------------------------------------------- */

typedef struct mg_node_writer mg_node_writer;

/* Start a node file under a temporary name; writes the recipe, key, kind and
 * format attributes. */
mg_status mg_node_writer_begin(mg_store *s, const char *key, const char *kind, const char *recipe,
                               mg_node_writer **out, mg_error *err);
hid_t mg_node_writer_file(mg_node_writer *w);
/* Record status "complete", close, flush to disk and rename into place. The
 * writer is freed whatever the outcome. */
mg_status mg_node_writer_commit(mg_node_writer **w, mg_error *err);
/* Close and delete the temporary file. */
void mg_node_writer_abort(mg_node_writer **w);

/* ---- failures ------------------------------------------------------------------- */

/* Record that a node failed: nodes/<key>.failed, a small text file whose first
 * line is the message, written under a temporary name and renamed. A node
 * with a failure record is not run again unless a run retries failures. */
mg_status mg_store_record_failure(mg_store *s, const char *key, const char *msg, mg_error *err);
/* 1 if the node has a failure record; its message goes to buf (if not NULL). */
int mg_store_node_failed(const mg_store *s, const char *key, char *buf, size_t n);
/* Remove a failure record (if any). */
void mg_store_clear_failure(mg_store *s, const char *key);

/* Open a complete node's file read-only, after checking it against its
 * checksum file (MG_ERR_STATE or MG_ERR_DATA, naming the file, when that fails). */
mg_status mg_store_node_open(const mg_store *s, const char *key, hid_t *file, mg_error *err);

/* ---- checksums ------------------------------------------------------------------ */

/* Check a file against its checksum file path.sha256 ("<64 hex digits>  <file
 * name>\n", as sha256sum writes), reading it whole, before anything parses it.
 * MG_ERR_STATE if the checksum file is missing or is not a checksum line for
 * this file name, MG_ERR_DATA if the bytes differ, MG_ERR_IO if the file
 * cannot be read; the message names the file. */
mg_status mg_store_check_file(const char *path, mg_error *err);

/* Write final_path.sha256 for the file at path (a temporary about to be renamed
 * to final_path): the SHA-256 of its bytes and final_path's file name, under a
 * temporary name, flushed and renamed. Call it before renaming the file itself
 * into place, so a file never appears without its checksum. */
mg_status mg_store_seal_file(const char *path, const char *final_path, mg_error *err);

/* ---- HDF5 helpers (intermediate groups are created as needed) -------------------- */

/* Write a dataset at `path` (e.g. "model/conv1/weight") of the given memory
 * type (H5T_NATIVE_FLOAT, ...), rank and dims. Numeric datasets of more than a
 * few KiB are chunked and deflate-compressed. */
mg_status mg_h5_write(hid_t loc, const char *path, hid_t type, int ndim, const hsize_t *dims,
                      const void *data, mg_error *err);
/* Read a whole dataset, converting to `type`; *data is malloc'ed (caller
 * frees). dims may be NULL; otherwise it receives up to 4 dims and *ndim the rank. */
mg_status mg_h5_read(hid_t loc, const char *path, hid_t type, void **data, hsize_t *dims, int *ndim,
                     mg_error *err);
mg_status mg_h5_attr_str(hid_t loc, const char *name, const char *value, mg_error *err);
mg_status mg_h5_attr_f64(hid_t loc, const char *name, double value, mg_error *err);
mg_status mg_h5_attr_i64(hid_t loc, const char *name, int64_t value, mg_error *err);
/* Read attributes; a missing attribute is MG_ERR_HDF5. Strings: buf of n bytes. */
mg_status mg_h5_get_attr_str(hid_t loc, const char *name, char *buf, size_t n, mg_error *err);
mg_status mg_h5_get_attr_f64(hid_t loc, const char *name, double *value, mg_error *err);

/* Silence HDF5's automatic error stack printing: errors reach the caller as
 * statuses with messages instead. */
void mg_h5_quiet(void);

/* ---- the root file ----------------------------------------------------------------- */

/* Per-cell status as the run left it. */
typedef enum { MG_NODE_PENDING = 0, MG_NODE_DONE = 1, MG_NODE_FAILED = 2, MG_NODE_SKIPPED = 3 } mg_node_state;
const char *mg_node_state_str(mg_node_state s);

/* (Re)write results.h5 from the grid, the plan and the node files present:
 * /grid (attrs and the YAML as given), /cells, /metrics (one row per cell x
 * model x attack x metric, from complete nodes only) and /nodes/<key> external
 * links. Written to a temporary file and renamed, so readers never see a
 * half-written root. node_state may be NULL (states are then read from the
 * files: complete or pending). */
mg_status mg_store_write_root(mg_store *s, const mg_grid *g, const mg_plan *p,
                              const mg_node_state *node_state, mg_error *err);

/* Check a store without changing it (unless remove_bad): the format stamp;
 * every node file opens, is complete, its key matches its name and the hash of
 * its recipe, and every dataset its kind needs reads back whole; the root file
 * opens and its links resolve. Prints one line per problem (and a summary) to
 * out; *n_problems counts them. With remove_bad, node files with problems are
 * deleted so the next run recomputes them. MG_ERR_IO if dir is not a store. */
mg_status mg_store_verify(const char *dir, int remove_bad, FILE *out, size_t *n_problems, mg_error *err);

/* Print one line per cell: axes, status, the target's train and test accuracy
 * and each attack's balanced accuracy on the target, read from the node files. */
mg_status mg_store_print_summary(const mg_store *s, const mg_grid *g, const mg_plan *p, FILE *out,
                                 mg_error *err);

#ifdef __cplusplus
}
#endif
#endif
