//! Base64URL **without padding** (SPEC §1): the alphabet `A-Z a-z 0-9 - _`, no `=`, no
//! whitespace, non-zero trailing bits rejected (so every byte string has exactly one
//! accepted encoding).

use data_encoding::BASE64URL_NOPAD;

use crate::WireError;

/// Encodes `data` as unpadded Base64URL.
#[must_use]
pub fn encode(data: &[u8]) -> String {
    BASE64URL_NOPAD.encode(data)
}

/// Decodes unpadded Base64URL; rejects padding, any character outside the alphabet, an
/// impossible length (`len % 4 == 1`) and non-canonical trailing bits.
pub fn decode(text: &str) -> Result<Vec<u8>, WireError> {
    BASE64URL_NOPAD
        .decode(text.as_bytes())
        .map_err(|_| WireError::InvalidBase64)
}

/// Length of the unpadded Base64URL encoding of `n` bytes.
#[must_use]
pub const fn encoded_len(n: usize) -> usize {
    (n * 4).div_ceil(3)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn vectors() {
        assert_eq!(encode(b""), "");
        assert_eq!(encode(b"f"), "Zg");
        assert_eq!(encode(b"fo"), "Zm8");
        assert_eq!(encode(b"foo"), "Zm9v");
        assert_eq!(encode(&[0xfb, 0xff]), "-_8");
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
        assert_eq!(decode("Zm8").unwrap(), b"fo");
        assert_eq!(encoded_len(120), 160);
        assert_eq!(encoded_len(2), 3);
    }

    #[test]
    fn rejections() {
        for bad in [
            "Zm8=", "Zg==", "Zm+v", "Zm/v", "Zm9v ", "Z", "Zh", "Zm9", "Zm\n8", "é",
        ] {
            assert_eq!(decode(bad), Err(WireError::InvalidBase64), "{bad:?}");
        }
    }

    proptest! {
        #[test]
        fn round_trip(data in proptest::collection::vec(any::<u8>(), 0..200)) {
            let s = encode(&data);
            prop_assert_eq!(s.len(), encoded_len(data.len()));
            prop_assert!(!s.contains('='));
            prop_assert_eq!(decode(&s).unwrap(), data);
        }

        #[test]
        fn decode_is_canonical(s in "[A-Za-z0-9_=+/-]{0,12}") {
            if let Ok(d) = decode(&s) {
                prop_assert_eq!(encode(&d), s);
            }
        }
    }
}
