//! CAP 1.2 value types: each function takes the trimmed text of one element
//! and its path (for the error), and returns the typed value or an
//! `Invalid` error the sender can act on. Kept apart from the XML walk so
//! the rules read like the specification's table.

use super::limits::{MAX_ITEMS, MAX_POINTS, MAX_REFERENCES};
use super::{CapError, Circle, Point, Polygon, Reference};

/// A CAP enumeration (declared with `cap_enum!` in `mod.rs`).
pub(super) trait CapEnum: Sized + Copy + 'static {
    const ALL: &'static [Self];
    fn from_cap(text: &str) -> Option<Self>;
    fn as_str(self) -> &'static str;
}

/// The last segment of an element path: the element's own name.
pub(super) fn leaf_name(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// At most 40 characters of a sender's value, for quoting it back in an
/// error without echoing a megabyte.
pub(super) fn excerpt(text: &str) -> String {
    const MAX: usize = 40;
    match text.char_indices().nth(MAX) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

fn invalid(path: &str, message: String) -> CapError {
    CapError::invalid(path, message)
}

/// XML whitespace (not Unicode's): what indentation is made of.
pub(super) fn is_xml_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// The element's text without the indentation around it.
pub(super) fn trim(text: &str) -> &str {
    text.trim_matches(is_xml_space)
}

/// A value of a CAP enumeration, spelled exactly as CAP does.
pub(super) fn enumeration<T: CapEnum>(path: &str, text: &str) -> Result<T, CapError> {
    T::from_cap(text).ok_or_else(|| {
        let allowed: Vec<&str> = T::ALL.iter().map(|v| v.as_str()).collect();
        invalid(
            path,
            format!(
                "<{}> must be one of {} (got \"{}\")",
                leaf_name(path),
                allowed.join(", "),
                excerpt(text)
            ),
        )
    })
}

/// Text that must be present: not empty.
pub(super) fn required_text(path: &str, text: &str) -> Result<String, CapError> {
    if text.is_empty() {
        return Err(invalid(
            path,
            format!("<{}> must not be empty", leaf_name(path)),
        ));
    }
    Ok(text.to_owned())
}

/// `identifier` and `sender`: CAP forbids spaces, commas and restricted
/// XML characters (`<`, `&`) so they can be written in `references`.
pub(super) fn identifier(path: &str, text: &str) -> Result<String, CapError> {
    let text = required_text(path, text)?;
    if let Some(bad) = text
        .chars()
        .find(|c| c.is_whitespace() || matches!(c, ',' | '<' | '&'))
    {
        let what = match bad {
            ',' => "a comma".to_owned(),
            '<' | '&' => format!("\"{bad}\""),
            _ => "a space".to_owned(),
        };
        return Err(invalid(
            path,
            format!(
                "<{}> must not contain spaces, commas, \"<\" or \"&\"; \"{}\" contains {what}",
                leaf_name(path),
                excerpt(&text)
            ),
        ));
    }
    Ok(text)
}

/// A CAP dateTime, kept as written once checked: exactly
/// `YYYY-MM-DDThh:mm:ss±hh:mm` with a real calendar date. CAP forbids the
/// `Z` designator (UTC is written `-00:00` or `+00:00`) and fractional
/// seconds.
pub(super) fn date_time(path: &str, text: &str) -> Result<String, CapError> {
    if is_cap_date_time(text) {
        Ok(text.to_owned())
    } else {
        Err(invalid(
            path,
            format!(
                "<{}> must be a CAP dateTime like 2002-05-24T16:49:00-07:00 \
                 (numeric UTC offset, no \"Z\", no fractional seconds), got \"{}\"",
                leaf_name(path),
                excerpt(text)
            ),
        ))
    }
}

fn is_cap_date_time(text: &str) -> bool {
    let b = text.as_bytes();
    if b.len() != 25 {
        return false;
    }
    let separators_ok = b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && matches!(b[19], b'+' | b'-')
        && b[22] == b':';
    if !separators_ok {
        return false;
    }
    let num = |from: usize, to: usize| -> Option<u32> {
        b[from..to].iter().try_fold(0u32, |acc, &d| {
            d.is_ascii_digit().then(|| acc * 10 + u32::from(d - b'0'))
        })
    };
    let fields = (
        num(0, 4),
        num(5, 7),
        num(8, 10),
        num(11, 13),
        num(14, 16),
        num(17, 19),
        num(20, 22),
        num(23, 25),
    );
    let (
        Some(year),
        Some(month),
        Some(day),
        Some(hour),
        Some(minute),
        Some(second),
        Some(off_h),
        Some(off_m),
    ) = fields
    else {
        return false;
    };
    (1..=12).contains(&month)
        && (1..=days_in_month(year, month)).contains(&day)
        && hour <= 23
        && minute <= 59
        && second <= 59
        && (off_h < 14 || (off_h == 14 && off_m == 0))
        && off_m <= 59
}

fn days_in_month(year: u32, month: u32) -> u32 {
    match month {
        4 | 6 | 9 | 11 => 30,
        2 if (year % 4 == 0 && year % 100 != 0) || year % 400 == 0 => 29,
        2 => 28,
        _ => 31,
    }
}

/// `<references>`: whitespace-separated `sender,identifier,sent` triples.
pub(super) fn references(path: &str, text: &str) -> Result<Vec<Reference>, CapError> {
    let mut out = Vec::new();
    for triple in text.split(is_xml_space).filter(|t| !t.is_empty()) {
        if out.len() == MAX_REFERENCES {
            return Err(invalid(
                path,
                format!("<references> may list at most {MAX_REFERENCES} messages"),
            ));
        }
        let mut parts = triple.split(',');
        let (Some(sender), Some(identifier), Some(sent), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(invalid(
                path,
                format!(
                    "<references> must be space-separated sender,identifier,sent triples; \
                     \"{}\" is not one",
                    excerpt(triple)
                ),
            ));
        };
        out.push(Reference {
            sender: identifier_in(path, "sender", sender)?,
            identifier: identifier_in(path, "identifier", identifier)?,
            sent: reference_sent(path, sent)?,
        });
    }
    if out.is_empty() {
        return Err(invalid(path, "<references> must not be empty".to_owned()));
    }
    Ok(out)
}

fn identifier_in(path: &str, part: &str, text: &str) -> Result<String, CapError> {
    identifier(path, text).map_err(|_| {
        invalid(
            path,
            format!(
                "<references>: the {part} \"{}\" must be non-empty, without spaces, \"<\" or \"&\"",
                excerpt(text)
            ),
        )
    })
}

fn reference_sent(path: &str, text: &str) -> Result<String, CapError> {
    date_time(path, text).map_err(|_| {
        invalid(
            path,
            format!(
                "<references>: the sent time \"{}\" must be a CAP dateTime like \
                 2002-05-24T16:49:00-07:00",
                excerpt(text)
            ),
        )
    })
}

/// `<addresses>` and `<incidents>`: space-separated items, an item with
/// spaces enclosed in double quotes.
pub(super) fn quoted_list(path: &str, text: &str) -> Result<Vec<String>, CapError> {
    let mut out = Vec::new();
    let mut rest = text;
    loop {
        rest = rest.trim_start_matches(is_xml_space);
        if rest.is_empty() {
            break;
        }
        let item;
        if let Some(quoted) = rest.strip_prefix('"') {
            let Some(end) = quoted.find('"') else {
                return Err(invalid(
                    path,
                    format!("<{}> has an unclosed double quote", leaf_name(path)),
                ));
            };
            item = &quoted[..end];
            rest = &quoted[end + 1..];
        } else {
            let end = rest.find(is_xml_space).unwrap_or(rest.len());
            item = &rest[..end];
            rest = &rest[end..];
        }
        if item.is_empty() {
            continue;
        }
        if out.len() == MAX_ITEMS {
            return Err(invalid(
                path,
                format!("<{}> may list at most {MAX_ITEMS} items", leaf_name(path)),
            ));
        }
        out.push(item.to_owned());
    }
    if out.is_empty() {
        return Err(invalid(
            path,
            format!("<{}> must not be empty", leaf_name(path)),
        ));
    }
    Ok(out)
}

/// RFC 3066 language tag, e.g. `en-US`, `es-US`, `fr`.
pub(super) fn language(path: &str, text: &str) -> Result<String, CapError> {
    let mut subtags = text.split('-');
    let primary_ok = subtags
        .next()
        .is_some_and(|p| (1..=8).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_alphabetic()));
    let rest_ok =
        subtags.all(|s| (1..=8).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric()));
    if primary_ok && rest_ok {
        Ok(text.to_owned())
    } else {
        Err(invalid(
            path,
            format!(
                "<language> must be an RFC 3066 language tag such as en-US, got \"{}\"",
                excerpt(text)
            ),
        ))
    }
}

/// A finite decimal number (no `inf`, no `NaN`).
fn number(text: &str) -> Option<f64> {
    if text.is_empty()
        || !text
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'+' | b'-' | b'.' | b'e' | b'E'))
    {
        return None;
    }
    text.parse::<f64>().ok().filter(|n| n.is_finite())
}

/// `<altitude>` / `<ceiling>`: a decimal number of feet.
pub(super) fn decimal(path: &str, text: &str) -> Result<f64, CapError> {
    number(text).ok_or_else(|| {
        invalid(
            path,
            format!(
                "<{}> must be a decimal number, got \"{}\"",
                leaf_name(path),
                excerpt(text)
            ),
        )
    })
}

/// `<size>`: a whole number of bytes.
pub(super) fn size(path: &str, text: &str) -> Result<u64, CapError> {
    text.bytes()
        .all(|b| b.is_ascii_digit())
        .then(|| text.parse::<u64>().ok())
        .flatten()
        .ok_or_else(|| {
            invalid(
                path,
                format!(
                    "<size> must be a whole number of bytes, got \"{}\"",
                    excerpt(text)
                ),
            )
        })
}

/// One WGS 84 `lat,lon` pair.
fn point(path: &str, pair: &str) -> Result<Point, CapError> {
    let parsed = pair
        .split_once(',')
        .and_then(|(lat, lon)| Some((number(lat)?, number(lon)?)))
        .filter(|(lat, lon)| (-90.0..=90.0).contains(lat) && (-180.0..=180.0).contains(lon));
    match parsed {
        Some((lat, lon)) => Ok(Point { lat, lon }),
        None => Err(invalid(
            path,
            format!(
                "<{}>: \"{}\" is not a WGS 84 \"latitude,longitude\" pair \
                 (latitude -90..90, longitude -180..180)",
                leaf_name(path),
                excerpt(pair)
            ),
        )),
    }
}

/// `<polygon>`: at least four space-separated points, the first repeated
/// as the last.
pub(super) fn polygon(path: &str, text: &str) -> Result<Polygon, CapError> {
    let mut points = Vec::new();
    for pair in text.split(is_xml_space).filter(|p| !p.is_empty()) {
        if points.len() == MAX_POINTS {
            return Err(invalid(
                path,
                format!("<polygon> may have at most {MAX_POINTS} points"),
            ));
        }
        points.push(point(path, pair)?);
    }
    if points.len() < 4 {
        return Err(invalid(
            path,
            format!(
                "<polygon> needs at least 4 points (the first repeated as the last), got {}",
                points.len()
            ),
        ));
    }
    if points.first() != points.last() {
        return Err(invalid(
            path,
            "<polygon> must be closed: its last point must equal its first".to_owned(),
        ));
    }
    Ok(Polygon { points })
}

/// `<circle>`: `lat,lon radius` with the radius in kilometres.
pub(super) fn circle(path: &str, text: &str) -> Result<Circle, CapError> {
    let mut parts = text.split(is_xml_space).filter(|p| !p.is_empty());
    let bad = || {
        invalid(
            path,
            format!(
                "<circle> must be \"latitude,longitude radius\" (radius in km, 0 or more), got \"{}\"",
                excerpt(text)
            ),
        )
    };
    let (Some(center), Some(radius), None) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let center = point(path, center)?;
    let radius_km = number(radius).filter(|r| *r >= 0.0).ok_or_else(bad)?;
    Ok(Circle { center, radius_km })
}
