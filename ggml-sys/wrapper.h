/* The headers ggml-sys binds. Feature-gated headers are switched on by the
 * build script with -DGGML_SYS_<FEATURE>. */
#include "ggml.h"
#include "ggml-alloc.h"
#include "ggml-backend.h"
#ifdef GGML_SYS_CPU_BACKEND
#include "ggml-cpu.h"
#endif
#include "ggml-opt.h"
#include "gguf.h"
#include "llama.h"
/* ggml-sys's own exception barrier over llama.h (shim/barrier.h). */
#include "barrier.h"

#ifdef GGML_SYS_CUDA
#include "ggml-cuda.h"
#endif
#ifdef GGML_SYS_METAL
#include "ggml-metal.h"
#endif
#ifdef GGML_SYS_VULKAN
#include "ggml-vulkan.h"
#endif
#ifdef GGML_SYS_RPC
#include "ggml-rpc.h"
#endif
/* ggml's internal backend interface (ggml/src/ggml-backend-impl.h), for the
 * `rpc` feature: the safe crate implements a backend (the RPC client) in Rust.
 * Bound in its own module, ggml_sys::backend_impl. */
#ifdef GGML_SYS_BACKEND_IMPL
#include "ggml-backend-impl.h"
#endif
