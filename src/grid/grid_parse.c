/*
 * grid_parse.c: reads a grid file into an mg_grid. The YAML is loaded whole
 * with libyaml's document API, so every value keeps its line and column for
 * the error message; then each key is checked against the schema, defaults
 * are filled in, and every axis value gets its canonical JSON, from which the
 * planner builds node recipes.
 */
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <yaml.h>

#include "grid/grid_internal.h"
#include "miagrid/attack.h"
#include "miagrid/data.h"
#include "miagrid/nn.h"

/* Room for a key path such as "exclude[12].arch.hidden[3]". */
#define KEY_MAX 192
/* Widths accepted in an mlp's hidden list. */
#define HIDDEN_MAX 1000000

typedef struct {
    const char *path;
    yaml_document_t *doc;
    mg_error *err;
    size_t max_cells;            /* mg_grid_limits */
} pctx;

typedef struct {
    yaml_node_t *one;            /* a single value given where a list was allowed */
    yaml_node_item_t *items;
    size_t n;
} list_view;

static const char *const top_keys[] = {"name", "seeds", "store", "data", "train", "finetune",
                                       "axes", "attacks", "exclude", NULL};
static const char *const data_keys[] = {"root", "split", NULL};
static const char *const split_keys[] = {"protocol", "target_train", "target_test", "shadow_train",
                                         "shadow_test", "target_dev", "shadow_dev", "population",
                                         "shadows", "holdout", "test_fraction", NULL};
/* The split keys each protocol takes, in mg_split_protocol order. */
static const char *const split_protocols[] = {"four-way", "explicit", "mia-prune", "wemem", NULL};
static const char *const four_way_keys[] = {"protocol", "target_train", "target_test", "shadow_train",
                                            "shadow_test", "target_dev", "shadow_dev", "population", NULL};
static const char *const explicit_keys[] = {"protocol", "target_train", "target_test", "shadow_train",
                                            "shadow_test", "target_dev", "shadow_dev", "population",
                                            "shadows", NULL};
static const char *const mia_prune_keys[] = {"protocol", "shadows", "population", NULL};
static const char *const wemem_keys[] = {"protocol", "shadows", "population", "holdout", "test_fraction", NULL};
static const char *const train_keys[] = {"epochs", "batch", "optimizer", "lr", "momentum",
                                         "weight_decay", "beta1", "beta2", "eps", "nesterov",
                                         "schedule", "early_stopping", "augment", NULL};
static const char *const constant_keys[] = {"name", NULL};
static const char *const multistep_keys[] = {"name", "milestones", "gamma", NULL};
static const char *const cosine_keys[] = {"name", "eta_min", NULL};
static const char *const early_stopping_keys[] = {"patience", NULL};
static const char *const axes_keys[] = {"dataset", "arch", "prune", "sparsity", "defense", NULL};
static const char *const dataset_keys[] = {"name", "root", NULL};
/* An axes.dataset entry; which options apply depends on the dataset. */
static const char *const dataset_opt_keys[] = {"name", "root", "labels", "image_size", "channels",
                                               "label_column", "header", "delimiter", "label_base",
                                               "classes", NULL};
static const char *const image_folder_keys[] = {"name", "root", "image_size", "channels", NULL};
static const char *const csv_keys[] = {"name", "root", "label_column", "header", "delimiter", "label_base",
                                       "classes", NULL};
static const char *const cifar100_keys[] = {"name", "root", "labels", NULL};
static const char *const cifar100_labels[] = {"fine", "coarse", NULL};
static const char *const arch_keys[] = {"name", "hidden", "activation", "preset", "init", NULL};
static const char *const plain_arch_keys[] = {"name", "init", NULL};
static const char *const prune_keys[] = {"method", "schedule", "rounds", "rate", "rewind_epoch", "factors",
                                         "rho", "admm_epochs", "penalty", "layers", "select", NULL};
static const char *const select_keys[] = {"candidates", "attack", NULL};
/* The inference models MIA-Pruning's selection may measure the gain of: the
 * classifier attacks, whose scores are member log-odds. */
static const char *const select_attacks[] = {"nn-cls", "nn", "top3-nn", NULL};
static const char *const name_keys[] = {"name", NULL};
static const char *const gonon_keys[] = {"name", "depth", NULL};
static const char *const exclude_keys[] = {"dataset", "arch", "prune", "sparsity", "defense",
                                           "seed", NULL};

static const char *const optimizers[] = {"sgd", "adam", "adamw", NULL};
static const char *const schedule_names[] = {"constant", "multistep", "cosine", NULL};
static const char *const augment_names[] = {"crop", "flip", NULL};
static const char *const init_names[] = {"default", "xavier-normal", NULL};
static const char *const mlp_presets[] = {"location", "purchase", "texas", NULL};
static const char *const activations[] = {"relu", "tanh", NULL};
static const char *const prune_methods[] = {"l1-unstructured", "l1-unstructured-global", "random-unstructured",
                                            "l1-structured", "l2-structured", "slim", "butterfly", "admm", NULL};
static const char *const prune_schedules[] = {"one-shot", "iterative", "imp", NULL};
static const char *const defense_names[] = {"none", "base", "label-smoothing", "adv-reg", "dp-sgd", "relaxloss",
                                            "ppb", "rsw", "rmr", "swmr", NULL};
static const char *const defense_keys[] = {"name", "phase", "weight_decay", "patience", "smoothing", "gamma", "k",
                                           "lr", "noise_multiplier", "max_grad_norm", "delta", "alpha", "lambda",
                                           "mem_scores", "subsets", "subset_fraction", "width", "step", "order",
                                           "tau", "lambda_r", "lambda_g", NULL};
static const char *const defense_phases[] = {"dense", "prune", "both", NULL};
static const char *const rsw_orders[] = {"descending", "ascending", NULL};

/* ---- messages ------------------------------------------------------------------- */

static mg_status perr(const pctx *c, const yaml_node_t *n, const char *key, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));

/* Every configuration error: "<path>:<line>:<col>: <key>: <message>". */
static mg_status perr(const pctx *c, const yaml_node_t *n, const char *key, const char *fmt, ...)
{
    char msg[800];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    size_t line = n ? n->start_mark.line + 1 : 1;
    size_t col = n ? n->start_mark.column + 1 : 1;
    if (key && *key)
        return mg_error_set(c->err, MG_ERR_CONFIG, "%s:%zu:%zu: %s: %s", c->path, line, col, key, msg);
    return mg_error_set(c->err, MG_ERR_CONFIG, "%s:%zu:%zu: %s", c->path, line, col, msg);
}

static const char *sval(const yaml_node_t *n) { return (const char *)n->data.scalar.value; }

/* YAML's null: an empty value, "~" or "null", unquoted. */
static int is_null(const yaml_node_t *n)
{
    if (n->type != YAML_SCALAR_NODE || n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return 0;
    const char *s = sval(n);
    return !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") || !strcmp(s, "NULL");
}

/* What the user wrote, for "got ..." in messages. */
static const char *describe(const yaml_node_t *n, char *buf, size_t cap)
{
    if (!n || is_null(n))
        return "nothing";
    if (n->type == YAML_SEQUENCE_NODE)
        return "a list";
    if (n->type == YAML_MAPPING_NODE)
        return "a mapping";
    if (n->data.scalar.length > 40)
        snprintf(buf, cap, "\"%.40s...\"", sval(n));
    else
        snprintf(buf, cap, "\"%s\"", sval(n));
    return buf;
}

static void join(const char *const *words, char *buf, size_t cap)
{
    size_t len = 0;
    buf[0] = '\0';
    for (size_t i = 0; words[i] && len < cap; i++) {
        int w = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", words[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

static int in_list(const char *s, const char *const *words)
{
    for (size_t i = 0; words[i]; i++)
        if (!strcmp(s, words[i]))
            return 1;
    return 0;
}

/* Key paths are for messages; an absurdly deep one is cut, visibly. */
static void key_fit(char *buf, int written)
{
    if (written < 0 || written >= KEY_MAX)
        memcpy(buf + KEY_MAX - 4, "...", 4);
}

static void sub_key(char *buf, const char *parent, const char *child)
{
    if (parent && *parent)
        key_fit(buf, snprintf(buf, KEY_MAX, "%s.%s", parent, child));
    else
        key_fit(buf, snprintf(buf, KEY_MAX, "%s", child));
}

/* ---- scalars ------------------------------------------------------------------------ */

static mg_status get_str(const pctx *c, yaml_node_t *n, const char *key, const char *expected,
                         char *out, size_t cap)
{
    char d[64];
    if (!n || n->type != YAML_SCALAR_NODE || is_null(n))
        return perr(c, n, key, "expected %s, got %s", expected, describe(n, d, sizeof d));
    size_t len = n->data.scalar.length;
    if (strlen(sval(n)) != len)
        return perr(c, n, key, "contains a NUL character; expected %s", expected);
    if (len >= cap)
        return perr(c, n, key, "too long (%zu characters); expected %s of at most %zu characters", len,
                    expected, cap - 1);
    memcpy(out, sval(n), len + 1);
    return MG_OK;
}

/* A string that must be one of `accepted`; `what` names it ("optimizer"). */
static mg_status get_choice(const pctx *c, yaml_node_t *n, const char *key, const char *what,
                            const char *const *accepted, char *out, size_t cap)
{
    char list[256], expected[320];
    join(accepted, list, sizeof list);
    snprintf(expected, sizeof expected, "one of: %s", list);
    mg_status st = get_str(c, n, key, expected, out, cap);
    if (st != MG_OK)
        return st;
    if (!in_list(out, accepted))
        return perr(c, n, key, "unknown %s \"%s\"; expected one of: %s", what, out, list);
    return MG_OK;
}

/* Numbers must be plain scalars: a quoted "10" is a string in YAML. */
static mg_status number_text(const pctx *c, yaml_node_t *n, const char *key, const char *expected,
                             const char **text)
{
    char d[64];
    if (!n || n->type != YAML_SCALAR_NODE || is_null(n))
        return perr(c, n, key, "expected %s, got %s", expected, describe(n, d, sizeof d));
    if (n->data.scalar.style != YAML_PLAIN_SCALAR_STYLE)
        return perr(c, n, key, "expected %s, got the quoted string %s (write numbers without quotes)",
                    expected, describe(n, d, sizeof d));
    *text = sval(n);
    return MG_OK;
}

static mg_status get_long(const pctx *c, yaml_node_t *n, const char *key, long lo, long hi,
                          const char *expected, long *out)
{
    char d[64];
    const char *text = NULL;
    long v = 0;
    mg_status st = number_text(c, n, key, expected, &text);
    if (st != MG_OK)
        return st;
    if (mg_parse_long(text, &v) != 0 || v < lo || v > hi)
        return perr(c, n, key, "expected %s, got %s", expected, describe(n, d, sizeof d));
    *out = v;
    return MG_OK;
}

/* A finite number in the interval from lo to hi; *_open excludes the bound. */
static mg_status get_double(const pctx *c, yaml_node_t *n, const char *key, double lo, int lo_open,
                            double hi, int hi_open, const char *expected, double *out)
{
    char d[64];
    const char *text = NULL;
    double v = 0.0;
    mg_status st = number_text(c, n, key, expected, &text);
    if (st != MG_OK)
        return st;
    if (mg_parse_double(text, &v) != 0 || !isfinite(v) || v < lo || (lo_open && v == lo) || v > hi ||
        (hi_open && v == hi))
        return perr(c, n, key, "expected %s, got %s", expected, describe(n, d, sizeof d));
    *out = v + 0.0; /* -0 becomes 0, so equal values have one canonical form */
    return MG_OK;
}

/* YAML's true/false (defined with the dataset options, below). */
static mg_status get_bool(const pctx *c, yaml_node_t *n, const char *key, int *out);

/* ---- mappings and lists ------------------------------------------------------------------ */

static size_t map_size(const yaml_node_t *n)
{
    return (size_t)(n->data.mapping.pairs.top - n->data.mapping.pairs.start);
}

/* n must be a mapping whose keys are all in `accepted`, each given once. */
static mg_status check_map(const pctx *c, yaml_node_t *n, const char *key, const char *expected,
                           const char *const *accepted)
{
    char d[64], list[256];
    if (!n || n->type != YAML_MAPPING_NODE)
        return perr(c, n, key, "expected %s, got %s", expected, describe(n, d, sizeof d));
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (!k || k->type != YAML_SCALAR_NODE || is_null(k))
            return perr(c, k ? k : n, key, "expected a key name, got %s", describe(k, d, sizeof d));
        if (!in_list(sval(k), accepted)) {
            join(accepted, list, sizeof list);
            return perr(c, k, key, "unknown key \"%.64s\"; accepted keys: %s", sval(k), list);
        }
        for (yaml_node_pair_t *q = n->data.mapping.pairs.start; q < p; q++) {
            yaml_node_t *kq = yaml_document_get_node(c->doc, q->key);
            if (!strcmp(sval(kq), sval(k)))
                return perr(c, k, key, "duplicate key \"%s\" (first given at line %zu); expected each key once",
                            sval(k), kq->start_mark.line + 1);
        }
    }
    return MG_OK;
}

/* The value of `name` in a checked mapping, or NULL. */
static yaml_node_t *map_get(const pctx *c, const yaml_node_t *n, const char *name)
{
    if (!n || n->type != YAML_MAPPING_NODE)
        return NULL;
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (k && k->type == YAML_SCALAR_NODE && !strcmp(sval(k), name))
            return yaml_document_get_node(c->doc, p->value);
    }
    return NULL;
}

/* The value of `name` in mapping n (or NULL), with its key path in k. */
static yaml_node_t *sub_value(const pctx *c, const yaml_node_t *n, const char *parent, const char *name, char *k)
{
    sub_key(k, parent, name);
    return map_get(c, n, name);
}

static mg_status require(const pctx *c, yaml_node_t *map, yaml_node_t *v, const char *key, const char *name,
                         const char *expected)
{
    if (v)
        return MG_OK;
    return perr(c, map, key, "missing required key \"%s\"; expected %s", name, expected);
}

/* A list, or a single value standing for a one-element list. */
static mg_status get_list(const pctx *c, yaml_node_t *n, const char *key, const char *expected,
                          int allow_empty, list_view *out)
{
    memset(out, 0, sizeof *out);
    if (!n || is_null(n))
        return perr(c, n, key, "expected %s, got nothing", expected);
    if (n->type == YAML_SEQUENCE_NODE) {
        out->items = n->data.sequence.items.start;
        out->n = (size_t)(n->data.sequence.items.top - n->data.sequence.items.start);
        if (out->n == 0 && !allow_empty)
            return perr(c, n, key, "the list is empty; expected %s", expected);
    } else {
        out->one = n;
        out->n = 1;
    }
    if (out->n > c->max_cells)
        return perr(c, n, key, "%zu values; expected at most %zu (the cell limit, MIAGRID_MAX_CELLS)", out->n,
                    c->max_cells);
    return MG_OK;
}

static yaml_node_t *list_at(const pctx *c, const list_view *l, size_t i)
{
    return l->one ? l->one : yaml_document_get_node(c->doc, l->items[i]);
}

static void item_key(char *buf, const char *key, const list_view *l, size_t i)
{
    if (l->one)
        key_fit(buf, snprintf(buf, KEY_MAX, "%s", key));
    else
        key_fit(buf, snprintf(buf, KEY_MAX, "%s[%zu]", key, i));
}

/* ---- duplicates ------------------------------------------------------------------------ */

typedef struct {
    const char *s;
    double d;
    uint64_t u;
    size_t i;
} dup_entry;

static int cmp_index(size_t a, size_t b) { return (a > b) - (a < b); }

static int cmp_str(const void *pa, const void *pb)
{
    const dup_entry *a = pa, *b = pb;
    int r = strcmp(a->s, b->s);
    return r ? r : cmp_index(a->i, b->i);
}

static int cmp_dbl(const void *pa, const void *pb)
{
    const dup_entry *a = pa, *b = pb;
    int r = (a->d > b->d) - (a->d < b->d);
    return r ? r : cmp_index(a->i, b->i);
}

static int cmp_u64(const void *pa, const void *pb)
{
    const dup_entry *a = pa, *b = pb;
    int r = (a->u > b->u) - (a->u < b->u);
    return r ? r : cmp_index(a->i, b->i);
}

/* Sorts e[0..n) with cmp and finds the earliest (in file order) value equal
 * to an earlier one: *later gets its index, *first the earlier one's. Returns
 * 1 if there is such a pair. Sorting keeps this O(n log n) for long lists. */
static int find_duplicate(dup_entry *e, size_t n, int (*cmp)(const void *, const void *), size_t *first,
                          size_t *later)
{
    qsort(e, n, sizeof *e, cmp);
    int found = 0;
    for (size_t k = 1; k < n; k++) {
        dup_entry a = e[k - 1], b = e[k];
        a.i = b.i = 0;
        if (cmp(&a, &b) != 0)
            continue;
        size_t run0 = k - 1;
        while (run0 > 0) {
            dup_entry p = e[run0 - 1];
            p.i = 0;
            if (cmp(&p, &a) != 0)
                break;
            run0--;
        }
        if (!found || e[k].i < *later) {
            *first = e[run0].i;
            *later = e[k].i;
            found = 1;
        }
    }
    return found;
}

/* Checks that no two values of a list are equal: str (canonical JSON),
 * dbl or u64 gives the values. */
static mg_status check_unique(const pctx *c, const list_view *l, const char *key, const char *what,
                              const char *str, size_t stride, const double *dbl, const uint64_t *u64)
{
    mg_error *err = c->err;
    mg_status st = MG_OK;
    dup_entry *e = NULL;
    size_t first = 0, later = 0;
    int (*cmp)(const void *, const void *) = str ? cmp_str : dbl ? cmp_dbl : cmp_u64;
    if (l->n < 2)
        return MG_OK;
    e = mg_calloc(l->n, sizeof *e, "duplicate check", err);
    if (!e)
        return MG_ERR_NOMEM;
    for (size_t i = 0; i < l->n; i++) {
        e[i].i = i;
        if (str)
            e[i].s = str + i * stride;
        else if (dbl)
            e[i].d = dbl[i];
        else
            e[i].u = u64[i];
    }
    if (find_duplicate(e, l->n, cmp, &first, &later)) {
        char k[KEY_MAX];
        item_key(k, key, l, later);
        yaml_node_t *n0 = list_at(c, l, first);
        st = perr(c, list_at(c, l, later), k, "duplicate %s (same as %s[%zu] at line %zu); expected each value once",
                  what, key, first, n0->start_mark.line + 1);
    }
    free(e);
    return st;
}

/* ---- canonical JSON ------------------------------------------------------------------ */

static mg_status canon_store(const pctx *c, mg_strbuf *b, yaml_node_t *n, const char *key, char *out)
{
    mg_status st = MG_OK;
    if (b->oom)
        st = mg_error_set(c->err, MG_ERR_NOMEM, "%s: out of memory building canonical form", c->path);
    else if (b->len >= MG_CANON_MAX)
        st = perr(c, n, key, "value too long (canonical form of %zu bytes); expected at most %d",
                  b->len, MG_CANON_MAX - 1);
    else
        memcpy(out, b->s, b->len + 1);
    mg_strbuf_free(b);
    return st;
}

static void canon_name(mg_strbuf *b, const char *field, const char *name)
{
    mg_strbuf_append(b, "{");
    mg_strbuf_json_str(b, field);
    mg_strbuf_append(b, ":");
    mg_strbuf_json_str(b, name);
    mg_strbuf_append(b, "}");
}

static void canon_schedule(mg_strbuf *b, const mg_train_spec *t)
{
    if (!strcmp(t->schedule, "multistep")) {
        mg_strbuf_append(b, "{\"gamma\":");
        mg_strbuf_json_num(b, t->gamma);
        mg_strbuf_append(b, ",\"milestones\":[");
        for (int i = 0; i < t->n_milestones; i++)
            mg_strbuf_printf(b, "%s%d", i ? "," : "", t->milestones[i]);
        mg_strbuf_append(b, "],\"name\":\"multistep\"}");
    } else if (!strcmp(t->schedule, "cosine")) {
        mg_strbuf_append(b, "{\"eta_min\":");
        mg_strbuf_json_num(b, t->eta_min);
        mg_strbuf_append(b, ",\"name\":\"cosine\"}");
    } else {
        canon_name(b, "name", "constant");
    }
}

/* Every key, defaults included, so a recipe says exactly how its model was trained. */
static void canon_train(mg_strbuf *b, const mg_train_spec *t)
{
    mg_strbuf_append(b, "{\"augment\":[");
    if (t->augment_crop)
        mg_strbuf_append(b, "\"crop\"");
    if (t->augment_flip)
        mg_strbuf_append(b, t->augment_crop ? ",\"flip\"" : "\"flip\"");
    mg_strbuf_printf(b, "],\"batch\":%d,\"beta1\":", t->batch);
    mg_strbuf_json_num(b, t->beta1);
    mg_strbuf_append(b, ",\"beta2\":");
    mg_strbuf_json_num(b, t->beta2);
    if (t->patience > 0)
        mg_strbuf_printf(b, ",\"early_stopping\":{\"patience\":%d}", t->patience);
    else
        mg_strbuf_append(b, ",\"early_stopping\":null");
    mg_strbuf_printf(b, ",\"epochs\":%d,\"eps\":", t->epochs);
    mg_strbuf_json_num(b, t->eps);
    mg_strbuf_append(b, ",\"lr\":");
    mg_strbuf_json_num(b, t->lr);
    mg_strbuf_append(b, ",\"momentum\":");
    mg_strbuf_json_num(b, t->momentum);
    mg_strbuf_printf(b, ",\"nesterov\":%s,\"optimizer\":", t->nesterov ? "true" : "false");
    mg_strbuf_json_str(b, t->optimizer);
    mg_strbuf_append(b, ",\"schedule\":");
    canon_schedule(b, t);
    mg_strbuf_append(b, ",\"weight_decay\":");
    mg_strbuf_json_num(b, t->weight_decay);
    mg_strbuf_append(b, "}");
}

static void canon_arch(mg_strbuf *b, const mg_arch_spec *a)
{
    if (strcmp(a->name, "mlp") != 0) {
        mg_strbuf_append(b, "{\"init\":");
        mg_strbuf_json_str(b, a->init);
        mg_strbuf_append(b, ",\"name\":");
        mg_strbuf_json_str(b, a->name);
        mg_strbuf_append(b, "}");
        return;
    }
    mg_strbuf_append(b, "{\"activation\":");
    mg_strbuf_json_str(b, a->act);
    mg_strbuf_append(b, ",\"hidden\":[");
    for (int i = 0; i < a->n_hidden; i++)
        mg_strbuf_printf(b, "%s%d", i ? "," : "", a->hidden[i]);
    mg_strbuf_append(b, "],\"init\":");
    mg_strbuf_json_str(b, a->init);
    mg_strbuf_append(b, ",\"name\":\"mlp\"}");
}

/* ---- top-level sections ------------------------------------------------------------------ */

static mg_status parse_name(const pctx *c, yaml_node_t *n, mg_grid *g)
{
    static const char expected[] = "a grid name of letters, digits, '.', '_' and '-'";
    mg_status st = get_str(c, n, "name", expected, g->name, MG_NAME_MAX);
    if (st != MG_OK)
        return st;
    for (const char *p = g->name; *p; p++) {
        char ch = *p;
        int ok = (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
                 ch == '.' || ch == '_' || ch == '-';
        if (!ok)
            return perr(c, n, "name", "invalid character '%c' in \"%s\"; expected %s", ch, g->name, expected);
    }
    return MG_OK;
}

static mg_status parse_seeds(const pctx *c, yaml_node_t *n, mg_grid *g)
{
    mg_error *err = c->err;
    list_view l;
    char k[KEY_MAX];
    if (!n) {
        g->seeds = mg_calloc(1, sizeof *g->seeds, "seeds", err);
        if (!g->seeds)
            return MG_ERR_NOMEM;
        g->n_seeds = 1;
        return MG_OK;
    }
    mg_status st = get_list(c, n, "seeds", "a list of non-negative integers", 0, &l);
    if (st != MG_OK)
        return st;
    g->seeds = mg_calloc(l.n, sizeof *g->seeds, "seeds", err);
    if (!g->seeds)
        return MG_ERR_NOMEM;
    g->n_seeds = l.n;
    for (size_t i = 0; i < l.n; i++) {
        long v = 0;
        item_key(k, "seeds", &l, i);
        st = get_long(c, list_at(c, &l, i), k, 0, LONG_MAX, "a non-negative integer", &v);
        if (st != MG_OK)
            return st;
        g->seeds[i] = (uint64_t)v;
    }
    return check_unique(c, &l, "seeds", "seed", NULL, 0, NULL, g->seeds);
}

/* Every key of mapping n must be in `accepted`; `what` names the owner in the message. */
static mg_status check_applies(const pctx *c, yaml_node_t *n, const char *key, const char *what,
                               const char *const *accepted)
{
    char list[256];
    for (yaml_node_pair_t *p = n->data.mapping.pairs.start; p < n->data.mapping.pairs.top; p++) {
        yaml_node_t *k = yaml_document_get_node(c->doc, p->key);
        if (!in_list(sval(k), accepted)) {
            join(accepted, list, sizeof list);
            return perr(c, k, key, "key \"%s\" does not apply to %s; accepted keys: %s", sval(k), what, list);
        }
    }
    return MG_OK;
}

/* The data.split sizes as canonical JSON. four-way without dev parts and
 * population keeps the historic form (so existing node keys stay); every
 * other split names its protocol and all its settings. */
static void canon_split(mg_strbuf *b, const mg_split_cfg *f)
{
    switch (f->protocol) {
    case MG_PROTO_FOUR_WAY:
        mg_strbuf_append(b, "{");
        if (f->population)
            mg_strbuf_printf(b, "\"population\":%zu,", f->population);
        if (f->shadow_dev)
            mg_strbuf_printf(b, "\"shadow_dev\":%zu,", f->shadow_dev);
        mg_strbuf_printf(b, "\"shadow_test\":%zu,\"shadow_train\":%zu,", f->shadow_test, f->shadow_train);
        if (f->target_dev)
            mg_strbuf_printf(b, "\"target_dev\":%zu,", f->target_dev);
        mg_strbuf_printf(b, "\"target_test\":%zu,\"target_train\":%zu}", f->target_test, f->target_train);
        break;
    case MG_PROTO_EXPLICIT:
        mg_strbuf_printf(b, "{\"population\":%zu,\"protocol\":\"explicit\",\"shadow_dev\":%zu,\"shadow_test\":%zu,"
                         "\"shadow_train\":%zu,\"shadows\":%zu,\"target_dev\":%zu,\"target_test\":%zu,"
                         "\"target_train\":%zu}", f->population, f->shadow_dev, f->shadow_test, f->shadow_train,
                         f->n_shadows, f->target_dev, f->target_test, f->target_train);
        break;
    case MG_PROTO_MIA_PRUNE:
        mg_strbuf_printf(b, "{\"population\":%zu,\"protocol\":\"mia-prune\",\"shadows\":%zu}", f->population,
                         f->n_shadows);
        break;
    case MG_PROTO_WEMEM:
        mg_strbuf_append(b, "{\"holdout\":");
        mg_strbuf_json_num(b, f->holdout);
        mg_strbuf_printf(b, ",\"population\":%zu,\"protocol\":\"wemem\",\"shadows\":%zu,\"test_fraction\":",
                         f->population, f->n_shadows);
        mg_strbuf_json_num(b, f->test_fraction);
        mg_strbuf_append(b, "}");
        break;
    }
}

static mg_status parse_split(const pctx *c, yaml_node_t *split, mg_split_spec *s)
{
    static const char expected[] = "a mapping of split settings (protocol, the part sizes, shadows, population)";
    static const char *const *const proto_keys[] = {four_way_keys, explicit_keys, mia_prune_keys, wemem_keys};
    static const char *const sizes[] = {"target_train", "target_test", "shadow_train", "shadow_test",
                                        "target_dev", "shadow_dev", "population"};
    mg_split_cfg *f = &s->cfg;
    size_t *fields[] = {&f->target_train, &f->target_test, &f->shadow_train, &f->shadow_test,
                        &f->target_dev, &f->shadow_dev, &f->population};
    char k[KEY_MAX], name[MG_NAME_MAX], what[64];
    mg_split_protocol proto = MG_PROTO_FOUR_WAY;
    mg_status st = MG_OK;
    yaml_node_t *v;

    if (split) {
        MG_CHECK(check_map(c, split, "data.split", expected, split_keys));
        if ((v = sub_value(c, split, "data.split", "protocol", k))) {
            MG_CHECK(get_choice(c, v, k, "split protocol", split_protocols, name, sizeof name));
            mg_split_protocol_parse(name, &proto);
        }
    }
    mg_split_cfg_init(f, proto);
    if (split) {
        snprintf(what, sizeof what, "the %s split protocol", mg_split_protocol_str(proto));
        MG_CHECK(check_applies(c, split, "data.split", what, proto_keys[proto]));
        for (int i = 0; i < 7; i++) {
            long x = 0;
            if (proto == MG_PROTO_EXPLICIT && i < 4 && !map_get(c, split, sizes[i])) {
                st = perr(c, split, "data.split", "missing required key \"%s\"; expected the explicit protocol to "
                          "give target_train, target_test, shadow_train and shadow_test", sizes[i]);
                goto cleanup;
            }
            if (!(v = sub_value(c, split, "data.split", sizes[i], k)))
                continue;
            MG_CHECK(get_long(c, v, k, i < 4 ? 1 : 0, UINT32_MAX, i < 4 ? "a positive integer" :
                              "an integer >= 0", &x));
            *fields[i] = (size_t)x;
        }
        if ((v = sub_value(c, split, "data.split", "shadows", k))) {
            long x = 0;
            MG_CHECK(get_long(c, v, k, 1, MG_SPLIT_MAX_SHADOWS, "an integer from 1 to 1024", &x));
            f->n_shadows = (size_t)x;
        }
        if ((v = sub_value(c, split, "data.split", "holdout", k)))
            MG_CHECK(get_double(c, v, k, 0.0, 1, 1.0, 1, "a number in (0, 1)", &f->holdout));
        if ((v = sub_value(c, split, "data.split", "test_fraction", k)))
            MG_CHECK(get_double(c, v, k, 0.0, 1, 1.0, 1, "a number in (0, 1)", &f->test_fraction));
    }
    if (proto == MG_PROTO_FOUR_WAY || proto == MG_PROTO_EXPLICIT) {
        s->target_train = (long)f->target_train;
        s->target_test = (long)f->target_test;
        s->shadow_train = (long)f->shadow_train;
        s->shadow_test = (long)f->shadow_test;
    } else {
        s->target_train = s->target_test = s->shadow_train = s->shadow_test = 0;
    }
cleanup:
    return st;
}

static mg_status parse_data(const pctx *c, yaml_node_t *n, mg_grid *g)
{
    mg_split_spec *s = &g->split;
    yaml_node_t *split = NULL;
    mg_strbuf b;
    mg_status st = MG_OK;
    if (n) {
        st = check_map(c, n, "data", "a mapping with keys root, split", data_keys);
        if (st != MG_OK)
            return st;
        yaml_node_t *root = map_get(c, n, "root");
        if (root) {
            st = get_str(c, root, "data.root", "a directory", g->data_root, sizeof g->data_root);
            if (st != MG_OK)
                return st;
        }
        split = map_get(c, n, "split");
    }
    st = parse_split(c, split, s);
    if (st != MG_OK)
        return st;
    mg_strbuf_init(&b);
    canon_split(&b, &s->cfg);
    return canon_store(c, &b, n, "data.split", s->canon);
}

/* train.schedule: a name, or {name, ...} with that schedule's keys. The node
 * of the last milestone goes to *last_milestone, for the check against the
 * epochs once the whole section is read. */
static mg_status parse_schedule(const pctx *c, yaml_node_t *n, const char *key, mg_train_spec *t,
                                yaml_node_t **last_milestone)
{
    static const char expected[] = "constant, {name: multistep, milestones: [<epoch>, ...], gamma: <factor>} or "
                                   "{name: cosine, eta_min: <lr>}";
    char k[KEY_MAX], k2[KEY_MAX];
    yaml_node_t *name = n, *x;
    list_view l;
    long v = 0;
    mg_status st = MG_OK;
    int is_map = n && n->type == YAML_MAPPING_NODE;
    if (is_map) {
        name = map_get(c, n, "name");
        MG_CHECK(require(c, n, name, key, "name", "name: constant, multistep or cosine"));
        sub_key(k, key, "name");
    } else {
        snprintf(k, sizeof k, "%s", key);
    }
    MG_CHECK(get_choice(c, name, k, "schedule", schedule_names, t->schedule, sizeof t->schedule));
    t->n_milestones = 0;
    t->gamma = 0.1;
    t->eta_min = 0.0;
    *last_milestone = NULL;
    if (!strcmp(t->schedule, "constant")) {
        if (is_map)
            MG_CHECK(check_map(c, n, key, "{name: constant}", constant_keys));
    } else if (!strcmp(t->schedule, "cosine")) {
        if (is_map) {
            MG_CHECK(check_map(c, n, key, "{name: cosine, eta_min: <lr>}", cosine_keys));
            if ((x = sub_value(c, n, key, "eta_min", k)))
                MG_CHECK(get_double(c, x, k, 0.0, 0, INFINITY, 0, "a number >= 0", &t->eta_min));
        }
    } else {
        if (!is_map) {
            st = perr(c, n, key, "multistep needs milestones; expected %s", expected);
            goto cleanup;
        }
        MG_CHECK(check_map(c, n, key, "{name: multistep, milestones: [<epoch>, ...], gamma: <factor>}",
                           multistep_keys));
        yaml_node_t *ms = map_get(c, n, "milestones");
        MG_CHECK(require(c, n, ms, key, "milestones", "milestones: a list of increasing epochs"));
        sub_key(k, key, "milestones");
        MG_CHECK(get_list(c, ms, k, "a list of increasing positive integers (epochs)", 0, &l));
        if (l.n > MG_MAX_MILESTONES) {
            st = perr(c, ms, k, "%zu milestones; expected at most %d", l.n, MG_MAX_MILESTONES);
            goto cleanup;
        }
        for (size_t i = 0; i < l.n; i++) {
            yaml_node_t *item = list_at(c, &l, i);
            item_key(k2, k, &l, i);
            MG_CHECK(get_long(c, item, k2, 1, INT_MAX, "a positive integer (an epoch)", &v));
            if (i > 0 && v <= t->milestones[i - 1]) {
                st = perr(c, item, k2, "milestone %ld is not above the one before (%d); expected increasing epochs", v,
                          t->milestones[i - 1]);
                goto cleanup;
            }
            t->milestones[i] = (int)v;
            *last_milestone = item;
        }
        t->n_milestones = (int)l.n;
        if ((x = sub_value(c, n, key, "gamma", k)))
            MG_CHECK(get_double(c, x, k, 0.0, 1, INFINITY, 0, "a number > 0", &t->gamma));
    }
cleanup:
    return st;
}

/* train.early_stopping: none or {patience: N}. */
static mg_status parse_early_stopping(const pctx *c, yaml_node_t *n, const char *key, int *patience)
{
    char k[KEY_MAX];
    long v = 0;
    mg_status st = MG_OK;
    if (n && n->type == YAML_SCALAR_NODE && !is_null(n) && !strcmp(sval(n), "none")) {
        *patience = 0;
        return MG_OK;
    }
    MG_CHECK(check_map(c, n, key, "none or {patience: <epochs without improvement>}", early_stopping_keys));
    yaml_node_t *x = sub_value(c, n, key, "patience", k);
    MG_CHECK(require(c, n, x, key, "patience", "patience: a positive integer"));
    MG_CHECK(get_long(c, x, k, 1, INT_MAX, "a positive integer (epochs without improvement)", &v));
    *patience = (int)v;
cleanup:
    return st;
}

/* train.augment: none, or a list of transforms (applied as crop, then flip). */
static mg_status parse_augment(const pctx *c, yaml_node_t *n, const char *key, mg_train_spec *t)
{
    char k[KEY_MAX], name[16];
    list_view l;
    size_t seen[2] = {0, 0};
    mg_status st = MG_OK;
    t->augment_crop = t->augment_flip = 0;
    if (n && n->type == YAML_SCALAR_NODE && !is_null(n) && !strcmp(sval(n), "none"))
        return MG_OK;
    MG_CHECK(get_list(c, n, key, "none, or a list of: crop, flip", 0, &l));
    for (size_t i = 0; i < l.n; i++) {
        yaml_node_t *item = list_at(c, &l, i);
        item_key(k, key, &l, i);
        MG_CHECK(get_choice(c, item, k, "augmentation", augment_names, name, sizeof name));
        size_t a = strcmp(name, "crop") == 0 ? 0 : 1;
        if (seen[a]) {
            st = perr(c, item, k, "duplicate augmentation \"%s\" (same as %s[%zu]); expected each once", name, key,
                      seen[a] - 1);
            goto cleanup;
        }
        seen[a] = i + 1;
    }
    t->augment_crop = seen[0] != 0;
    t->augment_flip = seen[1] != 0;
cleanup:
    return st;
}

/* train, or finetune (base is then the parsed train section). */
static mg_status parse_train(const pctx *c, yaml_node_t *n, const char *key, const mg_train_spec *base,
                             int finetune, mg_train_spec *t)
{
    char k[KEY_MAX];
    long v = 0;
    mg_status st = MG_OK;
    mg_strbuf b;
    yaml_node_t *last_milestone = NULL, *nesterov_at = NULL, *momentum_at = NULL;
    if (base) {
        *t = *base;
    } else {
        memset(t, 0, sizeof *t);
        t->epochs = 30;
        t->batch = 128;
        snprintf(t->optimizer, sizeof t->optimizer, "sgd");
        t->lr = 0.01;
        t->momentum = 0.9;
        t->weight_decay = 5e-4;
        t->beta1 = 0.9;
        t->beta2 = 0.999;
        t->eps = 1e-8;
        snprintf(t->schedule, sizeof t->schedule, "constant");
        t->gamma = 0.1;
    }
    if (finetune) {
        t->epochs = 10;
        t->lr = 0.001;
        /* A schedule is laid out over the epochs of the training it was
         * written for, so fine-tuning does not inherit it. */
        snprintf(t->schedule, sizeof t->schedule, "constant");
        t->n_milestones = 0;
        t->gamma = 0.1;
        t->eta_min = 0.0;
    }
    if (n) {
        st = check_map(c, n, key, "a mapping of training settings", train_keys);
        if (st != MG_OK)
            return st;
        yaml_node_t *x;
        if ((x = sub_value(c, n, key, "epochs", k))) {
            MG_CHECK(get_long(c, x, k, 1, INT_MAX, "a positive integer", &v));
            t->epochs = (int)v;
        }
        if ((x = sub_value(c, n, key, "batch", k))) {
            MG_CHECK(get_long(c, x, k, 1, INT_MAX, "a positive integer", &v));
            t->batch = (int)v;
        }
        if ((x = sub_value(c, n, key, "optimizer", k)))
            MG_CHECK(get_choice(c, x, k, "optimizer", optimizers, t->optimizer, sizeof t->optimizer));
        if ((x = sub_value(c, n, key, "lr", k)))
            MG_CHECK(get_double(c, x, k, 0.0, 1, INFINITY, 0, "a number > 0", &t->lr));
        if ((momentum_at = sub_value(c, n, key, "momentum", k)))
            MG_CHECK(get_double(c, momentum_at, k, 0.0, 0, 1.0, 1, "a number in [0, 1)", &t->momentum));
        if ((nesterov_at = sub_value(c, n, key, "nesterov", k)))
            MG_CHECK(get_bool(c, nesterov_at, k, &t->nesterov));
        if ((x = sub_value(c, n, key, "weight_decay", k)))
            MG_CHECK(get_double(c, x, k, 0.0, 0, INFINITY, 0, "a number >= 0", &t->weight_decay));
        if ((x = sub_value(c, n, key, "beta1", k)))
            MG_CHECK(get_double(c, x, k, 0.0, 0, 1.0, 1, "a number in [0, 1)", &t->beta1));
        if ((x = sub_value(c, n, key, "beta2", k)))
            MG_CHECK(get_double(c, x, k, 0.0, 0, 1.0, 1, "a number in [0, 1)", &t->beta2));
        if ((x = sub_value(c, n, key, "eps", k)))
            MG_CHECK(get_double(c, x, k, 0.0, 1, INFINITY, 0, "a number > 0", &t->eps));
        if ((x = sub_value(c, n, key, "schedule", k)))
            MG_CHECK(parse_schedule(c, x, k, t, &last_milestone));
        if ((x = sub_value(c, n, key, "early_stopping", k)))
            MG_CHECK(parse_early_stopping(c, x, k, &t->patience));
        if ((x = sub_value(c, n, key, "augment", k)))
            MG_CHECK(parse_augment(c, x, k, t));
    }
    /* Checks across keys, reported at the key most likely to be the slip. */
    if (!strcmp(t->optimizer, "sgd") && t->nesterov && t->momentum == 0.0) {
        yaml_node_t *at = nesterov_at ? nesterov_at : momentum_at ? momentum_at : n;
        sub_key(k, key, nesterov_at ? "nesterov" : momentum_at ? "momentum" : "");
        st = perr(c, at, at == n ? key : k, "nesterov needs a momentum > 0 (momentum is 0); expected momentum > 0 "
                  "or nesterov: false");
        goto cleanup;
    }
    if (t->n_milestones > 0 && t->milestones[t->n_milestones - 1] >= t->epochs) {
        sub_key(k, key, "schedule.milestones");
        st = perr(c, last_milestone ? last_milestone : n, k, "milestone %d is not below epochs (%d), so it would "
                  "never apply; expected milestones below %d", t->milestones[t->n_milestones - 1], t->epochs,
                  t->epochs);
        goto cleanup;
    }
    mg_strbuf_init(&b);
    canon_train(&b, t);
    st = canon_store(c, &b, n, key, t->canon);
cleanup:
    return st;
}

/* Early stopping watches a dev part of every model it trains, target and
 * shadow: four-way and explicit splits have them only when asked for
 * (mia-prune and wemem always make them). */
static mg_status check_dev_parts(const pctx *c, yaml_node_t *root, const mg_grid *g)
{
    static const char *const sections[2] = {"train", "finetune"};
    const mg_train_spec *t[2] = {&g->train, &g->finetune};
    const mg_split_cfg *s = &g->split.cfg;
    char k[KEY_MAX];
    if ((s->protocol != MG_PROTO_FOUR_WAY && s->protocol != MG_PROTO_EXPLICIT) ||
        (s->target_dev > 0 && s->shadow_dev > 0))
        return MG_OK;
    for (int i = 0; i < 2; i++) {
        if (t[i]->patience == 0)
            continue;
        /* finetune may have inherited the setting: blame where it was written. */
        const char *where = sections[i];
        yaml_node_t *es = map_get(c, map_get(c, root, where), "early_stopping");
        if (!es) {
            where = "train";
            es = map_get(c, map_get(c, root, where), "early_stopping");
        }
        sub_key(k, where, "early_stopping");
        return perr(c, es, k, "early stopping needs dev parts, but data.split has target_dev %zu and shadow_dev %zu; "
                    "expected data.split.target_dev and shadow_dev > 0 (or protocol mia-prune or wemem)",
                    s->target_dev, s->shadow_dev);
    }
    return MG_OK;
}

/* ---- axes ------------------------------------------------------------------------------ */

/* YAML's true/false (plain scalars only, as numbers are). */
static mg_status get_bool(const pctx *c, yaml_node_t *n, const char *key, int *out)
{
    char d[64];
    if (n && n->type == YAML_SCALAR_NODE && n->data.scalar.style == YAML_PLAIN_SCALAR_STYLE) {
        const char *t = sval(n);
        if (!strcmp(t, "true") || !strcmp(t, "True") || !strcmp(t, "TRUE")) {
            *out = 1;
            return MG_OK;
        }
        if (!strcmp(t, "false") || !strcmp(t, "False") || !strcmp(t, "FALSE")) {
            *out = 0;
            return MG_OK;
        }
    }
    return perr(c, n, key, "expected true or false, got %s", describe(n, d, sizeof d));
}

/* The options of an image folder or csv dataset entry (mapping n), resolved. */
static mg_status parse_dataset_opts(const pctx *c, yaml_node_t *n, const char *key, mg_dataset_spec *d)
{
    char k[KEY_MAX], delim[8];
    mg_data_options *o = &d->opts;
    yaml_node_t *v;
    long x = 0;
    mg_status st = MG_OK;
    if (mg_data_is_image_folder(d->name)) {
        o->image_size = mg_data_default_image_size(d->name);
        o->channels = 3;
        if ((v = sub_value(c, n, key, "image_size", k))) {
            MG_CHECK(get_long(c, v, k, 1, 4096, "an image size in pixels from 1 to 4096", &x));
            o->image_size = (int)x;
        } else if (o->image_size == 0) {
            st = perr(c, n, key, "missing required key \"image_size\"; expected image_size: <pixels> for %s",
                      d->name);
            goto cleanup;
        }
        if ((v = sub_value(c, n, key, "channels", k))) {
            MG_CHECK(get_long(c, v, k, 1, 3, "1 (grey) or 3 (RGB)", &x));
            if (x == 2) {
                st = perr(c, v, k, "expected 1 (grey) or 3 (RGB), got \"2\"");
                goto cleanup;
            }
            o->channels = (int)x;
        }
    } else if (!strcmp(d->name, "csv")) {
        mg_csv_opts *co = &o->csv;
        co->delimiter = ',';
        if ((v = sub_value(c, n, key, "label_column", k))) {
            MG_CHECK(get_long(c, v, k, 0, 1000000, "a column number from 0", &x));
            co->label_column = (int)x;
        }
        if ((v = sub_value(c, n, key, "header", k)))
            MG_CHECK(get_bool(c, v, k, &co->header));
        if ((v = sub_value(c, n, key, "delimiter", k))) {
            MG_CHECK(get_str(c, v, k, "one character", delim, sizeof delim));
            if (strlen(delim) != 1 || delim[0] == '"' || delim[0] == '\n' || delim[0] == '\r') {
                st = perr(c, v, k, "expected one character other than a double quote or line break, got \"%s\"",
                          delim);
                goto cleanup;
            }
            co->delimiter = delim[0];
        }
        if ((v = sub_value(c, n, key, "label_base", k))) {
            MG_CHECK(get_long(c, v, k, 0, 1000000, "an integer >= 0 (the first class's label)", &x));
            co->label_base = (int)x;
        }
        if ((v = sub_value(c, n, key, "classes", k))) {
            MG_CHECK(get_long(c, v, k, 1, 1000000, "a positive number of classes", &x));
            co->n_classes = (int)x;
        }
    }
cleanup:
    return st;
}

static void canon_dataset(mg_strbuf *b, const mg_dataset_spec *d)
{
    const mg_data_options *o = &d->opts;
    int generic = mg_data_by_content(d->name);
    if (mg_data_is_image_folder(d->name)) {
        mg_strbuf_printf(b, "{\"channels\":%d,\"image_size\":%d,\"name\":", o->channels, o->image_size);
        mg_strbuf_json_str(b, d->name);
    } else if (!strcmp(d->name, "csv")) {
        char delim[2] = {o->csv.delimiter, '\0'};
        mg_strbuf_printf(b, "{\"classes\":%d,\"delimiter\":", o->csv.n_classes);
        mg_strbuf_json_str(b, delim);
        mg_strbuf_printf(b, ",\"header\":%s,\"label_base\":%d,\"label_column\":%d,\"name\":\"csv\"",
                         o->csv.header ? "true" : "false", o->csv.label_base, o->csv.label_column);
    } else {
        canon_name(b, "name", d->name);
        return;
    }
    /* A generic dataset is whatever its root holds: its content digest once
     * read (mg_grid_bind_data), the root's path until then. */
    if (generic && d->digest[0]) {
        mg_strbuf_append(b, ",\"sha256\":");
        mg_strbuf_json_str(b, d->digest);
    } else if (generic && d->root[0]) {
        mg_strbuf_append(b, ",\"root\":");
        mg_strbuf_json_str(b, d->root);
    }
    mg_strbuf_append(b, "}");
}

static mg_status parse_dataset(const pctx *c, yaml_node_t *n, const char *key, const mg_grid *g,
                               mg_dataset_spec *d)
{
    char k[KEY_MAX], expected[320], labels[16], what[96];
    mg_strbuf b;
    yaml_node_t *name = n, *root = NULL;
    int is_map = n && n->type == YAML_MAPPING_NODE;
    mg_status st = MG_OK;
    snprintf(expected, sizeof expected, "a dataset name (one of: %s) or {name, root, ...}", mg_data_known_list());
    snprintf(d->root, sizeof d->root, "%s", g->data_root);
    memset(&d->opts, 0, sizeof d->opts);
    if (is_map) {
        MG_CHECK(check_map(c, n, key, expected, dataset_opt_keys));
        name = map_get(c, n, "name");
        MG_CHECK(require(c, n, name, key, "name", expected));
        root = map_get(c, n, "root");
        if (root) {
            sub_key(k, key, "root");
            MG_CHECK(get_str(c, root, k, "a directory", d->root, sizeof d->root));
        }
        sub_key(k, key, "name");
    } else {
        snprintf(k, sizeof k, "%s", key);
    }
    MG_CHECK(get_str(c, name, k, expected, d->name, sizeof d->name));
    if (!mg_data_known(d->name)) {
        st = perr(c, name, k, "unknown dataset \"%s\"; expected one of: %s", d->name, mg_data_known_list());
        goto cleanup;
    }
    if (mg_data_by_content(d->name) && !root) {
        st = perr(c, n, key, "missing required key \"root\"; expected {name: %s, root: <%s>%s}", d->name,
                  strcmp(d->name, "csv") ? "folder" : "CSV file", strcmp(d->name, "csv") ? ", image_size: <pixels>" : "");
        goto cleanup;
    }
    if (is_map) {
        const char *const *accepted = mg_data_is_image_folder(d->name) ? image_folder_keys
                                      : !strcmp(d->name, "csv")       ? csv_keys
                                      : !strcmp(d->name, "cifar100")  ? cifar100_keys
                                                                      : dataset_keys;
        snprintf(what, sizeof what, "dataset \"%s\"", d->name);
        MG_CHECK(check_applies(c, n, key, what, accepted));
        MG_CHECK(parse_dataset_opts(c, n, key, d));
        yaml_node_t *lv = sub_value(c, n, key, "labels", k);
        if (lv) {
            MG_CHECK(get_choice(c, lv, k, "label set", cifar100_labels, labels, sizeof labels));
            /* The coarse labels are their own registry dataset; naming it so makes
             * {name: cifar100, labels: coarse} and cifar100-coarse one value. */
            if (!strcmp(labels, "coarse"))
                snprintf(d->name, sizeof d->name, "cifar100-coarse");
        }
    } else {
        if (mg_data_is_image_folder(d->name) && mg_data_default_image_size(d->name) == 0) {
            st = perr(c, n, key, "%s needs a root and an image size; expected {name: %s, root: <folder>, "
                      "image_size: <pixels>}", d->name, d->name);
            goto cleanup;
        }
        MG_CHECK(parse_dataset_opts(c, n, key, d));
    }
    mg_strbuf_init(&b);
    canon_dataset(&b, d);
    st = canon_store(c, &b, n, key, d->canon);
cleanup:
    return st;
}

/* A list of hidden widths (or one width). */
static mg_status parse_hidden(const pctx *c, yaml_node_t *n, const char *key, int *hidden, int *n_hidden)
{
    char k[KEY_MAX], expected[96];
    list_view l;
    snprintf(expected, sizeof expected, "a list of at most %d positive integers (layer widths)", MG_MAX_HIDDEN);
    mg_status st = get_list(c, n, key, expected, 0, &l);
    if (st != MG_OK)
        return st;
    if (l.n > MG_MAX_HIDDEN)
        return perr(c, n, key, "%zu hidden layers; expected at most %d", l.n, MG_MAX_HIDDEN);
    for (size_t i = 0; i < l.n; i++) {
        long v = 0;
        item_key(k, key, &l, i);
        st = get_long(c, list_at(c, &l, i), k, 1, HIDDEN_MAX, "a positive integer up to 1000000", &v);
        if (st != MG_OK)
            return st;
        hidden[i] = (int)v;
    }
    *n_hidden = (int)l.n;
    return MG_OK;
}

/* The activation names the grid accepts for an mg_act, or NULL. */
static const char *act_name(mg_act a)
{
    return a == MG_ACT_RELU ? "relu" : a == MG_ACT_TANH ? "tanh" : NULL;
}

/* An mlp preset expanded into its hidden widths and activation. */
static mg_status expand_preset(const pctx *c, yaml_node_t *n, const char *key, int *hidden, int *n_hidden,
                               char *act, size_t act_cap)
{
    char preset[16];
    mg_act a = MG_ACT_RELU;
    int widths[MG_MAX_HIDDEN > 8 ? MG_MAX_HIDDEN : 8];
    int nw = 0;
    mg_status st = get_choice(c, n, key, "mlp preset", mlp_presets, preset, sizeof preset);
    if (st != MG_OK)
        return st;
    if (mg_mlp_preset(preset, widths, &nw, &a, NULL) != MG_OK || nw < 1 || nw > MG_MAX_HIDDEN || !act_name(a))
        return perr(c, n, key, "preset \"%s\" is not available in this build; expected one of the hidden/activation "
                    "forms", preset);
    memcpy(hidden, widths, (size_t)nw * sizeof *hidden);
    *n_hidden = nw;
    snprintf(act, act_cap, "%s", act_name(a));
    return MG_OK;
}

/* A preset fixes the hidden layers and the activation: giving both is a contradiction. */
static mg_status preset_alone(const pctx *c, yaml_node_t *preset, yaml_node_t *hidden, yaml_node_t *act,
                              const char *key)
{
    char k[KEY_MAX];
    if (!preset || (!hidden && !act))
        return MG_OK;
    sub_key(k, key, "preset");
    return perr(c, preset, k, "cannot be combined with %s (a preset fixes the hidden layers and the activation); "
                "expected either preset or hidden/activation", hidden ? "hidden" : "activation");
}

static mg_status parse_arch(const pctx *c, yaml_node_t *n, const char *key, mg_arch_spec *a)
{
    char k[KEY_MAX], expected[400];
    mg_strbuf b;
    yaml_node_t *name = n, *hidden = NULL, *act = NULL, *preset = NULL, *init = NULL;
    mg_status st = MG_OK;
    int is_map = n && n->type == YAML_MAPPING_NODE;
    snprintf(expected, sizeof expected, "an architecture (one of: %s) or {name, init}; mlp also takes hidden and "
             "activation, or preset", mg_model_arch_list());
    if (is_map) {
        MG_CHECK(check_map(c, n, key, expected, arch_keys));
        name = map_get(c, n, "name");
        MG_CHECK(require(c, n, name, key, "name", "name: <architecture>"));
        sub_key(k, key, "name");
        hidden = map_get(c, n, "hidden");
        act = map_get(c, n, "activation");
        preset = map_get(c, n, "preset");
        init = map_get(c, n, "init");
    } else {
        snprintf(k, sizeof k, "%s", key);
    }
    MG_CHECK(get_str(c, name, k, expected, a->name, sizeof a->name));
    if (!mg_model_arch_known(a->name)) {
        st = perr(c, name, k, "unknown architecture \"%s\"; expected one of: %s", a->name, mg_model_arch_list());
        goto cleanup;
    }
    snprintf(a->act, sizeof a->act, "relu");
    snprintf(a->init, sizeof a->init, "default");
    if (init) {
        sub_key(k, key, "init");
        MG_CHECK(get_choice(c, init, k, "init", init_names, a->init, sizeof a->init));
    }
    if (strcmp(a->name, "mlp") != 0) {
        /* The other architectures are fixed (their published layer sizes):
         * only the initialisation is left to choose. */
        if (is_map) {
            char fixed[MG_NAME_MAX + 48];
            snprintf(fixed, sizeof fixed, "{name: %s, init: default|xavier-normal}", a->name);
            MG_CHECK(check_map(c, n, key, fixed, plain_arch_keys));
        }
        a->n_hidden = 0;
    } else if (preset) {
        MG_CHECK(preset_alone(c, preset, hidden, act, key));
        sub_key(k, key, "preset");
        MG_CHECK(expand_preset(c, preset, k, a->hidden, &a->n_hidden, a->act, sizeof a->act));
    } else {
        a->n_hidden = 2;
        a->hidden[0] = 512;
        a->hidden[1] = 256;
        if (hidden) {
            sub_key(k, key, "hidden");
            MG_CHECK(parse_hidden(c, hidden, k, a->hidden, &a->n_hidden));
        }
        if (act) {
            sub_key(k, key, "activation");
            MG_CHECK(get_choice(c, act, k, "activation", activations, a->act, sizeof a->act));
        }
    }
    mg_strbuf_init(&b);
    canon_arch(&b, a);
    st = canon_store(c, &b, n, key, a->canon);
cleanup:
    return st;
}

static int cmp_layer(const void *a, const void *b)
{
    return strcmp((const char *)a, (const char *)b);
}

/* The layer prefixes a method is restricted to (Gonon et al. make the last
 * segments of ResNet-20 butterflies): a list of tensor-name prefixes, sorted. */
static mg_status parse_layers(const pctx *c, yaml_node_t *n, const char *key, mg_prune_spec *p)
{
    static const char expected[] = "a list of tensor-name prefixes (e.g. [L.6.c, L.7.c, L.8.c])";
    list_view l;
    mg_status st = get_list(c, n, key, expected, 0, &l);
    if (st != MG_OK)
        return st;
    if (l.n > MG_MAX_PRUNE_LAYERS)
        return perr(c, n, key, "%zu layer prefixes; expected at most %d", l.n, MG_MAX_PRUNE_LAYERS);
    for (size_t i = 0; i < l.n; i++) {
        char ki[KEY_MAX];
        item_key(ki, key, &l, i);
        yaml_node_t *it = list_at(c, &l, i);
        st = get_str(c, it, ki, "a tensor-name prefix", p->layers[i], sizeof p->layers[i]);
        if (st != MG_OK)
            return st;
        if (!p->layers[i][0])
            return perr(c, it, ki, "an empty prefix would match every tensor; leave out layers instead");
    }
    st = check_unique(c, &l, key, "layer prefix", p->layers[0], sizeof p->layers[0], NULL, NULL);
    if (st != MG_OK)
        return st;
    p->n_layers = (int)l.n;
    qsort(p->layers, l.n, sizeof p->layers[0], cmp_layer);
    return MG_OK;
}

static int cmp_plain_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* MIA-Pruning's selection: a list of candidate sparsities, or
 * {candidates: [...], attack: nn-cls}. Stored increasing. */
static mg_status parse_select(const pctx *c, yaml_node_t *n, const char *key, mg_prune_spec *p)
{
    static const char expected[] = "a list of candidate sparsities in (0, 1), or {candidates: [...], attack: "
                                   "nn-cls, nn or top3-nn}";
    char k[KEY_MAX];
    list_view l;
    yaml_node_t *cands = n, *attack = NULL;
    mg_status st;
    snprintf(p->select_attack, sizeof p->select_attack, "nn-cls");
    if (n && n->type == YAML_MAPPING_NODE) {
        st = check_map(c, n, key, expected, select_keys);
        if (st != MG_OK)
            return st;
        cands = map_get(c, n, "candidates");
        st = require(c, n, cands, key, "candidates", "candidates: [0.5, 0.7, 0.9]");
        if (st != MG_OK)
            return st;
        attack = map_get(c, n, "attack");
        if (attack) {
            sub_key(k, key, "attack");
            st = get_choice(c, attack, k, "selection attack", select_attacks, p->select_attack,
                            sizeof p->select_attack);
            if (st != MG_OK)
                return st;
        }
        sub_key(k, key, "candidates");
    } else {
        snprintf(k, sizeof k, "%s", key);
    }
    st = get_list(c, cands, k, "a list of candidate sparsities in (0, 1)", 0, &l);
    if (st != MG_OK)
        return st;
    if (l.n > MG_MAX_SELECT)
        return perr(c, cands, k, "%zu candidates; expected at most %d", l.n, MG_MAX_SELECT);
    for (size_t i = 0; i < l.n; i++) {
        char ki[KEY_MAX];
        item_key(ki, k, &l, i);
        st = get_double(c, list_at(c, &l, i), ki, 0.0, 1, 1.0, 1, "a sparsity in (0, 1)", &p->select[i]);
        if (st != MG_OK)
            return st;
    }
    st = check_unique(c, &l, k, "candidate sparsity", NULL, 0, p->select, NULL);
    if (st != MG_OK)
        return st;
    p->n_select = (int)l.n;
    qsort(p->select, l.n, sizeof *p->select, cmp_plain_double);
    return MG_OK;
}

static mg_status parse_prune(const pctx *c, yaml_node_t *n, const char *key, mg_prune_spec *p)
{
    static const char expected[] =
        "a pruning method or {method, schedule, rounds (iterative), rate and rewind_epoch (imp), factors (butterfly), "
        "rho and admm_epochs (admm), penalty (slim), layers, select (MIA-Pruning)}";
    char k[KEY_MAX];
    mg_strbuf b;
    yaml_node_t *method = n, *schedule = NULL, *rounds = NULL, *rate = NULL, *rewind = NULL, *factors = NULL;
    yaml_node_t *rho = NULL, *admm_epochs = NULL, *penalty = NULL, *select = NULL, *layers = NULL;
    mg_status st = MG_OK;
    int is_map = n && n->type == YAML_MAPPING_NODE;
    if (is_map) {
        st = check_map(c, n, key, expected, prune_keys);
        if (st != MG_OK)
            return st;
        method = map_get(c, n, "method");
        st = require(c, n, method, key, "method", "method: l1-unstructured");
        if (st != MG_OK)
            return st;
        schedule = map_get(c, n, "schedule");
        rounds = map_get(c, n, "rounds");
        rate = map_get(c, n, "rate");
        rewind = map_get(c, n, "rewind_epoch");
        factors = map_get(c, n, "factors");
        rho = map_get(c, n, "rho");
        admm_epochs = map_get(c, n, "admm_epochs");
        penalty = map_get(c, n, "penalty");
        select = map_get(c, n, "select");
        layers = map_get(c, n, "layers");
        sub_key(k, key, "method");
    } else {
        snprintf(k, sizeof k, "%s", key);
    }
    st = get_choice(c, method, k, "pruning method", prune_methods, p->method, sizeof p->method);
    if (st != MG_OK)
        return st;
    snprintf(p->schedule, sizeof p->schedule, "one-shot");
    if (schedule) {
        sub_key(k, key, "schedule");
        st = get_choice(c, schedule, k, "pruning schedule", prune_schedules, p->schedule, sizeof p->schedule);
        if (st != MG_OK)
            return st;
    }
    int iterative = !strcmp(p->schedule, "iterative"), imp = !strcmp(p->schedule, "imp");
    int admm = !strcmp(p->method, "admm"), slim = !strcmp(p->method, "slim");
    /* imp prunes by magnitude and rewinds; ADMM's own training before the
     * hard pruning has no place in that loop. */
    if (admm && imp) {
        sub_key(k, key, "schedule");
        return perr(c, schedule, k, "method admm does not take schedule imp (imp rewinds and retrains between "
                    "magnitude prunings); expected one-shot or iterative");
    }
    p->rounds = iterative ? 5 : 0;
    p->rate = imp ? 0.2 : 0.0;
    p->rewind_epoch = 0;
    p->factors = 0;
    /* ADMM: rho 1e-3, the default of the ADMM pruning code of Zhang et al.'s
     * group, and 10 epochs of ADMM training (Z and U updated between epochs).
     * Slimming's penalty is off unless given, so that slim cells keep sharing
     * the plain dense models. */
    p->rho = admm ? 1e-3 : 0.0;
    p->admm_epochs = admm ? 10 : 0;
    p->penalty = 0.0;
    /* Options belong to one schedule or method; elsewhere they are mistakes. */
    struct {
        yaml_node_t *node;
        const char *name;
        int allowed;
        const char *needs;
    } opt[] = {{rounds, "rounds", iterative, "schedule: iterative"},
               {rate, "rate", imp, "schedule: imp"},
               {rewind, "rewind_epoch", imp, "schedule: imp"},
               {factors, "factors", !strcmp(p->method, "butterfly"), "method: butterfly"},
               {rho, "rho", admm, "method: admm"},
               {admm_epochs, "admm_epochs", admm, "method: admm"},
               {penalty, "penalty", slim, "method: slim"},
               {layers, "layers", !admm, "a method other than admm (ADMM constrains every prunable tensor)"}};
    for (size_t i = 0; i < sizeof opt / sizeof *opt; i++) {
        if (opt[i].node && !opt[i].allowed) {
            sub_key(k, key, opt[i].name);
            return perr(c, opt[i].node, k, "only applies with %s", opt[i].needs);
        }
    }
    long v = 0;
    if (rounds) {
        sub_key(k, key, "rounds");
        st = get_long(c, rounds, k, 1, 100, "a whole number of rounds from 1 to 100", &v);
        if (st != MG_OK)
            return st;
        p->rounds = (int)v;
    }
    if (rate) {
        sub_key(k, key, "rate");
        st = get_double(c, rate, k, 0.0, 1, 1.0, 1, "a fraction in (0, 1) of the remaining weights per round",
                        &p->rate);
        if (st != MG_OK)
            return st;
    }
    if (rewind) {
        sub_key(k, key, "rewind_epoch");
        st = get_long(c, rewind, k, 0, 100000, "an epoch number >= 0 (0: the initial weights)", &v);
        if (st != MG_OK)
            return st;
        p->rewind_epoch = (int)v;
    }
    if (factors) {
        sub_key(k, key, "factors");
        st = get_long(c, factors, k, 0, 64, "a number of butterfly factors from 0 (all) to 64", &v);
        if (st != MG_OK)
            return st;
        p->factors = (int)v;
    }
    if (rho) {
        sub_key(k, key, "rho");
        st = get_double(c, rho, k, 0.0, 1, INFINITY, 0, "a penalty > 0 (e.g. 1.0e-3)", &p->rho);
        if (st != MG_OK)
            return st;
    }
    if (admm_epochs) {
        sub_key(k, key, "admm_epochs");
        st = get_long(c, admm_epochs, k, 1, 100000, "a whole number of ADMM epochs >= 1", &v);
        if (st != MG_OK)
            return st;
        p->admm_epochs = (int)v;
    }
    if (penalty) {
        sub_key(k, key, "penalty");
        st = get_double(c, penalty, k, 0.0, 0, INFINITY, 0,
                        "a number >= 0 (the L1 weight on batch-norm scales, e.g. 1.0e-4; 0: none)", &p->penalty);
        if (st != MG_OK)
            return st;
    }
    p->n_layers = 0;
    if (layers) {
        sub_key(k, key, "layers");
        st = parse_layers(c, layers, k, p);
        if (st != MG_OK)
            return st;
    }
    p->n_select = 0;
    p->select_attack[0] = '\0';
    if (select) {
        sub_key(k, key, "select");
        st = parse_select(c, select, k, p);
        if (st != MG_OK)
            return st;
    }
    /* Keys sorted; options appear only where they apply, so the one-shot
     * canonical form (and every key derived from it) is unchanged. The
     * selection is not part of the chain's form: its candidates are the
     * pruned models of plain cells of the same method. */
    mg_strbuf_init(&b);
    mg_strbuf_append(&b, "{");
    if (admm)
        mg_strbuf_printf(&b, "\"admm_epochs\":%d,", p->admm_epochs);
    if (p->factors || !strcmp(p->method, "butterfly"))
        mg_strbuf_printf(&b, "\"factors\":%d,", p->factors);
    if (p->n_layers) {
        mg_strbuf_append(&b, "\"layers\":[");
        for (int i = 0; i < p->n_layers; i++) {
            if (i)
                mg_strbuf_append(&b, ",");
            mg_strbuf_json_str(&b, p->layers[i]);
        }
        mg_strbuf_append(&b, "],");
    }
    mg_strbuf_append(&b, "\"method\":");
    mg_strbuf_json_str(&b, p->method);
    if (p->penalty > 0.0) {
        mg_strbuf_append(&b, ",\"penalty\":");
        mg_strbuf_json_num(&b, p->penalty);
    }
    if (imp) {
        mg_strbuf_append(&b, ",\"rate\":");
        mg_strbuf_json_num(&b, p->rate);
        mg_strbuf_printf(&b, ",\"rewind_epoch\":%d", p->rewind_epoch);
    }
    if (admm) {
        mg_strbuf_append(&b, ",\"rho\":");
        mg_strbuf_json_num(&b, p->rho);
    }
    if (iterative)
        mg_strbuf_printf(&b, ",\"rounds\":%d", p->rounds);
    mg_strbuf_append(&b, ",\"schedule\":");
    mg_strbuf_json_str(&b, p->schedule);
    if (p->n_select) {
        /* Sorted keys: "schedule" < "select". */
        mg_strbuf_append(&b, ",\"select\":{\"attack\":");
        mg_strbuf_json_str(&b, p->select_attack);
        mg_strbuf_append(&b, ",\"candidates\":[");
        for (int i = 0; i < p->n_select; i++) {
            if (i)
                mg_strbuf_append(&b, ",");
            mg_strbuf_json_num(&b, p->select[i]);
        }
        mg_strbuf_append(&b, "]}");
    }
    mg_strbuf_append(&b, "}");
    st = canon_store(c, &b, n, key, p->canon);
    if (st != MG_OK)
        return st;
    /* The chain's form: the canon up to the selection. */
    snprintf(p->chain_canon, sizeof p->chain_canon, "%s", p->canon);
    char *sel = p->n_select ? strstr(p->chain_canon, ",\"select\":") : NULL;
    if (sel)
        strcpy(sel, "}");
    return MG_OK;
}

/* A name or {name: ...} checked against `accepted` (or, when accepted is
 * NULL, against the attack registry). */
static mg_status parse_named(const pctx *c, yaml_node_t *n, const char *key, const char *what,
                             const char *const *accepted, char *name_out, char *canon_out)
{
    char k[KEY_MAX], list[256], expected[320];
    mg_strbuf b;
    yaml_node_t *name = n;
    if (accepted)
        join(accepted, list, sizeof list);
    else
        snprintf(list, sizeof list, "%s", mg_attack_grid_list());
    snprintf(expected, sizeof expected, "a %s name (one of: %s) or {name: ...}", what, list);
    if (n && n->type == YAML_MAPPING_NODE) {
        mg_status st = check_map(c, n, key, expected, name_keys);
        if (st != MG_OK)
            return st;
        name = map_get(c, n, "name");
        st = require(c, n, name, key, "name", expected);
        if (st != MG_OK)
            return st;
        sub_key(k, key, "name");
    } else {
        snprintf(k, sizeof k, "%s", key);
    }
    mg_status st = get_str(c, name, k, expected, name_out, MG_NAME_MAX);
    if (st != MG_OK)
        return st;
    if (accepted ? !in_list(name_out, accepted) : !mg_attack_grid_known(name_out))
        return perr(c, name, k, "unknown %s \"%s\"; expected one of: %s", what, name_out, list);
    mg_strbuf_init(&b);
    canon_name(&b, "name", name_out);
    return canon_store(c, &b, n, key, canon_out);
}

/* A defense's parameters: which defenses take each key, its range and
 * default. Defaults follow the papers (README, "Defenses"). */
typedef enum { DP_DOUBLE, DP_INT, DP_PATH, DP_ORDER } dparam_kind;
typedef struct {
    const char *key;
    const char *defenses;    /* space-separated names */
    dparam_kind kind;
    double lo, hi;
    int lo_open, hi_open;
    double def;              /* DP_PATH: required when def != 0 */
    const char *expected;
    size_t off;
} dparam;

_Static_assert(MG_MAX_SUBSETS == 256, "the subsets message states the limit");
#define DOFF(f) offsetof(mg_defense_spec, f)
static const dparam dparams[] = {
    {"weight_decay", "base", DP_DOUBLE, 0, 1, 1, 0, 5e-4, "an L2 coefficient in (0, 1]", DOFF(weight_decay)},
    {"patience", "base", DP_INT, 1, 100000, 0, 0, 5, "a number of epochs >= 1", DOFF(patience)},
    {"smoothing", "label-smoothing", DP_DOUBLE, 0, 1, 1, 1, 0.1, "a smoothing epsilon in (0, 1)", DOFF(smoothing)},
    {"gamma", "adv-reg", DP_DOUBLE, 0, 1e6, 1, 0, 1.0, "a weight > 0", DOFF(gamma)},
    {"k", "adv-reg", DP_INT, 1, 1000, 0, 0, 1, "a number of inference-model steps from 1 to 1000", DOFF(k_steps)},
    {"lr", "adv-reg", DP_DOUBLE, 0, 10, 1, 0, 1e-3, "a learning rate in (0, 10]", DOFF(attack_lr)},
    {"noise_multiplier", "dp-sgd", DP_DOUBLE, 0, 1e6, 0, 0, 1.1, "a noise multiplier >= 0",
     DOFF(noise_multiplier)},
    {"max_grad_norm", "dp-sgd", DP_DOUBLE, 0, 1e6, 1, 0, 1.0, "a clipping bound > 0", DOFF(max_grad_norm)},
    {"delta", "dp-sgd", DP_DOUBLE, 0, 1, 1, 1, 1e-5, "a delta in (0, 1)", DOFF(delta)},
    {"alpha", "relaxloss", DP_DOUBLE, 0, 1e3, 1, 0, 1.0, "a target loss > 0", DOFF(alpha)},
    {"lambda", "ppb", DP_DOUBLE, 0, 1e6, 1, 0, 1.0, "a weight > 0", DOFF(lambda)},
    {"mem_scores", "rsw rmr swmr", DP_PATH, 0, 0, 0, 0, 0, "the path of a CSV file of index,score rows",
     DOFF(mem_scores)},
    {"subsets", "rsw rmr swmr", DP_INT, 2, MG_MAX_SUBSETS, 0, 0, -1,
     "a number of subset models from 2 to 256", DOFF(subsets)},
    {"subset_fraction", "rsw rmr swmr", DP_DOUBLE, 0, 1, 1, 1, 0.7, "a fraction in (0, 1) of the members",
     DOFF(subset_fraction)},
    {"width", "rsw swmr", DP_INT, 1, 100000000, 0, 0, 0, "a window width >= 1 (samples per class)", DOFF(width)},
    {"step", "rsw swmr", DP_INT, 1, 100000000, 0, 0, 0, "a sliding step >= 1 (samples per class)", DOFF(step)},
    {"order", "rsw swmr", DP_ORDER, 0, 0, 0, 0, 0, "descending or ascending", DOFF(ascending)},
    {"tau", "rmr swmr", DP_DOUBLE, -1, 1, 0, 0, 0.6, "a memorisation-score threshold in [-1, 1]", DOFF(tau)},
    {"lambda_r", "rmr swmr", DP_DOUBLE, 0, 1e3, 0, 0, 0.1, "an L2 weight >= 0", DOFF(lambda_r)},
    {"lambda_g", "rmr swmr", DP_DOUBLE, 0, 1e3, 0, 0, 5e-4, "an L2 weight >= 0", DOFF(lambda_g)},
};
#undef DOFF

static int word_in(const char *word, const char *list)
{
    size_t n = strlen(word);
    for (const char *p = list; *p;) {
        size_t l = strcspn(p, " ");
        if (l == n && !strncmp(p, word, n))
            return 1;
        p += l + (p[l] == ' ');
    }
    return 0;
}

/* A defense: a name, or {name, phase, its parameters}. The canonical form
 * lists the name, the phase and every parameter (defaults included), keys
 * sorted, so two spellings of one defense share nodes; "none" keeps the
 * form {"name":"none"}. */
static mg_status parse_defense(const pctx *c, yaml_node_t *n, const char *key, mg_defense_spec *d)
{
    char k[KEY_MAX], list[256], expected[400];
    mg_status st = MG_OK;
    yaml_node_t *name = n;
    int is_map = n && n->type == YAML_MAPPING_NODE;
    join(defense_names, list, sizeof list);
    snprintf(expected, sizeof expected, "a defense name (one of: %s) or {name, phase, parameters}", list);
    memset(d, 0, sizeof *d);
    if (is_map) {
        MG_CHECK(check_map(c, n, key, expected, defense_keys));
        name = map_get(c, n, "name");
        MG_CHECK(require(c, n, name, key, "name", expected));
        sub_key(k, key, "name");
    } else {
        snprintf(k, sizeof k, "%s", key);
    }
    MG_CHECK(get_choice(c, name, k, "defense", defense_names, d->name, sizeof d->name));
    int none = !strcmp(d->name, "none");
    /* The pruning defenses act on fine-tuning, as their papers apply them;
     * the others on every training of the model. */
    int pruning_defense = word_in(d->name, "ppb rsw rmr swmr");
    d->phase = none ? 0u : pruning_defense ? MG_PHASE_PRUNE : MG_PHASE_BOTH;
    yaml_node_t *ph = is_map ? sub_value(c, n, key, "phase", k) : NULL;
    if (ph) {
        if (none)
            return perr(c, ph, k, "defense none has no phase");
        char phase[16];
        MG_CHECK(get_choice(c, ph, k, "phase", defense_phases, phase, sizeof phase));
        d->phase = !strcmp(phase, "dense") ? MG_PHASE_DENSE : !strcmp(phase, "prune") ? MG_PHASE_PRUNE
                                                                                      : MG_PHASE_BOTH;
    }
    for (size_t i = 0; i < sizeof dparams / sizeof *dparams; i++) {
        const dparam *p = &dparams[i];
        yaml_node_t *v = is_map ? sub_value(c, n, key, p->key, k) : NULL;
        char *field = (char *)d + p->off;
        if (!word_in(d->name, p->defenses)) {
            if (v)
                return perr(c, v, k, "is not a parameter of defense %s (it belongs to: %s)", d->name,
                            p->defenses);
            continue;
        }
        long lv = 0;
        switch (p->kind) {
        case DP_DOUBLE:
            *(double *)(void *)field = p->def;
            if (v)
                MG_CHECK(get_double(c, v, k, p->lo, p->lo_open, p->hi, p->hi_open, p->expected,
                                    (double *)(void *)field));
            break;
        case DP_INT:
            *(int *)(void *)field = p->def < 0 ? 0 : (int)p->def;
            if (v) {
                MG_CHECK(get_long(c, v, k, (long)p->lo, (long)p->hi, p->expected, &lv));
                *(int *)(void *)field = (int)lv;
            }
            if (*(int *)(void *)field == 0 && p->def >= 0) {
                sub_key(k, key, p->key);
                return perr(c, n, k, "defense %s needs %s: %s", d->name, p->key, p->expected);
            }
            break;
        case DP_PATH:
            if (!v)
                break;
            MG_CHECK(get_str(c, v, k, p->expected, field, sizeof d->mem_scores));
            if (!field[0])
                return perr(c, v, k, "expected %s, got an empty string", p->expected);
            break;
        case DP_ORDER:
            if (v) {
                char order[16];
                MG_CHECK(get_choice(c, v, k, "ranking order", rsw_orders, order, sizeof order));
                *(int *)(void *)field = !strcmp(order, "ascending");
            }
            break;
        }
    }
    /* WeMem's scores come from a file or from subset models trained by the grid. */
    if (word_in(d->name, "rsw rmr swmr")) {
        yaml_node_t *f = is_map ? map_get(c, n, "mem_scores") : NULL;
        yaml_node_t *sm = is_map ? map_get(c, n, "subsets") : NULL;
        sub_key(k, key, "mem_scores");
        if (!f && !sm)
            return perr(c, n, key, "defense %s needs memorisation scores: mem_scores (a CSV file of index,score "
                        "rows) or subsets (how many subset models the grid trains to estimate them)", d->name);
        if (f && sm)
            return perr(c, sm, k, "give mem_scores or subsets, not both");
        yaml_node_t *fr = map_get(c, n, "subset_fraction");
        if (fr && !sm) {
            sub_key(k, key, "subset_fraction");
            return perr(c, fr, k, "only applies with subsets");
        }
        if (!sm)
            d->subset_fraction = 0.0;
    }
    mg_strbuf b;
    mg_strbuf_init(&b);
    if (none) {
        canon_name(&b, "name", d->name);
        return canon_store(c, &b, n, key, d->canon);
    }
    /* Keys in sorted order. */
    static const char *const sorted[] = {"alpha", "delta", "gamma", "k", "lambda", "lambda_g", "lambda_r", "lr",
                                         "max_grad_norm", "mem_scores", "name", "noise_multiplier", "order",
                                         "patience", "phase", "smoothing", "step", "subset_fraction", "subsets",
                                         "tau", "weight_decay", "width", NULL};
    mg_strbuf_append(&b, "{");
    int first = 1;
    for (size_t s = 0; sorted[s]; s++) {
        const char *sk = sorted[s];
        const dparam *p = NULL;
        for (size_t i = 0; i < sizeof dparams / sizeof *dparams; i++)
            if (!strcmp(dparams[i].key, sk))
                p = &dparams[i];
        if (p && !word_in(d->name, p->defenses))
            continue;
        if (p && ((p->kind == DP_PATH && !d->mem_scores[0]) || (!strcmp(sk, "subsets") && !d->subsets) ||
                  (!strcmp(sk, "subset_fraction") && !d->subsets)))
            continue; /* the score source not taken */
        if (!first)
            mg_strbuf_append(&b, ",");
        first = 0;
        mg_strbuf_json_str(&b, sk);
        mg_strbuf_append(&b, ":");
        if (!strcmp(sk, "name")) {
            mg_strbuf_json_str(&b, d->name);
        } else if (!strcmp(sk, "phase")) {
            mg_strbuf_json_str(&b, d->phase == MG_PHASE_DENSE ? "dense" : d->phase == MG_PHASE_PRUNE ? "prune"
                                                                                                     : "both");
        } else {
            const char *field = (const char *)d + p->off;
            switch (p->kind) {
            case DP_DOUBLE: mg_strbuf_json_num(&b, *(const double *)(const void *)field); break;
            case DP_INT: mg_strbuf_printf(&b, "%d", *(const int *)(const void *)field); break;
            case DP_PATH: mg_strbuf_json_str(&b, field); break;
            case DP_ORDER:
                mg_strbuf_json_str(&b, *(const int *)(const void *)field ? "ascending" : "descending");
                break;
            }
        }
    }
    mg_strbuf_append(&b, "}");
    return canon_store(c, &b, n, key, d->canon);
cleanup:
    return st;
}

/* Allocates *items (count elements of `size` bytes) for a list axis. */
static mg_status axis_alloc(const pctx *c, size_t count, size_t size, const char *what, void **items)
{
    *items = mg_calloc(count, size, what, c->err);
    return *items ? MG_OK : MG_ERR_NOMEM;
}

static mg_status parse_axes(const pctx *c, yaml_node_t *root, mg_grid *g)
{
    char k[KEY_MAX];
    list_view l;
    mg_status st = MG_OK;
    static const char axes_expected[] = "a mapping with keys dataset, arch, prune, sparsity, defense";
    yaml_node_t *axes = map_get(c, root, "axes");
    MG_CHECK(require(c, root, axes, "", "axes", axes_expected));
    MG_CHECK(check_map(c, axes, "axes", axes_expected, axes_keys));

    yaml_node_t *n = map_get(c, axes, "dataset");
    if (n) {
        MG_CHECK(get_list(c, n, "axes.dataset", "a list of datasets", 0, &l));
        MG_CHECK(axis_alloc(c, l.n, sizeof *g->datasets, "datasets", (void **)&g->datasets));
        g->n_datasets = l.n;
        for (size_t i = 0; i < l.n; i++) {
            item_key(k, "axes.dataset", &l, i);
            MG_CHECK(parse_dataset(c, list_at(c, &l, i), k, g, &g->datasets[i]));
        }
        MG_CHECK(check_unique(c, &l, "axes.dataset", "dataset", g->datasets[0].canon, sizeof *g->datasets,
                              NULL, NULL));
    } else {
        MG_CHECK(axis_alloc(c, 1, sizeof *g->datasets, "datasets", (void **)&g->datasets));
        g->n_datasets = 1;
        snprintf(g->datasets[0].name, MG_NAME_MAX, "fashion-mnist");
        snprintf(g->datasets[0].root, sizeof g->datasets[0].root, "%s", g->data_root);
        snprintf(g->datasets[0].canon, MG_CANON_MAX, "{\"name\":\"fashion-mnist\"}");
    }

    n = map_get(c, axes, "arch");
    MG_CHECK(require(c, axes, n, "axes", "arch", "arch: a list of architectures (lenet5, mlp)"));
    MG_CHECK(get_list(c, n, "axes.arch", "a list of architectures", 0, &l));
    MG_CHECK(axis_alloc(c, l.n, sizeof *g->archs, "architectures", (void **)&g->archs));
    g->n_archs = l.n;
    for (size_t i = 0; i < l.n; i++) {
        item_key(k, "axes.arch", &l, i);
        MG_CHECK(parse_arch(c, list_at(c, &l, i), k, &g->archs[i]));
    }
    MG_CHECK(check_unique(c, &l, "axes.arch", "architecture", g->archs[0].canon, sizeof *g->archs, NULL, NULL));

    n = map_get(c, axes, "prune");
    if (n) {
        MG_CHECK(get_list(c, n, "axes.prune", "a list of pruning methods", 0, &l));
        MG_CHECK(axis_alloc(c, l.n, sizeof *g->prunes, "pruning methods", (void **)&g->prunes));
        g->n_prunes = l.n;
        for (size_t i = 0; i < l.n; i++) {
            item_key(k, "axes.prune", &l, i);
            MG_CHECK(parse_prune(c, list_at(c, &l, i), k, &g->prunes[i]));
        }
        MG_CHECK(check_unique(c, &l, "axes.prune", "pruning method", g->prunes[0].canon, sizeof *g->prunes,
                              NULL, NULL));
    } else {
        MG_CHECK(axis_alloc(c, 1, sizeof *g->prunes, "pruning methods", (void **)&g->prunes));
        g->n_prunes = 1;
        snprintf(g->prunes[0].method, MG_NAME_MAX, "l1-unstructured");
        snprintf(g->prunes[0].schedule, MG_NAME_MAX, "one-shot");
        snprintf(g->prunes[0].canon, MG_CANON_MAX, "{\"method\":\"l1-unstructured\",\"schedule\":\"one-shot\"}");
    }

    n = map_get(c, axes, "sparsity");
    if (n) {
        MG_CHECK(get_list(c, n, "axes.sparsity", "a list of numbers in [0, 1)", 0, &l));
        MG_CHECK(axis_alloc(c, l.n, sizeof *g->sparsities, "sparsities", (void **)&g->sparsities));
        g->n_sparsities = l.n;
        for (size_t i = 0; i < l.n; i++) {
            item_key(k, "axes.sparsity", &l, i);
            MG_CHECK(get_double(c, list_at(c, &l, i), k, 0.0, 0, 1.0, 1, "a number in [0, 1)", &g->sparsities[i]));
        }
        MG_CHECK(check_unique(c, &l, "axes.sparsity", "sparsity", NULL, 0, g->sparsities, NULL));
    } else {
        MG_CHECK(axis_alloc(c, 1, sizeof *g->sparsities, "sparsities", (void **)&g->sparsities));
        g->n_sparsities = 1;
    }

    n = map_get(c, axes, "defense");
    if (n) {
        MG_CHECK(get_list(c, n, "axes.defense", "a list of defenses", 0, &l));
        MG_CHECK(axis_alloc(c, l.n, sizeof *g->defenses, "defenses", (void **)&g->defenses));
        g->n_defenses = l.n;
        for (size_t i = 0; i < l.n; i++) {
            item_key(k, "axes.defense", &l, i);
            MG_CHECK(parse_defense(c, list_at(c, &l, i), k, &g->defenses[i]));
        }
        MG_CHECK(check_unique(c, &l, "axes.defense", "defense", g->defenses[0].canon, sizeof *g->defenses,
                              NULL, NULL));
    } else {
        MG_CHECK(axis_alloc(c, 1, sizeof *g->defenses, "defenses", (void **)&g->defenses));
        g->n_defenses = 1;
        snprintf(g->defenses[0].name, MG_NAME_MAX, "none");
        snprintf(g->defenses[0].canon, MG_CANON_MAX, "{\"name\":\"none\"}");
    }
cleanup:
    return st;
}

/* One attack: a name or {name: ...} (parse_named), where gonon also takes
 * `depth`, its discriminator (mg_attack_cfg.gonon_depth: 1 to 3 hidden
 * layers, or 0, the default, for the paper's choice among them on held-out
 * shadow samples). gonon's canonical form always names its depth, so
 * `gonon` and {name: gonon, depth: 0} are one attack. */
static mg_status parse_attack(const pctx *c, yaml_node_t *n, const char *key, mg_attack_spec *a)
{
    static const char expected[] = "{name: gonon, depth: <0 to 3>}";
    char k[KEY_MAX];
    mg_strbuf b;
    yaml_node_t *depth = map_get(c, n, "depth");
    mg_status st = MG_OK;
    if (!depth) {
        st = parse_named(c, n, key, "attack", NULL, a->name, a->canon);
        if (st != MG_OK || strcmp(a->name, "gonon") != 0)
            return st;
    } else {
        yaml_node_t *name = map_get(c, n, "name");
        long v = 0;
        st = check_map(c, n, key, expected, gonon_keys);
        if (st == MG_OK)
            st = require(c, n, name, key, "name", expected);
        sub_key(k, key, "name");
        if (st == MG_OK)
            st = get_str(c, name, k, expected, a->name, MG_NAME_MAX);
        sub_key(k, key, "depth");
        if (st == MG_OK && strcmp(a->name, "gonon") != 0)
            return perr(c, depth, k, "key \"depth\" does not apply to attack \"%s\"; only gonon takes it "
                        "(accepted keys: name)", a->name);
        if (st == MG_OK)
            st = get_long(c, depth, k, 0, 3, "a gonon depth from 0 to 3 (0: chosen among 1 to 3 hidden layers)",
                          &v);
        if (st != MG_OK)
            return st;
        a->gonon_depth = (int)v;
    }
    mg_strbuf_init(&b);
    mg_strbuf_printf(&b, "{\"depth\":%d,\"name\":\"gonon\"}", a->gonon_depth);
    return canon_store(c, &b, n, key, a->canon);
}

/* ---- lira and rmia: the attacks that train reference models ------------------------------ */

static const char *const ref_attack_keys[] = {"name", "references", "online", "global_variance", "a", "gamma",
                                              NULL};
static const char *const lira_keys[] = {"name", "references", "online", "global_variance", NULL};
static const char *const rmia_keys[] = {"name", "references", "a", "gamma", NULL};

/* Whether an attacks entry names lira or rmia (as a name or {name: ...}). */
static int is_ref_attack(const pctx *c, yaml_node_t *n)
{
    yaml_node_t *name = n && n->type == YAML_MAPPING_NODE ? map_get(c, n, "name") : n;
    if (!name || name->type != YAML_SCALAR_NODE)
        return 0;
    return !strcmp(sval(name), "lira") || !strcmp(sval(name), "rmia");
}

/* lira and rmia: a name or {name, references, and the attack's options}.
 * references is required (it is the cost: one trained model each); the
 * options default as attack.h does (Carlini et al.: online, global variance
 * below 64 references; Zarifzadeh et al.: a = 0.33, gamma = 1), resolved in
 * the canonical form. The references train on the population pool, so the
 * split must have one. */
static mg_status parse_ref_attack(const pctx *c, yaml_node_t *n, const char *key, const mg_grid *g,
                                  mg_attack_spec *a)
{
    static const char lira_expected[] = "{name: lira, references: <1 to 1024>, online: true|false, "
                                        "global_variance: true|false}";
    static const char rmia_expected[] = "{name: rmia, references: <1 to 1024>, a: <number in [0, 1]> or tune, "
                                        "gamma: <number > 0>}";
    _Static_assert(MG_MAX_REFERENCES == 1024, "the messages state the limit");
    char k[KEY_MAX];
    mg_status st = MG_OK;
    mg_strbuf b;
    yaml_node_t *v, *name = n;
    int is_map = n->type == YAML_MAPPING_NODE;
    mg_strbuf_init(&b);
    if (is_map) {
        MG_CHECK(check_map(c, n, key, "a mapping of attack options", ref_attack_keys));
        name = map_get(c, n, "name");
        sub_key(k, key, "name");
    } else {
        snprintf(k, sizeof k, "%s", key);
    }
    MG_CHECK(get_str(c, name, k, "lira or rmia", a->name, sizeof a->name));
    const int lira = !strcmp(a->name, "lira");
    const char *expected = lira ? lira_expected : rmia_expected;
    if (is_map)
        MG_CHECK(check_applies(c, n, key, lira ? "attack lira" : "attack rmia", lira ? lira_keys : rmia_keys));
    v = is_map ? sub_value(c, n, key, "references", k) : NULL;
    if (!v) {
        st = perr(c, n, key, "attack %s needs the number of its reference models; expected %s", a->name, expected);
        goto cleanup;
    }
    long refs = 0;
    MG_CHECK(get_long(c, v, k, 1, MG_MAX_REFERENCES, "a number of reference models from 1 to 1024", &refs));
    a->references = (int)refs;
    if (lira) {
        a->lira_online = 1;
        a->lira_global_var = a->references < 64; /* Carlini et al.: per-example variances need many models */
        if ((v = sub_value(c, n, key, "online", k)))
            MG_CHECK(get_bool(c, v, k, &a->lira_online));
        if ((v = sub_value(c, n, key, "global_variance", k)))
            MG_CHECK(get_bool(c, v, k, &a->lira_global_var));
        mg_strbuf_printf(&b, "{\"global_variance\":%s,\"name\":\"lira\",\"online\":%s,\"references\":%d}",
                         a->lira_global_var ? "true" : "false", a->lira_online ? "true" : "false", a->references);
        /* The store names an attack's metrics by its name: the two lira tests get two. */
        if (!a->lira_online)
            snprintf(a->name, sizeof a->name, "lira-offline");
    } else {
        a->rmia_a = 0.33;
        a->rmia_gamma = 1.0;
        if ((v = sub_value(c, n, key, "a", k))) {
            if (v->type == YAML_SCALAR_NODE && !strcmp(sval(v), "tune")) {
                if (a->references < 2) {
                    st = perr(c, v, k, "tuning a attacks reference model 0 with the others, so it needs at least 2 "
                              "reference models, got %d; expected a number in [0, 1], or references >= 2", a->references);
                    goto cleanup;
                }
                a->rmia_a = -1.0;
            } else {
                MG_CHECK(get_double(c, v, k, 0.0, 0, 1.0, 0, "a number in [0, 1], or tune", &a->rmia_a));
            }
        }
        if ((v = sub_value(c, n, key, "gamma", k)))
            MG_CHECK(get_double(c, v, k, 0.0, 1, 1e6, 0, "a number in (0, 1e6]", &a->rmia_gamma));
        mg_strbuf_append(&b, "{\"a\":");
        if (a->rmia_a < 0.0)
            mg_strbuf_append(&b, "\"tune\"");
        else
            mg_strbuf_json_num(&b, a->rmia_a);
        mg_strbuf_append(&b, ",\"gamma\":");
        mg_strbuf_json_num(&b, a->rmia_gamma);
        mg_strbuf_printf(&b, ",\"name\":\"rmia\",\"references\":%d}", a->references);
    }
    /* Offline, the references train on halves of the population's first half
     * and RMIA compares with its second half, so each part needs a sample or
     * two; online lira's references train on the target's candidates. */
    const mg_split_cfg *sc = &g->split.cfg;
    int none = sc->population == 0 && (sc->protocol == MG_PROTO_FOUR_WAY || sc->protocol == MG_PROTO_EXPLICIT);
    if (!(lira && a->lira_online) && (none || (sc->population > 0 && sc->population < 4))) {
        st = perr(c, n, key, "attack %s trains its reference models on the population pool, and data.split %s; "
                  "expected data.split.population: <samples> (at least 4)", a->name,
                  none ? "has none" : "has fewer than 4 samples in it");
        goto cleanup;
    }
    for (const mg_attack_spec *o = g->attacks; o < a; o++)
        if (!strcmp(o->name, a->name)) {
            st = perr(c, n, key, "a second %s attack; the store names an attack's metrics by its name, so a grid runs "
                      "one each of lira, lira-offline and rmia; expected a single %s entry", a->name, a->name);
            goto cleanup;
        }
    MG_CHECK(canon_store(c, &b, n, key, a->canon));
cleanup:
    mg_strbuf_free(&b);
    return st;
}

static mg_status parse_attacks(const pctx *c, yaml_node_t *n, mg_grid *g)
{
    char k[KEY_MAX];
    list_view l;
    mg_status st = MG_OK;
    if (!n) {
        static const char *const dflt[] = {"loss", "conf"};
        MG_CHECK(axis_alloc(c, 2, sizeof *g->attacks, "attacks", (void **)&g->attacks));
        g->n_attacks = 2;
        for (size_t i = 0; i < 2; i++) {
            snprintf(g->attacks[i].name, MG_NAME_MAX, "%s", dflt[i]);
            snprintf(g->attacks[i].canon, MG_CANON_MAX, "{\"name\":\"%s\"}", dflt[i]);
        }
        return MG_OK;
    }
    MG_CHECK(get_list(c, n, "attacks", "a list of attacks", 0, &l));
    MG_CHECK(axis_alloc(c, l.n, sizeof *g->attacks, "attacks", (void **)&g->attacks));
    g->n_attacks = l.n;
    for (size_t i = 0; i < l.n; i++) {
        item_key(k, "attacks", &l, i);
        if (is_ref_attack(c, list_at(c, &l, i)))
            MG_CHECK(parse_ref_attack(c, list_at(c, &l, i), k, g, &g->attacks[i]));
        else
            MG_CHECK(parse_attack(c, list_at(c, &l, i), k, &g->attacks[i]));
    }
    MG_CHECK(check_unique(c, &l, "attacks", "attack", g->attacks[0].canon, sizeof *g->attacks, NULL, NULL));
    /* The store's metrics name an attack by its name alone. */
    MG_CHECK(check_unique(c, &l, "attacks", "attack name (the metrics table tells attacks apart by name, so a grid "
                          "runs one gonon depth)", g->attacks[0].name, sizeof *g->attacks, NULL, NULL));
cleanup:
    return st;
}

/* ---- exclude ------------------------------------------------------------------------------ */

size_t mg_grid_axis_len(const mg_grid *g, int axis)
{
    switch (axis) {
    case MG_AXIS_DATASET: return g->n_datasets;
    case MG_AXIS_ARCH: return g->n_archs;
    case MG_AXIS_PRUNE: return g->n_prunes;
    case MG_AXIS_SPARSITY: return g->n_sparsities;
    case MG_AXIS_DEFENSE: return g->n_defenses;
    case MG_AXIS_SEED: return g->n_seeds;
    default: return 0;
    }
}

int mg_grid_excluded(const mg_grid *g, const size_t idx[MG_AXIS_COUNT])
{
    for (size_t e = 0; e < g->n_excludes; e++) {
        const mg_exclude *x = &g->excludes[e];
        int all = 1;
        for (int a = 0; a < MG_AXIS_COUNT && all; a++)
            if (x->has[a] && !x->match[a][idx[a]])
                all = 0;
        if (all)
            return 1;
    }
    return 0;
}

int mg_grid_next_combination(const mg_grid *g, size_t idx[MG_AXIS_COUNT])
{
    for (int a = MG_AXIS_COUNT - 1; a >= 0; a--) {
        if (++idx[a] < mg_grid_axis_len(g, a))
            return 1;
        idx[a] = 0;
    }
    return 0;
}

void mg_prune_label(const mg_prune_spec *p, char *buf, size_t cap)
{
    snprintf(buf, cap, "%.31s/%.15s%s", p->method, p->schedule, p->n_select ? "/select" : "");
}

void mg_grid_arch_str(const mg_arch_spec *a, char *buf, size_t cap)
{
    size_t len = 0;
    /* The initialisation shows only when it is not the default. */
    const char *init = a->init[0] && strcmp(a->init, "default") != 0 ? a->init : NULL;
    if (strcmp(a->name, "mlp") != 0) {
        snprintf(buf, cap, "%s%s%s", a->name, init ? "/" : "", init ? init : "");
        return;
    }
    for (int i = 0; i <= a->n_hidden && len < cap; i++) {
        int w = i == a->n_hidden ? snprintf(buf + len, cap - len, "]/%s%s%s", a->act, init ? "/" : "", init ? init : "")
                                 : snprintf(buf + len, cap - len, "%s%d", i ? "," : "mlp[", a->hidden[i]);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

/* The values of an axis, compactly, for "matches no value of ..." messages. */
static void axis_values(const mg_grid *g, int axis, char *buf, size_t cap)
{
    size_t len = 0, n = mg_grid_axis_len(g, axis);
    buf[0] = '\0';
    for (size_t i = 0; i < n && len + 1 < cap; i++) {
        char v[MG_CANON_MAX];
        switch (axis) {
        case MG_AXIS_DATASET: snprintf(v, sizeof v, "%s", g->datasets[i].name); break;
        case MG_AXIS_ARCH: mg_grid_arch_str(&g->archs[i], v, sizeof v); break;
        case MG_AXIS_PRUNE: mg_prune_label(&g->prunes[i], v, sizeof v); break;
        case MG_AXIS_SPARSITY: {
            mg_strbuf b;
            mg_strbuf_init(&b);
            mg_strbuf_json_num(&b, g->sparsities[i]);
            snprintf(v, sizeof v, "%s", b.s ? b.s : "?");
            mg_strbuf_free(&b);
            break;
        }
        case MG_AXIS_DEFENSE: snprintf(v, sizeof v, "%s", g->defenses[i].name); break;
        default: snprintf(v, sizeof v, "%" PRIu64, g->seeds[i]); break;
        }
        int w = snprintf(buf + len, cap - len, "%s%s", i ? ", " : "", v);
        if (w < 0)
            break;
        len += (size_t)w;
    }
}

/* An exclude's prune mapping with options beyond method and schedule: read
 * as a pruning entry of its own (so every option is checked as there), it
 * keeps in m only the entries whose every option it gives is the same. */
static mg_status exclude_prune_fields(const pctx *c, const mg_grid *g, yaml_node_t *n, const char *key,
                                      int has_method, unsigned char *m)
{
    if (!has_method)
        return perr(c, n, key, "prune options other than schedule need the method they belong to (e.g. {method: "
                               "l1-unstructured, select: [0.5, 0.9]})");
    mg_prune_spec *q = mg_calloc(1, sizeof *q, "exclude entry", c->err);
    if (!q)
        return MG_ERR_NOMEM;
    mg_status st = parse_prune(c, n, key, q);
    /* Which options the entry gives, looked up once. */
    const int rounds = map_get(c, n, "rounds") != NULL, rate = map_get(c, n, "rate") != NULL;
    const int rewind = map_get(c, n, "rewind_epoch") != NULL, factors = map_get(c, n, "factors") != NULL;
    const int rho = map_get(c, n, "rho") != NULL, admm_epochs = map_get(c, n, "admm_epochs") != NULL;
    const int penalty = map_get(c, n, "penalty") != NULL, layers = map_get(c, n, "layers") != NULL;
    const int select = map_get(c, n, "select") != NULL;
    for (size_t i = 0; st == MG_OK && i < g->n_prunes; i++) {
        const mg_prune_spec *p = &g->prunes[i];
        int same = (!rounds || p->rounds == q->rounds) && (!rate || p->rate == q->rate) &&
                   (!rewind || p->rewind_epoch == q->rewind_epoch) && (!factors || p->factors == q->factors) &&
                   (!rho || p->rho == q->rho) && (!admm_epochs || p->admm_epochs == q->admm_epochs) &&
                   (!penalty || p->penalty == q->penalty);
        if (layers)
            same &= p->n_layers == q->n_layers && !memcmp(p->layers, q->layers, (size_t)q->n_layers * sizeof q->layers[0]);
        if (select)
            same &= p->n_select == q->n_select && !strcmp(p->select_attack, q->select_attack) &&
                    !memcmp(p->select, q->select, (size_t)q->n_select * sizeof *q->select);
        m[i] = (unsigned char)(m[i] && same);
    }
    free(q);
    return st;
}

/* Fills e->match[axis] from the entry's value n for that axis. */
static mg_status exclude_axis(const pctx *c, const mg_grid *g, yaml_node_t *n, const char *key, int axis,
                              mg_exclude *e)
{
    char k[KEY_MAX], name[MG_NAME_MAX];
    size_t count = mg_grid_axis_len(g, axis);
    unsigned char *m = e->match[axis];
    mg_status st = MG_OK;
    int is_map = n && n->type == YAML_MAPPING_NODE;
    switch (axis) {
    case MG_AXIS_DATASET: {
        char root[1024];
        yaml_node_t *vn = is_map ? NULL : n, *vr = NULL;
        if (is_map) {
            MG_CHECK(check_map(c, n, key, "a dataset name or {name, root}", dataset_keys));
            vn = map_get(c, n, "name");
            vr = map_get(c, n, "root");
        }
        if (vn) {
            sub_key(k, key, "name");
            MG_CHECK(get_str(c, vn, is_map ? k : key, "a dataset name", name, sizeof name));
        }
        if (vr) {
            sub_key(k, key, "root");
            MG_CHECK(get_str(c, vr, k, "a directory", root, sizeof root));
        }
        for (size_t i = 0; i < count; i++)
            m[i] = (!vn || !strcmp(g->datasets[i].name, name)) && (!vr || !strcmp(g->datasets[i].root, root));
        break;
    }
    case MG_AXIS_ARCH: {
        char act[16], init[16];
        int hidden[MG_MAX_HIDDEN], n_hidden = 0;
        yaml_node_t *vn = is_map ? NULL : n, *vh = NULL, *va = NULL, *vp = NULL, *vi = NULL;
        if (is_map) {
            MG_CHECK(check_map(c, n, key, "an architecture name or {name, hidden, activation, preset, init}",
                               arch_keys));
            vn = map_get(c, n, "name");
            vh = map_get(c, n, "hidden");
            va = map_get(c, n, "activation");
            vp = map_get(c, n, "preset");
            vi = map_get(c, n, "init");
        }
        if (vn) {
            sub_key(k, key, "name");
            MG_CHECK(get_str(c, vn, is_map ? k : key, "an architecture name", name, sizeof name));
        }
        if (vh) {
            sub_key(k, key, "hidden");
            MG_CHECK(parse_hidden(c, vh, k, hidden, &n_hidden));
        }
        if (va) {
            sub_key(k, key, "activation");
            MG_CHECK(get_str(c, va, k, "an activation", act, sizeof act));
        }
        if (vp) {
            /* A preset matches the mlp it expands to. */
            MG_CHECK(preset_alone(c, vp, vh, va, key));
            sub_key(k, key, "preset");
            MG_CHECK(expand_preset(c, vp, k, hidden, &n_hidden, act, sizeof act));
        }
        if (vi) {
            sub_key(k, key, "init");
            MG_CHECK(get_str(c, vi, k, "an initialisation", init, sizeof init));
        }
        int by_hidden = vh || vp, by_act = va || vp;
        for (size_t i = 0; i < count; i++) {
            const mg_arch_spec *a = &g->archs[i];
            int is_mlp = !strcmp(a->name, "mlp");
            int ok = !vn || !strcmp(a->name, name);
            if (by_hidden)
                ok = ok && is_mlp && a->n_hidden == n_hidden &&
                     !memcmp(a->hidden, hidden, (size_t)n_hidden * sizeof *hidden);
            if (by_act)
                ok = ok && is_mlp && !strcmp(a->act, act);
            if (vi)
                ok = ok && !strcmp(a->init, init);
            m[i] = (unsigned char)ok;
        }
        break;
    }
    case MG_AXIS_PRUNE: {
        char sched[MG_NAME_MAX];
        yaml_node_t *vm = is_map ? NULL : n, *vs = NULL;
        if (is_map) {
            MG_CHECK(check_map(c, n, key, "a pruning method or {method, schedule}", prune_keys));
            vm = map_get(c, n, "method");
            vs = map_get(c, n, "schedule");
        }
        if (vm) {
            sub_key(k, key, "method");
            MG_CHECK(get_str(c, vm, is_map ? k : key, "a pruning method", name, sizeof name));
        }
        if (vs) {
            sub_key(k, key, "schedule");
            MG_CHECK(get_str(c, vs, k, "a pruning schedule", sched, sizeof sched));
        }
        for (size_t i = 0; i < count; i++)
            m[i] = (!vm || !strcmp(g->prunes[i].method, name)) && (!vs || !strcmp(g->prunes[i].schedule, sched));
        if (is_map && n->data.mapping.pairs.top - n->data.mapping.pairs.start > (vm ? 1 : 0) + (vs ? 1 : 0))
            MG_CHECK(exclude_prune_fields(c, g, n, key, vm != NULL, m));
        break;
    }
    case MG_AXIS_DEFENSE: {
        yaml_node_t *vn = n;
        if (is_map) {
            MG_CHECK(check_map(c, n, key, "a defense name or {name}", name_keys));
            vn = map_get(c, n, "name");
            sub_key(k, key, "name");
        }
        if (vn)
            MG_CHECK(get_str(c, vn, is_map ? k : key, "a defense name", name, sizeof name));
        for (size_t i = 0; i < count; i++)
            m[i] = !vn || !strcmp(g->defenses[i].name, name);
        break;
    }
    case MG_AXIS_SPARSITY: {
        double v = 0.0;
        MG_CHECK(get_double(c, n, key, -INFINITY, 0, INFINITY, 0, "a number", &v));
        for (size_t i = 0; i < count; i++)
            m[i] = g->sparsities[i] == v;
        break;
    }
    default: {
        long v = 0;
        MG_CHECK(get_long(c, n, key, 0, LONG_MAX, "a non-negative integer", &v));
        for (size_t i = 0; i < count; i++)
            m[i] = g->seeds[i] == (uint64_t)v;
        break;
    }
    }
    size_t any = 0;
    for (size_t i = 0; i < count; i++)
        any += m[i];
    if (!any) {
        char values[400];
        axis_values(g, axis, values, sizeof values);
        st = perr(c, n, key, "matches no value of %s%s (%s), so the entry excludes no cell (a typo?); "
                  "expected a value present in the grid", axis == MG_AXIS_SEED ? "" : "axes.",
                  axis == MG_AXIS_SEED ? "seeds" : exclude_keys[axis], values);
    }
cleanup:
    return st;
}

static mg_status parse_excludes(const pctx *c, yaml_node_t *n, mg_grid *g)
{
    static const char expected[] = "a mapping with any of the keys dataset, arch, prune, sparsity, defense, seed";
    mg_error *err = c->err;
    char k[KEY_MAX], k2[KEY_MAX];
    list_view l;
    mg_status st = MG_OK;
    if (!n)
        return MG_OK;
    MG_CHECK(get_list(c, n, "exclude", "a list of mappings", 1, &l));
    if (l.n == 0)
        return MG_OK;
    g->excludes = mg_calloc(l.n, sizeof *g->excludes, "exclude entries", err);
    if (!g->excludes)
        MG_CHECK(MG_ERR_NOMEM);
    g->n_excludes = l.n;
    for (size_t i = 0; i < l.n; i++) {
        yaml_node_t *en = list_at(c, &l, i);
        mg_exclude *e = &g->excludes[i];
        item_key(k, "exclude", &l, i);
        MG_CHECK(check_map(c, en, k, expected, exclude_keys));
        if (map_size(en) == 0) {
            st = perr(c, en, k, "an empty entry would exclude every cell; expected %s", expected);
            goto cleanup;
        }
        e->line = en->start_mark.line + 1;
        e->col = en->start_mark.column + 1;
        for (int a = 0; a < MG_AXIS_COUNT; a++) {
            yaml_node_t *v = map_get(c, en, exclude_keys[a]);
            if (!v)
                continue;
            e->has[a] = 1;
            e->match[a] = mg_calloc(mg_grid_axis_len(g, a), 1, "exclude table", err);
            if (!e->match[a])
                MG_CHECK(MG_ERR_NOMEM);
            sub_key(k2, k, exclude_keys[a]);
            MG_CHECK(exclude_axis(c, g, v, k2, a, e));
        }
    }
cleanup:
    return st;
}

/* The product of the axes within the limit, and at least one cell left. */
static mg_status check_cells(const pctx *c, yaml_node_t *root, const mg_grid *g)
{
    /* Counted before anything is built, with no product that can overflow:
     * aliases let a few lines name an astronomical grid. */
    size_t total = 1;
    for (int a = 0; a < MG_AXIS_COUNT; a++) {
        size_t len = mg_grid_axis_len(g, a);
        if (len > c->max_cells / total)
            return perr(c, map_get(c, root, "axes"), "axes",
                        "%zu datasets x %zu archs x %zu prunes x %zu sparsities x %zu defenses x %zu seeds is "
                        "more than %zu cells; expected a smaller grid (split it into several files, or raise "
                        "the limit with MIAGRID_MAX_CELLS)",
                        g->n_datasets, g->n_archs, g->n_prunes, g->n_sparsities, g->n_defenses, g->n_seeds,
                        c->max_cells);
        total *= len;
    }
    if (!g->n_excludes)
        return MG_OK;
    size_t idx[MG_AXIS_COUNT] = {0};
    do {
        if (!mg_grid_excluded(g, idx))
            return MG_OK;
    } while (mg_grid_next_combination(g, idx));
    return perr(c, map_get(c, root, "exclude"), "exclude", "every cell is excluded; expected entries that leave "
                "at least one cell");
}

/* ---- limits ------------------------------------------------------------------------------ */

static mg_status env_limit(const char *name, size_t dflt, size_t *out, mg_error *err)
{
    const char *v = getenv(name);
    long n = 0;
    *out = dflt;
    if (!v || !*v)
        return MG_OK;
    if (mg_parse_long(v, &n) != 0 || n < 1 || n > 1000000000000L)
        return mg_error_set(err, MG_ERR_CONFIG, "environment variable %s: expected a whole number from 1 to "
                            "10^12, got \"%.40s\"", name, v);
    *out = (size_t)n;
    return MG_OK;
}

mg_status mg_grid_limits(size_t *max_cells, size_t *max_nodes, mg_error *err)
{
    mg_status st = env_limit("MIAGRID_MAX_CELLS", MG_GRID_MAX_CELLS, max_cells, err);
    return st != MG_OK ? st : env_limit("MIAGRID_MAX_NODES", MG_PLAN_MAX_NODES, max_nodes, err);
}

/* Flow collections ([...], {...}) nested deeper than MG_GRID_MAX_DEPTH are
 * refused before libyaml sees the text: its scanner checks every open flow
 * level at each token, so a file of nothing but '[' costs it time quadratic
 * in its length. Quoted scalars and comments are skipped; an unbalanced
 * bracket elsewhere is libyaml's to report. */
static mg_status check_flow_depth(const char *path, const char *text, size_t len, mg_error *err)
{
    size_t depth = 0, line = 1, col = 1;
    char quote = 0, prev = '\n';
    int escaped = 0;
    for (size_t i = 0; i < len; i++, col++) {
        char ch = text[i];
        if (ch == '\n') {
            line++;
            col = 0;
        }
        if (quote) {
            if (escaped)
                escaped = 0;
            else if (quote == '"' && ch == '\\')
                escaped = 1;
            else if (ch == quote)
                quote = 0;
        } else if (ch == '#' && (prev == ' ' || prev == '\t' || prev == '\n')) {
            while (i + 1 < len && text[i + 1] != '\n')
                i++, col++;
        } else if ((ch == '"' || ch == '\'') && prev && strchr(" \t\n[{,:-?", prev)) {
            /* A quote opens a scalar only where a value begins, as in YAML: "it's" does not. */
            quote = ch;
        } else if (ch == '[' || ch == '{') {
            if (++depth > MG_GRID_MAX_DEPTH)
                return mg_error_set(err, MG_ERR_CONFIG, "%s:%zu:%zu: values nested more than %d levels deep; "
                                    "expected a grid (at most 6 levels)", path, line, col, MG_GRID_MAX_DEPTH);
        } else if ((ch == ']' || ch == '}') && depth > 0) {
            depth--;
        }
        prev = quote ? ' ' : ch;
    }
    return MG_OK;
}

/* Refuses a document nested deeper than MG_GRID_MAX_DEPTH, or holding a
 * value that contains itself (an alias inside its own anchor: libyaml links
 * it as a cycle). Each node's height is computed once, so shared aliases cost
 * nothing extra however often they are used, and the walk keeps its own
 * bounded stack instead of recursing. */
static mg_status check_depth(const pctx *c)
{
    typedef struct {
        int node;    /* 1-based, as yaml_document_get_node */
        size_t next; /* the next child to visit */
    } frame;
    frame stack[MG_GRID_MAX_DEPTH];
    yaml_document_t *doc = c->doc;
    size_t n = (size_t)(doc->nodes.top - doc->nodes.start);
    mg_status st = MG_OK;
    if (n == 0)
        return MG_OK;
    unsigned char *state = mg_calloc(n + 1, 1, "YAML depth check", c->err); /* 0 new, 1 open, 2 done */
    int *height = mg_calloc(n + 1, sizeof *height, "YAML depth check", c->err);
    if (!state || !height) {
        st = MG_ERR_NOMEM;
        goto cleanup;
    }
    int sp = 0;
    stack[sp++] = (frame){1, 0};
    state[1] = 1;
    while (sp > 0) {
        frame *f = &stack[sp - 1];
        yaml_node_t *node = yaml_document_get_node(doc, f->node);
        size_t n_kids = 0;
        if (node->type == YAML_SEQUENCE_NODE)
            n_kids = (size_t)(node->data.sequence.items.top - node->data.sequence.items.start);
        else if (node->type == YAML_MAPPING_NODE)
            n_kids = 2 * (size_t)(node->data.mapping.pairs.top - node->data.mapping.pairs.start);
        if (f->next == n_kids) {
            state[f->node] = 2;
            sp--;
            if (sp > 0 && height[f->node] + 1 > height[stack[sp - 1].node])
                height[stack[sp - 1].node] = height[f->node] + 1;
            continue;
        }
        size_t k = f->next++;
        int kid;
        if (node->type == YAML_SEQUENCE_NODE) {
            kid = node->data.sequence.items.start[k];
        } else {
            yaml_node_pair_t *pair = node->data.mapping.pairs.start + k / 2;
            kid = k % 2 ? pair->value : pair->key;
        }
        if (kid < 1 || (size_t)kid > n)
            continue;
        if (state[kid] == 1) {
            st = perr(c, node, "", "this value contains itself through an alias; expected aliases of complete "
                      "values");
            goto cleanup;
        }
        if (state[kid] == 2) {
            if (sp + height[kid] >= MG_GRID_MAX_DEPTH)
                goto too_deep;
            if (height[kid] + 1 > height[f->node])
                height[f->node] = height[kid] + 1;
            continue;
        }
        if (sp == MG_GRID_MAX_DEPTH)
            goto too_deep;
        state[kid] = 1;
        stack[sp++] = (frame){kid, 0};
    }
    goto cleanup;
too_deep:
    st = perr(c, yaml_document_get_node(doc, stack[sp - 1].node), "",
              "values nested more than %d levels deep; expected a grid (at most 6 levels)", MG_GRID_MAX_DEPTH);
cleanup:
    free(state);
    free(height);
    return st;
}

/* ---- entry points ------------------------------------------------------------------------- */

/* Line and column of a byte offset, for reader errors that only give the offset. */
static void offset_mark(const char *text, size_t len, size_t off, size_t *line, size_t *col)
{
    *line = 1;
    *col = 1;
    for (size_t i = 0; i < off && i < len; i++) {
        if (text[i] == '\n') {
            (*line)++;
            *col = 1;
        } else {
            (*col)++;
        }
    }
}

static mg_status yaml_failure(const char *path, const char *text, size_t len, const yaml_parser_t *p,
                              mg_error *err)
{
    size_t line = p->problem_mark.line + 1, col = p->problem_mark.column + 1;
    if (p->error == YAML_MEMORY_ERROR)
        return mg_error_set(err, MG_ERR_NOMEM, "%s: out of memory reading YAML", path);
    if (p->error == YAML_READER_ERROR)
        offset_mark(text, len, p->problem_offset, &line, &col);
    const char *problem = p->problem ? p->problem : "malformed YAML";
    if (p->context)
        return mg_error_set(err, MG_ERR_CONFIG, "%s:%zu:%zu: invalid YAML: %s (%s at line %zu); expected valid YAML",
                            path, line, col, problem, p->context, p->context_mark.line + 1);
    return mg_error_set(err, MG_ERR_CONFIG, "%s:%zu:%zu: invalid YAML: %s; expected valid YAML", path, line, col,
                        problem);
}

static mg_status parse_document(const pctx *c, mg_grid *g)
{
    static const char top_expected[] = "a mapping with keys name, seeds, store, data, train, finetune, axes, "
                                       "attacks, exclude";
    mg_status st = MG_OK;
    char d[64];
    yaml_node_t *root = yaml_document_get_root_node(c->doc);
    if (!root)
        return mg_error_set(c->err, MG_ERR_CONFIG, "%s:1:1: the file is empty; expected %s", c->path, top_expected);
    if (root->type != YAML_MAPPING_NODE)
        return perr(c, root, "", "expected %s, got %s", top_expected, describe(root, d, sizeof d));
    MG_CHECK(check_map(c, root, "", top_expected, top_keys));

    yaml_node_t *name = map_get(c, root, "name");
    MG_CHECK(require(c, root, name, "", "name", "name: <grid name>"));
    MG_CHECK(parse_name(c, name, g));
    MG_CHECK(parse_seeds(c, map_get(c, root, "seeds"), g));
    yaml_node_t *store = map_get(c, root, "store");
    if (store)
        MG_CHECK(get_str(c, store, "store", "a directory", g->store, sizeof g->store));
    MG_CHECK(parse_data(c, map_get(c, root, "data"), g));
    MG_CHECK(parse_train(c, map_get(c, root, "train"), "train", NULL, 0, &g->train));
    MG_CHECK(parse_train(c, map_get(c, root, "finetune"), "finetune", &g->train, 1, &g->finetune));
    MG_CHECK(check_dev_parts(c, root, g));
    MG_CHECK(parse_axes(c, root, g));
    MG_CHECK(parse_attacks(c, map_get(c, root, "attacks"), g));
    MG_CHECK(parse_excludes(c, map_get(c, root, "exclude"), g));
    MG_CHECK(check_cells(c, root, g));
cleanup:
    return st;
}

mg_status mg_grid_parse(const char *path, const char *text, size_t len, mg_grid **out, mg_error *err)
{
    mg_status st = MG_OK;
    mg_grid *g = NULL;
    yaml_parser_t parser;
    yaml_document_t doc, extra;
    int have_parser = 0, have_doc = 0;
    *out = NULL;
    size_t max_cells = 0, max_nodes = 0;
    if (!path || !text)
        return mg_error_set(err, MG_ERR_ARG, "mg_grid_parse: path and text are required");
    if (len > MG_GRID_MAX_BYTES)
        return mg_error_set(err, MG_ERR_CONFIG, "%s: %zu bytes; expected a grid file of at most %zu bytes", path, len,
                            MG_GRID_MAX_BYTES);
    st = mg_grid_limits(&max_cells, &max_nodes, err);
    if (st == MG_OK)
        st = check_flow_depth(path, text, len, err);
    if (st != MG_OK)
        return st;

    g = mg_calloc(1, sizeof *g, "grid", err);
    if (!g)
        return MG_ERR_NOMEM;
    snprintf(g->path, sizeof g->path, "%s", path);
    g->yaml = mg_malloc(len + 1, 1, "grid text", err);
    if (!g->yaml)
        MG_CHECK(MG_ERR_NOMEM);
    memcpy(g->yaml, text, len);
    g->yaml[len] = '\0';
    g->yaml_len = len;

    if (!yaml_parser_initialize(&parser))
        MG_FAIL(MG_ERR_NOMEM, "%s: cannot initialise the YAML parser", path);
    have_parser = 1;
    yaml_parser_set_input_string(&parser, (const unsigned char *)text, len);
    if (!yaml_parser_load(&parser, &doc))
        MG_CHECK(yaml_failure(path, text, len, &parser, err));
    have_doc = 1;
    if (!yaml_parser_load(&parser, &extra))
        MG_CHECK(yaml_failure(path, text, len, &parser, err));
    yaml_node_t *second = yaml_document_get_root_node(&extra);
    size_t second_line = second ? second->start_mark.line + 1 : 0, second_col = second ? second->start_mark.column + 1 : 0;
    yaml_document_delete(&extra);
    if (second)
        MG_FAIL(MG_ERR_CONFIG, "%s:%zu:%zu: a second YAML document; expected one grid per file", path, second_line,
                second_col);

    pctx c = {path, &doc, err, max_cells};
    MG_CHECK(check_depth(&c));
    MG_CHECK(parse_document(&c, g));
    *out = g;
    g = NULL;
cleanup:
    if (have_doc)
        yaml_document_delete(&doc);
    if (have_parser)
        yaml_parser_delete(&parser);
    mg_grid_destroy(&g);
    return st;
}

mg_status mg_grid_load(const char *path, mg_grid **out, mg_error *err)
{
    char *text = NULL;
    size_t len = 0;
    *out = NULL;
    mg_status st = mg_read_file(path, &text, &len, err);
    if (st != MG_OK)
        return st;
    st = mg_grid_parse(path, text, len, out, err);
    free(text);
    return st;
}

mg_status mg_grid_set_data_digest(mg_grid *g, size_t i, const char *hex, mg_error *err)
{
    if (i >= g->n_datasets || !mg_data_by_content(g->datasets[i].name) || !hex || strlen(hex) != 64 ||
        strspn(hex, "0123456789abcdef") != 64)
        return mg_error_set(err, MG_ERR_ARG, "mg_grid_set_data_digest: dataset %zu of %zu is not named by its "
                            "content, or \"%s\" is not 64 hex digits", i, g->n_datasets, hex ? hex : "(null)");
    mg_dataset_spec *d = &g->datasets[i];
    mg_strbuf b;
    snprintf(d->digest, sizeof d->digest, "%s", hex);
    mg_strbuf_init(&b);
    canon_dataset(&b, d);
    mg_status st = MG_OK;
    if (b.oom || b.len >= MG_CANON_MAX)
        st = mg_error_set(err, b.oom ? MG_ERR_NOMEM : MG_ERR_CONFIG, "%s: axes.dataset[%zu]: canonical form of "
                          "%zu bytes; expected at most %d", g->path, i, b.len, MG_CANON_MAX - 1);
    else
        memcpy(d->canon, b.s, b.len + 1);
    mg_strbuf_free(&b);
    if (st != MG_OK)
        return st;
    for (size_t j = 0; j < g->n_datasets; j++) {
        size_t lo = j < i ? j : i, hi = j < i ? i : j;
        if (j != i && !strcmp(g->datasets[j].canon, d->canon))
            return mg_error_set(err, MG_ERR_CONFIG, "%s: axes.dataset[%zu] and axes.dataset[%zu] hold the same data "
                                "(%s and %s have the same content and options); expected each dataset once",
                                g->path, lo, hi, g->datasets[lo].root, g->datasets[hi].root);
    }
    return MG_OK;
}

mg_status mg_grid_bind_data(mg_grid *g, mg_error *err)
{
    for (size_t i = 0; i < g->n_datasets; i++) {
        char hex[65];
        if (!mg_data_by_content(g->datasets[i].name))
            continue;
        mg_status st = mg_data_digest(g->datasets[i].name, g->datasets[i].root, hex, err);
        if (st != MG_OK)
            return err ? mg_error_prefix(err, "%s: axes.dataset[%zu]: ", g->path, i) : st;
        st = mg_grid_set_data_digest(g, i, hex, err);
        if (st != MG_OK)
            return st;
    }
    return MG_OK;
}

void mg_grid_destroy(mg_grid **gp)
{
    if (!gp || !*gp)
        return;
    mg_grid *g = *gp;
    for (size_t i = 0; i < g->n_excludes; i++)
        for (int a = 0; a < MG_AXIS_COUNT; a++)
            free(g->excludes[i].match[a]);
    free(g->excludes);
    free(g->yaml);
    free(g->seeds);
    free(g->datasets);
    free(g->archs);
    free(g->prunes);
    free(g->sparsities);
    free(g->defenses);
    free(g->attacks);
    free(g);
    *gp = NULL;
}
