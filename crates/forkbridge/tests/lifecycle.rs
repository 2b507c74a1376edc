//! Start, stop, drop and signals over many cycles: nothing leaks.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{Probe, WAIT, probe, recv};
use forkbridge::{Message, MessageProcess, message};
use forkbridge_testkit::{
    alive, children, ignore, kill, open_fds, pipe_inodes, restore_default, shared_mappings,
    sleep_until_killed, socket_inodes, wait_until,
};

test_main!(
    two_hundred_cycles_leak_no_fd_mapping_or_zombie,
    drop_stops_and_reaps,
    drop_of_unstarted_process_closes_its_fds,
    stop_is_idempotent,
    sigint_kills_backend_by_default,
    ignore_sigint_keeps_backend_alive,
    sibling_processes_do_not_hold_each_others_intercom,
    nested_process_does_not_hold_its_parents_intercom,
    child_starts_with_default_signal_dispositions_and_empty_mask,
    buffered_stdout_is_written_once_not_twice,
    handle_is_send,
    a_reaped_backends_pid_taken_by_another_child_is_left_alone,
);

fn two_hundred_cycles_leak_no_fd_mapping_or_zombie() {
    // Warm up: the first cycle allocates lazily initialised globals.
    drop(probe("warm-up"));
    let fds = open_fds();
    let maps = shared_mappings();
    for i in 0..200u32 {
        let mut p = probe(&format!("cycle-{i}"));
        match i % 4 {
            0 => {
                p.send(Message::new("ping")).unwrap();
                recv(&mut p);
                assert!(p.stop().unwrap().success());
            }
            1 => drop(p), // stop on drop
            2 => {
                p.send(message!("exit", code = 2)).unwrap();
                assert!(p.recv_timeout(WAIT).unwrap_err().is_disconnected());
            }
            _ => {
                // SAFETY: plain integers; `p` holds the unreaped child.
                unsafe { libc::kill(p.pid().unwrap(), libc::SIGKILL) };
                assert_eq!(p.join_timeout(WAIT).unwrap().signal(), Some(libc::SIGKILL));
            }
        }
        assert!(children().is_empty(), "cycle {i} left a child");
    }
    assert_eq!(open_fds(), fds, "fds leaked");
    // The allocator may map or unmap an arena; a leak per cycle would show
    // as hundreds of new mappings.
    let grown = shared_mappings().saturating_sub(maps);
    assert!(grown < 8, "mappings grew by {grown}");
}

fn drop_stops_and_reaps() {
    let p = probe("dropped");
    let pid = p.pid().unwrap();
    drop(p);
    assert!(!alive(pid));
    assert!(children().is_empty());
}

fn drop_of_unstarted_process_closes_its_fds() {
    let fds = open_fds();
    let p = MessageProcess::new("never-started", Probe::default()).unwrap();
    assert_eq!(open_fds(), fds + 2);
    drop(p);
    assert_eq!(open_fds(), fds);
}

fn stop_is_idempotent() {
    let mut p = probe("twice");
    let first = p.stop().unwrap();
    let second = p.stop().unwrap();
    assert_eq!(first, second);
    assert!(p.request_stop().is_ok());
    assert!(p.join().unwrap().success());
}

fn sigint_kills_backend_by_default() {
    let mut p = probe("interruptible");
    // SAFETY: plain integers; `p` holds the unreaped child.
    unsafe { libc::kill(p.pid().unwrap(), libc::SIGINT) };
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGINT));
}

fn ignore_sigint_keeps_backend_alive() {
    let mut p = MessageProcess::builder("calm")
        .ignore_sigint(true)
        .build(Probe::default())
        .unwrap();
    p.start().unwrap();
    // SAFETY: as above.
    unsafe { libc::kill(p.pid().unwrap(), libc::SIGINT) };
    std::thread::sleep(Duration::from_millis(50));
    p.send(Message::new("ping")).unwrap();
    assert_eq!(recv(&mut p).command(), "pong");
    assert!(p.stop().unwrap().success());
}

fn sibling_processes_do_not_hold_each_others_intercom() {
    // `b` is forked while `a` runs and `c` is built: if `b` kept a copy of
    // their sockets, a dead parent's end would never reach end of stream for
    // them. Each child must hold exactly its own backend end.
    let mut a = probe("sibling-a");
    let c = MessageProcess::new("unstarted-c", Probe::default()).unwrap();
    let mut b = probe("sibling-b");
    // A round trip proves each child has finished its setup.
    for p in [&mut a, &mut b] {
        p.send(Message::new("ping")).unwrap();
        recv(p);
    }
    let a_socks = socket_inodes(a.pid().unwrap());
    let b_socks = socket_inodes(b.pid().unwrap());
    assert_eq!(a_socks.len(), 1, "a holds {a_socks:?}");
    assert_eq!(b_socks.len(), 1, "b holds {b_socks:?}");
    assert_ne!(a_socks, b_socks);
    drop((a, b, c));
    assert!(wait_until(WAIT, || children().is_empty()));
}

fn nested_process_does_not_hold_its_parents_intercom() {
    // A backend that starts its own backend: the grandchild must hold its
    // own intercom end only, not a copy of its parent's (which would keep
    // the parent's intercom open after the parent died), and it must keep
    // the fds its parent's code opened. Unstarted processes here leave fd
    // numbers in this process's list that are free in the middle process,
    // where its pipe reuses them: a stale list would close the pipe.
    let unstarted: Vec<_> = (0..3)
        .map(|i| MessageProcess::new(format!("unstarted-{i}"), Probe::default()).unwrap())
        .collect();
    let mut middle = probe("middle");
    middle
        .send(message!("spawn_grandchild", from_thread = false))
        .unwrap();
    let grandchild: i32 = recv(&mut middle).param("pid").unwrap();
    let middle_socks = socket_inodes(middle.pid().unwrap());
    let grandchild_socks = socket_inodes(grandchild);
    assert_eq!(
        grandchild_socks.len(),
        1,
        "grandchild holds {grandchild_socks:?}"
    );
    // The middle holds its own end and its frontend end for the grandchild.
    assert_eq!(middle_socks.len(), 2, "middle holds {middle_socks:?}");
    assert!(!middle_socks.contains(&grandchild_socks[0]));
    assert_eq!(pipe_inodes(grandchild), pipe_inodes(middle.pid().unwrap()));
    drop(unstarted);
    assert!(middle.stop().unwrap().success());
    assert!(!alive(grandchild));
}

/// A field of `/proc/<pid>/status` (e.g. `SigBlk`), parsed as hex.
fn status_mask(pid: i32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    let line = status
        .lines()
        .find(|l| l.starts_with(field))
        .expect("status field");
    u64::from_str_radix(line.split_whitespace().nth(1).unwrap(), 16).unwrap()
}

fn child_starts_with_default_signal_dispositions_and_empty_mask() {
    let bit = |sig: i32| 1u64 << (sig - 1);
    // The parent ignores SIGTERM, catches SIGUSR2 and blocks SIGUSR1; the
    // child must do none of these.
    // SAFETY: SIG_IGN installs no handler code; the sigset is initialised
    // by sigemptyset before use and both calls only read it.
    let mut old: libc::sigset_t = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
        libc::signal(libc::SIGUSR2, on_usr2 as *const () as libc::sighandler_t);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigprocmask(libc::SIG_BLOCK, &set, &mut old);
    }
    let me = std::process::id() as i32;
    assert_ne!(status_mask(me, "SigIgn") & bit(libc::SIGTERM), 0);
    assert_ne!(status_mask(me, "SigBlk") & bit(libc::SIGUSR1), 0);
    let mut p = probe("fresh-signals");
    p.send(Message::new("ping")).unwrap();
    recv(&mut p); // setup is done
    let pid = p.pid().unwrap();
    // SIGPIPE stays ignored, as in every Rust program; nothing else among
    // the standard signals (32 and 33 belong to libc, which keeps them).
    let standard = (1u64 << 31) - 1;
    assert_eq!(status_mask(pid, "SigIgn") & standard, bit(libc::SIGPIPE));
    assert_eq!(status_mask(pid, "SigBlk"), 0);
    // A signal the parent catches has its default action in the child (the
    // child resets what the parent's /proc status shows as caught).
    assert_ne!(status_mask(me, "SigCgt") & bit(libc::SIGUSR2), 0);
    assert_eq!(status_mask(pid, "SigCgt") & bit(libc::SIGUSR2), 0);
    // SAFETY: plain integers; `p` holds the unreaped child.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let err = p.recv_timeout(WAIT).unwrap_err();
    assert_eq!(err.exit_status().unwrap().signal(), Some(libc::SIGTERM));
    // SAFETY: restores what this test changed.
    unsafe {
        libc::signal(libc::SIGTERM, libc::SIG_DFL);
        libc::signal(libc::SIGUSR2, libc::SIG_DFL);
        libc::sigprocmask(libc::SIG_SETMASK, &old, std::ptr::null_mut());
    }
}

extern "C" fn on_usr2(_: libc::c_int) {}

fn buffered_stdout_is_written_once_not_twice() {
    use std::io::{Read, Seek, Write};
    let mut file = tempfile_in_proc();
    std::io::stdout().flush().unwrap();
    // SAFETY: dup/dup2 on valid fds; fd 1 is restored below.
    let saved = unsafe { libc::dup(1) };
    // SAFETY: as above.
    unsafe { libc::dup2(std::os::fd::AsRawFd::as_raw_fd(&file), 1) };
    print!("partial line without newline|");
    let mut p = probe("stdout");
    p.send(Message::new("ping")).unwrap();
    recv(&mut p);
    p.stop().unwrap();
    std::io::stdout().flush().unwrap();
    // SAFETY: as above.
    unsafe {
        libc::dup2(saved, 1);
        libc::close(saved);
    }
    let mut text = String::new();
    file.rewind().unwrap();
    file.read_to_string(&mut text).unwrap();
    assert_eq!(text, "partial line without newline|");
}

/// An anonymous temporary file (`O_TMPFILE`): nothing is left behind.
fn tempfile_in_proc() -> std::fs::File {
    use std::os::unix::fs::OpenOptionsExt;
    std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_TMPFILE)
        .open(std::env::temp_dir())
        .expect("O_TMPFILE")
}

fn handle_is_send() {
    fn assert_send<T: Send>() {}
    assert_send::<MessageProcess>();
    assert_send::<forkbridge::Error>();
    assert_send::<Message>();
}

/// A child that took `pid` (chosen through `ns_last_pid`, which needs
/// root), or `None` if another process took it first.
fn fork_with_pid(pid: i32) -> Option<i32> {
    std::fs::write("/proc/sys/kernel/ns_last_pid", (pid - 1).to_string()).ok()?;
    // SAFETY: the child only sleeps until it is killed.
    let child = unsafe { libc::fork() };
    if child == 0 {
        sleep_until_killed();
    }
    if child != pid {
        let _ = kill(child, libc::SIGKILL);
        return None;
    }
    Some(child)
}

fn a_reaped_backends_pid_taken_by_another_child_is_left_alone() {
    if !is_root() {
        println!("skipped: choosing pids needs root");
        return;
    }
    // With SIGCHLD ignored the kernel reaps the backend itself; its pid is
    // then free for the next child, which gets it on purpose here.
    ignore(libc::SIGCHLD);
    let mut p = probe("reused");
    let pid = p.pid().unwrap();
    kill(pid, libc::SIGKILL).unwrap();
    assert!(wait_until(WAIT, || !alive(pid)));
    let decoy = (0..20).find_map(|_| fork_with_pid(pid));
    assert_eq!(decoy, Some(pid), "could not stage the pid's reuse");
    // Reaping and signalling go through the pidfd: the join ends at once
    // (the backend was reaped elsewhere: no status), and neither it nor
    // the stop touches the other child.
    let t = std::time::Instant::now();
    let err = p.join_timeout(WAIT).unwrap_err();
    assert!(err.is_disconnected(), "{err}");
    assert!(err.exit_status().is_none());
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "took {:?}",
        t.elapsed()
    );
    let _ = p.stop();
    drop(p);
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        alive(pid),
        "the child that took the pid was signalled or reaped"
    );
    kill(pid, libc::SIGKILL).unwrap();
    assert!(wait_until(WAIT, || !children().contains(&pid)));
    restore_default(libc::SIGCHLD);
}

fn is_root() -> bool {
    // SAFETY: `geteuid` cannot fail and has no preconditions.
    unsafe { libc::geteuid() == 0 }
}
