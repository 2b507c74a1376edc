pub struct Worker;

pub struct NotSerde {
    pub x: u32,
}

#[forkbridge::handlers]
impl Worker {
    pub fn take(&mut self, value: NotSerde) -> u32 {
        value.x
    }
}

fn main() {}
