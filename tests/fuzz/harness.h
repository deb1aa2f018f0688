/*
 * harness.h: what the libFuzzer targets of tests/fuzz share: a private
 * temporary directory for loaders that read from a path, a cursor over the
 * fuzzer's bytes, and the invariant check that turns a wrong result into a
 * crash the fuzzer reports.
 */
#ifndef MG_FUZZ_HARNESS_H
#define MG_FUZZ_HARNESS_H

#include <stddef.h>
#include <stdint.h>

/* The grid whose plan names the node files fuzz_node writes (the seed
 * generator writes its node seeds for the same keys). */
#define FZ_NODE_GRID "name: fz\nseeds: [0]\naxes:\n  arch: lenet5\n  sparsity: [0, 0.5]\nattacks: [loss]\n"

/* The libFuzzer entry points every target defines. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerInitialize(int *argc, char ***argv);

/* A directory of this process's own, made on first use and removed at exit:
 * under $MG_FUZZ_TMPDIR, else /dev/shm, else $TMPDIR or /tmp. */
const char *fz_tmpdir(void);

/* fz_tmpdir()/name into buf (n bytes). */
void fz_path(char *buf, size_t n, const char *name);

/* Write n bytes to path (replacing it); aborts if the file system fails,
 * since a harness that cannot write its input tests nothing. */
void fz_write(const char *path, const void *data, size_t n);

/* Abort with a message when an invariant of a successful load is broken. */
void fz_require(int cond, const char *what);

/* Consumes the fuzzer's bytes front to back; reads past the end give zeros. */
typedef struct {
    const uint8_t *p;
    size_t n;
} fz_input;

uint8_t fz_byte(fz_input *in);
uint16_t fz_u16(fz_input *in);
/* Up to n bytes from the front (fewer at the end); *got says how many. */
const uint8_t *fz_take(fz_input *in, size_t n, size_t *got);

#endif
