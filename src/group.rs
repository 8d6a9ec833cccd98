//! Recipient groups: named lists of numbers that broadcasts and CAP areas
//! address. This module holds the rules — valid names, parsing uploads into
//! validated, de-duplicated members — and the store keeps the lists
//! ([`crate::store::GroupStore`]).

use crate::text::{self, Region};

/// Longest group name.
pub const MAX_NAME_LEN: usize = 64;
/// Most members of one group.
pub const MAX_MEMBERS: usize = 1_000_000;
/// Most invalid lines reported back (the count is always exact).
pub const MAX_REPORTED: usize = 100;

/// Whether `name` is a group name: 1 to 64 of `A-Z a-z 0-9 - _ .` (the
/// names `cap_area` may return, too).
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_LEN
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why an upload is refused; nothing is stored.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UploadError {
    /// Lines (1-based, CSV) or items (0-based, JSON) that are not numbers;
    /// at most [`MAX_REPORTED`] of `count` are listed.
    #[error("{count} invalid members, e.g. {}", describe(.invalid))]
    Invalid {
        count: usize,
        invalid: Vec<(usize, String)>,
    },
    #[error("a group has at most {MAX_MEMBERS} members")]
    TooMany,
}

fn describe(invalid: &[(usize, String)]) -> String {
    invalid
        .iter()
        .take(3)
        .map(|(at, why)| format!("{at}: {why}"))
        .collect::<Vec<_>>()
        .join("; ")
}

/// Collects members one at a time, validating each, so an upload is read
/// once as it streams in and held only as the list being built.
pub struct MemberList {
    region: Option<Region>,
    members: Vec<String>,
    invalid: Vec<(usize, String)>,
    invalid_count: usize,
    too_many: bool,
}

impl MemberList {
    pub fn new(region: Option<Region>) -> MemberList {
        MemberList {
            region,
            members: Vec::new(),
            invalid: Vec::new(),
            invalid_count: 0,
            too_many: false,
        }
    }

    /// Adds the number `raw` found at `position` (a line or an index).
    pub fn push(&mut self, position: usize, raw: &str) {
        if self.members.len() >= MAX_MEMBERS {
            self.too_many = true;
            return;
        }
        match text::parse_msisdn(raw.trim(), self.region) {
            Ok(number) => self.members.push(number.into_string()),
            Err(e) => {
                self.invalid_count += 1;
                if self.invalid.len() < MAX_REPORTED {
                    let shown: String = raw.trim().chars().take(32).collect();
                    self.invalid.push((position, format!("'{shown}' {e}")));
                }
            }
        }
    }

    /// Adds one CSV line (1-based `line`): the first field is the number;
    /// blank lines and a first-line `msisdn` header are skipped.
    pub fn push_csv_line(&mut self, line: usize, text: &str) {
        let field = text
            .split(',')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches('"');
        if field.is_empty() || (line == 1 && field.eq_ignore_ascii_case("msisdn")) {
            return;
        }
        self.push(line, field);
    }

    /// The members, sorted and de-duplicated, or why the upload is refused.
    ///
    /// # Errors
    /// Any invalid member, or more than [`MAX_MEMBERS`].
    pub fn finish(mut self) -> Result<Vec<String>, UploadError> {
        if self.too_many {
            return Err(UploadError::TooMany);
        }
        if self.invalid_count > 0 {
            return Err(UploadError::Invalid {
                count: self.invalid_count,
                invalid: self.invalid,
            });
        }
        self.members.sort_unstable();
        self.members.dedup();
        Ok(self.members)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_follow_one_rule() {
        assert!(valid_name("north-district_2.a"));
        assert!(!valid_name(""));
        assert!(!valid_name("has space"));
        assert!(!valid_name(&"x".repeat(65)));
    }

    #[test]
    fn csv_skips_a_header_and_blanks_dedups_and_reports_lines() {
        let mut list = MemberList::new(None);
        for (i, line) in [
            "msisdn",
            "+447400123456",
            "",
            "+447400123456,Alice",
            "+447800123456",
        ]
        .iter()
        .enumerate()
        {
            list.push_csv_line(i + 1, line);
        }
        assert_eq!(
            list.finish().expect("valid"),
            vec!["+447400123456".to_string(), "+447800123456".to_string()]
        );
        let mut bad = MemberList::new(None);
        bad.push_csv_line(1, "+447400123456");
        bad.push_csv_line(2, "not a number");
        bad.push_csv_line(3, "07400123456");
        let Err(UploadError::Invalid { count, invalid }) = bad.finish() else {
            panic!("refused");
        };
        assert_eq!(count, 2);
        assert_eq!(invalid[0].0, 2);
        assert_eq!(invalid[1].0, 3);
    }
}
