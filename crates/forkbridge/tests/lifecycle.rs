//! Start, stop, drop and signals over many cycles: nothing leaks.

mod common;

use std::os::unix::process::ExitStatusExt;
use std::time::Duration;

use common::{
    Probe, WAIT, alive, mappings, open_fds, pipe_inodes, probe, recv, socket_inodes, wait_until,
};
use forkbridge::{Message, MessageProcess, message};

test_main!(
    two_hundred_cycles_leak_no_fd_mapping_or_zombie,
    drop_stops_and_reaps,
    drop_of_unstarted_process_closes_its_fds,
    stop_is_idempotent,
    sigint_kills_backend_by_default,
    ignore_sigint_keeps_backend_alive,
    sibling_processes_do_not_hold_each_others_intercom,
    nested_process_does_not_hold_its_parents_intercom,
);

fn two_hundred_cycles_leak_no_fd_mapping_or_zombie() {
    // Warm up: the first cycle allocates lazily initialised globals.
    drop(probe("warm-up"));
    let fds = open_fds();
    let maps = mappings();
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
        assert!(common::children().is_empty(), "cycle {i} left a child");
    }
    assert_eq!(open_fds(), fds, "fds leaked");
    // The allocator may map or unmap an arena; a leak per cycle would show
    // as hundreds of new mappings.
    let grown = mappings().saturating_sub(maps);
    assert!(grown < 8, "mappings grew by {grown}");
}

fn drop_stops_and_reaps() {
    let p = probe("dropped");
    let pid = p.pid().unwrap();
    drop(p);
    assert!(!alive(pid));
    assert!(common::children().is_empty());
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
    assert!(wait_until(WAIT, || common::children().is_empty()));
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
