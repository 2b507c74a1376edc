pub struct Worker;

#[forkbridge::handlers]
impl Worker {
    pub fn quick(&mut self) {}

    pub async fn slow(&mut self) {}
}

fn main() {}
