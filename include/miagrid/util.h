/*
 * util.h: what every miagrid module shares: status codes and error messages,
 * the seeded random number generator, SHA-256 for content addressing, a
 * growable string buffer, and checked number parsing.
 */
#ifndef MIAGRID_UTIL_H
#define MIAGRID_UTIL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ---- status and errors ---------------------------------------------------- */

typedef enum {
    MG_OK = 0,
    MG_ERR_CONFIG,   /* the grid file is wrong: message names file:line:column and key */
    MG_ERR_IO,       /* a file could not be opened, read or written */
    MG_ERR_DATA,     /* a data file is malformed (bad magic, truncated, labels out of range) */
    MG_ERR_HDF5,     /* an HDF5 call failed */
    MG_ERR_MPI,      /* an MPI call failed */
    MG_ERR_NOMEM,    /* an allocation failed or a size would overflow */
    MG_ERR_NUMERIC,  /* NaN or infinity in training or data */
    MG_ERR_ARG,      /* a caller passed an invalid argument (a bug or a bad command line) */
    MG_ERR_STATE,    /* the store or run is in a state that forbids the operation */
    MG_ERR_INTERNAL, /* an invariant broke: a bug */
    MG_ERR_INTERRUPTED /* stopped on request (signal, wall time); nothing lost, rerun to resume */
} mg_status;

/* An error report: the status and a user-facing message. Functions that can
 * fail take an `mg_error *err` (which may be NULL) and fill it on failure. */
typedef struct {
    mg_status status;
    char msg[1024];
} mg_error;

/* Name of a status, e.g. "config error". Never NULL. */
const char *mg_status_str(mg_status st);

/* Fill `err` (if not NULL) with `st` and the formatted message; returns `st`
 * so that `return mg_error_set(err, MG_ERR_IO, "...")` reads naturally.
 * A message already present is replaced. */
mg_status mg_error_set(mg_error *err, mg_status st, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

/* Prefix the existing message of `err` with context ("loading node abc: ").
 * Returns err->status (or `MG_OK` when err is NULL). */
mg_status mg_error_prefix(mg_error *err, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

void mg_error_clear(mg_error *err);

/* Evaluate `call` once; on failure store its status in the local `st` and jump
 * to the function's `cleanup:` label. */
#define MG_CHECK(call)                  \
    do {                                \
        mg_status mg_check_s_ = (call); \
        if (mg_check_s_ != MG_OK) {     \
            st = mg_check_s_;           \
            goto cleanup;               \
        }                               \
    } while (0)

/* Set an error and jump to cleanup. */
#define MG_FAIL(code, ...)                                  \
    do {                                                    \
        st = mg_error_set(err, (code), __VA_ARGS__);        \
        goto cleanup;                                       \
    } while (0)

/* ---- allocation ------------------------------------------------------------ */

/* calloc/malloc that report an error instead of returning NULL silently, and
 * that check n*size for overflow. `what` names the buffer in the message. */
void *mg_calloc(size_t n, size_t size, const char *what, mg_error *err);
void *mg_malloc(size_t n, size_t size, const char *what, mg_error *err);
char *mg_strdup(const char *s, mg_error *err);

/* ---- random numbers ---------------------------------------------------------- */

/* xoshiro256** state. Seeded from (seed, key, stream) through SHA-256, so a
 * node's random numbers depend only on its recipe, never on the rank. */
typedef struct {
    uint64_t s[4];
} mg_rng;

void mg_rng_seed(mg_rng *rng, uint64_t seed, const char *key, const char *stream);
uint64_t mg_rng_next(mg_rng *rng);
/* Uniform in [0, 1) with 53 random bits. */
double mg_rng_uniform(mg_rng *rng);
/* Standard normal (Box-Muller, no cached second value so the stream is
 * stateless beyond `s`). */
double mg_rng_normal(mg_rng *rng);
/* Uniform integer in [0, n), unbiased. n must be > 0. */
uint64_t mg_rng_below(mg_rng *rng, uint64_t n);
/* Fisher-Yates shuffle of idx[0..n). */
void mg_rng_shuffle_u32(mg_rng *rng, uint32_t *idx, size_t n);

/* ---- hashing ---------------------------------------------------------------- */

typedef struct {
    uint32_t h[8];
    uint64_t len;
    uint8_t buf[64];
    size_t nbuf;
} mg_sha256_ctx;

void mg_sha256_init(mg_sha256_ctx *c);
void mg_sha256_update(mg_sha256_ctx *c, const void *data, size_t n);
void mg_sha256_final(mg_sha256_ctx *c, uint8_t out[32]);
void mg_sha256(const void *data, size_t n, uint8_t out[32]);
/* Lower-case hex of the first `nbytes` bytes of the digest into `hex`, which
 * must hold 2*nbytes+1 characters. */
void mg_sha256_hex(const void *data, size_t n, size_t nbytes, char *hex);
/* Lower-case hex of a digest (65 characters with the NUL). */
void mg_sha256_digest_hex(const uint8_t digest[32], char hex[65]);
/* Add the bytes of the file at path to c; *bytes (may be NULL) says how
 * many. An unreadable file is an MG_ERR_IO naming it. */
mg_status mg_sha256_update_file(mg_sha256_ctx *c, const char *path, uint64_t *bytes, mg_error *err);

/* ---- string buffer ------------------------------------------------------------ */

typedef struct {
    char *s;     /* always NUL-terminated once anything was appended */
    size_t len;
    size_t cap;
    int oom;     /* set when an allocation failed; appends become no-ops */
} mg_strbuf;

void mg_strbuf_init(mg_strbuf *b);
void mg_strbuf_free(mg_strbuf *b);
void mg_strbuf_append(mg_strbuf *b, const char *s);
void mg_strbuf_appendn(mg_strbuf *b, const char *s, size_t n);
void mg_strbuf_printf(mg_strbuf *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Append `s` as a JSON string literal, quoted and escaped. */
void mg_strbuf_json_str(mg_strbuf *b, const char *s);
/* Append a double in the shortest form that round-trips ("%.17g" trimmed),
 * so canonical recipes hash the same on every machine. */
void mg_strbuf_json_num(mg_strbuf *b, double v);
/* Detach the string (caller frees); the buffer is left empty. NULL on OOM. */
char *mg_strbuf_take(mg_strbuf *b);

/* ---- number parsing ------------------------------------------------------------ */

/* Whole-string conversions with endptr and range checks. Return 0 on success,
 * -1 if `s` is not entirely a number of that kind or is out of range. */
int mg_parse_double(const char *s, double *out);
int mg_parse_long(const char *s, long *out);

/* ---- time and files ---------------------------------------------------------- */

/* Monotonic seconds. */
double mg_now(void);
/* Wall-clock time as ISO 8601 UTC into buf (at least 32 bytes). */
void mg_iso_time(char *buf, size_t n);
/* Read a whole file into a NUL-terminated buffer (caller frees). */
mg_status mg_read_file(const char *path, char **out, size_t *len, mg_error *err);
/* mkdir -p; existing directories are fine. */
mg_status mg_mkdirs(const char *path, mg_error *err);

#ifdef __cplusplus
}
#endif
#endif
