#!/usr/bin/env python3
"""An ESME written with Python's smpplib, to test `herald smsc-sim` against SMPP code
written elsewhere (tests/it/interop.rs runs it).

Usage: smpplib_client.py HOST PORT SYSTEM_ID PASSWORD

Binds as a transceiver, submits a GSM message, a UCS-2 message and a long GSM message
split by smpplib itself (UDH, esm_class 0x40), waits for one delivery receipt per
submitted part, unbinds. Everything it sends and receives is printed as one JSON object
per line on stdout; exit status 0 means the whole exchange completed.
"""

import json
import sys
import time
import warnings

try:
    import smpplib.client
    import smpplib.consts
    import smpplib.gsm
except ImportError:
    print(
        "smpplib is not installed: run `pip install smpplib` (see .ci/run)",
        file=sys.stderr,
    )
    sys.exit(3)

warnings.simplefilter("ignore", DeprecationWarning)

MESSAGES = [
    ("gsm", "Hello from smpplib @ \u00a3 $ \u00e8 \u00c7 !"),
    ("ucs2", "\u041f\u0440\u0438\u0432\u0435\u0442, \u4e16\u754c"),
    ("long", " ".join("part%03d" % i for i in range(40))),
]
TIMEOUT_SECONDS = 15


def emit(**fields):
    print(json.dumps(fields), flush=True)


def text(value):
    if value is None:
        return None
    if isinstance(value, bytes):
        return value.decode("latin-1")
    return str(value)


def main():
    host, port, system_id, password = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4]
    client = smpplib.client.Client(host, port, timeout=TIMEOUT_SECONDS, allow_unknown_opt_params=True)
    receipts = []

    def on_sent(pdu, **_):
        emit(
            event="submit_sm_resp",
            sequence=pdu.sequence,
            status=pdu.status,
            message_id=text(pdu.message_id),
        )

    def on_received(pdu, **_):
        emit(
            event="deliver_sm",
            esm_class=pdu.esm_class,
            data_coding=pdu.data_coding,
            source_addr=text(pdu.source_addr),
            destination_addr=text(pdu.destination_addr),
            receipted_message_id=text(pdu.receipted_message_id),
            message_state=pdu.message_state,
            short_message=text(pdu.short_message),
        )
        receipts.append(pdu)

    client.set_message_sent_handler(on_sent)
    client.set_message_received_handler(on_received)
    client.connect()
    client.bind_transceiver(system_id=system_id, password=password)
    emit(event="bound")

    parts_sent = 0
    for name, body in MESSAGES:
        parts, encoding, esm_class = smpplib.gsm.make_parts(body)
        for part in parts:
            pdu = client.send_message(
                source_addr_ton=smpplib.consts.SMPP_TON_ALNUM,
                source_addr_npi=smpplib.consts.SMPP_NPI_UNK,
                source_addr="Interop",
                dest_addr_ton=smpplib.consts.SMPP_TON_INTL,
                dest_addr_npi=smpplib.consts.SMPP_NPI_ISDN,
                destination_addr="447700900001",
                short_message=part,
                data_coding=encoding,
                esm_class=esm_class,
                registered_delivery=True,
            )
            parts_sent += 1
            emit(
                event="submit_sm",
                name=name,
                sequence=pdu.sequence,
                data_coding=encoding,
                esm_class=esm_class,
                short_message=part.hex(),
                body=body,
            )

    deadline = time.time() + TIMEOUT_SECONDS
    while len(receipts) < parts_sent:
        if time.time() > deadline:
            emit(event="error", reason="receipts missing", got=len(receipts), want=parts_sent)
            sys.exit(1)
        client.read_once()

    client.unbind()
    client.disconnect()
    emit(event="done", parts=parts_sent, receipts=len(receipts))


if __name__ == "__main__":
    main()
