// The exception barrier declared in barrier.h: each function calls its
// llama.h namesake inside `barrier`, which catches whatever it throws.

#include "barrier.h"

#include <exception>
#include <new>
#include <string>

namespace {

thread_local std::string last_message;

void remember(const char * what) noexcept {
    try {
        last_message = what ? what : "";
    } catch (...) {
        // No memory even for the message: an empty one.
        last_message.clear();
    }
}

template <typename F>
int barrier(F && call) noexcept {
    try {
        call();
        return 0;
    } catch (const std::bad_alloc &) {
        remember("std::bad_alloc (out of memory)");
    } catch (const std::exception & e) {
        remember(e.what());
    } catch (...) {
        remember("an exception that is not a std::exception");
    }
    return 1;
}

}  // namespace

extern "C" {

const char * ggml_sys_exception_message(void) {
    return last_message.c_str();
}

int ggml_sys_try_llama_model_load_from_file(const char * path, struct llama_model_params params, struct llama_model ** ret) {
    return barrier([&] { *ret = llama_model_load_from_file(path, params); });
}
int ggml_sys_try_llama_init_from_model(struct llama_model * model, struct llama_context_params params, struct llama_context ** ret) {
    return barrier([&] { *ret = llama_init_from_model(model, params); });
}
int ggml_sys_try_llama_decode(struct llama_context * ctx, struct llama_batch batch, int32_t * ret) {
    return barrier([&] { *ret = llama_decode(ctx, batch); });
}
int ggml_sys_try_llama_encode(struct llama_context * ctx, struct llama_batch batch, int32_t * ret) {
    return barrier([&] { *ret = llama_encode(ctx, batch); });
}
int ggml_sys_try_llama_synchronize(struct llama_context * ctx) {
    return barrier([&] { llama_synchronize(ctx); });
}
int ggml_sys_try_llama_get_logits(struct llama_context * ctx, float ** ret) {
    return barrier([&] { *ret = llama_get_logits(ctx); });
}
int ggml_sys_try_llama_get_embeddings(struct llama_context * ctx, float ** ret) {
    return barrier([&] { *ret = llama_get_embeddings(ctx); });
}
int ggml_sys_try_llama_get_embeddings_seq(struct llama_context * ctx, llama_seq_id seq, float ** ret) {
    return barrier([&] { *ret = llama_get_embeddings_seq(ctx, seq); });
}
int ggml_sys_try_llama_set_n_threads(struct llama_context * ctx, int32_t n_threads, int32_t n_threads_batch) {
    return barrier([&] { llama_set_n_threads(ctx, n_threads, n_threads_batch); });
}

int ggml_sys_try_llama_memory_clear(llama_memory_t mem, bool data) {
    return barrier([&] { llama_memory_clear(mem, data); });
}
int ggml_sys_try_llama_memory_seq_rm(llama_memory_t mem, llama_seq_id seq, llama_pos p0, llama_pos p1, bool * ret) {
    return barrier([&] { *ret = llama_memory_seq_rm(mem, seq, p0, p1); });
}
int ggml_sys_try_llama_memory_seq_cp(llama_memory_t mem, llama_seq_id src, llama_seq_id dst, llama_pos p0, llama_pos p1) {
    return barrier([&] { llama_memory_seq_cp(mem, src, dst, p0, p1); });
}
int ggml_sys_try_llama_memory_seq_keep(llama_memory_t mem, llama_seq_id seq) {
    return barrier([&] { llama_memory_seq_keep(mem, seq); });
}
int ggml_sys_try_llama_memory_seq_add(llama_memory_t mem, llama_seq_id seq, llama_pos p0, llama_pos p1, llama_pos delta) {
    return barrier([&] { llama_memory_seq_add(mem, seq, p0, p1, delta); });
}
int ggml_sys_try_llama_memory_seq_div(llama_memory_t mem, llama_seq_id seq, llama_pos p0, llama_pos p1, int d) {
    return barrier([&] { llama_memory_seq_div(mem, seq, p0, p1, d); });
}

int ggml_sys_try_llama_state_get_size(struct llama_context * ctx, size_t * ret) {
    return barrier([&] { *ret = llama_state_get_size(ctx); });
}
int ggml_sys_try_llama_state_get_data(struct llama_context * ctx, uint8_t * dst, size_t size, size_t * ret) {
    return barrier([&] { *ret = llama_state_get_data(ctx, dst, size); });
}
int ggml_sys_try_llama_state_set_data(struct llama_context * ctx, const uint8_t * src, size_t size, size_t * ret) {
    return barrier([&] { *ret = llama_state_set_data(ctx, src, size); });
}
int ggml_sys_try_llama_state_save_file(struct llama_context * ctx, const char * path, const llama_token * tokens, size_t n_tokens, bool * ret) {
    return barrier([&] { *ret = llama_state_save_file(ctx, path, tokens, n_tokens); });
}
int ggml_sys_try_llama_state_load_file(struct llama_context * ctx, const char * path, llama_token * tokens, size_t capacity, size_t * n_out, bool * ret) {
    return barrier([&] { *ret = llama_state_load_file(ctx, path, tokens, capacity, n_out); });
}

int ggml_sys_try_llama_adapter_lora_init(struct llama_model * model, const char * path, struct llama_adapter_lora ** ret) {
    return barrier([&] { *ret = llama_adapter_lora_init(model, path); });
}
int ggml_sys_try_llama_set_adapters_lora(struct llama_context * ctx, struct llama_adapter_lora ** adapters, size_t n, float * scales, int32_t * ret) {
    return barrier([&] { *ret = llama_set_adapters_lora(ctx, adapters, n, scales); });
}
int ggml_sys_try_llama_set_adapter_cvec(struct llama_context * ctx, const float * data, size_t len, int32_t n_embd, int32_t il_start, int32_t il_end, int32_t * ret) {
    return barrier([&] { *ret = llama_set_adapter_cvec(ctx, data, len, n_embd, il_start, il_end); });
}

int ggml_sys_try_llama_tokenize(const struct llama_vocab * vocab, const char * text, int32_t text_len, llama_token * tokens, int32_t n_tokens_max, bool add_special, bool parse_special, int32_t * ret) {
    return barrier([&] { *ret = llama_tokenize(vocab, text, text_len, tokens, n_tokens_max, add_special, parse_special); });
}
int ggml_sys_try_llama_token_to_piece(const struct llama_vocab * vocab, llama_token token, char * buf, int32_t length, int32_t lstrip, bool special, int32_t * ret) {
    return barrier([&] { *ret = llama_token_to_piece(vocab, token, buf, length, lstrip, special); });
}
int ggml_sys_try_llama_detokenize(const struct llama_vocab * vocab, const llama_token * tokens, int32_t n_tokens, char * text, int32_t text_len_max, bool remove_special, bool unparse_special, int32_t * ret) {
    return barrier([&] { *ret = llama_detokenize(vocab, tokens, n_tokens, text, text_len_max, remove_special, unparse_special); });
}

int ggml_sys_try_llama_chat_apply_template(const char * tmpl, const struct llama_chat_message * chat, size_t n_msg, bool add_ass, char * buf, int32_t length, int32_t * ret) {
    return barrier([&] { *ret = llama_chat_apply_template(tmpl, chat, n_msg, add_ass, buf, length); });
}

int ggml_sys_try_llama_sampler_chain_init(struct llama_sampler_chain_params params, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_chain_init(params); });
}
int ggml_sys_try_llama_sampler_chain_add(struct llama_sampler * chain, struct llama_sampler * smpl) {
    return barrier([&] { llama_sampler_chain_add(chain, smpl); });
}
int ggml_sys_try_llama_sampler_init_greedy(struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_greedy(); });
}
int ggml_sys_try_llama_sampler_init_dist(uint32_t seed, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_dist(seed); });
}
int ggml_sys_try_llama_sampler_init_top_k(int32_t k, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_top_k(k); });
}
int ggml_sys_try_llama_sampler_init_top_p(float p, size_t min_keep, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_top_p(p, min_keep); });
}
int ggml_sys_try_llama_sampler_init_min_p(float p, size_t min_keep, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_min_p(p, min_keep); });
}
int ggml_sys_try_llama_sampler_init_typical(float p, size_t min_keep, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_typical(p, min_keep); });
}
int ggml_sys_try_llama_sampler_init_temp(float t, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_temp(t); });
}
int ggml_sys_try_llama_sampler_init_mirostat(int32_t n_vocab, uint32_t seed, float tau, float eta, int32_t m, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_mirostat(n_vocab, seed, tau, eta, m); });
}
int ggml_sys_try_llama_sampler_init_mirostat_v2(uint32_t seed, float tau, float eta, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_mirostat_v2(seed, tau, eta); });
}
int ggml_sys_try_llama_sampler_init_grammar(const struct llama_vocab * vocab, const char * grammar, const char * root, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_grammar(vocab, grammar, root); });
}
int ggml_sys_try_llama_sampler_init_penalties(int32_t n_vocab, int32_t last_n, float repeat, float freq, float present, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_penalties(n_vocab, last_n, repeat, freq, present); });
}
int ggml_sys_try_llama_sampler_init_dry(const struct llama_vocab * vocab, float multiplier, float base, int32_t allowed_length, int32_t last_n, const char ** breakers, size_t n_breakers, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_dry(vocab, multiplier, base, allowed_length, last_n, breakers, n_breakers); });
}
int ggml_sys_try_llama_sampler_init_logit_bias(int32_t n_vocab, int32_t n, const llama_logit_bias * biases, struct llama_sampler ** ret) {
    return barrier([&] { *ret = llama_sampler_init_logit_bias(n_vocab, n, biases); });
}
int ggml_sys_try_llama_sampler_apply(struct llama_sampler * smpl, llama_token_data_array * cur_p) {
    return barrier([&] { llama_sampler_apply(smpl, cur_p); });
}
int ggml_sys_try_llama_sampler_accept(struct llama_sampler * smpl, llama_token token) {
    return barrier([&] { llama_sampler_accept(smpl, token); });
}
int ggml_sys_try_llama_sampler_reset(struct llama_sampler * smpl) {
    return barrier([&] { llama_sampler_reset(smpl); });
}

}  // extern "C"
