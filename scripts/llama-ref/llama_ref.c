// The reference for the llama layer's tests and benchmarks: llama.cpp's C
// API used directly, as a C user would, linked to the same libraries as the
// Rust side. Built by tests/llama (and scripts/bench) with the compiler
// found as $CC or cc.
//
//   llama_ref tokenize MODEL TEXT            token ids, one per line (add and parse special)
//   llama_ref greedy MODEL PROMPT N THREADS  greedily generated token ids, one per line
//   llama_ref logits MODEL PROMPT THREADS OUT   logits of every prompt token, raw f32 rows, to OUT
//   llama_ref bench MODEL PP TG THREADS REPS    RESULT lines: prompt of PP tokens, TG generated
//
// Contexts: n_ctx 1024 (bench: PP + TG rounded up), n_batch = n_ubatch = 512,
// one sequence, flash attention off, f16 KV cache: what the Rust side uses.

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "llama.h"

static void quiet(enum ggml_log_level level, const char *text, void *user) {
    (void)level;
    (void)text;
    (void)user;
}

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static struct llama_model *load(const char *path) {
    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.load_mode = LLAMA_LOAD_MODE_NONE;
    struct llama_model *model = llama_model_load_from_file(path, mp);
    if (!model) {
        fprintf(stderr, "llama_ref: cannot load %s\n", path);
        exit(1);
    }
    return model;
}

static struct llama_context *context(struct llama_model *model, int n_ctx, int threads) {
    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = (uint32_t)n_ctx;
    cp.n_batch = 512;
    cp.n_ubatch = 512;
    cp.n_seq_max = 1;
    cp.n_threads = threads;
    cp.n_threads_batch = threads;
    cp.flash_attn_type = LLAMA_FLASH_ATTN_TYPE_DISABLED;
    cp.no_perf = false;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llama_ref: cannot create a context\n");
        exit(1);
    }
    return ctx;
}

static llama_token *tokenize(const struct llama_vocab *vocab, const char *text, int *n) {
    int len = (int)strlen(text);
    *n = -llama_tokenize(vocab, text, len, NULL, 0, true, true);
    llama_token *t = malloc(sizeof *t * (size_t)(*n + 1));
    llama_tokenize(vocab, text, len, t, *n, true, true);
    return t;
}

// A batch of `n` tokens of sequence 0 from position `pos`; logits for all
// tokens when `all`, else the last.
static struct llama_batch batch_of(const llama_token *t, int n, int pos, int all) {
    struct llama_batch b = llama_batch_init(n, 0, 1);
    b.n_tokens = n;
    for (int i = 0; i < n; i++) {
        b.token[i] = t[i];
        b.pos[i] = pos + i;
        b.n_seq_id[i] = 1;
        b.seq_id[i][0] = 0;
        b.logits[i] = (int8_t)(all || i == n - 1);
    }
    return b;
}

// A chain with llama.cpp's greedy sampler (the first largest logit).
static struct llama_sampler *greedy(void) {
    struct llama_sampler *s = llama_sampler_chain_init(llama_sampler_chain_default_params());
    llama_sampler_chain_add(s, llama_sampler_init_greedy());
    return s;
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: llama_ref tokenize|greedy|logits|bench MODEL ...\n");
        return 2;
    }
    llama_log_set(quiet, NULL);
    llama_backend_init();
    const char *mode = argv[1];
    struct llama_model *model = load(argv[2]);
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    int n_vocab = llama_vocab_n_tokens(vocab);

    if (!strcmp(mode, "tokenize") && argc == 4) {
        int n;
        llama_token *t = tokenize(vocab, argv[3], &n);
        for (int i = 0; i < n; i++) printf("%d\n", t[i]);
        free(t);
    } else if (!strcmp(mode, "greedy") && argc == 6) {
        int n_predict = atoi(argv[4]);
        struct llama_context *ctx = context(model, 1024, atoi(argv[5]));
        int n;
        llama_token *t = tokenize(vocab, argv[3], &n);
        struct llama_sampler *smpl = greedy();
        struct llama_batch b = batch_of(t, n, 0, 0);
        int pos = n;
        for (int i = 0; i < n_predict; i++) {
            if (llama_decode(ctx, b) != 0) return 1;
            llama_token id = llama_sampler_sample(smpl, ctx, b.n_tokens - 1);
            printf("%d\n", id);
            llama_batch_free(b);
            if (llama_vocab_is_eog(vocab, id)) break;
            b = batch_of(&id, 1, pos++, 1);
        }
        free(t);
        llama_sampler_free(smpl);
        llama_free(ctx);
    } else if (!strcmp(mode, "logits") && argc == 6) {
        struct llama_context *ctx = context(model, 1024, atoi(argv[4]));
        int n;
        llama_token *t = tokenize(vocab, argv[3], &n);
        struct llama_batch b = batch_of(t, n, 0, 1);
        if (llama_decode(ctx, b) != 0) return 1;
        FILE *out = fopen(argv[5], "wb");
        for (int i = 0; i < n; i++) fwrite(llama_get_logits_ith(ctx, i), sizeof(float), (size_t)n_vocab, out);
        fclose(out);
        printf("%d\n", n);
        llama_batch_free(b);
        free(t);
        llama_free(ctx);
    } else if (!strcmp(mode, "bench") && argc == 7) {
        int pp = atoi(argv[3]), tg = atoi(argv[4]), threads = atoi(argv[5]), reps = atoi(argv[6]);
        struct llama_context *ctx = context(model, ((pp + tg + 255) / 256) * 256, threads);
        llama_token *prompt = malloc(sizeof *prompt * (size_t)pp);
        for (int i = 0; i < pp; i++) prompt[i] = (llama_token)((i * 7919 + 13) % n_vocab);
        struct llama_sampler *smpl = greedy();
        double best_pp = 1e30, best_tg = 1e30;
        for (int r = 0; r < reps; r++) {
            llama_memory_clear(llama_get_memory(ctx), true);
            struct llama_batch b = batch_of(prompt, pp, 0, 0);
            double t0 = now();
            if (llama_decode(ctx, b) != 0) return 1;
            llama_synchronize(ctx);
            double t_pp = now() - t0;
            llama_batch_free(b);
            llama_token id = llama_sampler_sample(smpl, ctx, pp - 1);
            t0 = now();
            for (int i = 0; i < tg; i++) {
                b = batch_of(&id, 1, pp + i, 1);
                if (llama_decode(ctx, b) != 0) return 1;
                id = llama_sampler_sample(smpl, ctx, 0);
                llama_batch_free(b);
            }
            double t_tg = now() - t0;
            if (t_pp < best_pp) best_pp = t_pp;
            if (t_tg < best_tg) best_tg = t_tg;
        }
        printf("RESULT\tL1 prompt %d tokens\t%.9e\t%.6e\ttoken\n", pp, best_pp, (double)pp);
        printf("RESULT\tL2 generate %d tokens\t%.9e\t%.6e\ttoken\n", tg, best_tg, (double)tg);
        free(prompt);
        llama_sampler_free(smpl);
        llama_free(ctx);
    } else {
        fprintf(stderr, "llama_ref: bad arguments\n");
        return 2;
    }
    llama_model_free(model);
    return 0;
}
