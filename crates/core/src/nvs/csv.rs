//! The CSV dialect of Espressif's `nvs_partition_gen.py generate`, read the way that tool reads it.
//!
//! What the tool does, and this reader does too: lines whose first character is `#` are dropped
//! before CSV parsing; the first row names the columns (`key,type,encoding,value`, in any order);
//! fields follow Python's `csv` "excel" dialect (double quotes, `""` inside quotes, nothing
//! trimmed); rows are `namespace`, `data` or `file`; encodings are the integer types, `string`,
//! `hex2bin`, `base64`, `binary`, `blob_fill(N;0xPP)` and `blob_sz_fill(N;0xPP)`; the hidden
//! Wi-Fi entries (`sta.apinfo`, `sta.pmk`, `sta.apsw`, `ap.pmk_info`) are added as the tool adds
//! them. Where the tool crashes, exits 0 or writes a broken item, this reader stops with an error
//! that names the file, line and key instead (README, "NVS differences").
//!
//! Differences on purpose: `file` paths are relative to the CSV's folder (not the working
//! directory); a leading UTF-8 byte-order mark is ignored; an unknown row type, a non-ASCII key,
//! a non-ASCII `binary` text, an encoding such as `STRING` whose case changes its meaning in the
//! tool, and a quote left open at the end of the file are errors.

use std::path::{Path, PathBuf};

use super::pycompat::{a2b_base64, a2b_hex, py_int, py_strip};
use super::writer::{Value, Writer};
use super::{NvsError, Version};

/// The four columns the header must name.
pub const COLUMNS: [&str; 4] = ["key", "type", "encoding", "value"];

/// Largest `blob_fill` length accepted (the tool would try to allocate anything).
const MAX_FILL: usize = 16 * 1024 * 1024;

/// A problem with one row.
#[derive(Debug, thiserror::Error)]
pub enum RowProblem {
    #[error(transparent)]
    Nvs(#[from] NvsError),
    #[error("the `{0}` field is missing")]
    MissingField(&'static str),
    #[error("type `{0}` is not one of namespace, data, file")]
    UnknownType(String),
    #[error(
        "encoding `{0}` is not supported (u8, i8, u16, i16, u32, i32, u64, i64, string, hex2bin, base64, binary, blob_fill(N;0xPP), blob_sz_fill(N;0xPP))"
    )]
    UnknownEncoding(String),
    #[error(
        "encoding `{0}` must be written in lower case (Espressif's tool would silently store it without decoding it)"
    )]
    EncodingCase(String),
    #[error("encoding `{0}` is malformed: expected blob_fill(N;0xPP) or blob_sz_fill(N;0xPP)")]
    FillFormat(String),
    #[error("value is {len} bytes, longer than the {length} bytes of `{encoding}`")]
    FillOverflow {
        encoding: String,
        len: usize,
        length: usize,
    },
    #[error("`{value}` is not a decimal integer")]
    NotAnInteger { value: String },
    #[error("{value} is out of range for {encoding} ({min}..={max})")]
    OutOfRange {
        value: i128,
        encoding: &'static str,
        min: i128,
        max: i128,
    },
    #[error("hex2bin value has an odd number of digits ({0}); it must be a whole number of bytes")]
    OddHex(usize),
    #[error("hex2bin value: {0}")]
    BadHex(String),
    #[error("base64 value: {0}")]
    BadBase64(String),
    #[error(
        "`binary` data must be ASCII text (Espressif's tool writes a broken item otherwise); use hex2bin or a file row"
    )]
    NonAsciiBinary,
    #[error("the value is not valid UTF-8 text")]
    NotUtf8,
    #[error("cannot read file `{path}`: {source}")]
    File {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// Why a CSV could not become an image.
#[derive(Debug, thiserror::Error)]
pub enum CsvError {
    #[error(transparent)]
    Size(#[from] NvsError),
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: not UTF-8 text (at byte {at})")]
    NotUtf8 { path: PathBuf, at: usize },
    #[error("{path}:{line}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        message: String,
    },
    #[error(
        "{path}: the header row must name the columns key,type,encoding,value; `{missing}` is missing"
    )]
    Header {
        path: PathBuf,
        missing: &'static str,
    },
    #[error("{path}:{line}: key `{key}`: {problem}")]
    Row {
        path: PathBuf,
        line: usize,
        key: String,
        problem: Box<RowProblem>,
    },
}

/// One data row of the CSV: the four fields, `None` where the row is too short.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// Line on which the row starts (1-based, counting comment lines).
    pub line: usize,
    pub key: Option<String>,
    pub kind: Option<String>,
    pub encoding: Option<String>,
    pub value: Option<String>,
}

/// Generates an image from CSV files, like `nvs_partition_gen.py generate IN... OUT SIZE`.
/// Namespaces and the page cursor carry over from one file to the next, as in the tool.
/// Files (the CSVs and their `file` rows) are read through `read`, so the caller decides where
/// they come from (`&|p| std::fs::read(p)` on a real machine).
pub fn generate_files(
    inputs: &[PathBuf],
    size: u64,
    version: Version,
    read: &ReadFile,
) -> Result<Vec<u8>, CsvError> {
    let mut texts = Vec::with_capacity(inputs.len());
    for path in inputs {
        let bytes = read(path).map_err(|source| CsvError::Read {
            path: path.clone(),
            source,
        })?;
        let text = String::from_utf8(bytes).map_err(|e| CsvError::NotUtf8 {
            path: path.clone(),
            at: e.utf8_error().valid_up_to(),
        })?;
        texts.push(text);
    }
    let sources: Vec<Source> = inputs
        .iter()
        .zip(&texts)
        .map(|(path, text)| Source {
            path,
            text,
            base: path.parent().unwrap_or(Path::new(".")),
        })
        .collect();
    generate(&sources, size, version, read)
}

/// Reads a file named by a CSV (or the CSV itself): the caller's window on the file system.
pub use crate::ReadFile;

/// A [`ReadFile`] for CSVs that may not name files (a dump's, a fuzzer's): every read fails.
pub fn no_files(path: &Path) -> std::io::Result<Vec<u8>> {
    Err(std::io::Error::new(
        std::io::ErrorKind::PermissionDenied,
        format!("{} may not be read here", path.display()),
    ))
}

/// One CSV text and where it came from.
pub struct Source<'a> {
    /// Named in error messages.
    pub path: &'a Path,
    pub text: &'a str,
    /// Folder that relative `file` rows are read from.
    pub base: &'a Path,
}

/// Generates an image from CSV texts, state carrying over from one to the next.
/// `file` rows are read through `read`.
pub fn generate(
    sources: &[Source],
    size: u64,
    version: Version,
    read: &ReadFile,
) -> Result<Vec<u8>, CsvError> {
    let mut writer = Writer::new(size, version)?;
    let mut wifi = WifiExtras::default();
    for source in sources {
        for row in parse(source.text, source.path)? {
            apply_row(&mut writer, &mut wifi, &row, source.base, read).map_err(|problem| {
                CsvError::Row {
                    path: source.path.to_owned(),
                    line: row.line,
                    key: row.key.clone().unwrap_or_default(),
                    problem: Box::new(problem),
                }
            })?;
        }
    }
    Ok(writer.finish())
}

/// Parses CSV text into rows keyed by the header.
pub fn parse(text: &str, path: &Path) -> Result<Vec<Row>, CsvError> {
    let records = records(text).map_err(|(line, message)| CsvError::Syntax {
        path: path.to_owned(),
        line,
        message,
    })?;
    let mut records = records.into_iter();
    let Some(header) = records.next() else {
        return Ok(Vec::new());
    };
    let column = |name: &'static str| {
        header
            .fields
            .iter()
            .rposition(|f| f == name)
            .ok_or(CsvError::Header {
                path: path.to_owned(),
                missing: name,
            })
    };
    let [key, kind, encoding, value] = [
        column(COLUMNS[0])?,
        column(COLUMNS[1])?,
        column(COLUMNS[2])?,
        column(COLUMNS[3])?,
    ];
    Ok(records
        .map(|r| {
            let field = |i: usize| r.fields.get(i).cloned();
            Row {
                line: r.line,
                key: field(key),
                kind: field(kind),
                encoding: field(encoding),
                value: field(value),
            }
        })
        .collect())
}

/// A physical CSV record and the line it starts on.
struct Record {
    line: usize,
    fields: Vec<String>,
}

#[derive(Clone, Copy, PartialEq)]
enum State {
    StartRecord,
    StartField,
    InField,
    InQuoted,
    QuoteInQuoted,
}

/// Python's `csv.reader` (excel dialect, non-strict) over the lines that do not start with `#`,
/// after universal-newline translation. Empty records are skipped, as `DictReader` does.
fn records(text: &str) -> Result<Vec<Record>, (usize, String)> {
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    let mut fields: Vec<String> = Vec::new();
    let mut field = String::new();
    let mut state = State::StartRecord;
    let mut start_line = 0;
    for (index, line) in text.split_inclusive('\n').enumerate() {
        let number = index + 1;
        if line.starts_with('#') {
            continue;
        }
        if line.contains('\0') {
            return Err((number, "line contains a NUL character".into()));
        }
        if state == State::StartRecord {
            start_line = number;
        }
        for c in line.chars() {
            state = match (state, c) {
                (State::StartRecord | State::StartField, '\n') => {
                    if state == State::StartField {
                        fields.push(std::mem::take(&mut field));
                    }
                    State::StartRecord
                }
                (State::StartRecord | State::StartField, '"') => State::InQuoted,
                (
                    State::StartRecord | State::StartField | State::InField | State::QuoteInQuoted,
                    ',',
                ) => {
                    fields.push(std::mem::take(&mut field));
                    State::StartField
                }
                (State::InField | State::QuoteInQuoted, '\n') => {
                    fields.push(std::mem::take(&mut field));
                    State::StartRecord
                }
                (State::InQuoted, '"') => State::QuoteInQuoted,
                (State::InQuoted, c) => {
                    field.push(c);
                    State::InQuoted
                }
                (State::QuoteInQuoted, '"') => {
                    field.push('"');
                    State::InQuoted
                }
                (
                    State::StartRecord | State::StartField | State::InField | State::QuoteInQuoted,
                    c,
                ) => {
                    field.push(c);
                    State::InField
                }
            };
            if state == State::StartRecord && !fields.is_empty() {
                out.push(Record {
                    line: start_line,
                    fields: std::mem::take(&mut fields),
                });
            }
        }
    }
    match state {
        State::InQuoted => Err((
            start_line,
            "a quoted field is never closed (missing `\"`)".into(),
        )),
        State::StartRecord => Ok(out),
        _ => {
            fields.push(field);
            out.push(Record {
                line: start_line,
                fields,
            });
            Ok(out)
        }
    }
}

/// A row's value: CSV text, or the bytes of the file a `file` row names.
enum Raw {
    Text(String),
    Bytes(Vec<u8>),
}

impl Raw {
    fn bytes(&self) -> &[u8] {
        match self {
            Raw::Text(t) => t.as_bytes(),
            Raw::Bytes(b) => b,
        }
    }

    fn into_text(self) -> Result<String, RowProblem> {
        match self {
            Raw::Text(t) => Ok(t),
            Raw::Bytes(b) => String::from_utf8(b).map_err(|_| RowProblem::NotUtf8),
        }
    }

    fn is_empty(&self) -> bool {
        self.bytes().is_empty()
    }
}

/// The tool's hidden Wi-Fi bookkeeping (FORMAT.md section 8).
#[derive(Default)]
struct WifiExtras {
    sta_written: bool,
    ap_ssid: Option<String>,
    ap_passwd: Option<String>,
    ap_authmode: Option<String>,
}

impl WifiExtras {
    /// Records an `ap.*` row; returns the `ap.pmk_info` blob to write before it, if the set is complete.
    fn ap_row(&mut self, key: &str, value: &str) -> Option<Vec<u8>> {
        match key {
            "ap.ssid" => self.ap_ssid = Some(value.to_owned()),
            "ap.passwd" => self.ap_passwd = Some(value.to_owned()),
            "ap.authmode" if value != "0" => self.ap_authmode = Some(value.to_owned()),
            "ap.authmode" => {}
            _ => return None,
        }
        let nonempty =
            |v: &Option<String>| v.as_deref().filter(|s| !s.is_empty()).map(str::to_owned);
        let (ssid, passwd) = (nonempty(&self.ap_ssid)?, nonempty(&self.ap_passwd)?);
        nonempty(&self.ap_authmode)?;
        Some(ap_pmk_info(&ssid, &passwd))
    }
}

/// 100 zero bytes followed by the WPA PMK, PBKDF2-HMAC-SHA1(passphrase, ssid, 4096, 32).
pub fn ap_pmk_info(ssid: &str, passwd: &str) -> Vec<u8> {
    let mut pmk = [0u8; 32];
    pbkdf2::pbkdf2_hmac::<sha1::Sha1>(passwd.as_bytes(), ssid.as_bytes(), 4096, &mut pmk);
    let mut info = vec![0u8; 100];
    info.extend_from_slice(&pmk);
    info
}

/// The blobs the tool adds after the first `sta.ssid` or `sta.pswd`.
pub fn sta_extras() -> [(&'static str, Vec<u8>); 3] {
    [
        ("sta.apinfo", vec![0xFF; 140]),
        ("sta.pmk", vec![0; 32]),
        ("sta.apsw", vec![0; 2]),
    ]
}

fn apply_row(
    writer: &mut Writer,
    wifi: &mut WifiExtras,
    row: &Row,
    base: &Path,
    read: &ReadFile,
) -> Result<(), RowProblem> {
    let key = row.key.as_deref().ok_or(RowProblem::MissingField("key"))?;
    super::writer::check_key(key)?;
    let kind = row
        .kind
        .as_deref()
        .ok_or(RowProblem::MissingField("type"))?;
    if kind == "namespace" {
        writer.namespace(key)?;
        return Ok(());
    }
    if kind != "data" && kind != "file" {
        return Err(RowProblem::UnknownType(kind.to_owned()));
    }
    let encoding = row
        .encoding
        .as_deref()
        .ok_or(RowProblem::MissingField("encoding"))?;
    let text = row
        .value
        .as_deref()
        .ok_or(RowProblem::MissingField("value"))?;
    if let Some(pmk_info) = wifi.ap_row(key, text) {
        writer.put("ap.pmk_info", &Value::blob(&pmk_info))?;
    }
    if key == "sta.ssid" || key == "sta.pswd" {
        // The tool writes the CSV text here even for `file` rows, and adds its extras once.
        write_value(writer, key, Raw::Text(text.to_owned()), encoding)?;
        if !std::mem::replace(&mut wifi.sta_written, true) {
            for (extra, bytes) in sta_extras() {
                writer.put(extra, &Value::blob(&bytes))?;
            }
        }
        return Ok(());
    }
    let raw = if kind == "file" {
        let path = base.join(text);
        Raw::Bytes(read(&path).map_err(|source| RowProblem::File { path, source })?)
    } else {
        Raw::Text(text.to_owned())
    };
    write_value(writer, key, raw, encoding)
}

/// Decodes a value by its encoding and writes it, as the tool's `NVS.write_entry` does.
fn write_value(writer: &mut Writer, key: &str, raw: Raw, encoding: &str) -> Result<(), RowProblem> {
    if encoding.starts_with("blob_fill") || encoding.starts_with("blob_sz_fill") {
        let blob = fill(encoding, &raw)?;
        return Ok(writer.put(key, &Value::blob(&blob))?);
    }
    match encoding {
        "hex2bin" => {
            let digits = match &raw {
                Raw::Text(t) => py_strip(t).as_bytes(),
                Raw::Bytes(b) => b.trim_ascii(),
            };
            if digits.len() % 2 != 0 {
                return Err(RowProblem::OddHex(digits.len()));
            }
            let bytes = a2b_hex(digits).map_err(RowProblem::BadHex)?;
            Ok(writer.put(key, &Value::blob(&bytes))?)
        }
        "base64" => {
            let bytes = a2b_base64(raw.bytes()).map_err(RowProblem::BadBase64)?;
            Ok(writer.put(key, &Value::blob(&bytes))?)
        }
        "string" => Ok(writer.put(key, &Value::str(&raw.into_text()?))?),
        e if e.eq_ignore_ascii_case("binary") => {
            if let Raw::Text(t) = &raw
                && !t.is_ascii()
            {
                return Err(RowProblem::NonAsciiBinary);
            }
            Ok(writer.put(key, &Value::blob(raw.bytes()))?)
        }
        e if ["string", "hex2bin", "base64"]
            .iter()
            .any(|n| e.eq_ignore_ascii_case(n)) =>
        {
            Err(RowProblem::EncodingCase(e.to_owned()))
        }
        e => {
            let value = primitive(&e.to_ascii_lowercase(), &raw.into_text()?)
                .ok_or_else(|| RowProblem::UnknownEncoding(e.to_owned()))??;
            Ok(writer.put(key, &value)?)
        }
    }
}

/// Parses an integer for a primitive encoding; `None` if the encoding is not a primitive one.
fn primitive(encoding: &str, text: &str) -> Option<Result<Value<'static>, RowProblem>> {
    macro_rules! int {
        ($t:ty, $variant:ident, $name:literal) => {{
            let parsed = py_int(text).ok_or_else(|| RowProblem::NotAnInteger {
                value: text.to_owned(),
            });
            Some(parsed.and_then(|v| {
                <$t>::try_from(v)
                    .map(Value::$variant)
                    .map_err(|_| RowProblem::OutOfRange {
                        value: v,
                        encoding: $name,
                        min: <$t>::MIN as i128,
                        max: <$t>::MAX as i128,
                    })
            }))
        }};
    }
    match encoding {
        "u8" => int!(u8, U8, "u8"),
        "i8" => int!(i8, I8, "i8"),
        "u16" => int!(u16, U16, "u16"),
        "i16" => int!(i16, I16, "i16"),
        "u32" => int!(u32, U32, "u32"),
        "i32" => int!(i32, I32, "i32"),
        "u64" => int!(u64, U64, "u64"),
        "i64" => int!(i64, I64, "i64"),
        _ => None,
    }
}

/// `blob_fill(N;0xPP)`: the value padded to N bytes with PP; `blob_sz_fill` adds a u32 length first.
fn fill(encoding: &str, raw: &Raw) -> Result<Vec<u8>, RowProblem> {
    let bad = || RowProblem::FillFormat(encoding.to_owned());
    let (sized, rest) = match encoding.strip_prefix("blob_sz_fill(") {
        Some(rest) => (true, rest),
        None => (false, encoding.strip_prefix("blob_fill(").ok_or_else(bad)?),
    };
    let (length, rest) = rest.split_once(';').ok_or_else(bad)?;
    if length.is_empty() || !length.bytes().all(|b| b.is_ascii_digit()) {
        return Err(bad());
    }
    let pad = rest
        .get(..5)
        .filter(|p| p.starts_with("0x") && p.ends_with(')'))
        .ok_or_else(bad)?;
    if !pad[2..4].bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    let pad = u8::from_str_radix(&pad[2..4], 16).map_err(|_| bad())?;
    let length: usize = length
        .parse()
        .ok()
        .filter(|&n| n <= MAX_FILL)
        .ok_or_else(bad)?;
    let value = if raw.is_empty() { &[][..] } else { raw.bytes() };
    if value.len() > length {
        return Err(RowProblem::FillOverflow {
            encoding: encoding.to_owned(),
            len: value.len(),
            length,
        });
    }
    let mut blob = Vec::with_capacity(length + 4);
    if sized {
        blob.extend_from_slice(&(value.len() as u32).to_le_bytes());
    }
    blob.extend_from_slice(value);
    blob.resize(blob.len() + length - value.len(), pad);
    Ok(blob)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fields(text: &str) -> Vec<(usize, Vec<String>)> {
        records(text)
            .unwrap()
            .into_iter()
            .map(|r| (r.line, r.fields))
            .collect()
    }

    fn strings(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn python_excel_dialect() {
        assert_eq!(fields("a,b\n"), vec![(1, strings(&["a", "b"]))]);
        assert_eq!(fields("a,,\n"), vec![(1, strings(&["a", "", ""]))]);
        assert_eq!(fields("\"a,b\",c"), vec![(1, strings(&["a,b", "c"]))]);
        assert_eq!(fields("\"a\"\"b\",c\n"), vec![(1, strings(&["a\"b", "c"]))]);
        assert_eq!(
            fields("\"a\nb\",c\nd\n"),
            vec![(1, strings(&["a\nb", "c"])), (3, strings(&["d"]))]
        );
        assert_eq!(fields("\"ab\"cd,e\n"), vec![(1, strings(&["abcd", "e"]))]);
        assert_eq!(fields("a\"b,c\n"), vec![(1, strings(&["a\"b", "c"]))]);
        assert_eq!(fields(" a , b \n"), vec![(1, strings(&[" a ", " b "]))]);
        assert_eq!(
            fields("a\r\nb\rc\n"),
            vec![
                (1, strings(&["a"])),
                (2, strings(&["b"])),
                (3, strings(&["c"]))
            ]
        );
        assert_eq!(fields("\n\na\n\n"), vec![(3, strings(&["a"]))]);
        assert_eq!(
            fields("#x\na\n#y,z\nb"),
            vec![(2, strings(&["a"])), (4, strings(&["b"]))]
        );
        assert_eq!(fields(" #x\n"), vec![(1, strings(&[" #x"]))]);
        assert_eq!(fields("\u{feff}key\n"), vec![(1, strings(&["key"]))]);
        assert_eq!(fields("\"\"\n"), vec![(1, strings(&[""]))]);
    }

    #[test]
    fn comment_lines_inside_quotes_are_still_dropped() {
        // The tool filters physical lines before the CSV parser sees them.
        assert_eq!(
            fields("\"a\n#b\nc\",d\n"),
            vec![(1, strings(&["a\nc", "d"]))]
        );
    }

    #[test]
    fn unterminated_quote_and_nul_are_errors() {
        assert_eq!(records("a,\"b\nc\n").err().unwrap().0, 1);
        assert_eq!(records("a\nb\0\n").err().unwrap().0, 2);
    }

    #[test]
    fn fill_encodings() {
        let raw = Raw::Text("ab".into());
        assert_eq!(fill("blob_fill(4;0x00)", &raw).unwrap(), b"ab\0\0");
        assert_eq!(
            fill("blob_sz_fill(3;0xff)", &raw).unwrap(),
            b"\x02\0\0\0ab\xff"
        );
        assert_eq!(
            fill("blob_fill(2;0x41)", &Raw::Text(String::new())).unwrap(),
            b"AA"
        );
        assert!(matches!(
            fill("blob_fill(1;0x00)", &raw),
            Err(RowProblem::FillOverflow { .. })
        ));
        for bad in [
            "blob_fill(4,0x00)",
            "blob_fill(;0x00)",
            "blob_fill(4;0x0)",
            "blob_fill(4;00)",
            "blob_fill(4;0xzz)",
            "blob_fill(4;0x+f)",
        ] {
            assert!(
                matches!(fill(bad, &raw), Err(RowProblem::FillFormat(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn ap_pmk_is_pbkdf2_sha1() {
        // IEEE 802.11i test vector: passphrase "password", SSID "IEEE".
        let info = ap_pmk_info("IEEE", "password");
        assert_eq!(info.len(), 132);
        assert!(info[..100].iter().all(|&b| b == 0));
        let hex: String = info[100..].iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(
            hex,
            "f42c6fc52df0ebef9ebb4b90b38a5f902e83fe1b135a70e23aed762e9710a12e"
        );
    }
}
