// A context borrows its model: it cannot outlive it.
use ggml::llama::{Context, ContextParams, Model};

fn main() {
    let ctx = {
        let model = Model::load("model.gguf").unwrap();
        Context::new(&model, &ContextParams::new()).unwrap()
    };
    drop(ctx);
}
