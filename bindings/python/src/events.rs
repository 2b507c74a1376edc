//! `EventGroup` and `Event`: the core's process-shared events for Python.

use forkbridge::{EventIndex, EventKind, FromValue, Value};
use pyo3::exceptions::{PyOverflowError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::SIGNAL_SLICE;
use crate::errors::IntoPyResult;
use crate::process::deadline_in;

/// One process-shared event.
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct Event {
    pub(crate) inner: forkbridge::Event,
}

#[pymethods]
impl Event {
    #[new]
    #[pyo3(signature = (pollable = false))]
    fn new(pollable: bool) -> PyResult<Event> {
        let kind = if pollable {
            EventKind::Pollable
        } else {
            EventKind::Futex
        };
        Ok(Event {
            inner: forkbridge::Event::with_kind(kind).py_err()?,
        })
    }

    fn set(&self) {
        self.inner.set();
    }

    fn clear(&self) {
        self.inner.clear();
    }

    fn is_set(&self) -> bool {
        self.inner.is_set()
    }

    /// Waits until set; `False` if `timeout` seconds passed first. Ctrl-C
    /// raises `KeyboardInterrupt` out of the wait.
    #[pyo3(signature = (timeout = None))]
    fn wait(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<bool> {
        let deadline = match timeout {
            Some(t) => deadline_in(t)?,
            None => None,
        };
        loop {
            let slice = deadline.map_or(SIGNAL_SLICE, |d| {
                d.saturating_duration_since(std::time::Instant::now())
                    .min(SIGNAL_SLICE)
            });
            if py.detach(|| self.inner.wait_timeout(slice)) {
                return Ok(true);
            }
            if deadline.is_some_and(|d| std::time::Instant::now() >= d) {
                return Ok(false);
            }
            py.check_signals()?;
        }
    }

    /// The eventfd of a pollable event (readable while set), else `None`.
    #[allow(non_snake_case)]
    fn getFd(&self) -> Option<i32> {
        use std::os::fd::AsRawFd;
        self.inner.fd().map(|fd| fd.as_raw_fd())
    }

    fn __eq__(&self, other: &Bound<'_, PyAny>) -> bool {
        other
            .cast::<Event>()
            .is_ok_and(|o| o.get().inner == self.inner)
    }

    fn __hash__(&self) -> u64 {
        use std::hash::{Hash, Hasher};
        let mut h = std::hash::DefaultHasher::new();
        self.inner.hash(&mut h);
        h.finish()
    }

    fn __repr__(&self) -> String {
        format!("<forkbridge.Event set={}>", self.inner.is_set())
    }
}

/// The core's `EventGroup`; the Python package's `EventGroup` wraps it.
///
/// Python sees an event's index as its slot, the plain int in `range(n)`
/// that valkka-multiprocess hands out, not the core's [`EventIndex`] with
/// its generation: programs keep one array slot per event and address it
/// with the same number. The generation cannot travel in a plain int, so
/// `set` sets whichever reservation holds the slot now (see the package's
/// `EventGroup` docstring for what that means for late sets).
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct EventGroup {
    inner: forkbridge::EventGroup,
}

impl EventGroup {
    pub(crate) fn from_inner(inner: forkbridge::EventGroup) -> EventGroup {
        EventGroup { inner }
    }

    pub(crate) fn inner(&self) -> &forkbridge::EventGroup {
        &self.inner
    }

    /// `i` as a slot of this group: `TypeError` if it is not an int (or
    /// has no `__index__`), `ValueError` outside `range(len)`.
    fn slot(&self, i: &Bound<'_, PyAny>) -> PyResult<u32> {
        let n = self.inner.len();
        let out_of_range = || {
            PyValueError::new_err(format!(
                "event index {} is out of range for an EventGroup of {n}",
                i.repr().map_or_else(|_| "?".to_owned(), |r| r.to_string())
            ))
        };
        let value: i64 = match i.extract() {
            Ok(v) => v,
            Err(e) if e.is_instance_of::<PyOverflowError>(i.py()) => return Err(out_of_range()),
            Err(_) => {
                return Err(PyTypeError::new_err(format!(
                    "an event index is an int from EventGroup.reserve, not {}",
                    i.get_type()
                        .name()
                        .map_or_else(|_| "?".to_owned(), |n| n.to_string())
                )));
            }
        };
        usize::try_from(value)
            .ok()
            .filter(|&v| v < n)
            .and_then(|v| u32::try_from(v).ok())
            .ok_or_else(out_of_range)
    }

    /// The slot of `event` if it is one of this group's events, else a
    /// `ValueError` naming what `method` got (valkka looks the event up in
    /// its list, which raises `ValueError` too).
    fn slot_of(&self, method: &str, event: &Bound<'_, PyAny>) -> PyResult<u32> {
        event
            .cast::<Event>()
            .ok()
            .and_then(|e| self.inner.index_of(&e.get().inner).ok())
            .map(EventIndex::slot)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "EventGroup.{method}: {} is not an event of this EventGroup",
                    event
                        .repr()
                        .map_or_else(|_| "the object".to_owned(), |r| r.to_string())
                ))
            })
    }

    fn release_slot(&self, slot: u32) -> PyResult<()> {
        let event = self.inner.get(slot).py_err()?;
        self.inner.release(&event).map_err(|_| {
            PyValueError::new_err(format!(
                "event {slot} of this EventGroup is not reserved (released twice?)"
            ))
        })
    }
}

#[pymethods]
impl EventGroup {
    #[new]
    #[pyo3(signature = (n = 10, pollable = false, relayed = false))]
    fn new(n: usize, pollable: bool, relayed: bool) -> PyResult<EventGroup> {
        let inner = match (pollable, relayed) {
            (true, true) => {
                return Err(PyValueError::new_err(
                    "a relayed EventGroup's events are set on its frontend's host: \
                     it cannot be pollable here",
                ));
            }
            (false, true) => forkbridge::EventGroup::relayed(n),
            (true, false) => forkbridge::EventGroup::with_kind(n, EventKind::Pollable),
            (false, false) => forkbridge::EventGroup::new(n),
        };
        Ok(EventGroup {
            inner: inner.py_err()?,
        })
    }

    /// Whether its sets go to a frontend on another host.
    #[getter]
    fn relayed(&self) -> bool {
        self.inner.is_relayed()
    }

    /// `(index, event)`, the event cleared; the index is the event's slot.
    /// Free slots are handed out oldest release first (a fresh group: 0, 1,
    /// 2, ...). `NotEnoughEvents` when all are reserved.
    fn reserve(&self) -> PyResult<(u32, Event)> {
        let (i, event) = self.inner.reserve().py_err()?;
        Ok((i.slot(), Event { inner: event }))
    }

    fn release(&self, event: &Bound<'_, PyAny>) -> PyResult<()> {
        let slot = self.slot_of("release", event)?;
        self.release_slot(slot)
    }

    fn release_ind(&self, i: &Bound<'_, PyAny>) -> PyResult<()> {
        let slot = self.slot(i)?;
        self.release_slot(slot)
    }

    /// Sets the event in slot `i`, reserved or not: a backend cannot tell
    /// (the reservations are the frontend's memory). A relayed group
    /// carries `i` to its frontend's host instead, and takes a Rust
    /// frontend's index too (an `EventIndex`, whose low bits are the slot).
    fn set(&self, i: &Bound<'_, PyAny>) -> PyResult<()> {
        if self.inner.is_relayed() {
            let index = i
                .extract::<u64>()
                .ok()
                .and_then(|raw| EventIndex::from_value(&Value::from(raw)))
                .filter(|index| (index.slot() as usize) < self.inner.len());
            return match index {
                Some(index) => self.inner.set(index).map(drop).py_err(),
                // The same errors as for a group of this host.
                None => Err(self.slot(i).err().unwrap_or_else(|| {
                    PyValueError::new_err("not an event index of this EventGroup")
                })),
            };
        }
        let slot = self.slot(i)?;
        self.inner.get(slot).py_err()?.set();
        Ok(())
    }

    #[allow(non_snake_case)]
    fn fromIndex(&self, i: &Bound<'_, PyAny>) -> PyResult<Event> {
        let slot = self.slot(i)?;
        Ok(Event {
            inner: self.inner.get(slot).py_err()?,
        })
    }

    #[allow(non_snake_case)]
    fn asIndex(&self, event: &Bound<'_, PyAny>) -> PyResult<u32> {
        self.slot_of("asIndex", event)
    }

    fn free(&self) -> usize {
        self.inner.free()
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    fn __str__(&self) -> String {
        self.inner.to_string()
    }
}
