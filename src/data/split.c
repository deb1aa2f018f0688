/*
 * split.c: the split protocols that cut a dataset into target and shadow
 * members, non-members and dev parts and a population pool, and gathering
 * the chosen rows. Every protocol is deterministic in (seed, stream).
 *
 * mia-prune and wemem follow their authors' code (Yuan & Zhang's
 * pretrain.py, Shang et al.'s pretrain_modi.py), which cut with scikit-learn's
 * train_test_split: a fraction f of m samples gives ceil(f * m) to the second
 * part and the rest to the first. The part sizes here are computed the same
 * way, so they match theirs; which samples land where comes from our own
 * generator, not NumPy's.
 */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/data.h"

void mg_index_lists_free(mg_index_list *lists, size_t k)
{
    if (!lists)
        return;
    for (size_t i = 0; i < k; i++) {
        free(lists[i].idx);
        lists[i].idx = NULL;
        lists[i].n = 0;
    }
}

/* "a + b + c" into buf, for messages. */
static void sizes_text(const size_t *sizes, size_t k, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; i < k && len + 1 < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%zu", i ? " + " : "", sizes[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
    if (len + 1 >= cap && cap > 4)
        memcpy(buf + cap - 4, "...", 4);
}

/* A copy of idx[0..n) as a list (empty lists own no memory). */
static mg_status list_from(const uint32_t *idx, size_t n, mg_index_list *out, mg_error *err)
{
    out->idx = NULL;
    out->n = 0;
    if (n == 0)
        return MG_OK;
    out->idx = mg_malloc(n, sizeof(uint32_t), "split part", err);
    if (!out->idx)
        return MG_ERR_NOMEM;
    memcpy(out->idx, idx, n * sizeof(uint32_t));
    out->n = n;
    return MG_OK;
}

mg_status mg_split_parts(size_t n_total, const size_t *sizes, size_t k, uint64_t seed, const char *stream,
                         mg_index_list *parts, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *perm = NULL;
    char text[512];
    for (size_t i = 0; i < k; i++) {
        parts[i].idx = NULL;
        parts[i].n = 0;
    }

    size_t sum = 0;
    for (size_t i = 0; i < k; i++) {
        if (sum > SIZE_MAX - sizes[i]) {
            sizes_text(sizes, k, text, sizeof text);
            MG_FAIL(MG_ERR_CONFIG, "the split sizes (%s) overflow when added", text);
        }
        sum += sizes[i];
    }
    if (sum > n_total) {
        sizes_text(sizes, k, text, sizeof text);
        MG_FAIL(MG_ERR_CONFIG, "the split sizes add up to %zu (%s) but the dataset holds only %zu samples", sum,
                text, n_total);
    }
    if (n_total > UINT32_MAX)
        MG_FAIL(MG_ERR_ARG, "a dataset of %zu samples is too large to split (limit %u)", n_total,
                (unsigned)UINT32_MAX);

    perm = mg_malloc(n_total ? n_total : 1, sizeof *perm, "split permutation", err);
    if (!perm)
        MG_CHECK(MG_ERR_NOMEM);
    for (size_t i = 0; i < n_total; i++)
        perm[i] = (uint32_t)i;
    mg_rng rng;
    mg_rng_seed(&rng, seed, "split", stream);
    mg_rng_shuffle_u32(&rng, perm, n_total);

    size_t at = 0;
    for (size_t i = 0; i < k; i++) {
        MG_CHECK(list_from(perm + at, sizes[i], &parts[i], err));
        at += sizes[i];
    }

cleanup:
    free(perm);
    if (st != MG_OK)
        mg_index_lists_free(parts, k);
    return st;
}

mg_status mg_split_four_way(size_t n_total, const size_t sizes[4], uint64_t seed, const char *stream,
                            mg_split *out, mg_error *err)
{
    mg_index_list parts[4];
    memset(out, 0, sizeof *out);
    mg_status st = mg_split_parts(n_total, sizes, 4, seed, stream, parts, err);
    if (st != MG_OK)
        return st;
    for (int k = 0; k < 4; k++) {
        /* Callers of the four-way split expect a buffer even for an empty part. */
        out->idx[k] = parts[k].idx ? parts[k].idx : mg_malloc(1, sizeof(uint32_t), "split part", err);
        out->n[k] = parts[k].n;
        if (!out->idx[k]) {
            mg_split_free(out);
            return MG_ERR_NOMEM;
        }
    }
    return MG_OK;
}

void mg_split_free(mg_split *s)
{
    if (!s)
        return;
    for (int k = 0; k < 4; k++)
        free(s->idx[k]);
    memset(s, 0, sizeof *s);
}

/* ---- protocols ------------------------------------------------------------------------ */

static const char *const protocol_names[] = {"four-way", "explicit", "mia-prune", "wemem"};

const char *mg_split_protocol_str(mg_split_protocol p)
{
    return (unsigned)p < 4 ? protocol_names[p] : "unknown";
}

int mg_split_protocol_parse(const char *s, mg_split_protocol *out)
{
    for (int i = 0; s && i < 4; i++)
        if (!strcmp(s, protocol_names[i])) {
            *out = (mg_split_protocol)i;
            return 0;
        }
    return -1;
}

void mg_split_cfg_init(mg_split_cfg *cfg, mg_split_protocol p)
{
    memset(cfg, 0, sizeof *cfg);
    cfg->protocol = p;
    cfg->n_shadows = 1;
    if (p == MG_PROTO_FOUR_WAY || p == MG_PROTO_EXPLICIT) {
        cfg->target_train = cfg->target_test = cfg->shadow_train = cfg->shadow_test = 2500;
    } else {
        cfg->n_shadows = 5;
        cfg->holdout = 0.1;
        cfg->test_fraction = 0.2;
    }
}

void mg_split_roles_free(mg_split_roles *r)
{
    if (!r)
        return;
    mg_index_lists_free(&r->target_train, 1);
    mg_index_lists_free(&r->target_test, 1);
    mg_index_lists_free(&r->target_dev, 1);
    mg_index_lists_free(&r->population, 1);
    if (r->shadow_train)
        mg_index_lists_free(r->shadow_train, r->n_shadows);
    if (r->shadow_test)
        mg_index_lists_free(r->shadow_test, r->n_shadows);
    if (r->shadow_dev)
        mg_index_lists_free(r->shadow_dev, r->n_shadows);
    free(r->shadow_train);
    free(r->shadow_test);
    free(r->shadow_dev);
    memset(r, 0, sizeof *r);
}

/* scikit-learn's size for the second part of train_test_split(m, test_size=f). */
static size_t frac_ceil(double f, size_t m)
{
    return (size_t)ceil(f * (double)m);
}

/* A seeded permutation of pool[0..n) into *out (caller frees). */
static mg_status permute(const uint32_t *pool, size_t n, uint64_t seed, const char *stream, const char *sub,
                         uint32_t **out, mg_error *err)
{
    char name[256];
    snprintf(name, sizeof name, "%s/%s", stream, sub);
    *out = mg_malloc(n ? n : 1, sizeof(uint32_t), "split permutation", err);
    if (!*out)
        return MG_ERR_NOMEM;
    if (n)
        memcpy(*out, pool, n * sizeof(uint32_t));
    mg_rng rng;
    mg_rng_seed(&rng, seed, "split", name);
    mg_rng_shuffle_u32(&rng, *out, n);
    return MG_OK;
}

static mg_status alloc_shadows(mg_split_roles *r, size_t k, mg_error *err)
{
    r->n_shadows = k;
    r->shadow_train = mg_calloc(k, sizeof *r->shadow_train, "shadow parts", err);
    r->shadow_test = mg_calloc(k, sizeof *r->shadow_test, "shadow parts", err);
    r->shadow_dev = mg_calloc(k, sizeof *r->shadow_dev, "shadow parts", err);
    return r->shadow_train && r->shadow_test && r->shadow_dev ? MG_OK : MG_ERR_NOMEM;
}

/* four-way and explicit: one permutation, consecutive parts in the order the
 * header documents (the first four are mg_split_four_way's). */
static mg_status roles_consecutive(const mg_split_cfg *cfg, size_t n_total, uint64_t seed, const char *stream,
                                   mg_split_roles *out, mg_error *err)
{
    mg_status st = MG_OK;
    size_t k = cfg->n_shadows;
    size_t n_parts = 3 * k + 4;
    size_t *sizes = NULL;
    mg_index_list *parts = NULL;

    sizes = mg_calloc(n_parts, sizeof *sizes, "split sizes", err);
    parts = mg_calloc(n_parts, sizeof *parts, "split parts", err);
    if (!sizes || !parts)
        MG_CHECK(MG_ERR_NOMEM);
    size_t at = 0;
    sizes[at++] = cfg->target_train;
    sizes[at++] = cfg->target_test;
    sizes[at++] = cfg->shadow_train;
    sizes[at++] = cfg->shadow_test;
    sizes[at++] = cfg->target_dev;
    sizes[at++] = cfg->shadow_dev;
    for (size_t s = 1; s < k; s++) {
        sizes[at++] = cfg->shadow_train;
        sizes[at++] = cfg->shadow_test;
        sizes[at++] = cfg->shadow_dev;
    }
    sizes[at++] = cfg->population;
    st = mg_split_parts(n_total, sizes, at, seed, stream, parts, err);
    if (st != MG_OK) {
        mg_error_prefix(err, "%s split: ", mg_split_protocol_str(cfg->protocol));
        goto cleanup;
    }
    MG_CHECK(alloc_shadows(out, k, err));
    /* Move the lists; parts[] keeps nothing to free afterwards. */
    out->target_train = parts[0];
    out->target_test = parts[1];
    out->shadow_train[0] = parts[2];
    out->shadow_test[0] = parts[3];
    out->target_dev = parts[4];
    out->shadow_dev[0] = parts[5];
    at = 6;
    for (size_t s = 1; s < k; s++) {
        out->shadow_train[s] = parts[at++];
        out->shadow_test[s] = parts[at++];
        out->shadow_dev[s] = parts[at++];
    }
    out->population = parts[at++];
    memset(parts, 0, n_parts * sizeof *parts);

cleanup:
    if (parts)
        mg_index_lists_free(parts, n_parts);
    free(parts);
    free(sizes);
    return st;
}

/* The attacker pool as population: all of it, or `want` samples of it. */
static mg_status take_population(const mg_split_cfg *cfg, const uint32_t *pool, size_t n, uint64_t seed,
                                 const char *stream, mg_split_roles *out, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *perm = NULL;
    if (cfg->population > n)
        return mg_error_set(err, MG_ERR_CONFIG, "%s split: population %zu is larger than the attacker's %zu samples",
                            mg_split_protocol_str(cfg->protocol), cfg->population, n);
    if (cfg->population == 0)
        return list_from(pool, n, &out->population, err);
    MG_CHECK(permute(pool, n, seed, stream, "population", &perm, err));
    MG_CHECK(list_from(perm, cfg->population, &out->population, err));
cleanup:
    free(perm);
    return st;
}

/* mia-prune: one model's split of `pool`: test ceil(0.45 m), then of the
 * rest dev ceil(0.1818 r) and train the remainder. */
static mg_status mia_prune_model(const uint32_t *pool, size_t m, uint64_t seed, const char *stream, const char *sub,
                                 mg_index_list *train, mg_index_list *test, mg_index_list *dev, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *perm = NULL;
    size_t n_test = frac_ceil(0.45, m);
    size_t rest = m - n_test;
    size_t n_dev = frac_ceil(0.1818, rest);
    size_t n_train = rest - n_dev;
    MG_CHECK(permute(pool, m, seed, stream, sub, &perm, err));
    MG_CHECK(list_from(perm, n_test, test, err));
    MG_CHECK(list_from(perm + n_test, n_dev, dev, err));
    MG_CHECK(list_from(perm + n_test + n_dev, n_train, train, err));
cleanup:
    free(perm);
    return st;
}

static mg_status roles_mia_prune(const mg_split_cfg *cfg, size_t n_total, uint64_t seed, const char *stream,
                                 mg_split_roles *out, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *all = NULL, *perm = NULL;
    char sub[48];
    if (n_total < 8)
        return mg_error_set(err, MG_ERR_CONFIG, "mia-prune split: the dataset holds %zu samples; expected at least 8",
                            n_total);
    all = mg_malloc(n_total, sizeof *all, "split pool", err);
    if (!all)
        MG_CHECK(MG_ERR_NOMEM);
    for (size_t i = 0; i < n_total; i++)
        all[i] = (uint32_t)i;
    MG_CHECK(permute(all, n_total, seed, stream, "mia-prune/halves", &perm, err));
    size_t n_attack = frac_ceil(0.5, n_total), n_victim = n_total - n_attack;
    const uint32_t *victim = perm, *attack = perm + n_victim;

    MG_CHECK(mia_prune_model(victim, n_victim, seed, stream, "mia-prune/victim", &out->target_train,
                             &out->target_test, &out->target_dev, err));
    MG_CHECK(alloc_shadows(out, cfg->n_shadows, err));
    for (size_t s = 0; s < cfg->n_shadows; s++) {
        snprintf(sub, sizeof sub, "mia-prune/shadow%zu", s);
        MG_CHECK(mia_prune_model(attack, n_attack, seed, stream, sub, &out->shadow_train[s], &out->shadow_test[s],
                                 &out->shadow_dev[s], err));
    }
    MG_CHECK(take_population(cfg, attack, n_attack, seed, stream, out, err));
cleanup:
    free(all);
    free(perm);
    return st;
}

/* wemem: one model's split: of its half `pool` (m samples) it holds out
 * ceil(holdout m) and trains on the rest; its non-member pool (held out +
 * the test part) gives test ceil(0.66 p) and dev the rest. */
static mg_status wemem_model(const mg_split_cfg *cfg, const uint32_t *pool, size_t m, const uint32_t *test_part,
                             size_t n_te, uint64_t seed, const char *stream, const char *sub, mg_index_list *train,
                             mg_index_list *test, mg_index_list *dev, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *perm = NULL, *nonmem = NULL, *perm2 = NULL;
    char name[64];
    size_t n_hold = frac_ceil(cfg->holdout, m);
    size_t n_train = m - n_hold;
    snprintf(name, sizeof name, "%s/members", sub);
    MG_CHECK(permute(pool, m, seed, stream, name, &perm, err));
    MG_CHECK(list_from(perm + n_hold, n_train, train, err));

    size_t p = n_hold + n_te;
    nonmem = mg_malloc(p ? p : 1, sizeof *nonmem, "split pool", err);
    if (!nonmem)
        MG_CHECK(MG_ERR_NOMEM);
    memcpy(nonmem, perm, n_hold * sizeof *nonmem);
    if (n_te)
        memcpy(nonmem + n_hold, test_part, n_te * sizeof *nonmem);
    snprintf(name, sizeof name, "%s/nonmembers", sub);
    MG_CHECK(permute(nonmem, p, seed, stream, name, &perm2, err));
    size_t n_test = frac_ceil(0.66, p);
    size_t n_dev = p - n_test;
    MG_CHECK(list_from(perm2, n_dev, dev, err));
    MG_CHECK(list_from(perm2 + n_dev, n_test, test, err));
cleanup:
    free(perm);
    free(nonmem);
    free(perm2);
    return st;
}

static mg_status roles_wemem(const mg_split_cfg *cfg, size_t n_total, size_t n_train, uint64_t seed,
                             const char *stream, mg_split_roles *out, mg_error *err)
{
    mg_status st = MG_OK;
    uint32_t *all = NULL, *pool = NULL, *halves = NULL;
    char sub[48];
    if (!(cfg->holdout > 0.0 && cfg->holdout < 1.0) || !(cfg->test_fraction > 0.0 && cfg->test_fraction < 1.0))
        return mg_error_set(err, MG_ERR_CONFIG, "wemem split: holdout %g and test_fraction %g must lie in (0, 1)",
                            cfg->holdout, cfg->test_fraction);
    if (n_train > n_total)
        return mg_error_set(err, MG_ERR_ARG, "wemem split: %zu training rows of %zu", n_train, n_total);
    all = mg_malloc(n_total ? n_total : 1, sizeof *all, "split pool", err);
    if (!all)
        MG_CHECK(MG_ERR_NOMEM);
    for (size_t i = 0; i < n_total; i++)
        all[i] = (uint32_t)i;
    /* The training part and the test part, in index order for the official
     * split, or drawn at random for a dataset without one. */
    const uint32_t *train_part = all, *test_part = all + n_train;
    size_t n_tr = n_train, n_te = n_total - n_train;
    if (n_train == n_total) {
        MG_CHECK(permute(all, n_total, seed, stream, "wemem/test-part", &pool, err));
        n_te = frac_ceil(cfg->test_fraction, n_total);
        n_tr = n_total - n_te;
        test_part = pool;
        train_part = pool + n_te;
    }
    if (n_tr < 8)
        MG_FAIL(MG_ERR_CONFIG, "wemem split: the training part holds %zu samples; expected at least 8", n_tr);
    MG_CHECK(permute(train_part, n_tr, seed, stream, "wemem/halves", &halves, err));
    size_t n_attack = frac_ceil(0.5, n_tr), n_victim = n_tr - n_attack;
    const uint32_t *victim = halves, *attack = halves + n_victim;

    MG_CHECK(wemem_model(cfg, victim, n_victim, test_part, n_te, seed, stream, "wemem/victim", &out->target_train,
                         &out->target_test, &out->target_dev, err));
    MG_CHECK(alloc_shadows(out, cfg->n_shadows, err));
    for (size_t s = 0; s < cfg->n_shadows; s++) {
        snprintf(sub, sizeof sub, "wemem/shadow%zu", s);
        MG_CHECK(wemem_model(cfg, attack, n_attack, test_part, n_te, seed, stream, sub, &out->shadow_train[s],
                             &out->shadow_test[s], &out->shadow_dev[s], err));
    }
    MG_CHECK(take_population(cfg, attack, n_attack, seed, stream, out, err));
cleanup:
    free(all);
    free(pool);
    free(halves);
    return st;
}

mg_status mg_split_roles_make(const mg_split_cfg *cfg, size_t n_total, size_t n_train, uint64_t seed,
                              const char *stream, mg_split_roles *out, mg_error *err)
{
    mg_status st = MG_OK;
    memset(out, 0, sizeof *out);
    if (!cfg || !stream)
        return mg_error_set(err, MG_ERR_ARG, "mg_split_roles_make: cfg and stream are required");
    if (cfg->n_shadows < 1 || cfg->n_shadows > MG_SPLIT_MAX_SHADOWS ||
        (cfg->protocol == MG_PROTO_FOUR_WAY && cfg->n_shadows != 1))
        return mg_error_set(err, MG_ERR_CONFIG, "%s split: %zu shadows; expected %s",
                            mg_split_protocol_str(cfg->protocol), cfg->n_shadows,
                            cfg->protocol == MG_PROTO_FOUR_WAY ? "1" : "1 to 1024");
    if (n_total > UINT32_MAX)
        return mg_error_set(err, MG_ERR_ARG, "a dataset of %zu samples is too large to split (limit %u)", n_total,
                            (unsigned)UINT32_MAX);
    out->protocol = cfg->protocol;
    switch (cfg->protocol) {
    case MG_PROTO_FOUR_WAY:
    case MG_PROTO_EXPLICIT:
        st = roles_consecutive(cfg, n_total, seed, stream, out, err);
        break;
    case MG_PROTO_MIA_PRUNE:
        st = roles_mia_prune(cfg, n_total, seed, stream, out, err);
        break;
    case MG_PROTO_WEMEM:
        st = roles_wemem(cfg, n_total, n_train, seed, stream, out, err);
        break;
    default:
        st = mg_error_set(err, MG_ERR_ARG, "mg_split_roles_make: unknown protocol %d", (int)cfg->protocol);
        break;
    }
    if (st != MG_OK)
        mg_split_roles_free(out);
    return st;
}

void mg_dataset_gather(const mg_dataset *d, const uint32_t *idx, size_t n, float *x_out, int32_t *y_out)
{
    size_t dim = mg_dataset_dim(d);
    for (size_t i = 0; i < n; i++) {
        memcpy(x_out + i * dim, d->x + (size_t)idx[i] * dim, dim * sizeof(float));
        y_out[i] = d->y[idx[i]];
    }
}
