/* store_internal.h: the store handle, shared by the store's own files only. */
#ifndef MG_STORE_INTERNAL_H
#define MG_STORE_INTERNAL_H

#include "miagrid/store.h"

struct mg_store {
    char dir[2048];
    int lock_fd;
};

#endif
