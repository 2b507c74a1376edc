//! Remote backends over real Zenoh sessions on loopback: this binary runs
//! the cases as the frontend, and runs itself again as the serving program
//! (a second process, listening on a port the kernel picks).
//!
//! `harness = false`: cases run one after another on the main thread,
//! each under `alarm` and with every wait bounded, and each checks that it
//! left no child process behind.

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use forkbridge::{
    Backend, BackendContext, Command as Call, ErrorKind as ProcessErrorKind, EventGroup,
    EventIndex, HandlerResult, Handlers, Message, MessageProcess, Pool, RestartPolicy, message,
};
use forkbridge_testkit::{alarm, alive, children, free_port, kill, wait_until, wait_within};
use forkbridge_zenoh::{Agent, Config, ErrorKind, Link, serve};

/// The bound of every wait.
const WAIT: Duration = Duration::from_secs(10);
/// The lease of the tests' links: short, so host loss is quick to see.
const LEASE: Duration = Duration::from_secs(1);
const SERVE_ENV: &str = "FB_ZENOH_TEST_SERVE";

/// A backend with plain and typed handlers; it crosses as data, so an
/// agent can start it.
#[derive(Debug, Default, serde::Serialize, serde::Deserialize)]
pub struct Probe {
    calls: u64,
    /// The relayed group of a served probe.
    #[serde(skip)]
    events: Option<EventGroup>,
}

#[forkbridge::handlers(custom_backend, frontend = ProbeClient)]
impl Probe {
    /// x².
    pub fn square(&mut self, x: i64) -> i64 {
        self.calls += 1;
        x * x
    }

    /// Counts, one way.
    pub fn bump(&mut self) {
        self.calls += 1;
    }

    /// Calls so far.
    pub fn calls(&mut self) -> u64 {
        self.calls
    }

    /// Always fails.
    pub fn refuse(&mut self) -> Result<(), String> {
        Err("refused".into())
    }

    /// The backend's pid on its host.
    pub fn host_pid(&mut self) -> i32 {
        std::process::id() as i32
    }

    /// Sends `n` messages `item(i)`, then exits with status 7.
    pub fn burst_then_exit(&mut self, ctx: &mut BackendContext, n: u64) {
        for i in 0..n {
            let _ = ctx.send(message!("item", i = i));
        }
        let _ = ctx.flush();
        // SAFETY: ends the process at once, which is the point.
        unsafe { libc::_exit(7) }
    }

    /// Counts a call that carries `bytes`.
    pub fn take(&mut self, bytes: Vec<u8>) {
        self.calls += 1;
        std::hint::black_box(bytes);
    }

    /// Sleeps `ms` milliseconds: a backend that falls behind.
    pub fn nap(&mut self, ms: u64) {
        std::thread::sleep(Duration::from_millis(ms));
    }

    /// Sets the event of `index` after `ms` milliseconds.
    pub fn ack(&mut self, index: EventIndex, ms: u64) -> Result<bool, String> {
        std::thread::sleep(Duration::from_millis(ms));
        let group = self.events.as_ref().ok_or("no event group")?;
        group.set(index).map_err(|e| e.to_string())
    }

    /// Never answers.
    pub fn hang(&mut self) {
        std::thread::sleep(Duration::from_secs(3600));
    }
}

impl Probe {
    fn echo(&mut self, ctx: &mut BackendContext, msg: Message) -> HandlerResult {
        let mut reply = Message::new("echo");
        for (k, v) in msg.params() {
            reply.set(k, v.clone());
        }
        ctx.send(reply)?;
        Ok(())
    }
}

impl Backend for Probe {
    fn register(handlers: &mut Handlers<Self>) {
        Self::register_typed(handlers);
        handlers.on("echo", Self::echo);
    }
}

/// The serving program: `FB_ZENOH_TEST_SERVE=<namespace>,<names…>`.
fn serve_main(spec: &str) -> ! {
    let mut parts = spec.split(',');
    let namespace = parts.next().expect("a namespace").to_owned();
    let outlive = std::env::var("FB_ZENOH_TEST_OUTLIVE").is_ok();
    let processes: Vec<_> = parts
        .map(|name| {
            let events = EventGroup::relayed(4).expect("a relayed group");
            let probe = Probe {
                events: Some(events.clone()),
                ..Probe::default()
            };
            let builder = MessageProcess::builder(name).events(&events);
            builder.build(probe).expect("a process")
        })
        .collect();
    let ip = std::env::var("FB_ZENOH_TEST_LISTEN").unwrap_or_else(|_| "127.0.0.1".into());
    let port = free_port(&ip);
    let tls = std::env::var("FB_ZENOH_TEST_TLS").ok();
    let scheme = if tls.is_some() { "tls" } else { "tcp" };
    let endpoint = format!("{scheme}/{ip}:{port}");
    let config = Config::listen(&endpoint)
        .namespace(namespace)
        .lease(LEASE)
        .outlive_frontend(outlive);
    #[cfg(feature = "tls")]
    let config = match &tls {
        Some(dir) => config.tls(certificates::side(dir, "server")),
        None => config,
    };
    let served = serve(config, processes).expect("serving");
    println!("ENDPOINT {endpoint}");
    let mut code = 0;
    for (name, status) in served.wait() {
        eprintln!("served '{name}' ended: {status:?}");
        if status.is_none() {
            code = 1;
        }
    }
    std::process::exit(code)
}

/// A serving program of its own, and its endpoint.
struct Host {
    child: Child,
    endpoint: String,
    namespace: String,
}

fn host(names: &[&str]) -> Host {
    host_with(names, &[])
}

fn host_with(names: &[&str], env: &[(&str, &str)]) -> Host {
    let namespace = namespace();
    let mut env = env.to_vec();
    let spec = format!("{namespace},{}", names.join(","));
    env.push((SERVE_ENV, &spec));
    started(&env, namespace.clone())
}

/// An agent program of its own ("agent-1", `Probe` registered); it stops
/// its backends and exits when its stdin closes.
fn agent() -> Host {
    let namespace = namespace();
    started(&[("FB_ZENOH_TEST_AGENT", &namespace)], namespace.clone())
}

fn namespace() -> String {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    format!(
        "t{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
    )
}

/// Runs this program again with `env`, and reads its endpoint.
fn started(env: &[(&str, &str)], namespace: String) -> Host {
    started_in(&[], env, namespace)
}

/// As [`started`], the program run by `prefix` (`ip netns exec …`).
fn started_in(prefix: &[&str], env: &[(&str, &str)], namespace: String) -> Host {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = match prefix.split_first() {
        Some((first, rest)) => {
            let mut cmd = Command::new(first);
            cmd.args(rest).arg(&exe);
            cmd
        }
        None => Command::new(&exe),
    };
    cmd.stdout(Stdio::piped()).stdin(Stdio::piped());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("the serving program");
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .expect("its endpoint");
    let endpoint = line
        .trim()
        .strip_prefix("ENDPOINT ")
        .unwrap_or_else(|| panic!("no endpoint from the serving program: {line:?}"))
        .to_owned();
    Host {
        child,
        endpoint,
        namespace,
    }
}

impl Host {
    /// Tells an agent to stop (its stdin closes).
    fn close_stdin(&mut self) {
        drop(self.child.stdin.take());
    }

    fn link(&self) -> Link {
        Link::open(
            Config::connect(&self.endpoint)
                .namespace(&self.namespace)
                .lease(LEASE),
        )
        .expect("a link")
    }

    /// Waits for the serving program to end (its backends ended).
    fn join(mut self) -> std::process::ExitStatus {
        wait_within(&mut self.child, WAIT).expect("the serving program ends")
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `cases![a, b]`: the named functions, with their names.
macro_rules! cases {
    ($($case:ident),* $(,)?) => {
        &[$((stringify!($case), $case as fn())),*] as &[(&str, fn())]
    };
}

/// A frontend to be killed:
/// `FB_ZENOH_TEST_FRONTEND=<endpoint>,<namespace>,<name>` attaches, calls
/// `bump`, prints the backend's pid, and waits to be killed.
fn frontend_main(spec: &str) -> ! {
    let parts: Vec<&str> = spec.split(',').collect();
    let [endpoint, namespace, name] = parts[..] else {
        panic!("endpoint,namespace,name: {spec}")
    };
    let link = Link::open(Config::connect(endpoint).namespace(namespace).lease(LEASE)).unwrap();
    let mut p = ProbeClient::new(link.attach(name).unwrap());
    p.bump().unwrap();
    let pid = p.host_pid().unwrap();
    if std::env::var("FB_ZENOH_TEST_STALL").is_ok() {
        // The backend stops reading; everything on the way fills up.
        p.hang().unwrap();
        std::thread::spawn(move || while p.take(vec![0u8; 64 << 10]).is_ok() {});
        std::thread::sleep(Duration::from_secs(2));
    }
    println!("ATTACHED {pid}");
    std::thread::sleep(WAIT * 6);
    std::process::exit(1)
}

/// The agent program: `FB_ZENOH_TEST_AGENT=<namespace>` runs agent
/// "agent-1" with `Probe` registered until its stdin closes.
fn agent_main(namespace: &str) -> ! {
    let endpoint = format!("tcp/127.0.0.1:{}", free_port("127.0.0.1"));
    let agent = Agent::builder("agent-1")
        .register::<Probe>("Probe")
        .start(Config::listen(&endpoint).namespace(namespace).lease(LEASE))
        .expect("the agent");
    println!("ENDPOINT {endpoint}");
    let mut rest = String::new();
    let _ = std::io::stdin().read_line(&mut rest);
    for (name, status) in agent.stop() {
        eprintln!("agent: '{name}' ended: {status:?}");
    }
    std::process::exit(0)
}

/// The frontend of the host-loss case, in the frontend's namespace:
/// `FB_ZENOH_TEST_LOSS=<endpoint>,<namespace>,<name>,<netns>,<iface>`
/// attaches, cuts the backend's side (`ip -n <netns> link set <iface>
/// down`), and reports how long until its wait ended, and how.
fn loss_frontend_main(spec: &str) -> ! {
    let parts: Vec<&str> = spec.split(',').collect();
    let [endpoint, namespace, name, netns, iface] = parts[..] else {
        panic!("endpoint,namespace,name,netns,iface: {spec}")
    };
    let link = Link::open(Config::connect(endpoint).namespace(namespace).lease(LEASE)).unwrap();
    let mut p = ProbeClient::new(link.attach(name).unwrap());
    assert_eq!(p.square(3).unwrap(), 9);
    // A call in flight when the host goes silent.
    p.hang().unwrap();
    let t = Instant::now();
    ip(&["-n", netns, "link", "set", iface, "down"]).unwrap();
    let err = p.recv_timeout(WAIT).unwrap_err();
    let seen = t.elapsed();
    println!(
        "RESULT scenario=host_loss_seen value={:.0} unit=ms baseline={:.0} ratio={:.3} target=<=1.2",
        seen.as_secs_f64() * 1e3,
        LEASE.as_secs_f64() * 1e3,
        seen.as_secs_f64() / LEASE.as_secs_f64()
    );
    println!(
        "SEEN {} {} {}",
        err.is_disconnected(),
        err.is_host_lost(),
        seen.as_millis()
    );
    std::process::exit(0)
}

/// Runs `ip` with `args`; its error output on failure.
fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("ip {}: {e}", args.join(" ")))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn main() {
    // The agent's fork server runs this program again, from here.
    forkbridge::init();
    if let Ok(spec) = std::env::var("FB_ZENOH_TEST_LOSS") {
        loss_frontend_main(&spec);
    }
    if let Ok(namespace) = std::env::var("FB_ZENOH_TEST_AGENT") {
        agent_main(&namespace);
    }
    if let Ok(spec) = std::env::var(SERVE_ENV) {
        serve_main(&spec);
    }
    if let Ok(spec) = std::env::var("FB_ZENOH_TEST_FRONTEND") {
        frontend_main(&spec);
    }
    let cases = cases![
        the_local_api_works_against_a_remote_backend,
        sync_indices_work_across_hosts,
        a_killed_remote_backend_is_disconnected_with_signal_9,
        a_remote_backends_messages_come_before_its_exit_status,
        nothing_is_dropped_while_the_backend_falls_behind,
        a_killed_serving_program_disconnects_every_frontend,
        a_killed_frontend_takes_its_backends_within_a_lease,
        a_killed_frontend_takes_its_stalled_backend_within_a_lease,
        a_stalled_backend_holds_up_only_its_own_frontend,
        a_backend_may_outlive_its_frontend,
        stop_escalates_to_signals_across_the_link,
        attach_errors_are_typed,
        garbage_and_oversized_samples_are_refused_and_the_link_survives,
        the_async_frontend_works_against_a_remote_backend,
        an_agent_starts_registered_backends_and_reports_their_exit,
        a_killed_agent_disconnects_every_frontend,
        a_pool_spans_hosts_and_replaces_a_killed_remote_worker,
        a_lost_host_is_seen_within_a_lease_and_a_new_backend_attaches,
        tls_links_need_a_certificate_the_ca_signed,
        the_example_runs_its_pipeline_on_a_second_host,
    ];
    let filters: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    let mut failed = Vec::new();
    for (name, case) in cases {
        if !filters.is_empty() && !filters.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        alarm(60);
        let t = Instant::now();
        let outcome = std::panic::catch_unwind(case);
        alarm(0);
        let left = children();
        match (outcome, left.is_empty()) {
            (Ok(()), true) => println!("test {name} ... ok ({:.0?})", t.elapsed()),
            (Ok(()), false) => {
                println!("test {name} ... FAILED: left child processes {left:?}");
                failed.push(*name);
            }
            (Err(_), _) => {
                println!("test {name} ... FAILED");
                failed.push(*name);
            }
        }
        for pid in left {
            let _ = kill(pid, libc::SIGKILL);
            forkbridge_testkit::reap(pid);
        }
    }
    println!("\ntest result: {} failed", failed.len());
    if !failed.is_empty() {
        std::process::exit(1);
    }
}

fn the_local_api_works_against_a_remote_backend() {
    let host = host(&["probe"]);
    let link = host.link();
    let mut p = ProbeClient::new(link.attach("probe").unwrap());
    // Messages, fed and flushed, in order.
    for i in 0..200 {
        p.feed(message!("echo", n = i)).unwrap();
    }
    p.flush().unwrap();
    for i in 0..200 {
        let m = p.recv_timeout(WAIT).unwrap();
        assert_eq!(m.param::<i64>("n").unwrap(), i);
    }
    assert_eq!(p.try_recv().unwrap_err().kind(), &ProcessErrorKind::Empty);
    // Calls, casts, a remote error, an unknown command.
    assert_eq!(p.square(12).unwrap(), 144);
    p.bump().unwrap();
    assert_eq!(p.calls().unwrap(), 2);
    let err = p.refuse().unwrap_err();
    assert!(
        matches!(err.kind(), ProcessErrorKind::Remote { .. }),
        "{err}"
    );
    p.send(Message::new("no_such_command")).unwrap();
    assert_eq!(p.recv_timeout(WAIT).unwrap().command(), "error");
    // The remote pid is not a local one.
    assert!(p.host_pid().unwrap() > 0);
    assert_eq!(MessageProcess::pid(&p), None);
    // Its fd polls readable when a message waits.
    p.send(message!("echo", n = 1)).unwrap();
    let mut fds = [libc::pollfd {
        fd: std::os::fd::AsRawFd::as_raw_fd(&*p),
        events: libc::POLLIN,
        revents: 0,
    }];
    // SAFETY: one valid pollfd for the duration of the call.
    assert_eq!(unsafe { libc::poll(fds.as_mut_ptr(), 1, 10_000) }, 1);
    assert_eq!(p.try_recv().unwrap().command(), "echo");
    // Stop: the request crosses, the status comes back.
    let mut p = p.into_process();
    let status = p.stop().unwrap();
    assert!(status.success(), "{status}");
    assert!(host.join().success());
}

fn sync_indices_work_across_hosts() {
    let host = host(&["acker"]);
    let link = host.link();
    let events = EventGroup::new(1).unwrap();
    let builder = MessageProcess::builder("acker").events(&events);
    let mut p = ProbeClient::new(link.attach_with(builder).unwrap());
    for _ in 0..20 {
        let sync = events.sync_index().unwrap();
        assert!(p.ack(sync.index(), 0).unwrap());
        sync.wait_timeout(WAIT).unwrap();
    }
    // A set that comes after the frontend gave up sets nothing, even when
    // the same event is reserved again meanwhile.
    let sync = events.sync_index().unwrap();
    let late = sync.index();
    MessageProcess::cast(&mut p, "ack", &(late, 300u64)).unwrap();
    let gave_up = sync.wait_timeout(Duration::from_millis(20)).unwrap_err();
    assert_eq!(gave_up.kind(), &ProcessErrorKind::Timeout);
    let again = events.sync_index().unwrap();
    assert_eq!(again.index().slot(), late.slot());
    assert!(!again.event().wait_timeout(Duration::from_millis(800)));
    assert!(p.ack(again.index(), 0).unwrap());
    again.wait_timeout(WAIT).unwrap();
    assert!(p.into_process().stop().unwrap().success());
    assert!(host.join().success());
}

fn a_killed_remote_backend_is_disconnected_with_signal_9() {
    let host = host(&["victim"]);
    let link = host.link();
    let mut p = ProbeClient::new(link.attach("victim").unwrap());
    let pid = p.host_pid().unwrap();
    kill(pid, libc::SIGKILL).unwrap();
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected() && !err.is_host_lost(), "{err}");
    assert_eq!(
        err.exit_status().and_then(|s| s.signal()),
        Some(libc::SIGKILL)
    );
    // A call now fails at once, the same way.
    let err = p.square(2).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    drop(p);
    host.join();
}

fn a_killed_serving_program_disconnects_every_frontend() {
    let host = host(&["a", "b"]);
    let link = host.link();
    let mut a = ProbeClient::new(link.attach("a").unwrap());
    let mut b = ProbeClient::new(link.attach("b").unwrap());
    let pids = [a.host_pid().unwrap(), b.host_pid().unwrap()];
    // A call in flight when it dies ends too.
    a.hang().unwrap();
    kill(host.child.id() as i32, libc::SIGKILL).unwrap();
    let t = Instant::now();
    let err = a.call::<_, i64>("square", &(3i64,), WAIT).unwrap_err();
    assert!(err.is_disconnected() && err.is_host_lost(), "{err}");
    let err = b.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected() && err.is_host_lost(), "{err}");
    assert!(t.elapsed() < WAIT, "{:?}", t.elapsed());
    // Its backends follow it (their parent-death signal).
    assert!(wait_until(WAIT, || pids.iter().all(|&p| !alive(p))));
    drop((a, b));
    drop(host);
}

/// Attaches to `name` from a frontend process of its own, then kills that
/// process (SIGKILL: no orderly stop); returns the backend's pid.
fn attach_from_a_killed_frontend(host: &Host, name: &str) -> i32 {
    attach_from_a_killed_frontend_with(host, name, &[])
}

fn attach_from_a_killed_frontend_with(host: &Host, name: &str, env: &[(&str, &str)]) -> i32 {
    let mut frontend = Command::new(std::env::current_exe().unwrap());
    frontend.envs(env.iter().copied());
    let mut frontend = frontend
        .env(
            "FB_ZENOH_TEST_FRONTEND",
            format!("{},{},{name}", host.endpoint, host.namespace),
        )
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(frontend.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let pid: i32 = line
        .trim()
        .strip_prefix("ATTACHED ")
        .unwrap_or_else(|| panic!("{line:?}"))
        .parse()
        .unwrap();
    assert!(alive(pid));
    frontend.kill().unwrap();
    frontend.wait().unwrap();
    pid
}

fn a_killed_frontend_takes_its_backends_within_a_lease() {
    let host = host(&["orphan"]);
    let pid = attach_from_a_killed_frontend(&host, "orphan");
    let t = Instant::now();
    assert!(
        wait_until(WAIT, || !alive(pid)),
        "the backend outlived its frontend"
    );
    assert!(
        t.elapsed() < LEASE + LEASE / 5,
        "gone after {:?}",
        t.elapsed()
    );
    assert!(host.join().success());
}

fn a_killed_frontend_takes_its_stalled_backend_within_a_lease() {
    let host = host(&["stalled"]);
    let pid = attach_from_a_killed_frontend_with(&host, "stalled", &[("FB_ZENOH_TEST_STALL", "1")]);
    let t = Instant::now();
    // Its stop request cannot get through a full stream: the serving side
    // escalates to signals within the process's bounds.
    assert!(
        wait_until(WAIT, || !alive(pid)),
        "the stalled backend outlived its frontend"
    );
    assert!(
        t.elapsed() < LEASE + Duration::from_secs(7),
        "gone after {:?}",
        t.elapsed()
    );
    host.join();
}

fn a_stalled_backend_holds_up_only_its_own_frontend() {
    let host = host(&["stuck", "other"]);
    let link = host.link();
    let mut stuck = ProbeClient::new(link.attach("stuck").unwrap());
    let mut other = ProbeClient::new(link.attach("other").unwrap());
    stuck.hang().unwrap();
    let filler = std::thread::spawn(move || {
        let mut sent = 0u64;
        while stuck.take(vec![0u8; 64 << 10]).is_ok() {
            sent += 1;
        }
        sent
    });
    // Longer than any wait a blocked sender is allowed before the link is
    // taken for dead (Zenoh's own is 5 s).
    std::thread::sleep(Duration::from_secs(7));
    assert!(
        !filler.is_finished(),
        "the stuck backend's sender should wait"
    );
    for i in 0..10 {
        assert_eq!(other.square(i).unwrap(), i * i, "the other backend answers");
    }
    assert!(other.into_process().stop().unwrap().success());
    drop(host);
    let sent = filler.join().unwrap();
    assert!(sent > 0);
}

fn a_backend_may_outlive_its_frontend() {
    let host = host_with(&["durable"], &[("FB_ZENOH_TEST_OUTLIVE", "1")]);
    let pid = attach_from_a_killed_frontend(&host, "durable");
    std::thread::sleep(LEASE + LEASE / 2);
    assert!(alive(pid));
    // A second frontend finds it as the first left it.
    let link = host.link();
    let mut p = ProbeClient::new(link.attach("durable").unwrap());
    assert_eq!(p.calls().unwrap(), 1);
    assert!(p.into_process().stop().unwrap().success());
    host.join();
}

fn stop_escalates_to_signals_across_the_link() {
    let host = host(&["stuck"]);
    let link = host.link();
    let mut p = link
        .attach_with(
            MessageProcess::builder("stuck")
                .stop_timeout(Duration::from_millis(200))
                .kill_timeout(Duration::from_millis(200)),
        )
        .unwrap();
    p.cast("hang", &()).unwrap();
    let t = Instant::now();
    let status = p.stop().unwrap();
    // The stop request waits behind the hanging call: SIGTERM ends it.
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status}");
    assert!(t.elapsed() < WAIT);
    host.join();
}

fn attach_errors_are_typed() {
    let host = host(&["only"]);
    let link = Link::open(
        Config::connect(&host.endpoint)
            .namespace(&host.namespace)
            .attach_timeout(Duration::from_millis(300)),
    )
    .unwrap();
    let err = link.attach("nobody").unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NotFound, "{err}");
    assert_eq!(link.attach("a/b").unwrap_err().kind(), &ErrorKind::Config);
    let p = link.attach("only").unwrap();
    assert_eq!(link.attach("only").unwrap_err().kind(), &ErrorKind::Busy);
    drop(p);
    let bad = Link::open(Config::connect("tcp/127.0.0.1:1").lease(Duration::ZERO));
    assert_eq!(bad.unwrap_err().kind(), &ErrorKind::Config);
    let bad = Link::open(Config::listen("nonsense"));
    assert!(bad.is_err());
    host.join();
}

fn garbage_and_oversized_samples_are_refused_and_the_link_survives() {
    use zenoh::Wait;
    let host = host(&["sturdy"]);
    let link = host.link();
    let mut p = ProbeClient::new(link.attach("sturdy").unwrap());
    // Another peer on the network writes into the backend's input.
    let intruder = zenoh::open({
        let mut c = zenoh::Config::default();
        c.insert_json5("mode", "\"peer\"").unwrap();
        c.insert_json5("scouting/multicast/enabled", "false")
            .unwrap();
        c.insert_json5("connect/endpoints", &format!("[\"{}\"]", host.endpoint))
            .unwrap();
        c
    })
    .wait()
    .unwrap();
    let key = format!("fb/{}/sturdy/in", host.namespace);
    std::thread::sleep(Duration::from_millis(300));
    intruder.put(&key, vec![0xffu8; 64]).wait().unwrap(); // garbage
    let mut huge = (128u32 << 20).to_le_bytes().to_vec(); // over 64 MiB
    huge.extend_from_slice(&[0; 16]);
    intruder.put(&key, huge).wait().unwrap();
    intruder.put(&key, vec![5, 0, 0, 0, 0, 1]).wait().unwrap(); // cut short
    // The backend's stream is still in step.
    assert_eq!(p.square(9).unwrap(), 81);
    intruder.close().wait().unwrap();
    assert!(p.into_process().stop().unwrap().success());
    host.join();
}

fn the_async_frontend_works_against_a_remote_backend() {
    let host = host(&["async"]);
    let link = host.link();
    let p = link.attach("async").unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        let mut p = p.into_async().unwrap();
        p.send(message!("echo", n = 5)).await.unwrap();
        let m = tokio::time::timeout(WAIT, p.recv()).await.unwrap().unwrap();
        assert_eq!(m.param::<i64>("n").unwrap(), 5);
        let sq: i64 = p.call("square", &(7i64,), WAIT).await.unwrap();
        assert_eq!(sq, 49);
        assert!(p.stop().await.unwrap().success());
    });
    host.join();
}

fn an_agent_starts_registered_backends_and_reports_their_exit() {
    let mut agent = agent();
    let link = agent.link();
    let start = |name: &str| {
        link.start_on(
            "agent-1",
            "Probe",
            MessageProcess::builder(name),
            &Probe::default(),
        )
        .map(ProbeClient::new)
    };
    let mut a = start("w1").unwrap();
    let mut b = start("w2").unwrap();
    assert_eq!(a.square(5).unwrap(), 25);
    b.bump().unwrap();
    assert_eq!(b.calls().unwrap(), 1);
    // Each is a process of its own, forked by the agent's fork server.
    let (pa, pb) = (a.host_pid().unwrap(), b.host_pid().unwrap());
    assert_ne!(pa, pb);
    assert_ne!(pa, agent.child.id() as i32);
    // The agent reports a backend's death with its status.
    kill(pa, libc::SIGKILL).unwrap();
    let err = a.recv_timeout(WAIT).unwrap_err();
    assert_eq!(
        err.exit_status().and_then(|s| s.signal()),
        Some(libc::SIGKILL),
        "{err}"
    );
    assert!(b.into_process().stop().unwrap().success());
    // Refusals are typed, with the agent's reason.
    let err = link
        .start_on(
            "agent-1",
            "Nope",
            MessageProcess::builder("w3"),
            &Probe::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Refused, "{err}");
    assert!(err.to_string().contains("Nope"), "{err}");
    let c = start("w4").unwrap();
    let err = start("w4").unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::Refused, "{err}");
    drop(c);
    let err = link
        .start_on(
            "nobody",
            "Probe",
            MessageProcess::builder("w5"),
            &Probe::default(),
        )
        .unwrap_err();
    assert_eq!(err.kind(), &ErrorKind::NotFound, "{err}");
    drop(a);
    agent.close_stdin();
    assert!(agent.join().success());
}

fn a_pool_spans_hosts_and_replaces_a_killed_remote_worker() {
    let mut agent = agent();
    let link = std::sync::Arc::new(agent.link());
    let square = Call::<(i64,), i64>::new("square").idempotent();
    let host_pid = Call::<(), i32>::new("host_pid").idempotent();
    let mut pool = {
        let link = link.clone();
        Pool::builder("remote")
            .workers(2)
            .call_timeout(WAIT)
            .restart(RestartPolicy::always().backoff(Duration::ZERO, Duration::ZERO))
            .build(move |name| {
                let builder = MessageProcess::builder(name);
                Ok(link.start_on("agent-1", "Probe", builder, &Probe::default())?)
            })
            .unwrap()
    };
    let tickets: Vec<_> = (0..20i64)
        .map(|i| pool.submit(square.with((i,))).unwrap())
        .collect();
    for (i, t) in (0..20i64).zip(tickets) {
        assert_eq!(pool.wait(t).unwrap(), i * i);
    }
    // A worker killed on its host is replaced by one the agent starts;
    // calls go on being answered, by the survivor and the replacement.
    let victim = pool.call(host_pid.with(())).unwrap();
    kill(victim, libc::SIGKILL).unwrap();
    let mut seen = std::collections::HashSet::new();
    let t = Instant::now();
    while seen.len() < 2 && t.elapsed() < WAIT {
        assert_eq!(pool.call(square.with((7,))).unwrap(), 49);
        // Several in flight at once: both workers take some.
        let asked: Vec<_> = (0..8)
            .map(|_| pool.submit(host_pid.with(())).unwrap())
            .collect();
        for ticket in asked {
            let pid = pool.wait(ticket).unwrap();
            assert_ne!(pid, victim, "answered by a dead worker");
            seen.insert(pid);
        }
    }
    assert_eq!(seen.len(), 2, "not replaced: {:?}", pool.status());
    assert_eq!(pool.size(), 2);
    pool.stop(WAIT);
    agent.close_stdin();
    assert!(agent.join().success());
}

fn a_killed_agent_disconnects_every_frontend() {
    let agent = agent();
    let link = agent.link();
    let mut frontends: Vec<_> = ["k1", "k2"]
        .iter()
        .map(|name| {
            ProbeClient::new(
                link.start_on(
                    "agent-1",
                    "Probe",
                    MessageProcess::builder(*name),
                    &Probe::default(),
                )
                .unwrap(),
            )
        })
        .collect();
    let pids: Vec<i32> = frontends
        .iter_mut()
        .map(|p| p.host_pid().unwrap())
        .collect();
    kill(agent.child.id() as i32, libc::SIGKILL).unwrap();
    for p in &mut frontends {
        let err = p.recv_timeout(WAIT).unwrap_err();
        assert!(err.is_disconnected() && err.is_host_lost(), "{err}");
    }
    // Its fork server and the backends follow it.
    assert!(wait_until(WAIT, || pids.iter().all(|&p| !alive(p))));
    drop(frontends);
    drop(agent);
}

/// Two network namespaces joined by a veth pair, made for one case and
/// deleted after it (even when it fails).
struct Net {
    front: String,
    back: String,
    back_iface: String,
    back_ip: String,
}

impl Net {
    /// `Err`: why the case cannot run here (not root, no `ip`, no
    /// namespaces).
    fn new() -> Result<Net, String> {
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } != 0 {
            return Err("needs root (network namespaces)".into());
        }
        let id = std::process::id() % 10_000;
        let net = Net {
            front: format!("fbf{id}"),
            back: format!("fbb{id}"),
            back_iface: format!("fbvb{id}"),
            back_ip: "10.231.7.2".into(),
        };
        let front_iface = format!("fbvf{id}");
        ip(&["netns", "add", &net.front])?;
        ip(&["netns", "add", &net.back])?;
        for (ns, iface, addr) in [
            (&net.front, &front_iface, "10.231.7.1/24"),
            (&net.back, &net.back_iface, "10.231.7.2/24"),
        ] {
            if ns == &net.front {
                ip(&[
                    "-n",
                    ns,
                    "link",
                    "add",
                    iface,
                    "type",
                    "veth",
                    "peer",
                    "name",
                    &net.back_iface,
                    "netns",
                    &net.back,
                ])?;
            }
            ip(&["-n", ns, "addr", "add", addr, "dev", iface])?;
            ip(&["-n", ns, "link", "set", iface, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(net)
    }

    fn exec(ns: &str) -> [&str; 4] {
        ["ip", "netns", "exec", ns]
    }

    /// This test program, run again in namespace `ns`.
    fn this_program_in(ns: &str) -> Command {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns])
            .arg(std::env::current_exe().unwrap());
        cmd
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        // Deleting a namespace deletes its end of the pair, and so both.
        let _ = ip(&["netns", "del", &self.front]);
        let _ = ip(&["netns", "del", &self.back]);
    }
}

fn a_lost_host_is_seen_within_a_lease_and_a_new_backend_attaches() {
    let net = match Net::new() {
        Ok(net) => net,
        Err(why) => {
            // Never silently: the reason is in the test's output.
            println!(
                "SKIPPED a_lost_host_is_seen_within_a_lease_and_a_new_backend_attaches: {why}"
            );
            return;
        }
    };
    let namespace = namespace();
    let spec = format!("{namespace},first,second");
    let host = started_in(
        &Net::exec(&net.back),
        &[(SERVE_ENV, &spec), ("FB_ZENOH_TEST_LISTEN", &net.back_ip)],
        namespace.clone(),
    );
    // The frontend runs in the other namespace and cuts the backend's side.
    let loss = format!(
        "{},{namespace},first,{},{}",
        host.endpoint, net.back, net.back_iface
    );
    let out = Net::this_program_in(&net.front)
        .env("FB_ZENOH_TEST_LOSS", &loss)
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    print!(
        "{}",
        text.lines()
            .filter(|l| l.starts_with("RESULT"))
            .map(|l| format!("{l}\n"))
            .collect::<String>()
    );
    let seen = text
        .lines()
        .find_map(|l| l.strip_prefix("SEEN "))
        .unwrap_or_else(|| {
            panic!(
                "the frontend said {text:?} {}",
                String::from_utf8_lossy(&out.stderr)
            )
        });
    let fields: Vec<&str> = seen.split_whitespace().collect();
    assert_eq!(
        fields[..2],
        ["true", "true"],
        "disconnected, host lost: {seen}"
    );
    let ms: u128 = fields[2].parse().unwrap();
    assert!(
        ms <= LEASE.as_millis() * 12 / 10,
        "host loss seen after {ms} ms, lease {LEASE:?}"
    );
    // Back up: a new frontend attaches to the other backend and is served.
    ip(&["-n", &net.back, "link", "set", &net.back_iface, "up"]).unwrap();
    let again = format!("{},{namespace},second", host.endpoint);
    let out = Net::this_program_in(&net.front)
        .env("FB_ZENOH_TEST_FRONTEND", &again)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = out;
    let mut line = String::new();
    BufReader::new(out.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    assert!(line.starts_with("ATTACHED "), "{line:?}");
    out.kill().unwrap();
    out.wait().unwrap();
    // Both backends are gone with their frontends; the serving program ends.
    assert!(host.join().success());
}

#[cfg(feature = "tls")]
mod certificates {
    //! Test certificates, made with the `openssl` command.

    use std::path::Path;
    use std::process::Command;

    use forkbridge_zenoh::Tls;

    fn openssl(dir: &Path, args: &[&str]) -> Result<(), String> {
        let out = Command::new("openssl")
            .current_dir(dir)
            .args(args)
            .output()
            .map_err(|e| format!("openssl: {e}"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(format!(
                "openssl {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr)
            ))
        }
    }

    /// A CA (`<ca>.pem`) and a side signed by it (`<side>.pem`,
    /// `<side>.key`), for 127.0.0.1, in `dir`.
    pub(crate) fn make(dir: &Path, ca: &str, sides: &[&str]) -> Result<(), String> {
        let ec = [
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
        ];
        let mut args = vec!["req", "-x509"];
        args.extend(ec);
        let (ca_key, ca_pem) = (format!("{ca}.key"), format!("{ca}.pem"));
        args.extend([
            "-keyout",
            &ca_key,
            "-out",
            &ca_pem,
            "-days",
            "2",
            "-subj",
            "/CN=forkbridge test CA",
        ]);
        openssl(dir, &args)?;
        std::fs::write(
            dir.join("ext.cnf"),
            "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth,clientAuth\n\
             basicConstraints=CA:FALSE\n",
        )
        .map_err(|e| e.to_string())?;
        for side in sides {
            let (key, csr, pem) = (
                format!("{side}.key"),
                format!("{side}.csr"),
                format!("{side}.pem"),
            );
            let mut args = vec!["req"];
            args.extend(ec);
            args.extend(["-keyout", &key, "-out", &csr, "-subj", "/CN=127.0.0.1"]);
            openssl(dir, &args)?;
            openssl(
                dir,
                &[
                    "x509",
                    "-req",
                    "-in",
                    &csr,
                    "-CA",
                    &ca_pem,
                    "-CAkey",
                    &ca_key,
                    "-CAcreateserial",
                    "-out",
                    &pem,
                    "-days",
                    "2",
                    "-extfile",
                    "ext.cnf",
                ],
            )?;
        }
        Ok(())
    }

    /// The settings of `side`, signed by the CA `ca`.
    pub(crate) fn side_of(dir: &str, ca: &str, side: &str) -> Tls {
        let dir = Path::new(dir);
        Tls::new(
            dir.join(format!("{ca}.pem")),
            dir.join(format!("{side}.pem")),
            dir.join(format!("{side}.key")),
        )
    }

    pub(crate) fn side(dir: &str, side: &str) -> Tls {
        side_of(dir, "ca", side)
    }
}

#[cfg(feature = "tls")]
fn tls_links_need_a_certificate_the_ca_signed() {
    let dir = std::env::temp_dir().join(format!("fb-tls-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let made = certificates::make(&dir, "ca", &["server", "client"])
        .and_then(|()| certificates::make(&dir, "rogue-ca", &["rogue"]));
    if let Err(why) = made {
        println!(
            "SKIPPED tls_links_need_a_certificate_the_ca_signed: cannot make certificates: {why}"
        );
        let _ = std::fs::remove_dir_all(&dir);
        return;
    }
    let d = dir.to_str().unwrap().to_owned();
    let namespace = namespace();
    let spec = format!("{namespace},secure");
    let host = started(
        &[(SERVE_ENV, &spec), ("FB_ZENOH_TEST_TLS", &d)],
        namespace.clone(),
    );
    assert!(host.endpoint.starts_with("tls/"), "{}", host.endpoint);
    let config = || {
        Config::connect(&host.endpoint)
            .namespace(&namespace)
            .attach_timeout(Duration::from_secs(2))
    };
    // A certificate from another CA: no link, so no backend to attach to.
    let rogue = Link::open(config().tls(certificates::side_of(&d, "rogue-ca", "rogue"))).unwrap();
    assert_eq!(
        rogue.attach("secure").unwrap_err().kind(),
        &ErrorKind::NotFound
    );
    drop(rogue);
    // Plain TCP to a TLS port: nothing either.
    let plain_endpoint = host.endpoint.replacen("tls/", "tcp/", 1);
    let plain = Link::open(
        Config::connect(plain_endpoint)
            .namespace(&namespace)
            .attach_timeout(Duration::from_secs(2)),
    )
    .unwrap();
    assert_eq!(
        plain.attach("secure").unwrap_err().kind(),
        &ErrorKind::NotFound
    );
    drop(plain);
    // The CA's client: served.
    let link = Link::open(config().tls(certificates::side(&d, "client"))).unwrap();
    let mut p = ProbeClient::new(link.attach("secure").unwrap());
    assert_eq!(p.square(11).unwrap(), 121);
    assert!(p.into_process().stop().unwrap().success());
    assert!(host.join().success());
    let _ = std::fs::remove_dir_all(&dir);
}

#[cfg(not(feature = "tls"))]
fn tls_links_need_a_certificate_the_ca_signed() {
    println!(
        "SKIPPED tls_links_need_a_certificate_the_ca_signed: built without the `tls` feature \
         (cargo test -p forkbridge-zenoh --features tls)"
    );
}

fn the_example_runs_its_pipeline_on_a_second_host() {
    // Cargo builds the examples beside the test binaries' `deps/`.
    let exe = std::env::current_exe().unwrap();
    let example = exe
        .parent()
        .unwrap()
        .parent()
        .unwrap()
        .join("examples/remote");
    let mut child = Command::new(&example)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", example.display()));
    let status = wait_within(&mut child, Duration::from_secs(50)).expect("the example ends");
    let mut out = String::new();
    std::io::Read::read_to_string(&mut child.stdout.take().unwrap(), &mut out).unwrap();
    assert!(status.success(), "{status}: {out}");
    assert!(out.contains("remote detectors on tcp/127.0.0.1:"), "{out}");
    assert!(out.contains("2000 frames"), "{out}");
}

fn a_remote_backends_messages_come_before_its_exit_status() {
    let host = host(&["exiting"]);
    let link = host.link();
    let mut p = ProbeClient::new(link.attach("exiting").unwrap());
    p.burst_then_exit(2_000).unwrap();
    for i in 0..2_000u64 {
        let m = p.recv_timeout(WAIT).unwrap();
        assert_eq!((m.command(), m.param::<u64>("i").unwrap()), ("item", i));
    }
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected() && !err.is_host_lost(), "{err}");
    assert_eq!(err.exit_status().and_then(|s| s.code()), Some(7));
    drop(p);
    host.join();
}

fn nothing_is_dropped_while_the_backend_falls_behind() {
    let host = host(&["slow"]);
    let link = host.link();
    let mut p = ProbeClient::new(link.attach("slow").unwrap());
    // While it naps, 32 MiB of casts fill every buffer on the way
    // (sockets, Zenoh's queues): the sender waits, nothing is dropped.
    p.nap(500).unwrap();
    let n = 32 * 1024u64;
    for _ in 0..n {
        p.take(vec![0u8; 1024]).unwrap();
    }
    assert_eq!(p.calls().unwrap(), n);
    assert!(p.into_process().stop().unwrap().success());
    host.join();
}
