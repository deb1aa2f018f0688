/* main.c: the miagrid command. Parses the command line, has rank 0 read the
 * grid and share it, and runs the plan. The only place the program ends. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "miagrid/grid.h"
#include "miagrid/sched.h"
#include "miagrid/store.h"
#include "miagrid/util.h"

static const char USAGE[] =
    "usage: miagrid [options] GRID.yaml\n"
    "       mpirun -np N miagrid [options] GRID.yaml   (rank 0 coordinates, N-1 workers)\n"
    "\n"
    "Runs every cell of a grid of membership-inference experiments and writes the\n"
    "results into a store (default runs/<grid name>/). Nodes already complete in the\n"
    "store are reused, so an interrupted run continues where it stopped.\n"
    "\n"
    "options:\n"
    "  --dry-run        print the cells and nodes of the plan and exit\n"
    "  --store DIR      store directory (overrides the grid's 'store')\n"
    "  --threads N      BLAS threads per rank (default 1; keep ranks x threads <= cores)\n"
    "  --quiet          no progress lines\n"
    "  --verbose        a line for every node started\n"
    "  --version        print the version and exit\n"
    "  -h, --help       this text\n";

typedef struct {
    const char *grid;
    const char *store;
    int dry_run, quiet, verbose, threads;
} options;

/* Ends the program: MPI_Abort when MPI is up and ranks may disagree. */
static int finish(int code, int abort_all)
{
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down) {
        if (abort_all)
            MPI_Abort(MPI_COMM_WORLD, code);
        MPI_Finalize();
    }
    return code;
}

static int parse_args(int argc, char **argv, options *o, int rank)
{
    memset(o, 0, sizeof *o);
    o->threads = 1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            if (rank == 0)
                fputs(USAGE, stdout);
            return 1;
        } else if (!strcmp(a, "--version")) {
            if (rank == 0)
                printf("miagrid %s (store format %d)\n", MG_VERSION, MG_STORE_FORMAT);
            return 1;
        } else if (!strcmp(a, "--dry-run")) {
            o->dry_run = 1;
        } else if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
        } else if (!strcmp(a, "--verbose")) {
            o->verbose = 1;
        } else if (!strcmp(a, "--store") || !strcmp(a, "--threads")) {
            if (i + 1 >= argc) {
                if (rank == 0)
                    fprintf(stderr, "miagrid: %s needs a value\n%s", a, USAGE);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--store")) {
                o->store = v;
            } else {
                long n;
                if (mg_parse_long(v, &n) != 0 || n < 1 || n > 1024) {
                    if (rank == 0)
                        fprintf(stderr, "miagrid: --threads: expected a whole number from 1 to 1024, got \"%s\"\n", v);
                    return 2;
                }
                o->threads = (int)n;
            }
        } else if (a[0] == '-' && a[1] != '\0') {
            if (rank == 0)
                fprintf(stderr, "miagrid: unknown option %s\n%s", a, USAGE);
            return 2;
        } else if (!o->grid) {
            o->grid = a;
        } else {
            if (rank == 0)
                fprintf(stderr, "miagrid: one grid file at a time (got %s and %s)\n", o->grid, a);
            return 2;
        }
    }
    if (!o->grid) {
        if (rank == 0)
            fprintf(stderr, "miagrid: no grid file given\n%s", USAGE);
        return 2;
    }
    return 0;
}

/* Rank 0 reads the grid file; every rank parses the same bytes. */
static mg_status load_grid(const char *path, int rank, mg_grid **g, mg_error *err)
{
    char *text = NULL;
    size_t len = 0;
    long long n = -1;
    mg_status st = MG_OK;
    if (rank == 0) {
        st = mg_read_file(path, &text, &len, err);
        n = st == MG_OK ? (long long)len : -1;
    }
    if (MPI_Bcast(&n, 1, MPI_LONG_LONG, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(text);
        return mg_error_set(err, MG_ERR_MPI, "broadcasting the grid failed");
    }
    if (n < 0) {
        if (rank != 0)
            mg_error_set(err, MG_ERR_IO, "%s: rank 0 could not read the grid", path);
        free(text);
        return rank == 0 ? st : MG_ERR_IO;
    }
    if (rank != 0) {
        text = mg_malloc((size_t)n + 1, 1, "grid text", err);
        if (!text)
            return MG_ERR_NOMEM;
        text[n] = '\0';
    }
    if (n > 0 && MPI_Bcast(text, (int)n, MPI_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS) {
        free(text);
        return mg_error_set(err, MG_ERR_MPI, "broadcasting the grid failed");
    }
    st = mg_grid_parse(path, text, (size_t)n, g, err);
    free(text);
    return st;
}

/* All ranks agree on the worst status; returns it. */
static mg_status agree(mg_status st)
{
    int mine = (int)st, worst = 0;
    if (MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD) != MPI_SUCCESS)
        return MG_ERR_MPI;
    return (mg_status)worst;
}

int main(int argc, char **argv)
{
    int rank = 0, size = 1;
    options o;
    mg_error err;
    mg_grid *g = NULL;
    mg_plan *p = NULL;
    mg_store *s = NULL;
    mg_status st = MG_OK;
    int code = 0;
    mg_error_clear(&err);

    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "miagrid: MPI_Init failed\n");
        return 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    int a = parse_args(argc, argv, &o, rank);
    if (a)
        return finish(a == 1 ? 0 : 2, 0);
    openblas_set_num_threads(o.threads);

    st = load_grid(o.grid, rank, &g, &err);
    if (st == MG_OK)
        st = mg_plan_build(g, &p, &err);
    if (st != MG_OK) {
        if (rank == 0)
            fprintf(stderr, "miagrid: %s\n", err.msg);
        code = 2;
        goto done;
    }
    if (o.dry_run) {
        if (rank == 0)
            mg_plan_print(g, p, stdout);
        goto done;
    }

    char store_dir[1100];
    if (o.store)
        snprintf(store_dir, sizeof store_dir, "%s", o.store);
    else if (g->store[0])
        snprintf(store_dir, sizeof store_dir, "%s", g->store);
    else
        snprintf(store_dir, sizeof store_dir, "runs/%s", g->name);

    /* Rank 0 creates and locks the store before the workers open it. */
    if (rank == 0) {
        st = mg_store_open(store_dir, &s, &err);
        if (st == MG_OK)
            st = mg_store_lock(s, &err);
    }
    if (agree(st) != MG_OK) {
        if (rank == 0)
            fprintf(stderr, "miagrid: %s\n", err.msg);
        code = 1;
        goto done;
    }
    if (rank != 0)
        st = mg_store_open(store_dir, &s, &err);
    if (agree(st) != MG_OK) {
        if (st != MG_OK)
            fprintf(stderr, "miagrid: rank %d: %s (the store must be on a file system every rank sees)\n", rank,
                    err.msg);
        code = 1;
        goto done;
    }

    mg_run_opts ro = {.quiet = o.quiet, .verbose = o.verbose};
    mg_run_summary sum;
    st = mg_run(g, p, s, MPI_COMM_WORLD, &ro, &sum, &err);
    if (rank == 0) {
        if (st == MG_OK || st == MG_ERR_STATE) {
            printf("\n");
            mg_store_print_summary(s, g, p, stdout, NULL);
            printf("\n%zu nodes: %zu computed, %zu reused from the store, %zu failed, %zu skipped, in %.1f s\n",
                   sum.n_nodes, sum.computed, sum.reused, sum.failed, sum.skipped, sum.seconds);
            printf("store: %s/results.h5\n", mg_store_dir(s));
        }
        if (st != MG_OK)
            fprintf(stderr, "miagrid: %s\n", err.msg);
    } else if (st != MG_OK) {
        fprintf(stderr, "miagrid: rank %d: %s\n", rank, err.msg);
    }
    if (agree(st) != MG_OK)
        code = 1;

done:
    mg_store_close(&s);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    return finish(code, 0);
}
