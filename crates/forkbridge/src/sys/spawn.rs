//! Starting this executable again: `posix_spawn(3)` of `/proc/self/exe`,
//! and what a re-executed process needs to find its way (its environment
//! variable, its code's offsets).
//!
//! `posix_spawn` rather than `fork` + `exec`: glibc runs it as
//! `clone(CLONE_VM | CLONE_VFORK)` + `exec`, so no page table is copied
//! (its cost does not grow with the parent) and no code of ours runs in a
//! copy of a threaded process. Its attributes reset the signal mask and
//! every disposition in the new process, and one file action puts the
//! socket it must inherit at a fixed number. `std::process::Command`
//! cannot pass an extra fd yet.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

/// Where the spawned process finds the socket it inherits.
pub(crate) const INHERITED_FD: libc::c_int = 3;

/// Spawns `program` with `args` (after `argv[0]`, which is the program's
/// name) and the current environment plus `env` (replacing variables of
/// the same names), with `fd` at
/// [`INHERITED_FD`] and no other fd above stderr, an empty signal mask and
/// default dispositions.
/// Returns the child's pid.
pub(crate) fn spawn(
    program: &std::path::Path,
    args: &[OsString],
    env: &[(&str, String)],
    fd: BorrowedFd<'_>,
) -> io::Result<libc::pid_t> {
    let cstring = |b: &[u8]| CString::new(b).map_err(|_| io::ErrorKind::InvalidInput);
    let path = cstring(program.as_os_str().as_bytes())?;
    let args: Vec<CString> = std::iter::once(program.as_os_str())
        .chain(args.iter().map(|a| a.as_os_str()))
        .map(|a| cstring(a.as_bytes()))
        .collect::<Result<_, _>>()?;
    let mut vars: Vec<CString> = Vec::new();
    for (key, value) in std::env::vars_os() {
        if env.iter().any(|(k, _)| key.as_bytes() == k.as_bytes()) {
            continue;
        }
        let mut kv = key.as_bytes().to_vec();
        kv.push(b'=');
        kv.extend_from_slice(value.as_bytes());
        if let Ok(c) = CString::new(kv) {
            vars.push(c);
        }
    }
    for (k, v) in env {
        vars.push(cstring(format!("{k}={v}").as_bytes())?);
    }
    let argv: Vec<*mut libc::c_char> = args
        .iter()
        .map(|a| a.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    let envp: Vec<*mut libc::c_char> = vars
        .iter()
        .map(|v| v.as_ptr().cast_mut())
        .chain(std::iter::once(std::ptr::null_mut()))
        .collect();
    // `dup2` onto the fd itself would keep its close-on-exec flag: move a
    // socket that happens to sit at the target number out of the way first.
    let moved;
    let source = if fd.as_raw_fd() == INHERITED_FD {
        moved = fd.try_clone_to_owned()?;
        moved.as_raw_fd()
    } else {
        fd.as_raw_fd()
    };
    // SAFETY: zeroed attribute and action objects are valid for their init
    // functions, which are called before any other use; each is destroyed
    // once below, after the spawn that reads them. `path`, `argv` and
    // `envp` are NUL-terminated strings and null-terminated arrays that
    // outlive the call; `source` is an open fd.
    unsafe {
        let mut actions: libc::posix_spawn_file_actions_t = std::mem::zeroed();
        let mut attr: libc::posix_spawnattr_t = std::mem::zeroed();
        libc::posix_spawn_file_actions_init(&mut actions);
        libc::posix_spawnattr_init(&mut attr);
        let mut result = libc::posix_spawn_file_actions_adddup2(&mut actions, source, INHERITED_FD);
        // Nothing else of the caller's: an fd it left inheritable (not
        // close-on-exec) was meant for programs it executes, not for workers.
        if result == 0 {
            result = libc::posix_spawn_file_actions_addclosefrom_np(&mut actions, INHERITED_FD + 1);
        }
        let mut empty: libc::sigset_t = std::mem::zeroed();
        let mut all: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut empty);
        libc::sigfillset(&mut all);
        if result == 0 {
            result = libc::posix_spawnattr_setsigmask(&mut attr, &empty);
        }
        if result == 0 {
            result = libc::posix_spawnattr_setsigdefault(&mut attr, &all);
        }
        if result == 0 {
            result = libc::posix_spawnattr_setflags(
                &mut attr,
                (libc::POSIX_SPAWN_SETSIGMASK | libc::POSIX_SPAWN_SETSIGDEF) as libc::c_short,
            );
        }
        let mut pid: libc::pid_t = 0;
        if result == 0 {
            result = libc::posix_spawn(
                &mut pid,
                path.as_ptr(),
                &actions,
                &attr,
                argv.as_ptr(),
                envp.as_ptr(),
            );
        }
        libc::posix_spawn_file_actions_destroy(&mut actions);
        libc::posix_spawnattr_destroy(&mut attr);
        if result != 0 {
            return Err(io::Error::from_raw_os_error(result));
        }
        Ok(pid)
    }
}

/// Reads and removes the environment variable `name`, so that what this
/// process starts later does not see it.
///
/// Call only where no other thread can read or write the environment: the
/// documented place of `forkbridge::init` is the first line of `main`.
pub(crate) fn take_env(name: &str) -> Option<OsString> {
    let value = std::env::var_os(name)?;
    // SAFETY: `init` is documented to run first in `main`, before the
    // program starts threads; forkbridge itself starts none before it.
    unsafe { std::env::remove_var(name) };
    Some(value)
}

/// What identifies the running executable: its file's device and inode
/// (`/proc/self/exe` refers to the file that was executed, even once
/// replaced or deleted on disk).
pub(crate) fn executable_id() -> io::Result<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    // Fixed from `exec` to exit: read once.
    static ID: std::sync::OnceLock<(u64, u64)> = std::sync::OnceLock::new();
    if let Some(id) = ID.get() {
        return Ok(*id);
    }
    let meta = std::fs::metadata("/proc/self/exe")?;
    Ok(*ID.get_or_init(|| (meta.dev(), meta.ino())))
}

/// The type of the functions a re-executed process is told to run.
pub(crate) type Entry<A, R> = fn(A) -> R;

/// Where `f` is relative to a fixed function of this executable: the same
/// number in every process running the same file, whatever address space
/// layout each got.
pub(crate) fn code_offset<A, R>(f: Entry<A, R>) -> isize {
    (f as usize as isize).wrapping_sub(anchor as *const () as usize as isize)
}

/// The function at `offset` from the anchor in this process, if the
/// sender ran the same executable (`executable`, from [`executable_id`]).
///
/// The offset must have come from [`code_offset`] of a function of exactly
/// this type, in a process running this file: the caller reads it from its
/// parent over a socket no other process holds.
pub(crate) fn code_at<A, R>(offset: isize, executable: (u64, u64)) -> io::Result<Entry<A, R>> {
    if executable_id()? != executable {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "started by another executable (it was replaced since?)",
        ));
    }
    let address = (anchor as *const () as usize as isize).wrapping_add(offset) as usize;
    // SAFETY: the same executable file has the same code at the same
    // offsets from `anchor`; per this function's contract the offset is
    // that of a function of type `fn(A) -> R` in it, so the address is
    // that function in this process.
    Ok(unsafe { std::mem::transmute::<usize, Entry<A, R>>(address) })
}

/// The fixed point offsets are measured from.
#[inline(never)]
fn anchor() {}
