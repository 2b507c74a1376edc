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
//!
//! # One object, one copy
//!
//! Clones of a shared object share one mapping (an `Arc`), and some of
//! them are told apart by that: an event belongs to its group if both hold
//! the same store. A value that holds two clones must decode to two clones
//! of one object again, not to two mappings of the same memory that no
//! longer know each other. So an object is written whole once per encode
//! ([`share`] says whether this is its first appearance, keyed by the
//! `Arc`'s address) and later as a reference to its id; the decoder keeps
//! what it built under that id ([`keep`]) and hands out clones of it
//! ([`shared`]). The encoder holds a clone of every object it has seen, so
//! no address is freed and reused for another object during one encode.

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;

/// An object decoded once and handed out by id.
type Object = Arc<dyn Any + Send + Sync>;

/// What [`collect`] gathers.
struct Outgoing {
    fds: Vec<OwnedFd>,
    /// Objects written so far, by address: their id, and a clone that
    /// keeps the address taken until the encode ends.
    objects: HashMap<usize, (u32, Object)>,
}

/// What [`provide`] offers.
struct Incoming {
    fds: Vec<Option<OwnedFd>>,
    objects: HashMap<u32, Object>,
    /// The first reason a shared object was refused (see [`refuse`]).
    refusal: Option<String>,
}

thread_local! {
    static OUTGOING: RefCell<Option<Outgoing>> = const { RefCell::new(None) };
    static INCOMING: RefCell<Option<Incoming>> = const { RefCell::new(None) };
}

/// Why an fd could not be carried or claimed.
pub(crate) const OUTSIDE: &str =
    "shared objects (events, buffers, rings) cross only to a backend as it starts";

/// Runs `encode` and returns what it returned with the fds carried meanwhile,
/// in the order of their indices.
pub(crate) fn collect<R>(encode: impl FnOnce() -> R) -> (R, Vec<OwnedFd>) {
    let fresh = Outgoing {
        fds: Vec::new(),
        objects: HashMap::new(),
    };
    let outer = OUTGOING.with(|o| o.replace(Some(fresh)));
    let result = encode();
    let fds = OUTGOING
        .with(|o| o.replace(outer))
        .map(|out| out.fds)
        .unwrap_or_default();
    (result, fds)
}

/// Runs `decode` with `fds` available to [`claim`]; fds nobody claimed are
/// closed when it returns.
pub(crate) fn provide<R>(fds: Vec<OwnedFd>, decode: impl FnOnce() -> R) -> R {
    let fresh = Incoming {
        fds: fds.into_iter().map(Some).collect(),
        objects: HashMap::new(),
        refusal: None,
    };
    let outer = INCOMING.with(|i| i.replace(Some(fresh)));
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
        Some(out) => {
            let index = u32::try_from(out.fds.len()).map_err(|_| "too many fds".to_string())?;
            out.fds.push(dup);
            Ok(index)
        }
        None => Err(OUTSIDE.to_string()),
    })
}

/// Takes the fd at `index` of the list of [`provide`] (once).
pub(crate) fn claim(index: u32) -> Result<OwnedFd, String> {
    INCOMING.with(|i| match i.borrow_mut().as_mut() {
        Some(inc) => inc
            .fds
            .get_mut(index as usize)
            .and_then(Option::take)
            .ok_or_else(|| format!("fd {index} is missing or was claimed twice")),
        None => Err(OUTSIDE.to_string()),
    })
}

/// Whether an object is written whole or as a reference (see the module
/// docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Sharing {
    /// Its first appearance in this encode: write it whole, with this id.
    First(u32),
    /// Written before under this id: write only the id.
    Again(u32),
}

/// Inside [`collect`]: whether `object` was written before in this encode.
pub(crate) fn share<T: Any + Send + Sync>(object: &Arc<T>) -> Result<Sharing, String> {
    let address = Arc::as_ptr(object) as usize;
    OUTGOING.with(|o| match o.borrow_mut().as_mut() {
        Some(out) => {
            if let Some((id, _)) = out.objects.get(&address) {
                return Ok(Sharing::Again(*id));
            }
            let id = u32::try_from(out.objects.len()).map_err(|_| "too many objects")?;
            let keep: Object = object.clone();
            out.objects.insert(address, (id, keep));
            Ok(Sharing::First(id))
        }
        None => Err(OUTSIDE.to_string()),
    })
}

/// Inside [`provide`]: records the object decoded for `id` (its
/// [`Sharing::First`]), for the references to it that follow.
pub(crate) fn keep<T: Any + Send + Sync>(id: u32, object: &Arc<T>) -> Result<(), String> {
    INCOMING.with(|i| match i.borrow_mut().as_mut() {
        Some(inc) => match inc.objects.entry(id) {
            Entry::Vacant(slot) => {
                slot.insert(object.clone());
                Ok(())
            }
            Entry::Occupied(_) => Err(format!("shared object {id} is written whole twice")),
        },
        None => Err(OUTSIDE.to_string()),
    })
}

/// Inside [`provide`]: the object kept for `id`, for a [`Sharing::Again`].
pub(crate) fn shared<T: Any + Send + Sync>(id: u32) -> Result<Arc<T>, String> {
    INCOMING.with(|i| match i.borrow().as_ref() {
        Some(inc) => {
            let object = inc
                .objects
                .get(&id)
                .ok_or_else(|| format!("shared object {id} is referred to before it is written"))?
                .clone();
            object
                .downcast::<T>()
                .map_err(|_| format!("shared object {id} is of another type"))
        }
        None => Err(OUTSIDE.to_string()),
    })
}

/// Records why a shared object could not be decoded (the first reason in
/// a [`provide`]) and returns it, for the decoder's error. Some formats
/// (postcard) keep only that *a* custom error happened, not its text; a
/// start method reads the text back with [`refusal`].
pub(crate) fn refuse(why: String) -> String {
    INCOMING.with(|i| {
        if let Some(inc) = i.borrow_mut().as_mut() {
            inc.refusal.get_or_insert_with(|| why.clone());
        }
    });
    why
}

/// Inside [`provide`]: the first reason [`refuse`] recorded, if any.
pub(crate) fn refusal() -> Option<String> {
    INCOMING.with(|i| i.borrow().as_ref().and_then(|inc| inc.refusal.clone()))
}

/// `value` as postcard bytes, with the fds of the shared objects in it.
pub(crate) fn encode<T: serde::Serialize + ?Sized>(
    value: &T,
) -> Result<(Vec<u8>, Vec<OwnedFd>), postcard::Error> {
    let (bytes, fds) = collect(|| postcard::to_allocvec(value));
    Ok((bytes?, fds))
}

/// The reverse of [`encode`]. A shared object's reason for refusing its fd
/// is the error's text (postcard keeps only that a custom error happened).
pub(crate) fn decode<T: serde::de::DeserializeOwned>(
    bytes: &[u8],
    fds: Vec<OwnedFd>,
) -> Result<T, String> {
    provide(fds, || {
        postcard::from_bytes(bytes).map_err(|e| refusal().unwrap_or_else(|| e.to_string()))
    })
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
        assert_eq!(share(&Arc::new(1u8)).unwrap_err(), OUTSIDE);
        assert_eq!(shared::<u8>(0).unwrap_err(), OUTSIDE);
    }

    #[test]
    fn an_object_is_written_once_and_referred_to_after() {
        let (a, b) = (Arc::new(1u8), Arc::new(2u8));
        let (seen, fds) = collect(|| [&a, &b, &a.clone()].map(|o| share(o).unwrap()));
        assert!(fds.is_empty());
        assert_eq!(
            seen,
            [Sharing::First(0), Sharing::First(1), Sharing::Again(0)]
        );
        provide(Vec::new(), || {
            assert!(shared::<u8>(0).unwrap_err().contains("before"));
            keep(0, &Arc::new(7u8)).unwrap();
            assert!(keep(0, &Arc::new(8u8)).is_err(), "written whole twice");
            assert_eq!(*shared::<u8>(0).unwrap(), 7);
            assert!(shared::<u16>(0).unwrap_err().contains("another type"));
        });
    }

    #[test]
    fn the_first_refusal_is_kept_for_the_decoder() {
        provide(Vec::new(), || {
            assert_eq!(refusal(), None);
            assert_eq!(refuse("first".into()), "first");
            refuse("second".into());
            assert_eq!(refusal().as_deref(), Some("first"));
        });
        provide(Vec::new(), || {
            assert_eq!(refusal(), None, "one decode's only")
        });
    }
}
