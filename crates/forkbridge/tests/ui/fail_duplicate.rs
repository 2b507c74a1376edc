pub struct Worker;

#[forkbridge::handlers]
impl Worker {
    #[forkbridge(command = "go")]
    pub fn start(&mut self) {}

    #[forkbridge(command = "go")]
    pub fn begin(&mut self) {}
}

fn main() {}
