//! One frame per open CAP element: which children it allows, how it takes
//! a closed child, and what it must hold when it closes (required elements,
//! "at most once", the scope rules). The XML walk in `parse` drives them.

use super::limits::{MAX_AREAS, MAX_INFOS, MAX_ITEMS, MAX_SHAPES};
use super::value::{self, leaf_name};
use super::{
    Alert, Area, CapError, Category, Certainty, Info, MsgType, NamedValue, Reference, Resource,
    ResponseType, Scope, Severity, Status, Urgency,
};

const ALERT_LEAVES: &[&str] = &[
    "identifier",
    "sender",
    "sent",
    "status",
    "msgType",
    "source",
    "scope",
    "restriction",
    "addresses",
    "code",
    "note",
    "references",
    "incidents",
];
const INFO_LEAVES: &[&str] = &[
    "language",
    "category",
    "event",
    "responseType",
    "urgency",
    "severity",
    "certainty",
    "audience",
    "effective",
    "onset",
    "expires",
    "senderName",
    "headline",
    "description",
    "instruction",
    "web",
    "contact",
];
const RESOURCE_LEAVES: &[&str] = &[
    "resourceDesc",
    "mimeType",
    "size",
    "uri",
    "derefUri",
    "digest",
];
const AREA_LEAVES: &[&str] = &["areaDesc", "polygon", "circle", "altitude", "ceiling"];
const PAIR_LEAVES: &[&str] = &["valueName", "value"];

/// The three `<valueName>`/`<value>` elements.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum PairKind {
    EventCode,
    Parameter,
    Geocode,
}

impl PairKind {
    fn name(self) -> &'static str {
        match self {
            PairKind::EventCode => "eventCode",
            PairKind::Parameter => "parameter",
            PairKind::Geocode => "geocode",
        }
    }
}

/// An open CAP element.
pub(super) enum Frame {
    Alert(Box<AlertDraft>),
    Info(Box<InfoDraft>),
    Area(AreaDraft),
    Resource(ResourceDraft),
    Pair(PairKind, PairDraft),
    /// A simple element collecting its text.
    Leaf(&'static str, String),
}

/// A closed CAP element, handed to its parent.
pub(super) enum Closed {
    Alert(Box<Alert>),
    Info(Box<Info>),
    Area(Area),
    Resource(Resource),
    Pair(PairKind, NamedValue),
    Leaf(&'static str, String),
}

/// `child` below `parent`, both paths as in `CapError::Invalid::element`.
pub(super) fn join(parent: &str, child: &str) -> String {
    if parent == "alert" {
        child.to_owned()
    } else {
        format!("{parent}/{child}")
    }
}

fn leaf(names: &[&'static str], name: &str) -> Option<Frame> {
    names
        .iter()
        .find(|known| **known == name)
        .map(|known| Frame::Leaf(known, String::new()))
}

fn missing(parent_path: &str, child: &str) -> CapError {
    let parent = leaf_name(parent_path);
    CapError::invalid(
        join(parent_path, child),
        format!("<{child}> is required in <{parent}>"),
    )
}

fn once<T>(slot: &mut Option<T>, value: T, path: &str) -> Result<(), CapError> {
    if slot.is_some() {
        return Err(CapError::invalid(
            path,
            format!("<{}> may appear only once", leaf_name(path)),
        ));
    }
    *slot = Some(value);
    Ok(())
}

fn push_bounded<T>(list: &mut Vec<T>, item: T, max: usize, path: &str) -> Result<(), CapError> {
    if list.len() >= max {
        return Err(CapError::invalid(
            path,
            format!(
                "at most {max} <{}> elements are allowed here",
                leaf_name(path)
            ),
        ));
    }
    list.push(item);
    Ok(())
}

fn required<T>(slot: Option<T>, parent_path: &str, child: &str) -> Result<T, CapError> {
    slot.ok_or_else(|| missing(parent_path, child))
}

impl Frame {
    pub(super) fn alert() -> Frame {
        Frame::Alert(Box::default())
    }

    /// The element's CAP name.
    pub(super) fn name(&self) -> &'static str {
        match self {
            Frame::Alert(_) => "alert",
            Frame::Info(_) => "info",
            Frame::Area(_) => "area",
            Frame::Resource(_) => "resource",
            Frame::Pair(kind, _) => kind.name(),
            Frame::Leaf(name, _) => name,
        }
    }

    /// The frame the CAP element `name` opens inside this one; `None` when
    /// CAP 1.2 has no such child here.
    pub(super) fn child(&self, name: &str) -> Option<Frame> {
        match self {
            Frame::Alert(_) if name == "info" => Some(Frame::Info(Box::default())),
            Frame::Alert(_) => leaf(ALERT_LEAVES, name),
            Frame::Info(_) => match name {
                "eventCode" => Some(Frame::Pair(PairKind::EventCode, PairDraft::default())),
                "parameter" => Some(Frame::Pair(PairKind::Parameter, PairDraft::default())),
                "resource" => Some(Frame::Resource(ResourceDraft::default())),
                "area" => Some(Frame::Area(AreaDraft::default())),
                _ => leaf(INFO_LEAVES, name),
            },
            Frame::Area(_) if name == "geocode" => {
                Some(Frame::Pair(PairKind::Geocode, PairDraft::default()))
            }
            Frame::Area(_) => leaf(AREA_LEAVES, name),
            Frame::Resource(_) => leaf(RESOURCE_LEAVES, name),
            Frame::Pair(..) => leaf(PAIR_LEAVES, name),
            Frame::Leaf(..) => None,
        }
    }

    /// Checks what this element must hold and turns it into its value;
    /// `path` is this element's path.
    pub(super) fn close(self, path: &str) -> Result<Closed, CapError> {
        Ok(match self {
            Frame::Alert(draft) => Closed::Alert(Box::new(draft.finish(path)?)),
            Frame::Info(draft) => Closed::Info(Box::new(draft.finish(path)?)),
            Frame::Area(draft) => Closed::Area(draft.finish(path)?),
            Frame::Resource(draft) => Closed::Resource(draft.finish(path)?),
            Frame::Pair(kind, draft) => Closed::Pair(kind, draft.finish(path)?),
            Frame::Leaf(name, text) => Closed::Leaf(name, value::trim(&text).to_owned()),
        })
    }

    /// Takes a closed child; `path` is the child's path.
    pub(super) fn accept(&mut self, child: Closed, path: &str) -> Result<(), CapError> {
        match (self, child) {
            (Frame::Alert(alert), Closed::Leaf(name, text)) => alert.set(name, &text, path),
            (Frame::Alert(alert), Closed::Info(info)) => {
                push_bounded(&mut alert.infos, *info, MAX_INFOS, path)
            }
            (Frame::Info(info), Closed::Leaf(name, text)) => info.set(name, &text, path),
            (Frame::Info(info), Closed::Pair(PairKind::EventCode, pair)) => {
                push_bounded(&mut info.event_codes, pair, MAX_ITEMS, path)
            }
            (Frame::Info(info), Closed::Pair(PairKind::Parameter, pair)) => {
                push_bounded(&mut info.parameters, pair, MAX_ITEMS, path)
            }
            (Frame::Info(info), Closed::Resource(resource)) => {
                push_bounded(&mut info.resources, resource, MAX_ITEMS, path)
            }
            (Frame::Info(info), Closed::Area(area)) => {
                push_bounded(&mut info.areas, area, MAX_AREAS, path)
            }
            (Frame::Area(area), Closed::Leaf(name, text)) => area.set(name, &text, path),
            (Frame::Area(area), Closed::Pair(PairKind::Geocode, pair)) => {
                push_bounded(&mut area.geocodes, pair, MAX_ITEMS, path)
            }
            (Frame::Resource(resource), Closed::Leaf(name, text)) => {
                resource.set(name, &text, path)
            }
            (Frame::Pair(_, pair), Closed::Leaf(name, text)) => pair.set(name, text, path),
            // `child` only opens the frames listed above, so this is a
            // broken invariant rather than a sender's mistake; still an
            // error, never a panic.
            (_, _) => Err(CapError::invalid(
                path,
                format!("<{}> is not allowed here", leaf_name(path)),
            )),
        }
    }
}

#[derive(Default)]
pub(super) struct AlertDraft {
    identifier: Option<String>,
    sender: Option<String>,
    sent: Option<String>,
    status: Option<Status>,
    msg_type: Option<MsgType>,
    scope: Option<Scope>,
    source: Option<String>,
    restriction: Option<String>,
    addresses: Option<Vec<String>>,
    codes: Vec<String>,
    note: Option<String>,
    references: Option<Vec<Reference>>,
    incidents: Option<Vec<String>>,
    infos: Vec<Info>,
}

impl AlertDraft {
    fn set(&mut self, name: &str, text: &str, path: &str) -> Result<(), CapError> {
        match name {
            "identifier" => once(&mut self.identifier, value::identifier(path, text)?, path),
            "sender" => once(&mut self.sender, value::identifier(path, text)?, path),
            "sent" => once(&mut self.sent, value::date_time(path, text)?, path),
            "status" => once(&mut self.status, value::enumeration(path, text)?, path),
            "msgType" => once(&mut self.msg_type, value::enumeration(path, text)?, path),
            "scope" => once(&mut self.scope, value::enumeration(path, text)?, path),
            "source" => once(&mut self.source, text.to_owned(), path),
            "restriction" => once(&mut self.restriction, text.to_owned(), path),
            "addresses" => once(&mut self.addresses, value::quoted_list(path, text)?, path),
            "code" => push_bounded(
                &mut self.codes,
                value::required_text(path, text)?,
                MAX_ITEMS,
                path,
            ),
            "note" => once(&mut self.note, text.to_owned(), path),
            "references" => once(&mut self.references, value::references(path, text)?, path),
            "incidents" => once(&mut self.incidents, value::quoted_list(path, text)?, path),
            _ => Err(CapError::invalid(
                path,
                format!("<{name}> is not allowed here"),
            )),
        }
    }

    fn finish(self, path: &str) -> Result<Alert, CapError> {
        let identifier = required(self.identifier, path, "identifier")?;
        let sender = required(self.sender, path, "sender")?;
        let sent = required(self.sent, path, "sent")?;
        let status = required(self.status, path, "status")?;
        let msg_type = required(self.msg_type, path, "msgType")?;
        let scope = required(self.scope, path, "scope")?;
        let restriction = self.restriction.filter(|r| !r.is_empty());
        if scope == Scope::Restricted && restriction.is_none() {
            return Err(CapError::invalid(
                join(path, "restriction"),
                "<restriction> is required (and must not be empty) when <scope> is Restricted",
            ));
        }
        if scope == Scope::Private && self.addresses.is_none() {
            return Err(CapError::invalid(
                join(path, "addresses"),
                "<addresses> is required when <scope> is Private",
            ));
        }
        Ok(Alert {
            identifier,
            sender,
            sent,
            status,
            msg_type,
            scope,
            source: self.source,
            restriction,
            addresses: self.addresses.unwrap_or_default(),
            codes: self.codes,
            note: self.note,
            references: self.references.unwrap_or_default(),
            incidents: self.incidents.unwrap_or_default(),
            infos: self.infos,
        })
    }
}

#[derive(Default)]
pub(super) struct InfoDraft {
    language: Option<String>,
    categories: Vec<Category>,
    event: Option<String>,
    response_types: Vec<ResponseType>,
    urgency: Option<Urgency>,
    severity: Option<Severity>,
    certainty: Option<Certainty>,
    audience: Option<String>,
    event_codes: Vec<NamedValue>,
    effective: Option<String>,
    onset: Option<String>,
    expires: Option<String>,
    sender_name: Option<String>,
    headline: Option<String>,
    description: Option<String>,
    instruction: Option<String>,
    web: Option<String>,
    contact: Option<String>,
    parameters: Vec<NamedValue>,
    resources: Vec<Resource>,
    areas: Vec<Area>,
}

impl InfoDraft {
    fn set(&mut self, name: &str, text: &str, path: &str) -> Result<(), CapError> {
        let owned = || text.to_owned();
        match name {
            "language" => once(&mut self.language, value::language(path, text)?, path),
            "category" => push_bounded(
                &mut self.categories,
                value::enumeration(path, text)?,
                MAX_ITEMS,
                path,
            ),
            "event" => once(&mut self.event, value::required_text(path, text)?, path),
            "responseType" => push_bounded(
                &mut self.response_types,
                value::enumeration(path, text)?,
                MAX_ITEMS,
                path,
            ),
            "urgency" => once(&mut self.urgency, value::enumeration(path, text)?, path),
            "severity" => once(&mut self.severity, value::enumeration(path, text)?, path),
            "certainty" => once(&mut self.certainty, value::enumeration(path, text)?, path),
            "audience" => once(&mut self.audience, owned(), path),
            "effective" => once(&mut self.effective, value::date_time(path, text)?, path),
            "onset" => once(&mut self.onset, value::date_time(path, text)?, path),
            "expires" => once(&mut self.expires, value::date_time(path, text)?, path),
            "senderName" => once(&mut self.sender_name, owned(), path),
            "headline" => once(&mut self.headline, owned(), path),
            "description" => once(&mut self.description, owned(), path),
            "instruction" => once(&mut self.instruction, owned(), path),
            "web" => once(&mut self.web, owned(), path),
            "contact" => once(&mut self.contact, owned(), path),
            _ => Err(CapError::invalid(
                path,
                format!("<{name}> is not allowed here"),
            )),
        }
    }

    fn finish(self, path: &str) -> Result<Info, CapError> {
        if self.categories.is_empty() {
            return Err(CapError::invalid(
                join(path, "category"),
                "<info> needs at least one <category>",
            ));
        }
        Ok(Info {
            language: self.language.unwrap_or_else(|| "en-US".to_owned()),
            categories: self.categories,
            event: required(self.event, path, "event")?,
            response_types: self.response_types,
            urgency: required(self.urgency, path, "urgency")?,
            severity: required(self.severity, path, "severity")?,
            certainty: required(self.certainty, path, "certainty")?,
            audience: self.audience,
            event_codes: self.event_codes,
            effective: self.effective,
            onset: self.onset,
            expires: self.expires,
            sender_name: self.sender_name,
            headline: self.headline,
            description: self.description,
            instruction: self.instruction,
            web: self.web,
            contact: self.contact,
            parameters: self.parameters,
            resources: self.resources,
            areas: self.areas,
        })
    }
}

#[derive(Default)]
pub(super) struct AreaDraft {
    area_desc: Option<String>,
    polygons: Vec<super::Polygon>,
    circles: Vec<super::Circle>,
    geocodes: Vec<NamedValue>,
    altitude: Option<f64>,
    ceiling: Option<f64>,
}

impl AreaDraft {
    fn set(&mut self, name: &str, text: &str, path: &str) -> Result<(), CapError> {
        match name {
            "areaDesc" => once(&mut self.area_desc, value::required_text(path, text)?, path),
            "polygon" => push_bounded(
                &mut self.polygons,
                value::polygon(path, text)?,
                MAX_SHAPES,
                path,
            ),
            "circle" => push_bounded(
                &mut self.circles,
                value::circle(path, text)?,
                MAX_SHAPES,
                path,
            ),
            "altitude" => once(&mut self.altitude, value::decimal(path, text)?, path),
            "ceiling" => once(&mut self.ceiling, value::decimal(path, text)?, path),
            _ => Err(CapError::invalid(
                path,
                format!("<{name}> is not allowed here"),
            )),
        }
    }

    fn finish(self, path: &str) -> Result<Area, CapError> {
        let area_desc = required(self.area_desc, path, "areaDesc")?;
        if self.ceiling.is_some() && self.altitude.is_none() {
            return Err(CapError::invalid(
                join(path, "ceiling"),
                "<ceiling> may only be given together with <altitude>",
            ));
        }
        Ok(Area {
            area_desc,
            polygons: self.polygons,
            circles: self.circles,
            geocodes: self.geocodes,
            altitude: self.altitude,
            ceiling: self.ceiling,
        })
    }
}

#[derive(Default)]
pub(super) struct ResourceDraft {
    resource_desc: Option<String>,
    mime_type: Option<String>,
    size: Option<u64>,
    uri: Option<String>,
    deref_uri: Option<String>,
    digest: Option<String>,
}

impl ResourceDraft {
    fn set(&mut self, name: &str, text: &str, path: &str) -> Result<(), CapError> {
        match name {
            "resourceDesc" => once(
                &mut self.resource_desc,
                value::required_text(path, text)?,
                path,
            ),
            "mimeType" => once(&mut self.mime_type, value::required_text(path, text)?, path),
            "size" => once(&mut self.size, value::size(path, text)?, path),
            "uri" => once(&mut self.uri, text.to_owned(), path),
            "derefUri" => once(&mut self.deref_uri, text.to_owned(), path),
            "digest" => once(&mut self.digest, text.to_owned(), path),
            _ => Err(CapError::invalid(
                path,
                format!("<{name}> is not allowed here"),
            )),
        }
    }

    fn finish(self, path: &str) -> Result<Resource, CapError> {
        Ok(Resource {
            resource_desc: required(self.resource_desc, path, "resourceDesc")?,
            mime_type: required(self.mime_type, path, "mimeType")?,
            size: self.size,
            uri: self.uri,
            deref_uri: self.deref_uri,
            digest: self.digest,
        })
    }
}

#[derive(Default)]
pub(super) struct PairDraft {
    value_name: Option<String>,
    value: Option<String>,
}

impl PairDraft {
    fn set(&mut self, name: &str, text: String, path: &str) -> Result<(), CapError> {
        match name {
            "valueName" => once(
                &mut self.value_name,
                value::required_text(path, &text)?,
                path,
            ),
            // An empty value is allowed: real feeds send `<value></value>`.
            "value" => once(&mut self.value, text, path),
            _ => Err(CapError::invalid(
                path,
                format!("<{name}> is not allowed here"),
            )),
        }
    }

    fn finish(self, path: &str) -> Result<NamedValue, CapError> {
        Ok(NamedValue {
            value_name: required(self.value_name, path, "valueName")?,
            value: required(self.value, path, "value")?,
        })
    }
}
