//! valkka-multiprocess's `EventGroup` / `SyncIndex` ping, in Rust.
//!
//! valkka-multiprocess's docs show a frontend method that reserves an event,
//! sends its index in a `MessageObject`, and waits until the backend sets
//! it. Here the same, with what valkka-multiprocess lacks: the wait is bounded, the
//! event is released however the block ends, a late set cannot wake a later
//! request, and a pollable event waits together with the backend's death.
//!
//! Run it with `cargo run --example sync_index`.

use std::time::{Duration, Instant};

use forkbridge::{
    Backend, BackendContext, EventGroup, EventIndex, EventKind, HandlerResult, Handlers, Message,
    MessageProcess, SyncIndex, select,
};

/// The backend: does its work, then sets the event whose index came with
/// the command (valkka-multiprocess's `c__ping(event_index)`).
struct YourProcess {
    event_group: EventGroup,
    pings: u32,
}

impl YourProcess {
    fn ping(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        self.pings += 1;
        let index: EventIndex = msg.param("event_index")?;
        log::info!(target: ctx.log_target(), "ping {} (event {index})", self.pings);
        self.event_group.set(index)?;
        Ok(())
    }

    fn slow(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        std::thread::sleep(Duration::from_millis(msg.param("ms")?));
        // Too late: the frontend stopped waiting and released the event,
        // so this index is stale and the set does nothing.
        let applied = self.event_group.set(msg.param("event_index")?)?;
        log::info!(target: ctx.log_target(), "late set applied: {applied}");
        Ok(())
    }
}

impl Backend for YourProcess {
    fn register(handlers: &mut Handlers<Self>) {
        handlers.on("ping", Self::ping).on("slow", Self::slow);
    }
}

fn main() -> forkbridge::Result<()> {
    forkbridge::format_logger(log::LevelFilter::Info);
    // Events are made before the fork, as in valkka-multiprocess; pollable ones can
    // also sit in a select.
    let event_group = EventGroup::with_kind(10, EventKind::Pollable)?;
    let mut p = MessageProcess::new(
        "your-process",
        YourProcess {
            event_group: event_group.clone(),
            pings: 0,
        },
    )?;
    p.start()?;

    // valkka-multiprocess's frontend `ping`, with SyncIndex.
    let t = Instant::now();
    for _ in 0..1000 {
        let sync = SyncIndex::new(&event_group)?;
        p.send(Message::new("ping").with("event_index", sync.index()))?;
        sync.wait_timeout(Duration::from_secs(5))?;
    }
    println!(
        "1000 synchronous pings in {:.1?} ({} events free)",
        t.elapsed(),
        event_group.free()
    );

    // A request the backend answers too late: a typed timeout, the event
    // back in the group, and the late set ignored.
    let sync = SyncIndex::new(&event_group)?;
    p.send(
        Message::new("slow")
            .with("event_index", sync.index())
            .with("ms", 200),
    )?;
    match sync.wait_timeout(Duration::from_millis(20)) {
        Err(e) if e.is_timeout() => println!("slow request: {e}; event released"),
        other => println!("slow request: {other:?}"),
    }

    // Waiting on "the event or the backend's death" in one call.
    let sync = SyncIndex::new(&event_group)?;
    p.send(Message::new("ping").with("event_index", sync.index()))?;
    let ready = select(
        &[
            sync.event().fd().expect("pollable"),
            p.pidfd().expect("running"),
        ],
        &[],
        &[],
        Some(Duration::from_secs(5)),
    )?;
    println!(
        "select: {}",
        match ready.read.as_slice() {
            [0, ..] => "the event was set",
            [1] => "the backend died",
            _ => "timed out",
        }
    );
    drop(sync);

    let status = p.stop()?;
    println!("backend stopped: {status}");
    Ok(())
}
