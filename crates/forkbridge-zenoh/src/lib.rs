//! Remote backends for [forkbridge] over [Eclipse Zenoh](https://zenoh.io):
//! the same [`MessageProcess`](forkbridge::MessageProcess), with its
//! backend on another host.
//!
//! A program on the backend's host serves backends by name; a frontend
//! attaches to one and gets a handle that works as a local one does —
//! send, feed and flush, receive, typed calls and casts, `AsFd`, the async
//! frontend, a bounded stop — so the program's logic does not change, only
//! how the backend is started.
//!
//! ```no_run
//! use forkbridge::{Backend, Handlers, Message, MessageProcess};
//! use forkbridge_zenoh::{Config, Link, serve};
//! use std::time::Duration;
//!
//! # #[derive(Default)] struct Detector;
//! # impl Backend for Detector { fn register(_: &mut Handlers<Self>) {} }
//! // On the GPU host (by hand, systemd or Kubernetes):
//! let served = serve(
//!     Config::listen("tcp/0.0.0.0:7447").namespace("vision"),
//!     [MessageProcess::new("detector-1", Detector)?],
//! )?;
//! served.wait();
//!
//! // On the frontend's host:
//! let link = Link::open(Config::connect("tcp/gpu-1:7447").namespace("vision"))?;
//! let mut detector = link.attach("detector-1")?;
//! detector.send(Message::new("detect").with("frame", 17))?;
//! let reply = detector.recv_timeout(Duration::from_secs(1))?;
//! detector.stop()?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! An [`Agent`] on the backend's host starts registered backend types when
//! a frontend asks ([`Link::start_on`]), each forked by its fork server;
//! with the `tls` feature, links are TLS with client certificates
//! (`Config::tls`).
//!
//! # Pools and supervisors across hosts
//!
//! A [`Pool`](forkbridge::Pool)'s or a
//! [`Supervisor`](forkbridge::Supervisor)'s factory may return a running
//! handle from [`Link::start_on`]: the pool dispatches to it, sees it die
//! (with the status its agent reports, or a lost host), and replaces it by
//! asking the agent again, as it restarts a local worker.
//!
//! ```no_run
//! use std::sync::Arc;
//! use forkbridge::{MessageProcess, Pool, RestartPolicy};
//! use forkbridge_zenoh::{Config, Link};
//! # #[derive(Default, serde::Serialize)] struct Detector;
//!
//! let link = Arc::new(Link::open(Config::connect("tcp/gpu-1:7447"))?);
//! let pool = Pool::builder("detectors")
//!     .workers(4)
//!     .restart(RestartPolicy::always())
//!     .build(move |name| {
//!         let builder = MessageProcess::builder(name);
//!         Ok(link.start_on("gpu-1", "Detector", builder, &Detector)?)
//!     })?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Faults
//!
//! Remote backends keep forkbridge's fault model:
//!
//! * a backend that dies gives [`Disconnected`](forkbridge::ErrorKind::Disconnected)
//!   with its exit status, published by its serving program, after every
//!   message it sent;
//! * a host lost in silence, or its serving program killed, gives
//!   `Disconnected` with [`is_host_lost`](forkbridge::Error::is_host_lost)
//!   within one [lease](Config#the-lease); waits and typed calls in flight
//!   end then, none hangs;
//! * a frontend that dies or loses its link takes its remote backends with
//!   it within one lease (stop request, then `SIGTERM`, then `SIGKILL`),
//!   unless the serving side asked them to
//!   [outlive it](Config::outlive_frontend);
//! * frames are never dropped silently: publishers block under congestion
//!   (Zenoh's default for a `put` is to drop), and a sender may have at
//!   most 8 MiB out that its receiver has not written into its stream, so a
//!   slow reader slows its writer, as a full local socket does — and only
//!   its writer: a backend that stops reading holds up neither the other
//!   backends of its link nor the signals that stop it;
//! * every network message is checked to be whole frames within the frame
//!   limit before it reaches a stream: a damaged or hostile one is logged
//!   and dropped, and the stream stays in step.
//!
//! # What stays on its host
//!
//! Frames carry messages, typed calls and replies. What means something
//! only on one host does not cross: fds sent with a message and the
//! shared-memory lane (a handle for a remote backend has neither), shared
//! memory ([`SharedBuffer`](forkbridge::SharedBuffer), rings, events).
//!
//! Event sets cross in their place, so code built on
//! [`SyncIndex`](forkbridge::SyncIndex) keeps working: the serving side
//! binds a [relayed](forkbridge::EventGroup::relayed) group to the process
//! (its backend sets by index as ever), and the frontend binds the group it
//! reserves from to the attached handle; each set arrives as a sample and
//! is set there, where a late one (after the frontend gave up) is ignored
//! as locally.
//!
//! ```no_run
//! use forkbridge::{EventGroup, MessageProcess};
//! # use forkbridge::{Backend, Handlers};
//! # struct Attacher { events: EventGroup }
//! # impl Backend for Attacher { fn register(_: &mut Handlers<Self>) {} }
//! use forkbridge_zenoh::{Config, Link, serve};
//! use std::time::Duration;
//!
//! // The backend's host: the backend's sets go to its frontend.
//! let relayed = EventGroup::relayed(8)?;
//! let p = MessageProcess::builder("attacher")
//!     .events(&relayed)
//!     .build(Attacher { events: relayed.clone() })?;
//! let served = serve(Config::listen("tcp/0.0.0.0:7447"), [p])?;
//!
//! // The frontend's host: the group it reserves from, bound to the handle.
//! let events = EventGroup::new(8)?;
//! let link = Link::open(Config::connect("tcp/gpu-1:7447"))?;
//! let p = link.attach_with(MessageProcess::builder("attacher").events(&events))?;
//! let sync = events.sync_index()?;
//! // ... send sync.index() in a message, then:
//! sync.wait_timeout(Duration::from_secs(5))?;
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Send bytes in messages instead of shared memory, and keep bulk data where it is made: a
//! 1080p RGB frame is about 6 MB, 30 of them a second 180 MB/s, more than
//! a 1 Gb/s link carries — let the GPU host read and decode the camera's
//! stream itself, and send it only what to look at and the results.
//!
//! # Design
//!
//! The core knows nothing of the network: it offers a seam
//! ([`forkbridge::relay`]) where a handle's far end, or a started
//! process's stream, is a plain socket of frames, and this crate moves
//! those frames over Zenoh. Zenoh brings what a protocol of our own would
//! have to build: peer-to-peer sessions with no broker, liveliness tokens
//! that vanish when a process dies (its TCP connection closes) or its host
//! goes silent for a lease, ordered reliable delivery, and TLS.
//!
//! Key space, per backend: `fb/<namespace>/<name>/{in,out,exit,sig}`, with
//! liveliness tokens `…/alive` (the serving side) and `…/owner/<zid>` (the
//! attached frontend); an agent answers on `fbagent/<namespace>/<agent>/start`.

#![warn(missing_docs)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod agent;
mod attach;
mod carry;
mod config;
mod error;
mod keys;
mod link;
mod serve;

pub use agent::{Agent, AgentBuilder};
#[cfg(feature = "tls")]
pub use config::Tls;
pub use config::{Config, DEFAULT_LEASE};
pub use error::{Error, ErrorKind, Result};
pub use link::Link;
pub use serve::{Served, serve};
