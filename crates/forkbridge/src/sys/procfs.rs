//! A process's memory and CPU time from `/proc/<pid>/stat`, for
//! `MessageProcess::status`, and this process's thread count, for the
//! fork checks.
//!
//! One file gives both, so a snapshot costs one `open` + `read` + `close`,
//! and parsing is a split on spaces. Rejected:
//! `/proc/<pid>/status` (resident memory in kB, but no CPU time, and a
//! dozen times the text); `statm` (memory only, so a second file);
//! `getrusage` (only for the caller or its reaped children, and a served
//! worker is not our child); `/proc/<pid>/smaps_rollup` (exact but walks
//! every mapping of the process under its memory lock).
//!
//! The values are the kernel's: resident pages (shared ones, such as the
//! pages a fork shares with its parent, count in both) times the page
//! size, and user + system time in clock ticks.

use std::io::{self, Read};
use std::sync::OnceLock;
use std::time::Duration;

use super::syscall;

/// A process's resident memory and CPU time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Usage {
    /// Resident set size: resident pages × the page size.
    pub(crate) rss_bytes: u64,
    /// User plus system time, to the clock tick.
    pub(crate) cpu_time: Duration,
}

/// Reads `/proc/<pid>/stat` once.
///
/// A process that has ended and been reaped is the `open`'s `ENOENT` (or
/// the `read`'s `ESRCH` if it went in between); a zombie still reads, with
/// no resident memory.
pub(crate) fn usage(pid: i32) -> io::Result<Usage> {
    let (tick, page) = units()?;
    parse(&read_stat(&format!("/proc/{pid}/stat"))?, tick, page)
}

/// This process's thread count, from `/proc/self/stat` (one short read,
/// where `/proc/self/status` takes several).
pub(crate) fn thread_count() -> io::Result<usize> {
    let stat = read_stat("/proc/self/stat")?;
    let [threads] = fields(&stat, [20])?;
    Ok(threads as usize)
}

/// A `stat` file, in one read: procfs reports no size, so a buffer grown
/// from empty (as `fs::read_to_string` grows it) takes several.
fn read_stat(path: &str) -> io::Result<String> {
    // A line is about 300 bytes: 52 numbers and a name of at most 64.
    let mut stat = String::with_capacity(1024);
    std::fs::File::open(path)?.read_to_string(&mut stat)?;
    Ok(stat)
}

/// Clock ticks per second and the page size, asked once.
fn units() -> io::Result<(u64, u64)> {
    static UNITS: OnceLock<(u64, u64)> = OnceLock::new();
    if let Some(&units) = UNITS.get() {
        return Ok(units);
    }
    // SAFETY: `sysconf` takes a constant name and touches no memory of ours.
    let tick = syscall!(sysconf(libc::_SC_CLK_TCK))?;
    // SAFETY: as above.
    let page = syscall!(sysconf(libc::_SC_PAGESIZE))?;
    let units = (tick.max(1) as u64, page.max(1) as u64);
    Ok(*UNITS.get_or_init(|| units))
}

/// Fields 14 and 15 (utime, stime) and 24 (rss) of a `stat` line.
fn parse(stat: &str, tick: u64, page: u64) -> io::Result<Usage> {
    let [utime, stime, rss] = fields(stat, [14, 15, 24])?;
    let ticks = utime.saturating_add(stime);
    let cpu_time = Duration::from_secs(ticks / tick)
        + Duration::from_nanos((ticks % tick) * 1_000_000_000 / tick);
    Ok(Usage {
        rss_bytes: rss.saturating_mul(page),
        cpu_time,
    })
}

/// The numeric fields `wanted` (numbered from 1 as in proc(5), each after
/// the name, in increasing order) of a `stat` line.
///
/// Field 2, the command name, is in parentheses and may hold spaces and
/// parentheses of its own (any bytes a program put in its name), so the
/// fields are counted from the last `)`. Numbers printed signed (rss;
/// never negative in practice) read as 0 when negative.
fn fields<const N: usize>(stat: &str, wanted: [usize; N]) -> io::Result<[u64; N]> {
    let (_, after) = stat
        .rsplit_once(')')
        .ok_or_else(|| malformed("no `)` after the name"))?;
    // After the name: field 3 (the state) is the first.
    let mut rest = after
        .split_ascii_whitespace()
        .enumerate()
        .map(|(i, f)| (i + 3, f));
    let mut out = [0; N];
    for (slot, want) in out.iter_mut().zip(wanted) {
        let (_, text) = rest
            .find(|&(i, _)| i == want)
            .ok_or_else(|| malformed("too few fields"))?;
        let n: i64 = text
            .parse()
            .map_err(|_| malformed("a field is not a number"))?;
        *slot = n.max(0) as u64;
    }
    Ok(out)
}

fn malformed(why: &str) -> io::Error {
    io::Error::new(
        io::ErrorKind::InvalidData,
        format!("/proc/<pid>/stat: {why}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn this_process_has_resident_memory() {
        let me = std::process::id() as i32;
        assert!(usage(me).unwrap().rss_bytes > 0);
        // Work until a clock tick of CPU time shows (bounded).
        let start = std::time::Instant::now();
        let mut x = 0u64;
        while usage(me).unwrap().cpu_time.is_zero() {
            assert!(start.elapsed() < Duration::from_secs(10), "no CPU time");
            for _ in 0..100_000 {
                x = std::hint::black_box(x.wrapping_add(1));
            }
        }
    }

    #[test]
    fn a_pid_that_does_not_exist_is_not_found() {
        // Above the largest pid_max Linux allows (2^22).
        let err = usage(i32::MAX).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn a_name_with_spaces_and_parentheses_is_skipped_whole() {
        let line = "42 (a) b (c)) S 1 42 42 0 -1 4194560 100 0 0 0 \
                     250 150 0 0 20 0 1 0 100 12345678 300 18446744073709551615 \
                     1 1 0 0 0 0 0 0 0 0 0 0 17 0 0 0 0 0 0\n";
        let usage = parse(line, 100, 4096).unwrap();
        assert_eq!(fields(line, [20]).unwrap(), [1], "the thread count");
        assert_eq!(usage.cpu_time, Duration::from_secs(4));
        assert_eq!(usage.rss_bytes, 300 * 4096);
        assert!(parse("42 (no close S 1 2", 100, 4096).is_err());
        assert!(parse("42 (short) S 1 2", 100, 4096).is_err());
    }
}
