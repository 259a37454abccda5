//! RFC 4648 base32, lowercase, unpadded: the text of a CIDv1 after its multibase
//! prefix 'b'. Encoding only; ipcs never parses a CID back.

const ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";

/// Appends the base32 text of `bytes` to `out`.
pub(super) fn encode_into(bytes: &[u8], out: &mut String) {
    out.reserve(bytes.len().div_ceil(5) * 8);
    // Bits wait in `acc` until five are there; at most 4 + 8 are ever held.
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 5 {
            bits -= 5;
            out.push(ALPHABET[((acc >> bits) & 31) as usize] as char);
        }
    }
    if bits > 0 {
        // The last group is padded with zero bits on the right, with no '=' after it.
        out.push(ALPHABET[((acc << (5 - bits)) & 31) as usize] as char);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode(b: &[u8]) -> String {
        let mut s = String::new();
        encode_into(b, &mut s);
        s
    }

    #[test]
    fn rfc4648_vectors() {
        // RFC 4648 section 10, lowercased and without the padding.
        for (input, want) in [
            ("", ""),
            ("f", "my"),
            ("fo", "mzxq"),
            ("foo", "mzxw6"),
            ("foob", "mzxw6yq"),
            ("fooba", "mzxw6ytb"),
            ("foobar", "mzxw6ytboi"),
        ] {
            assert_eq!(encode(input.as_bytes()), want, "{input:?}");
        }
    }

    #[test]
    fn every_symbol_and_high_bits() {
        assert_eq!(encode(&[0xff; 5]), "77777777");
        assert_eq!(encode(&[0x00; 5]), "aaaaaaaa");
        // The 160 bits 00000 00001 ... 11111 are the alphabet in order.
        let all: Vec<u8> = (0u8..32)
            .flat_map(|i| (0..5).rev().map(move |k| (i >> k) & 1))
            .collect::<Vec<u8>>()
            .chunks(8)
            .map(|c| c.iter().fold(0u8, |a, &bit| (a << 1) | bit))
            .collect();
        assert_eq!(encode(&all), std::str::from_utf8(ALPHABET).unwrap());
    }
}
