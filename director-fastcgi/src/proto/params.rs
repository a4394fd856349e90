//! Name-value pairs, the payload of `PARAMS`, `GET_VALUES` and `GET_VALUES_RESULT` streams.
//!
//! Each length is one byte when below 128, otherwise four bytes big-endian with the high bit
//! set. Pairs may straddle record boundaries, so the stream is encoded as a whole and then cut
//! into records, and decoding works on the concatenated stream.

use bytes::{BufMut, Bytes, BytesMut};

use super::ProtocolError;

/// Largest name or value length the 4-byte form can express.
pub const MAX_PAIR_LEN: usize = 0x7fff_ffff;

/// Appends one length in the 1- or 4-byte form.
///
/// # Panics
///
/// If `len` exceeds [`MAX_PAIR_LEN`] (2 GiB; no CGI variable comes close).
pub fn encode_len(len: usize, out: &mut BytesMut) {
    if len < 128 {
        // Checked just above.
        out.put_u8(len as u8);
    } else {
        let len = u32::try_from(len)
            .ok()
            .filter(|l| *l <= MAX_PAIR_LEN as u32)
            .expect("FastCGI name or value longer than 2^31-1 bytes");
        out.put_u32(len | 0x8000_0000);
    }
}

/// Appends one name-value pair.
pub fn encode_pair(name: &[u8], value: &[u8], out: &mut BytesMut) {
    encode_len(name.len(), out);
    encode_len(value.len(), out);
    out.put_slice(name);
    out.put_slice(value);
}

/// Encodes a whole list of pairs into one stream.
pub fn encode_pairs<N, V>(pairs: impl IntoIterator<Item = (N, V)>) -> BytesMut
where
    N: AsRef<[u8]>,
    V: AsRef<[u8]>,
{
    let mut out = BytesMut::new();
    for (n, v) in pairs {
        encode_pair(n.as_ref(), v.as_ref(), &mut out);
    }
    out
}

fn decode_len(input: &[u8], pos: &mut usize) -> Result<usize, ProtocolError> {
    let first = *input.get(*pos).ok_or(ProtocolError::TruncatedPair)?;
    if first < 128 {
        *pos += 1;
        return Ok(usize::from(first));
    }
    let bytes = input
        .get(*pos..*pos + 4)
        .ok_or(ProtocolError::TruncatedPair)?;
    *pos += 4;
    let len = u32::from_be_bytes([bytes[0] & 0x7f, bytes[1], bytes[2], bytes[3]]);
    usize::try_from(len).map_err(|_| ProtocolError::TruncatedPair)
}

/// Decodes a complete name-value stream into pairs.
pub fn decode_pairs(input: &Bytes) -> Result<Vec<(Bytes, Bytes)>, ProtocolError> {
    let mut pairs = Vec::new();
    let mut pos = 0;
    while pos < input.len() {
        let name_len = decode_len(input, &mut pos)?;
        let value_len = decode_len(input, &mut pos)?;
        let name_end = pos
            .checked_add(name_len)
            .filter(|e| *e <= input.len())
            .ok_or(ProtocolError::TruncatedPair)?;
        let value_end = name_end
            .checked_add(value_len)
            .filter(|e| *e <= input.len())
            .ok_or(ProtocolError::TruncatedPair)?;
        pairs.push((input.slice(pos..name_end), input.slice(name_end..value_end)));
        pos = value_end;
    }
    Ok(pairs)
}
