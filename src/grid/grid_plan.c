/*
 * grid_plan.c: turns a parsed grid into cells and a deduplicated DAG of
 * nodes. Each node's recipe is canonical JSON (keys sorted, defaults
 * resolved, input nodes named by key), and its key is a hash of the recipe:
 * two cells that need the same model get the same key and so share one node,
 * and a node's key does not depend on which other cells the grid holds.
 */
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "grid/grid_internal.h"

/* The public plan plus the key index; mg_plan_build hands out &impl->pub. */
typedef struct {
    mg_plan pub;
    size_t cap_nodes;
    size_t max_nodes;     /* mg_grid_limits */
    size_t *slots;        /* open addressing on the key: node index + 1, 0 = empty */
    size_t n_slots;       /* a power of two, kept at least twice the node count */
    size_t *attack_block; /* every cell's attack_nodes, one allocation */
    size_t *shadow_block; /* every cell's shadows, one allocation: attack nodes point into it */
} plan_impl;

const char *mg_node_kind_str(mg_node_kind k)
{
    switch (k) {
    case MG_NODE_TRAIN: return "train";
    case MG_NODE_PRUNE: return "prune";
    case MG_NODE_ATTACK: return "attack";
    case MG_NODE_SELECT: return "select";
    }
    return "unknown";
}

const char *mg_role_str(mg_role r)
{
    switch (r) {
    case MG_ROLE_TARGET: return "target";
    case MG_ROLE_SHADOW: return "shadow";
    }
    return "unknown";
}

/* Keys are hex digests, so their first 16 digits are already a good hash. */
static uint64_t key_hash(const char *key)
{
    uint64_t h = 0;
    for (int i = 0; i < 16 && key[i]; i++) {
        char ch = key[i];
        unsigned v = (ch >= '0' && ch <= '9') ? (unsigned)(ch - '0') : (unsigned)((ch | 0x20) - 'a' + 10);
        h = (h << 4) | (v & 0xf);
    }
    return h;
}

static size_t slot_find(const plan_impl *pi, const char *key)
{
    size_t mask = pi->n_slots - 1;
    for (size_t s = (size_t)key_hash(key) & mask;; s = (s + 1) & mask) {
        size_t v = pi->slots[s];
        if (v == 0 || strcmp(pi->pub.nodes[v - 1].key, key) == 0)
            return s;
    }
}

static mg_status slots_grow(plan_impl *pi, mg_error *err)
{
    size_t n = pi->n_slots ? pi->n_slots * 2 : 1024;
    size_t *old = pi->slots, n_old = pi->n_slots;
    pi->slots = mg_calloc(n, sizeof *pi->slots, "plan index", err);
    if (!pi->slots) {
        pi->slots = old;
        return MG_ERR_NOMEM;
    }
    pi->n_slots = n;
    for (size_t i = 0; i < n_old; i++)
        if (old[i])
            pi->slots[slot_find(pi, pi->pub.nodes[old[i] - 1].key)] = old[i];
    free(old);
    return MG_OK;
}

/* Resolves one node reference: the node with this recipe's key, created (and
 * appended, so inputs always precede consumers) if new. Takes the recipe. */
static mg_status plan_intern(plan_impl *pi, mg_strbuf *recipe, const mg_node *proto, size_t *index, mg_error *err)
{
    mg_status st = MG_OK;
    char key[33];
    mg_plan *p = &pi->pub;
    char *text = mg_strbuf_take(recipe);
    if (!text)
        MG_FAIL(MG_ERR_NOMEM, "out of memory building a node recipe");
    mg_sha256_hex(text, strlen(text), 16, key);
    p->n_refs++;
    if (2 * (p->n_nodes + 1) > pi->n_slots)
        MG_CHECK(slots_grow(pi, err));
    size_t s = slot_find(pi, key);
    if (pi->slots[s]) {
        *index = pi->slots[s] - 1;
        p->nodes[*index].n_uses++;
        goto cleanup;
    }
    if (p->n_nodes >= pi->max_nodes)
        MG_FAIL(MG_ERR_CONFIG, "the plan needs more than %zu nodes; split the grid into several files (or raise "
                "the limit with MIAGRID_MAX_NODES)", pi->max_nodes);
    if (p->n_nodes == pi->cap_nodes) {
        size_t cap = pi->cap_nodes ? 2 * pi->cap_nodes : 256;
        mg_node *nodes = mg_calloc(cap, sizeof *nodes, "plan nodes", err);
        if (!nodes)
            MG_CHECK(MG_ERR_NOMEM);
        if (p->n_nodes)
            memcpy(nodes, p->nodes, p->n_nodes * sizeof *nodes);
        free(p->nodes);
        p->nodes = nodes;
        pi->cap_nodes = cap;
    }
    mg_node *n = &p->nodes[p->n_nodes];
    *n = *proto;
    memcpy(n->key, key, sizeof n->key);
    n->recipe = text;
    text = NULL;
    n->n_uses = 1;
    *index = p->n_nodes++;
    pi->slots[s] = *index + 1;
cleanup:
    free(text);
    return st;
}

/* Whether the cell's defense acts on its dense training. */
static int dense_defended(const mg_grid *g, const size_t idx[MG_AXIS_COUNT])
{
    return (g->defenses[idx[MG_AXIS_DEFENSE]].phase & MG_PHASE_DENSE) != 0;
}

/* Shadow model i > 0 of a split with several: its training recipes (dense,
 * subset, rewind point) name the index between "seed" and "split"; its prune
 * nodes differ through their input. Shadow 0 names none, so it keeps the key
 * it had when a cell trained one shadow model. */
static void recipe_shadow_index(mg_strbuf *b, int shadow)
{
    if (shadow > 0)
        mg_strbuf_printf(b, "\"shadow\":%d,", shadow);
}

/* Network slimming's L1 penalty on batch-norm scales, when the cell's
 * pruning is slim with a penalty: it acts on the dense training. */
static double slim_penalty(const mg_grid *g, const size_t idx[MG_AXIS_COUNT])
{
    const mg_prune_spec *ps = &g->prunes[idx[MG_AXIS_PRUNE]];
    return strcmp(ps->method, "slim") == 0 ? ps->penalty : 0.0;
}

/* "slim_penalty":x, after "seed" and a shadow index and before "split",
 * when there is one. */
static void recipe_slim_penalty(mg_strbuf *b, const mg_grid *g, const size_t idx[MG_AXIS_COUNT])
{
    double pen = slim_penalty(g, idx);
    if (pen > 0.0) {
        mg_strbuf_append(b, "\"slim_penalty\":");
        mg_strbuf_json_num(b, pen);
        mg_strbuf_append(b, ",");
    }
}

/* An undefended dense model keeps the form it always had; a defended one
 * names its defense, one trained with slimming's penalty the penalty. */
static void recipe_dense(mg_strbuf *b, const mg_grid *g, const size_t idx[MG_AXIS_COUNT], mg_role r, int shadow)
{
    mg_strbuf_printf(b, "{\"arch\":%s,\"dataset\":%s,", g->archs[idx[MG_AXIS_ARCH]].canon,
                     g->datasets[idx[MG_AXIS_DATASET]].canon);
    if (dense_defended(g, idx))
        mg_strbuf_printf(b, "\"defense\":%s,", g->defenses[idx[MG_AXIS_DEFENSE]].canon);
    mg_strbuf_printf(b, "\"kind\":\"train\",\"role\":\"%s\",\"seed\":%" PRIu64 ",", mg_role_str(r),
                     g->seeds[idx[MG_AXIS_SEED]]);
    recipe_shadow_index(b, shadow);
    recipe_slim_penalty(b, g, idx);
    mg_strbuf_printf(b, "\"split\":%s,\"train\":%s,\"v\":%d}", g->split.canon, g->train.canon, MG_RECIPE_VERSION);
}

/* Whether the cell's defense estimates memorisation scores with subset models. */
static int uses_subsets(const mg_grid *g, const size_t idx[MG_AXIS_COUNT])
{
    return g->defenses[idx[MG_AXIS_DEFENSE]].subsets > 0;
}

/* Subset model `index` of `count`: the dense training's recipe on a part of
 * the members, without the defense it serves (the scores measure plain
 * training's memorisation). */
static void recipe_subset(mg_strbuf *b, const mg_grid *g, const size_t idx[MG_AXIS_COUNT], mg_role r, int shadow,
                          int index)
{
    const mg_defense_spec *d = &g->defenses[idx[MG_AXIS_DEFENSE]];
    mg_strbuf_printf(b, "{\"arch\":%s,\"dataset\":%s,\"kind\":\"train\",\"role\":\"%s\",\"seed\":%" PRIu64 ",",
                     g->archs[idx[MG_AXIS_ARCH]].canon, g->datasets[idx[MG_AXIS_DATASET]].canon, mg_role_str(r),
                     g->seeds[idx[MG_AXIS_SEED]]);
    recipe_shadow_index(b, shadow);
    mg_strbuf_printf(b, "\"split\":%s,\"subset\":{\"count\":%d,\"fraction\":", g->split.canon, d->subsets);
    mg_strbuf_json_num(b, d->subset_fraction);
    mg_strbuf_printf(b, ",\"index\":%d},\"train\":%s,\"v\":%d}", index, g->train.canon, MG_RECIPE_VERSION);
}

/* A recipe whose node has further inputs (WeMem's subset models, or an
 * attack's reference models) names them: replaces its closing brace with
 * ,"<field>":[keys]}. */
static void recipe_add_extra(mg_strbuf *b, const plan_impl *pi, const mg_node *proto, const char *field)
{
    if (!proto->n_extra || b->len == 0)
        return;
    b->len--; /* the final '}' */
    b->s[b->len] = '\0';
    mg_strbuf_printf(b, ",\"%s\":[", field);
    for (size_t i = 0; i < proto->n_extra; i++)
        mg_strbuf_printf(b, "%s\"%s\"", i ? "," : "", pi->pub.nodes[proto->extra_first + i].key);
    mg_strbuf_append(b, "]}");
}

/* The weights of the dense training after `epoch` epochs: imp rewinds to them. */
static void recipe_rewind(mg_strbuf *b, const mg_grid *g, const size_t idx[MG_AXIS_COUNT], mg_role r, int shadow,
                          int epoch)
{
    mg_strbuf_printf(b, "{\"arch\":%s,\"dataset\":%s,", g->archs[idx[MG_AXIS_ARCH]].canon,
                     g->datasets[idx[MG_AXIS_DATASET]].canon);
    if (dense_defended(g, idx))
        mg_strbuf_printf(b, "\"defense\":%s,", g->defenses[idx[MG_AXIS_DEFENSE]].canon);
    mg_strbuf_printf(b, "\"kind\":\"train\",\"role\":\"%s\",\"seed\":%" PRIu64 ",", mg_role_str(r),
                     g->seeds[idx[MG_AXIS_SEED]]);
    recipe_shadow_index(b, shadow);
    recipe_slim_penalty(b, g, idx);
    mg_strbuf_printf(b, "\"split\":%s,\"stop_epoch\":%d,\"train\":%s,\"v\":%d}", g->split.canon, epoch,
                     g->train.canon, MG_RECIPE_VERSION);
}

/* One pruning stage. One-shot keeps the form it always had (no stage, no
 * rewind), so existing stores stay valid. imp retrains with `train` from the
 * rewound weights; the other schedules fine-tune with `finetune`. */
static void recipe_prune(mg_strbuf *b, const mg_grid *g, const size_t idx[MG_AXIS_COUNT], mg_role r,
                         const char *input, const char *rewind, double sparsity, int stage)
{
    const mg_prune_spec *ps = &g->prunes[idx[MG_AXIS_PRUNE]];
    int one_shot = strcmp(ps->schedule, "one-shot") == 0;
    mg_strbuf_printf(b, "{\"defense\":%s,", g->defenses[idx[MG_AXIS_DEFENSE]].canon);
    if (!rewind)
        mg_strbuf_printf(b, "\"finetune\":%s,", g->finetune.canon);
    mg_strbuf_printf(b, "\"input\":\"%s\",\"kind\":\"prune\",\"prune\":%s,", input, ps->chain_canon);
    if (rewind)
        mg_strbuf_printf(b, "\"rewind\":\"%s\",", rewind);
    mg_strbuf_printf(b, "\"role\":\"%s\",\"sparsity\":", mg_role_str(r));
    mg_strbuf_json_num(b, sparsity);
    if (!one_shot)
        mg_strbuf_printf(b, ",\"stage\":%d", stage);
    if (rewind)
        mg_strbuf_printf(b, ",\"train\":%s", g->train.canon);
    mg_strbuf_printf(b, ",\"v\":%d}", MG_RECIPE_VERSION);
}

/* The sparsity after each stage of a schedule reaching `s`: one-shot, one
 * stage; iterative (WeMem), round k keeps (1-s)^(k/K); imp (Gonon et al.),
 * each round prunes `rate` of what remains, the last round exactly to s, so
 * that sweeps over s share their common stages. Returns the stage count. */
static int schedule_stages(const mg_prune_spec *ps, double s, double *out, int max)
{
    if (strcmp(ps->schedule, "iterative") == 0) {
        int k = ps->rounds < max ? ps->rounds : max;
        for (int i = 1; i <= k; i++)
            out[i - 1] = i == k ? s : 1.0 - pow(1.0 - s, (double)i / k);
        return k;
    }
    if (strcmp(ps->schedule, "imp") == 0) {
        int n = 0;
        double keep = 1.0;
        for (;;) {
            keep *= 1.0 - ps->rate;
            if (1.0 - keep >= s - 1e-12)
                break;
            if (n == max - 1)
                return -1;
            out[n++] = 1.0 - keep;
        }
        out[n++] = s;
        return n;
    }
    out[0] = s;
    return 1;
}

/* One shadow model keeps the historic form "shadow":"<key>"; several are
 * named as a list, "shadow":["<key 0>","<key 1>",...], in the split's order. */
static void recipe_attack(mg_strbuf *b, const mg_attack_spec *a, const mg_plan *p, size_t target,
                          const size_t *shadows, size_t n_shadows)
{
    /* "impl" versions the attack library alone: when attacks change (2: per-class
     * thresholds, mg_attack_run), attack nodes are recomputed and trained
     * models are kept. */
    mg_strbuf_printf(b, "{\"attack\":%s,\"impl\":%d,\"kind\":\"attack\",\"shadow\":", a->canon,
                     MG_ATTACK_IMPL_VERSION);
    if (n_shadows == 1)
        mg_strbuf_printf(b, "\"%s\"", p->nodes[shadows[0]].key);
    else
        for (size_t i = 0; i < n_shadows; i++)
            mg_strbuf_printf(b, "%c\"%s\"%s", i ? ',' : '[', p->nodes[shadows[i]].key, i + 1 == n_shadows ? "]" : "");
    mg_strbuf_printf(b, ",\"target\":\"%s\",\"v\":%d}", p->nodes[target].key, MG_RECIPE_VERSION);
}

/* ---- reference models of lira and rmia ------------------------------------------------- */

/* Offline lira and rmia train their references on the population; online
 * lira trains them on the target's candidates (its members and non-members). */
static int ref_pool_online(const mg_attack_spec *a)
{
    return !strcmp(a->name, "lira") && a->lira_online;
}

/* Reference model `index` of `count` on a pool: the undefended dense
 * training (the attacker models how the target was trained, not its
 * defense or pruning) on about half of the pool. */
static void recipe_reference(mg_strbuf *b, const mg_grid *g, const size_t idx[MG_AXIS_COUNT], int index, int count,
                             int online)
{
    mg_strbuf_printf(b, "{\"arch\":%s,\"dataset\":%s,\"kind\":\"train\",\"reference\":{\"count\":%d,\"index\":%d,"
                        "\"pool\":\"%s\"},\"role\":\"target\",\"seed\":%" PRIu64 ",\"split\":%s,\"train\":%s,\"v\":%d}",
                     g->archs[idx[MG_AXIS_ARCH]].canon, g->datasets[idx[MG_AXIS_DATASET]].canon, count, index,
                     online ? "candidates" : "population", g->seeds[idx[MG_AXIS_SEED]], g->split.canon,
                     g->train.canon, MG_RECIPE_VERSION);
}

/* A node prototype of the cell `idx`: its dataset, arch and seed; no
 * prune, defense or attack, and no early stop, until the caller says. */
static void proto_begin(mg_node *proto, mg_node_kind kind, mg_role role, const size_t idx[MG_AXIS_COUNT])
{
    memset(proto, 0, sizeof *proto);
    proto->kind = kind;
    proto->role = role;
    proto->dataset = idx[MG_AXIS_DATASET];
    proto->arch = idx[MG_AXIS_ARCH];
    proto->seed = idx[MG_AXIS_SEED];
    proto->prune = proto->defense = proto->attack = MG_NO_INDEX;
    proto->stop_epoch = -1;
}

/* The reference models of one lira or rmia attack of a cell, interned
 * together so they are consecutive nodes; *first gets the first. Attacks
 * and cells with the same pool and count (and dataset, arch, seed) ask for
 * the same recipes, so they find them in place and share them. */
static mg_status plan_references(plan_impl *pi, const mg_grid *g, const size_t idx[MG_AXIS_COUNT],
                                 const mg_attack_spec *a, size_t *first, mg_error *err)
{
    mg_status st = MG_OK;
    mg_strbuf b;
    mg_node proto;
    const int on = ref_pool_online(a);
    mg_strbuf_init(&b);
    for (int r = 0; r < a->references; r++) {
        size_t at = 0;
        proto_begin(&proto, MG_NODE_TRAIN, MG_ROLE_TARGET, idx);
        proto.reference = r + 1;
        proto.ref_count = a->references;
        proto.ref_online = on;
        recipe_reference(&b, g, idx, r, a->references, on);
        MG_CHECK(plan_intern(pi, &b, &proto, &at, err));
        if (r == 0)
            *first = at;
        else if (at != *first + (size_t)r)
            MG_FAIL(MG_ERR_INTERNAL, "the reference models of one attack are not consecutive nodes");
    }
cleanup:
    mg_strbuf_free(&b);
    return st;
}

/* A model's pruning chain to `sparsity` from its dense node: the stages of
 * the cell's schedule (imp with its rewind point), each a node consuming the
 * previous one; *end gets the last. `dense_proto` is the dense node's. */
static mg_status plan_chain(plan_impl *pi, const mg_grid *g, const size_t idx[MG_AXIS_COUNT],
                            const mg_node *dense_proto, size_t dense, size_t extra_first, size_t n_extra,
                            double sparsity, size_t *end, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_prune_spec *ps = &g->prunes[idx[MG_AXIS_PRUNE]];
    mg_node proto = *dense_proto;
    mg_role r = proto.role;
    int shadow = proto.shadow_index;
    mg_strbuf b;
    mg_strbuf_init(&b);
    double stages[MG_MAX_STAGES];
    int n_stages = schedule_stages(ps, sparsity, stages, MG_MAX_STAGES);
    if (n_stages < 0)
        MG_FAIL(MG_ERR_CONFIG,
                "prune %s with schedule imp at rate %g needs more than %d rounds to reach sparsity %g; "
                "raise the rate",
                ps->method, ps->rate, MG_MAX_STAGES, sparsity);
    if (strcmp(ps->schedule, "imp") == 0 && ps->rewind_epoch > g->train.epochs)
        MG_FAIL(MG_ERR_CONFIG, "prune rewind_epoch %d is past the end of training (train.epochs %d)",
                ps->rewind_epoch, g->train.epochs);
    int imp = strcmp(ps->schedule, "imp") == 0;
    size_t rewind = 0;
    char rewind_key[33] = "";
    if (imp) {
        proto.stop_epoch = ps->rewind_epoch;
        if (dense_defended(g, idx)) {
            proto.extra_first = extra_first;
            proto.n_extra = n_extra;
        }
        recipe_rewind(&b, g, idx, r, shadow, ps->rewind_epoch);
        recipe_add_extra(&b, pi, &proto, "memscore");
        MG_CHECK(plan_intern(pi, &b, &proto, &rewind, err));
        proto.extra_first = proto.n_extra = 0;
        memcpy(rewind_key, pi->pub.nodes[rewind].key, sizeof rewind_key);
        proto.stop_epoch = -1;
    }
    size_t prev = dense;
    for (int k = 0; k < n_stages; k++) {
        char input[33];
        memcpy(input, pi->pub.nodes[prev].key, sizeof input);
        proto.kind = MG_NODE_PRUNE;
        proto.bn_l1 = 0.0;
        proto.n_inputs = imp ? 2 : 1;
        proto.inputs[0] = prev;
        proto.inputs[1] = imp ? rewind : 0;
        proto.prune = idx[MG_AXIS_PRUNE];
        proto.defense = idx[MG_AXIS_DEFENSE];
        proto.sparsity = stages[k];
        proto.stage = k + 1;
        if (g->defenses[idx[MG_AXIS_DEFENSE]].phase & MG_PHASE_PRUNE) {
            proto.extra_first = extra_first;
            proto.n_extra = n_extra;
        }
        recipe_prune(&b, g, idx, r, input, imp ? rewind_key : NULL, stages[k], k + 1);
        recipe_add_extra(&b, pi, &proto, "memscore");
        MG_CHECK(plan_intern(pi, &b, &proto, &prev, err));
    }
    *end = prev;
cleanup:
    mg_strbuf_free(&b);
    return st;
}

/* Interns a select node that owns `list` (n entries) as its candidates, or
 * frees the list when the recipe names a node that already exists. */
static mg_status intern_select(plan_impl *pi, mg_strbuf *b, mg_node *proto, size_t *list, size_t n, size_t *index,
                               mg_error *err)
{
    size_t *own = mg_malloc(n, sizeof *own, "selection candidates", err);
    if (!own) {
        mg_strbuf_free(b);
        return MG_ERR_NOMEM;
    }
    memcpy(own, list, n * sizeof *own);
    proto->cands = own;
    proto->n_cands = n;
    mg_status st = plan_intern(pi, b, proto, index, err);
    if (st != MG_OK || pi->pub.nodes[*index].cands != own)
        free(own);
    return st;
}

/* MIA-Pruning's selection for one cell, from its candidates' pruned models
 * (cand: candidate-major, each candidate's target then shadow models): a
 * select node of role target decides and holds the target model pruned to
 * its pick, and one of role shadow per shadow model follows it, so the
 * attacks meet the target and shadow models of one sparsity. */
static mg_status plan_select(plan_impl *pi, const mg_grid *g, const size_t idx[MG_AXIS_COUNT], mg_cell *cell,
                             const size_t *cand, size_t n_cand, mg_error *err)
{
    mg_status st = MG_OK;
    const mg_prune_spec *ps = &g->prunes[idx[MG_AXIS_PRUNE]];
    const mg_plan *p = &pi->pub;
    size_t per = cell->n_shadows + 1, decide = 0;
    size_t *list = NULL;
    mg_node proto;
    mg_strbuf b;
    mg_strbuf_init(&b);
    list = mg_calloc(n_cand * per, sizeof *list, "selection candidates", err);
    if (!list)
        MG_CHECK(MG_ERR_NOMEM);
    proto_begin(&proto, MG_NODE_SELECT, MG_ROLE_TARGET, idx);
    proto.prune = idx[MG_AXIS_PRUNE];
    proto.defense = idx[MG_AXIS_DEFENSE];
    /* The largest candidate: cells whose sparsities admit the same
     * candidates share their select nodes, whichever came first. */
    proto.sparsity = ps->select[n_cand - 1];
    proto.n_candidates = n_cand;
    /* "impl": the gain is measured with the attack library. */
    mg_strbuf_printf(&b, "{\"attack\":\"%s\",\"candidates\":[", ps->select_attack);
    for (size_t k = 0; k < n_cand; k++) {
        mg_strbuf_printf(&b, "%s{\"models\":[", k ? "," : "");
        for (size_t m = 0; m < per; m++)
            mg_strbuf_printf(&b, "%s\"%s\"", m ? "," : "", p->nodes[cand[k * per + m]].key);
        mg_strbuf_append(&b, "],\"sparsity\":");
        mg_strbuf_json_num(&b, ps->select[k]);
        mg_strbuf_append(&b, "}");
    }
    mg_strbuf_printf(&b, "],\"impl\":%d,\"kind\":\"select\",\"role\":\"target\",\"v\":%d}",
                     MG_ATTACK_IMPL_VERSION, MG_RECIPE_VERSION);
    memcpy(list, cand, n_cand * per * sizeof *list);
    MG_CHECK(intern_select(pi, &b, &proto, list, n_cand * per, &decide, err));
    cell->model[MG_ROLE_TARGET] = decide;
    for (size_t sh = 0; sh < cell->n_shadows; sh++) {
        proto.role = MG_ROLE_SHADOW;
        proto.shadow_index = (int)sh;
        proto.n_inputs = 1;
        proto.inputs[0] = decide;
        mg_strbuf_append(&b, "{\"candidates\":[");
        for (size_t k = 0; k < n_cand; k++) {
            list[k] = cand[k * per + 1 + sh];
            mg_strbuf_printf(&b, "%s\"%s\"", k ? "," : "", p->nodes[list[k]].key);
        }
        mg_strbuf_printf(&b, "],\"decision\":\"%s\",\"kind\":\"select\",\"role\":\"shadow\",", p->nodes[decide].key);
        recipe_shadow_index(&b, (int)sh);
        mg_strbuf_printf(&b, "\"v\":%d}", MG_RECIPE_VERSION);
        MG_CHECK(intern_select(pi, &b, &proto, list, n_cand, &cell->shadows[sh], err));
    }
cleanup:
    free(list);
    mg_strbuf_free(&b);
    return st;
}

/* The nodes of one cell: for the target and each of the split's shadow
 * models a dense model and (sparsity > 0) its pruned version, then one
 * attack node per attack on the target and the pooled shadow models (lira
 * and rmia after their reference models). */
static mg_status plan_cell(plan_impl *pi, const mg_grid *g, const size_t idx[MG_AXIS_COUNT], mg_cell *cell,
                           mg_error *err)
{
    mg_status st = MG_OK;
    mg_strbuf b;
    mg_node proto;
    double sparsity = g->sparsities[idx[MG_AXIS_SPARSITY]];
    int pruned = sparsity > 0.0;
    const mg_prune_spec *ps = &g->prunes[idx[MG_AXIS_PRUNE]];
    int selecting = pruned && ps->n_select > 0;
    size_t n_cand = 0, *cand = NULL;
    mg_strbuf_init(&b);
    if (selecting) {
        /* The cell's sparsity bounds the candidates. */
        while (n_cand < (size_t)ps->n_select && ps->select[n_cand] <= sparsity + 1e-12)
            n_cand++;
        if (n_cand == 0) {
            char list[MG_MAX_SELECT * 26];
            size_t len = 0;
            for (int k = 0; k < ps->n_select && len < sizeof list; k++)
                len += (size_t)snprintf(list + len, sizeof list - len, "%s%g", k ? ", " : "", ps->select[k]);
            MG_FAIL(MG_ERR_CONFIG,
                    "%s: prune %s selects among candidate sparsities from %g, but the cell's sparsity %g (the "
                    "most the selection may prune) is below all of them; add a candidate or exclude the cell "
                    "(exclude: [{prune: {method: %s, select: [%s]}, sparsity: %g}])",
                    g->path, ps->method, ps->select[0], sparsity, ps->method, list, sparsity);
        }
        cand = mg_calloc(n_cand * (cell->n_shadows + 1), sizeof *cand, "selection candidates", err);
        if (!cand)
            MG_CHECK(MG_ERR_NOMEM);
    }
    /* m = 0: the target; m = 1 .. n_shadows: shadow model m - 1. */
    for (size_t m = 0; m <= cell->n_shadows; m++) {
        int r = m == 0 ? MG_ROLE_TARGET : MG_ROLE_SHADOW;
        int shadow = m == 0 ? 0 : (int)(m - 1);
        size_t dense = 0;
        proto_begin(&proto, MG_NODE_TRAIN, (mg_role)r, idx);
        proto.shadow_index = shadow;
        if (dense_defended(g, idx))
            proto.defense = idx[MG_AXIS_DEFENSE];
        proto.bn_l1 = slim_penalty(g, idx);
        size_t extra_first = 0, n_extra = 0;
        if (uses_subsets(g, idx)) {
            /* Interned together, a role's subset models are consecutive nodes. */
            mg_node sp = proto;
            sp.defense = idx[MG_AXIS_DEFENSE]; /* whose estimate: the count and fraction, not a regime */
            sp.bn_l1 = 0.0;                    /* plain training's memorisation */
            for (int k = 0; k < g->defenses[idx[MG_AXIS_DEFENSE]].subsets; k++) {
                size_t at = 0;
                sp.subset = k + 1;
                recipe_subset(&b, g, idx, (mg_role)r, shadow, k);
                MG_CHECK(plan_intern(pi, &b, &sp, &at, err));
                if (k == 0)
                    extra_first = at;
                else if (at != extra_first + (size_t)k)
                    MG_FAIL(MG_ERR_INTERNAL, "subset models of one estimate are not consecutive nodes");
                n_extra++;
            }
        }
        if (dense_defended(g, idx)) {
            proto.extra_first = extra_first;
            proto.n_extra = n_extra;
        }
        recipe_dense(&b, g, idx, (mg_role)r, shadow);
        recipe_add_extra(&b, pi, &proto, "memscore");
        MG_CHECK(plan_intern(pi, &b, &proto, &dense, err));
        proto.extra_first = proto.n_extra = 0;
        cell->model[r] = dense;
        if (pruned && !selecting) {
            MG_CHECK(plan_chain(pi, g, idx, &proto, dense, extra_first, n_extra, sparsity, &cell->model[r], err));
        } else if (pruned) {
            /* MIA-Pruning: the chain to every candidate; the select nodes below pick. */
            for (size_t k = 0; k < n_cand; k++)
                MG_CHECK(plan_chain(pi, g, idx, &proto, dense, extra_first, n_extra, ps->select[k],
                                    &cand[k * (cell->n_shadows + 1) + m], err));
        }
        if (r == MG_ROLE_SHADOW)
            cell->shadows[shadow] = cell->model[r];
    }
    if (selecting)
        MG_CHECK(plan_select(pi, g, idx, cell, cand, n_cand, err));
    cell->model[MG_ROLE_SHADOW] = cell->shadows[0];
    for (size_t a = 0; a < g->n_attacks; a++) {
        size_t ref_first = 0;
        if (g->attacks[a].references)
            MG_CHECK(plan_references(pi, g, idx, &g->attacks[a], &ref_first, err));
        proto_begin(&proto, MG_NODE_ATTACK, MG_ROLE_TARGET, idx);
        proto.n_inputs = 2;
        proto.inputs[0] = cell->model[MG_ROLE_TARGET];
        proto.inputs[1] = cell->model[MG_ROLE_SHADOW];
        proto.prune = pruned ? idx[MG_AXIS_PRUNE] : MG_NO_INDEX;
        proto.defense = pruned || dense_defended(g, idx) ? idx[MG_AXIS_DEFENSE] : MG_NO_INDEX;
        proto.attack = a;
        proto.sparsity = sparsity;
        proto.shadows = cell->shadows;
        proto.n_shadows = cell->n_shadows;
        if (g->attacks[a].references) {
            proto.extra_first = ref_first;
            proto.n_extra = (size_t)g->attacks[a].references;
        }
        recipe_attack(&b, &g->attacks[a], &pi->pub, cell->model[MG_ROLE_TARGET], cell->shadows, cell->n_shadows);
        recipe_add_extra(&b, pi, &proto, "references");
        MG_CHECK(plan_intern(pi, &b, &proto, &cell->attack_nodes[a], err));
    }
cleanup:
    free(cand);
    mg_strbuf_free(&b);
    return st;
}

/* Room for every cell's list of shadow models (data.split.shadows each).
 * Allocated once, before any node: attack nodes keep pointers into it. */
static mg_status shadow_lists_alloc(plan_impl *pi, const mg_grid *g, size_t n_cells, mg_error *err)
{
    size_t k = g->split.cfg.n_shadows;
    if (k < 1 || k > MG_SPLIT_MAX_SHADOWS)
        return mg_error_set(err, MG_ERR_ARG, "%s: data.split.shadows is %zu; expected 1 to %d", g->path, k,
                            MG_SPLIT_MAX_SHADOWS);
    pi->shadow_block = mg_calloc(n_cells, k * sizeof *pi->shadow_block, "plan shadow models", err);
    return pi->shadow_block ? MG_OK : MG_ERR_NOMEM;
}

mg_status mg_plan_build(const mg_grid *g, mg_plan **out, mg_error *err)
{
    mg_status st = MG_OK;
    plan_impl *pi = NULL;
    size_t idx[MG_AXIS_COUNT] = {0};
    size_t n_cells = 0, max_cells = 0, max_nodes = 0;
    *out = NULL;
    if (!g || g->n_attacks == 0)
        return mg_error_set(err, MG_ERR_ARG, "mg_plan_build: a parsed grid is required");
    st = mg_grid_limits(&max_cells, &max_nodes, err);
    if (st != MG_OK)
        return st;

    /* The parser bounds the product, so this pass is cheap. */
    do {
        n_cells += !mg_grid_excluded(g, idx);
    } while (mg_grid_next_combination(g, idx));
    if (n_cells == 0)
        return mg_error_set(err, MG_ERR_CONFIG, "%s: every cell of grid \"%s\" is excluded", g->path, g->name);

    pi = mg_calloc(1, sizeof *pi, "plan", err);
    if (!pi)
        return MG_ERR_NOMEM;
    pi->max_nodes = max_nodes;
    mg_plan *p = &pi->pub;
    p->cells = mg_calloc(n_cells, sizeof *p->cells, "plan cells", err);
    pi->attack_block = mg_calloc(n_cells, g->n_attacks * sizeof *pi->attack_block, "plan attack nodes", err);
    if (!p->cells || !pi->attack_block)
        MG_CHECK(MG_ERR_NOMEM);
    MG_CHECK(shadow_lists_alloc(pi, g, n_cells, err));
    MG_CHECK(slots_grow(pi, err));

    size_t id = 0;
    do {
        if (mg_grid_excluded(g, idx))
            continue;
        mg_cell *c = &p->cells[id];
        c->id = id;
        c->dataset = idx[MG_AXIS_DATASET];
        c->arch = idx[MG_AXIS_ARCH];
        c->prune = idx[MG_AXIS_PRUNE];
        c->sparsity = idx[MG_AXIS_SPARSITY];
        c->defense = idx[MG_AXIS_DEFENSE];
        c->seed = idx[MG_AXIS_SEED];
        c->attack_nodes = pi->attack_block + id * g->n_attacks;
        c->n_shadows = g->split.cfg.n_shadows;
        c->shadows = pi->shadow_block + id * c->n_shadows;
        MG_CHECK(plan_cell(pi, g, idx, c, err));
        id++;
        p->n_cells = id;
    } while (mg_grid_next_combination(g, idx));

    *out = p;
    pi = NULL;
cleanup:
    if (pi) {
        mg_plan *tmp = &pi->pub;
        mg_plan_destroy(&tmp);
    }
    return st;
}

void mg_plan_destroy(mg_plan **pp)
{
    if (!pp || !*pp)
        return;
    plan_impl *pi = (plan_impl *)*pp;
    for (size_t i = 0; i < pi->pub.n_nodes; i++) {
        free(pi->pub.nodes[i].recipe);
        free((size_t *)pi->pub.nodes[i].cands);
    }
    free(pi->pub.nodes);
    free(pi->pub.cells);
    free(pi->attack_block);
    free(pi->shadow_block);
    free(pi->slots);
    free(pi);
    *pp = NULL;
}

size_t mg_plan_find(const mg_plan *p, const char *key)
{
    if (!p || !key)
        return MG_NO_INDEX;
    const plan_impl *pi = (const plan_impl *)p;
    size_t s = slot_find(pi, key);
    return pi->slots[s] ? pi->slots[s] - 1 : MG_NO_INDEX;
}

/* ---- output ------------------------------------------------------------------------------ */

void mg_plan_print(const mg_grid *g, const mg_plan *p, FILE *f)
{
    size_t kinds[MG_NODE_N_KINDS] = {0};
    fprintf(f, "grid \"%s\" (%s)\n", g->name, g->path);
    fprintf(f, "cells: id dataset arch prune sparsity defense seed -> target, shadow model\n");
    for (size_t i = 0; i < p->n_cells; i++) {
        const mg_cell *c = &p->cells[i];
        char arch[MG_CANON_MAX], prune[MG_NAME_MAX + 32];
        mg_grid_arch_str(&g->archs[c->arch], arch, sizeof arch);
        mg_prune_label(&g->prunes[c->prune], prune, sizeof prune);
        fprintf(f, "  %6zu  %s %s %s %g %s %" PRIu64 " -> %.12s %.12s\n", c->id, g->datasets[c->dataset].name,
                arch, prune, g->sparsities[c->sparsity], g->defenses[c->defense].name,
                g->seeds[c->seed], p->nodes[c->model[MG_ROLE_TARGET]].key, p->nodes[c->model[MG_ROLE_SHADOW]].key);
    }
    fprintf(f, "nodes: index kind role-or-attack key inputs uses\n");
    for (size_t i = 0; i < p->n_nodes; i++) {
        const mg_node *n = &p->nodes[i];
        kinds[n->kind]++;
        fprintf(f, "  %6zu  %-6s %-6s %.12s", i, mg_node_kind_str(n->kind),
                n->kind == MG_NODE_ATTACK ? g->attacks[n->attack].name : mg_role_str(n->role), n->key);
        if (n->n_inputs == 0)
            fprintf(f, "  inputs -");
        else if (n->n_inputs == 1)
            fprintf(f, "  inputs %zu", n->inputs[0]);
        else
            fprintf(f, "  inputs %zu,%zu", n->inputs[0], n->inputs[1]);
        fprintf(f, "  uses %zu", n->n_uses);
        if (n->kind == MG_NODE_PRUNE)
            fprintf(f, "  sparsity %g", n->sparsity);
        if (n->kind == MG_NODE_PRUNE && n->stage > 1)
            fprintf(f, "  stage %d", n->stage);
        if (n->kind == MG_NODE_TRAIN && n->stop_epoch >= 0)
            fprintf(f, "  rewind point: epoch %d", n->stop_epoch);
        if (n->kind == MG_NODE_TRAIN && n->bn_l1 > 0.0)
            fprintf(f, "  slim penalty %g", n->bn_l1);
        if (n->subset)
            fprintf(f, "  subset model %d", n->subset);
        if (n->reference)
            fprintf(f, "  reference model %d of %d (%s)", n->reference - 1, n->ref_count,
                    n->ref_online ? "candidates" : "population");
        if (n->n_extra)
            fprintf(f, "  %s models %zu..%zu", n->kind == MG_NODE_ATTACK ? "reference" : "subset", n->extra_first,
                    n->extra_first + n->n_extra - 1);
        if (n->kind == MG_NODE_SELECT) {
            fprintf(f, "  %zu candidates up to sparsity %g, models", n->n_candidates, n->sparsity);
            for (size_t k = 0; k < n->n_cands; k++)
                fprintf(f, "%c%zu", k ? ',' : ' ', n->cands[k]);
        }
        if (n->shadow_index > 0)
            fprintf(f, "  shadow model %d", n->shadow_index);
        for (size_t k = 0; n->n_shadows > 1 && k < n->n_shadows; k++)
            fprintf(f, "%s%zu", k ? "," : "  shadow models ", n->shadows[k]);
        fputc('\n', f);
    }
    fprintf(f, "%zu cells, %zu nodes (%zu train, %zu prune, ", p->n_cells, p->n_nodes, kinds[MG_NODE_TRAIN],
            kinds[MG_NODE_PRUNE]);
    if (kinds[MG_NODE_SELECT])
        fprintf(f, "%zu select, ", kinds[MG_NODE_SELECT]);
    fprintf(f, "%zu attack); %zu references, %zu shared\n", kinds[MG_NODE_ATTACK], p->n_refs, p->n_refs - p->n_nodes);
}

char *mg_cell_axes_json(const mg_grid *g, const mg_cell *c)
{
    mg_strbuf b;
    mg_strbuf_init(&b);
    mg_strbuf_printf(&b, "{\"arch\":%s,\"dataset\":%s,\"defense\":%s,\"prune\":%s,\"seed\":%" PRIu64 ",\"sparsity\":",
                     g->archs[c->arch].canon, g->datasets[c->dataset].canon, g->defenses[c->defense].canon,
                     g->prunes[c->prune].canon, g->seeds[c->seed]);
    mg_strbuf_json_num(&b, g->sparsities[c->sparsity]);
    mg_strbuf_append(&b, "}");
    return mg_strbuf_take(&b);
}
