/* An exception barrier between Rust and llama.cpp's C++.
 *
 * llama.h's functions are C++ inside: some throw (std::out_of_range from a
 * vocabulary lookup, std::bad_alloc from a buffer sized by a parameter, ...).
 * An exception that reaches Rust aborts the process, so the safe crate calls
 * these instead: each calls the llama.h function of the same name (without
 * the `ggml_sys_try_` prefix) with the same arguments, writes its result to
 * `*ret` (functions that return something), and returns 0; or, when the call
 * throws, catches the exception and returns 1, leaving `*ret` unwritten.
 * ggml_sys_exception_message() then tells what was thrown, until the next
 * exception on the same thread.
 *
 * Compiled by ggml-sys's build script with the headers of the library it
 * links, in every link mode. */
#pragma once

#include "llama.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The message of the last exception a ggml_sys_try_ function caught on this
 * thread (the exception's what()); valid until the next one. */
const char * ggml_sys_exception_message(void);

/* Models and contexts */
int ggml_sys_try_llama_model_load_from_file(const char * path, struct llama_model_params params, struct llama_model ** ret);
int ggml_sys_try_llama_init_from_model(struct llama_model * model, struct llama_context_params params, struct llama_context ** ret);
int ggml_sys_try_llama_decode(struct llama_context * ctx, struct llama_batch batch, int32_t * ret);
int ggml_sys_try_llama_encode(struct llama_context * ctx, struct llama_batch batch, int32_t * ret);
int ggml_sys_try_llama_synchronize(struct llama_context * ctx);
int ggml_sys_try_llama_get_logits(struct llama_context * ctx, float ** ret);
int ggml_sys_try_llama_get_embeddings(struct llama_context * ctx, float ** ret);
int ggml_sys_try_llama_get_embeddings_seq(struct llama_context * ctx, llama_seq_id seq, float ** ret);
int ggml_sys_try_llama_set_n_threads(struct llama_context * ctx, int32_t n_threads, int32_t n_threads_batch);

/* Memory (KV cache) */
int ggml_sys_try_llama_memory_clear(llama_memory_t mem, bool data);
int ggml_sys_try_llama_memory_seq_rm(llama_memory_t mem, llama_seq_id seq, llama_pos p0, llama_pos p1, bool * ret);
int ggml_sys_try_llama_memory_seq_cp(llama_memory_t mem, llama_seq_id src, llama_seq_id dst, llama_pos p0, llama_pos p1);
int ggml_sys_try_llama_memory_seq_keep(llama_memory_t mem, llama_seq_id seq);
int ggml_sys_try_llama_memory_seq_add(llama_memory_t mem, llama_seq_id seq, llama_pos p0, llama_pos p1, llama_pos delta);
int ggml_sys_try_llama_memory_seq_div(llama_memory_t mem, llama_seq_id seq, llama_pos p0, llama_pos p1, int d);

/* State */
int ggml_sys_try_llama_state_get_size(struct llama_context * ctx, size_t * ret);
int ggml_sys_try_llama_state_get_data(struct llama_context * ctx, uint8_t * dst, size_t size, size_t * ret);
int ggml_sys_try_llama_state_set_data(struct llama_context * ctx, const uint8_t * src, size_t size, size_t * ret);
int ggml_sys_try_llama_state_save_file(struct llama_context * ctx, const char * path, const llama_token * tokens, size_t n_tokens, bool * ret);
int ggml_sys_try_llama_state_load_file(struct llama_context * ctx, const char * path, llama_token * tokens, size_t capacity, size_t * n_out, bool * ret);

/* Adapters */
int ggml_sys_try_llama_adapter_lora_init(struct llama_model * model, const char * path, struct llama_adapter_lora ** ret);
int ggml_sys_try_llama_set_adapters_lora(struct llama_context * ctx, struct llama_adapter_lora ** adapters, size_t n, float * scales, int32_t * ret);
int ggml_sys_try_llama_set_adapter_cvec(struct llama_context * ctx, const float * data, size_t len, int32_t n_embd, int32_t il_start, int32_t il_end, int32_t * ret);

/* Vocabulary */
int ggml_sys_try_llama_tokenize(const struct llama_vocab * vocab, const char * text, int32_t text_len, llama_token * tokens, int32_t n_tokens_max, bool add_special, bool parse_special, int32_t * ret);
int ggml_sys_try_llama_token_to_piece(const struct llama_vocab * vocab, llama_token token, char * buf, int32_t length, int32_t lstrip, bool special, int32_t * ret);
int ggml_sys_try_llama_detokenize(const struct llama_vocab * vocab, const llama_token * tokens, int32_t n_tokens, char * text, int32_t text_len_max, bool remove_special, bool unparse_special, int32_t * ret);

/* Chat templates */
int ggml_sys_try_llama_chat_apply_template(const char * tmpl, const struct llama_chat_message * chat, size_t n_msg, bool add_ass, char * buf, int32_t length, int32_t * ret);

/* Samplers */
int ggml_sys_try_llama_sampler_chain_init(struct llama_sampler_chain_params params, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_chain_add(struct llama_sampler * chain, struct llama_sampler * smpl);
int ggml_sys_try_llama_sampler_init_greedy(struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_dist(uint32_t seed, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_top_k(int32_t k, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_top_p(float p, size_t min_keep, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_min_p(float p, size_t min_keep, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_typical(float p, size_t min_keep, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_temp(float t, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_mirostat(int32_t n_vocab, uint32_t seed, float tau, float eta, int32_t m, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_mirostat_v2(uint32_t seed, float tau, float eta, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_grammar(const struct llama_vocab * vocab, const char * grammar, const char * root, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_penalties(int32_t n_vocab, int32_t last_n, float repeat, float freq, float present, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_dry(const struct llama_vocab * vocab, float multiplier, float base, int32_t allowed_length, int32_t last_n, const char ** breakers, size_t n_breakers, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_init_logit_bias(int32_t n_vocab, int32_t n, const llama_logit_bias * biases, struct llama_sampler ** ret);
int ggml_sys_try_llama_sampler_apply(struct llama_sampler * smpl, llama_token_data_array * cur_p);
int ggml_sys_try_llama_sampler_accept(struct llama_sampler * smpl, llama_token token);
int ggml_sys_try_llama_sampler_reset(struct llama_sampler * smpl);

#ifdef __cplusplus
}
#endif
