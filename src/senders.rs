//! Which sender ids a caller may put in `from`.
//!
//! A recipient trusts the sender id it sees, so letting any key send as any
//! alphanumeric id (`GOV-ALERT`, another tenant's brand) is spoofing. Each
//! API key lists the ids it may use, as patterns; a key that lists none may
//! only leave `from` out (the connector's configured `source_addr`).
//! `[senders] reserved` ids (e.g. public-warning names) are usable only by
//! keys with the `broadcast` scope that also list them. Admin keys and
//! Herald itself may use any id.
//!
//! Patterns are matched ignoring ASCII case (handsets show `Gov-Alert` and
//! `GOV-ALERT` alike); `*` stands for any run of characters, so `SHOP*` or
//! `+4479111*` cover a family of ids or a number range.

use crate::auth::{Principal, Scope};
use crate::error::FieldError;

/// Longest pattern (an E.164 number with `+` and a `*`).
const MAX_PATTERN: usize = 20;

/// A list of sender-id patterns.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SenderPatterns(Vec<String>);

impl SenderPatterns {
    /// Parses patterns: letters, digits, ` `, `-`, `.`, a leading `+` and
    /// `*` wildcards, at most [`MAX_PATTERN`] characters each.
    ///
    /// # Errors
    /// The first bad pattern, described.
    pub fn parse<S: AsRef<str>>(patterns: &[S]) -> Result<SenderPatterns, String> {
        let mut out = Vec::new();
        for p in patterns {
            let p = p.as_ref().trim();
            let body = p.strip_prefix('+').unwrap_or(p);
            let ok = !body.is_empty()
                && p.len() <= MAX_PATTERN
                && body
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, ' ' | '-' | '.' | '*'));
            if !ok {
                return Err(format!(
                    "sender pattern {p:?} must be up to {MAX_PATTERN} letters, digits, ' ', '-', '.' \
                     or '*' (a number may start with '+')"
                ));
            }
            out.push(p.to_ascii_uppercase());
        }
        Ok(SenderPatterns(out))
    }

    /// The patterns, as written (upper-cased).
    pub fn as_slice(&self) -> &[String] {
        &self.0
    }

    /// Whether `sender` matches any pattern.
    pub fn matches(&self, sender: &str) -> bool {
        let sender = sender.to_ascii_uppercase();
        self.0.iter().any(|p| glob(p.as_bytes(), sender.as_bytes()))
    }
}

/// `*`-only glob match (iterative, linear in practice: patterns are short).
fn glob(pattern: &[u8], text: &[u8]) -> bool {
    let (mut p, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, t));
            p += 1;
        } else if p < pattern.len() && pattern[p] == text[t] {
            p += 1;
            t += 1;
        } else if let Some((sp, st)) = star {
            p = sp + 1;
            t = st + 1;
            star = Some((sp, st + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|&c| c == b'*')
}

/// What a principal may send as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Senders {
    /// Any sender id (admin keys, Herald's own senders).
    Any,
    /// Only these (an empty list: only the default sender).
    Only(SenderPatterns),
}

impl Default for Senders {
    fn default() -> Self {
        Senders::Only(SenderPatterns::default())
    }
}

/// Refuses a `from` the principal may not use.
///
/// # Errors
/// `forbidden_from`, naming `from`.
pub fn check(who: &Principal, from: &str, reserved: &SenderPatterns) -> Result<(), FieldError> {
    if who.has(Scope::Admin) || who.senders == Senders::Any {
        return Ok(());
    }
    if reserved.matches(from) && !who.has(Scope::Broadcast) {
        return Err(FieldError::new(
            "forbidden_from",
            format!("`from` {from:?} is reserved for keys with the 'broadcast' scope"),
        ));
    }
    match &who.senders {
        Senders::Only(own) if own.matches(from) => Ok(()),
        _ => Err(FieldError::new(
            "forbidden_from",
            format!(
                "`from` {from:?} is not among this API key's sender ids \
                 (leave `from` out to use the default sender)"
            ),
        )),
    }
}

/// Whether `who` may read an inbound message sent to `to`: admin keys and
/// Herald itself read all; a key reads those sent to a number or short
/// code among its own sender ids (with or without `+`). The default sender
/// is shared by every key, so replies to it are for admin keys only.
pub fn may_read_inbound(who: &Principal, to: &str) -> bool {
    match &who.senders {
        _ if who.has(Scope::Admin) => true,
        Senders::Any => true,
        Senders::Only(own) => {
            let bare = to.strip_prefix('+').unwrap_or(to);
            own.matches(bare) || own.matches(&format!("+{bare}"))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn patterns_match_ignoring_case_with_wildcards() {
        let p = SenderPatterns::parse(&["SHOP*", "+4479111*", "Acme"]).expect("patterns");
        for yes in ["SHOP", "shop-uk", "+447911123456", "ACME", "acme"] {
            assert!(p.matches(yes), "{yes}");
        }
        for no in ["MYSHOP", "+447811123456", "ACMEX", "GOV-ALERT"] {
            assert!(!p.matches(no), "{no}");
        }
        assert!(SenderPatterns::parse(&["a\u{7}"]).is_err());
        assert!(SenderPatterns::parse(&[""]).is_err());
    }
}
