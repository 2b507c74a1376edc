//! Supervision under fire: a [`Pool`] whose workers are SIGKILLed every
//! 20–50 ms and resized while calls are in flight, and a [`Supervisor`]
//! whose children are killed at random beside one that can never start.
//!
//! Each round alternates `Fork` and `ForkServer` and runs both halves. The
//! pool keeps about 32 calls in flight, of an idempotent command and of one
//! that is not: every call must end once, with its own value, or (not
//! idempotent) with `Disconnected` carrying the SIGKILL status. An
//! idempotent call may end `Disconnected` only if two kills could have
//! reached it (the pool resends it once; a worker killed but not yet
//! noticed still takes calls); such calls are counted apart, not as
//! failures. The supervisor's killed children must each exit with
//! SIGKILL and come back, and its failing child must be given up after its
//! limit, every round. After both stop, no child may be left and the fds
//! and shared mappings must be back to where they were.
//!
//! The kills come from the thread that drives the pool, as a program's
//! would: a second thread would make the parent threaded, and `Fork`
//! restarts refuse that. The run lasts the wall time the `edges` scenario
//! gets (at least two rounds, so both start methods run in `--quick`); each
//! round is bounded by an alarm, whose default action ends the suite, so a
//! hang fails it instead of stalling it.

use std::collections::{HashMap, HashSet, VecDeque};
use std::os::unix::process::ExitStatusExt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use forkbridge::{
    Backend, BackendContext, Command, ErrorKind, HandlerResult, Handlers, Message, MessageProcess,
    Pool, ProcessState, RestartPolicy, StartMethod, Supervisor, SupervisorEvent, Ticket,
};
use forkbridge_testkit::{
    alarm, children_but_the_fork_server, kill, kill_and_reap, mappings, open_fds, shared_mappings,
};

use crate::{Outcome, Rng, Scale};

const METHODS: [StartMethod; 2] = [StartMethod::Fork, StartMethod::ForkServer];

/// The bound of every single wait: a call's whole life, a settle, a stop.
const WAIT: Duration = Duration::from_secs(10);

/// The hard bound of one round, past which the alarm ends the suite.
const ROUND_BOUND_SECS: u32 = 60;

/// How long each half of a round runs its kills.
const POOL_PHASE: Duration = Duration::from_millis(1_500);
const SUPERVISOR_PHASE: Duration = Duration::from_millis(400);

/// Calls kept in flight in the pool.
const IN_FLIGHT: usize = 32;

/// Restarts at once, without limit.
fn unlimited(policy: RestartPolicy) -> RestartPolicy {
    policy
        .max_restarts(u32::MAX, Duration::from_secs(1))
        .backoff(Duration::ZERO, Duration::ZERO)
}

/// The limit of the child that fails in `pre_run`.
const FAILING_LIMIT: u32 = 3;

/// A worker for both halves: two typed commands with some work each, and a
/// `pre_run` that fails when asked. It crosses as data (`ForkServer`).
#[derive(Debug, Default, Clone, serde::Serialize, serde::Deserialize)]
struct SupWorker {
    fail_pre_run: bool,
    /// What `tally` counts: why it is not idempotent.
    #[serde(skip)]
    tallied: u64,
}

/// Runs twice without harm: a pure function of its argument.
const MIX: Command<(u64, u64), u64> = Command::new("mix").idempotent();
/// Changes the worker's state: not to be run twice.
const TALLY: Command<(u64, u64), u64> = Command::new("tally");

fn mix(x: u64) -> u64 {
    x.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ 0x5bd1_e995
}

fn tally(x: u64) -> u64 {
    x.wrapping_mul(3).wrapping_add(1)
}

/// Busy for `us` microseconds (a sleep past a millisecond), so kills find
/// calls in flight.
fn work(us: u64) {
    if us >= 1_000 {
        std::thread::sleep(Duration::from_micros(us));
        return;
    }
    let until = Instant::now() + Duration::from_micros(us);
    while Instant::now() < until {
        std::hint::spin_loop();
    }
}

impl Backend for SupWorker {
    fn register(h: &mut Handlers<Self>) {
        h.typed("mix", |_: &mut SupWorker, _, (x, us): (u64, u64)| {
            work(us);
            Ok(mix(x))
        });
        h.typed("tally", |w: &mut SupWorker, _, (x, us): (u64, u64)| {
            w.tallied += 1;
            work(us);
            Ok(tally(x))
        });
    }

    fn pre_run(&mut self, _: &mut BackendContext) -> HandlerResult {
        if self.fail_pre_run {
            return Err("pre_run fails on purpose".into());
        }
        Ok(())
    }
}

/// What the pool's `on_event` hook saw, shared with the driving thread
/// (the hook runs in it; the mutex only satisfies `Send`).
#[derive(Debug, Default)]
struct Seen {
    /// When each pid was killed.
    killed_at: HashMap<i32, Instant>,
    /// Per worker name, the kill whose replacement is awaited.
    awaiting: HashMap<String, Instant>,
    /// Exits by SIGKILL (a shrink's stops are clean exits, not counted).
    killed_exits: u64,
    restarts: u64,
    worst_kill_to_serving: Duration,
}

impl Seen {
    fn on_event(&mut self, event: &SupervisorEvent) {
        match event {
            SupervisorEvent::Exited {
                name,
                pid,
                status,
                restart_in,
            } => {
                if status.and_then(|s| s.signal()) == Some(libc::SIGKILL) {
                    self.killed_exits += 1;
                }
                let killed = pid.and_then(|p| self.killed_at.get(&p).copied());
                match (killed, restart_in) {
                    (Some(at), Some(_)) => {
                        self.awaiting.insert(name.clone(), at);
                    }
                    _ => {
                        self.awaiting.remove(name);
                    }
                }
            }
            SupervisorEvent::Restarted { name, .. } => {
                self.restarts += 1;
                if let Some(at) = self.awaiting.remove(name) {
                    self.worst_kill_to_serving = self.worst_kill_to_serving.max(at.elapsed());
                }
            }
            _ => {}
        }
    }
}

fn lock(seen: &Mutex<Seen>) -> std::sync::MutexGuard<'_, Seen> {
    seen.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The whole run's counts.
#[derive(Debug, Default)]
struct Totals {
    rounds: [u64; 2],
    calls: u64,
    answered: u64,
    disconnected: u64,
    /// Idempotent calls that ended `Disconnected` with two or more kills
    /// that could reach them: allowed (the one resend died too).
    twice_killed: u64,
    kills: u64,
    restarts: u64,
    resizes: u64,
    worst_kill_to_serving: Duration,
    worst_stop: Duration,
    sup_kills: u64,
    sup_restarts: u64,
    give_ups: u64,
    failures: u64,
    children_left: u64,
    leaked_fds: u64,
    leaked_shared_maps: u64,
}

/// A round's failures, each with why.
#[derive(Debug, Default)]
struct Faults(Vec<String>);

impl Faults {
    fn add(&mut self, why: String) {
        self.0.push(why);
    }
}

pub(crate) fn supervise(scale: &Scale) -> Outcome {
    // Warm: the fork server and lazily made statics exist before the count.
    for method in METHODS {
        if let Ok(mut pool) = Pool::builder("warm").workers(1).build(move |name| {
            MessageProcess::builder(name)
                .start_method(method)
                .build_portable(SupWorker::default())
        }) {
            let _ = pool.call(MIX.with((1, 0)));
            pool.stop(WAIT);
        }
    }
    let (fds, shared, maps) = (open_fds(), shared_mappings(), mappings());
    let mut rng = Rng(11);
    let mut totals = Totals::default();
    let mut reported = 0;
    let budget = Duration::from_millis(scale.edges_ms);
    let started = Instant::now();
    let mut round = 0u64;
    while round < 2 || started.elapsed() < budget {
        let method = METHODS[(round % 2) as usize];
        totals.rounds[(round % 2) as usize] += 1;
        alarm(ROUND_BOUND_SECS);
        let mut faults = Faults::default();
        pool_round(method, &mut rng, &mut totals, &mut faults);
        supervisor_round(method, &mut rng, &mut totals, &mut faults);
        let left = children_but_the_fork_server();
        if !left.is_empty() {
            faults.add(format!("{} children left: {left:?}", left.len()));
            totals.children_left += left.len() as u64;
            kill_and_reap(&left);
        }
        let leaked_fds = open_fds().saturating_sub(fds) as u64;
        let leaked_shared = shared_mappings().saturating_sub(shared) as u64;
        if leaked_fds + leaked_shared > 0 {
            faults.add(format!(
                "{leaked_fds} fds and {leaked_shared} shared mappings above the baseline"
            ));
        }
        totals.leaked_fds = totals.leaked_fds.max(leaked_fds);
        totals.leaked_shared_maps = totals.leaked_shared_maps.max(leaked_shared);
        totals.failures += faults.0.len() as u64;
        for why in &faults.0 {
            reported += 1;
            if reported <= 5 {
                eprintln!("  supervise round {round} ({method:?}): {why}");
            }
        }
        round += 1;
    }
    alarm(0);
    // Private mappings come and go with the allocator: some slack, once.
    let leaked_maps = mappings().saturating_sub(maps + 8) as u64;
    let t = &totals;
    Outcome::failures(
        "supervise",
        t.failures + u64::from(leaked_maps > 0),
        format!(
            "{} rounds (Fork {}, ForkServer {}); pool of 4: {} calls, {} answered, {} disconnected \
             ({} idempotent, after two kills), {} kills, {} restarts, {} resizes, kill→serving \
             worst {:.1?}, stop worst {:.0?}; supervisor: {} kills, {} restarts, {} give-ups; \
             {} failed, {} children left, {} fds, {} shared and {leaked_maps} other mappings leaked",
            round,
            t.rounds[0],
            t.rounds[1],
            t.calls,
            t.answered,
            t.disconnected,
            t.twice_killed,
            t.kills,
            t.restarts,
            t.resizes,
            t.worst_kill_to_serving,
            t.worst_stop,
            t.sup_kills,
            t.sup_restarts,
            t.give_ups,
            t.failures,
            t.children_left,
            t.leaked_fds,
            t.leaked_shared_maps,
        ),
    )
}

/// A call in flight: its ticket, its argument, and the kills the pool had
/// noticed when it was submitted.
#[derive(Debug)]
struct InFlight {
    ticket: Ticket<u64>,
    x: u64,
    idempotent: bool,
    /// Every kill after these may have taken the call: a worker killed
    /// before the submit but not yet noticed still takes calls.
    noticed_at_submit: u64,
    submitted: Instant,
}

/// The pool's half of a round: calls under kills and resizes, then a
/// settle, a last call of each kind, and a bounded stop.
fn pool_round(method: StartMethod, rng: &mut Rng, totals: &mut Totals, faults: &mut Faults) {
    let seen = Arc::new(Mutex::new(Seen::default()));
    let hook_seen = Arc::clone(&seen);
    let built = Pool::builder("soak")
        .workers(4)
        .restart(unlimited(RestartPolicy::always()))
        .on_event(move |e| lock(&hook_seen).on_event(e))
        .build(move |name| {
            MessageProcess::builder(name)
                .start_method(method)
                .build_portable(SupWorker::default())
        });
    let mut pool = match built {
        Ok(pool) => pool,
        Err(e) => return faults.add(format!("the pool did not start: {e}")),
    };
    let mut outstanding: VecDeque<InFlight> = VecDeque::new();
    let mut killed: HashSet<i32> = HashSet::new();
    let mut kills = 0u64;
    let mut next_x = 0u64;
    let now = Instant::now();
    let end = now + POOL_PHASE;
    let mut next_kill = now + Duration::from_millis(20 + rng.below(31));
    let mut next_resize = now + Duration::from_millis(100 + rng.below(300));
    let mut refused_since: Option<Instant> = None;
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_kill {
            let victims: Vec<i32> = pool
                .status()
                .iter()
                .filter(|s| s.state == ProcessState::Running)
                .filter_map(|s| s.pid)
                .filter(|p| !killed.contains(p))
                .collect();
            if !victims.is_empty() {
                let pid = victims[rng.below(victims.len() as u64) as usize];
                lock(&seen).killed_at.insert(pid, Instant::now());
                if kill(pid, libc::SIGKILL).is_ok() {
                    killed.insert(pid);
                    kills += 1;
                }
            }
            next_kill = now + Duration::from_millis(20 + rng.below(31));
        }
        if now >= next_resize && !outstanding.is_empty() {
            let n = 1 + rng.below(6) as usize;
            if let Err(e) = pool.resize(n) {
                faults.add(format!("resize({n}): {e}"));
            }
            totals.resizes += 1;
            next_resize = now + Duration::from_millis(100 + rng.below(300));
        }
        // What has arrived, in any order (reads no socket).
        let mut i = 0;
        while i < outstanding.len() {
            if outstanding[i].ticket.is_ready() {
                if let Some(call) = outstanding.remove(i) {
                    settle(&mut pool, call, kills, totals, faults);
                }
            } else {
                i += 1;
            }
        }
        if outstanding.len() < IN_FLIGHT {
            let idempotent = rng.below(2) == 0;
            // Mostly short calls, now and then one of a few milliseconds.
            let us = if rng.below(16) == 0 {
                1_000 + rng.below(4_000)
            } else {
                rng.below(300)
            };
            let command = if idempotent { MIX } else { TALLY };
            // Read before the submit: a death it notices may take the call.
            let noticed = lock(&seen).killed_exits;
            match pool.submit_timeout(command.with((next_x, us)), Duration::from_millis(5)) {
                Ok(ticket) => {
                    refused_since = None;
                    totals.calls += 1;
                    outstanding.push_back(InFlight {
                        ticket,
                        x: next_x,
                        idempotent,
                        noticed_at_submit: noticed,
                        submitted: Instant::now(),
                    });
                    next_x += 1;
                }
                // Every worker is at its bound (after a shrink to one):
                // room comes as calls end.
                Err(e) if e.kind() == &ErrorKind::Timeout => {
                    let since = *refused_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > WAIT {
                        faults.add(format!("no room for a call in {WAIT:?}"));
                        break;
                    }
                }
                Err(e) => {
                    faults.add(format!("submit: {e}"));
                    break;
                }
            }
        } else if let Some(oldest) = outstanding.front() {
            let slice = next_kill.saturating_duration_since(Instant::now());
            match pool.wait_timeout(&oldest.ticket, slice.min(Duration::from_millis(5))) {
                Err(e) if e.kind() == &ErrorKind::Timeout => {
                    if oldest.submitted.elapsed() > WAIT {
                        faults.add(format!("call {} unanswered after {WAIT:?}", oldest.x));
                        let _ = outstanding.pop_front();
                    }
                }
                // Answered or ended: the wait took the result.
                result => {
                    if let Some(call) = outstanding.pop_front() {
                        judge(result, &call, kills, totals, faults);
                    }
                }
            }
        }
    }
    // No more kills: everything in flight ends.
    for call in outstanding.drain(..) {
        settle(&mut pool, call, kills, totals, faults);
    }
    // Every kill is seen as an exit by SIGKILL (the pool notices a death
    // when it next looks).
    let until = Instant::now() + WAIT;
    while lock(&seen).killed_exits < kills && Instant::now() < until {
        let _ = pool.poll(Duration::from_millis(5));
    }
    let killed_exits = lock(&seen).killed_exits;
    if killed_exits != kills {
        faults.add(format!(
            "{kills} kills but {killed_exits} exits by SIGKILL seen"
        ));
    }
    // Back to four, and both commands answered right.
    if let Err(e) = pool.resize(4) {
        faults.add(format!("resize(4) after the kills: {e}"));
    }
    let until = Instant::now() + WAIT;
    while pool.serving() < 4 && Instant::now() < until {
        let _ = pool.poll(Duration::from_millis(5));
    }
    if pool.serving() != 4 {
        faults.add(format!("{} workers serving, not 4", pool.serving()));
    }
    for (command, expect) in [(MIX, mix(7)), (TALLY, tally(7))] {
        match pool
            .submit_timeout(command.with((7, 0)), WAIT)
            .and_then(|t| pool.wait_timeout(&t, WAIT))
        {
            Ok(v) if v == expect => {}
            other => faults.add(format!("{} after the kills gave {other:?}", command.name())),
        }
    }
    let t = Instant::now();
    pool.stop(WAIT);
    let took = t.elapsed();
    totals.worst_stop = totals.worst_stop.max(took);
    if took > WAIT + Duration::from_secs(1) {
        faults.add(format!("the pool's stop took {took:?}"));
    }
    let seen = lock(&seen);
    totals.kills += kills;
    totals.restarts += seen.restarts;
    totals.worst_kill_to_serving = totals.worst_kill_to_serving.max(seen.worst_kill_to_serving);
}

/// Waits (bounded) for a call's end and judges it.
fn settle(pool: &mut Pool, call: InFlight, kills: u64, totals: &mut Totals, faults: &mut Faults) {
    let left = WAIT.saturating_sub(call.submitted.elapsed());
    let result = pool.wait_timeout(&call.ticket, left);
    judge(result, &call, kills, totals, faults);
}

/// A call's end: its own value; or, not idempotent, `Disconnected` by the
/// SIGKILL; or, idempotent, `Disconnected` only if two kills could have
/// reached it (`kills` is the count so far).
fn judge(
    result: forkbridge::Result<u64>,
    call: &InFlight,
    kills: u64,
    totals: &mut Totals,
    faults: &mut Faults,
) {
    let expect = if call.idempotent {
        mix(call.x)
    } else {
        tally(call.x)
    };
    let kind = if call.idempotent { "mix" } else { "tally" };
    match result {
        Ok(v) if v == expect => totals.answered += 1,
        Ok(v) => faults.add(format!("{kind}({}) gave {v}, not {expect}", call.x)),
        Err(e) if e.is_disconnected() => {
            let signal = e.exit_status().and_then(|s| s.signal());
            if signal != Some(libc::SIGKILL) {
                faults.add(format!(
                    "{kind}({}) disconnected without the SIGKILL status: {e}",
                    call.x
                ));
            } else if !call.idempotent {
                totals.disconnected += 1;
            } else if kills.saturating_sub(call.noticed_at_submit) >= 2 {
                totals.disconnected += 1;
                totals.twice_killed += 1;
            } else {
                faults.add(format!(
                    "idempotent mix({}) disconnected with {} kill(s) that could reach it: {e}",
                    call.x,
                    kills.saturating_sub(call.noticed_at_submit)
                ));
            }
        }
        Err(e) => faults.add(format!("{kind}({}) ended with {e}", call.x)),
    }
}

/// The supervisor's half of a round: three children killed at random and
/// restarted on failure, one that fails in `pre_run` given up after its
/// limit; then each answers a ping, and the stop leaves nothing.
fn supervisor_round(method: StartMethod, rng: &mut Rng, totals: &mut Totals, faults: &mut Faults) {
    const NAMES: [&str; 3] = ["sup-a", "sup-b", "sup-c"];
    let make = move |fail_pre_run: bool| {
        move |name: &str| {
            MessageProcess::builder(name)
                .start_method(method)
                .build_portable(SupWorker {
                    fail_pre_run,
                    ..SupWorker::default()
                })
        }
    };
    let mut sup = Supervisor::new().stop_timeout(WAIT);
    for name in NAMES {
        if let Err(e) = sup.add(name, unlimited(RestartPolicy::on_failure()), make(false)) {
            return faults.add(format!("{name} did not start: {e}"));
        }
    }
    let failing = RestartPolicy::on_failure()
        .max_restarts(FAILING_LIMIT, Duration::from_secs(60))
        .backoff(Duration::from_millis(1), Duration::from_millis(4));
    if let Err(e) = sup.add("failing", failing, make(true)) {
        return faults.add(format!("the failing child did not start: {e}"));
    }
    let mut tally = SupTally::default();
    let mut killed: HashSet<i32> = HashSet::new();
    let now = Instant::now();
    let end = now + SUPERVISOR_PHASE;
    let mut next_kill = now + Duration::from_millis(20 + rng.below(31));
    while Instant::now() < end {
        let now = Instant::now();
        if now >= next_kill {
            let victims: Vec<i32> = NAMES
                .iter()
                .filter_map(|n| sup.get(n).and_then(MessageProcess::pid))
                .filter(|p| !killed.contains(p))
                .collect();
            if !victims.is_empty() {
                let pid = victims[rng.below(victims.len() as u64) as usize];
                if kill(pid, libc::SIGKILL).is_ok() {
                    killed.insert(pid);
                    tally.kills += 1;
                }
            }
            next_kill = now + Duration::from_millis(20 + rng.below(31));
        }
        let slice = next_kill.min(end).saturating_duration_since(Instant::now());
        match sup.wait_event(slice) {
            Ok(Some(event)) => tally.note(&event, faults),
            Ok(None) => {}
            Err(e) => {
                faults.add(format!("wait_event: {e}"));
                break;
            }
        }
    }
    // Every kill seen and restarted, the failing child given up.
    let until = Instant::now() + WAIT;
    while (tally.killed_exits < tally.kills || tally.restarts < tally.kills || tally.give_ups == 0)
        && Instant::now() < until
    {
        match sup.wait_event(Duration::from_millis(10)) {
            Ok(Some(event)) => tally.note(&event, faults),
            Ok(None) => {}
            Err(e) => {
                faults.add(format!("wait_event: {e}"));
                break;
            }
        }
    }
    if tally.killed_exits != tally.kills || tally.restarts != tally.kills {
        faults.add(format!(
            "supervisor: {} kills, {} exits by SIGKILL, {} restarts",
            tally.kills, tally.killed_exits, tally.restarts
        ));
    }
    if tally.give_ups != 1 || tally.failing_exits != u64::from(FAILING_LIMIT) + 1 {
        faults.add(format!(
            "the failing child: {} give-ups after {} exits with 1 (want 1 after {})",
            tally.give_ups,
            tally.failing_exits,
            FAILING_LIMIT + 1
        ));
    }
    if let Some(status) = sup.status().iter().find(|s| s.name == "failing") {
        if status.state != ProcessState::GivenUp || status.restarts != FAILING_LIMIT {
            faults.add(format!(
                "the failing child is {:?} after {} restarts",
                status.state, status.restarts
            ));
        }
    }
    // Each killed child is back and answers.
    for name in NAMES {
        let Some(p) = sup.process(name) else {
            faults.add(format!("{name} is not running after the kills"));
            continue;
        };
        let pong = p
            .send(Message::new("ping"))
            .and_then(|()| p.recv_timeout(WAIT));
        match pong {
            Ok(m) if m.command() == "pong" => {}
            other => faults.add(format!("{name} answered a ping with {other:?}")),
        }
    }
    sup.stop();
    totals.sup_kills += tally.kills;
    totals.sup_restarts += tally.restarts;
    totals.give_ups += tally.give_ups;
}

/// What the supervisor reported in a round.
#[derive(Debug, Default)]
struct SupTally {
    kills: u64,
    killed_exits: u64,
    restarts: u64,
    failing_exits: u64,
    give_ups: u64,
}

impl SupTally {
    fn note(&mut self, event: &SupervisorEvent, faults: &mut Faults) {
        match event {
            SupervisorEvent::Exited {
                name,
                status,
                restart_in,
                ..
            } => {
                let code = status.and_then(|s| s.code());
                let signal = status.and_then(|s| s.signal());
                if name == "failing" {
                    self.failing_exits += 1;
                    if code != Some(1) {
                        faults.add(format!("the failing child exited with {status:?}"));
                    }
                } else if signal == Some(libc::SIGKILL) && restart_in.is_some() {
                    self.killed_exits += 1;
                } else {
                    faults.add(format!(
                        "{name} exited with {status:?}, restart in {restart_in:?}"
                    ));
                }
            }
            SupervisorEvent::Restarted { name, .. } => {
                if name != "failing" {
                    self.restarts += 1;
                }
            }
            SupervisorEvent::GaveUp { name, error } => {
                self.give_ups += 1;
                let held = name == "failing"
                    && matches!(
                        error.kind(),
                        ErrorKind::GaveUp { restarts, exits }
                            if *restarts == FAILING_LIMIT
                                && exits.len() == FAILING_LIMIT as usize + 1
                                && exits.iter().all(|s| s.and_then(|s| s.code()) == Some(1))
                    );
                if !held {
                    faults.add(format!("{name} given up with {error:?}"));
                }
            }
            // The failing child's report of its `pre_run` error.
            SupervisorEvent::Message { .. } => {}
            other => faults.add(format!("unexpected event {other:?}")),
        }
    }
}
