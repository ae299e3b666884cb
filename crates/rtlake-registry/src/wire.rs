//! The Confluent wire format: byte 0 is the magic `0`, bytes 1..5 the schema id (big-endian),
//! the rest the payload (Avro's binary encoding, a Protobuf message after its message indexes,
//! or JSON text).

use crate::{Error, Result};

/// The first byte of every framed message.
pub const MAGIC: u8 = 0;
/// The magic byte and the schema id.
pub const HEADER_LEN: usize = 5;

/// The schema id a framed message carries, and its payload.
pub fn split(message: &[u8]) -> Result<(u32, &[u8])> {
    match message {
        [MAGIC, a, b, c, d, rest @ ..] => Ok((u32::from_be_bytes([*a, *b, *c, *d]), rest)),
        [MAGIC, ..] => Err(Error::Wire(format!(
            "the message is {} bytes, shorter than the wire format's 5-byte header",
            message.len()
        ))),
        [first, ..] => Err(Error::Wire(format!(
            "the message does not start with the wire format's magic byte 0 (it starts with {first:#04x}): \
             not written with a schema registry serializer"
        ))),
        [] => Err(Error::Wire("the message is empty".into())),
    }
}

/// Appends the header for schema `id` to `out`; the payload follows it.
pub fn header(id: u32, out: &mut Vec<u8>) {
    out.push(MAGIC);
    out.extend_from_slice(&id.to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_framed_message_splits_into_its_id_and_payload() {
        let mut m = Vec::new();
        header(0x0102_0304, &mut m);
        m.extend_from_slice(b"body");
        assert_eq!(split(&m).unwrap(), (0x0102_0304, &b"body"[..]));
    }

    #[test]
    fn messages_not_in_the_wire_format_are_named_for_what_is_wrong() {
        let e = split(b"{\"a\":1}").unwrap_err().to_string();
        assert!(e.contains("magic byte 0") && e.contains("0x7b"), "{e}");
        assert!(
            split(&[0, 0, 1])
                .unwrap_err()
                .to_string()
                .contains("3 bytes")
        );
        assert!(split(&[]).unwrap_err().to_string().contains("empty"));
    }
}
