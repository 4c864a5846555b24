//! Typed messages (feature `serde`): send any `Serialize` value, decode a
//! message's payload into a `Deserialize` type, and dispatch an enum of
//! message types to one handler.
//!
//! The encoding is [postcard](https://docs.rs/postcard): compact (varints,
//! no field names, an enum variant is one byte), `no_std`, and stable for a
//! given Rust type. Both peers must use the same message types: a payload
//! that does not decode is a [`DecodeError`], counted in
//! [`EndpointStats::messages_undecodable`](crate::EndpointStats::messages_undecodable)
//! when decoded through an [`Endpoint`] or [`Context`], and never a panic.
//!
//! ```
//! use serde::{Deserialize, Serialize};
//! use mpgameserver::typed;
//!
//! #[derive(Serialize, Deserialize, Debug, PartialEq)]
//! enum ToServer {
//!     Input { seq: u32, dx: i8, dy: i8 },
//!     Chat(String),
//! }
//!
//! let bytes = typed::encode(&ToServer::Input { seq: 7, dx: -1, dy: 0 }).unwrap();
//! assert_eq!(bytes.len(), 4); // variant, varint seq, dx, dy
//! assert_eq!(typed::decode::<ToServer>(&bytes), Ok(ToServer::Input { seq: 7, dx: -1, dy: 0 }));
//! assert!(typed::decode::<ToServer>(&[9, 9, 9]).is_err()); // no variant 9: an error, not a panic
//! ```

use alloc::vec::Vec;
use core::fmt;

use serde::Serialize;
use serde::de::DeserializeOwned;

use crate::endpoint::Endpoint;
use crate::error::SendError;
use crate::event::SendOptions;
use crate::event::{ConnectionId, MessageId};
use crate::handler::Context;
use crate::sending::Broadcast;

/// Why a payload did not decode into the requested type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// The bytes end before the value does.
    Truncated,
    /// Bytes are left over after the value.
    TrailingBytes {
        /// How many.
        extra: usize,
    },
    /// The bytes do not form a value of the type (an unknown enum variant,
    /// invalid UTF-8, a bad varint, a bool that is not 0 or 1, ...).
    Invalid,
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Truncated => f.write_str("message too short for its type"),
            DecodeError::TrailingBytes { extra } => write!(f, "{extra} bytes left over after the message"),
            DecodeError::Invalid => f.write_str("the bytes are not a value of the message type"),
        }?;
        f.write_str(": the peer sent garbage or uses other message types (another version of the game?)")
    }
}

impl core::error::Error for DecodeError {}

/// Why a typed value could not be sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum TypedSendError {
    /// The value's `Serialize` implementation failed (a custom one that
    /// returns an error, or a sequence of unknown length).
    Encode,
    /// The endpoint refused the encoded bytes.
    Send(SendError),
}

impl fmt::Display for TypedSendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TypedSendError::Encode => f.write_str(
                "the message could not be encoded: its Serialize implementation failed (postcard needs sequence lengths up front)",
            ),
            TypedSendError::Send(e) => fmt::Display::fmt(e, f),
        }
    }
}

impl core::error::Error for TypedSendError {}

impl From<SendError> for TypedSendError {
    fn from(e: SendError) -> TypedSendError {
        TypedSendError::Send(e)
    }
}

/// Encodes `value` with postcard.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, TypedSendError> {
    postcard::to_allocvec(value).map_err(|_| TypedSendError::Encode)
}

/// Decodes a whole payload into a `T`. Never panics, whatever the bytes.
/// Prefer [`Endpoint::decode`] or [`Context::decode`] for peer input: they
/// also count failures.
pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, DecodeError> {
    match postcard::take_from_bytes::<T>(bytes) {
        Ok((value, [])) => Ok(value),
        Ok((_, rest)) => Err(DecodeError::TrailingBytes { extra: rest.len() }),
        Err(postcard::Error::DeserializeUnexpectedEnd) => Err(DecodeError::Truncated),
        Err(_) => Err(DecodeError::Invalid),
    }
}

/// Game logic whose incoming messages are one type (usually an enum of
/// message types): the typed half of an [`EventHandler`](crate::EventHandler).
/// Call [`dispatch_message`] from `handle_message`.
///
/// ```
/// use serde::{Deserialize, Serialize};
/// use mpgameserver::typed::{self, MessageHandler};
/// use mpgameserver::{ConnectionId, Context, EventHandler};
///
/// #[derive(Serialize, Deserialize)]
/// enum ToServer { Move { dx: i8, dy: i8 }, Chat(String) }
///
/// #[derive(Default)]
/// struct Game { moves: u32, chat: Vec<String> }
///
/// impl EventHandler for Game {
///     fn handle_message(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, payload: Vec<u8>) {
///         typed::dispatch_message(self, ctx, conn, &payload);
///     }
/// }
///
/// impl MessageHandler for Game {
///     type Message = ToServer;
///     fn message(&mut self, _ctx: &mut Context<'_>, _conn: ConnectionId, msg: ToServer) {
///         match msg {
///             ToServer::Move { .. } => self.moves += 1,
///             ToServer::Chat(line) => self.chat.push(line),
///         }
///     }
/// }
/// ```
pub trait MessageHandler {
    /// What peers send.
    type Message: DeserializeOwned;

    /// A message that decoded.
    fn message(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, msg: Self::Message);

    /// A message that did not decode (already counted in the endpoint's
    /// stats). By default ignored; a server might disconnect the peer.
    fn undecodable(&mut self, ctx: &mut Context<'_>, conn: ConnectionId, error: DecodeError) {
        let _ = (ctx, conn, error);
    }
}

/// Decodes `payload` as `H::Message` and calls `handler.message`, or counts
/// the failure and calls `handler.undecodable`.
pub fn dispatch_message<H: MessageHandler + ?Sized>(
    handler: &mut H,
    ctx: &mut Context<'_>,
    conn: ConnectionId,
    payload: &[u8],
) {
    match ctx.decode::<H::Message>(payload) {
        Ok(msg) => handler.message(ctx, conn, msg),
        Err(e) => handler.undecodable(ctx, conn, e),
    }
}

impl Endpoint {
    /// Encodes `msg` and sends it on `conn`; see [`Endpoint::send_with`].
    pub fn send_msg<T: Serialize + ?Sized>(
        &mut self,
        conn: ConnectionId,
        msg: &T,
        options: impl Into<SendOptions>,
    ) -> Result<MessageId, TypedSendError> {
        Ok(self.send_with(conn, &encode(msg)?, options)?)
    }

    /// Encodes `msg` once and sends it to every connection; see
    /// [`Endpoint::broadcast`].
    pub fn broadcast_msg<T: Serialize + ?Sized>(
        &mut self,
        msg: &T,
        options: impl Into<SendOptions>,
    ) -> Result<Broadcast, TypedSendError> {
        Ok(self.broadcast(&encode(msg)?, options)?)
    }

    /// Decodes a received payload into a `T`; a failure is counted in
    /// [`EndpointStats::messages_undecodable`](crate::EndpointStats::messages_undecodable).
    pub fn decode<T: DeserializeOwned>(&mut self, payload: &[u8]) -> Result<T, DecodeError> {
        let r = decode(payload);
        if r.is_err() {
            self.stats_mut().messages_undecodable += 1;
        }
        r
    }
}

impl Context<'_> {
    /// Encodes `msg` and sends it on `conn`.
    pub fn send_msg<T: Serialize + ?Sized>(
        &mut self,
        conn: ConnectionId,
        msg: &T,
        options: impl Into<SendOptions>,
    ) -> Result<MessageId, TypedSendError> {
        self.endpoint_mut().send_msg(conn, msg, options)
    }

    /// Encodes `msg` once and sends it to every connection.
    pub fn broadcast_msg<T: Serialize + ?Sized>(
        &mut self,
        msg: &T,
        options: impl Into<SendOptions>,
    ) -> Result<Broadcast, TypedSendError> {
        self.endpoint_mut().broadcast_msg(msg, options)
    }

    /// Encodes `msg` once and sends it to every connection but `except`.
    pub fn broadcast_msg_except<T: Serialize + ?Sized>(
        &mut self,
        except: ConnectionId,
        msg: &T,
        options: impl Into<SendOptions>,
    ) -> Result<Broadcast, TypedSendError> {
        let bytes = encode(msg)?;
        Ok(self.endpoint_mut().broadcast_except(except, &bytes, options)?)
    }

    /// Decodes a received payload into a `T`, counting a failure.
    pub fn decode<T: DeserializeOwned>(&mut self, payload: &[u8]) -> Result<T, DecodeError> {
        self.endpoint_mut().decode(payload)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use alloc::string::String;
    use quickcheck::quickcheck;
    use serde::Deserialize;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    enum Msg {
        Input { seq: u32, dx: i8, dy: i8, fire: bool },
        Chat { from: u16, text: String },
        Snapshot(Vec<(u32, f32, f32)>),
        Ping(u64),
        Bye,
    }

    fn build(tag: u8, a: u64, b: i8, s: String, v: Vec<(u32, i16, i16)>) -> Msg {
        match tag % 5 {
            0 => Msg::Input { seq: a as u32, dx: b, dy: b.wrapping_neg(), fire: a.is_multiple_of(2) },
            1 => Msg::Chat { from: a as u16, text: s },
            2 => Msg::Snapshot(v.into_iter().map(|(id, x, y)| (id, f32::from(x) / 8.0, f32::from(y) / 8.0)).collect()),
            3 => Msg::Ping(a),
            _ => Msg::Bye,
        }
    }

    quickcheck! {
        fn round_trip(tag: u8, a: u64, b: i8, s: String, v: Vec<(u32, i16, i16)>) -> bool {
            let msg = build(tag, a, b, s, v);
            decode::<Msg>(&encode(&msg).unwrap()) == Ok(msg)
        }

        fn arbitrary_bytes_never_panic(bytes: Vec<u8>) -> bool {
            // Either a value that re-encodes to the same bytes, or an error.
            match decode::<Msg>(&bytes) {
                Ok(m) => encode(&m).unwrap().len() <= bytes.len(),
                Err(_) => true,
            }
        }

        fn truncations_are_errors(tag: u8, a: u64, b: i8, s: String, v: Vec<(u32, i16, i16)>) -> bool {
            let bytes = encode(&build(tag, a, b, s, v)).unwrap();
            (0..bytes.len()).all(|n| decode::<Msg>(&bytes[..n]).is_err())
        }
    }

    #[test]
    fn errors_are_typed() {
        let bytes = encode(&Msg::Ping(300)).unwrap();
        assert_eq!(decode::<Msg>(&bytes[..2]), Err(DecodeError::Truncated));
        let mut longer = bytes.clone();
        longer.push(0);
        assert_eq!(decode::<Msg>(&longer), Err(DecodeError::TrailingBytes { extra: 1 }));
        assert_eq!(decode::<Msg>(&[9]), Err(DecodeError::Invalid));
        assert!(alloc::format!("{}", DecodeError::Invalid).contains("garbage"));
    }
}
