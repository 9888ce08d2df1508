//! Comparing secrets and signatures in time that depends only on their lengths (`subtle`, the
//! RustCrypto crates' own constant-time primitives).

use subtle::ConstantTimeEq;

/// Whether `a` and `b` are equal; unequal lengths are unequal at once.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.ct_eq(b).into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_eq_works() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"ab"));
        assert!(constant_time_eq(b"", b""));
    }
}
