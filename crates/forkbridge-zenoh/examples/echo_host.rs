//! The Rust end of the Python binding's interop tests over Zenoh
//! (`bindings/python/tests/test_remote.py`): a serving program, an agent
//! and a frontend, around one backend with dynamic messages.
//!
//! ```sh
//! echo_host serve <endpoint> <namespace> <name>...   # listen, serve echo backends
//! echo_host agent <endpoint> <namespace> <agent>     # listen, start "Echo" on request
//! echo_host frontend <endpoint> <namespace> <name>   # connect, talk to a served backend
//! echo_host start <endpoint> <namespace> <agent> <kind> <name> <json>
//!                                                    # connect, start on an agent, talk
//! ```
//!
//! The backend: `echo(**params)` → `echoed(**params)` (values cross as
//! they came, pickles included, which Rust cannot read but forwards);
//! `exit(code)` ends the process with that code; `ack(index, delay)` sets the
//! event of `index`, `delay` seconds later, in the relayed group a served backend holds.
//!
//! The frontend sends `echo(n=i, text="hello")` for i in 0..3 and prints
//! each reply's command and `n`; then five `ack`s, each waiting for its
//! event, and prints `acked 5`; then stops the backend and prints
//! `stopped <exit code>`. Any error is printed and exits 1. `start` asks an
//! agent (a Python one: the arguments are JSON text, sent as a `String`)
//! to start `kind` as `name`, sends one `echo(n=1)`, prints `echoed n=1`,
//! stops it and prints `stopped <exit code>`.

use std::time::Duration;

use forkbridge::{
    BackendContext, EventGroup, EventIndex, HandlerResult, Handlers, Message, MessageProcess,
};
use forkbridge_zenoh::{Agent, Config, Link, serve};

/// Answers `echo` with its parameters; `exit` ends the process; `ack`
/// sets an event by index.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Echo {
    /// A served backend's relayed group (an agent's has none).
    #[serde(skip)]
    events: Option<EventGroup>,
}

impl Echo {
    fn echo(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let mut reply = Message::new("echoed");
        for (k, v) in msg.params() {
            reply.set(k, v.clone());
        }
        ctx.send(reply)?;
        Ok(())
    }

    fn ack(&mut self, _: &mut BackendContext, msg: Message) -> HandlerResult {
        let index = msg.param::<EventIndex>("index")?;
        if let Ok(delay) = msg.param::<f64>("delay") {
            std::thread::sleep(Duration::from_secs_f64(delay.clamp(0.0, 10.0)));
        }
        if let Some(events) = &self.events {
            events.set(index)?;
        }
        Ok(())
    }

    fn exit(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let code = msg.param::<i64>("code").unwrap_or(0);
        // Replies wait in the context's buffer until the loop flushes it:
        // flushed here, so they go before the exit.
        ctx.flush()?;
        std::process::exit(code as i32)
    }
}

impl forkbridge::Backend for Echo {
    fn register(handlers: &mut Handlers<Self>) {
        handlers.on("echo", Self::echo);
        handlers.on("exit", Self::exit);
        handlers.on("ack", Self::ack);
    }
}

type Outcome = Result<(), Box<dyn std::error::Error>>;

fn serve_echoes(endpoint: &str, namespace: &str, names: &[&str]) -> Outcome {
    let processes = names
        .iter()
        .map(|name| {
            let events = EventGroup::relayed(4)?;
            let echo = Echo {
                events: Some(events.clone()),
            };
            MessageProcess::builder(*name).events(&events).build(echo)
        })
        .collect::<forkbridge::Result<Vec<_>>>()?;
    let served = serve(
        Config::listen(endpoint)
            .namespace(namespace)
            .lease(Duration::from_secs(1)),
        processes,
    )?;
    println!("SERVING {endpoint}");
    for (name, status) in served.wait() {
        eprintln!("echo_host: '{name}' ended: {status:?}");
    }
    Ok(())
}

fn agent(endpoint: &str, namespace: &str, name: &str) -> Outcome {
    let agent = Agent::builder(name).register::<Echo>("Echo").start(
        Config::listen(endpoint)
            .namespace(namespace)
            .lease(Duration::from_secs(1)),
    )?;
    println!("AGENT {endpoint}");
    // Until its stdin closes (the test holds it open).
    let _ = std::io::Read::read(&mut std::io::stdin(), &mut [0u8; 1]);
    for (name, status) in agent.stop() {
        eprintln!("echo_host: '{name}' ended: {status:?}");
    }
    Ok(())
}

fn frontend(endpoint: &str, namespace: &str, name: &str) -> Outcome {
    let link = Link::open(
        Config::connect(endpoint)
            .namespace(namespace)
            .lease(Duration::from_secs(1)),
    )?;
    let events = EventGroup::new(2)?;
    let mut backend = link.attach_with(MessageProcess::builder(name).events(&events))?;
    for i in 0..3 {
        backend.send(Message::new("echo").with("n", i).with("text", "hello"))?;
        let reply = backend.recv_timeout(Duration::from_secs(10))?;
        println!("{} n={}", reply.command(), reply.param::<i64>("n")?);
    }
    for _ in 0..5 {
        let sync = events.sync_index()?;
        backend.send(Message::new("ack").with("index", sync.index()))?;
        sync.wait_timeout(Duration::from_secs(10))?;
    }
    println!("acked 5");
    let status = backend.stop()?;
    println!("stopped {}", status.code().unwrap_or(-1));
    Ok(())
}

fn start(
    endpoint: &str,
    namespace: &str,
    agent: &str,
    kind: &str,
    name: &str,
    json: &str,
) -> Outcome {
    let link = Link::open(
        Config::connect(endpoint)
            .namespace(namespace)
            .lease(Duration::from_secs(1)),
    )?;
    let builder = MessageProcess::builder(name);
    let mut backend = link.start_on(agent, kind, builder, &json.to_owned())?;
    backend.send(Message::new("echo").with("n", 1))?;
    let reply = backend.recv_timeout(Duration::from_secs(10))?;
    println!("{} n={}", reply.command(), reply.param::<i64>("n")?);
    let status = backend.stop()?;
    println!("stopped {}", status.code().unwrap_or(-1));
    Ok(())
}

fn main() {
    forkbridge::init();
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let outcome = match args[..] {
        ["serve", endpoint, namespace, ref names @ ..] if !names.is_empty() => {
            serve_echoes(endpoint, namespace, names)
        }
        ["agent", endpoint, namespace, name] => agent(endpoint, namespace, name),
        ["frontend", endpoint, namespace, name] => frontend(endpoint, namespace, name),
        ["start", endpoint, namespace, agent, kind, name, json] => {
            start(endpoint, namespace, agent, kind, name, json)
        }
        _ => Err("usage: echo_host serve|agent|frontend <endpoint> <namespace> <name>...".into()),
    };
    if let Err(e) = outcome {
        println!("error: {e}");
        std::process::exit(1);
    }
}
