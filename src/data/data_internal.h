/*
 * data_internal.h: helpers shared by the dataset loaders in src/data/.
 */
#ifndef MIAGRID_DATA_INTERNAL_H
#define MIAGRID_DATA_INTERNAL_H

#include <stddef.h>

#include "miagrid/data.h"

/* Read a whole file, gzip-compressed or plain (zlib tells them apart by
 * content), into a NUL-terminated buffer the caller frees. */
mg_status mg_data_read_all(const char *path, char **out, size_t *len, mg_error *err);

/* Load an IDX image/label pair and append its rows to d, which is either
 * all-zero (the shape is then taken from the file) or holds rows of the same
 * image shape and n_classes. On failure d keeps its earlier rows. */
mg_status mg_data_idx_append(const char *images_path, const char *labels_path, int n_classes,
                             mg_dataset *d, mg_error *err);

#endif
