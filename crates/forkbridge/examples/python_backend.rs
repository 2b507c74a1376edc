//! A Rust frontend talking to a Python backend: the backend process is
//! forked as usual, then `exec`s a Python interpreter running
//! `bindings/python/examples/squarer.py`, a valkka-style `MessageProcess`
//! subclass served by `forkbridge.serve` on the inherited intercom.
//!
//! Needs the Python package installed in that interpreter
//! (`pip install ./bindings/python`); set `FORKBRIDGE_PYTHON` to choose the
//! interpreter (default `python3`).
//!
//! ```sh
//! cargo run --example python_backend
//! ```

use std::process::Command;
use std::time::Duration;

use forkbridge::{Message, MessageProcess, Value};

const SCRIPT: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../bindings/python/examples/squarer.py"
);

fn main() -> forkbridge::Result<()> {
    let python = std::env::var("FORKBRIDGE_PYTHON").unwrap_or_else(|_| "python3".into());
    let interpreter = python.clone();
    let mut squarer = MessageProcess::builder("squarer").build_fn(move |intercom| {
        let err = intercom.exec(Command::new(&interpreter).arg(SCRIPT));
        eprintln!("could not start {interpreter}: {err}");
        127
    })?;
    squarer.start()?;

    // Python starts and imports in the child: allow it a few seconds.
    let wait = Duration::from_secs(20);
    squarer.send(Message::new("square").with("x", 12))?;
    let squared = squarer.recv_timeout(wait)?;
    println!("Python answered {squared}");
    assert_eq!(squared.param::<i64>("y")?, 144);

    // Values as Python sees them, and back.
    squarer.send(
        Message::new("describe")
            .with("n", 7)
            .with("f", 2.5)
            .with("s", "text")
            .with("b", vec![0u8, 1])
            .with("l", vec![1i64, 2])
            .with("t", Value::Tuple(vec![Value::from(1), Value::from("a")]))
            .with("m", Value::Map(vec![(Value::from(1), Value::from("one"))])),
    )?;
    let described = squarer.recv_timeout(wait)?;
    println!("Python saw {described}");
    assert_eq!(described.param::<String>("t")?, "tuple");
    assert_eq!(described.param::<String>("m")?, "dict");

    let status = squarer.stop()?;
    println!("{python} backend ended: {status}");
    assert!(status.success());
    Ok(())
}
