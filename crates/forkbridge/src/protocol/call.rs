//! The typed-call protocol's decoding: a handler's arguments on the
//! backend's side, the reply on the frontend's. Both refuse bytes made for
//! another type rather than decode garbage (see `wire::Fingerprints`).

use serde::de::DeserializeOwned;

use crate::data::codec::fingerprint;
use crate::error::{Error, ErrorKind, Result};
use crate::protocol::fault::FaultKind;
use crate::protocol::wire::{Failure, Fingerprints};

/// Decodes a typed call's arguments, refusing a call made for other
/// argument or reply types (see `wire::Fingerprints`) and trailing bytes.
pub(crate) fn decode_args<A: DeserializeOwned, R>(
    command: &str,
    types: Fingerprints,
    args: &[u8],
) -> Result<A, Failure> {
    let mismatch = |what: &str, expected: &str| {
        Failure::new(
            FaultKind::Decode,
            format!(
                "'{command}' was called with other {what} types than its handler's ({expected})"
            ),
        )
    };
    if types.args != 0 && types.args != fingerprint::<A>() {
        return Err(mismatch("argument", std::any::type_name::<A>()));
    }
    if types.reply != 0 && types.reply != fingerprint::<R>() {
        return Err(mismatch("reply", std::any::type_name::<R>()));
    }
    match postcard::take_from_bytes::<A>(args) {
        Ok((value, [])) => Ok(value),
        Ok(_) => Err(Failure::new(
            FaultKind::Decode,
            format!("arguments of '{command}' have trailing bytes"),
        )),
        Err(e) => Err(Failure::new(
            FaultKind::Decode,
            format!("arguments of '{command}' do not decode: {e}"),
        )),
    }
}

/// Decodes a typed call's return value.
pub(crate) fn decode_reply<R: serde::de::DeserializeOwned>(
    value: &[u8],
    command: &str,
) -> Result<R> {
    postcard::from_bytes(value).map_err(|e| {
        Error::new(ErrorKind::Decode).with_source(format!(
            "the reply of '{command}' is not the expected type: {e}"
        ))
    })
}

/// A handler's error, as its call's failure.
pub(crate) fn handler_failure(error: impl std::fmt::Display) -> Failure {
    Failure::new(FaultKind::HandlerError, error.to_string())
}

/// A handler's return value, encoded for the reply to `command`.
pub(crate) fn encode_reply<R: serde::Serialize>(
    command: &str,
    value: &R,
) -> Result<Vec<u8>, Failure> {
    postcard::to_stdvec(value).map_err(|e| {
        Failure::new(
            FaultKind::Encode,
            format!("the reply of '{command}' does not encode: {e}"),
        )
    })
}
