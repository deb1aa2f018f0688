/* main.c: the miagrid command. Parses the command line, has rank 0 read the
 * grid and share it, and runs the plan. The only place the program ends. */
#define _GNU_SOURCE
#include <cblas.h>
#include <hdf5.h>
#include <signal.h>
#include <unistd.h>
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
    "       miagrid store verify [--remove-bad] STORE\n"
    "       miagrid store rebuild STORE [GRID.yaml]\n"
    "\n"
    "Runs every cell of a grid of membership-inference experiments and writes the\n"
    "results into a store (default runs/<grid name>/). Nodes already complete in the\n"
    "store are reused, so an interrupted run continues where it stopped.\n"
    "`store verify` reads every node file back and checks it against its key;\n"
    "`store rebuild` rewrites results.h5 from the node files.\n"
    "Exit status: 0 all complete, 1 nodes failed or the store is unusable,\n"
    "2 bad command line or grid, 3 stopped early (run again to resume).\n"
    "\n"
    "options:\n"
    "  --dry-run        print the cells and nodes of the plan and exit\n"
    "  --store DIR      store directory (overrides the grid's 'store')\n"
    "  --threads N      BLAS threads per rank (default 1; keep ranks x threads <= cores)\n"
    "  --retry-failed   run again the nodes that failed in an earlier run\n"
    "  --walltime T     after T (seconds, or H:MM:SS) hand out no node, let running\n"
    "                   nodes save their training state, and exit resumable;\n"
    "                   SIGTERM, SIGINT and SIGUSR1 do the same at once\n"
    "  --checkpoint-every S  save a running node's training state every S seconds\n"
    "                   (default 600; 0: only when stopping)\n"
    "  --quiet          no progress lines\n"
    "  --verbose        a line for every node started\n"
    "  --version        print the version and exit\n"
    "  -h, --help       this text\n";

typedef struct {
    const char *grid;
    const char *store;
    int dry_run, quiet, verbose, threads, retry_failed;
    double walltime, checkpoint_every;
} options;

static void on_stop_signal(int sig)
{
    (void)sig;
    mg_sched_request_stop();
}

/* "3600", "90:00" (minutes:seconds) or "1:30:00". Returns -1 when malformed. */
static double parse_walltime(const char *s)
{
    double parts[3];
    int n = 0;
    char buf[64];
    snprintf(buf, sizeof buf, "%s", s);
    char *save = NULL;
    for (char *tok = strtok_r(buf, ":", &save); tok; tok = strtok_r(NULL, ":", &save)) {
        if (n == 3 || mg_parse_double(tok, &parts[n]) != 0 || parts[n] < 0)
            return -1;
        n++;
    }
    if (n == 0)
        return -1;
    double t = 0;
    for (int i = 0; i < n; i++)
        t = t * 60 + parts[i];
    return t > 0 ? t : -1;
}

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
    o->checkpoint_every = 600;
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
        } else if (!strcmp(a, "--retry-failed")) {
            o->retry_failed = 1;
        } else if (!strcmp(a, "--store") || !strcmp(a, "--threads") || !strcmp(a, "--walltime") ||
                   !strcmp(a, "--checkpoint-every")) {
            if (i + 1 >= argc) {
                if (rank == 0)
                    fprintf(stderr, "miagrid: %s needs a value\n%s", a, USAGE);
                return 2;
            }
            const char *v = argv[++i];
            if (!strcmp(a, "--store")) {
                o->store = v;
            } else if (!strcmp(a, "--checkpoint-every")) {
                if (mg_parse_double(v, &o->checkpoint_every) != 0 || o->checkpoint_every < 0) {
                    if (rank == 0)
                        fprintf(stderr, "miagrid: --checkpoint-every: expected seconds >= 0, got \"%s\"\n", v);
                    return 2;
                }
            } else if (!strcmp(a, "--walltime")) {
                o->walltime = parse_walltime(v);
                if (o->walltime <= 0) {
                    if (rank == 0)
                        fprintf(stderr, "miagrid: --walltime: expected seconds or H:MM:SS, got \"%s\"\n", v);
                    return 2;
                }
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

/* Rank 0 reads the roots of the datasets named by their content and hands
 * the digests on, so that the data is read once and every rank builds the
 * same node keys. */
static mg_status bind_data(mg_grid *g, int rank, mg_error *err)
{
    mg_status st = rank == 0 ? mg_grid_bind_data(g, err) : MG_OK;
    int code = (int)st;
    if (MPI_Bcast(&code, 1, MPI_INT, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return mg_error_set(err, MG_ERR_MPI, "broadcasting the data digests failed");
    if (code != MG_OK)
        return rank == 0 ? st : mg_error_set(err, (mg_status)code, "%s: rank 0 could not read the data", g->path);
    for (size_t i = 0; i < g->n_datasets; i++) {
        char hex[65];
        if (!mg_data_by_content(g->datasets[i].name))
            continue;
        memcpy(hex, g->datasets[i].digest, sizeof hex);
        if (MPI_Bcast(hex, sizeof hex, MPI_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
            return mg_error_set(err, MG_ERR_MPI, "broadcasting the data digests failed");
        if (rank != 0 && (st = mg_grid_set_data_digest(g, i, hex, err)) != MG_OK)
            return st;
    }
    return MG_OK;
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
    return st == MG_OK ? bind_data(*g, rank, err) : st;
}

/* `miagrid store verify|rebuild ...`, on rank 0 only. Returns the exit code. */
static int store_command(int argc, char **argv)
{
    mg_error err;
    mg_error_clear(&err);
    const char *sub = argc > 2 ? argv[2] : "";
    if (!strcmp(sub, "verify")) {
        int remove_bad = 0;
        const char *dir = NULL;
        for (int i = 3; i < argc; i++) {
            if (!strcmp(argv[i], "--remove-bad"))
                remove_bad = 1;
            else if (!dir && argv[i][0] != '-')
                dir = argv[i];
            else {
                fprintf(stderr, "miagrid store verify: unexpected argument %s\n%s", argv[i], USAGE);
                return 2;
            }
        }
        if (!dir) {
            fprintf(stderr, "miagrid store verify: no store given\n%s", USAGE);
            return 2;
        }
        size_t problems = 0;
        if (mg_store_verify(dir, remove_bad, stdout, &problems, &err) != MG_OK) {
            fprintf(stderr, "miagrid: %s\n", err.msg);
            return 1;
        }
        return problems ? 1 : 0;
    }
    if (!strcmp(sub, "rebuild")) {
        if (argc < 4 || argc > 5) {
            fprintf(stderr, "miagrid store rebuild: expected STORE [GRID.yaml]\n%s", USAGE);
            return 2;
        }
        const char *dir = argv[3];
        mg_grid *g = NULL;
        mg_plan *p = NULL;
        mg_store *s = NULL;
        mg_status st = MG_OK;
        int code = 1;
        if (argc == 5) {
            st = mg_grid_load(argv[4], &g, &err);
        } else {
            /* The root file keeps the grid as given; without it the user names the grid. */
            char root[4096];
            snprintf(root, sizeof root, "%s/results.h5", dir);
            mg_h5_quiet();
            hid_t f = H5Fopen(root, H5F_ACC_RDONLY, H5P_DEFAULT);
            char *yaml = NULL;
            hsize_t d[4];
            if (f < 0) {
                st = mg_error_set(&err, MG_ERR_IO, "%s: unreadable; name the grid: miagrid store rebuild %s GRID.yaml",
                                  root, dir);
            } else {
                hid_t t = H5Tcopy(H5T_C_S1);
                hid_t ds = H5Dopen2(f, "grid/yaml", H5P_DEFAULT);
                hid_t ft = ds >= 0 ? H5Dget_type(ds) : H5I_INVALID_HID;
                size_t len = ft >= 0 ? H5Tget_size(ft) : 0;
                yaml = len ? calloc(len + 1, 1) : NULL;
                H5Tset_size(t, len ? len : 1);
                if (!yaml || H5Dread(ds, t, H5S_ALL, H5S_ALL, H5P_DEFAULT, yaml) < 0)
                    st = mg_error_set(&err, MG_ERR_HDF5,
                                      "%s: no readable /grid/yaml; name the grid: miagrid store rebuild %s GRID.yaml",
                                      root, dir);
                else
                    st = mg_grid_parse(root, yaml, strlen(yaml), &g, &err);
                (void)d;
                if (ft >= 0)
                    H5Tclose(ft);
                if (ds >= 0)
                    H5Dclose(ds);
                H5Tclose(t);
                H5Fclose(f);
            }
            free(yaml);
        }
        if (st == MG_OK)
            st = mg_grid_bind_data(g, &err);
        if (st == MG_OK)
            st = mg_plan_build(g, &p, &err);
        if (st == MG_OK)
            st = mg_store_open(dir, &s, &err);
        if (st == MG_OK)
            st = mg_store_lock(s, &err);
        if (st == MG_OK)
            st = mg_store_write_root(s, g, p, NULL, &err);
        if (st == MG_OK) {
            printf("rebuilt %s/results.h5 from the node files (%zu cells, %zu nodes in the grid)\n", dir, p->n_cells,
                   p->n_nodes);
            code = 0;
        } else {
            fprintf(stderr, "miagrid: %s\n", err.msg);
        }
        mg_store_close(&s);
        mg_plan_destroy(&p);
        mg_grid_destroy(&g);
        return code;
    }
    fprintf(stderr, "miagrid store: expected verify or rebuild, got \"%s\"\n%s", sub, USAGE);
    return 2;
}

/* Every rank must see the store rank 0 created: a token written by rank 0
 * is read back by all. */
static mg_status probe_store(const char *dir, int rank, mg_error *err)
{
    char path[1200], token[64] = "", seen[64] = "";
    snprintf(path, sizeof path, "%s/.probe", dir);
    if (rank == 0) {
        char host[64] = "";
        gethostname(host, sizeof host - 1);
        snprintf(token, sizeof token, "%s-%ld-%.0f", host, (long)getpid(), mg_now() * 1e6);
        FILE *f = fopen(path, "w");
        if (!f || fputs(token, f) < 0 || fclose(f) != 0)
            return mg_error_set(err, MG_ERR_IO, "%s: cannot write in the store directory", path);
    }
    if (MPI_Bcast(token, sizeof token, MPI_CHAR, 0, MPI_COMM_WORLD) != MPI_SUCCESS)
        return mg_error_set(err, MG_ERR_MPI, "broadcasting the store probe failed");
    FILE *f = fopen(path, "r");
    if (f) {
        if (!fgets(seen, sizeof seen, f))
            seen[0] = '\0';
        fclose(f);
    }
    if (strcmp(seen, token) != 0) {
        char host[64] = "?";
        gethostname(host, sizeof host - 1);
        return mg_error_set(err, MG_ERR_IO,
                            "rank %d on %s does not see the store directory %s that rank 0 created: the store "
                            "must be on a file system every rank sees (NFS, Lustre, GPFS), given by the same path",
                            rank, host, dir);
    }
    return MG_OK;
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

    if (argc > 1 && !strcmp(argv[1], "store")) {
        int sc = rank == 0 ? store_command(argc, argv) : 0;
        MPI_Bcast(&sc, 1, MPI_INT, 0, MPI_COMM_WORLD);
        return finish(sc, 0);
    }

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
    st = probe_store(store_dir, rank, &err);
    if (st == MG_OK && rank != 0)
        st = mg_store_open(store_dir, &s, &err);
    if (agree(st) != MG_OK) {
        if (st != MG_OK)
            fprintf(stderr, "miagrid: %s\n", err.msg);
        code = 1;
        goto done;
    }

    /* BLAS threads: warn when a host's workers would use more threads than it
     * has cores (rank 0 sleeps while it coordinates, so it does not count). */
    {
        MPI_Comm local;
        int local_size = 1, local_rank = 0;
        if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &local) == MPI_SUCCESS) {
            MPI_Comm_size(local, &local_size);
            MPI_Comm_rank(local, &local_rank);
            int has_coord = rank == 0, any_coord = 0;
            MPI_Allreduce(&has_coord, &any_coord, 1, MPI_INT, MPI_MAX, local);
            long cores = sysconf(_SC_NPROCESSORS_ONLN);
            int workers = size == 1 ? 1 : local_size - any_coord;
            if (local_rank == 0 && workers > 0 && cores > 0 && (long)workers * o.threads > cores) {
                char host[64] = "?";
                gethostname(host, sizeof host - 1);
                fprintf(stderr,
                        "miagrid: warning: %s runs %d worker rank(s) x %d BLAS thread(s) on %ld core(s); "
                        "expect them to slow each other down (use fewer ranks per host or --threads 1)\n",
                        host, workers, o.threads, cores);
            }
            MPI_Comm_free(&local);
        }
    }

    /* A stop request ends the hand-out of nodes; running nodes come back and
     * the store stays consistent. */
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    sigaction(SIGTERM, &sa, NULL);
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGUSR1, &sa, NULL);

    mg_run_opts ro = {.quiet = o.quiet, .verbose = o.verbose, .retry_failed = o.retry_failed,
                      .walltime = o.walltime, .checkpoint_seconds = o.checkpoint_every};
    mg_run_summary sum;
    st = mg_run(g, p, s, MPI_COMM_WORLD, &ro, &sum, &err);
    if (rank == 0) {
        if (st == MG_OK || st == MG_ERR_STATE || st == MG_ERR_INTERRUPTED) {
            printf("\n");
            if (!o.quiet || st == MG_OK)
                mg_store_print_summary(s, g, p, stdout, NULL);
            printf("\n%zu nodes: %zu computed, %zu reused from the store, %zu failed, %zu skipped, %zu left, "
                   "in %.1f s\n",
                   sum.n_nodes, sum.computed, sum.reused, sum.failed, sum.skipped, sum.pending, sum.seconds);
            printf("store: %s/results.h5\n", mg_store_dir(s));
        }
        if (st != MG_OK)
            fprintf(stderr, "miagrid: %s\n", err.msg);
    } else if (st != MG_OK) {
        fprintf(stderr, "miagrid: rank %d: %s\n", rank, err.msg);
    }
    st = agree(st);
    if (st == MG_ERR_INTERRUPTED)
        code = 3;
    else if (st != MG_OK)
        code = 1;

done:
    mg_store_close(&s);
    mg_plan_destroy(&p);
    mg_grid_destroy(&g);
    return finish(code, 0);
}
