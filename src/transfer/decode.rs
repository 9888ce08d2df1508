//! Turns a file's bytes into text as its XML declaration says: UTF-8 (with or without a BOM)
//! here, GB2312/GBK/GB18030 through the operating system's own decoder (Windows code page 54936,
//! iconv elsewhere), because a code-page table crate would not fit the exe's size budget.

use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DecodeError {
    /// The declared (or default UTF-8) encoding does not match the bytes.
    Invalid { encoding: String },
    /// An encoding neither UTF-8 nor the GB family.
    Unsupported { encoding: String },
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Invalid { encoding } => {
                write!(
                    f,
                    "the file is not valid {encoding} (its declared encoding)"
                )
            }
            DecodeError::Unsupported { encoding } => write!(
                f,
                "the file declares encoding {encoding:?}; only UTF-8, GB2312, GBK and GB18030 are read"
            ),
        }
    }
}

/// The encoding named in an XML declaration at the start of `bytes`, lower-cased.
pub fn declared(bytes: &[u8]) -> Option<String> {
    let head = &bytes[..bytes.len().min(200)];
    if !head.starts_with(b"<?xml") {
        return None;
    }
    let end = head.windows(2).position(|w| w == b"?>")?;
    let decl = std::str::from_utf8(&head[..end]).ok()?;
    let at = decl.find("encoding")?;
    let rest = decl[at + "encoding".len()..]
        .trim_start()
        .strip_prefix('=')?;
    let rest = rest.trim_start();
    let quote = rest.chars().next()?;
    if quote != '"' && quote != '\'' {
        return None;
    }
    let value = &rest[1..];
    Some(value[..value.find(quote)?].to_ascii_lowercase())
}

/// The text of an XML file.
pub fn xml_text(bytes: &[u8]) -> Result<String, DecodeError> {
    let bytes = bytes.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(bytes);
    let encoding = declared(bytes).unwrap_or_else(|| "utf-8".into());
    match encoding.as_str() {
        "utf-8" | "utf8" => String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::Invalid {
            encoding: "UTF-8".into(),
        }),
        "gb2312" | "gbk" | "gb18030" | "cp936" | "x-gbk" | "euc-cn" => {
            // GB18030 is a superset of GBK, itself a superset of GB2312
            gb18030(bytes).ok_or(DecodeError::Invalid { encoding })
        }
        _ => Err(DecodeError::Unsupported { encoding }),
    }
}

#[cfg(unix)]
fn gb18030(bytes: &[u8]) -> Option<String> {
    let to = c"UTF-8";
    let from = c"GB18030";
    // SAFETY: iconv_open takes two NUL-terminated names; the descriptor is closed below.
    let cd = unsafe { libc::iconv_open(to.as_ptr(), from.as_ptr()) };
    if cd as isize == -1 {
        log::error!("iconv has no GB18030 decoder on this system");
        return None;
    }
    let mut input = bytes.to_vec();
    // a GB18030 sequence of n bytes is at most 2n UTF-8 bytes (2 → 3, 4 → 4)
    let mut output = vec![0u8; bytes.len() * 2 + 16];
    let mut in_ptr = input.as_mut_ptr() as *mut libc::c_char;
    let mut in_left = input.len();
    let mut out_ptr = output.as_mut_ptr() as *mut libc::c_char;
    let mut out_left = output.len();
    // SAFETY: the pointers and counts describe the two buffers above, which outlive the call.
    let r = unsafe { libc::iconv(cd, &mut in_ptr, &mut in_left, &mut out_ptr, &mut out_left) };
    // SAFETY: cd came from iconv_open and is closed once.
    unsafe { libc::iconv_close(cd) };
    if r == usize::MAX || in_left != 0 {
        return None;
    }
    output.truncate(output.len() - out_left);
    String::from_utf8(output).ok()
}

#[cfg(windows)]
fn gb18030(bytes: &[u8]) -> Option<String> {
    #[link(name = "kernel32")]
    unsafe extern "system" {
        fn MultiByteToWideChar(
            code_page: u32,
            flags: u32,
            src: *const u8,
            src_len: i32,
            dst: *mut u16,
            dst_len: i32,
        ) -> i32;
    }
    const GB18030: u32 = 54936;
    // GBK, a subset that every Windows (and wine, which lacks 54936) has: GB2312 and GBK files
    // decode the same through it
    const GBK: u32 = 936;
    const MB_ERR_INVALID_CHARS: u32 = 0x8;
    if bytes.is_empty() {
        return Some(String::new());
    }
    let len = i32::try_from(bytes.len()).ok()?;
    let mut wide = vec![0u16; bytes.len() + 1];
    for code_page in [GB18030, GBK] {
        // SAFETY: src/len describe `bytes`, dst/len describe `wide`; a UTF-16 unit per byte is
        // always enough (GB18030 has no sequence that decodes to more units than it has bytes).
        let n = unsafe {
            MultiByteToWideChar(
                code_page,
                MB_ERR_INVALID_CHARS,
                bytes.as_ptr(),
                len,
                wide.as_mut_ptr(),
                wide.len() as i32,
            )
        };
        if n > 0 {
            return String::from_utf16(&wide[..n as usize]).ok();
        }
    }
    None
}

#[cfg(not(any(unix, windows)))]
fn gb18030(_: &[u8]) -> Option<String> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_encodings_are_honoured() {
        assert_eq!(
            declared(b"<?xml version=\"1.0\" encoding='GB2312'?><a/>").as_deref(),
            Some("gb2312")
        );
        assert_eq!(declared(b"<a/>"), None);
        assert_eq!(
            xml_text(b"\xEF\xBB\xBF<a>\xE6\x94\xBE</a>").unwrap(),
            "<a>放</a>"
        );
        // 放行 in GBK
        let gbk = b"<?xml version=\"1.0\" encoding=\"gbk\"?><a>\xB7\xC5\xD0\xD0</a>";
        assert!(xml_text(gbk).unwrap().ends_with("<a>放行</a>"));
        assert!(matches!(
            xml_text(b"<?xml version=\"1.0\" encoding=\"utf-8\"?><a>\xB7\xC5</a>"),
            Err(DecodeError::Invalid { .. })
        ));
        assert!(matches!(
            xml_text(b"<?xml version=\"1.0\" encoding=\"big5\"?><a/>"),
            Err(DecodeError::Unsupported { .. })
        ));
    }
}
