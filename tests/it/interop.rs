//! Interoperability with SMPP code written elsewhere, field by field:
//! - Herald's `smpp` connector against an SMSC built on the npm `smpp`
//!   package (`tests/interop/npm-smsc/server.js`, run with node);
//! - `smsc-sim` against an ESME built on Python's `smpplib`
//!   (`tests/interop/smpplib_client.py`).
//!
//! Both need their runtime and module installed (`.ci/run` does it). When
//! one is missing the test fails and says how to install it; it never skips.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use herald::config::Config;
use herald::connector::smpp::{SmppConfig, SmppConnector};
use herald::connector::{Connector, ConnectorEvent, InboundMessage};
use herald::model::{Class, Message};
use herald::smsc_sim::{SimConfig, SmscSim};
use herald::testing::within;

use herald::model::{Receipt, ReceiptState};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;
use tokio::process::{Child, ChildStdin, Command};
use tokio::sync::mpsc;

use crate::store_conformance::message;

const STEP: Duration = Duration::from_secs(10);

fn interop_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/interop")
}

/// Fails (never skips) with an install hint when `program` cannot run.
async fn require(program: &str, args: &[&str], hint: &str) {
    let ok = Command::new(program)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .await
        .is_ok_and(|s| s.success());
    assert!(ok, "interop test prerequisite missing: {hint}");
}

/// The npm-based SMSC: its stdout as JSON events, its stdin for commands.
struct NpmSmsc {
    port: u16,
    events: mpsc::UnboundedReceiver<Value>,
    /// Events read while looking for another kind, oldest first.
    stash: Vec<Value>,
    stdin: ChildStdin,
    _child: Child,
}

impl NpmSmsc {
    async fn start() -> NpmSmsc {
        require(
            "node",
            &["--version"],
            "node is not installed (node 20 or later)",
        )
        .await;
        let dir = interop_dir().join("npm-smsc");
        assert!(
            dir.join("node_modules/smpp/package.json").is_file(),
            "interop test prerequisite missing: the npm package `smpp`; run `npm ci` in {} (.ci/run does)",
            dir.display()
        );
        let mut child = Command::new("node")
            .arg(dir.join("server.js"))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("spawn node");
        let stdout = child.stdout.take().expect("stdout");
        let stdin = child.stdin.take().expect("stdin");
        let (tx, mut events) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            let mut lines = BufReader::new(stdout).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => {
                        if tx.send(v).is_err() {
                            return;
                        }
                    }
                    Err(_) => eprintln!("npm-smsc: {line}"),
                }
            }
        });
        let listening = within(STEP, "npm smsc listening", events.recv())
            .await
            .expect("npm smsc output");
        assert_eq!(listening["event"], "listening", "{listening}");
        let port = u16::try_from(listening["port"].as_u64().expect("port")).expect("port");
        NpmSmsc {
            port,
            events,
            stash: Vec::new(),
            stdin,
            _child: child,
        }
    }

    /// The next event of `kind`; events of other kinds are kept for later.
    async fn next(&mut self, kind: &str) -> Value {
        if let Some(i) = self.stash.iter().position(|v| v["event"] == kind) {
            return self.stash.remove(i);
        }
        within(STEP, &format!("npm smsc event {kind}"), async {
            loop {
                let v = self.events.recv().await.expect("npm smsc still running");
                if v["event"] == kind {
                    return v;
                }
                self.stash.push(v);
            }
        })
        .await
    }

    async fn command(&mut self, command: Value) {
        let line = format!("{command}\n");
        self.stdin
            .write_all(line.as_bytes())
            .await
            .expect("write to npm smsc");
        self.stdin.flush().await.expect("flush");
    }
}

fn settings(name: &str, port: u16, extra: &str) -> SmppConfig {
    let text = format!(
        "[[connectors]]\nname = \"{name}\"\nkind = \"smpp\"\nhost = \"127.0.0.1\"\nport = {port}\n\
         system_id = \"herald\"\npassword = \"pw\"\nsource_addr = \"Herald\"\nreconnect_min = \"50ms\"\n\
         reconnect_max = \"200ms\"\nresponse_timeout = \"5s\"\n{extra}"
    );
    let config = Config::from_toml(&text).unwrap_or_else(|e| panic!("{e}"));
    config.connectors[0]
        .as_smpp()
        .expect("an smpp connector")
        .clone()
}

fn outgoing(body: &str) -> Message {
    let mut m = message("npm", Class::Transactional, 1);
    m.to = "+447700900123".into();
    m.from = None;
    m.body = body.into();
    m
}

async fn ready(connector: &SmppConnector) {
    within(STEP, "bind", async {
        while !connector.is_ready() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await;
}

async fn next_receipt(events: &mut mpsc::Receiver<ConnectorEvent>) -> Receipt {
    within(STEP, "receipt", async {
        loop {
            if let Some(ConnectorEvent::Receipt(r, ack)) = events.recv().await {
                // Stand in for the gateway's store: "committed".
                ack.finish(true);
                return r;
            }
        }
    })
    .await
}

async fn next_inbound(events: &mut mpsc::Receiver<ConnectorEvent>) -> InboundMessage {
    within(STEP, "inbound", async {
        loop {
            if let Some(ConnectorEvent::Inbound(mo, ack)) = events.recv().await {
                ack.finish(true);
                return mo;
            }
        }
    })
    .await
}

fn gsm_septets(text: &str) -> Vec<u8> {
    text.bytes().collect() // ASCII letters and space are the same septets in GSM 03.38
}

#[tokio::test]
async fn the_connector_interoperates_with_an_smsc_built_on_the_npm_smpp_package() {
    let mut smsc = NpmSmsc::start().await;
    let (tx, mut events) = mpsc::channel(256);
    let connector = SmppConnector::start(settings("npm", smsc.port, ""), tx).expect("start");
    ready(&connector).await;

    let bind = smsc.next("bind").await;
    assert_eq!(bind["command"], "bind_transceiver");
    assert_eq!(bind["system_id"], "herald");
    assert_eq!(bind["password"], "pw");
    assert_eq!(bind["interface_version"], 0x34, "SMPP 3.4");

    // GSM 03.38, extension characters included: npm decodes with its own table.
    let gsm = "Hello @£$¥è Ç {x} [y] ~ € ^";
    let ack = connector
        .submit(&outgoing(gsm))
        .await
        .expect("gsm accepted");
    let sm = smsc.next("submit_sm").await;
    assert_eq!(sm["message_id"], ack.smsc_ids[0]);
    assert_eq!(sm["data_coding"], 0);
    assert_eq!(sm["esm_class"], 0);
    assert_eq!(sm["registered_delivery"], 1);
    assert_eq!(sm["priority_flag"], 0);
    assert_eq!(sm["protocol_id"], 0);
    assert_eq!(sm["service_type"], "");
    assert_eq!(
        (
            &sm["source_addr"],
            &sm["source_addr_ton"],
            &sm["source_addr_npi"]
        ),
        (&Value::from("Herald"), &Value::from(5), &Value::from(0))
    );
    assert_eq!(
        (
            &sm["destination_addr"],
            &sm["dest_addr_ton"],
            &sm["dest_addr_npi"]
        ),
        (
            &Value::from("447700900123"),
            &Value::from(1),
            &Value::from(1)
        )
    );
    assert_eq!(sm["udh"], serde_json::json!([]));
    assert_eq!(sm["text"], gsm);
    let r = next_receipt(&mut events).await;
    assert_eq!(
        (r.smsc_id.as_str(), r.state),
        (ack.smsc_ids[0].as_str(), ReceiptState::Delivered)
    );

    // UCS-2.
    let ucs2 = "Привет, 世界";
    connector
        .submit(&outgoing(ucs2))
        .await
        .expect("ucs2 accepted");
    let sm = smsc.next("submit_sm").await;
    assert_eq!(sm["data_coding"], 8);
    assert_eq!(sm["text"], ucs2);
    next_receipt(&mut events).await;

    // A long message: three UDH parts with one 8-bit reference.
    let long: String = (0..40).map(|i| format!("word{i:03} ")).collect();
    let ack = connector
        .submit(&outgoing(&long))
        .await
        .expect("long accepted");
    assert_eq!(ack.smsc_ids.len(), 3);
    let mut joined = String::new();
    let mut reference = None;
    for seq in 1..=3u8 {
        let sm = smsc.next("submit_sm").await;
        assert_eq!(sm["esm_class"].as_u64().expect("esm") & 0x40, 0x40, "UDHI");
        let udh = sm["udh"][0].as_str().expect("one UDH element").to_string();
        let r = &udh[4..6];
        assert_eq!(*reference.get_or_insert(r.to_string()), r, "same reference");
        assert_eq!(udh, format!("0003{r}03{seq:02x}"));
        joined.push_str(sm["text"].as_str().expect("text"));
    }
    assert_eq!(joined, long);
    let mut ids: Vec<String> = Vec::new();
    for _ in 0..3 {
        ids.push(next_receipt(&mut events).await.smsc_id);
    }
    ids.sort();
    let mut want = ack.smsc_ids.clone();
    want.sort();
    assert_eq!(ids, want);

    // A receipt carried by its text alone (no TLVs), reporting failure.
    let ack = connector
        .submit(&outgoing("this one is undeliverable"))
        .await
        .expect("accepted");
    smsc.next("submit_sm").await;
    let r = next_receipt(&mut events).await;
    assert_eq!(r.smsc_id, ack.smsc_ids[0]);
    assert_eq!(r.state, ReceiptState::Undeliverable);
    assert_eq!(r.error_code.as_deref(), Some("042"));

    // Inbound: UCS-2 from an international number.
    smsc.command(serde_json::json!({"mo": {
        "source_addr": "447700900777", "source_addr_ton": 1, "source_addr_npi": 1,
        "destination_addr": "12345", "esm_class": 0, "data_coding": 8,
        "short_message": "Grüße 👋"
    }}))
    .await;
    let mo = next_inbound(&mut events).await;
    assert_eq!(
        (mo.from.as_str(), mo.to.as_str(), mo.body.as_str()),
        ("+447700900777", "12345", "Grüße 👋")
    );

    // Inbound: a two-part GSM message joined from its UDH parts.
    for (seq, text) in [(1u8, "STOP all "), (2u8, "messages")] {
        let mut bytes = vec![0x05, 0x00, 0x03, 0x7A, 0x02, seq];
        bytes.extend(gsm_septets(text));
        smsc.command(serde_json::json!({"mo": {
            "source_addr": "447700900778", "source_addr_ton": 1, "source_addr_npi": 1,
            "destination_addr": "12345", "esm_class": 0x40, "data_coding": 0,
            "short_message_hex": hex::encode(bytes)
        }}))
        .await;
    }
    let mo = next_inbound(&mut events).await;
    assert_eq!(
        (mo.from.as_str(), mo.body.as_str()),
        ("+447700900778", "STOP all messages")
    );

    // Every deliver_sm (6 receipts, 3 inbound parts) was acknowledged with status 0.
    for _ in 0..9 {
        let resp = smsc.next("deliver_sm_resp").await;
        assert_eq!(resp["command_status"], 0);
    }

    connector.shutdown().await;
    smsc.next("unbind").await;

    // SAR mode against the same SMSC.
    let (tx, mut events) = mpsc::channel(64);
    let sar = SmppConnector::start(settings("npm-sar", smsc.port, "split = \"sar\"\n"), tx)
        .expect("start");
    ready(&sar).await;
    let long = "s".repeat(200);
    sar.submit(&outgoing(&long)).await.expect("sar accepted");
    let mut reference = None;
    for seq in 1..=2 {
        let sm = smsc.next("submit_sm").await;
        assert_eq!(sm["esm_class"], 0);
        assert_eq!(sm["udh"], serde_json::json!([]));
        assert_eq!(sm["sar_total_segments"], 2);
        assert_eq!(sm["sar_segment_seqnum"], seq);
        let r = sm["sar_msg_ref_num"].as_u64().expect("sar_msg_ref_num");
        assert_eq!(*reference.get_or_insert(r), r);
    }
    next_receipt(&mut events).await;
    sar.shutdown().await;
    smsc.command(serde_json::json!({"quit": true})).await;
}

#[tokio::test]
async fn smsc_sim_interoperates_with_an_esme_built_on_python_smpplib() {
    require(
        "python3",
        &["-c", "import smpplib"],
        "python3 with smpplib; run `pip install smpplib` (.ci/run does)",
    )
    .await;
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let sim = SmscSim::start(
        listener,
        SimConfig {
            system_id: Some("interop".into()),
            password: Some("secret".into()),
            dlr_delay: Duration::from_millis(20),
            ..SimConfig::default()
        },
    )
    .await;
    let port = sim.local_addr().port().to_string();
    let script = interop_dir().join("smpplib_client.py");
    let output = tokio::time::timeout(
        Duration::from_secs(40),
        Command::new("python3")
            .arg(&script)
            .args(["127.0.0.1", &port, "interop", "secret"])
            .kill_on_drop(true)
            .output(),
    )
    .await
    .expect("smpplib client finished in time")
    .expect("run python3");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(
        output.status.success(),
        "smpplib client failed ({}):\n{stdout}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let events: Vec<Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect();
    let of = |kind: &str| -> Vec<&Value> { events.iter().filter(|e| e["event"] == kind).collect() };

    // What smpplib sent is what the simulator recorded, field by field.
    let sent = of("submit_sm");
    let recorded = sim.submitted();
    assert_eq!(sent.len(), recorded.len());
    assert!(sent.len() >= 4, "gsm, ucs2 and at least two long parts");
    for (s, r) in sent.iter().zip(&recorded) {
        assert_eq!(s["data_coding"], r.data_coding, "{s}");
        assert_eq!(s["esm_class"], r.esm_class, "{s}");
        assert_eq!(s["short_message"], hex::encode(&r.short_message), "{s}");
        assert_eq!(r.source_addr, "Interop");
        assert_eq!(r.destination_addr, "447700900001");
        assert_eq!(r.registered_delivery, 1);
        assert_eq!(r.system_id, "interop");
    }
    let by_name = |name: &'static str| -> Vec<&Value> {
        sent.iter().copied().filter(|s| s["name"] == name).collect()
    };
    assert_eq!(by_name("gsm")[0]["data_coding"], 0);
    assert_eq!(by_name("ucs2")[0]["data_coding"], 8);
    let long = by_name("long");
    assert!(long.len() >= 2);
    for (i, part) in long.iter().enumerate() {
        assert_eq!(part["esm_class"].as_u64().expect("esm") & 0x40, 0x40);
        let sm = part["short_message"].as_str().expect("hex");
        assert_eq!(&sm[..6], "050003", "concatenation UDH");
        assert_eq!(&sm[8..10], format!("{:02x}", long.len()), "total parts");
        assert_eq!(&sm[10..12], format!("{:02x}", i + 1), "part number");
    }
    assert_eq!(sim.stats().parts, long.len() as u64);

    // submit_sm_resp ids are the simulator's; every part got a receipt smpplib parsed.
    let ids: Vec<String> = recorded.iter().map(|r| r.message_id.clone()).collect();
    let resp_ids: Vec<String> = of("submit_sm_resp")
        .iter()
        .map(|e| {
            assert_eq!(e["status"], 0);
            e["message_id"].as_str().expect("id").to_string()
        })
        .collect();
    assert_eq!(resp_ids, ids);
    let receipts = of("deliver_sm");
    assert_eq!(receipts.len(), ids.len());
    for r in receipts {
        assert_eq!(r["esm_class"], 4, "MC delivery receipt");
        assert_eq!(r["message_state"], 2, "DELIVERED");
        assert_eq!(r["source_addr"], "447700900001");
        assert_eq!(r["destination_addr"], "Interop");
        let id = r["receipted_message_id"]
            .as_str()
            .expect("receipted_message_id");
        assert!(ids.iter().any(|i| i == id), "{id} not submitted");
        let text = r["short_message"].as_str().expect("text");
        assert!(text.starts_with(&format!("id:{id} ")), "{text}");
        assert!(text.contains(" stat:DELIVRD err:000"), "{text}");
    }
    assert_eq!(of("done").len(), 1);
    assert_eq!(sim.stats().deliver_sm_resps, ids.len() as u64);
    sim.shutdown().await;
}
