pub struct Worker;

#[forkbridge::handlers]
impl Worker {
    pub fn greet(&mut self, who: &str) -> String {
        format!("hello, {who}")
    }
}

fn main() {}
