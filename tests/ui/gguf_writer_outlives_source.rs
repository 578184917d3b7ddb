// A writer borrows the arrays it will write: they must outlive it.
use ggml::gguf::Writer;
use ggml::ndarray::Array1;

fn main() {
    let mut w = Writer::new();
    {
        let a = Array1::<f32>::zeros(4);
        w.add_array("a", &a).unwrap();
    }
    w.write_to(Vec::new()).unwrap();
}
