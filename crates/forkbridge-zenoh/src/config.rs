//! Where a link listens or connects, and how long silence may last.

use std::time::Duration;

use crate::error::{Error, ErrorKind, Result};

/// The default lease: how long a peer may stay silent before it is taken
/// for lost.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(3);

/// How a [`Link`](crate::Link) reaches its peers.
///
/// Peer to peer, with no broker and no multicast discovery: one side
/// listens on an endpoint (`tcp/0.0.0.0:7447`; `tls/…` with the `tls`
/// feature), the other connects to it. A namespace keeps deployments that
/// share a network apart.
///
/// # The lease
///
/// A link sends keep-alives four times per lease; a peer silent for a
/// whole lease is taken for lost, and every backend on it is
/// `Disconnected` with [`is_host_lost`](forkbridge::Error::is_host_lost).
/// A short lease notices a dead host sooner; a long one survives longer
/// pauses (a congested network, a stalled VM) without a false alarm,
/// which would end every call to that host. The default, 3 s, is the
/// middle; Zenoh's own default is 10 s. A process that dies on a host
/// that lives is seen at once whatever the lease (its sockets close).
#[derive(Debug, Clone)]
pub struct Config {
    pub(crate) listen: Vec<String>,
    pub(crate) connect: Vec<String>,
    pub(crate) namespace: String,
    pub(crate) lease: Duration,
    pub(crate) attach_timeout: Duration,
    pub(crate) outlive_frontend: bool,
    #[cfg(feature = "tls")]
    pub(crate) tls: Option<Tls>,
}

/// Certificates for TLS links with client certificates (feature `tls`):
/// each side proves itself with a certificate signed by the CA, and checks
/// the other's.
///
/// Use `tls/<host>:<port>` endpoints. A peer without a certificate the CA
/// signed cannot open a link, so it can neither attach nor send a frame.
/// Files are PEM.
#[cfg(feature = "tls")]
#[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
#[derive(Debug, Clone)]
pub struct Tls {
    ca: std::path::PathBuf,
    certificate: std::path::PathBuf,
    private_key: std::path::PathBuf,
    verify_name: bool,
}

#[cfg(feature = "tls")]
impl Tls {
    /// This side's `certificate` and `private_key`, and the `ca` that
    /// signed every side's certificate.
    pub fn new(
        ca: impl Into<std::path::PathBuf>,
        certificate: impl Into<std::path::PathBuf>,
        private_key: impl Into<std::path::PathBuf>,
    ) -> Tls {
        Tls {
            ca: ca.into(),
            certificate: certificate.into(),
            private_key: private_key.into(),
            verify_name: true,
        }
    }

    /// Whether a connecting side checks that the listener's certificate
    /// names the host it connects to (on unless set; turn it off only for
    /// certificates made without the host's name).
    pub fn verify_name(mut self, yes: bool) -> Tls {
        self.verify_name = yes;
        self
    }
}

impl Config {
    /// A link that listens on `endpoint` (`tcp/<addr>:<port>`).
    pub fn listen(endpoint: impl Into<String>) -> Config {
        Config {
            listen: vec![endpoint.into()],
            ..Config::empty()
        }
    }

    /// A link that connects to a peer listening on `endpoint`.
    pub fn connect(endpoint: impl Into<String>) -> Config {
        Config {
            connect: vec![endpoint.into()],
            ..Config::empty()
        }
    }

    fn empty() -> Config {
        Config {
            listen: Vec::new(),
            connect: Vec::new(),
            namespace: "default".to_owned(),
            lease: DEFAULT_LEASE,
            attach_timeout: Duration::from_secs(10),
            outlive_frontend: false,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    /// Also connects to `endpoint`.
    pub fn also_connect(mut self, endpoint: impl Into<String>) -> Config {
        self.connect.push(endpoint.into());
        self
    }

    /// Also listens on `endpoint`.
    pub fn also_listen(mut self, endpoint: impl Into<String>) -> Config {
        self.listen.push(endpoint.into());
        self
    }

    /// The deployment's namespace (`"default"` unless set): backends are
    /// found by name within it.
    pub fn namespace(mut self, namespace: impl Into<String>) -> Config {
        self.namespace = namespace.into();
        self
    }

    /// The lease (see [above](Config#the-lease)); from 100 ms to an hour.
    pub fn lease(mut self, lease: Duration) -> Config {
        self.lease = lease;
        self
    }

    /// How long [`Link::attach`](crate::Link::attach) waits for the backend
    /// to be found (10 s unless set).
    pub fn attach_timeout(mut self, timeout: Duration) -> Config {
        self.attach_timeout = timeout;
        self
    }

    /// For the serving side: whether a backend keeps running when its
    /// frontend goes away (dies, or its host or link is lost), for the next
    /// frontend to attach. Off by default: it is stopped, as a local
    /// backend is when its frontend dies. Its messages wait, unsent, while
    /// no frontend is attached.
    pub fn outlive_frontend(mut self, yes: bool) -> Config {
        self.outlive_frontend = yes;
        self
    }

    /// Links use TLS with these certificates (feature `tls`).
    #[cfg(feature = "tls")]
    #[cfg_attr(docsrs, doc(cfg(feature = "tls")))]
    pub fn tls(mut self, tls: Tls) -> Config {
        self.tls = Some(tls);
        self
    }

    pub(crate) fn to_zenoh(&self) -> Result<zenoh::Config> {
        if self.lease < Duration::from_millis(100) || self.lease > Duration::from_secs(3600) {
            return Err(Error::new(
                ErrorKind::Config,
                format!("lease {:?}: use 100 ms to an hour", self.lease),
            ));
        }
        crate::keys::Keys::new(&self.namespace, "x")?;
        let mut c = zenoh::Config::default();
        let set = |c: &mut zenoh::Config, key: &str, value: String| {
            c.insert_json5(key, &value)
                .map_err(|e| Error::new(ErrorKind::Config, format!("{key} = {value}: {e}")))
        };
        set(&mut c, "mode", "\"peer\"".into())?;
        set(&mut c, "scouting/multicast/enabled", "false".into())?;
        set(&mut c, "listen/endpoints", json_list(&self.listen))?;
        set(&mut c, "connect/endpoints", json_list(&self.connect))?;
        let lease = self.lease.as_millis();
        set(&mut c, "transport/link/tx/lease", lease.to_string())?;
        set(&mut c, "transport/link/tx/keep_alive", "4".into())?;
        // Zenoh closes a link whose blocking `put` waited this long (5 s
        // by default): the lease, not a slow reader, decides a link is
        // dead (credits keep a reader from holding a `put` that long).
        let wait = (self.lease * 2).max(Duration::from_secs(5)).as_micros();
        set(
            &mut c,
            "transport/link/tx/queue/congestion_control/block/wait_before_close",
            wait.to_string(),
        )?;
        #[cfg(feature = "tls")]
        if let Some(tls) = &self.tls {
            let path = |p: &std::path::Path| format!("{:?}", p.display().to_string());
            let (cert, key) = (path(&tls.certificate), path(&tls.private_key));
            let tls_key = |name: &str| format!("transport/link/tls/{name}");
            set(&mut c, &tls_key("root_ca_certificate"), path(&tls.ca))?;
            set(&mut c, &tls_key("listen_certificate"), cert.clone())?;
            set(&mut c, &tls_key("listen_private_key"), key.clone())?;
            set(&mut c, &tls_key("connect_certificate"), cert)?;
            set(&mut c, &tls_key("connect_private_key"), key)?;
            set(&mut c, &tls_key("enable_mtls"), "true".into())?;
            set(
                &mut c,
                &tls_key("verify_name_on_connect"),
                tls.verify_name.to_string(),
            )?;
        }
        Ok(c)
    }
}

fn json_list(items: &[String]) -> String {
    let quoted: Vec<String> = items.iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(","))
}
