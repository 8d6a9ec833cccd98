//! The walk over the token stream: a stack of open CAP elements (frames),
//! elements of other namespaces skipped whole, text collected only where
//! CAP has text. Memory is bounded by the stack depth plus the values
//! being built; there is no generic DOM.

use super::build::{Closed, Frame, join};
use super::limits::MAX_TEXT_BYTES;
use super::value::is_xml_space;
use super::xml::{Ns, Token, Tokenizer};
use super::{Alert, CAP_NAMESPACE, CapError};

/// Parses and validates one CAP 1.2 `<alert>` document.
///
/// `Err` says why it was refused: [`CapError::Malformed`] (not XML, not
/// UTF-8, truncated), [`CapError::Forbidden`] (DOCTYPE, unknown entity) or
/// [`CapError::Invalid`] (XML but not valid CAP 1.2, naming the element).
pub fn parse(xml: &[u8]) -> Result<Alert, CapError> {
    let mut tokens = Tokenizer::new(xml)?;
    let mut walk = Walk::default();
    while let Some(token) = tokens.next_token()? {
        walk.token(token)?;
    }
    walk.alert
        .map(|alert| *alert)
        .ok_or_else(|| CapError::Malformed("the document has no root element".to_owned()))
}

#[derive(Default)]
struct Walk {
    /// Open CAP elements, `alert` at the bottom.
    stack: Vec<Frame>,
    /// Depth inside an element of another namespace, which is ignored with
    /// everything in it (0: not inside one).
    skip: usize,
    alert: Option<Box<Alert>>,
}

impl Walk {
    fn token(&mut self, token: Token<'_>) -> Result<(), CapError> {
        match token {
            Token::Start { name, ns } => self.start(name, ns),
            Token::Text(text) => self.text(&text),
            Token::End => self.end(),
        }
    }

    /// The path of the innermost open element, as `CapError` names it.
    fn path(&self) -> String {
        self.stack
            .iter()
            .skip(1)
            .fold("alert".to_owned(), |path, frame| join(&path, frame.name()))
    }

    fn start(&mut self, name: String, ns: Ns) -> Result<(), CapError> {
        if self.skip > 0 {
            self.skip += 1;
            return Ok(());
        }
        let Some(top) = self.stack.last() else {
            return self.root(name, ns);
        };
        if let Frame::Leaf(leaf, _) = top {
            return Err(CapError::invalid(
                self.path(),
                format!("<{leaf}> must contain only text, not a <{name}> element"),
            ));
        }
        if ns != Ns::Cap {
            self.skip = 1;
            return Ok(());
        }
        match top.child(&name) {
            Some(frame) => {
                self.stack.push(frame);
                Ok(())
            }
            None => {
                let parent = top.name();
                Err(CapError::invalid(
                    join(&self.path(), &name),
                    format!("<{name}> is not a CAP 1.2 element of <{parent}>"),
                ))
            }
        }
    }

    fn root(&mut self, name: String, ns: Ns) -> Result<(), CapError> {
        if name == "alert" && ns == Ns::Cap {
            self.stack.push(Frame::alert());
            return Ok(());
        }
        let found = match ns {
            Ns::Cap => format!("<{name}> in the CAP 1.2 namespace"),
            Ns::Other(uri) => format!("<{name}> in namespace {uri}"),
            Ns::None => format!("<{name}> in no namespace"),
        };
        Err(CapError::invalid(
            "alert",
            format!("the root element must be <alert> in namespace {CAP_NAMESPACE}; found {found}"),
        ))
    }

    fn text(&mut self, text: &str) -> Result<(), CapError> {
        if self.skip > 0 {
            return Ok(());
        }
        let message = match self.stack.last_mut() {
            None => return Ok(()),
            Some(Frame::Leaf(name, collected)) => {
                if collected.len() + text.len() <= MAX_TEXT_BYTES {
                    collected.push_str(text);
                    return Ok(());
                }
                format!("<{name}> may hold at most {MAX_TEXT_BYTES} bytes of text")
            }
            Some(frame) => {
                if text.chars().all(is_xml_space) {
                    return Ok(());
                }
                format!(
                    "<{}> must not contain text outside its child elements",
                    frame.name()
                )
            }
        };
        Err(CapError::invalid(self.path(), message))
    }

    fn end(&mut self) -> Result<(), CapError> {
        if self.skip > 0 {
            self.skip -= 1;
            return Ok(());
        }
        let path = self.path();
        let Some(frame) = self.stack.pop() else {
            return Err(CapError::Malformed("unbalanced end tag".to_owned()));
        };
        let closed = frame.close(&path)?;
        match (self.stack.last_mut(), closed) {
            (Some(parent), closed) => parent.accept(closed, &path),
            (None, Closed::Alert(alert)) => {
                self.alert = Some(alert);
                Ok(())
            }
            (None, _) => Err(CapError::invalid(
                "alert",
                "the root element must be <alert>",
            )),
        }
    }
}
