//! The FastCGI 1.0 record layer: constants, the 8-byte header, records and their encoding.
//!
//! Everything here is synchronous and allocation-light: the connection owns a `BytesMut` read
//! buffer and calls [`Record::parse`] until it yields `None` (mini-redis' two-phase framing:
//! first check that a whole record is buffered, then split it off), and writers append records
//! to an output buffer with the `encode_*` functions.

use bytes::{Buf, BufMut, Bytes, BytesMut};

pub mod params;

#[cfg(test)]
mod tests;

/// The only FastCGI protocol version there is.
pub const VERSION_1: u8 = 1;
/// Length of a record header in bytes.
pub const HEADER_LEN: usize = 8;
/// Largest content length one record can carry.
pub const MAX_CONTENT_LEN: usize = u16::MAX as usize;

/// `BEGIN_REQUEST` flag: keep the connection open after the request ends.
pub const FLAG_KEEP_CONN: u8 = 1;

/// The type byte of a record.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RecordType {
    /// `FCGI_BEGIN_REQUEST` (1).
    BeginRequest,
    /// `FCGI_ABORT_REQUEST` (2).
    AbortRequest,
    /// `FCGI_END_REQUEST` (3).
    EndRequest,
    /// `FCGI_PARAMS` (4).
    Params,
    /// `FCGI_STDIN` (5).
    Stdin,
    /// `FCGI_STDOUT` (6).
    Stdout,
    /// `FCGI_STDERR` (7).
    Stderr,
    /// `FCGI_DATA` (8).
    Data,
    /// `FCGI_GET_VALUES` (9).
    GetValues,
    /// `FCGI_GET_VALUES_RESULT` (10).
    GetValuesResult,
    /// `FCGI_UNKNOWN_TYPE` (11).
    UnknownType,
    /// Any other type byte; kept so a peer's extension can be answered or logged.
    Other(u8),
}

// === impl RecordType ===

impl RecordType {
    /// The wire value of this type.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::BeginRequest => 1,
            Self::AbortRequest => 2,
            Self::EndRequest => 3,
            Self::Params => 4,
            Self::Stdin => 5,
            Self::Stdout => 6,
            Self::Stderr => 7,
            Self::Data => 8,
            Self::GetValues => 9,
            Self::GetValuesResult => 10,
            Self::UnknownType => 11,
            Self::Other(v) => v,
        }
    }

    /// The type for a wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            1 => Self::BeginRequest,
            2 => Self::AbortRequest,
            3 => Self::EndRequest,
            4 => Self::Params,
            5 => Self::Stdin,
            6 => Self::Stdout,
            7 => Self::Stderr,
            8 => Self::Data,
            9 => Self::GetValues,
            10 => Self::GetValuesResult,
            11 => Self::UnknownType,
            other => Self::Other(other),
        }
    }
}

/// The role a `BEGIN_REQUEST` asks the application to play.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// `FCGI_RESPONDER` (1): the ordinary CGI role.
    Responder,
    /// `FCGI_AUTHORIZER` (2).
    Authorizer,
    /// `FCGI_FILTER` (3).
    Filter,
    /// Any other value.
    Other(u16),
}

// === impl Role ===

impl Role {
    /// The wire value of this role.
    pub fn as_u16(self) -> u16 {
        match self {
            Self::Responder => 1,
            Self::Authorizer => 2,
            Self::Filter => 3,
            Self::Other(v) => v,
        }
    }

    /// The role for a wire value.
    pub fn from_u16(v: u16) -> Self {
        match v {
            1 => Self::Responder,
            2 => Self::Authorizer,
            3 => Self::Filter,
            other => Self::Other(other),
        }
    }
}

/// The protocol status of an `END_REQUEST` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProtocolStatus {
    /// `FCGI_REQUEST_COMPLETE` (0): normal end.
    RequestComplete,
    /// `FCGI_CANT_MPX_CONN` (1): the application does not multiplex connections.
    CantMpxConn,
    /// `FCGI_OVERLOADED` (2): the application ran out of some resource.
    Overloaded,
    /// `FCGI_UNKNOWN_ROLE` (3): the requested role is not supported.
    UnknownRole,
    /// Any other value.
    Other(u8),
}

// === impl ProtocolStatus ===

impl ProtocolStatus {
    /// The wire value of this status.
    pub fn as_u8(self) -> u8 {
        match self {
            Self::RequestComplete => 0,
            Self::CantMpxConn => 1,
            Self::Overloaded => 2,
            Self::UnknownRole => 3,
            Self::Other(v) => v,
        }
    }

    /// The status for a wire value.
    pub fn from_u8(v: u8) -> Self {
        match v {
            0 => Self::RequestComplete,
            1 => Self::CantMpxConn,
            2 => Self::Overloaded,
            3 => Self::UnknownRole,
            other => Self::Other(other),
        }
    }
}

/// The decoded body of a `BEGIN_REQUEST` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BeginRequest {
    /// The role asked for.
    pub role: Role,
    /// Flags; only [`FLAG_KEEP_CONN`] is defined.
    pub flags: u8,
}

/// The decoded body of an `END_REQUEST` record.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EndRequest {
    /// The application's exit status (like a CGI program's).
    pub app_status: u32,
    /// How the request ended at the protocol level.
    pub protocol_status: ProtocolStatus,
}

/// One FastCGI record: the header fields and the content (padding is dropped on parse).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Record {
    /// The record type.
    pub record_type: RecordType,
    /// The request id (0 for management records).
    pub request_id: u16,
    /// The content, at most [`MAX_CONTENT_LEN`] bytes.
    pub content: Bytes,
}

/// A byte sequence that is not a valid FastCGI record.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    /// The version byte was not 1.
    #[error("unsupported FastCGI version {0}")]
    Version(u8),
    /// A record body was too short or too long for its type.
    #[error("malformed {0:?} record body ({1} bytes)")]
    BadBody(RecordType, usize),
    /// A name-value pair stream ended in the middle of a pair.
    #[error("truncated name-value pair")]
    TruncatedPair,
}

// === impl Record ===

impl Record {
    /// A record with the given type, id and content.
    ///
    /// Content longer than [`MAX_CONTENT_LEN`] cannot be encoded; see [`encode_stream`] for
    /// payloads of any length.
    pub fn new(record_type: RecordType, request_id: u16, content: impl Into<Bytes>) -> Self {
        Self {
            record_type,
            request_id,
            content: content.into(),
        }
    }

    /// Splits one whole record off the front of `buf`.
    ///
    /// Returns `Ok(None)` and leaves `buf` untouched while the record is incomplete, so callers
    /// can read more bytes and try again.
    pub fn parse(buf: &mut BytesMut) -> Result<Option<Record>, ProtocolError> {
        if buf.len() < HEADER_LEN {
            return Ok(None);
        }
        let version = buf[0];
        if version != VERSION_1 {
            return Err(ProtocolError::Version(version));
        }
        let record_type = RecordType::from_u8(buf[1]);
        let request_id = u16::from_be_bytes([buf[2], buf[3]]);
        let content_len = usize::from(u16::from_be_bytes([buf[4], buf[5]]));
        let padding_len = usize::from(buf[6]);
        if buf.len() < HEADER_LEN + content_len + padding_len {
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let content = buf.split_to(content_len).freeze();
        buf.advance(padding_len);
        Ok(Some(Record {
            record_type,
            request_id,
            content,
        }))
    }

    /// Appends this record to `out`, padded to a multiple of 8 bytes.
    ///
    /// # Panics
    ///
    /// If the content is longer than [`MAX_CONTENT_LEN`] (a programming error: split streams
    /// with [`encode_stream`]).
    pub fn encode(&self, out: &mut BytesMut) {
        encode_record(self.record_type, self.request_id, &self.content, out);
    }

    /// Decodes the content of a `BEGIN_REQUEST` record.
    pub fn begin_request(&self) -> Result<BeginRequest, ProtocolError> {
        let c = &self.content;
        if self.record_type != RecordType::BeginRequest || c.len() != 8 {
            return Err(ProtocolError::BadBody(self.record_type, c.len()));
        }
        Ok(BeginRequest {
            role: Role::from_u16(u16::from_be_bytes([c[0], c[1]])),
            flags: c[2],
        })
    }

    /// Decodes the content of an `END_REQUEST` record.
    pub fn end_request(&self) -> Result<EndRequest, ProtocolError> {
        let c = &self.content;
        if self.record_type != RecordType::EndRequest || c.len() != 8 {
            return Err(ProtocolError::BadBody(self.record_type, c.len()));
        }
        Ok(EndRequest {
            app_status: u32::from_be_bytes([c[0], c[1], c[2], c[3]]),
            protocol_status: ProtocolStatus::from_u8(c[4]),
        })
    }
}

/// Padding that brings `content_len` up to a multiple of 8, as the spec recommends.
pub fn padding_for(content_len: usize) -> usize {
    (8 - content_len % 8) % 8
}

/// Appends one record (header, content, zero padding) to `out`.
///
/// # Panics
///
/// If `content` is longer than [`MAX_CONTENT_LEN`].
pub fn encode_record(record_type: RecordType, request_id: u16, content: &[u8], out: &mut BytesMut) {
    let len = u16::try_from(content.len()).expect("FastCGI record content longer than 65535");
    let pad = padding_for(content.len());
    out.reserve(HEADER_LEN + content.len() + pad);
    out.put_u8(VERSION_1);
    out.put_u8(record_type.as_u8());
    out.put_u16(request_id);
    out.put_u16(len);
    // `pad` < 8, so the cast is lossless.
    out.put_u8(pad as u8);
    out.put_u8(0);
    out.put_slice(content);
    out.put_bytes(0, pad);
}

/// Appends `data` as a stream of records of `record_type`, split at [`MAX_CONTENT_LEN`].
///
/// Writes nothing for empty `data`: the empty record that ends a stream is sent on purpose
/// with [`encode_record`].
pub fn encode_stream(record_type: RecordType, request_id: u16, data: &[u8], out: &mut BytesMut) {
    for chunk in data.chunks(MAX_CONTENT_LEN) {
        encode_record(record_type, request_id, chunk, out);
    }
}

/// Appends a `BEGIN_REQUEST` record.
pub fn encode_begin_request(request_id: u16, role: Role, flags: u8, out: &mut BytesMut) {
    let r = role.as_u16().to_be_bytes();
    encode_record(
        RecordType::BeginRequest,
        request_id,
        &[r[0], r[1], flags, 0, 0, 0, 0, 0],
        out,
    );
}

/// Appends an `END_REQUEST` record.
pub fn encode_end_request(request_id: u16, end: EndRequest, out: &mut BytesMut) {
    let a = end.app_status.to_be_bytes();
    let p = end.protocol_status.as_u8();
    encode_record(
        RecordType::EndRequest,
        request_id,
        &[a[0], a[1], a[2], a[3], p, 0, 0, 0],
        out,
    );
}

/// Appends an `ABORT_REQUEST` record.
pub fn encode_abort_request(request_id: u16, out: &mut BytesMut) {
    encode_record(RecordType::AbortRequest, request_id, &[], out);
}
