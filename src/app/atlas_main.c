/* atlas_main.c: the miagrid-atlas command. Parses the command line, runs the
 * atlas over all ranks and prints its summary. The only place it ends. */
#define _POSIX_C_SOURCE 200809L
#include <cblas.h>
#include <mpi.h>
#include <stdio.h>
#include <string.h>

#include "miagrid/atlas.h"
#include "miagrid/store.h"
#include "miagrid/util.h"

static const char USAGE[] =
    "usage: miagrid-atlas [options] STORE\n"
    "       mpirun -np N miagrid-atlas [options] STORE\n"
    "\n"
    "Builds the vulnerability atlas of a miagrid store: the per-sample scores of every\n"
    "complete attack node as one samples x nodes matrix, per-sample exposure statistics,\n"
    "the leading singular vectors of the standardised matrix, and the singular value\n"
    "spectra of the weight matrices of every model node. All ranks share the work\n"
    "(parallel HDF5, ScaLAPACK); results do not depend on the number of ranks.\n"
    "\n"
    "options:\n"
    "  --out FILE        output file (default STORE/atlas.h5)\n"
    "  --block NB        ScaLAPACK block size (default 64)\n"
    "  --components K    leading singular triplets to keep (default 10)\n"
    "  --threads N       BLAS threads per rank (default 1; keep ranks x threads <= cores)\n"
    "  --strict          an unreadable node file is an error (default: warn and skip it)\n"
    "  --quiet           print nothing but errors and warnings\n"
    "  --version         print the version and exit\n"
    "  -h, --help        this text\n"
    "\n"
    "exit status: 0 done; 1 the store or a file could not be used; 2 bad command line\n";

typedef struct {
    mg_atlas_opts atlas;
    int threads, quiet;
} options;

static int finish(int code)
{
    int up = 0, down = 0;
    MPI_Initialized(&up);
    MPI_Finalized(&down);
    if (up && !down)
        MPI_Finalize();
    return code;
}

/* A positive whole number no larger than max, or -1. */
static long parse_count(const char *v, long max)
{
    long n;
    if (mg_parse_long(v, &n) != 0 || n < 1 || n > max)
        return -1;
    return n;
}

/* 0: run; 1: done (help, version); 2: bad command line. */
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
                printf("miagrid-atlas %s (store format %d)\n", MG_VERSION, MG_STORE_FORMAT);
            return 1;
        } else if (!strcmp(a, "--strict")) {
            o->atlas.strict = 1;
        } else if (!strcmp(a, "--quiet")) {
            o->quiet = 1;
        } else if (!strcmp(a, "--out") || !strcmp(a, "--block") || !strcmp(a, "--components") ||
                   !strcmp(a, "--threads")) {
            if (i + 1 >= argc) {
                if (rank == 0)
                    fprintf(stderr, "miagrid-atlas: %s needs a value\n%s", a, USAGE);
                return 2;
            }
            const char *v = argv[++i];
            long n = 0;
            if (!strcmp(a, "--out")) {
                o->atlas.out = v;
                continue;
            }
            long max = !strcmp(a, "--block") ? 1048576 : !strcmp(a, "--components") ? 1000000 : 1024;
            n = parse_count(v, max);
            if (n < 0) {
                if (rank == 0)
                    fprintf(stderr, "miagrid-atlas: %s: expected a whole number from 1 to %ld, got \"%s\"\n", a, max,
                            v);
                return 2;
            }
            if (!strcmp(a, "--block"))
                o->atlas.block = (int)n;
            else if (!strcmp(a, "--components"))
                o->atlas.components = (int)n;
            else
                o->threads = (int)n;
        } else if (a[0] == '-' && a[1] != '\0') {
            if (rank == 0)
                fprintf(stderr, "miagrid-atlas: unknown option %s\n%s", a, USAGE);
            return 2;
        } else if (!o->atlas.store) {
            o->atlas.store = a;
        } else {
            if (rank == 0)
                fprintf(stderr, "miagrid-atlas: one store at a time (got %s and %s)\n", o->atlas.store, a);
            return 2;
        }
    }
    if (!o->atlas.store) {
        if (rank == 0)
            fprintf(stderr, "miagrid-atlas: no store given\n%s", USAGE);
        return 2;
    }
    return 0;
}

static void print_summary(const mg_atlas_summary *s, int size)
{
    printf("atlas: %zu samples x %zu attack nodes; %zu weight matrices of %zu model nodes", s->n_samples,
           s->n_attack_nodes, s->n_tensors, s->n_model_nodes);
    if (s->n_skipped)
        printf("; %zu node files skipped (see the warnings)", s->n_skipped);
    printf("\n%d rank%s as a %d x %d process grid, block %d\n", size, size == 1 ? "" : "s", s->nprow, s->npcol,
           s->block);
    printf("leading singular values of the standardised score matrix (share of variance):\n");
    for (size_t i = 0; i < s->n_sv; i++)
        printf("  %2zu  %12.6f  (%5.1f %%)\n", i + 1, s->sv[i], 100.0 * s->explained[i]);
    printf("most exposed samples (fraction of member nodes above the median non-member score):\n ");
    for (size_t i = 0; i < s->n_top; i++)
        printf(" %u (%.2f)", (unsigned)s->top_sample[i], s->top_exposed[i]);
    printf("\nseconds: gather %.2f, distribute %.2f, statistics %.2f, svd %.2f, spectra %.2f, total %.2f\n",
           s->sec_gather, s->sec_distribute, s->sec_stats, s->sec_svd, s->sec_spectra, s->sec_total);
    printf("atlas: %s\n", s->out);
}

int main(int argc, char **argv)
{
    int rank = 0, size = 1;
    options o;
    mg_error err;
    mg_atlas_summary sum;
    mg_error_clear(&err);

    if (MPI_Init(&argc, &argv) != MPI_SUCCESS) {
        fprintf(stderr, "miagrid-atlas: MPI_Init failed\n");
        return 1;
    }
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);

    int a = parse_args(argc, argv, &o, rank);
    if (a)
        return finish(a == 1 ? 0 : 2);
    openblas_set_num_threads(o.threads);

    mg_status st = mg_atlas_run(&o.atlas, MPI_COMM_WORLD, &sum, &err);
    if (rank == 0) {
        if (st != MG_OK)
            fprintf(stderr, "miagrid-atlas: %s\n", err.msg);
        else if (!o.quiet)
            print_summary(&sum, size);
    }
    return finish(st == MG_OK ? 0 : st == MG_ERR_ARG ? 2 : 1);
}
