/* mg_bench.c: training throughput of the engine on the reference shapes of
 * the PyTorch reference script (bench/run.sh --torch), so that bench/run.sh can set the two
 * side by side: LeNet-5 (batch 64, 1x28x28, 10 classes), the Purchase MLP
 * 600-1024-512-256-128-100 Tanh (batch 128) and ResNet20 (batch 128,
 * 3x32x32, 10 classes), trained with SGD (lr 0.01, momentum 0.9, weight
 * decay 5e-4) on one thread from random inputs: 5 warm-up steps, then the
 * timed steps. A step is what mg_train does per minibatch: zero the
 * gradients, forward, loss and backward, optimiser step (masks honoured).
 *
 * FLOP convention: the multiply-adds (MACs) of the convolutions and linear
 * layers only; a training step costs the forward's MACs three times (forward,
 * weight gradient, input gradient) except for the layer that reads the
 * network input, whose input gradient nobody computes (twice); FLOPs = 2 x
 * MACs. Batch norm, activations, pooling, the loss and the optimiser are not
 * counted.
 *
 *   mg_bench                      every model, each in its own child process, and the SGEMM rate
 *   mg_bench --model NAME [--steps N]   one model (lenet5, mlp, resnet20) in this process
 *   mg_bench --sgemm              the single-thread SGEMM rate only
 *
 * Each result is one line of key=value pairs (bench/run.sh parses them).
 * peak_mib is the process's ru_maxrss at the end of its run, so one model
 * per process gives that model's peak.
 */
#define _POSIX_C_SOURCE 200809L
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "miagrid/nn.h"
#include "miagrid/util.h"

/* OpenBLAS's cblas.h (the build finds OpenBLAS) also declares its
 * openblas_* controls; it pulls in <complex.h>, whose macro I is unwanted. */
#include <cblas.h>
#undef I

enum { WARMUP = 5 };

typedef struct {
    const char *name;
    const char *arch;
    int c, h, w, classes, batch, steps;
} bench_model;

static const bench_model MODELS[] = {
    {"lenet5", "lenet5", 1, 28, 28, 10, 64, 200},
    {"mlp", "mlp", 1, 1, 600, 100, 128, 100},
    {"resnet20", "resnet20", 3, 32, 32, 10, 128, 20},
};
enum { N_MODELS = sizeof MODELS / sizeof MODELS[0] };

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* CPU time of this process: with other work on the machine it shows how
 * much of the wall time went to waiting for a core. */
static double cpu_now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

static double peak_mib(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss / 1024.0;   /* KiB on Linux */
}

/* Output positions per sample of the layer owning weight tensor `name`
 * (OH*OW for a convolution, 1 for a linear layer), or 0 if unknown. The
 * model's tensor table gives each weight's size; this gives the spatial
 * size, which only the architecture knows. */
static long positions(const char *model, const char *name)
{
    if (strcmp(model, "mlp") == 0)
        return strncmp(name, "fc", 2) == 0 ? 1 : 0;
    if (strcmp(model, "lenet5") == 0) {
        if (strcmp(name, "conv1.weight") == 0)
            return 28 * 28;
        if (strcmp(name, "conv2.weight") == 0)
            return 10 * 10;
        return strncmp(name, "fc", 2) == 0 ? 1 : 0;
    }
    if (strcmp(model, "resnet20") == 0) {
        int block;
        if (strcmp(name, "c.weight") == 0)
            return 32 * 32;
        if (strcmp(name, "fc.weight") == 0)
            return 1;
        if (sscanf(name, "L.%d.", &block) == 1 && block >= 0 && block < 9) {
            long side = 32 >> (block / 3);
            return side * side;
        }
    }
    return 0;
}

/* Training MACs per sample under the convention of the file comment; -1 if
 * a weight of the model is not covered by positions(). */
static double train_macs(const mg_model *m, const char *model)
{
    double macs = 0.0;
    int first = 1;
    for (size_t i = 0; i < mg_model_n_tensors(m); i++) {
        const mg_tensor_info *t = mg_model_tensor(m, i);
        if (t->buffer || t->ndim < 2)
            continue;
        long p = positions(model, t->name);
        if (p <= 0)
            return -1.0;
        macs += (first ? 2.0 : 3.0) * (double)t->count * (double)p;
        first = 0;
    }
    return macs;
}

static int run_model(const bench_model *bm, int steps)
{
    mg_status st = MG_OK;
    mg_error e = {0}, *err = &e;
    mg_model *m = NULL;
    mg_optim opt = {0};
    float *x = NULL;
    int32_t *y = NULL;
    int hidden[8], n_hidden = 0;
    mg_act act = MG_ACT_RELU;
    openblas_set_num_threads(1);
    if (strcmp(bm->arch, "mlp") == 0)
        MG_CHECK(mg_mlp_preset("purchase", hidden, &n_hidden, &act, err));
    mg_model_cfg cfg = {.arch = bm->arch, .hidden = hidden, .n_hidden = n_hidden, .act = act,
                        .in_c = bm->c, .in_h = bm->h, .in_w = bm->w, .n_classes = bm->classes};
    MG_CHECK(mg_model_create(&cfg, &m, err));
    mg_rng rng;
    mg_rng_seed(&rng, 0, bm->name, "bench");
    mg_model_init_params(m, &rng);
    const size_t in_dim = (size_t)mg_model_in_dim(m);
    x = mg_malloc((size_t)bm->batch * in_dim, sizeof *x, "bench inputs", err);
    y = mg_malloc((size_t)bm->batch, sizeof *y, "bench labels", err);
    if (!x || !y)
        MG_FAIL(MG_ERR_NOMEM, "bench: out of memory for the inputs");
    for (size_t i = 0; i < (size_t)bm->batch * in_dim; i++)
        x[i] = (float)mg_rng_normal(&rng);
    for (int i = 0; i < bm->batch; i++)
        y[i] = (int32_t)mg_rng_below(&rng, (uint64_t)bm->classes);
    mg_optim_cfg ocfg = {.kind = MG_OPT_SGD, .lr = 0.01, .momentum = 0.9, .weight_decay = 5e-4};
    MG_CHECK(mg_optim_init(&opt, &ocfg, mg_model_n_params(m), err));
    double t0 = 0.0, c0 = 0.0, loss = 0.0;
    for (int s = 0; s < WARMUP + steps; s++) {
        if (s == WARMUP) {
            t0 = now();
            c0 = cpu_now();
        }
        mg_model_zero_grad(m);
        MG_CHECK(mg_model_forward(m, x, bm->batch, 1, NULL, err));
        MG_CHECK(mg_model_backward(m, y, bm->batch, &loss, NULL, err));
        mg_optim_step(&opt, mg_model_params(m), mg_model_grads(m), mg_model_masks(m));
    }
    const double dt = now() - t0, dc = cpu_now() - c0;
    const double macs = train_macs(m, bm->name);
    if (macs < 0)
        MG_FAIL(MG_ERR_INTERNAL, "bench %s: a weight tensor has no known layer size", bm->name);
    const double sps = (double)steps * bm->batch / dt, mflop = 2.0 * macs / 1e6;
    printf("model=%s params=%zu batch=%d steps=%d ms_per_step=%.3f cpu_ms_per_step=%.3f samples_per_s=%.1f "
           "train_mflop_per_sample=%.3f gflops=%.2f peak_mib=%.1f final_loss=%.4f\n",
           bm->name, mg_model_n_params(m), bm->batch, steps, 1000.0 * dt / steps, 1000.0 * dc / steps, sps, mflop, sps * mflop / 1e3,
           peak_mib(), loss);
    fflush(stdout);
cleanup:
    if (st != MG_OK)
        fprintf(stderr, "mg_bench: %s\n", e.msg);
    mg_optim_free(&opt);
    mg_model_destroy(&m);
    free(x);
    free(y);
    return st == MG_OK ? 0 : 1;
}

/* Best GFLOP/s of `reps` calls of C (M,N) = A (M,K) B (K,N). */
static double sgemm_rate(int M, int N, int K, int reps)
{
    float *a = malloc((size_t)M * K * sizeof *a), *b = malloc((size_t)K * N * sizeof *b);
    float *c = malloc((size_t)M * N * sizeof *c);
    double best = 0.0;
    if (a && b && c) {
        for (size_t i = 0; i < (size_t)M * K; i++)
            a[i] = (float)(i % 7) * 0.125f;
        for (size_t i = 0; i < (size_t)K * N; i++)
            b[i] = (float)(i % 5) * 0.125f;
        for (int r = 0; r < reps; r++) {
            double t = now();
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, M, N, K, 1.0f, a, K, b, N, 0.0f, c, N);
            t = now() - t;
            double rate = 2.0 * M * N * K / t / 1e9;
            if (rate > best)
                best = rate;
        }
    }
    free(a);
    free(b);
    free(c);
    return best;
}

/* The machine's single-thread SGEMM rate: the best over square sizes. Also
 * the rate at two GEMM shapes of ResNet20's convolutions (output channels x
 * 256 columns x C*9), which the engine's GEMMs actually run, for context. */
static int run_sgemm(void)
{
    openblas_set_num_threads(1);
    static const int sizes[] = {512, 1024};
    double best = 0.0;
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        int n = sizes[i];
        double r = sgemm_rate(n, n, n, n <= 512 ? 20 : 6);
        if (r > best)
            best = r;
    }
    double r16 = sgemm_rate(16, 256, 144, 2000), r64 = sgemm_rate(64, 256, 576, 500);
    printf("sgemm gflops=%.2f square_sizes=512,1024 conv16x256x144=%.2f conv64x256x576=%.2f openblas=\"%s, %s "
           "kernels\"\n",
           best, r16, r64, openblas_get_config(), openblas_get_corename());
    fflush(stdout);
    return 0;
}

static void usage(void)
{
    fprintf(stderr, "usage: mg_bench [--model lenet5|mlp|resnet20 [--steps N]] [--sgemm]\n");
}

/* Run fn(arg) in a child process so that its peak memory is its own. */
static int in_child(int (*fn)(const bench_model *, int), const bench_model *bm, int steps)
{
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0) {
        perror("mg_bench: fork");
        return 1;
    }
    if (pid == 0)
        _exit(fn ? fn(bm, steps) : run_sgemm());
    int status = 0;
    if (waitpid(pid, &status, 0) < 0)
        return 1;
    return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}

int main(int argc, char **argv)
{
    const char *model = NULL;
    long steps = 0;
    int sgemm_only = 0;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "--model") == 0 && i + 1 < argc) {
            model = argv[++i];
        } else if (strcmp(argv[i], "--steps") == 0 && i + 1 < argc) {
            if (mg_parse_long(argv[++i], &steps) != 0 || steps < 1 || steps > 1000000) {
                fprintf(stderr, "mg_bench: --steps wants a positive integer (got '%s')\n", argv[i]);
                return 2;
            }
        } else if (strcmp(argv[i], "--sgemm") == 0) {
            sgemm_only = 1;
        } else {
            usage();
            return 2;
        }
    }
    if (sgemm_only)
        return run_sgemm();
    if (model) {
        for (int k = 0; k < N_MODELS; k++)
            if (strcmp(model, MODELS[k].name) == 0)
                return run_model(&MODELS[k], steps > 0 ? (int)steps : MODELS[k].steps);
        fprintf(stderr, "mg_bench: unknown model '%s' (lenet5, mlp, resnet20)\n", model);
        return 2;
    }
    int rc = 0;
    for (int k = 0; k < N_MODELS; k++)
        rc |= in_child(run_model, &MODELS[k], steps > 0 ? (int)steps : MODELS[k].steps);
    rc |= in_child(NULL, NULL, 0);
    return rc;
}
