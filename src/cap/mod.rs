//! OASIS Common Alerting Protocol 1.2: parse and validate one `<alert>`.
//!
//! Herald turns a CAP alert (`POST /v1/broadcasts/cap`) into an emergency
//! broadcast, so this module is the boundary between an untrusted XML
//! document and the broadcast: [`parse`] either returns an [`Alert`] whose
//! every field already satisfies CAP 1.2, or a [`CapError`] that says which
//! element is wrong. Nothing here does I/O; the HTTP endpoint and the
//! broadcast live elsewhere.
//!
//! Layout, one job per file:
//! - `xml` (private): the hardened tokenizer over `quick-xml` —
//!   UTF-8 only, no DOCTYPE, no entity other than the five predefined ones and
//!   character references, bounded depth, element count and size.
//! - `parse` (private): the walk over the token stream, one frame per
//!   open CAP element, other namespaces skipped, no generic DOM.
//! - `build` (private): what each CAP element allows and requires.
//! - `value` (private): the CAP value types (enumerations, dateTime,
//!   identifiers, references, polygons, circles, lists).
//!
//! Why so strict: a CAP alert may page every phone in a region. A document
//! we do not fully understand is refused with a precise message rather than
//! guessed at.

mod build;
mod parse;
mod value;
mod xml;

#[cfg(test)]
mod tests;

pub use parse::parse;

/// The CAP 1.2 namespace; the root `<alert>` must be in it (CAP 1.1's
/// `urn:oasis:names:tc:emergency:cap:1.1` is refused).
pub const CAP_NAMESPACE: &str = "urn:oasis:names:tc:emergency:cap:1.2";

/// Bounds on everything a caller controls. A CAP alert is small (the
/// specification's examples are under 3 KiB); these leave ample room for
/// real alerts with detailed polygons while keeping a hostile document's
/// cost linear and small.
pub mod limits {
    /// Largest document accepted, in bytes.
    pub const MAX_DOCUMENT_BYTES: usize = 1024 * 1024;
    /// Deepest element nesting (CAP itself needs 5; signatures a few more).
    pub const MAX_DEPTH: usize = 32;
    /// Attributes of one element (CAP uses none; signatures a few).
    pub const MAX_ATTRIBUTES: usize = 64;
    /// Elements in the whole document, foreign ones included.
    pub const MAX_ELEMENTS: usize = 10_000;
    /// Text of one element, in bytes.
    pub const MAX_TEXT_BYTES: usize = 64 * 1024;
    /// `<info>` blocks in one alert (one per language, typically).
    pub const MAX_INFOS: usize = 32;
    /// `<area>` blocks in one `<info>`.
    pub const MAX_AREAS: usize = 64;
    /// `<polygon>` and, separately, `<circle>` elements in one `<area>`.
    pub const MAX_SHAPES: usize = 64;
    /// Points of one polygon.
    pub const MAX_POINTS: usize = 2048;
    /// Triples in `<references>`.
    pub const MAX_REFERENCES: usize = 256;
    /// Any other repeated element or list item (codes, categories,
    /// parameters, geocodes, addresses, ...).
    pub const MAX_ITEMS: usize = 256;
}

/// One CAP 1.2 alert message, validated.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Unique id of this message at its sender (no spaces, commas, `<`, `&`).
    pub identifier: String,
    /// Originator id (same character rules as `identifier`).
    pub sender: String,
    /// Time the message was sent, as written: CAP dateTime
    /// `YYYY-MM-DDThh:mm:ss±hh:mm`, already checked.
    pub sent: String,
    pub status: Status,
    pub msg_type: MsgType,
    pub scope: Scope,
    pub source: Option<String>,
    /// Present (and non-empty) exactly when required: `scope` is `Restricted`.
    pub restriction: Option<String>,
    /// `<addresses>` split on spaces, double-quoted items kept whole;
    /// non-empty when `scope` is `Private`.
    pub addresses: Vec<String>,
    pub codes: Vec<String>,
    pub note: Option<String>,
    pub references: Vec<Reference>,
    /// `<incidents>` split like `addresses`.
    pub incidents: Vec<String>,
    pub infos: Vec<Info>,
}

/// One earlier message an Update, Cancel, Ack or Error refers to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    pub sender: String,
    pub identifier: String,
    /// CAP dateTime as written, already checked.
    pub sent: String,
}

/// The `<info>` block: the event and what the public should do, in one
/// language.
#[derive(Debug, Clone, PartialEq)]
pub struct Info {
    /// RFC 3066 language tag; `en-US` when the element is absent (CAP's
    /// default).
    pub language: String,
    /// At least one.
    pub categories: Vec<Category>,
    pub event: String,
    pub response_types: Vec<ResponseType>,
    pub urgency: Urgency,
    pub severity: Severity,
    pub certainty: Certainty,
    pub audience: Option<String>,
    pub event_codes: Vec<NamedValue>,
    pub effective: Option<String>,
    pub onset: Option<String>,
    pub expires: Option<String>,
    pub sender_name: Option<String>,
    pub headline: Option<String>,
    pub description: Option<String>,
    pub instruction: Option<String>,
    pub web: Option<String>,
    pub contact: Option<String>,
    pub parameters: Vec<NamedValue>,
    pub resources: Vec<Resource>,
    pub areas: Vec<Area>,
}

impl Info {
    /// The text to broadcast by SMS for this block: headline, description
    /// and instruction, each on its own line, absent or empty ones skipped.
    /// When all three are absent the event name stands in, so a broadcast
    /// never goes out empty.
    pub fn text(&self) -> String {
        let parts: Vec<&str> = [&self.headline, &self.description, &self.instruction]
            .into_iter()
            .filter_map(|part| part.as_deref())
            .filter(|part| !part.is_empty())
            .collect();
        if parts.is_empty() {
            self.event.clone()
        } else {
            parts.join("\n")
        }
    }
}

/// A `<valueName>`/`<value>` pair: `<eventCode>`, `<parameter>`, `<geocode>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamedValue {
    pub value_name: String,
    pub value: String,
}

/// A `<resource>`: a file that supplements the info (image, audio, ...).
/// Herald does not fetch it; it is kept for the record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Resource {
    pub resource_desc: String,
    pub mime_type: String,
    pub size: Option<u64>,
    pub uri: Option<String>,
    pub deref_uri: Option<String>,
    pub digest: Option<String>,
}

/// The `<area>` the info applies to.
#[derive(Debug, Clone, PartialEq)]
pub struct Area {
    pub area_desc: String,
    pub polygons: Vec<Polygon>,
    pub circles: Vec<Circle>,
    pub geocodes: Vec<NamedValue>,
    /// Feet above mean sea level (WGS 84).
    pub altitude: Option<f64>,
    /// Feet; only with `altitude`.
    pub ceiling: Option<f64>,
}

/// A WGS 84 point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub lat: f64,
    pub lon: f64,
}

/// A closed polygon: at least four points, the first equal to the last.
#[derive(Debug, Clone, PartialEq)]
pub struct Polygon {
    pub points: Vec<Point>,
}

/// A circle: centre and radius in kilometres.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Circle {
    pub center: Point,
    pub radius_km: f64,
}

/// Declares a CAP enumeration: the Rust variants, their CAP spelling, and
/// the list quoted in error messages, from one table.
macro_rules! cap_enum {
    ($(#[$meta:meta])* $name:ident { $($variant:ident = $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum $name { $($variant),+ }

        impl $name {
            /// Every value, in the specification's order.
            pub const ALL: &'static [$name] = &[$($name::$variant),+];

            /// The value as CAP spells it.
            pub fn as_str(self) -> &'static str {
                match self { $($name::$variant => $text),+ }
            }

            /// The value for its exact (case-sensitive) CAP spelling.
            pub fn from_cap(text: &str) -> Option<Self> {
                match text { $($text => Some($name::$variant),)+ _ => None }
            }
        }

        impl value::CapEnum for $name {
            const ALL: &'static [Self] = $name::ALL;
            fn from_cap(text: &str) -> Option<Self> {
                $name::from_cap(text)
            }
            fn as_str(self) -> &'static str {
                $name::as_str(self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}
cap_enum! {
    /// `<status>`: who the message is for.
    Status { Actual = "Actual", Exercise = "Exercise", System = "System", Test = "Test", Draft = "Draft" }
}

impl Status {
    /// Whether a message with this status may reach the public: only
    /// `Actual` ones. Exercises, tests, system messages and drafts must
    /// never page real phones.
    pub fn reaches_public(self) -> bool {
        matches!(self, Status::Actual)
    }
}

cap_enum! {
    /// `<msgType>`: what the message does.
    MsgType { Alert = "Alert", Update = "Update", Cancel = "Cancel", Ack = "Ack", Error = "Error" }
}

cap_enum! {
    /// `<scope>`: who may receive the message.
    Scope { Public = "Public", Restricted = "Restricted", Private = "Private" }
}

cap_enum! {
    /// `<category>` of the event.
    Category {
        Geo = "Geo", Met = "Met", Safety = "Safety", Security = "Security",
        Rescue = "Rescue", Fire = "Fire", Health = "Health", Env = "Env",
        Transport = "Transport", Infra = "Infra", Cbrne = "CBRNE", Other = "Other",
    }
}

cap_enum! {
    /// `<responseType>`: the action recommended.
    ResponseType {
        Shelter = "Shelter", Evacuate = "Evacuate", Prepare = "Prepare",
        Execute = "Execute", Avoid = "Avoid", Monitor = "Monitor",
        Assess = "Assess", AllClear = "AllClear", None = "None",
    }
}

cap_enum! {
    /// `<urgency>`: how soon to act.
    Urgency { Immediate = "Immediate", Expected = "Expected", Future = "Future", Past = "Past", Unknown = "Unknown" }
}

cap_enum! {
    /// `<severity>`: how bad the threat is.
    Severity { Extreme = "Extreme", Severe = "Severe", Moderate = "Moderate", Minor = "Minor", Unknown = "Unknown" }
}

cap_enum! {
    /// `<certainty>`: how likely the event is.
    Certainty { Observed = "Observed", Likely = "Likely", Possible = "Possible", Unlikely = "Unlikely", Unknown = "Unknown" }
}

/// Why a document was refused. The API maps each kind to one status and
/// code ([`CapError::code`]); the Display text is meant for the sender.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CapError {
    /// Not well-formed XML, truncated, or not UTF-8 → 400 `malformed_xml`.
    #[error("malformed XML: {0}")]
    Malformed(String),
    /// A DOCTYPE / DTD / entity declaration, or an entity reference other
    /// than the five predefined XML ones and character references → 400
    /// `dtd_not_allowed`.
    #[error("not allowed in a CAP alert: {0}")]
    Forbidden(String),
    /// Well-formed but not valid CAP 1.2 → 422; `element` names the
    /// offending element as a path below `<alert>` (e.g. `info/urgency`),
    /// or `alert` for the document as a whole.
    #[error("{message}")]
    Invalid { element: String, message: String },
}

impl CapError {
    /// The stable machine-readable code of the API answer.
    pub fn code(&self) -> &'static str {
        match self {
            CapError::Malformed(_) => "malformed_xml",
            CapError::Forbidden(_) => "dtd_not_allowed",
            CapError::Invalid { .. } => "invalid_cap",
        }
    }

    /// The offending element, for `Invalid`.
    pub fn element(&self) -> Option<&str> {
        match self {
            CapError::Invalid { element, .. } => Some(element),
            _ => None,
        }
    }

    pub(crate) fn invalid(element: impl Into<String>, message: impl Into<String>) -> Self {
        CapError::Invalid {
            element: element.into(),
            message: message.into(),
        }
    }
}
