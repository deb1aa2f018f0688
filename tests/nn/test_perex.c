/* test_perex.c: backward from given logit gradients (against mg_model_backward
 * and finite differences of a custom loss), per-example gradient norms
 * against each sample's gradient computed alone (MLPs, LeNet-5, a
 * convolutional graph that takes the Gram path, a sequence graph with layer
 * norm and self-attention, with and without masks), the DP-SGD clipped sum
 * against sum_i c_i g_i formed sample by sample, the refusal of batch norm,
 * and the statistics and masking of the DP noise. */
#include "mg_test.h"
#include "miagrid/nn.h"
#include "nn/nn_internal.h"

#include <stdint.h>

static mg_model *make_model(const char *arch, int c, int h, int w, int k, const int *hidden, int n_hidden,
                            mg_act act)
{
    mg_model_cfg cfg = {.arch = arch, .hidden = hidden, .n_hidden = n_hidden, .act = act,
                        .in_c = c, .in_h = h, .in_w = w, .n_classes = k};
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_model_create(&cfg, &m, &err), &err);
    return m;
}

/* input 3x8x8 -> conv 3->8 s2 -> tanh -> conv 8->32 (4x4 maps: the Gram form
 * is cheaper) -> tanh -> grouped conv 32->32 (4 groups) -> linear over the
 * width (rows of 32 channels x 4) -> tanh -> global average -> linear */
static mg_model *make_conv_graph(int k)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "convgraph", 3, 8, 8, k, 0, &err), &err);
    int x = mg_g_conv(m, "c1", 0, 8, 3, 2, 1, 1, 1);
    x = mg_g_act(m, x, MG_ACT_TANH);
    x = mg_g_conv(m, "c2", x, 32, 3, 1, 1, 1, 1);
    x = mg_g_act(m, x, MG_ACT_TANH);
    x = mg_g_conv(m, "c3", x, 32, 3, 1, 1, 4, 0);
    x = mg_g_act(m, mg_g_linear(m, "rowfc", x, 5, 1), MG_ACT_TANH);
    x = mg_g_linear(m, "fc", mg_g_gap(m, x), k, 1);
    CHECK_OK(mg_graph_finish(&m, x, &err), &err);
    return m;
}

/* a (1, 4, 8) sequence -> linear to 16 per position (Gram form) -> layer norm
 * -> self-attention (2 heads) -> gelu -> flatten -> linear */
static mg_model *make_seq_graph(int k)
{
    mg_model *m = NULL;
    mg_error err = {0};
    CHECK_OK(mg_graph_begin(&m, "seqgraph", 1, 4, 8, k, 0, &err), &err);
    int x = mg_g_linear(m, "proj", 0, 16, 1);
    x = mg_g_layernorm(m, "ln", x);
    x = mg_g_mha(m, "attn", x, 2);
    x = mg_g_act(m, x, MG_ACT_GELU);
    x = mg_g_linear(m, "head", mg_g_flatten(m, x), k, 1);
    CHECK_OK(mg_graph_finish(&m, x, &err), &err);
    return m;
}

static void init_model(mg_model *m, uint64_t seed)
{
    mg_rng rng;
    mg_rng_seed(&rng, seed, "perex", "init");
    mg_model_init_params(m, &rng);
    /* Layer norm and attention start at 1/0: perturb them so their gradients are generic. */
    float *p = mg_model_params(m);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (ti->buffer || ti->prunable)
            continue;
        for (size_t i = 0; i < ti->count; i++)
            p[ti->offset + i] += (float)(0.2 * (mg_rng_uniform(&rng) - 0.5));
    }
}

/* Zero about a third of every prunable weight, mask and parameter alike. */
static void prune_randomly(mg_model *m, uint64_t seed)
{
    mg_rng rng;
    mg_rng_seed(&rng, seed, "perex", "prune");
    float *p = mg_model_params(m), *mk = mg_model_masks(m);
    for (size_t t = 0; t < mg_model_n_tensors(m); t++) {
        const mg_tensor_info *ti = mg_model_tensor(m, t);
        if (!ti->prunable)
            continue;
        for (size_t i = 0; i < ti->count; i++)
            if (mg_rng_uniform(&rng) < 0.3) {
                mk[ti->offset + i] = 0.0f;
                p[ti->offset + i] = 0.0f;
            }
    }
}

static void fill_data(float *x, int32_t *y, int n, int d, int k, uint64_t seed)
{
    mg_rng rng;
    mg_rng_seed(&rng, seed, "perex", "data");
    for (size_t i = 0; i < (size_t)n * d; i++)
        x[i] = (float)(2.0 * mg_rng_uniform(&rng) - 1.0);
    for (int i = 0; i < n; i++)
        y[i] = (int32_t)mg_rng_below(&rng, (uint64_t)k);
}

static double masked_norm(const float *g, const float *mk, size_t n)
{
    double s = 0.0;
    for (size_t i = 0; i < n; i++)
        if (mk[i] != 0.0f)
            s += (double)g[i] * g[i];
    return sqrt(s);
}

/* g (n_params) = the gradient of sample i's loss alone; returns its masked norm. */
static double sample_grad(mg_model *m, const float *x, const int32_t *y, int i, float *g)
{
    mg_error err = {0};
    const int d = mg_model_in_dim(m);
    CHECK_OK(mg_model_forward(m, x + (size_t)i * d, 1, 1, NULL, &err), &err);
    mg_model_zero_grad(m);
    CHECK_OK(mg_model_backward(m, y + i, 1, NULL, NULL, &err), &err);
    memcpy(g, mg_model_grads(m), mg_model_n_params(m) * sizeof(float));
    return masked_norm(g, mg_model_masks(m), mg_model_n_params(m));
}

/* ---- backward from dlogits ------------------------------------------------------------------ */

static void check_from_dlogits_equals_backward(mg_model *m, int N)
{
    mg_error err = {0};
    const int d = mg_model_in_dim(m), K = mg_model_n_classes(m);
    const size_t np = mg_model_n_params(m);
    float *x = malloc((size_t)N * d * sizeof(float)), *g1 = malloc(np * sizeof(float));
    float *probs = malloc((size_t)N * K * sizeof(float)), *dl = calloc((size_t)N * K, sizeof(float));
    float *dx1 = malloc((size_t)N * d * sizeof(float));
    int32_t *y = malloc((size_t)N * sizeof(int32_t));
    fill_data(x, y, N, d, K, 11);
    mg_model_set_input_grad(m, 1);
    const float *z = NULL;
    CHECK_OK(mg_model_forward(m, x, N, 1, &z, &err), &err);
    mg_model_zero_grad(m);
    CHECK_OK(mg_model_backward(m, y, N, NULL, NULL, &err), &err);
    memcpy(g1, mg_model_grads(m), np * sizeof(float));
    memcpy(dx1, mg_model_input_grad(m), (size_t)N * d * sizeof(float));
    mg_softmax_xent_forward(probs, z, y, N, K);
    mg_softmax_xent_backward(dl, probs, y, N, K);
    mg_model_zero_grad(m);
    CHECK_OK(mg_model_backward_from_dlogits(m, dl, N, &err), &err);
    CHECK_TENSOR_NEAR(mg_model_grads(m), g1, np, 0.0);
    CHECK_TENSOR_NEAR(mg_model_input_grad(m), dx1, (size_t)N * d, 0.0);
    /* It accumulates like mg_model_backward. */
    CHECK_OK(mg_model_backward_from_dlogits(m, dl, N, &err), &err);
    for (size_t i = 0; i < np; i++)
        g1[i] *= 2.0f;
    CHECK_TENSOR_NEAR(mg_model_grads(m), g1, np, 1e-7);
    /* A batch other than the last forward's is refused. */
    CHECK(mg_model_backward_from_dlogits(m, dl, N + 1, &err) == MG_ERR_ARG);
    mg_model_set_input_grad(m, 0);
    free(x);
    free(g1);
    free(probs);
    free(dl);
    free(dx1);
    free(y);
}

/* L = sum_{n,k} (alpha z + beta z^2 / 2), so dL/dz = alpha + beta z. */
static double custom_loss(const float *z, const double *alpha, const double *beta, size_t n, float *dz)
{
    double l = 0.0;
    for (size_t i = 0; i < n; i++) {
        l += alpha[i] * z[i] + 0.5 * beta[i] * (double)z[i] * z[i];
        if (dz)
            dz[i] = (float)(alpha[i] + beta[i] * z[i]);
    }
    return l;
}

static void check_from_dlogits_fd(mg_model *m, int N)
{
    mg_error err = {0};
    const int d = mg_model_in_dim(m), K = mg_model_n_classes(m);
    const size_t np = mg_model_n_params(m), nz = (size_t)N * K;
    float *x = malloc((size_t)N * d * sizeof(float)), *dz = malloc(nz * sizeof(float));
    double *alpha = malloc(nz * sizeof(double)), *beta = malloc(nz * sizeof(double));
    int32_t *y = malloc((size_t)N * sizeof(int32_t));
    fill_data(x, y, N, d, K, 12);
    mg_rng rng;
    mg_rng_seed(&rng, 3, "perex", "fd");
    for (size_t i = 0; i < nz; i++) {
        alpha[i] = 2.0 * mg_rng_uniform(&rng) - 1.0;
        beta[i] = mg_rng_uniform(&rng);
    }
    const float *z = NULL;
    CHECK_OK(mg_model_forward(m, x, N, 0, &z, &err), &err);
    custom_loss(z, alpha, beta, nz, dz);
    mg_model_zero_grad(m);
    CHECK_OK(mg_model_backward_from_dlogits(m, dz, N, &err), &err);
    float *g = malloc(np * sizeof(float));
    memcpy(g, mg_model_grads(m), np * sizeof(float));
    float *p = mg_model_params(m);
    const float h = 5e-3f;
    double worst = 0.0;
    for (int t = 0; t < 24; t++) {
        size_t i = (size_t)mg_rng_below(&rng, np);
        const float keep = p[i];
        p[i] = keep + h;
        CHECK_OK(mg_model_forward(m, x, N, 0, &z, &err), &err);
        double lp = custom_loss(z, alpha, beta, nz, NULL);
        p[i] = keep - h;
        CHECK_OK(mg_model_forward(m, x, N, 0, &z, &err), &err);
        double lm = custom_loss(z, alpha, beta, nz, NULL);
        p[i] = keep;
        double fd = (lp - lm) / (2.0 * (double)h), e = fabs(fd - g[i]) / (1.0 + fabs(fd));
        if (e > worst)
            worst = e;
    }
    CHECK_NEAR(worst, 0.0, 2e-4);
    free(x);
    free(dz);
    free(alpha);
    free(beta);
    free(y);
    free(g);
}

static void test_from_dlogits(void)
{
    int hidden[2] = {16, 8};
    mg_model *m = make_model("mlp", 1, 1, 12, 5, hidden, 2, MG_ACT_TANH);
    init_model(m, 1);
    check_from_dlogits_equals_backward(m, 6);
    check_from_dlogits_fd(m, 5);
    mg_model_destroy(&m);

    m = make_model("lenet5", 1, 28, 28, 10, NULL, 0, MG_ACT_RELU);
    init_model(m, 2);
    check_from_dlogits_equals_backward(m, 4);
    mg_model_destroy(&m);

    m = make_conv_graph(4);
    init_model(m, 3);
    check_from_dlogits_fd(m, 3);
    mg_model_destroy(&m);

    m = make_seq_graph(3);
    init_model(m, 4);
    check_from_dlogits_fd(m, 3);
    mg_model_destroy(&m);
}

/* ---- per-example norms ---------------------------------------------------------------------- */

/* The norms after a mean-loss backward, times N, against each sample's own gradient. */
static void check_norms(mg_model *m, int N, const char *what)
{
    mg_error err = {0};
    const int d = mg_model_in_dim(m), K = mg_model_n_classes(m);
    const size_t np = mg_model_n_params(m);
    float *x = malloc((size_t)N * d * sizeof(float)), *g = malloc(np * sizeof(float));
    int32_t *y = malloc((size_t)N * sizeof(int32_t));
    double *norms = malloc((size_t)N * sizeof(double));
    fill_data(x, y, N, d, K, 21);
    /* A backward before enabling: enabling must then give the new buffers the batch already held. */
    CHECK_OK(mg_model_forward(m, x, N, 1, NULL, &err), &err);
    CHECK_OK(mg_model_backward(m, y, N, NULL, NULL, &err), &err);
    CHECK_OK(mg_model_enable_per_example(m, &err), &err);
    CHECK_OK(mg_model_enable_per_example(m, &err), &err);
    CHECK_OK(mg_model_forward(m, x, N, 1, NULL, &err), &err);
    mg_model_zero_grad(m);
    CHECK_OK(mg_model_backward(m, y, N, NULL, NULL, &err), &err);
    CHECK_OK(mg_model_per_example_grad_norms(m, norms, &err), &err);
    double worst = 0.0;
    for (int i = 0; i < N; i++) {
        double ref = sample_grad(m, x, y, i, g);
        double e = fabs(norms[i] * N - ref) / (ref + 1e-12);
        if (e > worst)
            worst = e;
    }
    if (worst > 2e-6)
        fprintf(stderr, "%s: worst relative error %.3g\n", what, worst);
    CHECK_NEAR(worst, 0.0, 2e-6);
    free(x);
    free(g);
    free(y);
    free(norms);
}

static void test_norms(void)
{
    int hidden[2] = {32, 16};
    for (int masked = 0; masked < 2; masked++) {
        mg_model *m = make_model("mlp", 1, 1, 20, 6, hidden, 2, MG_ACT_TANH);
        init_model(m, 5);
        if (masked)
            prune_randomly(m, 5);
        check_norms(m, 7, masked ? "mlp tanh, masked" : "mlp tanh");
        mg_model_destroy(&m);

        m = make_model("mlp", 1, 1, 20, 6, hidden, 2, MG_ACT_RELU);
        init_model(m, 6);
        if (masked)
            prune_randomly(m, 6);
        check_norms(m, 6, masked ? "mlp relu, masked" : "mlp relu");
        mg_model_destroy(&m);

        m = make_model("lenet5", 1, 28, 28, 10, NULL, 0, MG_ACT_RELU);
        init_model(m, 7);
        if (masked)
            prune_randomly(m, 7);
        check_norms(m, 5, masked ? "lenet5, masked" : "lenet5");
        mg_model_destroy(&m);

        m = make_conv_graph(4);
        init_model(m, 8);
        if (masked)
            prune_randomly(m, 8);
        check_norms(m, 5, masked ? "conv graph, masked" : "conv graph");
        mg_model_destroy(&m);

        m = make_seq_graph(3);
        init_model(m, 9);
        if (masked)
            prune_randomly(m, 9);
        check_norms(m, 4, masked ? "sequence graph, masked" : "sequence graph");
        mg_model_destroy(&m);
    }
}

/* ---- DP-SGD -------------------------------------------------------------------------------- */

static void check_dp(mg_model *m, int N)
{
    mg_error err = {0};
    const int d = mg_model_in_dim(m), K = mg_model_n_classes(m);
    const size_t np = mg_model_n_params(m);
    float *x = malloc((size_t)N * d * sizeof(float)), *gs = malloc((size_t)N * np * sizeof(float));
    float *g0 = malloc(np * sizeof(float)), *want = malloc(np * sizeof(float)), *first = malloc(np * sizeof(float));
    int32_t *y = malloc((size_t)N * sizeof(int32_t));
    double *ref = malloc((size_t)N * sizeof(double)), *norms = malloc((size_t)N * sizeof(double));
    double *acc = malloc(np * sizeof(double));
    fill_data(x, y, N, d, K, 31);
    double lo = INFINITY, hi = 0.0;
    for (int i = 0; i < N; i++) {
        ref[i] = sample_grad(m, x, y, i, gs + (size_t)i * np);
        lo = fmin(lo, ref[i]);
        hi = fmax(hi, ref[i]);
    }
    double want_loss = 0.0;
    CHECK_OK(mg_model_forward(m, x, N, 1, NULL, &err), &err);
    CHECK_OK(mg_model_backward(m, y, N, &want_loss, NULL, &err), &err);
    /* The gradients on entry, which the clipped sum must be added to. */
    for (size_t j = 0; j < np; j++)
        g0[j] = (float)(0.01 * ((double)(j % 7) - 3.0));
    const double clips[3] = {0.5 * lo, 0.5 * (lo + hi), 2.0 * hi};
    for (int c = 0; c < 3; c++) {
        for (size_t j = 0; j < np; j++)
            acc[j] = g0[j];
        for (int i = 0; i < N; i++) {
            const double f = ref[i] > clips[c] ? clips[c] / ref[i] : 1.0;
            for (size_t j = 0; j < np; j++)
                acc[j] += f * gs[(size_t)i * np + j];
        }
        double scale = 0.0;
        for (size_t j = 0; j < np; j++) {
            want[j] = (float)acc[j];
            scale = fmax(scale, fabs(acc[j]));
        }
        CHECK_OK(mg_model_forward(m, x, N, 1, NULL, &err), &err);
        memcpy(mg_model_grads(m), g0, np * sizeof(float));
        double loss = 0.0;
        CHECK_OK(mg_model_dp_backward(m, y, N, clips[c], &loss, norms, &err), &err);
        CHECK_TENSOR_NEAR(mg_model_grads(m), want, np, 1e-5 * scale);
        CHECK_NEAR(loss, want_loss, 1e-6);
        for (int i = 0; i < N; i++)
            CHECK_NEAR(norms[i], ref[i], 1e-4 * ref[i]);
        if (c == 0)
            memcpy(first, mg_model_grads(m), np * sizeof(float));
    }
    /* Deterministic: the same call from the same state gives the same bits. */
    CHECK_OK(mg_model_forward(m, x, N, 1, NULL, &err), &err);
    memcpy(mg_model_grads(m), g0, np * sizeof(float));
    CHECK_OK(mg_model_dp_backward(m, y, N, clips[0], NULL, NULL, &err), &err);
    CHECK(memcmp(mg_model_grads(m), first, np * sizeof(float)) == 0);
    /* Bad calls leave the gradients as they were. */
    memcpy(g0, mg_model_grads(m), np * sizeof(float));
    CHECK(mg_model_dp_backward(m, y, N, 0.0, NULL, NULL, &err) == MG_ERR_ARG);
    CHECK(mg_model_dp_backward(m, y, N, NAN, NULL, NULL, &err) == MG_ERR_ARG);
    CHECK(mg_model_dp_backward(m, y, N + 1, 1.0, NULL, NULL, &err) == MG_ERR_ARG);
    int32_t keep = y[0];
    y[0] = (int32_t)K;
    CHECK(mg_model_dp_backward(m, y, N, 1.0, NULL, NULL, &err) == MG_ERR_ARG);
    y[0] = keep;
    CHECK(memcmp(mg_model_grads(m), g0, np * sizeof(float)) == 0);
    free(x);
    free(gs);
    free(g0);
    free(want);
    free(first);
    free(y);
    free(ref);
    free(norms);
    free(acc);
}

static void test_dp_backward(void)
{
    int hidden[2] = {24, 12};
    mg_model *m = make_model("mlp", 1, 1, 10, 4, hidden, 2, MG_ACT_TANH);
    init_model(m, 41);
    check_dp(m, 8);
    prune_randomly(m, 41);
    check_dp(m, 8);
    mg_model_destroy(&m);

    m = make_model("lenet5", 1, 28, 28, 10, NULL, 0, MG_ACT_RELU);
    init_model(m, 42);
    prune_randomly(m, 42);
    check_dp(m, 4);
    mg_model_destroy(&m);

    /* Label smoothing applies to each sample's loss. */
    m = make_model("mlp", 1, 1, 10, 4, hidden, 2, MG_ACT_TANH);
    init_model(m, 43);
    mg_model_set_label_smoothing(m, 0.1f);
    check_dp(m, 5);
    mg_model_destroy(&m);
}

/* ---- refusals ------------------------------------------------------------------------------- */

static void test_refusals(void)
{
    mg_error err = {0};
    mg_model *m = NULL;
    CHECK_OK(mg_graph_begin(&m, "bngraph", 1, 6, 6, 3, 0, &err), &err);
    int x = mg_g_bn(m, "bn", mg_g_conv(m, "conv", 0, 4, 3, 1, 1, 1, 0), 1);
    x = mg_g_linear(m, "fc", mg_g_flatten(m, x), 3, 1);
    CHECK_OK(mg_graph_finish(&m, x, &err), &err);
    init_model(m, 51);
    float xs[4 * 36];
    int32_t y[4];
    fill_data(xs, y, 4, 36, 3, 51);
    double norms[4];
    const char *msg = "batch norm is not compatible with per-example gradients";
    CHECK(mg_model_enable_per_example(m, &err) == MG_ERR_ARG);
    CHECK(strstr(err.msg, msg) != NULL);
    CHECK_OK(mg_model_forward(m, xs, 4, 1, NULL, &err), &err);
    CHECK_OK(mg_model_backward(m, y, 4, NULL, NULL, &err), &err);
    mg_error_clear(&err);
    CHECK(mg_model_per_example_grad_norms(m, norms, &err) == MG_ERR_ARG);
    CHECK(strstr(err.msg, msg) != NULL);
    mg_error_clear(&err);
    CHECK(mg_model_dp_backward(m, y, 4, 1.0, NULL, NULL, &err) == MG_ERR_ARG);
    CHECK(strstr(err.msg, msg) != NULL);
    mg_model_destroy(&m);

    /* Norms need the output gradients kept (here the layers of equal width
     * share gradient buffers), and a backward. */
    int hidden[3] = {8, 8, 8};
    m = make_model("mlp", 1, 1, 36, 8, hidden, 3, MG_ACT_TANH);
    init_model(m, 52);
    CHECK_OK(mg_model_forward(m, xs, 4, 1, NULL, &err), &err);
    CHECK(mg_model_per_example_grad_norms(m, norms, &err) == MG_ERR_ARG);
    CHECK_OK(mg_model_backward(m, y, 4, NULL, NULL, &err), &err);
    CHECK(mg_model_per_example_grad_norms(m, norms, &err) == MG_ERR_ARG);
    CHECK(strstr(err.msg, "mg_model_enable_per_example") != NULL);
    CHECK_OK(mg_model_enable_per_example(m, &err), &err);
    CHECK_OK(mg_model_backward(m, y, 4, NULL, NULL, &err), &err);
    CHECK_OK(mg_model_per_example_grad_norms(m, norms, &err), &err);
    mg_model_destroy(&m);
}

/* ---- noise ---------------------------------------------------------------------------------- */

static void test_noise(void)
{
    const size_t n = 100000;
    float *g = malloc(n * sizeof(float)), *g2 = malloc(n * sizeof(float)), *mk = malloc(n * sizeof(float));
    for (size_t i = 0; i < n; i++) {
        g[i] = 1.0f;
        mk[i] = i % 5 == 3 ? 0.0f : 1.0f;
    }
    memcpy(g2, g, n * sizeof(float));
    mg_rng a, b;
    mg_rng_seed(&a, 7, "perex", "noise");
    b = a;
    mg_dp_add_noise(g, mk, n, 3.0, 2.0, &a);
    double s = 0.0, s2 = 0.0;
    size_t kept = 0;
    int masked_zero = 1;
    for (size_t i = 0; i < n; i++) {
        if (mk[i] == 0.0f) {
            masked_zero &= g[i] == 0.0f;
            continue;
        }
        s += g[i];
        s2 += (double)g[i] * g[i];
        kept++;
    }
    const double mean = s / (double)kept, sd = sqrt(s2 / (double)kept - mean * mean);
    /* (1 + 3 z) / 2: mean 0.5, standard deviation 1.5 */
    CHECK(masked_zero);
    CHECK_NEAR(mean, 0.5, 5.0 * 1.5 / sqrt((double)kept));
    CHECK_NEAR(sd, 1.5, 0.02);
    /* The same generator gives the same bits; without masks the kept entries do not change. */
    mg_dp_add_noise(g2, NULL, n, 3.0, 2.0, &b);
    int same = 1;
    for (size_t i = 0; i < n; i++)
        if (mk[i] != 0.0f)
            same &= g[i] == g2[i];
    CHECK(same);
    CHECK(memcmp(&a, &b, sizeof a) == 0);
    /* No noise: a plain mean, nothing drawn. */
    mg_rng c = a;
    float v[3] = {3.0f, -1.0f, 5.0f}, m3[3] = {1.0f, 1.0f, 0.0f};
    mg_dp_add_noise(v, m3, 3, 0.0, 4.0, &c);
    CHECK(v[0] == 0.75f && v[1] == -0.25f && v[2] == 0.0f);
    CHECK(memcmp(&a, &c, sizeof a) == 0);
    free(g);
    free(g2);
    free(mk);
}

int main(void)
{
    test_from_dlogits();
    test_norms();
    test_dp_backward();
    test_refusals();
    test_noise();
    MG_TEST_MAIN_END();
}
