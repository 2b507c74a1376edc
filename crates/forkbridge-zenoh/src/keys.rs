//! The key space of one backend: `fb/<namespace>/<name>/…`.
//!
//! ```text
//! in           frames, frontend → backend (whole frames per sample)
//! in/ack       credit for `in`: bytes written into the backend's stream (u64 LE)
//! out          frames, backend → frontend
//! out/ack      credit for `out`: bytes written into the handle's stream
//! exit         the backend's raw wait status (i32 LE), once
//! sig          a signal the frontend asks for (i32 LE)
//! ev           event sets, backend → frontend (8-byte indices, LE)
//! alive        liveliness token of the serving side while the backend runs
//! owner/<zid>  liveliness token of the attached frontend's session
//! ```
//!
//! An agent takes start requests on `fbagent/<namespace>/<agent>/start`.

use crate::error::{Error, ErrorKind, Result};

#[derive(Debug, Clone)]
pub(crate) struct Keys {
    base: String,
}

impl Keys {
    pub(crate) fn new(namespace: &str, name: &str) -> Result<Keys> {
        check_chunk("namespace", namespace)?;
        check_chunk("name", name)?;
        Ok(Keys {
            base: format!("fb/{namespace}/{name}"),
        })
    }

    pub(crate) fn input(&self) -> String {
        format!("{}/in", self.base)
    }

    pub(crate) fn output(&self) -> String {
        format!("{}/out", self.base)
    }

    pub(crate) fn input_ack(&self) -> String {
        format!("{}/in/ack", self.base)
    }

    pub(crate) fn output_ack(&self) -> String {
        format!("{}/out/ack", self.base)
    }

    pub(crate) fn exit(&self) -> String {
        format!("{}/exit", self.base)
    }

    pub(crate) fn signal(&self) -> String {
        format!("{}/sig", self.base)
    }

    pub(crate) fn events(&self) -> String {
        format!("{}/ev", self.base)
    }

    pub(crate) fn alive(&self) -> String {
        format!("{}/alive", self.base)
    }

    pub(crate) fn owners(&self) -> String {
        format!("{}/owner/*", self.base)
    }

    pub(crate) fn owner(&self, session: &zenoh::Session) -> String {
        format!("{}/owner/{}", self.base, session.zid())
    }
}

/// Where the agent called `agent` takes start requests (apart from every
/// backend's key space, so no backend name can collide with it).
pub(crate) fn agent_start(namespace: &str, agent: &str) -> String {
    format!("fbagent/{namespace}/{agent}/start")
}

/// One chunk of a key: not empty, no `/`, and none of the characters
/// Zenoh gives a meaning (`*`, `$`, `?`, `#`).
fn check_chunk(what: &str, chunk: &str) -> Result<()> {
    let bad = chunk.is_empty()
        || chunk
            .chars()
            .any(|c| matches!(c, '/' | '*' | '$' | '?' | '#') || c.is_whitespace());
    if bad {
        return Err(Error::new(
            ErrorKind::Config,
            format!(
                "{what} {chunk:?}: use a non-empty word without '/', '*', '$', '?', '#' or spaces"
            ),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_are_built_from_checked_chunks() {
        let k = Keys::new("vision", "detector-1").unwrap();
        assert_eq!(k.input(), "fb/vision/detector-1/in");
        assert_eq!(k.owners(), "fb/vision/detector-1/owner/*");
        for bad in ["", "a/b", "a*", "$x", "a b", "q?", "h#"] {
            assert_eq!(Keys::new("ns", bad).unwrap_err().kind(), &ErrorKind::Config);
            assert_eq!(Keys::new(bad, "n").unwrap_err().kind(), &ErrorKind::Config);
        }
    }
}
