//! Reading whole frames from a stream, for a transport's sending side.

use std::io::{self, Read};

use crate::error::{Error, Result};

use super::{Cut, FrameCheck};

/// How much one read asks for; a run of frames is at most this plus the
/// frame that did not fit.
const READ_SIZE: usize = 64 << 10;

/// Reads a stream and returns its frames in runs of whole ones, skipping
/// (and reporting) frames that must not cross: the sending half of a
/// transport.
///
/// ```
/// use forkbridge::relay::FrameReader;
/// use forkbridge::{Message, MessageProcess};
///
/// let (mut p, remote) = MessageProcess::builder("far").attach()?;
/// p.send(Message::new("one"))?;
/// p.send(Message::new("two"))?;
/// let mut frames = FrameReader::new(remote.stream().try_clone()?, remote.frames());
/// let run = frames.next_run()?.expect("two frames");
/// assert!(remote.frames().check(run).is_ok());
/// # Ok::<(), forkbridge::Error>(())
/// ```
#[derive(Debug)]
pub struct FrameReader<R> {
    inner: R,
    check: FrameCheck,
    /// Read bytes are `buf[..end]`; the rest is room for the next read.
    buf: Vec<u8>,
    end: usize,
    /// `buf[start..end]` is not handed out yet.
    start: usize,
    /// Bytes of a refused frame still to drop as they arrive.
    skip: usize,
}

impl<R: Read> FrameReader<R> {
    /// Reads `inner`, letting through frames that pass `check`.
    pub fn new(inner: R, check: FrameCheck) -> FrameReader<R> {
        FrameReader {
            inner,
            check,
            buf: Vec::new(),
            end: 0,
            start: 0,
            skip: 0,
        }
    }

    /// The next run of whole frames, waiting in the stream's read for it;
    /// `Ok(None)` at the end of the stream (a partial frame left then is
    /// dropped: its writer died in the middle of it).
    ///
    /// # Errors
    ///
    /// A frame that must not cross, as [`Cut::Refused`] (it is dropped;
    /// call again for the frames after it); [`ErrorKind::Io`](crate::ErrorKind::Io)
    /// if the read fails.
    pub fn next_run(&mut self) -> Result<Option<&[u8]>> {
        loop {
            if self.skip > 0 {
                let n = self.skip.min(self.end - self.start);
                self.start += n;
                self.skip -= n;
            }
            if self.skip == 0 {
                match self.check.cut(&self.buf[self.start..self.end]) {
                    Cut::Whole(n) => {
                        let run = self.start..self.start + n;
                        self.start += n;
                        return Ok(Some(&self.buf[run]));
                    }
                    Cut::Refused { skip, error } => {
                        self.skip = skip;
                        return Err(error);
                    }
                    Cut::Partial => {}
                }
            }
            if !self.fill()? {
                return Ok(None);
            }
        }
    }

    /// Reads more; `false` at the end of the stream.
    fn fill(&mut self) -> Result<bool> {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        // Grown (and zeroed) once, not per read.
        if self.buf.len() < self.end + READ_SIZE {
            self.buf.resize(self.end + READ_SIZE, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(n) => {
                    self.end += n;
                    return Ok(n > 0);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(Error::from(e)),
            }
        }
    }
}
