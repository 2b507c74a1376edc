//! The fate channel of a backend elsewhere: a `SOCK_SEQPACKET` pair
//! between the frontend's handle and the transport that carries the
//! backend's stream. One packet each way per event, so a reader never
//! sees half a report:
//!
//! ```text
//! to the frontend   'X' status:i32 LE    the backend exited (raw wait status)
//!                   'L' reason:utf-8     the host or the link was lost
//!                   end of stream        the transport went away without a word
//! to the transport  'S' signal:i32 LE    please deliver this signal
//! ```

use std::io;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use crate::sys::socket;

use super::super::start::server::read_packet;
use super::super::watch::Fate;

const EXITED: u8 = b'X';
const LOST: u8 = b'L';
const SIGNAL: u8 = b'S';

/// The frontend's read: `None` while nothing came by `deadline`.
pub(in crate::process) fn read(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> io::Result<Option<Fate>> {
    let packet = match read_packet(fd, deadline) {
        Ok((packet, _)) => packet,
        Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(None),
        Err(e) => return Err(e),
    };
    Ok(Some(match packet.split_first() {
        Some((&EXITED, raw)) if raw.len() == 4 => {
            Fate::from_raw(i32::from_le_bytes(raw.try_into().expect("4 bytes")))
        }
        Some((&LOST, reason)) => Fate::Lost(String::from_utf8_lossy(reason).into_owned()),
        _ => Fate::Gone,
    }))
}

/// The frontend asks for `sig` to be delivered.
pub(in crate::process) fn ask_signal(fd: BorrowedFd<'_>, sig: libc::c_int) -> io::Result<()> {
    let mut packet = vec![SIGNAL];
    packet.extend_from_slice(&sig.to_le_bytes());
    send(fd, &packet)
}

/// The transport reports how the backend ended.
pub(super) fn report(fd: BorrowedFd<'_>, fate: &Fate) -> io::Result<()> {
    let mut packet = Vec::new();
    match fate {
        Fate::Exited(status) => {
            use std::os::unix::process::ExitStatusExt;
            packet.push(EXITED);
            packet.extend_from_slice(&status.into_raw().to_le_bytes());
        }
        Fate::Lost(reason) => {
            packet.push(LOST);
            // A packet pair's datagrams are bounded by the socket buffer;
            // a reason is a sentence.
            let reason = reason.as_bytes();
            packet.extend_from_slice(&reason[..reason.len().min(1024)]);
        }
        Fate::Gone => return Ok(()),
    }
    send(fd, &packet)
}

/// The transport's read of the next signal request: `None` when nothing
/// came by `deadline`; end of stream (the handle is gone) is an error
/// of kind `UnexpectedEof`.
pub(super) fn next_signal(
    fd: BorrowedFd<'_>,
    deadline: Option<Instant>,
) -> io::Result<Option<i32>> {
    loop {
        let packet = match read_packet(fd, deadline) {
            Ok((packet, _)) => packet,
            Err(e) if e.kind() == io::ErrorKind::TimedOut => return Ok(None),
            Err(e) => return Err(e),
        };
        match packet.split_first() {
            None => return Err(io::ErrorKind::UnexpectedEof.into()),
            Some((&SIGNAL, raw)) if raw.len() == 4 => {
                return Ok(Some(i32::from_le_bytes(raw.try_into().expect("4 bytes"))));
            }
            // Not ours to understand: a newer frontend's request.
            Some(_) => {}
        }
    }
}

fn send(fd: BorrowedFd<'_>, packet: &[u8]) -> io::Result<()> {
    loop {
        match socket::send(fd, packet) {
            Ok(_) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // Full: the reader is behind by a socket buffer of packets;
            // wait for room rather than lose a report.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                let mut pfd = [crate::sys::poll::PollFd::new(fd, crate::sys::poll::POLLOUT)];
                crate::sys::poll::poll(&mut pfd, None)?;
            }
            Err(e) => return Err(e),
        }
    }
}
