//! CAP parser tests: the four OASIS CAP 1.2 Appendix A examples, a Cancel,
//! hostile documents, and every validation rule (each test fails if its
//! rule is dropped).

use super::limits::{MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_ELEMENTS, MAX_TEXT_BYTES};
use super::*;

const HOMELAND: &str = include_str!("../../tests/fixtures/cap/a1-homeland-security.xml");
const THUNDERSTORM: &str = include_str!("../../tests/fixtures/cap/a2-severe-thunderstorm.xml");
const EARTHQUAKE: &str = include_str!("../../tests/fixtures/cap/a3-earthquake-update.xml");
const AMBER: &str = include_str!("../../tests/fixtures/cap/a4-amber-alert.xml");
const CANCEL: &str = include_str!("../../tests/fixtures/cap/cancel.xml");

fn ok(xml: &str) -> Alert {
    match parse(xml.as_bytes()) {
        Ok(alert) => alert,
        Err(e) => panic!("expected a valid alert, got {e:?}"),
    }
}

fn err(xml: impl AsRef<[u8]>) -> CapError {
    match parse(xml.as_ref()) {
        Ok(alert) => panic!("expected an error, got {alert:?}"),
        Err(e) => e,
    }
}

/// The `element` of an `Invalid` error (fails the test on another kind).
fn invalid_element(xml: impl AsRef<[u8]>) -> String {
    match err(xml) {
        CapError::Invalid { element, .. } => element,
        other => panic!("expected Invalid, got {other:?}"),
    }
}

/// `text` with `from` replaced by `to`; `from` must occur.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert!(text.contains(from), "fixture does not contain {from:?}");
    text.replacen(from, to, 1)
}

/// `text` without the first `<tag>...</tag>` element.
fn without(text: &str, tag: &str) -> String {
    let open = format!("<{tag}>");
    let close = format!("</{tag}>");
    let start = text.find(&open).expect("element present");
    let end = start + text[start..].find(&close).expect("element closed") + close.len();
    format!("{}{}", &text[..start], &text[end..])
}

/// A minimal valid alert with `info` as its (CAP-namespace) `<info>` body.
fn with_info(info: &str) -> String {
    format!(
        r#"<alert xmlns="urn:oasis:names:tc:emergency:cap:1.2">
  <identifier>X1</identifier><sender>s@example.org</sender>
  <sent>2024-01-02T03:04:05+01:00</sent><status>Actual</status>
  <msgType>Alert</msgType><scope>Public</scope>
  <info>{info}</info>
</alert>"#
    )
}

const INFO_CORE: &str = "<category>Met</category><event>Flood</event>\
    <urgency>Expected</urgency><severity>Moderate</severity><certainty>Likely</certainty>";

// ---- the OASIS CAP 1.2 Appendix A examples ----

#[test]
fn cap_a1_homeland_security_advisory() {
    let alert = ok(HOMELAND);
    assert_eq!(alert.identifier, "43b080713727");
    assert_eq!(alert.sender, "hsas@dhs.gov");
    assert_eq!(alert.sent, "2003-04-02T14:39:01-05:00");
    assert_eq!(alert.status, Status::Actual);
    assert_eq!(alert.msg_type, MsgType::Alert);
    assert_eq!(alert.scope, Scope::Public);
    assert!(alert.references.is_empty());
    assert_eq!(alert.infos.len(), 1);
    let info = &alert.infos[0];
    assert_eq!(info.language, "en-US", "CAP's default language");
    assert_eq!(info.categories, vec![Category::Security]);
    assert_eq!(info.event, "Homeland Security Advisory System Update");
    assert_eq!(info.urgency, Urgency::Immediate);
    assert_eq!(info.severity, Severity::Severe);
    assert_eq!(info.certainty, Certainty::Likely);
    assert_eq!(
        info.sender_name.as_deref(),
        Some("U.S. Government, Department of Homeland Security")
    );
    assert_eq!(
        info.headline.as_deref(),
        Some("Homeland Security Sets Code ORANGE")
    );
    let instruction = info.instruction.as_deref().expect("instruction");
    assert!(instruction.starts_with("A High Condition is declared"));
    assert_eq!(
        info.web.as_deref(),
        Some("http://www.dhs.gov/dhspublic/display?theme=29")
    );
    assert_eq!(
        info.parameters,
        vec![NamedValue {
            value_name: "HSAS".into(),
            value: "ORANGE".into()
        }]
    );
    assert_eq!(info.resources.len(), 1);
    assert_eq!(info.resources[0].resource_desc, "Image file (GIF)");
    assert_eq!(info.resources[0].mime_type, "image/gif");
    assert_eq!(
        info.resources[0].uri.as_deref(),
        Some("http://www.dhs.gov/dhspublic/getAdvisoryImage")
    );
    assert_eq!(info.areas.len(), 1);
    assert_eq!(
        info.areas[0].area_desc,
        "U.S. nationwide and interests worldwide"
    );
    let text = info.text();
    assert!(text.starts_with("Homeland Security Sets Code ORANGE\nThe Department"));
    assert!(text.ends_with("\nA High Condition is declared when there is a high risk of terrorist attacks. In addition to the Protective Measures taken in the previous Threat Conditions, Federal departments and agencies should consider agency-specific Protective Measures in accordance with their existing plans."));
}

#[test]
fn cap_a2_severe_thunderstorm_warning() {
    let alert = ok(THUNDERSTORM);
    assert_eq!(alert.identifier, "KSTO1055887203");
    assert_eq!(alert.sender, "KSTO@NWS.NOAA.GOV");
    assert_eq!(alert.sent, "2003-06-17T14:57:00-07:00");
    let info = &alert.infos[0];
    assert_eq!(info.categories, vec![Category::Met]);
    assert_eq!(info.event, "SEVERE THUNDERSTORM");
    assert_eq!(info.response_types, vec![ResponseType::Shelter]);
    assert_eq!(
        (info.urgency, info.severity, info.certainty),
        (Urgency::Immediate, Severity::Severe, Certainty::Observed)
    );
    assert_eq!(
        info.event_codes,
        vec![NamedValue {
            value_name: "SAME".into(),
            value: "SVR".into()
        }]
    );
    assert_eq!(info.expires.as_deref(), Some("2003-06-17T16:00:00-07:00"));
    assert_eq!(info.contact.as_deref(), Some("BARUFFALDI/JUSKIE"));
    assert!(
        info.description
            .as_deref()
            .expect("description")
            .starts_with("AT 254 PM PDT"),
        "leading indentation is trimmed"
    );
    let area = &info.areas[0];
    assert!(area.area_desc.starts_with("EXTREME NORTH CENTRAL TUOLUMNE"));
    assert_eq!(area.polygons.len(), 1);
    let points = &area.polygons[0].points;
    assert_eq!(points.len(), 5);
    assert_eq!(
        points[0],
        Point {
            lat: 38.47,
            lon: -120.14
        }
    );
    assert_eq!(
        points[2],
        Point {
            lat: 38.52,
            lon: -119.74
        }
    );
    let geocodes: Vec<&str> = area.geocodes.iter().map(|g| g.value.as_str()).collect();
    assert_eq!(geocodes, ["006109", "006009", "006003"]);
    assert!(area.geocodes.iter().all(|g| g.value_name == "SAME"));
    assert_eq!(
        info.text(),
        "SEVERE THUNDERSTORM WARNING\nAT 254 PM PDT...NATIONAL WEATHER SERVICE DOPPLER RADAR \
         INDICATED A SEVERE THUNDERSTORM OVER SOUTH CENTRAL ALPINE COUNTY...OR ABOUT 18 MILES \
         SOUTHEAST OF KIRKWOOD...MOVING SOUTHWEST AT 5 MPH. HAIL...INTENSE RAIN AND STRONG \
         DAMAGING WINDS ARE LIKELY WITH THIS STORM.\nTAKE COVER IN A SUBSTANTIAL SHELTER UNTIL \
         THE STORM PASSES."
    );
}

#[test]
fn cap_a3_earthquake_update_with_references() {
    let alert = ok(EARTHQUAKE);
    assert_eq!(alert.identifier, "TRI13970876.2");
    assert_eq!(alert.msg_type, MsgType::Update);
    assert_eq!(
        alert.references,
        vec![Reference {
            sender: "trinet@caltech.edu".into(),
            identifier: "TRI13970876.1".into(),
            sent: "2003-06-11T20:30:00-07:00".into(),
        }]
    );
    let info = &alert.infos[0];
    assert_eq!(info.categories, vec![Category::Geo]);
    assert_eq!(info.urgency, Urgency::Past);
    assert_eq!(info.severity, Severity::Minor);
    assert_eq!(info.headline.as_deref(), Some("EQ 3.4 Imperial County CA"));
    let names: Vec<&str> = info
        .parameters
        .iter()
        .map(|p| p.value_name.as_str())
        .collect();
    assert_eq!(
        names,
        ["EventID", "Version", "Magnitude", "Depth", "Quality"]
    );
    assert_eq!(info.parameters[2].value, "3.4 Ml");
    let area = &info.areas[0];
    assert_eq!(
        area.circles,
        vec![Circle {
            center: Point {
                lat: 32.9525,
                lon: -115.5527
            },
            radius_km: 0.0
        }]
    );
    assert!(area.polygons.is_empty());
    assert_eq!(
        info.text(),
        format!(
            "EQ 3.4 Imperial County CA\n{}",
            info.description.as_deref().expect("description")
        ),
        "no instruction: headline and description only"
    );
}

#[test]
fn cap_a4_amber_alert_multilingual() {
    let alert = ok(AMBER);
    assert_eq!(alert.identifier, "KAR0-0306112239-SW");
    assert_eq!(alert.sender, "KARO@CLETS.DOJ.CA.GOV");
    assert_eq!(alert.source.as_deref(), Some("SW"));
    assert_eq!(alert.infos.len(), 2);
    let (en, es) = (&alert.infos[0], &alert.infos[1]);
    assert_eq!(en.language, "en-US");
    assert_eq!(es.language, "es-US");
    assert_eq!(en.categories, vec![Category::Rescue]);
    assert_eq!(en.event, "Child Abduction");
    assert_eq!(es.event, "Abducción de Niño");
    assert_eq!(
        es.sender_name.as_deref(),
        Some("Departamento de Policía de Los Ángeles - LAPD")
    );
    assert!(
        en.description
            .as_deref()
            .expect("description")
            .contains("3'0\", 40 LBS.")
    );
    assert_eq!(en.event_codes[0].value, "CAE");
    assert_eq!(es.areas[0].area_desc, "condado de Los Ángeles");
    assert_eq!(es.areas[0].geocodes[0].value, "006037");
    assert!(en.instruction.is_none());
}

#[test]
fn cap_cancel_message_has_references_and_no_info() {
    let alert = ok(CANCEL);
    assert_eq!(alert.msg_type, MsgType::Cancel);
    assert!(alert.infos.is_empty());
    assert_eq!(alert.references.len(), 1);
    assert_eq!(alert.references[0].identifier, "KSTO1055887203");
    assert_eq!(
        alert.note.as_deref(),
        Some("Thunderstorm has weakened; warning cancelled.")
    );
}

// ---- hostile documents ----

#[test]
fn cap_billion_laughs_is_forbidden() {
    let mut dtd = String::from("<!ENTITY lol \"lol\">");
    for i in 1..10 {
        let prev = if i == 1 {
            "lol".to_owned()
        } else {
            format!("lol{}", i - 1)
        };
        dtd.push_str(&format!(
            "<!ENTITY lol{i} \"{}\">",
            format!("&{prev};").repeat(10)
        ));
    }
    let xml = format!(
        "<?xml version=\"1.0\"?><!DOCTYPE alert [{dtd}]>\
         <alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><note>&lol9;</note></alert>"
    );
    let e = err(xml);
    assert!(
        matches!(&e, CapError::Forbidden(m) if m.contains("DOCTYPE")),
        "refused at the DOCTYPE, before any entity: {e:?}"
    );
    assert_eq!(e.code(), "dtd_not_allowed");
}

#[test]
fn cap_external_entity_is_forbidden() {
    let xml = "<?xml version=\"1.0\"?>\
        <!DOCTYPE alert [<!ENTITY xxe SYSTEM \"file:///etc/passwd\">]>\
        <alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><note>&xxe;</note></alert>";
    assert!(matches!(err(xml), CapError::Forbidden(m) if m.contains("DOCTYPE")));
    let external_dtd = "<!DOCTYPE alert SYSTEM \"http://example.org/cap.dtd\">\
        <alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>";
    assert!(matches!(err(external_dtd), CapError::Forbidden(_)));
}

#[test]
fn cap_unknown_entity_without_doctype_is_forbidden() {
    let xml = edit(
        THUNDERSTORM,
        "<contact>BARUFFALDI",
        "<contact>&xxe;BARUFFALDI",
    );
    assert!(matches!(err(xml), CapError::Forbidden(_)));
    let in_attribute = edit(THUNDERSTORM, "<alert xmlns", "<alert foo=\"&xxe;\" xmlns");
    assert!(matches!(err(in_attribute), CapError::Forbidden(_)));
}

#[test]
fn cap_wrong_namespace_names_alert() {
    let cap11 = THUNDERSTORM.replace(
        "urn:oasis:names:tc:emergency:cap:1.2",
        "urn:oasis:names:tc:emergency:cap:1.1",
    );
    let e = err(cap11);
    assert_eq!(e.element(), Some("alert"));
    assert_eq!(e.code(), "invalid_cap");
    assert!(e.to_string().contains("cap:1.1"), "{e}");
}

#[test]
fn cap_no_namespace_names_alert() {
    let xml = edit(
        THUNDERSTORM,
        " xmlns = \"urn:oasis:names:tc:emergency:cap:1.2\"",
        "",
    );
    assert_eq!(invalid_element(xml), "alert");
    let wrong_root = "<info xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>";
    assert_eq!(invalid_element(wrong_root), "alert");
}

#[test]
fn cap_every_truncation_is_malformed() {
    let end = THUNDERSTORM.rfind('>').expect("closing bracket");
    for cut in 0..end {
        match parse(&THUNDERSTORM.as_bytes()[..cut]) {
            Err(CapError::Malformed(_)) => {}
            other => panic!("prefix of {cut} bytes: expected Malformed, got {other:?}"),
        }
    }
}

#[test]
fn cap_non_utf8_is_malformed() {
    let mut bytes = THUNDERSTORM.as_bytes().to_vec();
    let at = THUNDERSTORM.find("BARUFFALDI").expect("contact");
    bytes[at] = 0xC9; // Latin-1 'É' followed by ASCII: not UTF-8
    let e = err(&bytes);
    assert!(matches!(e, CapError::Malformed(_)), "{e:?}");
    assert_eq!(e.code(), "malformed_xml");

    let latin1 = edit(
        THUNDERSTORM,
        "encoding = \"UTF-8\"",
        "encoding = \"ISO-8859-1\"",
    );
    assert!(matches!(err(latin1), CapError::Malformed(_)));
}

#[test]
fn cap_utf8_bom_is_accepted() {
    let xml = format!("\u{feff}{THUNDERSTORM}");
    assert_eq!(ok(&xml).identifier, "KSTO1055887203");
}

#[test]
fn cap_ten_thousand_nested_elements_are_refused() {
    let depth = 10_000;
    let xml = format!(
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\" xmlns:x=\"urn:example:ext\">{}{}</alert>",
        "<x:e>".repeat(depth),
        "</x:e>".repeat(depth)
    );
    let e = err(xml);
    assert_eq!(e.element(), Some("alert"));
    assert!(e.to_string().contains(&MAX_DEPTH.to_string()), "{e}");
}

#[test]
fn cap_nested_cap_elements_are_unknown() {
    let xml = format!(
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\">{}{}</alert>",
        "<e>".repeat(10_000),
        "</e>".repeat(10_000)
    );
    assert_eq!(invalid_element(xml), "e");
}

#[test]
fn cap_too_many_elements_are_refused() {
    let xml = format!(
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\" xmlns:x=\"urn:example:ext\">{}</alert>",
        "<x:e/>".repeat(MAX_ELEMENTS)
    );
    let e = err(xml);
    assert_eq!(e.element(), Some("alert"));
    assert!(e.to_string().contains("elements"), "{e}");
}

#[test]
fn cap_huge_text_is_refused() {
    let xml = with_info(&format!(
        "{INFO_CORE}<description>{}</description>",
        "a".repeat(MAX_TEXT_BYTES + 1)
    ));
    assert_eq!(invalid_element(xml), "info/description");
    // Just under the limit, split by a reference, is fine.
    let xml = with_info(&format!(
        "{INFO_CORE}<description>{}&amp;{}</description>",
        "a".repeat(MAX_TEXT_BYTES / 2),
        "b".repeat(MAX_TEXT_BYTES / 2 - 1)
    ));
    assert_eq!(
        ok(&xml).infos[0].description.as_deref().map(str::len),
        Some(MAX_TEXT_BYTES)
    );
}

#[test]
fn cap_too_many_attributes_are_refused() {
    let attributes: String = (0..10_000).map(|i| format!(" a{i}=\"\"")).collect();
    let xml = format!("<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"{attributes}/>");
    let e = err(xml);
    assert_eq!(e.element(), Some("alert"));
    assert!(e.to_string().contains("attributes"), "{e}");
}

#[test]
fn cap_huge_document_is_refused() {
    let xml = format!(
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><!--{}--></alert>",
        "x".repeat(MAX_DOCUMENT_BYTES)
    );
    assert_eq!(invalid_element(xml), "alert");
}

#[test]
fn cap_structural_garbage_is_malformed() {
    let cases = [
        "",
        "   ",
        "not xml at all",
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"></alrt>",
        "<p:alert/>",
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><note>a & b</note></alert>",
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><note>&#1;</note></alert>",
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"><note>\u{1}</note></alert>",
        "<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\" a=\"1\" a=\"2\"/>",
    ];
    let second_root = format!("{CANCEL}<alert xmlns=\"urn:oasis:names:tc:emergency:cap:1.2\"/>");
    let trailing_text = format!("{CANCEL}trailing");
    for case in cases
        .iter()
        .copied()
        .chain([&*second_root, &*trailing_text])
    {
        match parse(case.as_bytes()) {
            Err(CapError::Malformed(_)) => {}
            other => panic!("{case:?}: expected Malformed, got {other:?}"),
        }
    }
}

// ---- required elements, one test each ----

macro_rules! missing_element_tests {
    ($($test:ident: $tag:literal => $element:literal;)+) => {$(
        #[test]
        fn $test() {
            let xml = without(THUNDERSTORM, $tag);
            let e = err(xml);
            assert_eq!(e.element(), Some($element), "{e:?}");
            assert!(e.to_string().contains(concat!("<", $tag, ">")), "{e}");
        }
    )+};
}

missing_element_tests! {
    cap_missing_identifier: "identifier" => "identifier";
    cap_missing_sender: "sender" => "sender";
    cap_missing_sent: "sent" => "sent";
    cap_missing_status: "status" => "status";
    cap_missing_msg_type: "msgType" => "msgType";
    cap_missing_scope: "scope" => "scope";
    cap_missing_info_category: "category" => "info/category";
    cap_missing_info_event: "event" => "info/event";
    cap_missing_info_urgency: "urgency" => "info/urgency";
    cap_missing_info_severity: "severity" => "info/severity";
    cap_missing_info_certainty: "certainty" => "info/certainty";
    cap_missing_area_desc: "areaDesc" => "info/area/areaDesc";
    cap_missing_event_code_value_name: "valueName" => "info/eventCode/valueName";
}

#[test]
fn cap_missing_resource_mime_type() {
    assert_eq!(
        invalid_element(without(HOMELAND, "mimeType")),
        "info/resource/mimeType"
    );
}

#[test]
fn cap_restricted_scope_needs_restriction() {
    let restricted = edit(
        THUNDERSTORM,
        "<scope>Public</scope>",
        "<scope>Restricted</scope>",
    );
    assert_eq!(invalid_element(&restricted), "restriction");
    let with = edit(
        &restricted,
        "<scope>Restricted</scope>",
        "<scope>Restricted</scope><restriction>Emergency managers only</restriction>",
    );
    assert_eq!(
        ok(&with).restriction.as_deref(),
        Some("Emergency managers only")
    );
}

#[test]
fn cap_private_scope_needs_addresses() {
    let private = edit(
        THUNDERSTORM,
        "<scope>Public</scope>",
        "<scope>Private</scope>",
    );
    assert_eq!(invalid_element(&private), "addresses");
    let with = edit(
        &private,
        "<scope>Private</scope>",
        "<scope>Private</scope><addresses>ops@example.org \"County EOC\"  duty</addresses>",
    );
    assert_eq!(
        ok(&with).addresses,
        vec!["ops@example.org", "County EOC", "duty"]
    );
    let unclosed = edit(
        &private,
        "<scope>Private</scope>",
        "<scope>Private</scope><addresses>\"County EOC</addresses>",
    );
    assert_eq!(invalid_element(unclosed), "addresses");
}

// ---- enumerations ----

#[test]
fn cap_bad_enumerations_name_their_element() {
    let cases = [
        (
            "<status>Actual</status>",
            "<status>actual</status>",
            "status",
        ),
        (
            "<msgType>Alert</msgType>",
            "<msgType>Alarm</msgType>",
            "msgType",
        ),
        ("<scope>Public</scope>", "<scope>Everyone</scope>", "scope"),
        (
            "<category>Met</category>",
            "<category>Weather</category>",
            "info/category",
        ),
        (
            "<responseType>Shelter</responseType>",
            "<responseType>Run</responseType>",
            "info/responseType",
        ),
        (
            "<urgency>Immediate</urgency>",
            "<urgency>Soon</urgency>",
            "info/urgency",
        ),
        (
            "<severity>Severe</severity>",
            "<severity>Bad</severity>",
            "info/severity",
        ),
        (
            "<certainty>Observed</certainty>",
            "<certainty>Very Likely</certainty>",
            "info/certainty",
        ),
    ];
    for (from, to, element) in cases {
        assert_eq!(
            invalid_element(edit(THUNDERSTORM, from, to)),
            element,
            "{to}"
        );
    }
}

#[test]
fn cap_bad_urgency_message_lists_the_values() {
    let e = err(edit(
        THUNDERSTORM,
        "<urgency>Immediate</urgency>",
        "<urgency>Soon</urgency>",
    ));
    assert_eq!(
        e.to_string(),
        "<urgency> must be one of Immediate, Expected, Future, Past, Unknown (got \"Soon\")"
    );
}

#[test]
fn cap_every_enumeration_value_round_trips() {
    fn check<T: value::CapEnum + PartialEq + std::fmt::Debug>() {
        for v in T::ALL {
            assert_eq!(T::from_cap(v.as_str()), Some(*v));
        }
    }
    check::<Status>();
    check::<MsgType>();
    check::<Scope>();
    check::<Category>();
    check::<ResponseType>();
    check::<Urgency>();
    check::<Severity>();
    check::<Certainty>();
    assert_eq!(Category::from_cap("CBRNE"), Some(Category::Cbrne));
    assert_eq!(
        ResponseType::from_cap("AllClear"),
        Some(ResponseType::AllClear)
    );
}

// ---- dates ----

#[test]
fn cap_bad_dates_are_refused() {
    let bad = [
        "2003-06-17T14:57:00Z",
        "2003-06-17T14:57:00",
        "2003-06-17T14:57:00+0700",
        "2003-06-17 14:57:00-07:00",
        "2003-06-17T14:57:00.5-07:00",
        "2003-02-29T14:57:00-07:00",
        "2003-13-17T14:57:00-07:00",
        "2003-06-31T14:57:00-07:00",
        "2003-06-17T24:00:00-07:00",
        "2003-06-17T14:60:00-07:00",
        "2003-06-17T14:57:60-07:00",
        "2003-06-17T14:57:00-15:00",
        "03-06-17T14:57:00-07:00",
        "yesterday",
        "",
    ];
    for date in bad {
        let xml = edit(
            THUNDERSTORM,
            "<sent>2003-06-17T14:57:00-07:00</sent>",
            &format!("<sent>{date}</sent>"),
        );
        assert_eq!(invalid_element(xml), "sent", "{date:?}");
    }
    let expires = edit(
        THUNDERSTORM,
        "<expires>2003-06-17T16:00:00-07:00</expires>",
        "<expires>2003-06-17T16:00:00Z</expires>",
    );
    assert_eq!(invalid_element(expires), "info/expires");
    for (tag, element) in [("effective", "info/effective"), ("onset", "info/onset")] {
        let xml = with_info(&format!("{INFO_CORE}<{tag}>2024-01-02</{tag}>"));
        assert_eq!(invalid_element(xml), element);
    }
}

#[test]
fn cap_good_dates_are_kept_as_written() {
    for date in [
        "2004-02-29T00:00:00-00:00",
        "2000-02-29T23:59:59+14:00",
        "2024-12-31T12:00:00+05:30",
    ] {
        let xml = edit(
            THUNDERSTORM,
            "<sent>2003-06-17T14:57:00-07:00</sent>",
            &format!("<sent> {date}\n</sent>"),
        );
        assert_eq!(ok(&xml).sent, date);
    }
}

// ---- identifiers and references ----

#[test]
fn cap_identifier_and_sender_forbid_spaces_commas_lt_amp() {
    for bad in ["KSTO 1", "KSTO,1", "KSTO&lt;1", "KSTO&amp;1", ""] {
        let xml = edit(
            THUNDERSTORM,
            "<identifier>KSTO1055887203</identifier>",
            &format!("<identifier>{bad}</identifier>"),
        );
        assert_eq!(invalid_element(xml), "identifier", "{bad:?}");
    }
    let sender = edit(
        THUNDERSTORM,
        "<sender>KSTO@NWS.NOAA.GOV</sender>",
        "<sender>NWS Sacramento</sender>",
    );
    assert_eq!(invalid_element(sender), "sender");
}

#[test]
fn cap_references_must_be_triples() {
    let from =
        "<references>KSTO@NWS.NOAA.GOV,KSTO1055887203,2003-06-17T14:57:00-07:00</references>";
    for bad in [
        "KSTO@NWS.NOAA.GOV,KSTO1055887203",
        "KSTO@NWS.NOAA.GOV,KSTO1055887203,2003-06-17T14:57:00-07:00,extra",
        "KSTO@NWS.NOAA.GOV,KSTO1055887203,2003-06-17",
        ",KSTO1055887203,2003-06-17T14:57:00-07:00",
        "",
    ] {
        let xml = edit(CANCEL, from, &format!("<references>{bad}</references>"));
        assert_eq!(invalid_element(xml), "references", "{bad:?}");
    }
    let two = edit(
        CANCEL,
        from,
        "<references>\n  a@x,ID1,2003-06-17T14:57:00-07:00\n  b@y,ID2,2003-06-17T15:00:00-07:00\n</references>",
    );
    let alert = ok(&two);
    assert_eq!(alert.references.len(), 2);
    assert_eq!(alert.references[1].sender, "b@y");
    assert_eq!(alert.references[1].sent, "2003-06-17T15:00:00-07:00");
}

// ---- structure ----

#[test]
fn cap_unknown_cap_elements_are_invalid() {
    let in_alert = edit(
        THUNDERSTORM,
        "<scope>Public</scope>",
        "<scope>Public</scope><priority>1</priority>",
    );
    assert_eq!(invalid_element(in_alert), "priority");
    let in_info = with_info(&format!("{INFO_CORE}<colour>red</colour>"));
    assert_eq!(invalid_element(in_info), "info/colour");
    let in_area = with_info(&format!(
        "{INFO_CORE}<area><areaDesc>x</areaDesc><radius>3</radius></area>"
    ));
    assert_eq!(invalid_element(in_area), "info/area/radius");
}

#[test]
fn cap_other_namespaces_are_ignored() {
    let xml = edit(
        THUNDERSTORM,
        "</info>",
        "<ext:data xmlns:ext=\"urn:example:ext\"><ext:deep><event>not CAP here</event>\
         <ext:x/>text</ext:deep></ext:data></info>\
         <Signature xmlns=\"http://www.w3.org/2000/09/xmldsig#\"><SignedInfo>\
         <Reference URI=\"\"/></SignedInfo><SignatureValue>abc=</SignatureValue></Signature>",
    );
    let alert = ok(&xml);
    assert_eq!(alert.infos.len(), 1);
    assert_eq!(alert.infos[0].event, "SEVERE THUNDERSTORM");
}

#[test]
fn cap_duplicate_single_elements_are_invalid() {
    let xml = edit(
        THUNDERSTORM,
        "<status>Actual</status>",
        "<status>Actual</status><status>Test</status>",
    );
    let e = err(xml);
    assert_eq!(e.element(), Some("status"));
    assert!(e.to_string().contains("only once"), "{e}");
    let urgency = edit(
        THUNDERSTORM,
        "<urgency>Immediate</urgency>",
        "<urgency>Immediate</urgency><urgency>Past</urgency>",
    );
    assert_eq!(invalid_element(urgency), "info/urgency");
}

#[test]
fn cap_text_where_cap_has_none_is_invalid() {
    let xml = edit(THUNDERSTORM, "<info>", "<info>stray words");
    assert_eq!(invalid_element(xml), "info");
    let markup_in_leaf = with_info(&format!(
        "{INFO_CORE}<description>a <b xmlns=\"urn:x\">b</b></description>"
    ));
    assert_eq!(invalid_element(markup_in_leaf), "info/description");
}

#[test]
fn cap_escapes_and_cdata_are_decoded() {
    let xml = with_info(&format!(
        "{INFO_CORE}<headline>Flood &amp; mud &lt;now&gt; &quot;go&apos; &#233;&#x263A;</headline>\
         <description><![CDATA[<b>bold</b> & more]]> after</description>"
    ));
    let info = &ok(&xml).infos[0];
    assert_eq!(info.headline.as_deref(), Some("Flood & mud <now> \"go' é☺"));
    assert_eq!(
        info.description.as_deref(),
        Some("<b>bold</b> & more after")
    );
}

#[test]
fn cap_info_defaults_and_text_fallback() {
    let alert = ok(&with_info(INFO_CORE));
    let info = &alert.infos[0];
    assert_eq!(info.language, "en-US");
    assert_eq!(
        info.text(),
        "Flood",
        "event stands in when nothing else is given"
    );
    let alert = ok(&with_info(&format!(
        "<language>fr-CA</language>{INFO_CORE}<headline></headline><instruction>Go up.</instruction>"
    )));
    assert_eq!(alert.infos[0].language, "fr-CA");
    assert_eq!(alert.infos[0].text(), "Go up.");
    let bad_language = with_info(&format!("<language>en US</language>{INFO_CORE}"));
    assert_eq!(invalid_element(bad_language), "info/language");
}

#[test]
fn cap_geometry_is_checked() {
    let area = |inner: &str| {
        with_info(&format!(
            "{INFO_CORE}<area><areaDesc>x</areaDesc>{inner}</area>"
        ))
    };
    let cases = [
        "<polygon>1,1 2,2 3,3</polygon>",
        "<polygon>1,1 2,2 3,3 4,4</polygon>",
        "<polygon>91,1 2,2 3,3 91,1</polygon>",
        "<polygon>1,181 2,2 3,3 1,181</polygon>",
        "<polygon>1;1 2,2 3,3 1;1</polygon>",
        "<polygon>NaN,1 2,2 3,3 NaN,1</polygon>",
    ];
    for case in cases {
        assert_eq!(invalid_element(area(case)), "info/area/polygon", "{case}");
    }
    for case in [
        "<circle>1,1</circle>",
        "<circle>1,1 -2</circle>",
        "<circle>1,1 2 3</circle>",
        "<circle>1,1 inf</circle>",
    ] {
        assert_eq!(invalid_element(area(case)), "info/area/circle", "{case}");
    }
    assert_eq!(
        invalid_element(area("<ceiling>100</ceiling>")),
        "info/area/ceiling"
    );
    assert_eq!(
        invalid_element(area("<altitude>high</altitude>")),
        "info/area/altitude"
    );
    let good = ok(&area(
        "<polygon>1,1 1,2 2,2 1,1</polygon><circle>-33.9,151.2 2.5</circle>\
         <altitude>100</altitude><ceiling>250.5</ceiling>",
    ));
    let area = &good.infos[0].areas[0];
    assert_eq!(area.polygons[0].points.len(), 4);
    assert_eq!(area.circles[0].radius_km, 2.5);
    assert_eq!((area.altitude, area.ceiling), (Some(100.0), Some(250.5)));
}

#[test]
fn cap_repeated_elements_are_bounded() {
    let infos = format!("<info>{INFO_CORE}</info>").repeat(limits::MAX_INFOS + 1);
    let xml = with_info(INFO_CORE).replace("</alert>", &format!("{infos}</alert>"));
    assert_eq!(invalid_element(xml), "info");
    let areas = "<area><areaDesc>x</areaDesc></area>".repeat(limits::MAX_AREAS + 1);
    assert_eq!(
        invalid_element(with_info(&format!("{INFO_CORE}{areas}"))),
        "info/area"
    );
}

// ---- helpers of the public API ----

#[test]
fn cap_status_reaches_public_only_when_actual() {
    let public: Vec<Status> = Status::ALL
        .iter()
        .copied()
        .filter(|s| s.reaches_public())
        .collect();
    assert_eq!(public, vec![Status::Actual]);
}

#[test]
fn cap_error_codes_are_stable() {
    assert_eq!(CapError::Malformed("x".into()).code(), "malformed_xml");
    assert_eq!(CapError::Forbidden("x".into()).code(), "dtd_not_allowed");
    assert_eq!(CapError::invalid("sent", "x").code(), "invalid_cap");
}

mod prop {
    use proptest::prelude::*;

    use super::super::parse;
    use super::THUNDERSTORM;

    proptest! {
        /// Arbitrary bytes never panic.
        #[test]
        fn cap_parse_never_panics_on_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = parse(&bytes);
        }

        /// A valid alert with one byte changed never panics.
        #[test]
        fn cap_parse_never_panics_on_mutations(at in 0..THUNDERSTORM.len(), byte in any::<u8>()) {
            let mut bytes = THUNDERSTORM.as_bytes().to_vec();
            bytes[at] = byte;
            let _ = parse(&bytes);
        }
    }
}
