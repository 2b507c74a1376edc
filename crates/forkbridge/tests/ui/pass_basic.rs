use forkbridge::BackendContext;

#[derive(Default)]
pub struct Worker {
    n: u64,
}

#[forkbridge::handlers(frontend = WorkerProcess)]
impl Worker {
    /// Adds and returns the total.
    pub fn add(&mut self, by: u64) -> u64 {
        self.n += by;
        self.n
    }

    /// One way.
    pub fn reset(&mut self, _ctx: &mut BackendContext) {
        self.n = 0;
    }

    /// Fallible, renamed for a camelCase frontend.
    #[forkbridge(command = "checkedDiv")]
    pub fn checked_div(&mut self, a: u64, b: u64) -> Result<u64, String> {
        a.checked_div(b).ok_or_else(|| "division by zero".to_string())
    }
}

fn main() {
    fn assert_frontend(p: &mut WorkerProcess) -> forkbridge::Result<u64> {
        p.reset()?;
        p.checked_div(6, 3)?;
        p.add(1)
    }
    let _ = assert_frontend;
}
