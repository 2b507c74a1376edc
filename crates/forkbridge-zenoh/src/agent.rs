//! The agent: a program on a backend's host that starts registered
//! backend types when a frontend asks, and serves each as [`serve`] does.
//!
//! A frontend's [`Link::start_on`] sends a query to
//! `fbagent/<namespace>/<agent>/start` carrying the type's registered name,
//! the process name, and the backend as postcard bytes. The agent decodes
//! the backend with the type registered under that name, starts it with
//! [`StartMethod::ForkServer`] (its Zenoh threads rule out forking itself;
//! the fork server, spawned before the link opened, forks a small
//! single-threaded copy of the agent's program instead), serves it under
//! the process name, and answers. The rest — frames, exit status, signals,
//! fate sharing — is the served backend's.
//!
//! Code does not travel: the agent's program must contain the backend type,
//! registered under the name the frontend uses. If the agent dies, its
//! fork server and every backend it started die with it, and their
//! frontends see `Disconnected` with `is_host_lost()`.
//!
//! [`serve`]: crate::serve

use std::collections::HashMap;
use std::fmt;
use std::process::ExitStatus;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use forkbridge::{Backend, MessageProcess, MessageProcessBuilder, StartMethod};
use serde::Serialize;
use serde::de::DeserializeOwned;
use zenoh::Wait;
use zenoh::query::Query;

use crate::config::Config;
use crate::error::{Error, ErrorKind, Result};
use crate::keys::{Keys, agent_start};
use crate::link::Link;
use crate::serve::ServedBackend;

/// How long [`Link::start_on`] waits for the agent's answer (the start
/// included).
const START_WAIT: Duration = Duration::from_secs(20);

type Factory =
    Box<dyn Fn(&str, &[u8]) -> std::result::Result<MessageProcess, String> + Send + Sync>;

/// The backend types an agent may start; [`start`](AgentBuilder::start)
/// makes the [`Agent`].
pub struct AgentBuilder {
    name: String,
    kinds: HashMap<String, Factory>,
}

impl AgentBuilder {
    /// Registers `B` under `kind`, the name frontends start it by.
    pub fn register<B>(mut self, kind: &str) -> AgentBuilder
    where
        B: Backend + Serialize + DeserializeOwned,
    {
        self.kinds.insert(
            kind.to_owned(),
            Box::new(|name, bytes| {
                let backend: B = postcard::from_bytes(bytes)
                    .map_err(|e| format!("the backend does not decode: {e}"))?;
                MessageProcess::builder(name)
                    .start_method(StartMethod::ForkServer)
                    .build_portable(backend)
                    .map_err(|e| e.to_string())
            }),
        );
        self
    }

    /// Starts the fork server, opens the link and answers start requests.
    /// Call it in a program whose `main` begins with
    /// [`forkbridge::init()`](forkbridge::init), before it starts threads
    /// of its own (so it fits `MainContext::start_threads`).
    ///
    /// # Errors
    ///
    /// [`ErrorKind::Process`] if the fork server cannot start (no
    /// `forkbridge::init()` first in `main`: `InitMissing`);
    /// [`ErrorKind::Config`] for a name that cannot be a key; as
    /// [`Link::open`] otherwise.
    pub fn start(self, config: Config) -> Result<Agent> {
        Keys::new(&config.namespace, &self.name)?;
        forkbridge::start_fork_server()?;
        let link = Link::open(config)?;
        let shared = Arc::new(Shared {
            link,
            kinds: self.kinds,
            served: Mutex::new(Vec::new()),
        });
        let key = agent_start(&shared.link.config.namespace, &self.name);
        let queryable = {
            let weak = Arc::downgrade(&shared);
            shared
                .link
                .session
                .declare_queryable(key)
                .callback(move |query| {
                    if let Some(shared) = weak.upgrade() {
                        shared.answer(&query);
                    }
                })
                .wait()
                .map_err(|e| Error::link("cannot answer start requests", e))?
        };
        Ok(Agent {
            name: self.name,
            shared,
            _queryable: queryable,
        })
    }
}

impl fmt::Debug for AgentBuilder {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AgentBuilder")
            .field("name", &self.name)
            .field("kinds", &self.kinds.keys().collect::<Vec<_>>())
            .finish()
    }
}

/// A running agent: a program on a backend's host that starts the backend
/// types it registered when a frontend asks ([`Link::start_on`]), each
/// forked by its fork server and served under the name the frontend chose.
///
/// ```no_run
/// use forkbridge::{Backend, Handlers};
/// use forkbridge_zenoh::{Agent, Config};
/// # #[derive(serde::Serialize, serde::Deserialize)] struct Detector;
/// # impl Backend for Detector { fn register(_: &mut Handlers<Self>) {} }
///
/// forkbridge::init(); // first in main: the fork server runs this program
/// let agent = Agent::builder("gpu-1")
///     .register::<Detector>("Detector")
///     .start(Config::listen("tcp/0.0.0.0:7447").namespace("vision"))?;
/// // ... until the program is asked to stop:
/// for (name, status) in agent.stop() {
///     println!("{name}: {status:?}");
/// }
/// # Ok::<(), forkbridge_zenoh::Error>(())
/// ```
///
/// Code does not travel: the agent's program must contain each type it
/// starts. If the agent dies, its fork server and every backend it started
/// die with it, and their frontends see `Disconnected` with
/// [`is_host_lost`](forkbridge::Error::is_host_lost).
pub struct Agent {
    name: String,
    shared: Arc<Shared>,
    _queryable: zenoh::query::Queryable<()>,
}

struct Shared {
    link: Link,
    kinds: HashMap<String, Factory>,
    served: Mutex<Vec<ServedBackend>>,
}

impl Agent {
    /// An agent called `name` (unique in its namespace: frontends start
    /// backends on it by this name).
    pub fn builder(name: impl Into<String>) -> AgentBuilder {
        AgentBuilder {
            name: name.into(),
            kinds: HashMap::new(),
        }
    }

    /// Its name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The link it answers on.
    pub fn link(&self) -> &Link {
        &self.shared.link
    }

    /// The names of the backends it serves now.
    pub fn running(&self) -> Vec<String> {
        let mut served = self
            .shared
            .served
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        served.retain(|b| !b.is_finished());
        served.iter().map(|b| b.name.clone()).collect()
    }

    /// Stops every backend it started (each within its bounds) and
    /// returns how each ended; start requests are refused from now on.
    pub fn stop(self) -> Vec<(String, Option<ExitStatus>)> {
        drop(self._queryable);
        let served = std::mem::take(
            &mut *self
                .shared
                .served
                .lock()
                .unwrap_or_else(PoisonError::into_inner),
        );
        for backend in &served {
            backend.stop();
        }
        served.into_iter().map(ServedBackend::join).collect()
    }
}

impl fmt::Debug for Agent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Agent").field("name", &self.name).finish()
    }
}

/// What a frontend sends to start a backend.
#[derive(serde::Serialize, serde::Deserialize)]
struct StartRequest {
    kind: String,
    name: String,
    backend: Vec<u8>,
}

impl Shared {
    fn answer(&self, query: &Query) {
        let outcome = match query.payload() {
            Some(payload) => self.start(&payload.to_bytes()),
            None => Err("an empty start request".to_owned()),
        };
        let reply = match outcome {
            Ok(()) => query
                .reply(query.key_expr().clone(), Vec::<u8>::new())
                .wait(),
            Err(message) => {
                log::warn!("start request refused: {message}");
                query.reply_err(message).wait()
            }
        };
        if let Err(e) = reply {
            log::warn!("cannot answer a start request: {e}");
        }
    }

    fn start(&self, payload: &[u8]) -> std::result::Result<(), String> {
        let request: StartRequest =
            postcard::from_bytes(payload).map_err(|e| format!("a malformed start request: {e}"))?;
        let factory = self
            .kinds
            .get(&request.kind)
            .ok_or_else(|| format!("no backend type registered as {:?}", request.kind))?;
        Keys::new(&self.link.config.namespace, &request.name).map_err(|e| e.to_string())?;
        let mut served = self.served.lock().unwrap_or_else(PoisonError::into_inner);
        served.retain(|b| !b.is_finished());
        if served.iter().any(|b| b.name == request.name) {
            return Err(format!("a backend named {:?} runs already", request.name));
        }
        let mut process = factory(&request.name, &request.backend)?;
        process.start().map_err(|e| e.to_string())?;
        let relay = process.into_relay().map_err(|e| e.to_string())?;
        let backend = self.link.serve_relay(relay).map_err(|e| e.to_string())?;
        log::info!("started {:?} as {:?}", request.kind, request.name);
        served.push(backend);
        Ok(())
    }
}

impl Link {
    /// Asks the agent called `agent` in this link's namespace to start a
    /// backend of the type it registered as `kind`, from `backend` (sent
    /// as postcard bytes), under `builder`'s name; then attaches to it as
    /// [`attach_with`](Link::attach_with) does.
    ///
    /// # Errors
    ///
    /// [`ErrorKind::NotFound`] if no such agent answers;
    /// [`ErrorKind::Refused`] if it refuses (an unknown kind, a name that
    /// runs already, a backend that does not decode or start), with its
    /// reason; [`ErrorKind::Process`] if `backend` cannot be encoded; as
    /// [`attach_with`](Link::attach_with) otherwise.
    pub fn start_on<B: Serialize>(
        &self,
        agent: &str,
        kind: &str,
        builder: MessageProcessBuilder,
        backend: &B,
    ) -> Result<MessageProcess> {
        Keys::new(&self.config.namespace, agent)?;
        let request = StartRequest {
            kind: kind.to_owned(),
            name: builder.name().to_owned(),
            backend: postcard::to_stdvec(backend).map_err(|e| {
                Error::new(ErrorKind::Config, format!("cannot encode the backend: {e}"))
            })?,
        };
        let payload = postcard::to_stdvec(&request).map_err(|e| {
            Error::new(ErrorKind::Config, format!("cannot encode the request: {e}"))
        })?;
        let replies = self
            .session
            .get(agent_start(&self.config.namespace, agent))
            .payload(payload)
            .timeout(START_WAIT)
            .wait()
            .map_err(|e| Error::link("cannot ask the agent", e))?;
        match replies.recv() {
            Ok(reply) => match reply.result() {
                Ok(_) => {}
                Err(refusal) => {
                    let why = refusal
                        .payload()
                        .try_to_string()
                        .map_or_else(|_| "(an unreadable reason)".to_owned(), |s| s.into_owned());
                    return Err(Error::new(
                        ErrorKind::Refused,
                        format!("agent '{agent}' refused to start '{}': {why}", request.name),
                    ));
                }
            },
            Err(_) => {
                return Err(Error::new(
                    ErrorKind::NotFound,
                    format!(
                        "no agent '{agent}' in namespace '{}' answered within {START_WAIT:?}",
                        self.config.namespace
                    ),
                ));
            }
        }
        self.attach_with(builder)
    }
}
