//! The hardened XML tokenizer under the CAP parser.
//!
//! `quick-xml` never expands DTD entities, but it does hand over a DOCTYPE
//! and unknown entity references as events; this layer turns those into
//! refusals, so the parser above only ever sees elements and text:
//! - the input must be UTF-8 (a UTF-8 BOM is allowed), declare no other
//!   encoding, and contain no control character XML forbids;
//! - any `<!DOCTYPE` is refused (`Forbidden`): no internal subset, no
//!   external DTD, hence no entity bombs and no XXE;
//! - an entity reference must be one of `&lt; &gt; &amp; &apos; &quot;` or a
//!   character reference, in text and in attribute values alike;
//! - size, nesting depth, attributes and element count are bounded ([`limits`]);
//! - exactly one root element, no text outside it, and a document that
//!   ends with elements still open (truncated) is malformed.

use std::borrow::Cow;

use quick_xml::NsReader;
use quick_xml::events::{BytesDecl, BytesStart, Event};
use quick_xml::name::ResolveResult;

use super::limits::{self, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_ELEMENTS};
use super::value::{excerpt, is_xml_space};
use super::{CAP_NAMESPACE, CapError};

/// The namespace an element is in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ns {
    /// CAP 1.2's.
    Cap,
    /// Another one (a signature, an extension, CAP 1.1 ...).
    Other(String),
    /// None at all.
    None,
}

/// What the parser sees of the document.
#[derive(Debug)]
pub(super) enum Token<'i> {
    /// An element opens (`<a/>` arrives as `Start` then `End`).
    Start { name: String, ns: Ns },
    /// A piece of character data of the open element: text, CDATA or one
    /// resolved reference. One element's text may come in several pieces.
    Text(Cow<'i, str>),
    /// The open element closes.
    End,
}

/// Tokens of one document, checked as described in the module docs.
pub(super) struct Tokenizer<'i> {
    reader: NsReader<&'i [u8]>,
    depth: usize,
    elements: usize,
    root_closed: bool,
}

impl<'i> Tokenizer<'i> {
    pub(super) fn new(xml: &'i [u8]) -> Result<Self, CapError> {
        if xml.len() > MAX_DOCUMENT_BYTES {
            return Err(CapError::invalid(
                "alert",
                format!(
                    "a CAP alert may be at most {MAX_DOCUMENT_BYTES} bytes, this one is {}",
                    xml.len()
                ),
            ));
        }
        let text = std::str::from_utf8(xml).map_err(|e| {
            CapError::Malformed(format!(
                "the document is not UTF-8 (invalid byte at offset {})",
                e.valid_up_to()
            ))
        })?;
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        if let Some((at, c)) = text.char_indices().find(|&(_, c)| !is_xml_char(c)) {
            return Err(CapError::Malformed(format!(
                "character U+{:04X} at offset {at} is not allowed in XML",
                u32::from(c)
            )));
        }
        let mut reader = NsReader::from_str(text);
        let config = reader.config_mut();
        config.expand_empty_elements = true;
        config.check_end_names = true;
        config.check_comments = true;
        config.allow_dangling_amp = false;
        config.allow_unmatched_ends = false;
        Ok(Tokenizer {
            reader,
            depth: 0,
            elements: 0,
            root_closed: false,
        })
    }

    /// The next token, or `None` once the root element has closed and
    /// nothing but comments, processing instructions and whitespace followed.
    pub(super) fn next_token(&mut self) -> Result<Option<Token<'i>>, CapError> {
        loop {
            let (resolved, event) = match self.reader.read_resolved_event() {
                Ok((resolved, event)) => (namespace_of(resolved), event),
                Err(e) => return Err(self.malformed(&e)),
            };
            match event {
                Event::Start(start) => return self.start(&start, resolved).map(Some),
                Event::End(_) => {
                    self.depth = self.depth.saturating_sub(1);
                    if self.depth == 0 {
                        self.root_closed = true;
                    }
                    return Ok(Some(Token::End));
                }
                Event::Empty(_) => {
                    // `expand_empty_elements` turns these into Start + End.
                    return Err(CapError::Malformed(
                        "unexpected empty-element event".to_owned(),
                    ));
                }
                Event::Text(text) => {
                    let text = text
                        .xml10_content()
                        .map_err(|e| CapError::Malformed(format!("undecodable text: {e}")))?;
                    if let Some(token) = self.text(text)? {
                        return Ok(Some(token));
                    }
                }
                Event::CData(cdata) => {
                    let text = cdata.xml10_content().map_err(|e| {
                        CapError::Malformed(format!("undecodable CDATA section: {e}"))
                    })?;
                    if let Some(token) = self.text(text)? {
                        return Ok(Some(token));
                    }
                }
                Event::GeneralRef(reference) => {
                    let name = reference.decode().map_err(|e| {
                        CapError::Malformed(format!("undecodable entity reference: {e}"))
                    })?;
                    let text = resolve_reference(&name)?;
                    if let Some(token) = self.text(Cow::Owned(text))? {
                        return Ok(Some(token));
                    }
                }
                Event::DocType(_) => {
                    return Err(CapError::Forbidden(
                        "a <!DOCTYPE> declaration: CAP alerts must not carry a DTD or \
                         declare entities"
                            .to_owned(),
                    ));
                }
                Event::Decl(decl) => check_declaration(&decl)?,
                Event::Comment(_) | Event::PI(_) => {}
                Event::Eof => return self.end_of_document().map(|()| None),
            }
        }
    }

    fn start(&mut self, start: &BytesStart<'_>, ns: Option<Ns>) -> Result<Token<'i>, CapError> {
        if self.root_closed {
            return Err(CapError::Malformed("more than one root element".to_owned()));
        }
        let name = std::str::from_utf8(start.local_name().into_inner())
            .map_err(|_| CapError::Malformed("an element name is not UTF-8".to_owned()))?
            .to_owned();
        let Some(ns) = ns else {
            return Err(CapError::Malformed(format!(
                "the prefix of <{}> is not declared",
                excerpt(&String::from_utf8_lossy(start.name().into_inner()))
            )));
        };
        self.depth += 1;
        self.elements += 1;
        if self.depth > MAX_DEPTH {
            return Err(CapError::invalid(
                "alert",
                format!("elements may nest at most {MAX_DEPTH} deep"),
            ));
        }
        if self.elements > limits::MAX_ELEMENTS {
            return Err(CapError::invalid(
                "alert",
                format!("a CAP alert may have at most {MAX_ELEMENTS} elements"),
            ));
        }
        for (count, attribute) in start.attributes().enumerate() {
            if count == limits::MAX_ATTRIBUTES {
                return Err(CapError::invalid(
                    "alert",
                    format!(
                        "<{name}> has more than {} attributes",
                        limits::MAX_ATTRIBUTES
                    ),
                ));
            }
            let attribute = attribute
                .map_err(|e| CapError::Malformed(format!("bad attribute on <{name}>: {e}")))?;
            check_attribute_references(&attribute.value)?;
        }
        Ok(Token::Start { name, ns })
    }

    /// Text inside the root goes to the parser; outside it only whitespace
    /// is allowed.
    fn text(&self, text: Cow<'i, str>) -> Result<Option<Token<'i>>, CapError> {
        if self.depth > 0 {
            return Ok(Some(Token::Text(text)));
        }
        if text.chars().all(is_xml_space) {
            return Ok(None);
        }
        Err(CapError::Malformed(
            "text outside the root element".to_owned(),
        ))
    }

    fn end_of_document(&self) -> Result<(), CapError> {
        if self.depth > 0 {
            return Err(CapError::Malformed(format!(
                "the document ends with {} element(s) still open (truncated?)",
                self.depth
            )));
        }
        if !self.root_closed {
            return Err(CapError::Malformed(
                "the document has no root element".to_owned(),
            ));
        }
        Ok(())
    }

    fn malformed(&self, error: &quick_xml::Error) -> CapError {
        CapError::Malformed(format!(
            "{error} (at byte {})",
            self.reader.error_position()
        ))
    }
}

/// `Some(ns)` for a resolved element name, `None` for an undeclared prefix.
fn namespace_of(resolved: ResolveResult<'_>) -> Option<Ns> {
    match resolved {
        ResolveResult::Bound(ns) if ns.into_inner() == CAP_NAMESPACE.as_bytes() => Some(Ns::Cap),
        ResolveResult::Bound(ns) => Some(Ns::Other(
            String::from_utf8_lossy(ns.into_inner()).into_owned(),
        )),
        ResolveResult::Unbound => Some(Ns::None),
        ResolveResult::Unknown(_) => None,
    }
}

/// Characters XML 1.0 allows in a document.
fn is_xml_char(c: char) -> bool {
    matches!(c, '\t' | '\n' | '\r' | '\u{20}'..='\u{D7FF}' | '\u{E000}'..='\u{FFFD}' | '\u{10000}'..)
}

/// The text of `&name;`: a predefined entity or a character reference.
/// Anything else would need a DTD to mean something, and is refused.
fn resolve_reference(name: &str) -> Result<String, CapError> {
    if let Some(number) = name.strip_prefix('#') {
        let code = match number.strip_prefix('x') {
            Some(hex) if !hex.is_empty() && hex.bytes().all(|b| b.is_ascii_hexdigit()) => {
                u32::from_str_radix(hex, 16).ok()
            }
            None if !number.is_empty() && number.bytes().all(|b| b.is_ascii_digit()) => {
                number.parse::<u32>().ok()
            }
            _ => None,
        };
        return match code.and_then(char::from_u32).filter(|&c| is_xml_char(c)) {
            Some(c) => Ok(c.to_string()),
            None => Err(CapError::Malformed(format!(
                "&{};  is not a valid character reference",
                excerpt(name)
            ))),
        };
    }
    let text = match name {
        "lt" => "<",
        "gt" => ">",
        "amp" => "&",
        "apos" => "'",
        "quot" => "\"",
        other => {
            return Err(CapError::Forbidden(format!(
                "the entity reference &{};: only &lt; &gt; &amp; &apos; &quot; and \
                 character references are allowed",
                excerpt(other)
            )));
        }
    };
    Ok(text.to_owned())
}

/// Attribute values are not unescaped by `quick-xml`, so their references
/// are checked here with the same rule as text.
fn check_attribute_references(value: &[u8]) -> Result<(), CapError> {
    let mut rest = value;
    while let Some(amp) = rest.iter().position(|&b| b == b'&') {
        let after = &rest[amp + 1..];
        let Some(semi) = after.iter().position(|&b| b == b';') else {
            return Err(CapError::Malformed(
                "an attribute value contains a bare \"&\"".to_owned(),
            ));
        };
        let name = std::str::from_utf8(&after[..semi])
            .map_err(|_| CapError::Malformed("an attribute value is not UTF-8".to_owned()))?;
        resolve_reference(name)?;
        rest = &after[semi + 1..];
    }
    Ok(())
}

/// The XML declaration may name no encoding other than UTF-8: the bytes
/// were decoded as UTF-8, and a mismatch means the sender's text is wrong.
fn check_declaration(decl: &BytesDecl<'_>) -> Result<(), CapError> {
    match decl.encoding() {
        None => Ok(()),
        Some(Ok(encoding)) if encoding.eq_ignore_ascii_case(b"utf-8") => Ok(()),
        Some(Ok(encoding)) => Err(CapError::Malformed(format!(
            "only UTF-8 is accepted, the XML declaration says {}",
            excerpt(&String::from_utf8_lossy(&encoding))
        ))),
        Some(Err(e)) => Err(CapError::Malformed(format!("bad XML declaration: {e}"))),
    }
}
