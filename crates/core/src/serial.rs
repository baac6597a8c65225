//! Serial numbers: `PV-YYMDD-BBTTR-XXXXX`.
//!
//! A serial number is printed on the label, stored in NVS, used as the MQTT username and is the
//! registry's primary key, so it is parsed once into [`SerialNumber`] and never handled as a bare
//! string afterwards. Parsing names every wrong part, because a technician reading a scanner's
//! output needs to know *which* character is off, not just that something is.

use std::collections::HashSet;
use std::fmt;
use std::str::FromStr;

use chrono::{Datelike, NaiveDate};
use rand::Rng;
use serde::{Deserialize, Serialize};

/// The fixed prefix, "Project Vesper".
pub const PREFIX: &str = "PV";
/// Month letters: A = January ... L = December.
pub const MONTH_LETTERS: &str = "ABCDEFGHIJKL";
/// Suffix alphabet: upper-case letters and digits without the look-alikes 0, O, 1 and I.
pub const SUFFIX_ALPHABET: &str = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789";
/// Length of a serial number in characters.
pub const LENGTH: usize = 20;
/// Human-readable shape, used in error messages.
pub const SHAPE: &str = "PV-YYMDD-BBTTR-XXXXX";

/// A board type code such as `BC` (BellCore) or `BP` (BellPRO): two upper-case ASCII letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BoardType([u8; 2]);

/// A board revision such as `02`: two ASCII digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Revision([u8; 2]);

/// A validated serial number. Construct it with [`SerialNumber::from_str`] or [`generate`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct SerialNumber(String);

/// One thing wrong with a would-be serial number.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("length is {0} characters, expected {LENGTH} ({SHAPE})")]
    Length(usize),
    #[error("contains a non-ASCII character")]
    NonAscii,
    #[error("prefix `{0}` is not `PV-`")]
    Prefix(String),
    #[error("character {position} is `{found}`, expected `-` ({SHAPE})")]
    Separator { position: usize, found: char },
    #[error("year `{0}` is not two digits")]
    Year(String),
    #[error("month letter `{0}` is not A..L (A = January)")]
    Month(char),
    #[error("day `{0}` is not two digits")]
    DayFormat(String),
    #[error("day `{0:02}` is not 01..31")]
    DayRange(u32),
    #[error("day {day:02} does not exist in {month} 20{year:02}")]
    Day {
        day: u32,
        month: &'static str,
        year: u32,
    },
    #[error("board type `{0}` is not two upper-case letters")]
    BoardType(String),
    #[error("revision `{0}` is not two digits")]
    Revision(String),
    #[error("character 14 is `{0}`, expected the literal `R` after the revision")]
    LiteralR(char),
    #[error("suffix `{suffix}` has `{bad}`, allowed are {SUFFIX_ALPHABET} (no 0, O, 1, I)")]
    Suffix { suffix: String, bad: char },
}

/// Why a string is not a serial number: every wrong part, in order.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("`{input}` is not a serial number: {}", join_problems(.problems))]
pub struct ParseError {
    pub input: String,
    pub problems: Vec<Problem>,
}

fn join_problems(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("; ")
}

/// Errors of board type, revision and date inputs to [`generate`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InputError {
    #[error("board type `{0}` must be two upper-case letters, e.g. BC")]
    BoardType(String),
    #[error("revision `{0}` must be two digits, e.g. 02")]
    Revision(String),
    #[error("date {0} is outside 2000-01-01..2099-12-31, which a two-digit year cannot encode")]
    DateOutOfRange(NaiveDate),
    #[error(
        "cannot make {requested} distinct serial numbers: only {available} exist per board, revision and day"
    )]
    TooMany { requested: u64, available: u64 },
}

const MONTH_NAMES: [&str; 12] = [
    "January",
    "February",
    "March",
    "April",
    "May",
    "June",
    "July",
    "August",
    "September",
    "October",
    "November",
    "December",
];

impl FromStr for BoardType {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_uppercase() && b.is_ascii_uppercase() => Ok(Self([*a, *b])),
            _ => Err(InputError::BoardType(s.to_owned())),
        }
    }
}

impl FromStr for Revision {
    type Err = InputError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.as_bytes() {
            [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => Ok(Self([*a, *b])),
            _ => Err(InputError::Revision(s.to_owned())),
        }
    }
}

impl BoardType {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("board type is ASCII")
    }
}

impl Revision {
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).expect("revision is ASCII")
    }
}

impl fmt::Display for BoardType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Display for Revision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl SerialNumber {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The manufacturing date encoded in the serial number.
    pub fn date(&self) -> NaiveDate {
        let b = self.0.as_bytes();
        let year = 2000 + two_digits(&b[3..5]).expect("validated");
        let month = MONTH_LETTERS.find(b[5] as char).expect("validated") as u32 + 1;
        let day = two_digits(&b[6..8]).expect("validated");
        NaiveDate::from_ymd_opt(year as i32, month, day).expect("validated")
    }

    /// The board type, e.g. `BC`.
    pub fn board_type(&self) -> BoardType {
        let b = self.0.as_bytes();
        BoardType([b[9], b[10]])
    }

    /// The board revision, e.g. `02`.
    pub fn revision(&self) -> Revision {
        let b = self.0.as_bytes();
        Revision([b[11], b[12]])
    }
}

impl fmt::Display for SerialNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl AsRef<str> for SerialNumber {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl From<SerialNumber> for String {
    fn from(sn: SerialNumber) -> String {
        sn.0
    }
}

impl TryFrom<String> for SerialNumber {
    type Error = ParseError;
    fn try_from(s: String) -> Result<Self, Self::Error> {
        s.parse()
    }
}

impl FromStr for SerialNumber {
    type Err = ParseError;

    fn from_str(input: &str) -> Result<Self, Self::Err> {
        let problems = problems(input);
        if problems.is_empty() {
            Ok(Self(input.to_owned()))
        } else {
            Err(ParseError {
                input: input.to_owned(),
                problems,
            })
        }
    }
}

fn two_digits(b: &[u8]) -> Option<u32> {
    match b {
        [a, b] if a.is_ascii_digit() && b.is_ascii_digit() => {
            Some(u32::from(a - b'0') * 10 + u32::from(b - b'0'))
        }
        _ => None,
    }
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Every problem with `input`; empty when it is a valid serial number.
fn problems(input: &str) -> Vec<Problem> {
    if !input.is_ascii() {
        return vec![Problem::NonAscii];
    }
    if input.len() != LENGTH {
        return vec![Problem::Length(input.len())];
    }
    let b = input.as_bytes();
    let mut found = Vec::new();
    if &b[0..3] != b"PV-" {
        found.push(Problem::Prefix(text(&b[0..3])));
    }
    for position in [8, 14] {
        if b[position] != b'-' {
            found.push(Problem::Separator {
                position: position + 1,
                found: b[position] as char,
            });
        }
    }
    found.extend(date_problems(&b[3..8]));
    if !(b[9].is_ascii_uppercase() && b[10].is_ascii_uppercase()) {
        found.push(Problem::BoardType(text(&b[9..11])));
    }
    if two_digits(&b[11..13]).is_none() {
        found.push(Problem::Revision(text(&b[11..13])));
    }
    if b[13] != b'R' {
        found.push(Problem::LiteralR(b[13] as char));
    }
    if let Some(&bad) = b[15..]
        .iter()
        .find(|c| !SUFFIX_ALPHABET.as_bytes().contains(c))
    {
        found.push(Problem::Suffix {
            suffix: text(&b[15..]),
            bad: bad as char,
        });
    }
    found
}

/// Problems of the `YYMDD` block.
fn date_problems(block: &[u8]) -> Vec<Problem> {
    let mut found = Vec::new();
    let year = two_digits(&block[0..2]);
    if year.is_none() {
        found.push(Problem::Year(text(&block[0..2])));
    }
    let month = MONTH_LETTERS.find(block[2] as char).map(|m| m as u32 + 1);
    if month.is_none() {
        found.push(Problem::Month(block[2] as char));
    }
    match two_digits(&block[3..5]) {
        None => found.push(Problem::DayFormat(text(&block[3..5]))),
        Some(day) => {
            if let (Some(year), Some(month)) = (year, month) {
                if NaiveDate::from_ymd_opt(2000 + year as i32, month, day).is_none() {
                    let month = MONTH_NAMES[month as usize - 1];
                    found.push(Problem::Day { day, month, year });
                }
            } else if !(1..=31).contains(&day) {
                found.push(Problem::DayRange(day));
            }
        }
    }
    found
}

/// The `YYMDD` block of a date, e.g. `26A18` for 2026-01-18.
pub fn date_block(date: NaiveDate) -> Result<String, InputError> {
    if !(2000..=2099).contains(&date.year()) {
        return Err(InputError::DateOutOfRange(date));
    }
    let month = MONTH_LETTERS.as_bytes()[date.month0() as usize] as char;
    Ok(format!(
        "{:02}{}{:02}",
        date.year() % 100,
        month,
        date.day()
    ))
}

/// Number of distinct serial numbers per board type, revision and day (32^5).
pub const SUFFIX_SPACE: u64 = 32u64.pow(5);

/// Generates one serial number with a random suffix from `rng`.
///
/// Use a cryptographically secure RNG (`rand::rng()` is one): suffixes must not be guessable,
/// because knowing a serial number is the first half of logging in as that device.
pub fn generate(
    board: BoardType,
    revision: Revision,
    date: NaiveDate,
    rng: &mut impl Rng,
) -> Result<SerialNumber, InputError> {
    let alphabet = SUFFIX_ALPHABET.as_bytes();
    let suffix: String = (0..5)
        .map(|_| alphabet[rng.random_range(0..alphabet.len())] as char)
        .collect();
    let sn = format!("{PREFIX}-{}-{board}{revision}R-{suffix}", date_block(date)?);
    debug_assert!(
        problems(&sn).is_empty(),
        "generated an invalid serial number {sn}"
    );
    Ok(SerialNumber(sn))
}

/// Generates `count` distinct serial numbers; a collision is drawn again, never an error.
///
/// `taken` says whether a serial number already exists elsewhere (the registry); such numbers are
/// drawn again too. The registry's unique constraint remains the final word.
pub fn generate_distinct(
    board: BoardType,
    revision: Revision,
    date: NaiveDate,
    count: usize,
    rng: &mut impl Rng,
    taken: impl Fn(&SerialNumber) -> bool,
) -> Result<Vec<SerialNumber>, InputError> {
    // Keep half the space free so that redrawing stays fast.
    if count as u64 > SUFFIX_SPACE / 2 {
        return Err(InputError::TooMany {
            requested: count as u64,
            available: SUFFIX_SPACE / 2,
        });
    }
    let mut seen = HashSet::with_capacity(count);
    let mut out = Vec::with_capacity(count);
    while out.len() < count {
        let sn = generate(board, revision, date, rng)?;
        if !taken(&sn) && seen.insert(sn.clone()) {
            out.push(sn);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn date(y: i32, m: u32, d: u32) -> NaiveDate {
        NaiveDate::from_ymd_opt(y, m, d).unwrap()
    }

    #[test]
    fn parses_the_design_example() {
        let sn: SerialNumber = "PV-26A18-BC02R-X7KQA".parse().unwrap();
        assert_eq!(sn.date(), date(2026, 1, 18));
        assert_eq!(sn.board_type().as_str(), "BC");
        assert_eq!(sn.revision().as_str(), "02");
    }

    #[test]
    fn date_block_uses_month_letters() {
        assert_eq!(date_block(date(2026, 1, 18)).unwrap(), "26A18");
        assert_eq!(date_block(date(2026, 12, 31)).unwrap(), "26L31");
        assert_eq!(date_block(date(2000, 2, 29)).unwrap(), "00B29");
        assert!(date_block(date(2100, 1, 1)).is_err());
        assert!(date_block(date(1999, 12, 31)).is_err());
    }

    fn only_problem(input: &str) -> Problem {
        let err = input.parse::<SerialNumber>().unwrap_err();
        assert_eq!(err.problems.len(), 1, "{err}");
        err.problems[0].clone()
    }

    /// The name a problem has in the vector file shared with the firmware core.
    fn kind(problem: &Problem) -> &'static str {
        match problem {
            Problem::Length(_) => "length",
            Problem::NonAscii => "non_ascii",
            Problem::Prefix(_) => "prefix",
            Problem::Separator { .. } => "separator",
            Problem::Year(_) => "year",
            Problem::Month(_) => "month",
            Problem::DayFormat(_) => "day_format",
            Problem::DayRange(_) => "day_range",
            Problem::Day { .. } => "day",
            Problem::BoardType(_) => "board_type",
            Problem::Revision(_) => "revision",
            Problem::LiteralR(_) => "literal_r",
            Problem::Suffix { .. } => "suffix",
        }
    }

    /// The cases the firmware core checks too (firmware/test/test_core/test_serial.cpp).
    #[test]
    fn the_vectors_shared_with_the_firmware() {
        let vectors = include_str!("../../../tests/vectors/device/serial_numbers.tsv");
        let mut count = 0;
        for line in vectors.lines().filter(|l| !l.starts_with('#')) {
            let (input, expected) = line.split_once('\t').expect("input<TAB>problems");
            let got = match input.parse::<SerialNumber>() {
                Ok(_) => "ok".to_owned(),
                Err(e) => e.problems.iter().map(kind).collect::<Vec<_>>().join(","),
            };
            assert_eq!(got, expected, "{input:?}");
            count += 1;
        }
        assert!(count >= 30, "only {count} vectors");
    }

    #[test]
    fn each_wrong_part_is_named() {
        assert_eq!(only_problem("PV-26A18-BC02R-X7KQ"), Problem::Length(19));
        assert_eq!(only_problem("PV-26A18-BC02R-X7KQAA"), Problem::Length(21));
        assert_eq!(only_problem(""), Problem::Length(0));
        assert_eq!(only_problem("PV-26A18-BC02R-X7KQÄ"), Problem::NonAscii);
        assert_eq!(
            only_problem("PX-26A18-BC02R-X7KQA"),
            Problem::Prefix("PX-".into())
        );
        assert_eq!(
            only_problem("PV-26A18_BC02R-X7KQA"),
            Problem::Separator {
                position: 9,
                found: '_'
            }
        );
        assert_eq!(
            only_problem("PV-26A18-BC02R_X7KQA"),
            Problem::Separator {
                position: 15,
                found: '_'
            }
        );
        assert_eq!(
            only_problem("PV-2XA18-BC02R-X7KQA"),
            Problem::Year("2X".into())
        );
        assert_eq!(only_problem("PV-26M18-BC02R-X7KQA"), Problem::Month('M'));
        assert_eq!(only_problem("PV-26a18-BC02R-X7KQA"), Problem::Month('a'));
        assert_eq!(
            only_problem("PV-26A1X-BC02R-X7KQA"),
            Problem::DayFormat("1X".into())
        );
        assert_eq!(
            only_problem("PV-26B30-BC02R-X7KQA"),
            Problem::Day {
                day: 30,
                month: "February",
                year: 26
            }
        );
        assert_eq!(
            only_problem("PV-26A00-BC02R-X7KQA"),
            Problem::Day {
                day: 0,
                month: "January",
                year: 26
            }
        );
        assert_eq!(
            only_problem("PV-26D31-BC02R-X7KQA"),
            Problem::Day {
                day: 31,
                month: "April",
                year: 26
            }
        );
        assert_eq!(
            only_problem("PV-25B29-BC02R-X7KQA"),
            Problem::Day {
                day: 29,
                month: "February",
                year: 25
            }
        );
        assert!(
            "PV-24B29-BC02R-X7KQA".parse::<SerialNumber>().is_ok(),
            "2024 is a leap year"
        );
        assert_eq!(
            only_problem("PV-26A18-Bc02R-X7KQA"),
            Problem::BoardType("Bc".into())
        );
        assert_eq!(
            only_problem("PV-26A18-B102R-X7KQA"),
            Problem::BoardType("B1".into())
        );
        assert_eq!(
            only_problem("PV-26A18-BCO2R-X7KQA"),
            Problem::Revision("O2".into())
        );
        assert_eq!(only_problem("PV-26A18-BC02X-X7KQA"), Problem::LiteralR('X'));
        assert_eq!(
            only_problem("PV-26A18-BC02R-X7KQ0"),
            Problem::Suffix {
                suffix: "X7KQ0".into(),
                bad: '0'
            }
        );
        for bad in ['O', '1', 'I', 'a', '-'] {
            let input = format!("PV-26A18-BC02R-X7K{bad}A");
            assert_eq!(
                only_problem(&input),
                Problem::Suffix {
                    suffix: format!("X7K{bad}A"),
                    bad
                },
                "{input}"
            );
        }
    }

    #[test]
    fn several_problems_are_all_reported() {
        let err = "PV-26M32-bc02X-00000".parse::<SerialNumber>().unwrap_err();
        let text = err.to_string();
        for part in [
            "month letter `M`",
            "board type `bc`",
            "literal `R`",
            "suffix `00000`",
        ] {
            assert!(text.contains(part), "{text} lacks {part}");
        }
    }

    #[test]
    fn distinct_generation_skips_taken_numbers() {
        let mut rng = rand::rng();
        let taken: SerialNumber = "PV-26A18-BC02R-X7KQA".parse().unwrap();
        let sns = generate_distinct(
            "BC".parse().unwrap(),
            "02".parse().unwrap(),
            date(2026, 1, 18),
            2_000,
            &mut rng,
            |sn| *sn == taken,
        )
        .unwrap();
        let unique: HashSet<_> = sns.iter().collect();
        assert_eq!(unique.len(), 2_000);
        assert!(!unique.contains(&taken));
    }

    #[test]
    fn distinct_generation_refuses_an_impossible_count() {
        let err = generate_distinct(
            "BC".parse().unwrap(),
            "02".parse().unwrap(),
            date(2026, 1, 18),
            SUFFIX_SPACE as usize,
            &mut rand::rng(),
            |_| false,
        )
        .unwrap_err();
        assert!(matches!(err, InputError::TooMany { .. }));
    }

    #[test]
    fn board_and_revision_inputs_are_checked() {
        for bad in ["B", "BCD", "bc", "B1", "", "ÄB"] {
            assert!(bad.parse::<BoardType>().is_err(), "{bad}");
        }
        for bad in ["2", "002", "O2", "", "a1"] {
            assert!(bad.parse::<Revision>().is_err(), "{bad}");
        }
    }

    fn any_date() -> impl Strategy<Value = NaiveDate> {
        (0i32..=36524).prop_map(|days| date(2000, 1, 1) + chrono::Days::new(days as u64))
    }

    fn any_board() -> impl Strategy<Value = (BoardType, Revision)> {
        ("[A-Z]{2}", "[0-9]{2}").prop_map(|(b, r)| (b.parse().unwrap(), r.parse().unwrap()))
    }

    proptest! {
        #[test]
        fn generated_numbers_round_trip((board, rev) in any_board(), day in any_date(), seed in any::<u64>()) {
            use rand::SeedableRng;
            let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
            let sn = generate(board, rev, day, &mut rng).unwrap();
            let parsed: SerialNumber = sn.as_str().parse().unwrap();
            prop_assert_eq!(&parsed, &sn);
            prop_assert_eq!(parsed.date(), day);
            prop_assert_eq!(parsed.board_type(), board);
            prop_assert_eq!(parsed.revision(), rev);
        }

        #[test]
        fn any_single_character_change_outside_the_alphabet_is_rejected(
            (board, rev) in any_board(), day in any_date(), pos in 0usize..LENGTH, c in any::<char>()
        ) {
            let sn = generate(board, rev, day, &mut rand::rng()).unwrap();
            let mut chars: Vec<char> = sn.as_str().chars().collect();
            let allowed: &str = match pos {
                0 => "P", 1 => "V", 2 | 8 | 14 => "-", 3 | 4 | 6 | 7 | 11 | 12 => "0123456789",
                5 => MONTH_LETTERS, 9 | 10 => "ABCDEFGHIJKLMNOPQRSTUVWXYZ", 13 => "R",
                _ => SUFFIX_ALPHABET,
            };
            prop_assume!(!allowed.contains(c));
            chars[pos] = c;
            let mutated: String = chars.into_iter().collect();
            prop_assert!(mutated.parse::<SerialNumber>().is_err(), "{} accepted", mutated);
        }

        #[test]
        fn arbitrary_strings_never_panic(s in ".{0,40}") {
            let _ = s.parse::<SerialNumber>();
        }

        #[test]
        fn truncated_or_extended_numbers_are_rejected(
            (board, rev) in any_board(), day in any_date(), cut in 0usize..LENGTH, extra in "[A-Z2-9]{1,3}"
        ) {
            let sn = generate(board, rev, day, &mut rand::rng()).unwrap();
            let short = &sn.as_str()[..cut];
            let is_length_problem = |e: ParseError| matches!(e.problems[..], [Problem::Length(_)]);
            prop_assert!(is_length_problem(short.parse::<SerialNumber>().unwrap_err()));
            let long = format!("{sn}{extra}");
            prop_assert!(is_length_problem(long.parse::<SerialNumber>().unwrap_err()));
        }
    }
}
