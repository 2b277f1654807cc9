//! What a handler answers, before `respond` (`mockbank/mod.rs`) makes it an
//! HTTP response: a status and JSON, as a `Value` or as bytes already written.

use std::borrow::Cow;

use bytes::Bytes;
use http::StatusCode;
use serde_json::Value;

/// An answer before it becomes an HTTP response.
pub(in crate::mockbank) struct Reply {
    pub(in crate::mockbank) status: StatusCode,
    pub(in crate::mockbank) body: ReplyBody,
}

/// A reply's JSON: a `Value`, or the bytes of one already written (the data
/// answers, written from `shapes::wire`'s structs with no `Value` between).
pub(in crate::mockbank) enum ReplyBody {
    Value(Value),
    Written(Bytes),
}

impl From<Value> for ReplyBody {
    fn from(value: Value) -> Self {
        Self::Value(value)
    }
}

impl ReplyBody {
    /// `answer` written as JSON into a buffer of `capacity` bytes to start
    /// with (a guess at its size: a page of 50 transactions, 68 KB, grown from
    /// a few bytes was copied ten times over).
    pub(in crate::mockbank) fn written(answer: &impl serde::Serialize, capacity: usize) -> Self {
        let mut out = Vec::with_capacity(capacity);
        // Only maps with text keys are written: serialising cannot fail.
        match sonic_rs::to_writer(&mut out, answer) {
            Ok(()) => Self::Written(out.into()),
            Err(_) => Self::Written(Bytes::new()),
        }
    }

    /// The bytes of the answer.
    pub(in crate::mockbank) fn into_bytes(self) -> Bytes {
        match self {
            Self::Value(value) => serde_json::to_vec(&value).unwrap_or_default().into(),
            Self::Written(bytes) => bytes,
        }
    }
}

impl Reply {
    /// The answer as a `Value` (an error's message, for the Link screens).
    pub(in crate::mockbank) fn value(&self) -> Cow<'_, Value> {
        match &self.body {
            ReplyBody::Value(value) => Cow::Borrowed(value),
            ReplyBody::Written(bytes) => {
                Cow::Owned(serde_json::from_slice(bytes).unwrap_or_default())
            }
        }
    }
}
