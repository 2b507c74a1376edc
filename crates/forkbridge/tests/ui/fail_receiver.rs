pub struct Worker;

#[forkbridge::handlers]
impl Worker {
    pub fn status(&self) -> u32 {
        1
    }
}

fn main() {}
