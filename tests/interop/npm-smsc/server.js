#!/usr/bin/env node
// An SMSC written with the npm `smpp` package, to test Herald's SMPP connector against
// SMPP code written elsewhere (tests/it/interop.rs runs it).
//
// Usage: node server.js            (listens on 127.0.0.1, a free port)
//
// stdout, one JSON object per line: {"event":"listening","port":N} first, then every
// PDU it receives as the npm package decoded it (submit_sm with its UDH elements and
// its text decoded by the package's own GSM 03.38 / UCS-2 tables).
// stdin, one JSON object per line: {"mo": {...deliver_sm fields...}} sends an inbound
// deliver_sm on the most recent session; {"quit": true} exits.
//
// Receipts: each accepted submit_sm gets a deliver_sm receipt. Text containing
// "undeliverable" gets "stat:UNDELIV err:042" in the receipt text only (no TLVs), so the
// text parser is exercised; everything else gets DELIVRD with receipted_message_id and
// message_state TLVs as well.

'use strict';

let smpp;
try {
  smpp = require('smpp');
} catch (e) {
  process.stderr.write('the npm package `smpp` is missing: run `npm ci` in tests/interop/npm-smsc (see .ci/run)\n');
  process.exit(3);
}
const readline = require('readline');

function emit(fields) {
  process.stdout.write(JSON.stringify(fields) + '\n');
}

function hex(buffer) {
  return Buffer.isBuffer(buffer) ? buffer.toString('hex') : null;
}

let nextId = 0x5000;
let latest = null;

function receiptDate(date) {
  const pad = (n) => String(n).padStart(2, '0');
  return pad(date.getUTCFullYear() % 100) + pad(date.getUTCMonth() + 1) + pad(date.getUTCDate()) +
    pad(date.getUTCHours()) + pad(date.getUTCMinutes());
}

const server = smpp.createServer((session) => {
  latest = session;
  for (const command of ['bind_transceiver', 'bind_transmitter', 'bind_receiver']) {
    session.on(command, (pdu) => {
      emit({
        event: 'bind',
        command,
        system_id: pdu.system_id,
        password: pdu.password,
        system_type: pdu.system_type,
        interface_version: pdu.interface_version,
      });
      session.send(pdu.response());
    });
  }
  session.on('enquire_link', (pdu) => {
    emit({ event: 'enquire_link' });
    session.send(pdu.response());
  });
  session.on('unbind', (pdu) => {
    emit({ event: 'unbind' });
    session.send(pdu.response());
    session.close();
  });
  session.on('deliver_sm_resp', (pdu) => {
    emit({ event: 'deliver_sm_resp', sequence_number: pdu.sequence_number, command_status: pdu.command_status });
  });
  session.on('submit_sm', (pdu) => {
    const id = (nextId++).toString(16);
    const sm = pdu.short_message || {};
    const text = typeof sm.message === 'string' ? sm.message : null;
    emit({
      event: 'submit_sm',
      message_id: id,
      service_type: pdu.service_type,
      source_addr_ton: pdu.source_addr_ton,
      source_addr_npi: pdu.source_addr_npi,
      source_addr: pdu.source_addr,
      dest_addr_ton: pdu.dest_addr_ton,
      dest_addr_npi: pdu.dest_addr_npi,
      destination_addr: pdu.destination_addr,
      esm_class: pdu.esm_class,
      protocol_id: pdu.protocol_id,
      priority_flag: pdu.priority_flag,
      registered_delivery: pdu.registered_delivery,
      data_coding: pdu.data_coding,
      udh: (sm.udh || []).map(hex),
      text,
      sar_msg_ref_num: pdu.sar_msg_ref_num === undefined ? null : pdu.sar_msg_ref_num,
      sar_total_segments: pdu.sar_total_segments === undefined ? null : pdu.sar_total_segments,
      sar_segment_seqnum: pdu.sar_segment_seqnum === undefined ? null : pdu.sar_segment_seqnum,
    });
    session.send(pdu.response({ message_id: id }));
    const now = receiptDate(new Date());
    const failed = text !== null && text.includes('undeliverable');
    const stat = failed ? 'UNDELIV' : 'DELIVRD';
    const receipt = {
      source_addr_ton: pdu.dest_addr_ton,
      source_addr_npi: pdu.dest_addr_npi,
      source_addr: pdu.destination_addr,
      dest_addr_ton: pdu.source_addr_ton,
      dest_addr_npi: pdu.source_addr_npi,
      destination_addr: pdu.source_addr,
      esm_class: 0x04,
      data_coding: 0,
      short_message: `id:${id} sub:001 dlvrd:${failed ? '000' : '001'} submit date:${now} done date:${now} stat:${stat} err:${failed ? '042' : '000'} text:`,
    };
    if (!failed) {
      receipt.receipted_message_id = id;
      receipt.message_state = 2;
    }
    setTimeout(() => session.deliver_sm(receipt), 20);
  });
  session.on('error', (e) => emit({ event: 'session_error', message: String(e) }));
});

server.listen(0, '127.0.0.1', () => {
  emit({ event: 'listening', port: server.address().port });
});

readline.createInterface({ input: process.stdin }).on('line', (line) => {
  let command;
  try {
    command = JSON.parse(line);
  } catch (e) {
    emit({ event: 'bad_command', line });
    return;
  }
  if (command.quit) {
    process.exit(0);
  }
  if (command.mo) {
    if (!latest) {
      emit({ event: 'mo_failed', reason: 'no session' });
      return;
    }
    const mo = Object.assign({}, command.mo);
    if (mo.short_message_hex !== undefined) {
      mo.short_message = Buffer.from(mo.short_message_hex, 'hex');
      delete mo.short_message_hex;
    }
    latest.deliver_sm(mo);
    emit({ event: 'mo_sent' });
  }
});
process.stdin.on('end', () => process.exit(0));
