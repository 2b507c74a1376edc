//! `EventGroup` and `Event`: the core's process-shared events for Python.

use forkbridge::{EventIndex, EventKind, FromValue, Value};
use pyo3::exceptions::{PyTypeError, PyValueError};
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
#[pyclass(frozen, module = "forkbridge._native")]
pub(crate) struct EventGroup {
    inner: forkbridge::EventGroup,
}

fn index(i: &Bound<'_, PyAny>) -> PyResult<EventIndex> {
    let raw: u64 = i
        .extract()
        .map_err(|_| PyTypeError::new_err("an event index is an int from EventGroup.reserve"))?;
    EventIndex::from_value(&Value::from(raw))
        .ok_or_else(|| PyValueError::new_err(format!("{raw} is not an event index")))
}

fn raw(index: EventIndex) -> u64 {
    Value::from(index).as_u64().unwrap_or_default()
}

#[pymethods]
impl EventGroup {
    #[new]
    #[pyo3(signature = (n = 10, pollable = false))]
    fn new(n: usize, pollable: bool) -> PyResult<EventGroup> {
        let kind = if pollable {
            EventKind::Pollable
        } else {
            EventKind::Futex
        };
        Ok(EventGroup {
            inner: forkbridge::EventGroup::with_kind(n, kind).py_err()?,
        })
    }

    /// `(index, event)`, the event cleared; `NotEnoughEvents` when all are
    /// reserved.
    fn reserve(&self) -> PyResult<(u64, Event)> {
        let (i, event) = self.inner.reserve().py_err()?;
        Ok((raw(i), Event { inner: event }))
    }

    fn release(&self, event: &Event) -> PyResult<()> {
        self.inner.release(&event.inner).py_err()
    }

    fn release_ind(&self, i: &Bound<'_, PyAny>) -> PyResult<()> {
        self.inner.release_index(index(i)?).py_err()
    }

    /// Sets the event reserved as `i`; `False` if that reservation is over
    /// (a late set never wakes a later request).
    fn set(&self, i: &Bound<'_, PyAny>) -> PyResult<bool> {
        self.inner.set(index(i)?).py_err()
    }

    #[allow(non_snake_case)]
    fn fromIndex(&self, i: &Bound<'_, PyAny>) -> PyResult<Event> {
        let i = index(i)?;
        Ok(Event {
            inner: self.inner.get(i.slot()).py_err()?,
        })
    }

    #[allow(non_snake_case)]
    fn asIndex(&self, event: &Event) -> PyResult<u64> {
        Ok(raw(self.inner.index_of(&event.inner).py_err()?))
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
