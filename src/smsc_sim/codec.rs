//! Inbound framing: rusmpp's [`CommandCodec`] behind a guard that keeps the stream in sync.
//!
//! rusmpp's decoder consumes an unknown number of bytes when a PDU body is malformed, after
//! which the stream is lost. Real SMSCs answer such a PDU with `generic_nack` and carry on,
//! so this wrapper waits for a whole PDU (its length is the first header field), hands
//! exactly those bytes to rusmpp, and turns a body decode failure into
//! [`Inbound::Garbled`] carrying the header's sequence number for the `generic_nack`.
//! Only an impossible `command_length` (the one thing that desynchronises the stream) is
//! fatal to the connection.

use rusmpp::{
    Command, CommandStatus,
    decode::DecodeErrorKind,
    tokio_codec::{CommandCodec, DecodeError},
};
use tokio_util::{
    bytes::{Buf, BytesMut},
    codec::Decoder,
};

/// SMPP header length: command_length, command_id, command_status, sequence_number.
const HEADER_LEN: usize = 16;

/// Largest PDU accepted. `message_payload` can carry up to 64 KiB.
pub(super) const MAX_PDU_LEN: usize = 70 * 1024;

/// One inbound PDU as the session sees it.
// Not boxed on purpose: a heap allocation per PDU costs more than moving the enum.
#[allow(clippy::large_enum_variant)]
#[derive(Debug)]
pub(super) enum Inbound {
    /// A PDU rusmpp decoded.
    Command(Command),
    /// A whole PDU whose body rusmpp could not decode; it has been skipped.
    Garbled {
        sequence_number: u32,
        /// The `generic_nack` status that best describes the fault.
        status: CommandStatus,
    },
}

/// Why the inbound stream cannot continue.
#[derive(Debug, thiserror::Error)]
pub(super) enum FrameError {
    #[error("invalid command_length {length} (sequence number {sequence_number})")]
    Length { length: usize, sequence_number: u32 },
    #[error("read failed: {0}")]
    Io(#[from] std::io::Error),
}

/// Decoder yielding [`Inbound`]; see the module docs.
#[derive(Debug)]
pub(super) struct SimCodec {
    inner: CommandCodec,
}

impl SimCodec {
    pub(super) fn new() -> Self {
        Self {
            inner: CommandCodec::new().with_max_length(MAX_PDU_LEN),
        }
    }
}

fn be_u32(bytes: &[u8]) -> u32 {
    let mut word = [0u8; 4];
    word.copy_from_slice(&bytes[..4]);
    u32::from_be_bytes(word)
}

impl Decoder for SimCodec {
    type Item = Inbound;
    type Error = FrameError;

    fn decode(&mut self, src: &mut BytesMut) -> Result<Option<Inbound>, FrameError> {
        if src.len() < HEADER_LEN {
            return Ok(None);
        }
        let length = be_u32(&src[0..4]) as usize;
        let sequence_number = be_u32(&src[12..16]);
        if !(HEADER_LEN..=MAX_PDU_LEN).contains(&length) {
            return Err(FrameError::Length {
                length,
                sequence_number,
            });
        }
        if src.len() < length {
            src.reserve(length - src.len());
            return Ok(None);
        }
        // Exactly one PDU: whatever rusmpp does with it, the next PDU starts at `src[0]`.
        let mut frame = src.split_to(length);
        let garbled = |status| {
            Ok(Some(Inbound::Garbled {
                sequence_number,
                status,
            }))
        };
        match self.inner.decode(&mut frame) {
            Ok(Some(command)) => Ok(Some(Inbound::Command(command))),
            // Cannot happen with a whole PDU in the frame; treat it as a short body.
            Ok(None) => garbled(CommandStatus::EsmeRinvcmdlen),
            Err(DecodeError::Decode(error)) => garbled(match error.kind() {
                DecodeErrorKind::UnexpectedEof => CommandStatus::EsmeRinvcmdlen,
                DecodeErrorKind::UnsupportedKey { .. } => CommandStatus::EsmeRinvcmdid,
                _ => CommandStatus::EsmeRsyserr,
            }),
            Err(DecodeError::Io(error)) => Err(FrameError::Io(error)),
            // Length problems were ruled out above; anything else is a fault of this PDU.
            Err(_) => {
                frame.advance(frame.len());
                garbled(CommandStatus::EsmeRsyserr)
            }
        }
    }
}
