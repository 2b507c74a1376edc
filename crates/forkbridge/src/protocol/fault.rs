//! The kinds of fault a backend reports. One enum, so a misspelt kind is a
//! compile error rather than a silent change of the protocol; its wire
//! names (`as_str`) are what an `"error"` message's `kind` parameter and a
//! failed call's reply carry, and what the Python package reads from the
//! native module instead of typing them again.

/// What went wrong in a backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    /// A handler returned an error (or a value did not load for it).
    HandlerError,
    /// A handler panicked (raised, in Python).
    Panic,
    /// No handler for the command.
    UnknownCommand,
    /// A frame or its arguments did not decode, or was over the size limit.
    Decode,
    /// A reply could not be encoded (too large, or serde failed).
    Encode,
    /// `pre_run` failed; the process ends.
    PreRun,
    /// A background task of an async backend returned an error.
    TaskError,
    /// A background task of an async backend panicked.
    TaskPanic,
}

impl FaultKind {
    /// Every kind, for the binding's table of names.
    pub const ALL: [FaultKind; 8] = [
        FaultKind::HandlerError,
        FaultKind::Panic,
        FaultKind::UnknownCommand,
        FaultKind::Decode,
        FaultKind::Encode,
        FaultKind::PreRun,
        FaultKind::TaskError,
        FaultKind::TaskPanic,
    ];

    /// The wire name: `"handler_error"`, `"panic"`, ….
    pub const fn as_str(self) -> &'static str {
        match self {
            FaultKind::HandlerError => "handler_error",
            FaultKind::Panic => "panic",
            FaultKind::UnknownCommand => "unknown_command",
            FaultKind::Decode => "decode",
            FaultKind::Encode => "encode",
            FaultKind::PreRun => "pre_run",
            FaultKind::TaskError => "task_error",
            FaultKind::TaskPanic => "task_panic",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::FaultKind;

    #[test]
    fn wire_names_are_distinct_snake_case() {
        let names: std::collections::HashSet<_> =
            FaultKind::ALL.iter().map(|k| k.as_str()).collect();
        assert_eq!(names.len(), FaultKind::ALL.len());
        assert!(
            names
                .iter()
                .all(|n| n.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'))
        );
    }
}
