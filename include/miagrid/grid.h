/*
 * grid.h: the grid file and its plan. A grid (YAML) names the axes of a sweep;
 * expansion turns it into cells (one point of dataset x arch x prune x
 * sparsity x defense x seed) and planning turns the cells into nodes (units of
 * work with a canonical recipe and a content key), deduplicated so that cells
 * needing the same model share one node.
 */
#ifndef MIAGRID_GRID_H
#define MIAGRID_GRID_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#include "miagrid/data.h"
#include "miagrid/util.h"

#ifdef __cplusplus
extern "C" {
#endif

#define MG_NAME_MAX 64
#define MG_CANON_MAX 512
#define MG_MAX_HIDDEN 16
/* Most layer prefixes one pruning method may be restricted to, and their length. */
#define MG_MAX_PRUNE_LAYERS 16
#define MG_PRUNE_LAYER_MAX 32
/* Most candidate sparsities of one MIA-Pruning selection. */
#define MG_MAX_SELECT 32
/* Most stages one pruning chain may have (iterative rounds, imp rounds). */
#define MG_MAX_STAGES 256
/* Bumped whenever a recipe's meaning changes, so old store entries are not reused. */
#define MG_RECIPE_VERSION 1
/* Bumped whenever the attacks compute something else: only attack nodes are redone. */
#define MG_ATTACK_IMPL_VERSION 2
/* An axis index that does not apply to a node (e.g. the prune of a train node). */
#define MG_NO_INDEX ((size_t)-1)

typedef struct {
    char name[MG_NAME_MAX];   /* registry name (mg_data_known_list()); cifar100 with labels: coarse is
                               * "cifar100-coarse" */
    char root[1024];          /* "" = the registry default */
    mg_data_options opts;     /* image_size/channels (image folders), csv options; resolved */
    char canon[MG_CANON_MAX]; /* canonical JSON (root excluded: where data lives is not what it is;
                               * the generic imagefolder and csv name their root's content digest
                               * once mg_grid_bind_data has read it, their root until then) */
    char digest[65];          /* imagefolder, csv: mg_data_digest of the root once bound, else "" */
} mg_dataset_spec;

typedef struct {
    char name[MG_NAME_MAX];   /* mg_model_arch_list(): "mlp", "lenet5", ... */
    int n_hidden;             /* mlp (a preset is expanded into hidden and act) */
    int hidden[MG_MAX_HIDDEN];
    char act[16];             /* "relu" or "tanh" */
    char canon[MG_CANON_MAX];
    char init[16];            /* "default" or "xavier-normal" (mg_model_cfg.init) */
} mg_arch_spec;

typedef struct {
    char method[MG_NAME_MAX];   /* "l1-unstructured", "random-unstructured", "l2-structured", ... */
    char schedule[MG_NAME_MAX]; /* "one-shot", "iterative" or "imp" */
    int rounds;                 /* iterative: K rounds, round k keeps (1-s)^(k/K) (WeMem) */
    double rate;                /* imp: fraction of the remaining weights pruned per round (0.2) */
    int rewind_epoch;           /* imp: weights rewound to their values after this training epoch */
    int factors;                /* butterfly: number of butterfly factors (0: all, a dense product) */
    char canon[MG_CANON_MAX];
    double rho;                 /* admm: penalty of the augmented Lagrangian (Zhang et al.) */
    int admm_epochs;            /* admm: epochs of ADMM training before the hard pruning */
    double penalty;             /* slim: L1 penalty on batch-norm scales in the dense training; 0: none */
    /* The tensors the method prunes: those whose names start with one of
     * these prefixes (sorted); n_layers 0: every tensor the method prunes. */
    int n_layers;
    char layers[MG_MAX_PRUNE_LAYERS][MG_PRUNE_LAYER_MAX];
    /* MIA-Pruning selection (Wang et al. 2021): n_select > 0 makes a cell of
     * sparsity s > 0 prune to each candidate no greater than s and keep the
     * one whose pruned shadow models give select_attack the least gain
     * (MG_NODE_SELECT). */
    int n_select;
    double select[MG_MAX_SELECT]; /* the candidate sparsities, increasing, in (0, 1) */
    char select_attack[MG_NAME_MAX]; /* "nn", "top3-nn" or "nn-cls" (default: Wang's inputs, nn-cls) */
    char chain_canon[MG_CANON_MAX]; /* canon without the selection: what the pruned models' recipes name,
                                     * so candidates are the models of plain cells of the same method */
} mg_prune_spec;

/* Most subset models a memorisation-score estimate may take. */
#define MG_MAX_SUBSETS 256

/* Where a defense applies (mg_defense_spec.phase): the dense training, the
 * pruned model's fine-tuning, or both. */
enum { MG_PHASE_DENSE = 1u, MG_PHASE_PRUNE = 2u, MG_PHASE_BOTH = 3u };

/* A defense and its parameters; only those of `name` are set (the rest 0).
 * The README's defense table gives each one's meaning, default and paper. */
typedef struct {
    char name[MG_NAME_MAX];   /* "none", "base", "label-smoothing", "adv-reg", "dp-sgd", "relaxloss",
                               * "ppb", "rsw", "rmr", "swmr" */
    unsigned phase;           /* MG_PHASE_* bits; 0 for none */
    double weight_decay;      /* base: L2 coefficient */
    int patience;             /* base: early-stopping patience in epochs (needs dev parts) */
    double smoothing;         /* label-smoothing: epsilon */
    double gamma;             /* adv-reg: weight of the adversarial term */
    int k_steps;              /* adv-reg: inference-model steps per classifier step */
    double attack_lr;         /* adv-reg: the inference model's learning rate */
    double noise_multiplier;  /* dp-sgd: sigma */
    double max_grad_norm;     /* dp-sgd: clipping bound C */
    double delta;             /* dp-sgd: the delta epsilon is reported at */
    double alpha;             /* relaxloss: target loss */
    double lambda;            /* ppb: weight of the KL term */
    char mem_scores[1024];    /* rsw, rmr, swmr: CSV file of index,score memorisation scores, or "" */
    int subsets;              /* rsw, rmr, swmr: else the scores come from this many subset models */
    double subset_fraction;   /* ... each trained on this fraction of the members */
    int width, step;          /* rsw, swmr: window width and step per class, in samples */
    int ascending;            /* rsw, swmr: rank by ascending score (default: descending) */
    double tau;               /* rmr, swmr: memorisation-score threshold of risky samples */
    double lambda_r, lambda_g; /* rmr, swmr: L2 weights of risky and other samples */
    char canon[MG_CANON_MAX]; /* none: {"name":"none"}, as always */
} mg_defense_spec;

/* Most reference models one lira or rmia attack may take. */
#define MG_MAX_REFERENCES 1024

typedef struct {
    char name[MG_NAME_MAX];   /* "loss", "conf", ...; "lira-offline" is lira with online false */
    char canon[MG_CANON_MAX];
    int gonon_depth;          /* gonon: mg_attack_cfg.gonon_depth (0: their grid of depths); 0 otherwise */
    /* lira and rmia (mg_attack_cfg's fields of the same names); 0 for the others */
    int references;           /* reference models, each a train node of its own */
    int lira_online;          /* 1: online (the references' pool holds the target's candidates) */
    int lira_global_var;      /* resolved: 1 one variance for all examples, 0 per example */
    double rmia_a;            /* in [0, 1]; < 0: tuned */
    double rmia_gamma;        /* > 0 */
} mg_attack_spec;

/* Most milestones a multistep schedule takes (as MG_LR_MAX_MILESTONES in nn.h). */
#define MG_MAX_MILESTONES 16

typedef struct {
    int epochs;
    int batch;
    char optimizer[16];       /* "sgd", "adam" or "adamw" (mg_opt_kind_parse) */
    double lr, momentum, weight_decay;
    double beta1, beta2, eps; /* adam, adamw */
    char canon[MG_CANON_MAX];
    int nesterov;             /* sgd */
    char schedule[16];        /* "constant", "multistep" or "cosine" */
    int n_milestones;         /* multistep: increasing epochs, each below `epochs` */
    int milestones[MG_MAX_MILESTONES];
    double gamma;             /* multistep */
    double eta_min;           /* cosine */
    int patience;             /* early_stopping.patience; 0: no early stopping */
    int augment_crop;         /* augment: random crop (zero padding 4) */
    int augment_flip;         /* augment: random horizontal flip */
} mg_train_spec;

typedef struct {
    long target_train, target_test, shadow_train, shadow_test;  /* four-way and explicit; 0 otherwise */
    mg_split_cfg cfg;         /* the whole split (protocol, dev parts, shadows, population); with
                               * mg_split_roles_make it gives every role's samples */
    char canon[MG_CANON_MAX]; /* four-way without dev parts or population: exactly the historic form */
} mg_split_spec;

typedef struct mg_exclude mg_exclude; /* a partial match on axis values; private to grid/ */

typedef struct {
    char path[1024];          /* the file as named on the command line */
    char name[MG_NAME_MAX];
    char *yaml;               /* the file's bytes as given, NUL-terminated */
    size_t yaml_len;
    char store[1024];         /* store directory; "" means runs/<name> */
    uint64_t *seeds;
    size_t n_seeds;
    mg_split_spec split;
    mg_train_spec train, finetune;
    char data_root[1024];     /* data.root: default root for every dataset */
    mg_dataset_spec *datasets;
    size_t n_datasets;
    mg_arch_spec *archs;
    size_t n_archs;
    mg_prune_spec *prunes;
    size_t n_prunes;
    double *sparsities;
    size_t n_sparsities;
    mg_defense_spec *defenses;
    size_t n_defenses;
    mg_attack_spec *attacks;
    size_t n_attacks;
    mg_exclude *excludes;
    size_t n_excludes;
} mg_grid;

/* Parse a grid from text. `path` is used in messages only. Every error names
 * path:line:column, the key, what was expected and the accepted values; unknown
 * keys are errors. On success *out is a new grid the caller frees with
 * mg_grid_destroy (text is copied into it); on failure *out is NULL and the
 * status is MG_ERR_CONFIG (or MG_ERR_NOMEM). Every default is resolved: a
 * dataset's root is its own `root`, else data.root, else "". */
mg_status mg_grid_parse(const char *path, const char *text, size_t len, mg_grid **out, mg_error *err);
/* Read and parse a file. */
mg_status mg_grid_load(const char *path, mg_grid **out, mg_error *err);
void mg_grid_destroy(mg_grid **g);

/* Name each dataset that is whatever its root holds (imagefolder, csv;
 * mg_data_by_content) by the content digest of its root (mg_data_digest)
 * instead of its path, in its canonical form and so in every node key: an
 * edit of the data in place then makes new nodes rather than reusing results
 * of the old data, and moving the data keeps them. Reads all of that data;
 * under MPI rank 0 calls it and hands the digests to the other ranks
 * (mg_grid_set_data_digest). An unreadable root is an MG_ERR_IO naming it; two
 * datasets of the axis holding the same data are an MG_ERR_CONFIG. */
mg_status mg_grid_bind_data(mg_grid *g, mg_error *err);
/* Dataset i's digest (64 hex digits) as mg_grid_bind_data sets it. */
mg_status mg_grid_set_data_digest(mg_grid *g, size_t i, const char *hex, mg_error *err);

/* The pruning method as tables show it: "method/schedule", with "/select"
 * for an MIA-Pruning selection. At most 55 characters. */
void mg_prune_label(const mg_prune_spec *p, char *buf, size_t cap);

/* ---- plan ------------------------------------------------------------------------ */

/* A select node (MIA-Pruning) is a model node: the role target one measures
 * the gain of an attack on each candidate sparsity's pruned shadow models,
 * picks the least, and holds a copy of the target model pruned to it; a role
 * shadow one holds the copy of its shadow model pruned to the same pick. */
typedef enum { MG_NODE_TRAIN = 0, MG_NODE_PRUNE = 1, MG_NODE_ATTACK = 2, MG_NODE_SELECT = 3 } mg_node_kind;
#define MG_NODE_N_KINDS 4
typedef enum { MG_ROLE_TARGET = 0, MG_ROLE_SHADOW = 1 } mg_role;

const char *mg_node_kind_str(mg_node_kind k);  /* "train", "prune", "attack", "select" */
const char *mg_role_str(mg_role r);            /* "target", "shadow" */

typedef struct {
    mg_node_kind kind;
    mg_role role;            /* train, prune: whose data the model is trained on */
    char key[33];            /* first 32 hex digits of SHA-256(recipe) */
    char *recipe;            /* canonical JSON; includes the keys of the inputs */
    size_t n_inputs;         /* train: 0; prune: 1 (the model pruned), imp: 2 (the model pruned, the
                              * rewind point); attack: 2 (target model, shadow model 0) */
    size_t inputs[2];        /* node indices */
    /* Indices into the grid's axes, for the fields that apply to this kind;
     * MG_NO_INDEX for the others. train: dataset, arch, seed, and defense
     * when the cell's defense acts on dense training (phase dense or both).
     * prune: those and prune, defense. attack: those of its models (prune
     * MG_NO_INDEX when the models are dense, defense when they are also
     * undefended) and attack. */
    size_t dataset, arch, prune, defense, attack, seed;
    double sparsity;         /* prune: the sparsity this node prunes to (a stage's, for chains);
                              * attack on pruned models: the cell's; 0 otherwise */
    int stage;               /* prune: 1-based stage of an iterative or imp chain (1 for one-shot) */
    int stop_epoch;          /* train: >= 0 makes this the weights after that many epochs of the
                              * dense training (imp's rewind point; 0: the initial weights);
                              * -1 trains all epochs */
    size_t n_uses;           /* how many references from cells and nodes resolve to this node */
    int subset;              /* train: >= 1 makes this subset model number `subset` of a memorisation-score
                              * estimate (trained undefended on a random part of the role's members, the
                              * part's size from the defense at `defense`); 0 otherwise */
    size_t extra_first;      /* further inputs: nodes extra_first .. extra_first + n_extra - 1: on */
    size_t n_extra;          /* train and prune nodes the subset models whose scores a WeMem defense
                              * uses, on attack nodes the attack's reference models (n_extra 0: none) */
    int shadow_index;        /* train, prune of role shadow: which of the split's shadow models
                              * (0 .. data.split.shadows - 1); 0 otherwise */
    const size_t *shadows;   /* attack: the n_shadows shadow models it pools (node indices, in the
                              * split's order; shadows[0] == inputs[1]). They are rarely consecutive
                              * nodes (each is the end of its own chain), so this points into the */
    size_t n_shadows;        /* plan's per-cell lists (mg_cell.shadows). Other kinds: NULL, 0 */
    double bn_l1;            /* train: the L1 penalty on batch-norm scales of the cell's slim pruning
                              * (mg_train_cfg.bn_l1); 0 otherwise */
    int reference;           /* train: >= 1 makes this reference model number `reference` (index + 1) of
                              * ref_count of lira and rmia: trained undefended and dense on about half
                              * of a pool: the population's first half, or with ref_online the target's
                              * members and non-members */
    int ref_count;
    int ref_online;
    /* select: the candidates' pruned models (node indices). Role target:
     * n_candidates x (1 + n_shadows) of them, candidate-major, each
     * candidate's target model then its shadow models in the split's order;
     * role shadow: its shadow model's n_candidates, and inputs[0] is the
     * target's select node, which decides. Other kinds: NULL, 0. */
    const size_t *cands;
    size_t n_cands;
    size_t n_candidates;
} mg_node;

/* All of a node's inputs, every kind together: the first n_inputs are
 * inputs[], then the extra range (a train or prune node's WeMem subset models,
 * or an attack node's reference models), then an attack's shadow models after
 * the first (which is inputs[1]), then a select node's candidates. */
static inline size_t mg_node_n_deps(const mg_node *n)
{
    return n->n_inputs + n->n_extra + (n->n_shadows > 1 ? n->n_shadows - 1 : 0) + n->n_cands;
}
static inline size_t mg_node_dep(const mg_node *n, size_t k)
{
    size_t n_more_shadows = n->n_shadows > 1 ? n->n_shadows - 1 : 0;
    if (k < n->n_inputs)
        return n->inputs[k];
    k -= n->n_inputs;
    if (k < n->n_extra)
        return n->extra_first + k;
    k -= n->n_extra;
    if (k < n_more_shadows)
        return n->shadows[1 + k];
    return n->cands[k - n_more_shadows];
}

typedef struct {
    size_t id;
    size_t dataset, arch, prune, sparsity, defense, seed; /* indices into the grid's axes */
    size_t model[2];         /* node index of the target [MG_ROLE_TARGET] and shadow [MG_ROLE_SHADOW] model */
    size_t *attack_nodes;    /* grid->n_attacks node indices, in the grid's attack order */
    size_t *shadows;         /* the n_shadows (data.split.shadows) shadow models the attacks pool, */
    size_t n_shadows;        /* in the split's order; shadows[0] == model[MG_ROLE_SHADOW] */
} mg_cell;

typedef struct {
    mg_cell *cells;
    size_t n_cells;
    mg_node *nodes;          /* topological order: every input precedes its consumers */
    size_t n_nodes;
    size_t n_refs;           /* node references before deduplication */
} mg_plan;

/* Expand the grid into cells (excludes applied) and nodes. A cell of sparsity
 * 0 evaluates the dense models directly: it has no prune nodes. Cells are
 * numbered 0..n_cells-1 in the order dataset, arch, prune, sparsity,
 * defense, seed, with dataset varying slowest and seed fastest. Each cell
 * references, for the target and each of the split's shadow models, its
 * dense node and (sparsity > 0) its prune nodes, then one attack node per
 * attack pooling every shadow model; n_refs counts these references, and each
 * node's n_uses the ones resolving to it, so n_refs - n_nodes references
 * were served by a node shared with another cell. The plan must come from
 * mg_plan_build (it carries a private key index for mg_plan_find). */
mg_status mg_plan_build(const mg_grid *g, mg_plan **out, mg_error *err);
void mg_plan_destroy(mg_plan **p);

/* Find a node by key; returns its index or MG_NO_INDEX ((size_t)-1). O(1). */
size_t mg_plan_find(const mg_plan *p, const char *key);

/* Human-readable listing for --dry-run: the cells with their axis values, the
 * nodes with kind, key and inputs, and counts (cells, nodes, references, shared). */
void mg_plan_print(const mg_grid *g, const mg_plan *p, FILE *f);

/* Compact JSON of a cell's axis values: {"dataset":...,"arch":...,...}. Caller frees. */
char *mg_cell_axes_json(const mg_grid *g, const mg_cell *c);

#ifdef __cplusplus
}
#endif
#endif
