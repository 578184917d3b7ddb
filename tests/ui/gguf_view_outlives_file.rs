// A tensor view borrows the GGUF file (its memory map): it cannot outlive it.
use ggml::gguf::Gguf;

fn main() {
    let view = {
        let file = Gguf::read("model.gguf").unwrap();
        file.tensor("w").unwrap().view::<f32>().unwrap()
    };
    println!("{}", view.len());
}
