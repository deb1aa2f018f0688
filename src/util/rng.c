/* rng.c: xoshiro256** seeded through SHA-256 of (seed, key, stream), so a
 * node draws the same numbers whichever rank runs it. */
#include "miagrid/util.h"

#include <math.h>
#include <string.h>

void mg_rng_seed(mg_rng *rng, uint64_t seed, const char *key, const char *stream)
{
    mg_sha256_ctx c;
    uint8_t d[32];
    uint8_t sb[8];
    for (int i = 0; i < 8; i++)
        sb[i] = (uint8_t)(seed >> (8 * i));
    mg_sha256_init(&c);
    mg_sha256_update(&c, "miagrid-rng-v1", 14);
    mg_sha256_update(&c, sb, 8);
    /* Lengths keep ("ab","c") and ("a","bc") apart. */
    const char *parts[2] = {key ? key : "", stream ? stream : ""};
    for (int p = 0; p < 2; p++) {
        uint64_t n = strlen(parts[p]);
        uint8_t nb[8];
        for (int i = 0; i < 8; i++)
            nb[i] = (uint8_t)(n >> (8 * i));
        mg_sha256_update(&c, nb, 8);
        mg_sha256_update(&c, parts[p], (size_t)n);
    }
    mg_sha256_final(&c, d);
    for (int w = 0; w < 4; w++) {
        uint64_t v = 0;
        for (int i = 0; i < 8; i++)
            v |= (uint64_t)d[8 * w + i] << (8 * i);
        rng->s[w] = v;
    }
    if (!(rng->s[0] | rng->s[1] | rng->s[2] | rng->s[3]))
        rng->s[0] = 0x9E3779B97F4A7C15ull; /* the all-zero state is a fixed point */
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t mg_rng_next(mg_rng *rng)
{
    uint64_t *s = rng->s;
    uint64_t r = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return r;
}

double mg_rng_uniform(mg_rng *rng)
{
    return (double)(mg_rng_next(rng) >> 11) * 0x1.0p-53;
}

double mg_rng_normal(mg_rng *rng)
{
    double u1 = 0.0;
    while (u1 <= 0.0)
        u1 = mg_rng_uniform(rng);
    double u2 = mg_rng_uniform(rng);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

uint64_t mg_rng_below(mg_rng *rng, uint64_t n)
{
    /* Lemire's rejection keeps the result unbiased. */
    uint64_t threshold = (0 - n) % n;
    for (;;) {
        uint64_t x = mg_rng_next(rng);
        if (x >= threshold)
            return x % n;
    }
}

void mg_rng_shuffle_u32(mg_rng *rng, uint32_t *idx, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = (size_t)mg_rng_below(rng, i);
        uint32_t t = idx[i - 1];
        idx[i - 1] = idx[j];
        idx[j] = t;
    }
}
