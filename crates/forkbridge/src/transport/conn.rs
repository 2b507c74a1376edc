//! One end of the intercom: a non-blocking socket, an outgoing buffer and a
//! frame decoder. Both the frontend and the backend loop are built on it.
//!
//! # Why both sides read while they wait to write
//!
//! If both processes write more than the socket buffers hold and neither
//! reads, both block forever (valkka-multiprocess's `stop()` hangs exactly so).
//! Here a side that waits for room to write keeps reading what the peer sends
//! into its decoder, so the peer's write always completes; the messages are
//! kept, in order, for the next `recv`.
//!
//! # Traffic counters
//!
//! Each end counts the frames it feeds and decodes and their bytes
//! ([`Traffic`], read by `MessageProcess::status`): plain adds on fields of
//! this struct, which one thread owns, so no atomics and no syscalls. A
//! frame is counted when it is fed, not when the socket takes it (the
//! not-yet-written rest is `pending_output`), and a frame taken back by
//! [`unfeed`](Conn::unfeed) is taken out of the counts. A message that
//! travels through the shared-memory lane counts its marker and the bytes
//! it fills in the slot, on both ends (the lane counts those), so the
//! sender's `bytes_sent` and the receiver's `bytes_received` agree whichever
//! way a message went.

use std::collections::VecDeque;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use crate::data::message::Message;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::wire::{self, Decoder, Frame};
use crate::sys::{poll, socket};
use crate::transport::lane::Lane;

/// Above this many buffered outgoing bytes, `feed` flushes.
pub(crate) const FLUSH_THRESHOLD: usize = 64 << 10;

/// How much one `fill` reads at most before returning, so a fast sender
/// cannot starve the rest of a loop.
const READ_BUDGET: usize = 1 << 20;
/// Reads start small (a fresh child touches as few new pages as it can) and
/// double while they come back full, up to the socket's usual buffer size.
const READ_CHUNK_MIN: usize = 4 << 10;
const READ_CHUNK_MAX: usize = 64 << 10;

/// What a `fill` found.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Filled {
    /// This many bytes were read (0: nothing was pending; the peer is
    /// still there).
    Read(usize),
    /// The peer closed its end: no more bytes will come.
    Eof,
}

/// Frames and bytes one end of a connection sent and received (see the
/// module docs for what counts).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Traffic {
    /// Frames fed for writing: messages, typed calls and replies, the stop
    /// request.
    pub(crate) frames_sent: u64,
    /// Their encoded bytes, length headers and lane slot bytes included.
    pub(crate) bytes_sent: u64,
    /// Frames decoded (malformed ones too: their bytes arrived).
    pub(crate) frames_received: u64,
    /// Their bytes, counted as `bytes_sent` is.
    pub(crate) bytes_received: u64,
}

/// Where the outgoing stream stood before a feed (see
/// [`unfeed`](Conn::unfeed)).
#[derive(Debug, Clone, Copy)]
pub(crate) struct FeedMark {
    traffic: Traffic,
    lane_sent: u64,
}

/// `F` owns the socket: an `OwnedFd`, or (on tokio) an `Arc<AsyncFd<_>>`
/// whose readiness the async loop awaits while this type does the I/O.
#[derive(Debug)]
pub(crate) struct Conn<F: AsFd = OwnedFd> {
    fd: F,
    out: Vec<u8>,
    out_pos: usize,
    decoder: Decoder,
    max_frame: usize,
    read_chunk: usize,
    eof: bool,
    /// Fds received and not yet matched to a frame, each with the stream
    /// offset of a byte of the frame that carried them.
    fds_in: VecDeque<(u64, OwnedFd)>,
    fds_buf: Vec<OwnedFd>,
    /// The fds of the frame decoded last, if it announces fds.
    frame_fds: Vec<OwnedFd>,
    /// Bytes read from the socket so far (the stream offset of the next).
    received: u64,
    lane: Option<Lane>,
    /// Read no further than the end of the next frame (see
    /// [`set_frame_reads`](Conn::set_frame_reads)).
    frame_reads: bool,
    /// The socket's `SO_RCVTIMEO` as last set here (zero: none); `None`
    /// until set once (a socket inherited across `exec` may carry one).
    recv_timeout: Option<Duration>,
    traffic: Traffic,
}

/// The bytes a message's strings and byte strings hold, roughly its size.
fn message_payload(msg: &Message) -> usize {
    fn value(v: &crate::Value) -> usize {
        match v {
            crate::Value::Str(s) => s.len(),
            crate::Value::Bytes(b) => b.len(),
            crate::Value::List(items) | crate::Value::Tuple(items) => items.iter().map(value).sum(),
            crate::Value::Pickled { data, buffers, .. } => {
                data.len() + buffers.iter().map(crate::Bytes::len).sum::<usize>()
            }
            crate::Value::Map(entries) => entries.iter().map(|(k, v)| value(k) + value(v)).sum(),
            _ => 8,
        }
    }
    msg.params().map(|(k, v)| k.len() + value(v)).sum()
}

impl<F: AsFd> Conn<F> {
    /// Wraps one end of the socketpair. Every call but
    /// [`fill_wait`](Conn::fill_wait) is non-blocking.
    pub(crate) fn new(fd: F, max_frame: usize) -> Conn<F> {
        Conn {
            fd,
            out: Vec::new(),
            out_pos: 0,
            decoder: Decoder::new(max_frame),
            max_frame,
            read_chunk: READ_CHUNK_MIN,
            eof: false,
            fds_in: VecDeque::new(),
            fds_buf: Vec::new(),
            frame_fds: Vec::new(),
            received: 0,
            lane: None,
            frame_reads: false,
            recv_timeout: None,
            traffic: Traffic::default(),
        }
    }

    /// Reads one frame at a time (a length read, then the rest) instead of
    /// everything the socket holds: two `recv(2)` per message instead of
    /// one per burst, but no complete frame ever waits in this buffer while
    /// the socket looks idle, so a caller can wait on the fd with its own
    /// `select` and read one message per wake-up (what Python's
    /// `multiprocessing.Connection` users do).
    pub(crate) fn set_frame_reads(&mut self, yes: bool) {
        self.frame_reads = yes;
    }

    /// Changes the largest frame sent or accepted (see
    /// [`Intercom::set_max_frame_size`](crate::Intercom::set_max_frame_size)).
    pub(crate) fn set_max_frame(&mut self, max: usize) {
        self.max_frame = max;
        self.decoder.set_max(max);
    }

    /// The largest frame sent or accepted.
    pub(crate) fn max_frame(&self) -> usize {
        self.max_frame
    }

    /// Whether large messages go through a shared-memory lane.
    pub(crate) fn has_lane(&self) -> bool {
        self.lane.is_some()
    }

    /// What owns the socket.
    #[cfg(feature = "tokio")]
    pub(crate) fn owner(&self) -> &F {
        &self.fd
    }

    /// Encodes a message into the outgoing buffer (no syscall).
    pub(crate) fn feed(&mut self, msg: &Message) -> Result<()> {
        if self
            .lane
            .as_ref()
            .is_some_and(|l| l.takes(message_payload(msg)))
        {
            // The reader frees slots as it meets our markers: put the ones
            // still buffered on the wire before waiting for a slot.
            let _ = self.try_flush();
            let lane = self.lane.as_mut().expect("checked above");
            if let Some(slot) = lane.try_send(msg, self.max_frame) {
                let start = self.out.len();
                wire::encode_lane(&mut self.out, slot);
                self.count_fed(start);
                return Ok(());
            }
        }
        let start = self.out.len();
        wire::encode_message(&mut self.out, msg, self.max_frame)?;
        self.count_fed(start);
        Ok(())
    }

    /// Counts the frame fed at `out[start..]`.
    fn count_fed(&mut self, start: usize) {
        self.traffic.frames_sent += 1;
        self.traffic.bytes_sent += (self.out.len() - start) as u64;
    }

    /// Frames and bytes sent and received so far, the lane's slot bytes
    /// included.
    pub(crate) fn traffic(&self) -> Traffic {
        let (sent, received) = self.lane.as_ref().map_or((0, 0), Lane::bytes);
        Traffic {
            bytes_sent: self.traffic.bytes_sent + sent,
            bytes_received: self.traffic.bytes_received + received,
            ..self.traffic
        }
    }

    /// Makes the lane's sends never wait for a busy slot (an end that runs
    /// on an async runtime).
    #[cfg(feature = "tokio")]
    pub(crate) fn lane_never_waits(&mut self) {
        if let Some(lane) = &mut self.lane {
            lane.never_wait();
        }
    }

    /// Messages this end sent through the lane.
    pub(crate) fn lane_sent(&self) -> u64 {
        self.lane.as_ref().map_or(0, Lane::sent)
    }

    /// Adds the shared-memory lane for large messages (both ends call it
    /// with their halves).
    pub(crate) fn set_lane(&mut self, lane: Lane) {
        self.lane = Some(lane);
    }

    /// Encodes a typed call (id 0: one-way) into the outgoing buffer.
    pub(crate) fn feed_call<A: serde::Serialize + ?Sized>(
        &mut self,
        id: u64,
        command: &str,
        types: wire::Fingerprints,
        args: &A,
    ) -> Result<()> {
        let start = self.out.len();
        wire::encode_call(&mut self.out, id, command, types, args, self.max_frame)?;
        self.count_fed(start);
        Ok(())
    }

    /// As [`feed_call`](Conn::feed_call), with the arguments encoded
    /// already.
    pub(crate) fn feed_call_encoded(
        &mut self,
        id: u64,
        command: &str,
        types: wire::Fingerprints,
        args: &[u8],
    ) -> Result<()> {
        let start = self.out.len();
        wire::encode_call_encoded(&mut self.out, id, command, types, args, self.max_frame)?;
        self.count_fed(start);
        Ok(())
    }

    /// Encodes the reply to call `id` into the outgoing buffer.
    pub(crate) fn feed_reply(
        &mut self,
        id: u64,
        result: std::result::Result<&[u8], &wire::Failure>,
    ) -> Result<()> {
        let start = self.out.len();
        wire::encode_reply(&mut self.out, id, result, self.max_frame)?;
        self.count_fed(start);
        Ok(())
    }

    /// A mark of the outgoing stream's end, for [`unfeed`](Conn::unfeed).
    pub(crate) fn feed_mark(&self) -> FeedMark {
        FeedMark {
            traffic: self.traffic,
            lane_sent: self.lane_sent(),
        }
    }

    /// Drops what was fed after `mark`, if none of it was written yet and
    /// none of it went through the lane (its slot is already published),
    /// and takes it out of the counts; returns whether it did.
    ///
    /// What was fed since is found from the byte count, not from the
    /// buffer's length at the mark: a lane attempt that fell back to the
    /// socket may have flushed (and emptied) the buffer in between.
    pub(crate) fn unfeed(&mut self, mark: FeedMark) -> bool {
        let fed = self.traffic.bytes_sent - mark.traffic.bytes_sent;
        let unwritten = (self.out.len() - self.out_pos) as u64;
        if self.lane_sent() == mark.lane_sent && fed <= unwritten {
            self.out.truncate(self.out.len() - fed as usize);
            self.traffic.frames_sent = mark.traffic.frames_sent;
            self.traffic.bytes_sent = mark.traffic.bytes_sent;
            true
        } else {
            false
        }
    }

    /// Encodes a stop request into the outgoing buffer.
    pub(crate) fn feed_stop(&mut self) {
        let start = self.out.len();
        wire::encode_stop(&mut self.out);
        self.count_fed(start);
    }

    /// Drops every byte waiting to be written (the peer is gone).
    pub(crate) fn discard_output(&mut self) {
        self.out.clear();
        self.out_pos = 0;
    }

    /// Whether outgoing bytes wait to be written.
    pub(crate) fn has_pending_output(&self) -> bool {
        self.out_pos < self.out.len()
    }

    /// Bytes buffered for sending.
    pub(crate) fn pending_output(&self) -> usize {
        self.out.len() - self.out_pos
    }

    /// Whether the peer closed its end and every byte it sent was read.
    pub(crate) fn is_eof(&self) -> bool {
        self.eof
    }

    /// Writes as much buffered output as the socket takes now. Returns
    /// whether everything was written. A closed peer is `Disconnected`.
    pub(crate) fn try_flush(&mut self) -> Result<bool> {
        while self.out_pos < self.out.len() {
            match socket::send(self.fd.as_fd(), &self.out[self.out_pos..]) {
                Ok(n) => self.out_pos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if is_peer_gone(&e) => {
                    self.out.clear();
                    self.out_pos = 0;
                    return Err(Error::disconnected(None));
                }
                Err(e) => return Err(Error::io(e)),
            }
        }
        self.out.clear();
        self.out_pos = 0;
        Ok(true)
    }

    /// Writes all buffered output, waiting for room until `deadline`,
    /// reading incoming bytes meanwhile (see the module docs). `watch` is an
    /// extra fd whose readability means the peer is gone (a pidfd).
    pub(crate) fn flush(
        &mut self,
        deadline: Option<Instant>,
        watch: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        loop {
            if self.try_flush()? {
                return Ok(());
            }
            self.wait_writable(deadline, watch)?;
        }
    }

    /// Waits until the socket takes bytes again, reading what arrives
    /// meanwhile (so two writers never deadlock); `Timeout` at `deadline`,
    /// `Disconnected` if `watch` (a pidfd) says the peer died.
    fn wait_writable(
        &mut self,
        deadline: Option<Instant>,
        watch: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        let mut fds = [
            poll::PollFd::new(self.fd.as_fd(), poll::POLLOUT | poll::POLLIN),
            poll::PollFd::new(watch.unwrap_or(self.fd.as_fd()), poll::POLLIN),
        ];
        let n = if watch.is_some() { 2 } else { 1 };
        if poll::poll(&mut fds[..n], deadline)? == 0 {
            return Err(Error::new(ErrorKind::Timeout));
        }
        let ready = fds[0].revents();
        if ready & (poll::POLLIN | poll::POLLHUP | poll::POLLERR) != 0 && !self.eof {
            // Read ahead even in frame-reads mode: a peer blocked on its own
            // full send waits for us to take everything.
            let frame_reads = std::mem::replace(&mut self.frame_reads, false);
            let filled = self.fill();
            self.frame_reads = frame_reads;
            filled?;
        }
        if n == 2 && fds[1].revents() != 0 && ready & poll::POLLOUT == 0 {
            // The peer died with our bytes unsent: nobody will read them.
            return Err(Error::disconnected(None));
        }
        Ok(())
    }

    /// Reads what the socket holds now (up to a budget) into the decoder.
    pub(crate) fn fill(&mut self) -> Result<Filled> {
        self.read(false, false)
    }

    /// Blocks until bytes (or end of stream) arrive, then reads like
    /// [`fill`](Conn::fill): one `recv(2)` where `poll` + `recv` would be
    /// two, for a loop that waits on nothing else.
    pub(crate) fn fill_wait(&mut self) -> Result<Filled> {
        self.set_recv_timeout(Duration::ZERO)?;
        self.read(true, false)
    }

    /// As [`fill_wait`](Conn::fill_wait), giving up at `deadline`
    /// (`Read(0)`): the wait is the `recv(2)` itself, bounded by the
    /// socket's receive timeout, set only when it changes (to whole
    /// milliseconds, so a loop of equal waits sets it once). `None` when
    /// less than a millisecond is left: the caller polls instead.
    pub(crate) fn fill_until(&mut self, deadline: Instant) -> Result<Option<Filled>> {
        let left = deadline.saturating_duration_since(Instant::now());
        let millis = Duration::from_millis(left.as_millis().min(u128::from(u32::MAX)) as u64);
        if millis.is_zero() {
            return Ok(None);
        }
        self.set_recv_timeout(millis)?;
        self.read(true, true).map(Some)
    }

    fn set_recv_timeout(&mut self, timeout: Duration) -> Result<()> {
        if self.recv_timeout != Some(timeout) {
            socket::set_recv_timeout(self.fd.as_fd(), timeout).map_err(Error::io)?;
            self.recv_timeout = Some(timeout);
        }
        Ok(())
    }

    /// Reads without blocking, again and again, for up to `spin`: whether
    /// anything arrived (or the stream ended). A spinning reader skips the
    /// sleep and cross-CPU wake-up of a blocking one (tens of µs on a VM),
    /// at the price of a busy CPU while it spins.
    pub(crate) fn spin_fill(&mut self, spin: Duration) -> Result<bool> {
        if spin.is_zero() {
            return Ok(false);
        }
        let until = crate::deadline::after(spin);
        loop {
            match self.fill()? {
                Filled::Read(0) => {}
                Filled::Read(_) | Filled::Eof => return Ok(true),
            }
            if until.is_some_and(|u| Instant::now() >= u) {
                return Ok(false);
            }
            std::hint::spin_loop();
        }
    }

    /// `wait`: the first `recv` blocks. `timed`: it is bounded by the
    /// receive timeout, and a signal ends it (the caller recomputes what is
    /// left of its deadline) instead of restarting the full timeout.
    fn read(&mut self, mut wait: bool, timed: bool) -> Result<Filled> {
        if self.eof {
            return Ok(Filled::Eof);
        }
        let mut total = 0;
        while total < READ_BUDGET {
            let chunk = if self.frame_reads {
                match self.decoder.missing() {
                    0 => break,
                    missing => missing.min(READ_CHUNK_MAX),
                }
            } else {
                self.read_chunk
            };
            let res = socket::recv_into(
                self.fd.as_fd(),
                self.decoder.buffer(),
                chunk,
                wait,
                &mut self.fds_buf,
            );
            if let Ok(n @ 1..) = res {
                // The kernel ends a read right after the bytes that carried
                // fds (and hands them over with the first read to touch
                // those bytes), so they belong to the frame holding the
                // read's last byte.
                let at = self.received + n as u64 - 1;
                self.fds_in
                    .extend(self.fds_buf.drain(..).map(|fd| (at, fd)));
                self.received += n as u64;
            }
            self.fds_buf.clear();
            match res {
                Ok(0) => {
                    self.eof = true;
                    return Ok(Filled::Eof);
                }
                // A short read means the socket is drained for now: stop
                // without the extra call that would return `EAGAIN`.
                Ok(n) if n < chunk => {
                    total += n;
                    break;
                }
                Ok(n) => {
                    total += n;
                    wait = false;
                    if !self.frame_reads {
                        self.read_chunk = (chunk * 2).min(READ_CHUNK_MAX);
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted && !(wait && timed) => continue,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => break,
                Err(e) if is_peer_gone(&e) => {
                    self.eof = true;
                    return Ok(Filled::Eof);
                }
                Err(e) => return Err(Error::io(e)),
            }
        }
        Ok(Filled::Read(total))
    }

    /// Whether a complete frame is buffered (decodable without reading).
    pub(crate) fn has_complete_frame(&self) -> bool {
        self.decoder.has_complete_frame()
    }

    /// The next complete frame already read, if any.
    ///
    /// The fds that came with its bytes are kept for
    /// [`take_fds`](Conn::take_fds) if it is a frame that announces fds;
    /// any others (a peer that attached fds to a plain frame, or to bytes
    /// that were skipped) are closed here, so they neither pile up nor
    /// reach a later message.
    pub(crate) fn next_frame(&mut self) -> Option<Result<Frame>> {
        let frame = self.decoder.next_frame()?;
        let span = self.decoder.last_frame();
        self.traffic.frames_received += 1;
        self.traffic.bytes_received += span.end - span.start;
        if let Err(e) = &frame {
            if let ErrorKind::FrameTooLarge { len, .. } = e.kind() {
                // Its body is skipped, not returned, but it arrived.
                self.traffic.bytes_received += *len as u64;
            }
        }
        let wants_fds = matches!(frame, Ok(Frame::MessageFds(..)));
        self.frame_fds.clear();
        while self.fds_in.front().is_some_and(|(at, _)| *at < span.end) {
            if let Some((at, fd)) = self.fds_in.pop_front() {
                if wants_fds && at >= span.start {
                    self.frame_fds.push(fd);
                }
            }
        }
        Some(match frame {
            Ok(Frame::Lane(slot)) => match &mut self.lane {
                Some(lane) => lane.recv(slot, self.max_frame).map(Frame::Message),
                None => Err(Error::new(ErrorKind::Decode)
                    .with_source("a lane marker on a connection without a lane")),
            },
            other => other,
        })
    }

    /// The `count` fds the `MessageFds` frame just decoded announced, in
    /// order.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Decode`] if its bytes carried another number of fds (a
    /// peer that lied about them); they are closed.
    pub(crate) fn take_fds(&mut self, count: u8) -> Result<Vec<OwnedFd>> {
        let fds = std::mem::take(&mut self.frame_fds);
        if fds.len() != usize::from(count) {
            return Err(Error::new(ErrorKind::Decode).with_source(format!(
                "a frame announced {count} fds and carried {}",
                fds.len()
            )));
        }
        Ok(fds)
    }

    /// Sends a message with fds attached, after everything buffered before
    /// it (the fds travel with the frame's first byte), waiting for room
    /// until `deadline` and reading meanwhile as `flush` does.
    pub(crate) fn send_with_fds(
        &mut self,
        msg: &Message,
        fds: &[BorrowedFd<'_>],
        deadline: Option<Instant>,
        watch: Option<BorrowedFd<'_>>,
    ) -> Result<()> {
        if fds.is_empty() || fds.len() > socket::MAX_FDS {
            return Err(Error::new(ErrorKind::InvalidArgument)
                .with_source(format!("1 to {} fds per message", socket::MAX_FDS)));
        }
        let mut frame = Vec::new();
        wire::encode_message_fds(&mut frame, msg, fds.len() as u8, self.max_frame)?;
        self.flush(deadline, watch)?;
        loop {
            match socket::send_with_fds(self.fd.as_fd(), &frame, fds) {
                Ok(n) => {
                    self.traffic.frames_sent += 1;
                    self.traffic.bytes_sent += frame.len() as u64;
                    self.out.extend_from_slice(&frame[n..]);
                    return self.flush(deadline, watch);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.wait_writable(deadline, watch)?;
                }
                Err(e) if is_peer_gone(&e) => return Err(Error::disconnected(None)),
                Err(e) => return Err(Error::io(e)),
            }
        }
    }
}

impl<F: AsFd> AsFd for Conn<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

fn is_peer_gone(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::NotConnected
    )
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;
    use crate::protocol::wire::{DEFAULT_MAX_FRAME as MAX, Fingerprints};
    use crate::transport::lane::LaneRings;

    fn pair() -> (Conn, Conn) {
        let (a, b) = socket::socketpair().unwrap();
        (Conn::new(a, MAX), Conn::new(b, MAX))
    }

    /// Writes what `from` buffered and decodes it all on `to` (a
    /// socketpair's send lands in the peer's buffer at once, so one flush
    /// and one read move it); returns how many frames arrived.
    fn deliver(from: &mut Conn, to: &mut Conn) -> u64 {
        assert!(from.try_flush().unwrap(), "small frames fit the socket");
        assert!(matches!(to.fill().unwrap(), Filled::Read(1..)));
        let mut frames = 0;
        while let Some(frame) = to.next_frame() {
            frame.unwrap();
            frames += 1;
        }
        frames
    }

    fn assert_mirrored(a: &Conn, b: &Conn) {
        let (a, b) = (a.traffic(), b.traffic());
        assert_eq!(
            (a.frames_sent, a.bytes_sent),
            (b.frames_received, b.bytes_received)
        );
        assert_eq!(
            (b.frames_sent, b.bytes_sent),
            (a.frames_received, a.bytes_received)
        );
    }

    #[test]
    fn frames_and_bytes_are_counted_both_ways_and_agree() {
        let (mut a, mut b) = pair();
        a.feed(&Message::new("ping").with("n", 1)).unwrap();
        a.feed(&Message::new("ping").with("s", "two")).unwrap();
        let fed = a.pending_output() as u64;
        assert_eq!(deliver(&mut a, &mut b), 2);
        let t = a.traffic();
        assert_eq!((t.frames_sent, t.bytes_sent), (2, fed));
        assert_eq!((t.frames_received, t.bytes_received), (0, 0));
        assert_mirrored(&a, &b);

        b.feed(&Message::new("pong")).unwrap();
        b.feed_call(7, "add", Fingerprints::default(), &(1u32, 2u32))
            .unwrap();
        b.feed_reply(7, Ok(&[3])).unwrap();
        b.feed_stop();
        assert_eq!(deliver(&mut b, &mut a), 4);
        assert_eq!(b.traffic().frames_sent, 4);
        assert_mirrored(&a, &b);
    }

    #[test]
    fn an_unfed_frame_leaves_the_counts() {
        let (mut a, mut b) = pair();
        a.feed(&Message::new("kept")).unwrap();
        let before = a.traffic();
        let mark = a.feed_mark();
        a.feed(&Message::new("taken back").with("n", 2)).unwrap();
        assert_eq!(a.traffic().frames_sent, 2);
        assert!(a.unfeed(mark));
        assert_eq!(a.traffic(), before);
        assert_eq!(deliver(&mut a, &mut b), 1);
        assert_mirrored(&a, &b);
    }

    #[test]
    fn a_lane_message_counts_its_slot_bytes_on_both_ends() {
        let (mut a, mut b) = pair();
        let rings = LaneRings::new(1 << 10, 1 << 20).unwrap();
        a.set_lane(rings.frontend_end().unwrap());
        b.set_lane(rings.backend_end().unwrap());
        let msg = Message::new("large").with("data", vec![7u8; 64 << 10]);
        a.feed(&msg).unwrap();
        assert_eq!(a.lane_sent(), 1);
        assert!(a.traffic().bytes_sent > 64 << 10, "the slot's bytes count");
        let mark = a.feed_mark();
        a.feed(&msg).unwrap();
        assert!(!a.unfeed(mark), "a published slot is not taken back");
        assert_eq!(deliver(&mut a, &mut b), 2);
        assert_eq!(a.traffic().frames_sent, 2);
        assert_mirrored(&a, &b);
    }
}
