//! A backend *program*: Rust code serving a frontend written in another
//! language. A Python frontend starts it with
//! `forkbridge.ProgramProcess("square", ["square_backend"])` (see
//! `bindings/python/examples/rust_backend.py`): the frontend forks, the
//! child `exec`s this program with its end of the intercom in the fd named
//! by `FORKBRIDGE_FD`, and from then on the two speak the same wire format.
//!
//! Commands: `square(x)` → `squared(x, y)`, and `describe(**params)` →
//! `described(name=type)`, which shows how each Python value arrived.

use forkbridge::{Intercom, Message, Value};

fn main() {
    let mut intercom = match Intercom::from_env() {
        Ok(intercom) => intercom,
        Err(e) => {
            eprintln!("square_backend: {e} (start me from a forkbridge frontend)");
            std::process::exit(2);
        }
    };
    // `Ok(None)` is the frontend's stop request; an error means it is gone.
    while let Ok(Some(msg)) = intercom.recv() {
        let reply = match msg.command() {
            "square" => match msg.param::<f64>("x") {
                Ok(x) => Message::new("squared").with("x", x).with("y", x * x),
                Err(e) => error(msg.command(), &e.to_string()),
            },
            "describe" => {
                let mut reply = Message::new("described");
                for (name, value) in msg.params() {
                    reply.set(name, describe(value));
                }
                reply
            }
            other => error(other, "no such command"),
        };
        if intercom.send(reply).is_err() {
            break;
        }
    }
}

fn describe(value: &Value) -> String {
    match value {
        Value::Pickled { type_name, .. } => format!("pickled {type_name}"),
        other => format!("{} {other}", other.type_name()),
    }
}

fn error(command: &str, text: &str) -> Message {
    Message::new("error")
        .with("kind", "handler_error")
        .with("command", command)
        .with("error", text)
        .with("process", "square_backend")
}
