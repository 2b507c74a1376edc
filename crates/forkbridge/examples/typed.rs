//! valkka-multiprocess's `MyProcess`, written once with `#[forkbridge::handlers]`.
//!
//! In valkka-multiprocess you write `c__myStuff` in the backend *and*
//! `myStuff` in the frontend, and the library pairs them by name at run
//! time. Here one method is both: the attribute registers it as a typed
//! command and generates `MyProcess` (the frontend) with a method of the
//! same name and parameters. Unit-returning methods are one-way; methods
//! returning a value are calls that wait for it. Compare with
//! `examples/ping.rs`, the same program with dynamic messages.
//!
//! Run it with `cargo run --example typed --features macros`.

use std::time::Duration;

use forkbridge::BackendContext;
use serde::{Deserialize, Serialize};

/// A typed reply: any serde type crosses the fork.
#[derive(Debug, Serialize, Deserialize)]
pub struct Stuff {
    pub calls: u32,
    pub echo: String,
}

/// The backend's state, living in the forked child.
#[derive(Debug, Default)]
pub struct MyBackend {
    calls: u32,
}

#[forkbridge::handlers(frontend = MyProcess)]
impl MyBackend {
    /// valkka-multiprocess's `c__myStuff` / `myStuff`: runs in the child, answers the
    /// frontend with a typed value.
    pub fn my_stuff(&mut self, ctx: &mut BackendContext, parameter: String) -> Stuff {
        self.calls += 1;
        log::info!(
            target: ctx.log_target(),
            "regards from the other side of the fork! got parameter {parameter:?}"
        );
        Stuff {
            calls: self.calls,
            echo: parameter,
        }
    }

    /// One way: nothing comes back.
    pub fn reset(&mut self) {
        self.calls = 0;
    }

    /// Errors come back typed.
    pub fn divide(&mut self, a: i64, b: i64) -> Result<i64, String> {
        a.checked_div(b)
            .ok_or_else(|| format!("cannot divide {a} by {b}"))
    }
}

fn main() -> forkbridge::Result<()> {
    forkbridge::format_logger(log::LevelFilter::Info);
    let mut p = MyProcess::start("my-process", MyBackend::default())?;
    p.set_timeout(Duration::from_secs(5));

    let stuff = p.my_stuff("gotcha!".to_string())?;
    println!("frontend received {stuff:?}");
    p.reset()?;
    let stuff = p.my_stuff("again".to_string())?;
    println!("after reset: {stuff:?}");

    println!("7 / 2 = {}", p.divide(7, 2)?);
    match p.divide(1, 0) {
        Err(e) => println!("1 / 0 -> {e}"),
        Ok(v) => println!("1 / 0 = {v}?"),
    }

    // The dynamic path still works beside the typed one: the built-in ping.
    p.send(forkbridge::Message::new("ping"))?;
    println!(
        "frontend received {}",
        p.recv_timeout(Duration::from_secs(5))?
    );

    let status = p.stop()?;
    println!("backend stopped: {status}");
    Ok(())
}
