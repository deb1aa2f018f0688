/* sched.c: running a plan. Rank 0 is the coordinator: it knows which nodes are
 * complete, hands ready nodes (all inputs complete) to idle workers and
 * records what comes back; it never trains. With one rank it runs the nodes
 * itself in topological order. Waiting ranks poll with short sleeps instead of
 * spinning in MPI, so an oversubscribed laptop gives its cores to the workers. */
#define _POSIX_C_SOURCE 200809L
#include "miagrid/sched.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

enum { TAG_REPORT = 101, TAG_WORK = 102 };

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
    mg_node_state *state;
    size_t *waiting;        /* inputs not yet complete, per node */
    size_t **consumers;     /* nodes that consume each node */
    size_t *n_consumers;
    size_t *ready;          /* FIFO of ready node indices */
    size_t ready_head, ready_tail;
    size_t done, failed, skipped, reused, computed;
    char **fail_msg;        /* per node, for the summary */
    double computed_seconds;
} tracker;

static void nap(long usec)
{
    struct timespec ts = {usec / 1000000, (usec % 1000000) * 1000};
    nanosleep(&ts, NULL);
}

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
    free(t->ready);
    free(t->fail_msg);
    memset(t, 0, sizeof *t);
}

static void push_ready(tracker *t, size_t i) { t->ready[t->ready_tail++] = i; }

static mg_status tracker_init(tracker *t, const mg_plan *p, mg_store *s, mg_error *err)
{
    mg_status st = MG_OK;
    size_t n = p->n_nodes;
    memset(t, 0, sizeof *t);
    t->p = p;
    t->state = mg_calloc(n, sizeof *t->state, "node states", err);
    t->waiting = mg_calloc(n, sizeof *t->waiting, "node states", err);
    t->consumers = mg_calloc(n, sizeof *t->consumers, "node states", err);
    t->n_consumers = mg_calloc(n, sizeof *t->n_consumers, "node states", err);
    t->ready = mg_calloc(n, sizeof *t->ready, "node states", err);
    t->fail_msg = mg_calloc(n, sizeof *t->fail_msg, "node states", err);
    if (!t->state || !t->waiting || !t->consumers || !t->n_consumers || !t->ready || !t->fail_msg)
        MG_FAIL(MG_ERR_NOMEM, "out of memory tracking %zu nodes", n);
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < p->nodes[i].n_inputs; k++)
            t->n_consumers[p->nodes[i].inputs[k]]++;
    for (size_t i = 0; i < n; i++) {
        t->consumers[i] = mg_calloc(t->n_consumers[i], sizeof(size_t), "consumers", err);
        if (!t->consumers[i])
            MG_FAIL(MG_ERR_NOMEM, "out of memory tracking %zu nodes", n);
        t->n_consumers[i] = 0;
    }
    for (size_t i = 0; i < n; i++)
        for (size_t k = 0; k < p->nodes[i].n_inputs; k++) {
            size_t in = p->nodes[i].inputs[k];
            t->consumers[in][t->n_consumers[in]++] = i;
        }
    /* What the store already holds is never recomputed. */
    for (size_t i = 0; i < n; i++) {
        if (mg_store_node_complete(s, p->nodes[i].key)) {
            t->state[i] = MG_NODE_DONE;
            t->done++;
            t->reused++;
        }
    }
    for (size_t i = 0; i < n; i++) {
        if (t->state[i] == MG_NODE_DONE)
            continue;
        for (size_t k = 0; k < p->nodes[i].n_inputs; k++)
            t->waiting[i] += t->state[p->nodes[i].inputs[k]] != MG_NODE_DONE;
        if (t->waiting[i] == 0)
            push_ready(t, i);
    }
cleanup:
    if (st != MG_OK)
        tracker_free(t);
    return st;
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
                push_ready(t, c);
        }
    } else {
        t->state[i] = MG_NODE_FAILED;
        t->failed++;
        t->fail_msg[i] = mg_strdup(msg, NULL);
        skip_consumers(t, i);
    }
}

static int ready_pop(tracker *t, size_t *i)
{
    while (t->ready_head < t->ready_tail) {
        size_t c = t->ready[t->ready_head++];
        if (t->state[c] == MG_NODE_PENDING) {
            *i = c;
            return 1;
        }
    }
    return 0;
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
    else if (n->kind == MG_NODE_PRUNE)
        snprintf(buf, len, "prune %s %s s=%g seed=%llu %.12s", mg_role_str(n->role), g->archs[n->arch].name,
                 n->sparsity, (unsigned long long)g->seeds[n->seed], n->key);
    else
        snprintf(buf, len, "train %s %s seed=%llu %.12s", mg_role_str(n->role), g->archs[n->arch].name,
                 (unsigned long long)g->seeds[n->seed], n->key);
}

/* Rank 0 alone rewrites the root file; at most this often while running. */
#define ROOT_REWRITE_SECONDS 60.0

static mg_status run_serial(const mg_grid *g, const mg_plan *p, mg_store *s, tracker *t,
                            const mg_run_opts *o, double t0, mg_error *err)
{
    mg_exec_ctx ctx;
    mg_exec_init(&ctx, g, p, s, 0);
    size_t i;
    double last_root = mg_now();
    while (ready_pop(t, &i)) {
        mg_error e;
        mg_error_clear(&e);
        char label[160];
        node_label(g, &p->nodes[i], label, sizeof label);
        if (o->verbose)
            printf("start %s\n", label);
        double ts = mg_now();
        mg_status st = mg_exec_node(&ctx, i, &e);
        tracker_finish(t, i, st, e.msg, mg_now() - ts);
        if (st != MG_OK)
            fprintf(stderr, "miagrid: node failed: %s\n", e.msg);
        if (!o->quiet)
            progress(t, 0, 1, t0, label);
        if (mg_now() - last_root > ROOT_REWRITE_SECONDS) {
            mg_store_write_root(s, g, p, t->state, NULL);
            last_root = mg_now();
        }
    }
    mg_exec_free(&ctx);
    (void)err;
    return MG_OK;
}

static mg_status run_coordinator(const mg_grid *g, const mg_plan *p, mg_store *s, tracker *t,
                                 MPI_Comm comm, int size, const mg_run_opts *o, double t0, mg_error *err)
{
    mg_status st = MG_OK;
    int *idle = NULL, n_idle = 0, stopped = 0;
    int64_t *assigned = NULL;
    size_t running = 0;
    double last_root = mg_now();
    idle = mg_calloc((size_t)size, sizeof *idle, "workers", err);
    assigned = mg_calloc((size_t)size, sizeof *assigned, "workers", err);
    if (!idle || !assigned)
        MG_FAIL(MG_ERR_NOMEM, "out of memory for %d workers", size);
    for (int r = 0; r < size; r++)
        assigned[r] = -1;

    while (stopped < size - 1) {
        int flag = 0;
        MPI_Status ms;
        if (MPI_Iprobe(MPI_ANY_SOURCE, TAG_REPORT, comm, &flag, &ms) != MPI_SUCCESS)
            MG_FAIL(MG_ERR_MPI, "MPI_Iprobe failed on the coordinator");
        if (flag) {
            report_msg rep;
            if (MPI_Recv(&rep, (int)sizeof rep, MPI_BYTE, ms.MPI_SOURCE, TAG_REPORT, comm, MPI_STATUS_IGNORE) != MPI_SUCCESS)
                MG_FAIL(MG_ERR_MPI, "MPI_Recv from rank %d failed", ms.MPI_SOURCE);
            int w = ms.MPI_SOURCE;
            if (rep.node >= 0) {
                size_t i = (size_t)rep.node;
                running--;
                assigned[w] = -1;
                rep.msg[sizeof rep.msg - 1] = '\0';
                tracker_finish(t, i, (mg_status)rep.status, rep.msg, rep.seconds);
                char label[200];
                node_label(g, &p->nodes[i], label, sizeof label);
                if (rep.status != MG_OK)
                    fprintf(stderr, "miagrid: node failed on rank %d: %s\n", w, rep.msg);
                if (!o->quiet) {
                    char what[260];
                    snprintf(what, sizeof what, "rank %d %s", w, label);
                    progress(t, running, size - 1, t0, what);
                }
            }
            idle[n_idle++] = w;
        }
        /* Hand out ready nodes; with nothing ready or running, stop the idle. */
        while (n_idle > 0) {
            size_t i;
            int64_t msg;
            int w = idle[n_idle - 1];
            if (ready_pop(t, &i)) {
                msg = (int64_t)i;
                running++;
                assigned[w] = msg;
                if (o->verbose) {
                    char label[200];
                    node_label(g, &p->nodes[i], label, sizeof label);
                    printf("rank %d starts %s\n", w, label);
                }
            } else if (running == 0) {
                msg = -1;
                stopped++;
            } else {
                break;
            }
            n_idle--;
            if (MPI_Send(&msg, 1, MPI_INT64_T, w, TAG_WORK, comm) != MPI_SUCCESS)
                MG_FAIL(MG_ERR_MPI, "MPI_Send to rank %d failed", w);
        }
        if (!flag) {
            if (mg_now() - last_root > ROOT_REWRITE_SECONDS) {
                mg_store_write_root(s, g, p, t->state, NULL);
                last_root = mg_now();
            }
            nap(2000);
        }
    }
cleanup:
    free(idle);
    free(assigned);
    return st;
}

static mg_status run_worker(const mg_grid *g, const mg_plan *p, mg_store *s, MPI_Comm comm, int rank,
                            mg_error *err)
{
    mg_status st = MG_OK;
    mg_exec_ctx ctx;
    mg_exec_init(&ctx, g, p, s, rank);
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
            nap(2000);
        }
        if (node < 0 || (size_t)node >= p->n_nodes)
            break;
        mg_error e;
        mg_error_clear(&e);
        double ts = mg_now();
        mg_status ns = mg_exec_node(&ctx, (size_t)node, &e);
        memset(&rep, 0, sizeof rep);
        rep.node = node;
        rep.status = (int32_t)ns;
        rep.seconds = mg_now() - ts;
        snprintf(rep.msg, sizeof rep.msg, "%s", ns == MG_OK ? "" : e.msg);
    }
cleanup:
    mg_exec_free(&ctx);
    return st;
}

mg_status mg_run(const mg_grid *g, const mg_plan *p, mg_store *s, MPI_Comm comm,
                 const mg_run_opts *opts, mg_run_summary *summary, mg_error *err)
{
    mg_status st = MG_OK;
    int rank = 0, size = 1;
    tracker t;
    mg_run_opts o = {0, 0};
    memset(&t, 0, sizeof t);
    if (opts)
        o = *opts;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    double t0 = mg_now();
    if (summary)
        memset(summary, 0, sizeof *summary);

    if (rank != 0)
        return run_worker(g, p, s, comm, rank, err);

    MG_CHECK(tracker_init(&t, p, s, err));
    if (!o.quiet) {
        if (t.reused == p->n_nodes)
            printf("all %zu nodes are complete in the store: nothing to compute\n", p->n_nodes);
        else
            printf("%zu nodes: %zu complete in the store, %zu to compute on %d %s\n", p->n_nodes, t.reused,
                   p->n_nodes - t.reused, size > 1 ? size - 1 : 1, size > 1 ? "workers" : "rank");
        fflush(stdout);
    }
    if (size == 1)
        MG_CHECK(run_serial(g, p, s, &t, &o, t0, err));
    else
        MG_CHECK(run_coordinator(g, p, s, &t, comm, size, &o, t0, err));

    MG_CHECK(mg_store_write_root(s, g, p, t.state, err));
    if (summary) {
        summary->n_nodes = p->n_nodes;
        summary->reused = t.reused;
        summary->computed = t.computed;
        summary->failed = t.failed;
        summary->skipped = t.skipped;
        summary->seconds = mg_now() - t0;
    }
    if (t.failed) {
        mg_strbuf b;
        mg_strbuf_init(&b);
        mg_strbuf_printf(&b, "%zu node(s) failed and %zu were skipped because of them:", t.failed, t.skipped);
        for (size_t i = 0; i < p->n_nodes; i++)
            if (t.state[i] == MG_NODE_FAILED)
                mg_strbuf_printf(&b, "\n  %s", t.fail_msg[i] ? t.fail_msg[i] : "(no message)");
        st = mg_error_set(err, MG_ERR_STATE, "%s", b.s ? b.s : "nodes failed");
        mg_strbuf_free(&b);
    }
cleanup:
    tracker_free(&t);
    return st;
}
