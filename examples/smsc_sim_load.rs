//! Throughput check for the SMSC simulator: one bind, many `submit_sm` in flight.
//!
//! ```text
//! cargo run --release --example smsc_sim_load -- [--messages N] [--window W] [--receipts] [--addr HOST:PORT]
//! ```
//!
//! Without `--addr` it starts an in-process simulator (recording off) on 127.0.0.1:0, so
//! client and server share the machine's cores: the figure is a lower bound. The client
//! is deliberately thin, rusmpp's codec on a split `TcpStream`: a writer task keeps up to
//! `W` submits outstanding (a semaphore), a reader task counts responses and returns
//! permits. With `--receipts` every submit asks for a delivery receipt and the reader also
//! counts the `deliver_sm` it receives (without answering them; the simulator tolerates
//! that).

use std::{
    sync::Arc,
    time::{Duration, Instant},
};

use futures_util::{SinkExt, StreamExt};
use herald::smsc_sim::{SimConfig, SmscSim};
use rusmpp::{
    Command, CommandId, CommandStatus, Pdu,
    pdus::{BindTransceiver, SubmitSm},
    tokio_codec::CommandCodec,
    types::{COctetString, OctetString},
    values::{EsmClass, RegisteredDelivery},
};
use tokio::{net::TcpStream, sync::Semaphore};
use tokio_util::codec::{FramedRead, FramedWrite};

struct Args {
    messages: u64,
    window: usize,
    receipts: bool,
    addr: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut args = Args {
        messages: 500_000,
        window: 256,
        receipts: false,
        addr: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--messages" => args.messages = value()?.parse().map_err(|e| format!("{e}"))?,
            "--window" => args.window = value()?.parse().map_err(|e| format!("{e}"))?,
            "--addr" => args.addr = Some(value()?),
            "--receipts" => args.receipts = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(args)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = parse_args()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<(), Box<dyn std::error::Error>> {
    let (addr, sim) = match &args.addr {
        Some(addr) => (addr.clone(), None),
        None => {
            let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
            let sim = SmscSim::start(
                listener,
                SimConfig {
                    record: false,
                    dlr_delay: Duration::from_millis(50),
                    ..SimConfig::default()
                },
            )
            .await;
            (sim.local_addr().to_string(), Some(sim))
        }
    };

    let stream = TcpStream::connect(&addr).await?;
    stream.set_nodelay(true)?;
    let (read, write) = stream.into_split();
    let mut reader = FramedRead::new(read, CommandCodec::new());
    let mut writer = FramedWrite::new(write, CommandCodec::new());

    let bind = BindTransceiver::builder()
        .system_id(COctetString::from_static_slice(b"load\0")?)
        .password(COctetString::from_static_slice(b"pw\0")?)
        .build();
    writer
        .send(Command::new(CommandStatus::EsmeRok, 1, bind))
        .await?;
    match reader.next().await {
        Some(Ok(resp)) if resp.status() == CommandStatus::EsmeRok => {}
        other => return Err(format!("bind failed: {other:?}").into()),
    }

    let submit = SubmitSm::builder()
        .source_addr(COctetString::from_static_slice(b"12345\0")?)
        .destination_addr(COctetString::from_static_slice(b"491700000001\0")?)
        .esm_class(EsmClass::from(0u8))
        .registered_delivery(RegisteredDelivery::from(u8::from(args.receipts)))
        .short_message(OctetString::from_static_slice(
            b"Your code is 123456. It expires in 10 minutes.",
        )?)
        .build();

    let window = Arc::new(Semaphore::new(args.window));
    let messages = args.messages;
    let expect_receipts = if args.receipts { messages } else { 0 };

    let reader_window = window.clone();
    let reader_task = tokio::spawn(async move {
        let (mut ok, mut failed, mut receipts) = (0u64, 0u64, 0u64);
        while ok + failed < messages || receipts < expect_receipts {
            match reader.next().await {
                Some(Ok(command)) => match command.id() {
                    CommandId::SubmitSmResp => {
                        if command.status() == CommandStatus::EsmeRok {
                            ok += 1;
                        } else {
                            failed += 1;
                        }
                        reader_window.add_permits(1);
                    }
                    CommandId::DeliverSm => receipts += 1,
                    _ => {}
                },
                Some(Err(error)) => return Err(format!("decode: {error}")),
                None => return Err("connection closed".to_owned()),
            }
        }
        Ok((ok, failed, receipts, Instant::now()))
    });

    let started = Instant::now();
    for n in 0..messages {
        let permit = match window.try_acquire() {
            Ok(permit) => permit,
            Err(_) => {
                // Window full: push out what is buffered, then wait for responses.
                SinkExt::<Command>::flush(&mut writer).await?;
                window.acquire().await?
            }
        };
        permit.forget();
        let sequence_number = (n % 0x7FFF_FFFE) as u32 + 2;
        writer
            .feed(Command::new(
                CommandStatus::EsmeRok,
                sequence_number,
                Pdu::SubmitSm(submit.clone()),
            ))
            .await?;
    }
    SinkExt::<Command>::flush(&mut writer).await?;

    let (ok, failed, receipts, finished) = reader_task.await??;
    let elapsed = finished.duration_since(started);
    let rate = (ok + failed) as f64 / elapsed.as_secs_f64();
    println!(
        "submit_sm: {ok} ok, {failed} failed, {receipts} receipts in {:.3}s over one bind (window {}): {rate:.0} submit_sm/s",
        elapsed.as_secs_f64(),
        args.window
    );
    if let Some(sim) = sim {
        let stats = sim.stats();
        println!(
            "simulator: {} submits, {} receipts sent, {} scheduled",
            stats.submits, stats.receipts_sent, stats.receipts_scheduled
        );
        sim.shutdown().await;
    }
    Ok(())
}
