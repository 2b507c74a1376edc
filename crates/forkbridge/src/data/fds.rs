//! File descriptors that travel beside serialized data.
//!
//! A backend started by `Spawn` or `ForkServer` crosses as bytes (serde),
//! but some of what it holds is not bytes: an [`Event`](crate::Event) is a
//! shared word in a memfd, a [`SharedBuffer`](crate::SharedBuffer) a
//! mapped memfd. Their serde impls hand their fds to this module instead
//! of writing them: [`carry`] puts a duplicate in a side list and writes
//! its index; the list goes with the bytes as `SCM_RIGHTS`; on the other
//! side [`claim`] takes the fd at that index back while the value is
//! decoded.
//!
//! The lists are thread-local and exist only inside [`collect`] and
//! [`provide`], which the start methods call around encoding and decoding
//! a backend. Outside them, serializing such a value fails with a clear
//! message rather than writing a number that means nothing elsewhere (an
//! fd sent as JSON to another program would be a lie).
//!
//! Rejected: an fd per field found by a visitor over the value (serde has
//! no such hook), and `serde(with = ...)` on every user field holding one
//! (the user would have to remember it; a thread-local needs nothing).

use std::cell::RefCell;
use std::os::fd::{AsFd, OwnedFd};

thread_local! {
    static OUTGOING: RefCell<Option<Vec<OwnedFd>>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Vec<Option<OwnedFd>>>> = const { RefCell::new(None) };
}

/// Why an fd could not be carried or claimed.
pub(crate) const OUTSIDE: &str =
    "shared objects (events, buffers, rings) cross only to a backend as it starts";

/// Runs `encode` and returns what it returned with the fds carried meanwhile,
/// in the order of their indices.
pub(crate) fn collect<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let outer = OUTGOING.with(|o| o.replace(Some(Vec::new())));
    let result = encode();
    let fds = OUTGOING.with(|o| o.replace(outer)).unwrap_or_default();
    (result, fds)
}

/// Runs `decode` with `fds` available to [`claim`]; fds nobody claimed are
/// closed when it returns.
pub(crate) fn provide<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    let list = fds.into_iter().map(Some).collect();
    let outer = INCOMING.with(|i| i.replace(Some(list)));
    let result = decode();
    INCOMING.with(|i| i.replace(outer));
    result
}

/// Puts a duplicate of `fd` in the list of [`collect`] and returns its
/// index, to be written in its place.
pub(crate) fn carry(fd: impl AsFd) -> Result<u32, String> {
    let dup = fd
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| format!("cannot duplicate an fd to carry: {e}"))?;
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        Some(list) => {
            let index = u32::try_from(list.len()).map_err(|_| "too many fds".to_string())?;
            list.push(dup);
            Ok(index)
        }
        None => Err(OUTSIDE.to_string()),
    })
}

/// Takes the fd at `index` of the list of [`provide`] (once).
pub(crate) fn claim(index: u32) -> Result<OwnedFd, String> {
    INCOMING.with(|i| match i.borrow_mut().as_mut() {
        Some(list) => list
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| format!("fd {index} is missing or was claimed twice")),
        None => Err(OUTSIDE.to_string()),
    })
}

/// A serde helper for one field or newtype holding an fd: write it as its
/// index, read it back as an owned fd.
pub(crate) fn serialize<S: serde::Serializer>(fd: impl AsFd, s: S) -> Result<S::Ok, S::Error> {
    let index = carry(fd).map_err(serde::ser::Error::custom)?;
    s.serialize_u32(index)
}

/// The reverse of [`serialize`].
pub(crate) fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<OwnedFd, D::Error> {
    let index = <u32 as serde::Deserialize>::deserialize(d)?;
    claim(index).map_err(serde::de::Error::custom)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_fd_travels_by_index_and_is_claimed_once() {
        let (r, _w) = std::io::pipe().unwrap();
        let (index, fds) = collect(|| carry(&r).unwrap());
        assert_eq!((index, fds.len()), (0, 1));
        provide(fds, || {
            assert!(claim(0).is_ok());
            assert!(claim(0).unwrap_err().contains("claimed twice"));
            assert!(claim(7).is_err());
        });
    }

    #[test]
    fn outside_a_start_it_is_refused() {
        let (r, _w) = std::io::pipe().unwrap();
        assert_eq!(carry(&r).unwrap_err(), OUTSIDE);
        assert_eq!(claim(0).unwrap_err(), OUTSIDE);
    }
}
