// The C side of scripts/bench: the workloads of benches/compare.rs, written
// the way a C user of ggml would, linked against the very libraries the Rust
// side uses (ggml_sys::build_info::LIB_DIR).
//
//   bench-c <w1|w2|w3|w4|w5|w6|w8|w9|w10> [--quick] [--reps N] [--tag TAG] [--gguf PATH]
//
// Prints one line per measurement, tab-separated:
//   RESULT  <key>  <best seconds>  <work>  <unit: bytes|flop|op>
// Keys match the Rust driver's (the part before its " @variant").
// Threads: as many as the process may run on (sched_getaffinity), as the safe
// crate's std::thread::available_parallelism does, so `taskset -c 0` gives
// both sides one thread.

#define _GNU_SOURCE
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#include "ggml-cpu.h"
#include "gguf.h"

// Workloads of about a millisecond (W1, W5) repeat this many times more.
#define SHORT_REPS 10
// The memory-bound copies of a few milliseconds (W4, W6) repeat this many times more.
#define MEMORY_REPS 4

static int g_quick = 0;
static int g_reps = 3;
static const char *g_tag = "";
static const char *g_gguf = NULL;

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static void result(const char *key, double seconds, double work, const char *unit) {
    printf("RESULT\t%s%s\t%.9e\t%.6e\t%s\n", key, g_tag, seconds, work, unit);
    fflush(stdout);
}

static int n_cores(void) {
    cpu_set_t set;
    if (sched_getaffinity(0, sizeof set, &set) != 0) return 1;
    int n = CPU_COUNT(&set);
    return n < 1 ? 1 : n;
}

// Same generator as the Rust driver: xorshift32, values in [-1, 1).
static void fill_random(float *x, size_t n) {
    uint32_t s = 0x9e3779b9u;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13;
        s ^= s >> 17;
        s ^= s << 5;
        x[i] = (float)(s >> 8) * (1.0f / 8388608.0f) - 1.0f;
    }
}

// Page-aligned allocation, optionally advised for transparent huge pages,
// touched so that no page fault is timed.
static void *alloc_touched(size_t bytes, int huge) {
    void *p = NULL;
    if (posix_memalign(&p, 2u << 20, bytes) != 0) abort();
    if (huge) madvise(p, bytes, MADV_HUGEPAGE);
    memset(p, 0, bytes);
    return p;
}

// ---- splitting work across threads, like the safe crate's par_chunks ----

typedef void (*chunk_fn)(void *arg, size_t first_unit, size_t n_units);

struct chunk_job {
    chunk_fn f;
    void *arg;
    size_t first, n;
};

static void *chunk_thread(void *p) {
    struct chunk_job *j = p;
    j->f(j->arg, j->first, j->n);
    return NULL;
}

// Runs f over `units` split into one contiguous chunk per thread.
static void par_units(size_t units, size_t elements_per_unit, chunk_fn f, void *arg) {
    size_t threads = (size_t)n_cores();
    size_t by_size = units * elements_per_unit / (1u << 16);
    if (by_size < threads) threads = by_size < 1 ? 1 : by_size;
    if (threads > units) threads = units < 1 ? 1 : units;
    if (threads <= 1) {
        f(arg, 0, units);
        return;
    }
    size_t per = (units + threads - 1) / threads;
    pthread_t tid[256];
    struct chunk_job jobs[256];
    size_t n = 0;
    for (size_t first = 0; first < units && n < 256; first += per, n++) {
        jobs[n] = (struct chunk_job){f, arg, first, first + per > units ? units - first : per};
        pthread_create(&tid[n], NULL, chunk_thread, &jobs[n]);
    }
    for (size_t i = 0; i < n; i++) pthread_join(tid[i], NULL);
}

// ---- W1: call overhead ----

static void w1(void) {
    const int n_ops = g_quick ? 100 : 10000;
    double best_build = 1e30, best_compute = 1e30, best_again = 1e30;
    for (int r = 0; r < g_reps * SHORT_REPS; r++) {
        size_t mem = (size_t)(n_ops + 4) * (ggml_tensor_overhead() + 64) +
                     ggml_graph_overhead_custom((size_t)n_ops + 4, false) + (1u << 16);
        struct ggml_init_params params = {mem, NULL, false};
        struct ggml_context *ctx = ggml_init(params);

        double t0 = now();
        struct ggml_tensor *a = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1);
        struct ggml_tensor *b = ggml_new_tensor_1d(ctx, GGML_TYPE_F32, 1);
        struct ggml_tensor *x = a;
        for (int i = 0; i < n_ops; i++) x = ggml_add(ctx, x, b);
        struct ggml_cgraph *g = ggml_new_graph_custom(ctx, (size_t)n_ops + 2, false);
        ggml_build_forward_expand(g, x);
        double t1 = now();

        ggml_set_f32(a, 1.0f);
        ggml_set_f32(b, 0.5f);
        double t2 = now();
        struct ggml_cplan plan = ggml_graph_plan(g, 1, NULL);
        uint8_t *work = plan.work_size ? calloc(plan.work_size, 1) : NULL;
        plan.work_data = work;
        ggml_graph_compute(g, &plan);
        free(work);
        double t3 = now();
        if (ggml_get_f32_1d(x, 0) != 1.0f + 0.5f * n_ops) abort();
        // The same graph again, planned again as the Rust side computes.
        double t4 = now();
        plan = ggml_graph_plan(g, 1, NULL);
        work = plan.work_size ? calloc(plan.work_size, 1) : NULL;
        plan.work_data = work;
        ggml_graph_compute(g, &plan);
        free(work);
        double t5 = now();
        if (ggml_get_f32_1d(x, 0) != 1.0f + 0.5f * n_ops) abort();
        ggml_free(ctx);
        if (t1 - t0 < best_build) best_build = t1 - t0;
        if (t3 - t2 < best_compute) best_compute = t3 - t2;
        if (t5 - t4 < best_again) best_again = t5 - t4;
    }
    result("W1 build", best_build, n_ops, "op");
    result("W1 compute", best_compute, n_ops, "op");
    result("W1 compute again", best_again, n_ops, "op");
}

// ---- W2 / W3: quantize and dequantize ----

struct quant_arg {
    enum ggml_type type;
    const float *src;
    uint8_t *dst;
    int64_t row_len;
    size_t row_size;
};

static void quantize_chunk(void *p, size_t first, size_t n) {
    struct quant_arg *a = p;
    ggml_quantize_chunk(a->type, a->src + first * a->row_len, a->dst + first * a->row_size, 0,
                        (int64_t)n, a->row_len, NULL);
}

struct dequant_arg {
    ggml_to_float_t to_float;
    const uint8_t *src;
    float *dst;
    size_t block_bytes, block_len;
};

static void dequantize_chunk(void *p, size_t first, size_t n) {
    struct dequant_arg *a = p;
    a->to_float(a->src + first * a->block_bytes, a->dst + first * a->block_len,
                (int64_t)(n * a->block_len));
}

static const enum ggml_type quant_types[] = {GGML_TYPE_Q4_0, GGML_TYPE_Q8_0, GGML_TYPE_Q4_K,
                                             GGML_TYPE_Q6_K};

static void w2_w3(int dequant) {
    const int64_t n = g_quick ? 256 : 4096;
    const size_t count = (size_t)(n * n);
    float *src = alloc_touched(count * sizeof(float), 0);
    float *back = alloc_touched(count * sizeof(float), 0);
    fill_random(src, count);
    for (size_t t = 0; t < sizeof quant_types / sizeof *quant_types; t++) {
        enum ggml_type type = quant_types[t];
        size_t row_size = ggml_row_size(type, n);
        uint8_t *q = alloc_touched(row_size * (size_t)n, 0);
        struct quant_arg qa = {type, src, q, n, row_size};
        double best = 1e30;
        for (int r = 0; r < g_reps; r++) {
            double t0 = now();
            par_units((size_t)n, (size_t)n, quantize_chunk, &qa);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        char key[64];
        if (!dequant) {
            snprintf(key, sizeof key, "W2 quantize %s", ggml_type_name(type));
            result(key, best, (double)count * sizeof(float), "bytes");
        } else {
            const struct ggml_type_traits *tr = ggml_get_type_traits(type);
            size_t bs = (size_t)ggml_blck_size(type);
            struct dequant_arg da = {tr->to_float, q, back, ggml_type_size(type), bs};
            best = 1e30;
            for (int r = 0; r < g_reps; r++) {
                double t0 = now();
                par_units(count / bs, bs, dequantize_chunk, &da);
                double dt = now() - t0;
                if (dt < best) best = dt;
            }
            snprintf(key, sizeof key, "W3 dequantize %s", ggml_type_name(type));
            result(key, best, (double)count * sizeof(float), "bytes");
            // The same into a new buffer each time, freed after: what an API
            // that returns a new array (Rust's `to_array`) must do.
            best = 1e30;
            for (int r = 0; r < g_reps; r++) {
                double t0 = now();
                float *fresh = malloc(count * sizeof(float));
                if (!fresh) abort();
                da.dst = fresh;
                par_units(count / bs, bs, dequantize_chunk, &da);
                if (fresh[count / 2] != back[count / 2]) abort();
                free(fresh);
                double dt = now() - t0;
                if (dt < best) best = dt;
            }
            snprintf(key, sizeof key, "W3 dequantize %s new buffer", ggml_type_name(type));
            result(key, best, (double)count * sizeof(float), "bytes");
        }
        free(q);
    }
    free(src);
    free(back);
}

// ---- W4: memcpy bandwidth, the limit of copying an array into a tensor ----

static void w4(void) {
    const size_t bytes = g_quick ? (1u << 20) : (64u << 20);
    for (int huge = 0; huge <= 1; huge++) {
        char *a = alloc_touched(bytes, huge);
        char *b = alloc_touched(bytes, huge);
        memset(a, 1, bytes);
        double best_in = 1e30, best_out = 1e30;
        for (int r = 0; r < g_reps * MEMORY_REPS; r++) {
            double t0 = now();
            memcpy(b, a, bytes);
            double t1 = now();
            memcpy(a, b, bytes);
            double t2 = now();
            if (t1 - t0 < best_in) best_in = t1 - t0;
            if (t2 - t1 < best_out) best_out = t2 - t1;
        }
        result(huge ? "W4 copy in (THP)" : "W4 copy in", best_in, (double)bytes, "bytes");
        result(huge ? "W4 copy out (THP)" : "W4 copy out", best_out, (double)bytes, "bytes");
        free(a);
        free(b);
    }
}

// ---- W5: mul_mat through graph compute on all cores ----

static void w5(void) {
    const int64_t n = g_quick ? 256 : 4096;
    const enum ggml_type types[] = {GGML_TYPE_Q4_0, GGML_TYPE_F16};
    const int64_t batches[] = {1, 32};
    float *w = malloc((size_t)(n * n) * sizeof(float));
    fill_random(w, (size_t)(n * n));
    for (int t = 0; t < 2; t++) {
        for (int bi = 0; bi < 2; bi++) {
            int64_t batch = batches[bi];
            size_t mem = 8 * ggml_tensor_overhead() + ggml_row_size(types[t], n) * (size_t)n +
                         (size_t)(n * batch * 2) * sizeof(float) + ggml_graph_overhead() +
                         (1u << 20);
            struct ggml_init_params params = {mem, NULL, false};
            struct ggml_context *ctx = ggml_init(params);
            struct ggml_tensor *a = ggml_new_tensor_2d(ctx, types[t], n, n);
            struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n, batch);
            ggml_quantize_chunk(types[t], w, a->data, 0, n, n, NULL);
            fill_random(x->data, (size_t)(n * batch));
            struct ggml_tensor *y = ggml_mul_mat(ctx, a, x);
            struct ggml_cgraph *g = ggml_new_graph(ctx);
            ggml_build_forward_expand(g, y);
            double best = 1e30;
            // The first run warms caches; runs of batch 1 are short, so more of them.
            for (int r = 0; r < g_reps * SHORT_REPS + 1; r++) {
                double t0 = now();
                struct ggml_cplan plan = ggml_graph_plan(g, n_cores(), NULL);
                uint8_t *work = plan.work_size ? calloc(plan.work_size, 1) : NULL;
                plan.work_data = work;
                ggml_graph_compute(g, &plan);
                free(work);
                double dt = now() - t0;
                if (r > 0 && dt < best) best = dt;
            }
            char key[64];
            snprintf(key, sizeof key, "W5 mul_mat %s batch %d", ggml_type_name(types[t]),
                     (int)batch);
            result(key, best, 2.0 * (double)n * (double)n * (double)batch, "flop");
            ggml_free(ctx);
        }
    }
    free(w);
}

// ---- W8: the backend path: weights in a backend buffer, gallocr, set/compute/get ----

static void w8(void) {
    const int64_t n = g_quick ? 256 : 2048;
    const int layers = g_quick ? 2 : 4;
    const int64_t batch = g_quick ? 4 : 8;
    // GGML_BENCH_DEVICE names another device (e.g. CUDA0), as for the Rust side.
    const char *device = getenv("GGML_BENCH_DEVICE");
    ggml_backend_t backend;
    if (device && *device && strcmp(device, "CPU") != 0) {
        ggml_backend_load_all();
        backend = ggml_backend_init_by_name(device, NULL);
        if (!backend) {
            fprintf(stderr, "bench-c: no device %s\n", device);
            exit(1);
        }
    } else {
        backend = ggml_backend_cpu_init();
        ggml_backend_cpu_set_n_threads(backend, n_cores());
    }
    struct ggml_init_params params = {64 * ggml_tensor_overhead() + ggml_graph_overhead(), NULL, true};
    struct ggml_context *ctx = ggml_init(params);
    struct ggml_tensor *weights[8];
    for (int l = 0; l < layers; l++) weights[l] = ggml_new_tensor_2d(ctx, GGML_TYPE_Q4_0, n, n);
    struct ggml_tensor *x = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, n, batch);
    ggml_backend_buffer_t buffer = ggml_backend_alloc_ctx_tensors(ctx, backend);
    struct ggml_tensor *h = x;
    for (int l = 0; l < layers; l++) h = ggml_mul_mat(ctx, weights[l], h);
    struct ggml_cgraph *g = ggml_new_graph(ctx);
    ggml_build_forward_expand(g, h);
    ggml_gallocr_t galloc = ggml_gallocr_new(ggml_backend_get_default_buffer_type(backend));
    ggml_gallocr_alloc_graph(galloc, g);

    float *w = malloc((size_t)(n * n) * sizeof(float));
    fill_random(w, (size_t)(n * n));
    size_t qsize = ggml_row_size(GGML_TYPE_Q4_0, n) * (size_t)n;
    void *q = malloc(qsize);
    ggml_quantize_chunk(GGML_TYPE_Q4_0, w, q, 0, n, n, NULL);
    for (int l = 0; l < layers; l++) ggml_backend_tensor_set(weights[l], q, 0, qsize);
    float *input = malloc((size_t)(n * batch) * sizeof(float));
    float *output = malloc((size_t)(n * batch) * sizeof(float));
    fill_random(input, (size_t)(n * batch));

    double best = 1e30;
    for (int r = 0; r < g_reps * SHORT_REPS + 1; r++) {
        double t0 = now();
        ggml_backend_tensor_set(x, input, 0, ggml_nbytes(x));
        ggml_backend_graph_compute(backend, g);
        ggml_backend_tensor_get(h, output, 0, ggml_nbytes(h));
        double dt = now() - t0;
        if (r > 0 && dt < best) best = dt;
    }
    result("W8 backend step Q4_0", best, 2.0 * (double)n * (double)n * (double)batch * layers, "flop");
    free(w);
    free(q);
    free(input);
    free(output);
    ggml_gallocr_free(galloc);
    ggml_backend_buffer_free(buffer);
    ggml_free(ctx);
    ggml_backend_free(backend);
}

// ---- W6: f32 -> f16 ----

struct f16_arg {
    const float *src;
    ggml_fp16_t *dst;
    void (*f)(const float *, ggml_fp16_t *, int64_t);
};

static void f16_chunk(void *p, size_t first, size_t n) {
    struct f16_arg *a = p;
    a->f(a->src + first, a->dst + first, (int64_t)n);
}

static void w6(void) {
    const size_t bytes = g_quick ? (1u << 20) : (64u << 20);
    const size_t count = bytes / sizeof(float);
    float *src = alloc_touched(bytes, 0);
    ggml_fp16_t *dst = alloc_touched(count * sizeof(ggml_fp16_t), 0);
    fill_random(src, count);
    struct {
        const char *key;
        void (*f)(const float *, ggml_fp16_t *, int64_t);
    } routines[] = {
        {"W6 f32->f16", ggml_cpu_fp32_to_fp16},
        {"W6 f32->f16 (ggml_fp32_to_fp16_row)", ggml_fp32_to_fp16_row},
    };
    for (int k = 0; k < 2; k++) {
        struct f16_arg arg = {src, dst, routines[k].f};
        double best = 1e30;
        for (int r = 0; r < g_reps * MEMORY_REPS; r++) {
            double t0 = now();
            par_units(count, 1, f16_chunk, &arg);
            double dt = now() - t0;
            if (dt < best) best = dt;
        }
        result(routines[k].key, best, (double)bytes, "bytes");
    }
    free(src);
    free(dst);
}

// W9: open a model-like GGUF file (written by the Rust driver) and index it:
// gguf_init_from_file with no_alloc and no context (ggml's only mode safe on
// untrusted files), the architecture, the vocabulary size, every tensor's
// name, type and shape.
static void w9(void) {
    if (!g_gguf) {
        fprintf(stderr, "bench-c: w9 needs --gguf PATH\n");
        exit(1);
    }
    double best = 1e30;
    size_t sink = 0;
    for (int r = 0; r < g_reps * SHORT_REPS; r++) {
        double t0 = now();
        struct gguf_init_params params = {true, NULL};
        struct gguf_context *g = gguf_init_from_file(g_gguf, params);
        if (!g) {
            fprintf(stderr, "bench-c: cannot read %s\n", g_gguf);
            exit(1);
        }
        int64_t arch = gguf_find_key(g, "general.architecture");
        size_t sum = arch >= 0 ? strlen(gguf_get_val_str(g, arch)) : 0;
        int64_t tok = gguf_find_key(g, "tokenizer.ggml.tokens");
        if (tok >= 0) sum += gguf_get_arr_n(g, tok);
        for (int64_t i = 0; i < gguf_get_n_tensors(g); i++) {
            sum += strlen(gguf_get_tensor_name(g, i)) + (size_t)gguf_get_tensor_type(g, i) +
                   (size_t)gguf_get_tensor_ne(g, i)[0];
        }
        gguf_free(g);
        double dt = now() - t0;
        sink += sum;
        if (dt < best) best = dt;
    }
    if (sink == 42) printf("#\n");
    result("W9 GGUF open + index", best, 1.0, "op");
}

// ---- W10: one llama-style transformer block (benches/compare.rs's w10) ----

static struct ggml_tensor *w10_q4(struct ggml_context *ctx, int64_t in, int64_t out) {
    struct ggml_tensor *t = ggml_new_tensor_2d(ctx, GGML_TYPE_Q4_0, in, out);
    float *w = malloc((size_t)(in * out) * sizeof(float));
    fill_random(w, (size_t)(in * out));
    ggml_quantize_chunk(GGML_TYPE_Q4_0, w, t->data, 0, out, in, NULL);
    free(w);
    return t;
}

static struct ggml_tensor *w10_f32(struct ggml_context *ctx, int64_t ne0, int64_t ne1) {
    struct ggml_tensor *t = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, ne0, ne1);
    fill_random(t->data, (size_t)(ne0 * ne1));
    return t;
}

static void w10(void) {
    const int64_t d = g_quick ? 128 : 896, heads = g_quick ? 4 : 14, kv_heads = 2;
    const int64_t ff = g_quick ? 256 : 4864, hd = d / heads, kvd = hd * kv_heads;
    const int64_t batches[2] = {1, 32};
    ggml_backend_t backend = ggml_backend_cpu_init();
    ggml_backend_cpu_set_n_threads(backend, n_cores());
    for (int b = 0; b < 2; b++) {
        const int64_t t = batches[b];
        struct ggml_init_params params = {64u << 20, NULL, false};
        struct ggml_context *ctx = ggml_init(params);
        struct ggml_tensor *wq = w10_q4(ctx, d, d), *wk = w10_q4(ctx, d, kvd), *wv = w10_q4(ctx, d, kvd);
        struct ggml_tensor *wo = w10_q4(ctx, d, d);
        struct ggml_tensor *wg = w10_q4(ctx, d, ff), *wu = w10_q4(ctx, d, ff), *wd = w10_q4(ctx, ff, d);
        struct ggml_tensor *norm1 = w10_f32(ctx, d, 1), *norm2 = w10_f32(ctx, d, 1);
        struct ggml_tensor *x = w10_f32(ctx, d, t);
        struct ggml_tensor *pos = ggml_new_tensor_1d(ctx, GGML_TYPE_I32, t);
        for (int64_t i = 0; i < t; i++) ((int32_t *)pos->data)[i] = (int32_t)i;
        struct ggml_tensor *mask = ggml_new_tensor_2d(ctx, GGML_TYPE_F32, t, t);
        for (int64_t i = 0; i < t; i++)
            for (int64_t j = 0; j < t; j++) ((float *)mask->data)[i * t + j] = j > i ? -INFINITY : 0.0f;

        double t0 = now();
        const int mode = GGML_ROPE_TYPE_NEOX;
        struct ggml_tensor *h = ggml_mul(ctx, ggml_rms_norm(ctx, x, 1e-6f), norm1);
        struct ggml_tensor *q = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, wq, h), hd, heads, t);
        q = ggml_rope_ext(ctx, q, pos, NULL, (int)hd, mode, 0, 1e6f, 1.0f, 0.0f, 1.0f, 32.0f, 1.0f);
        struct ggml_tensor *k = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, wk, h), hd, kv_heads, t);
        k = ggml_rope_ext(ctx, k, pos, NULL, (int)hd, mode, 0, 1e6f, 1.0f, 0.0f, 1.0f, 32.0f, 1.0f);
        struct ggml_tensor *v = ggml_reshape_3d(ctx, ggml_mul_mat(ctx, wv, h), hd, kv_heads, t);
        q = ggml_permute(ctx, q, 0, 2, 1, 3);
        k = ggml_permute(ctx, k, 0, 2, 1, 3);
        struct ggml_tensor *scores = ggml_soft_max_ext(ctx, ggml_mul_mat(ctx, k, q), mask, 1.0f / sqrtf((float)hd), 0.0f);
        struct ggml_tensor *vt = ggml_cont(ctx, ggml_permute(ctx, v, 1, 2, 0, 3));
        struct ggml_tensor *attn = ggml_cont(ctx, ggml_permute(ctx, ggml_mul_mat(ctx, vt, scores), 0, 2, 1, 3));
        attn = ggml_reshape_2d(ctx, attn, d, t);
        struct ggml_tensor *x1 = ggml_add(ctx, ggml_mul_mat(ctx, wo, attn), x);
        struct ggml_tensor *h2 = ggml_mul(ctx, ggml_rms_norm(ctx, x1, 1e-6f), norm2);
        struct ggml_tensor *mlp = ggml_mul_mat(ctx, wd, ggml_swiglu_split(ctx, ggml_mul_mat(ctx, wg, h2), ggml_mul_mat(ctx, wu, h2)));
        struct ggml_tensor *out = ggml_add(ctx, mlp, x1);
        struct ggml_cgraph *g = ggml_new_graph(ctx);
        ggml_build_forward_expand(g, out);
        double build = now() - t0;

        ggml_backend_graph_compute(backend, g);
        double best = 1e30;
        for (int r = 0; r < g_reps * SHORT_REPS; r++) {
            double s0 = now();
            ggml_backend_graph_compute(backend, g);
            double dt = now() - s0;
            if (dt < best) best = dt;
        }
        char key[64];
        snprintf(key, sizeof key, "W10 block build b%d", (int)t);
        result(key, build, (double)ggml_graph_n_nodes(g), "op");
        snprintf(key, sizeof key, "W10 block compute b%d", (int)t);
        double flop = 2.0 * (double)t * (double)(2 * d * d + 2 * d * kvd + 3 * d * ff);
        result(key, best, flop, "flop");
        ggml_free(ctx);
    }
    ggml_backend_free(backend);
}

int main(int argc, char **argv) {
    const char *workload = argc > 1 ? argv[1] : "";
    for (int i = 2; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) {
            g_quick = 1;
            g_reps = 1;
        } else if (!strcmp(argv[i], "--reps") && i + 1 < argc) {
            g_reps = atoi(argv[++i]);
        } else if (!strcmp(argv[i], "--tag") && i + 1 < argc) {
            g_tag = argv[++i];
        } else if (!strcmp(argv[i], "--gguf") && i + 1 < argc) {
            g_gguf = argv[++i];
        }
    }
    if (g_reps < 1) g_reps = 1;
    ggml_cpu_init();
    if (!strcmp(workload, "w1")) w1();
    else if (!strcmp(workload, "w2")) w2_w3(0);
    else if (!strcmp(workload, "w3")) w2_w3(1);
    else if (!strcmp(workload, "w4")) w4();
    else if (!strcmp(workload, "w5")) w5();
    else if (!strcmp(workload, "w6")) w6();
    else if (!strcmp(workload, "w8")) w8();
    else if (!strcmp(workload, "w9")) w9();
    else if (!strcmp(workload, "w10")) w10();
    else {
        fprintf(stderr, "usage: %s <w1|w2|w3|w4|w5|w6|w8|w9|w10> [--quick] [--reps N] [--tag TAG] [--gguf PATH]\n",
                argv[0]);
        return 2;
    }
    return 0;
}
