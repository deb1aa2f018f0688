/*
 * tree_test_files.h: fresh scratch folders for the data tests, so a test
 * that lays out a tree of files starts from nothing on every run. Needs
 * _POSIX_C_SOURCE 200809L before the first include.
 */
#ifndef MG_TREE_TEST_FILES_H
#define MG_TREE_TEST_FILES_H

#include <dirent.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

/* Remove path and everything below it (symbolic links are not followed). */
static inline void tf_rmtree(const char *path)
{
    struct stat sb;
    if (lstat(path, &sb) != 0)
        return;
    if (S_ISDIR(sb.st_mode)) {
        DIR *d = opendir(path);
        if (d) {
            struct dirent *e;
            char sub[4096];
            while ((e = readdir(d)) != NULL) {
                if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, ".."))
                    continue;
                int w = snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
                if (w > 0 && (size_t)w < sizeof sub)
                    tf_rmtree(sub);
            }
            closedir(d);
        }
        rmdir(path);
    } else {
        unlink(path);
    }
}

/* An empty folder at path (made afresh). */
static inline int tf_fresh_dir(const char *path)
{
    tf_rmtree(path);
    return mkdir(path, 0755);
}

#endif
