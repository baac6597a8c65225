//! Ports of the few Python built-ins whose exact behaviour decides what Espressif's
//! `nvs_partition_gen.py` accepts: `int(text)`, `str.strip()`, `binascii.a2b_hex` and the lenient
//! `binascii.a2b_base64` of CPython 3.11. A CSV that works there must work here, byte for byte.

/// Python's `str.isspace()` for the characters that matter in CSV text.
pub fn is_py_space(c: char) -> bool {
    c.is_whitespace() || ('\x1c'..='\x1f').contains(&c)
}

/// Python's `str.strip()`.
pub fn py_strip(s: &str) -> &str {
    s.trim_matches(is_py_space)
}

/// Python's `int(text)` in base 10: surrounding whitespace, an optional sign, and digits with
/// single underscores between them. Returns `None` where Python raises `ValueError`.
/// (Python also takes non-ASCII decimal digits; this port takes ASCII digits only.)
pub fn py_int(text: &str) -> Option<i128> {
    let s = py_strip(text);
    let (negative, digits) = match s.as_bytes().first()? {
        b'-' => (true, &s[1..]),
        b'+' => (false, &s[1..]),
        _ => (false, s),
    };
    let bytes = digits.as_bytes();
    if bytes.is_empty() || bytes[0] == b'_' || bytes[bytes.len() - 1] == b'_' {
        return None;
    }
    let mut value: i128 = 0;
    let mut previous_underscore = false;
    for &b in bytes {
        match b {
            b'_' if previous_underscore => return None,
            b'_' => previous_underscore = true,
            b'0'..=b'9' => {
                previous_underscore = false;
                value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
            }
            _ => return None,
        }
    }
    Some(if negative { -value } else { value })
}

/// `binascii.a2b_hex`: pairs of hex digits, either case. The caller has checked the length.
pub fn a2b_hex(text: &[u8]) -> Result<Vec<u8>, String> {
    fn nibble(c: u8) -> Option<u8> {
        (c as char).to_digit(16).map(|d| d as u8)
    }
    if text.len() % 2 != 0 {
        return Err("odd number of hex digits".into());
    }
    text.chunks_exact(2)
        .map(|pair| match (nibble(pair[0]), nibble(pair[1])) {
            (Some(hi), Some(lo)) => Ok(hi << 4 | lo),
            _ => Err(format!(
                "`{}` is not a hex digit pair",
                String::from_utf8_lossy(pair).escape_default()
            )),
        })
        .collect()
}

/// CPython 3.11's non-strict `binascii.a2b_base64`: characters outside the alphabet are skipped,
/// decoding stops at the padding that completes a quad, and a dangling quad is an error.
pub fn a2b_base64(text: &[u8]) -> Result<Vec<u8>, String> {
    fn sextet(c: u8) -> Option<u8> {
        match c {
            b'A'..=b'Z' => Some(c - b'A'),
            b'a'..=b'z' => Some(c - b'a' + 26),
            b'0'..=b'9' => Some(c - b'0' + 52),
            b'+' => Some(62),
            b'/' => Some(63),
            _ => None,
        }
    }
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut quad_pos, mut left, mut pads, mut data_chars) = (0u8, 0u8, 0usize, 0usize);
    for &c in text {
        if c == b'=' {
            pads += 1;
            if quad_pos >= 2 && quad_pos as usize + pads >= 4 {
                return Ok(out);
            }
            continue;
        }
        let Some(v) = sextet(c) else { continue };
        pads = 0;
        data_chars += 1;
        match quad_pos {
            0 => left = v,
            1 => {
                out.push(left << 2 | v >> 4);
                left = v & 0x0f;
            }
            2 => {
                out.push(left << 4 | v >> 2);
                left = v & 0x03;
            }
            _ => out.push(left << 6 | v),
        }
        quad_pos = (quad_pos + 1) % 4;
    }
    match quad_pos {
        0 => Ok(out),
        1 => Err(format!(
            "invalid base64: {data_chars} data characters is 1 more than a multiple of 4"
        )),
        _ => Err("invalid base64: incorrect padding".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn int_matches_python() {
        let ok = [
            (" 5 ", 5),
            ("+5", 5),
            ("-0", 0),
            ("1_000", 1000),
            ("007", 7),
            ("5\n", 5),
            ("\u{a0}5", 5),
            ("-12", -12),
        ];
        for (text, value) in ok {
            assert_eq!(py_int(text), Some(value), "{text:?}");
        }
        for text in [
            "_1", "1__0", "1_", "0x10", "", "  ", "\x1c5x", "1.0", "- 1", "--1", "٣",
        ] {
            assert_eq!(py_int(text), None, "{text:?}");
        }
    }

    #[test]
    fn base64_matches_python() {
        let ok: [(&str, &[u8]); 11] = [
            ("aGVsbG8=", b"hello"),
            ("aGVs bG8=", b"hello"),
            ("aGVsbG8=junk", b"hello"),
            ("ab==", b"i"),
            ("=", b""),
            ("", b""),
            ("ab=c=", b"i\xb7"),
            ("abc=d", b"i\xb7"),
            ("YQ==YQ==", b"a"),
            ("!!aGk=", b"hi"),
            ("ab=\n=cd", b"i"),
        ];
        for (text, bytes) in ok {
            assert_eq!(a2b_base64(text.as_bytes()).unwrap(), bytes, "{text:?}");
        }
        for text in ["aGVsbG8", "a", "ab", "abc", "a==="] {
            assert!(a2b_base64(text.as_bytes()).is_err(), "{text:?}");
        }
    }

    #[test]
    fn hex_pairs() {
        assert_eq!(a2b_hex(b"00fFaB").unwrap(), vec![0, 0xff, 0xab]);
        assert!(a2b_hex(b"0g").is_err());
        assert!(a2b_hex(b"abc").is_err());
    }
}
