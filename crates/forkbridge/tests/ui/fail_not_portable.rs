// A backend without serde cannot be started as data: the compiler says so
// at the call, naming the missing trait.
use forkbridge::{MessageProcess, StartMethod};

#[derive(Default)]
pub struct Counter {
    n: u64,
}

#[forkbridge::handlers]
impl Counter {
    pub fn bump(&mut self) -> u64 {
        self.n += 1;
        self.n
    }
}

fn main() {
    let builder = MessageProcess::builder("c").start_method(StartMethod::Spawn);
    let _ = CounterClient::start_with(builder, Counter::default());
}
