/* sched.c: running a plan. Rank 0 is the coordinator: it knows which nodes are
 * complete, hands ready nodes (all inputs complete) to idle workers, most
 * expensive chain first, and records what comes back; it never trains. With
 * one rank it runs the nodes itself. Waiting ranks poll with short sleeps
 * instead of spinning in MPI, so an oversubscribed laptop gives its cores to
 * the workers. A stop request (signal or wall time) stops the hand-out and
 * lets running nodes come back, so the store is always consistent. */
#define _POSIX_C_SOURCE 200809L
#include "miagrid/sched.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { TAG_REPORT = 101, TAG_WORK = 102, TAG_STOP = 103 };

static volatile sig_atomic_t stop_flag = 0;
static double stop_deadline = 0.0; /* mg_now() after which a stop is due; 0: none */

void mg_sched_request_stop(void) { stop_flag = 1; }
int mg_sched_stop_requested(void)
{
    return stop_flag != 0 || (stop_deadline > 0.0 && mg_now() >= stop_deadline);
}

/* A worker's view of a stop sent by rank 0 (wall time): checked at epoch ends. */
static void worker_poll_stop(void *user)
{
    MPI_Comm comm = *(MPI_Comm *)user;
    int flag = 0;
    if (MPI_Iprobe(0, TAG_STOP, comm, &flag, MPI_STATUS_IGNORE) == MPI_SUCCESS && flag) {
        int dummy;
        MPI_Recv(&dummy, 1, MPI_INT, 0, TAG_STOP, comm, MPI_STATUS_IGNORE);
        mg_sched_request_stop();
    }
}

/* What a worker tells the coordinator: the node it finished (-1 on its first
 * message) and how it went. */
typedef struct {
    int64_t node;
    int32_t status;
    int32_t pad;
    double seconds;
    char msg[1024];
} report_msg;

typedef struct {
    const mg_plan *p;
    mg_store *store;
    mg_node_state *state;
    size_t *waiting;        /* inputs not yet complete, per node */
    size_t **consumers;     /* nodes that consume each node */
    size_t *n_consumers;
    double *priority;       /* own cost plus the costliest chain of consumers */
    size_t *heap;           /* ready nodes, highest priority first */
    size_t n_heap;
    size_t done, failed, skipped, reused, computed, interrupted;
    char **fail_msg;        /* per node, for the summary */
    double computed_seconds;
} tracker;

static void nap(long usec)
{
    struct timespec ts = {usec / 1000000, (usec % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

/* ---- cost estimates ---------------------------------------------------------------- */

/* Forward multiply-adds of one sample, roughly; only ratios matter. */
static double arch_cost(const mg_arch_spec *a)
{
    static const struct {
        const char *name;
        double madds;
    } known[] = {
        {"lenet5", 4.2e5},     {"cnn4", 2.0e7},        {"resnet20", 4.1e7},   {"mobilenetv2", 9.4e7},
        {"wrn28_2", 3.6e8},    {"vgg16_bn", 3.1e8},    {"resnet18", 5.6e8},   {"densenet121", 9.0e8},
    };
    if (strcmp(a->name, "mlp") == 0) {
        double c = 1000.0 * (a->n_hidden ? a->hidden[0] : 100);
        for (int i = 0; i + 1 < a->n_hidden; i++)
            c += (double)a->hidden[i] * a->hidden[i + 1];
        return c;
    }
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (strcmp(a->name, known[i].name) == 0)
            return known[i].madds;
    return 1e7;
}

double mg_node_cost(const mg_grid *g, const mg_node *n)
{
    /* Protocols that size their parts from the dataset (mia-prune, wemem)
     * leave the sizes 0 here; any constant keeps the ratios between nodes. */
    size_t m = n->role == MG_ROLE_TARGET ? g->split.cfg.target_train : g->split.cfg.shadow_train;
    double members = m ? (double)m : 1000.0;
    switch (n->kind) {
    case MG_NODE_TRAIN:
        return 3.0 * g->train.epochs * members * arch_cost(&g->archs[n->arch]);
    case MG_NODE_PRUNE:
        return 3.0 * g->finetune.epochs * members * arch_cost(&g->archs[n->arch]);
    case MG_NODE_ATTACK:
        return 1e6;
    case MG_NODE_SELECT: /* the target's trains an attack model per candidate and shadow model */
        return n->role == MG_ROLE_TARGET ? 1e6 * (double)n->n_cands : 1e3;
    }
    return 1.0;
}

/* ---- the ready heap ----------------------------------------------------------------- */

static int before(const tracker *t, size_t a, size_t b)
{
    if (t->priority[a] != t->priority[b])
        return t->priority[a] > t->priority[b];
    return a < b;
}

static void heap_push(tracker *t, size_t node)
{
    size_t i = t->n_heap++;
    t->heap[i] = node;
    while (i > 0) {
        size_t up = (i - 1) / 2;
        if (!before(t, t->heap[i], t->heap[up]))
            break;
        size_t tmp = t->heap[i];
        t->heap[i] = t->heap[up];
        t->heap[up] = tmp;
        i = up;
    }
}

static int heap_pop(tracker *t, size_t *node)
{
    while (t->n_heap > 0) {
        size_t top = t->heap[0];
        t->heap[0] = t->heap[--t->n_heap];
        size_t i = 0;
        for (;;) {
            size_t l = 2 * i + 1, r = l + 1, best = i;
            if (l < t->n_heap && before(t, t->heap[l], t->heap[best]))
                best = l;
            if (r < t->n_heap && before(t, t->heap[r], t->heap[best]))
                best = r;
            if (best == i)
                break;
            size_t tmp = t->heap[i];
            t->heap[i] = t->heap[best];
            t->heap[best] = tmp;
            i = best;
        }
        if (t->state[top] == MG_NODE_PENDING) {
            *node = top;
            return 1;
        }
    }
    return 0;
}

/* ---- tracking --------------------------------------------------------------------------- */

static void tracker_free(tracker *t)
{
    if (t->consumers)
        for (size_t i = 0; i < t->p->n_nodes; i++)
            free(t->consumers[i]);
    if (t->fail_msg)
        for (size_t i = 0; i < t->p->n_nodes; i++)
            free(t->fail_msg[i]);
    free(t->state);
    free(t->waiting);
    free(t->consumers);
    free(t->n_consumers);
    free(t->priority);
    free(t->heap);
    free(t->fail_msg);
    memset(t, 0, sizeof *t);
}

static void skip_consumers(tracker *t, size_t i)
{
    for (size_t k = 0; k < t->n_consumers[i]; k++) {
        size_t c = t->consumers[i][k];
        if (t->state[c] == MG_NODE_PENDING) {
            t->state[c] = MG_NODE_SKIPPED;
            t->skipped++;
            skip_consumers(t, c);
        }
    }
}

static mg_status tracker_init(tracker *t, const mg_grid *g, const mg_plan *p, mg_store *s, int retry_failed,
                              mg_error *err)
{
    mg_status st = MG_OK;
    size_t n = p->n_nodes;
    memset(t, 0, sizeof *t);
    t->p = p;
    t->store = s;
    t->state = mg_calloc(n, sizeof *t->state, "node states", err);
    t->waiting = mg_calloc(n, sizeof *t->waiting, "node states", err);
    t->consumers = mg_calloc(n, sizeof *t->consumers, "node states", err);
    t->n_consumers = mg_calloc(n, sizeof *t->n_consumers, "node states", err);
    t->priority = mg_calloc(n, sizeof *t->priority, "node states", err);
    t->heap = mg_calloc(n, sizeof *t->heap, "node states", err);
    t->fail_msg = mg_calloc(n, sizeof *t->fail_msg, "node states", err);
    if (!t->state || !t->waiting || !t->consumers || !t->n_consumers || !t->priority || !t->heap ||
        !t->fail_msg)
        MG_FAIL(MG_ERR_NOMEM, "out of memory tracking %zu nodes", n);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < mg_node_n_deps(&p->nodes[i]); k++)
            t->n_consumers[mg_node_dep(&p->nodes[i], k)]++;
    for (size_t i = 0; i < n; i++) {
        t->consumers[i] = mg_calloc(t->n_consumers[i], sizeof(size_t), "consumers", err);
        if (!t->consumers[i])
            MG_FAIL(MG_ERR_NOMEM, "out of memory tracking %zu nodes", n);
        t->n_consumers[i] = 0;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < mg_node_n_deps(&p->nodes[i]); k++) {
            size_t in = mg_node_dep(&p->nodes[i], k);
            t->consumers[in][t->n_consumers[in]++] = i;
        }
    /* Upward rank: consumers come after their inputs, so a reverse sweep sees
     * every consumer's priority before the node's own. */
    for (size_t i = n; i-- > 0;) {
        double best = 0.0;
        for (size_t k = 0; k < t->n_consumers[i]; k++)
            if (t->priority[t->consumers[i][k]] > best)
                best = t->priority[t->consumers[i][k]];
        t->priority[i] = mg_node_cost(g, &p->nodes[i]) + best;
    }
    if (s) {
        /* What the store already holds is never recomputed; what failed
         * before stays failed unless asked to retry. */
        char msg[1024];
        for (size_t i = 0; i < n; i++) {
            if (mg_store_node_complete(s, p->nodes[i].key)) {
                t->state[i] = MG_NODE_DONE;
                t->done++;
                t->reused++;
                mg_store_clear_failure(s, p->nodes[i].key);
            } else if (mg_store_node_failed(s, p->nodes[i].key, msg, sizeof msg)) {
                if (retry_failed) {
                    mg_store_clear_failure(s, p->nodes[i].key);
                } else {
                    t->state[i] = MG_NODE_FAILED;
                    t->failed++;
                    t->fail_msg[i] = mg_strdup(msg, NULL);
                }
            }
        }
        for (size_t i = 0; i < n; i++)
            if (t->state[i] == MG_NODE_FAILED)
                skip_consumers(t, i);
    }
    for (size_t i = 0; i < n; i++) {
        if (t->state[i] != MG_NODE_PENDING)
            continue;
        for (size_t k = 0; k < mg_node_n_deps(&p->nodes[i]); k++)
            t->waiting[i] += t->state[mg_node_dep(&p->nodes[i], k)] != MG_NODE_DONE;
        if (t->waiting[i] == 0)
            heap_push(t, i);
    }
cleanup:
    if (st != MG_OK)
        tracker_free(t);
    return st;
}

static void tracker_finish(tracker *t, size_t i, mg_status st, const char *msg, double seconds)
{
    if (st == MG_OK) {
        t->state[i] = MG_NODE_DONE;
        t->done++;
        t->computed++;
        t->computed_seconds += seconds;
        for (size_t k = 0; k < t->n_consumers[i]; k++) {
            size_t c = t->consumers[i][k];
            if (t->state[c] == MG_NODE_PENDING && --t->waiting[c] == 0)
                heap_push(t, c);
        }
    } else if (st == MG_ERR_INTERRUPTED) {
        t->interrupted++; /* stays pending: a rerun picks it up */
    } else {
        t->state[i] = MG_NODE_FAILED;
        t->failed++;
        t->fail_msg[i] = mg_strdup(msg, NULL);
        if (t->store) {
            mg_error e;
            if (mg_store_record_failure(t->store, t->p->nodes[i].key, msg, &e) != MG_OK)
                fprintf(stderr, "miagrid: %s\n", e.msg);
        }
        skip_consumers(t, i);
    }
}

static void fmt_secs(double s, char *buf, size_t n)
{
    long v = (long)(s + 0.5);
    if (v >= 3600)
        snprintf(buf, n, "%ldh%02ldm", v / 3600, (v / 60) % 60);
    else if (v >= 60)
        snprintf(buf, n, "%ldm%02lds", v / 60, v % 60);
    else
        snprintf(buf, n, "%lds", v);
}

static void progress(const tracker *t, size_t running, int workers, double t0, const char *what)
{
    size_t total = t->p->n_nodes;
    size_t left = total - t->done - t->failed - t->skipped;
    char el[32], eta[32] = "?";
    fmt_secs(mg_now() - t0, el, sizeof el);
    if (t->computed > 0) {
        double per = t->computed_seconds / (double)t->computed;
        fmt_secs(per * (double)left / (workers > 0 ? workers : 1), eta, sizeof eta);
    }
    printf("[%7s] %zu/%zu nodes done (%zu reused), %zu running, %zu failed, %zu skipped, ETA %s%s%s\n",
           el, t->done, total, t->reused, running, t->failed, t->skipped, eta, what ? ": " : "", what ? what : "");
    fflush(stdout);
}

static void node_label(const mg_grid *g, const mg_node *n, char *buf, size_t len)
{
    if (n->kind == MG_NODE_ATTACK)
        snprintf(buf, len, "attack %s %.12s", g->attacks[n->attack].name, n->key);
    else if (n->kind == MG_NODE_SELECT)
        snprintf(buf, len, "select %s %s s<=%g seed=%llu %.12s", mg_role_str(n->role), g->archs[n->arch].name,
                 n->sparsity, (unsigned long long)g->seeds[n->seed], n->key);
    else if (n->kind == MG_NODE_PRUNE)
        snprintf(buf, len, "prune %s %s s=%g seed=%llu %.12s", mg_role_str(n->role), g->archs[n->arch].name,
                 n->sparsity, (unsigned long long)g->seeds[n->seed], n->key);
    else
        snprintf(buf, len, "train %s %s seed=%llu %.12s", mg_role_str(n->role), g->archs[n->arch].name,
                 (unsigned long long)g->seeds[n->seed], n->key);
}

/* ---- executing ------------------------------------------------------------------------ */

typedef struct {
    const mg_run_opts *o;
    mg_exec_ctx ctx;
} executor;

static mg_status execute(executor *x, int rank, size_t node, mg_error *err)
{
    if (x->o->exec)
        return x->o->exec(x->o->exec_user, rank, node, err);
    return mg_exec_node(&x->ctx, node, err);
}

/* Rank 0 alone rewrites the root file; at most this often while running. */
#define ROOT_REWRITE_SECONDS 60.0

static int should_stop(const mg_run_opts *o, double t0)
{
    (void)o;
    (void)t0;
    return mg_sched_stop_requested();
}

static void run_serial(const mg_grid *g, const mg_plan *p, mg_store *s, tracker *t, executor *x, double t0,
                       mg_run_summary *sum)
{
    const mg_run_opts *o = x->o;
    size_t i;
    double last_root = mg_now();
    while (!should_stop(o, t0) && heap_pop(t, &i)) {
        mg_error e;
        mg_error_clear(&e);
        char label[160];
        node_label(g, &p->nodes[i], label, sizeof label);
        if (o->verbose)
            printf("start %s\n", label);
        double ts = mg_now();
        mg_status st = execute(x, 0, i, &e);
        tracker_finish(t, i, st, e.msg, mg_now() - ts);
        if (st != MG_OK && st != MG_ERR_INTERRUPTED)
            fprintf(stderr, "miagrid: node failed: %s\n", e.msg);
        if (!o->quiet)
            progress(t, 0, 1, t0, label);
        if (s && mg_now() - last_root > ROOT_REWRITE_SECONDS) {
            mg_store_write_root(s, g, p, t->state, NULL);
            last_root = mg_now();
        }
    }
    sum->interrupted = should_stop(o, t0) || t->interrupted > 0;
}

static mg_status run_coordinator(const mg_grid *g, const mg_plan *p, mg_store *s, tracker *t, MPI_Comm comm,
                                 int size, const mg_run_opts *o, double t0, mg_run_summary *sum, mg_error *err)
{
    mg_status st = MG_OK;
    int *idle = NULL, *busy = NULL, n_idle = 0, stopped = 0, stopping = 0;
    size_t running = 0;
    double last_root = mg_now();
    idle = mg_calloc((size_t)size, sizeof *idle, "workers", err);
    busy = mg_calloc((size_t)size, sizeof *busy, "workers", err);
    if (!idle || !busy)
        MG_FAIL(MG_ERR_NOMEM, "out of memory for %d workers", size);

    while (stopped < size - 1) {
        int flag = 0;
        MPI_Status ms;
        if (!stopping && should_stop(o, t0)) {
            stopping = 1;
            if (!o->quiet) {
                printf("stop requested: handing out no more nodes; running nodes save their state and stop\n");
                fflush(stdout);
            }
            /* Workers that got the signal themselves stop anyway; this
             * reaches those that did not (wall time, a signal to rank 0). */
            int one = 1;
            for (int w = 1; w < size; w++)
                if (busy[w] && MPI_Send(&one, 1, MPI_INT, w, TAG_STOP, comm) != MPI_SUCCESS)
                    MG_FAIL(MG_ERR_MPI, "MPI_Send of a stop to rank %d failed", w);
        }
        if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_REPORT, comm, &flag, &ms) != MPI_SUCCESS)
            MG_FAIL(MG_ERR_MPI, "MPI_Iprobe failed on the coordinator");
        double busy0 = mg_now();
        if (flag) {
            report_msg rep;
            if (MPI_Recv(&rep, (int)sizeof rep, MPI_BYTE, ms.MPI_SOURCE, TAG_REPORT, comm, MPI_STATUS_IGNORE) !=
                MPI_SUCCESS)
                MG_FAIL(MG_ERR_MPI, "MPI_Recv from rank %d failed", ms.MPI_SOURCE);
            int w = ms.MPI_SOURCE;
            sum->messages++;
            if (rep.node >= 0 && (size_t)rep.node < p->n_nodes) {
                size_t i = (size_t)rep.node;
                running--;
                busy[w] = 0;
                rep.msg[sizeof rep.msg - 1] = '\0';
                tracker_finish(t, i, (mg_status)rep.status, rep.msg, rep.seconds);
                char label[200];
                node_label(g, &p->nodes[i], label, sizeof label);
                if (rep.status != MG_OK && rep.status != MG_ERR_INTERRUPTED)
                    fprintf(stderr, "miagrid: node failed on rank %d: %s\n", w, rep.msg);
                if (!o->quiet) {
                    char what[260];
                    snprintf(what, sizeof what, "rank %d %s%s", w, label,
                             rep.status == MG_ERR_INTERRUPTED ? " (interrupted)" : "");
                    progress(t, running, size - 1, t0, what);
                }
            }
            idle[n_idle++] = w;
        }
        /* Hand out ready nodes; with nothing ready or running, or when
         * stopping, release the idle. */
        while (n_idle > 0) {
            size_t i;
            int64_t msg;
            int w = idle[n_idle - 1];
            if (!stopping && heap_pop(t, &i)) {
                msg = (int64_t)i;
                running++;
                busy[w] = 1;
                if (o->verbose) {
                    char label[200];
                    node_label(g, &p->nodes[i], label, sizeof label);
                    printf("rank %d starts %s\n", w, label);
                }
            } else if (stopping || running == 0) {
                msg = -1;
                stopped++;
            } else {
                break;
            }
            n_idle--;
            if (MPI_Send(&msg, 1, MPI_INT64_T, w, TAG_WORK, comm) != MPI_SUCCESS)
                MG_FAIL(MG_ERR_MPI, "MPI_Send to rank %d failed", w);
        }
        if (flag) {
            sum->coordinator_seconds += mg_now() - busy0;
        } else {
            if (s && mg_now() - last_root > ROOT_REWRITE_SECONDS) {
                mg_store_write_root(s, g, p, t->state, NULL);
                last_root = mg_now();
            }
            nap(1000);
        }
    }
    sum->interrupted = stopping || t->interrupted > 0;
cleanup:
    free(idle);
    free(busy);
    return st;
}

static mg_status run_worker(MPI_Comm comm, int rank, executor *x, mg_error *err)
{
    mg_status st = MG_OK;
    report_msg rep;
    memset(&rep, 0, sizeof rep);
    rep.node = -1;
    for (;;) {
        if (MPI_Send(&rep, (int)sizeof rep, MPI_BYTE, 0, TAG_REPORT, comm) != MPI_SUCCESS)
            MG_FAIL(MG_ERR_MPI, "rank %d: MPI_Send to the coordinator failed", rank);
        int64_t node = -1;
        MPI_Request req;
        if (MPI_Irecv(&node, 1, MPI_INT64_T, 0, TAG_WORK, comm, &req) != MPI_SUCCESS)
            MG_FAIL(MG_ERR_MPI, "rank %d: MPI_Irecv failed", rank);
        for (;;) {
            int done = 0;
            if (MPI_Test(&req, &done, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                MG_FAIL(MG_ERR_MPI, "rank %d: MPI_Test failed", rank);
            if (done)
                break;
            nap(1000);
        }
        if (node < 0)
            break;
        mg_error e;
        mg_error_clear(&e);
        double ts = mg_now();
        mg_status ns = execute(x, rank, (size_t)node, &e);
        worker_poll_stop(&comm); /* a stop that arrived after the last epoch */
        memset(&rep, 0, sizeof rep);
        rep.node = node;
        rep.status = (int32_t)ns;
        rep.seconds = mg_now() - ts;
        snprintf(rep.msg, sizeof rep.msg, "%s", ns == MG_OK ? "" : e.msg);
    }
cleanup:
    return st;
}

mg_status mg_run(const mg_grid *g, const mg_plan *p, mg_store *s, MPI_Comm comm,
                 const mg_run_opts *opts, mg_run_summary *summary, mg_error *err)
{
    mg_status st = MG_OK;
    int rank = 0, size = 1;
    tracker t;
    mg_run_opts o;
    mg_run_summary sum;
    executor x;
    memset(&t, 0, sizeof t);
    memset(&o, 0, sizeof o);
    memset(&sum, 0, sizeof sum);
    if (opts)
        o = *opts;
    x.o = &o;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    double t0 = mg_now();
    if (rank == 0 && o.walltime > 0)
        stop_deadline = t0 + o.walltime;
    if (!o.exec) {
        mg_exec_init(&x.ctx, g, p, s, rank);
        x.ctx.checkpoint_seconds = o.checkpoint_seconds;
        if (size > 1) {
            x.ctx.poll_stop = worker_poll_stop;
            x.ctx.poll_user = &comm;
        }
    }

    if (rank != 0) {
        st = run_worker(comm, rank, &x, err);
        goto cleanup;
    }

    MG_CHECK(tracker_init(&t, g, p, s, o.retry_failed, err));
    if (!o.quiet) {
        size_t to_compute = p->n_nodes - t.reused - t.failed - t.skipped;
        if (to_compute == 0 && t.failed == 0)
            printf("all %zu nodes are complete in the store: nothing to compute\n", p->n_nodes);
        else
            printf("%zu nodes: %zu complete in the store, %zu to compute on %d %s\n", p->n_nodes, t.reused,
                   to_compute, size > 1 ? size - 1 : 1, size > 1 ? "workers" : "rank");
        if (t.failed)
            printf("%zu node(s) failed in an earlier run and %zu depend on them: not retried "
                   "(use --retry-failed)\n", t.failed, t.skipped);
        fflush(stdout);
    }
    if (size == 1)
        run_serial(g, p, s, &t, &x, t0, &sum);
    else
        MG_CHECK(run_coordinator(g, p, s, &t, comm, size, &o, t0, &sum, err));

    if (s)
        MG_CHECK(mg_store_write_root(s, g, p, t.state, err));
    sum.n_nodes = p->n_nodes;
    sum.reused = t.reused;
    sum.computed = t.computed;
    sum.failed = t.failed;
    sum.skipped = t.skipped;
    sum.pending = p->n_nodes - t.done - t.failed - t.skipped;
    sum.seconds = mg_now() - t0;
    if (t.failed) {
        mg_strbuf b;
        mg_strbuf_init(&b);
        mg_strbuf_printf(&b,
                         "%zu node(s) failed and %zu were skipped because of them; fix the cause and run again "
                         "with --retry-failed (/failures in the root file lists every message):",
                         t.failed, t.skipped);
        size_t shown = 0;
        for (size_t i = 0; i < p->n_nodes && shown < 3; i++)
            if (t.state[i] == MG_NODE_FAILED) {
                const char *m = t.fail_msg[i] ? t.fail_msg[i] : "(no message)";
                mg_strbuf_printf(&b, "\n  %.220s%s", m, strlen(m) > 220 ? "..." : "");
                shown++;
            }
        if (shown < t.failed)
            mg_strbuf_printf(&b, "\n  and %zu more", t.failed - shown);
        st = mg_error_set(err, MG_ERR_STATE, "%s", b.s ? b.s : "nodes failed");
        mg_strbuf_free(&b);
    } else if (sum.pending > 0 && sum.interrupted) {
        st = mg_error_set(err, MG_ERR_INTERRUPTED,
                          "stopped early: %zu of %zu nodes complete, %zu left; the store is consistent: "
                          "run the same command again to resume", t.done, p->n_nodes, sum.pending);
    }
cleanup:
    if (summary)
        *summary = sum;
    if (!o.exec)
        mg_exec_free(&x.ctx);
    tracker_free(&t);
    return st;
}
