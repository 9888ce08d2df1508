//! Byte encodings written or read in more than one place: hex (through `base16ct`, already
//! built for RustCrypto; constant time, so a signature's hex leaks nothing by its timing) and
//! the base64 body of a PEM block or of a certificate as a card hands it out.

/// Hex of `bytes`, lower- or upper-case.
pub fn hex(bytes: &[u8], upper: bool) -> String {
    if upper {
        base16ct::upper::encode_string(bytes)
    } else {
        base16ct::lower::encode_string(bytes)
    }
}

/// Decodes hex of either case into `out`, which it must fill exactly.
pub fn decode_hex<'o>(s: &str, out: &'o mut [u8]) -> Option<&'o [u8]> {
    if s.len() != 2 * out.len() {
        return None;
    }
    base16ct::mixed::decode(s, out).ok()
}

/// The base64 of a PEM block or of bare base64 with line breaks: armour lines (`-----BEGIN …`)
/// and whitespace around lines removed.
pub fn pem_body(text: &str) -> String {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.starts_with("-----"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_both_ways() {
        assert_eq!(hex(&[0x00, 0xab, 0x1f], false), "00ab1f");
        assert_eq!(hex(&[0x00, 0xab, 0x1f], true), "00AB1F");
        let mut out = [0u8; 3];
        assert_eq!(
            decode_hex("00aB1f", &mut out),
            Some(&[0x00, 0xab, 0x1f][..])
        );
        assert_eq!(decode_hex("00ab1", &mut out), None);
        assert_eq!(decode_hex("00ab1g", &mut out), None);
        assert_eq!(decode_hex("00ab", &mut out), None);
    }

    #[test]
    fn pem_armour_goes() {
        assert_eq!(
            pem_body("-----BEGIN CERTIFICATE-----\r\n MIIB\nAAA= \n-----END CERTIFICATE-----\n"),
            "MIIBAAA="
        );
        assert_eq!(pem_body("MIIBAAA="), "MIIBAAA=");
    }
}
