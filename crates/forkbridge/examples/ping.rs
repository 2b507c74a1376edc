//! valkka-multiprocess's `MyProcess` example, in Rust.
//!
//! valkka-multiprocess writes a backend method `c__myStuff` and a frontend
//! method `myStuff` that sends `MessageObject("myStuff", parameter=...)`.
//! Here the backend registers a handler for `"my_stuff"`, and a small
//! frontend type wraps the [`MessageProcess`] handle with the same method.
//!
//! Run it with `cargo run --example ping`.

use std::time::Duration;

use forkbridge::{
    Backend, BackendContext, HandlerResult, Handlers, Message, MessageProcess, format_logger,
    message,
};

/// The backend half: lives in the forked child.
struct MyBackend {
    calls: u32,
}

impl MyBackend {
    /// valkka-multiprocess's `c__myStuff`.
    fn my_stuff(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let parameter: String = msg.param("parameter")?;
        self.calls += 1;
        log::info!(
            target: ctx.log_target(),
            "regards from the other side of the fork! got parameter {parameter:?} (pid {})",
            std::process::id()
        );
        ctx.send(message!(
            "my_stuff_done",
            calls = self.calls,
            echo = parameter
        ))?;
        Ok(())
    }
}

impl Backend for MyBackend {
    fn register(handlers: &mut Handlers<Self>) {
        handlers.on("my_stuff", Self::my_stuff);
    }

    fn pre_run(&mut self, ctx: &mut BackendContext) -> HandlerResult {
        // Load heavy things here: this runs in the child, after the fork.
        log::info!(target: ctx.log_target(), "pre_run: ready");
        Ok(())
    }

    fn post_run(&mut self, ctx: &mut BackendContext) {
        log::info!(target: ctx.log_target(), "post_run: served {} calls", self.calls);
    }
}

/// The frontend half: methods that run in the parent.
struct MyProcess {
    process: MessageProcess,
}

impl MyProcess {
    fn new(name: &str) -> forkbridge::Result<MyProcess> {
        let process = MessageProcess::builder(name)
            .ignore_sigint(true)
            .build(MyBackend { calls: 0 })?;
        Ok(MyProcess { process })
    }

    /// valkka-multiprocess's frontend `myStuff`.
    fn my_stuff(&mut self, parameter: &str) -> forkbridge::Result<()> {
        self.process
            .send(Message::new("my_stuff").with("parameter", parameter))
    }
}

fn main() -> forkbridge::Result<()> {
    format_logger(log::LevelFilter::Info);
    let mut p = MyProcess::new("my-process")?;
    p.process.start()?;
    println!(
        "frontend pid {}, backend pid {:?}",
        std::process::id(),
        p.process.pid()
    );

    p.my_stuff("gotcha!")?;
    let done = p.process.recv_timeout(Duration::from_secs(5))?;
    println!("frontend received {done}");

    // valkka-multiprocess's c__ping / sendPing, built in.
    p.process.send(message!("ping", lis = vec![1i64, 2, 3]))?;
    let pong = p.process.recv_timeout(Duration::from_secs(5))?;
    println!("frontend received {pong}");

    // An unknown command is reported back instead of killing the backend.
    p.process.send(Message::new("no_such_command"))?;
    let error = p.process.recv_timeout(Duration::from_secs(5))?;
    println!("frontend received {error}");

    let status = p.process.stop()?;
    println!("backend stopped: {status}");
    Ok(())
}
