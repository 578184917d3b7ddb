// Logits are a view into the context: the next decode ends them.
use ggml::llama::{Batch, Context, ContextParams, Model};

fn main() {
    let model = Model::load("model.gguf").unwrap();
    let mut ctx = Context::new(&model, &ContextParams::new()).unwrap();
    let batch = Batch::from_prompt(&[1, 2, 3]).unwrap();
    ctx.decode(&batch).unwrap();
    let logits = ctx.logits().unwrap();
    ctx.decode(&batch).unwrap();
    println!("{}", logits[[0, 0]]);
}
