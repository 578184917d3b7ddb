// A LoRA adapter borrows its model: it cannot outlive it, and the model
// cannot remove adapters while one is borrowed.
use ggml::llama::Model;

fn main() {
    let lora = {
        let mut model = Model::load("model.gguf").unwrap();
        let i = model.load_lora("lora.gguf").unwrap();
        model.lora(i).unwrap()
    };
    let _ = lora;
    let mut model = Model::load("model.gguf").unwrap();
    let lora = model.lora(0).unwrap();
    model.remove_lora(0).unwrap();
    let _ = lora;
}
