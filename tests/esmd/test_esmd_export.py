"""SIEM export: CEF and JSON records, and delivery over real UDP/TCP/TLS receivers and a file,
by the persisted cursor, through an outage, on both databases."""

from __future__ import annotations

import json
import re
import time
import urllib.request
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from esmd_harness import Esm, checkin_body, new_event
from ops_harness import OpsServer
from siem_listeners import Receiver, parse_octet_counted
from sqlalchemy import select
from tls_ca import TestCA

from esmd.config import load_settings
from esmd.db.engine import Database
from esmd.db.tables_ops import EXPORT_CURSORS
from esmd.export.config import ExportSink
from esmd.export.exporter import SinkExporter
from esmd.export.formats import ExportRow, cef, escape_extension, escape_header, frame, syslog
from esmd.export.sinks import SinkError
from trapsapi.errors import ConfigError

CEF_HEADER = re.compile(r"(?<!\\)\|")


def _row(**overrides: Any) -> ExportRow:
    values: dict[str, Any] = {
        "seq": 7,
        "id": "0b0c6d1e-1111-4222-8333-444455556666",
        "agent_id": "a1b2c3d4-0000-4000-8000-000000000001",
        "hostname": "web-01",
        "time": datetime(2026, 11, 3, 9, 5, 7, 250000, tzinfo=UTC),
        "received_at": datetime(2026, 11, 3, 9, 5, 8, tzinfo=UTC),
        "module": "malware",
        "severity": "high",
        "action": "prevented",
        "process_path": "/tmp/a|b=c\\d",
        "sha256": "ab" * 32,
        "pid": 4242,
        "ppid": 1,
        "parent_path": "/bin/bash",
        "user": "root",
        "uid": 0,
        "cmdline": "evil --x=1\nsecond line",
        "details": {},
        "agent_ip": "10.0.0.5",
    }
    values.update(overrides)
    return ExportRow(**values)


def parse_cef(record: str) -> tuple[list[str], dict[str, str]]:
    """Header fields and extension of a CEF record, undoing the escaping."""
    start = record.index("CEF:0|")
    parts = CEF_HEADER.split(record[start:], maxsplit=7)
    header = [p.replace("\\|", "|").replace("\\\\", "\\") for p in parts[:7]]
    extension: dict[str, str] = {}
    for match in re.finditer(r"(\w+)=((?:\\.|[^\\=])*?)(?= \w+=|$)", parts[7]):
        raw = match.group(2)
        value = re.sub(r"\\(.)", lambda m: {"n": "\n", "r": "\r"}.get(m[1], m[1]), raw)
        extension[match.group(1)] = value
    return header, extension


# --- records --------------------------------------------------------------------------------


def test_cef_escaping_rules() -> None:
    assert escape_header("a|b\\c\nd") == "a\\|b\\\\c d"
    assert escape_extension("x=y\\z\nw\r") == "x\\=y\\\\z\\nw\\r"
    assert escape_extension("plain value with | pipe") == "plain value with | pipe"


def test_cef_record_has_the_fields_a_siem_needs() -> None:
    record = cef(_row())
    assert "\n" not in record
    header, ext = parse_cef(record)
    assert header[:3] == ["CEF:0", "Traps", "ESM"]
    assert header[4] == "malware"  # signature id = module
    assert header[5] == "malware prevented: a|b=c\\d"
    assert header[6] == "8"
    assert ext["rt"] == str(
        int(datetime(2026, 11, 3, 9, 5, 7, 250000, tzinfo=UTC).timestamp() * 1000)
    )
    assert ext["dvchost"] == "web-01"
    assert ext["dvc"] == ext["src"] == "10.0.0.5"
    assert ext["deviceExternalId"] == "a1b2c3d4-0000-4000-8000-000000000001"
    assert (ext["suser"], ext["suid"]) == ("root", "0")
    assert ext["sproc"] == "/tmp/a|b=c\\d"
    assert ext["fileHash"] == "ab" * 32
    assert ext["act"] == "blocked"
    assert ext["cs1"] == "0b0c6d1e-1111-4222-8333-444455556666"
    assert ext["cs2"] == "/bin/bash"
    assert ext["cs3"] == "evil --x=1\nsecond line"
    assert ext["cs3Label"] == "cmdline"
    # Unknown values are left out rather than sent empty.
    _, sparse = parse_cef(cef(_row(sha256=None, user=None, uid=None, agent_ip=None)))
    assert not {"fileHash", "suser", "suid", "dvc", "src"} & set(sparse)
    severities = {s: parse_cef(cef(_row(severity=s)))[0][6] for s in ("informational", "critical")}
    assert severities == {"informational": "1", "critical": "10"}


def test_syslog_headers_and_framing() -> None:
    row = _row()
    rfc5424 = syslog("MSG", row, "rfc5424", facility=13, sender="web 01")
    assert rfc5424 == "<107>1 2026-11-03T09:05:07.250Z web_01 esmd - malware - MSG"
    rfc3164 = syslog("MSG", row, "rfc3164", facility=13, sender="web-01")
    assert rfc3164 == "<107>Nov  3 09:05:07 web-01 esmd: MSG"
    assert syslog("MSG", row, "none", facility=13) == "MSG"
    payload = "é".encode()
    assert frame(payload, "octet") == b"2 " + payload
    assert parse_octet_counted(frame(b"a b", "octet") + frame(b"cd", "octet") + b"5 ab") == (
        [b"a b", b"cd"],
        b"5 ab",
    )


def test_sink_settings_from_env_and_file(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv(
        "ESMD_EXPORT_SINKS",
        json.dumps([{"name": "siem", "transport": "tls", "host": "siem", "port": 6514}]),
    )
    settings = load_settings(data_dir=tmp_path)
    assert settings.export_sinks[0].effective_framing == "octet"
    monkeypatch.setenv("ESMD_EXPORT_SINKS", json.dumps([{"name": "siem", "transport": "tcp"}]))
    with pytest.raises(ConfigError, match="transport tcp needs host and port"):
        load_settings(data_dir=tmp_path)
    monkeypatch.setenv("ESMD_EXPORT_SINKS", json.dumps([{"name": "bad name", "path": "/x"}]))
    with pytest.raises(ConfigError, match=r"export_sinks\.0\.name"):
        load_settings(data_dir=tmp_path)
    monkeypatch.delenv("ESMD_EXPORT_SINKS")
    config = tmp_path / "esmd.toml"
    config.write_text(
        '[[export_sinks]]\nname = "jsonl"\nformat = "json"\ntransport = "file"\n'
        'path = "/var/log/esm/events.jsonl"\nmin_severity = "high"\nmodules = ["malware"]\n'
    )
    monkeypatch.setenv("ESMD_CONFIG", str(config))
    sink = load_settings(data_dir=tmp_path).export_sinks[0]
    assert (sink.format, sink.transport, sink.min_severity, sink.modules) == (
        "json",
        "file",
        "high",
        ["malware"],
    )


# --- delivery -------------------------------------------------------------------------------


def _exporter(esm: Esm, sink: ExportSink, batch: int = 500) -> SinkExporter:
    settings = esm.settings.model_copy(update={"export_settle_s": 0, "export_batch_size": batch})
    return SinkExporter(Database.from_url(settings.url, pool_size=2), sink, settings)


def _upload(esm: Esm, agent: Any, count: int, **fields: Any) -> list[str]:
    events = [new_event(**fields) for _ in range(count)]
    agent.upload_events(events)
    return [e["id"] for e in events]


def _cursor(esm: Esm, name: str) -> int:
    with esm.engine.connect() as connection:
        return int(
            connection.execute(
                select(EXPORT_CURSORS.c.last_seq).where(EXPORT_CURSORS.c.sink == name)
            ).scalar_one()
        )


def _event_ids(messages: list[bytes]) -> list[str]:
    return [parse_cef(m.decode())[1]["cs1"] for m in messages]


def test_cef_over_udp_tcp_and_tls_with_filters(esm: Esm, tmp_path: Path) -> None:
    ca = TestCA(tmp_path / "ca")
    server = ca.server("siem")
    agent = esm.enroll("web-01")
    agent.checkin(checkin_body(ips=["10.0.0.5"]))
    high = _upload(esm, agent, 2, module="malware", severity="high")
    _upload(esm, agent, 1, module="malware", severity="low")
    _upload(esm, agent, 1, module="child-process", severity="critical")

    udp, tcp = Receiver("udp"), Receiver("tcp")
    tls = Receiver("tls", cert=server.cert, key=server.key)
    try:
        sinks = [
            ExportSink(name="udp", transport="udp", host="127.0.0.1", port=udp.port),
            ExportSink(
                name="tcp",
                transport="tcp",
                host="127.0.0.1",
                port=tcp.port,
                syslog_header="rfc3164",
                min_severity="high",
            ),
            ExportSink(
                name="tls",
                transport="tls",
                host="127.0.0.1",
                port=tls.port,
                ca_file=ca.pem,
                min_severity="medium",
                modules=["malware"],
            ),
        ]
        for sink in sinks:
            exporter = _exporter(esm, sink)
            assert exporter.step().read == 4
            assert exporter.step().read == 0  # the cursor moved past all four
            exporter.db.dispose()
        assert len(udp.wait_for(4)) == 4
        tcp_messages = tcp.wait_for(3)
        tls_messages = tls.wait_for(2)
        time.sleep(0.2)
        assert len(tcp.messages) == 3 and len(tls.messages) == 2
        assert sorted(_event_ids(tls_messages)) == sorted(high)
        pris = sorted(int(m[1:4]) for m in udp.messages)  # RFC 5424; facility 13 (log audit)
        assert pris == [104 + 2, 104 + 3, 104 + 3, 104 + 5]  # crit, err, err, notice
        assert all(m[5:7] == b"1 " for m in udp.messages)
        assert all(re.match(rb"<\d+>[A-Z][a-z]{2} [ \d]\d ", m) for m in tcp_messages)
        header, ext = parse_cef(tls_messages[0].decode())
        assert (header[1], header[4], ext["dvchost"], ext["src"]) == (
            "Traps",
            "malware",
            "web-01",
            "10.0.0.5",
        )
        assert ext["deviceExternalId"] == agent.agent_id and ext["act"] == "blocked"
    finally:
        for receiver in (udp, tcp, tls):
            receiver.stop()


def test_tls_sink_refuses_an_unknown_ca(esm: Esm, tmp_path: Path) -> None:
    trusted, other = TestCA(tmp_path / "a", "CA A"), TestCA(tmp_path / "b", "CA B")
    server = other.server("siem")
    agent = esm.enroll()
    _upload(esm, agent, 1)
    tls = Receiver("tls", cert=server.cert, key=server.key)
    try:
        sink = ExportSink(
            name="tls", transport="tls", host="127.0.0.1", port=tls.port, ca_file=trusted.pem
        )
        exporter = _exporter(esm, sink)
        with pytest.raises(SinkError, match=r"CERTIFICATE_VERIFY_FAILED|certificate verify"):
            exporter.step()
        assert _cursor(esm, "tls") == 0 and tls.messages == []
        exporter.db.dispose()
    finally:
        tls.stop()


def test_outage_and_restart_lose_nothing(esm: Esm) -> None:
    agent = esm.enroll()
    first = _upload(esm, agent, 5)
    tcp = Receiver("tcp")
    port = tcp.port
    sink = ExportSink(name="siem", transport="tcp", host="127.0.0.1", port=port)
    exporter = _exporter(esm, sink, batch=3)
    received: list[bytes] = []
    try:
        while exporter.step().read:
            pass
        received += tcp.wait_for(5)
        tcp.stop()
        cursor = _cursor(esm, "siem")

        second = _upload(esm, agent, 4)
        with pytest.raises(SinkError, match="siem"):
            exporter.step()  # the dead connection is noticed before the batch is written
        with pytest.raises(SinkError, match="refused"):
            exporter.step()
        assert _cursor(esm, "siem") == cursor  # nothing confirmed, nothing skipped

        tcp = Receiver("tcp", port=port)
        restarted = _exporter(esm, sink, batch=3)  # a new process resumes from the cursor
        exporter.db.dispose()
        exporter = restarted
        while exporter.step().read:
            pass
        received += tcp.wait_for(4)
    finally:
        tcp.stop()
        exporter.db.dispose()
    ids = _event_ids(received)
    assert sorted(ids) == sorted(first + second)  # every event once: no loss, no duplicate
    with esm.engine.connect() as connection:
        exported = connection.execute(
            select(EXPORT_CURSORS.c.exported).where(EXPORT_CURSORS.c.sink == "siem")
        ).scalar_one()
    assert exported == 9


def test_background_exporter_with_retries_json_and_metrics(
    esm_settings: Any, tmp_path: Path
) -> None:
    probe = Receiver("tcp", framing="lf")
    port = probe.port
    probe.stop()  # the SIEM is down when esmd starts
    jsonl = tmp_path / "siem" / "events.jsonl"
    settings = esm_settings.model_copy(
        update={
            "export_settle_s": 0,
            "export_poll_s": 0.05,
            "export_retry_max_s": 0.2,
            "export_sinks": [
                ExportSink(
                    name="json-tcp", format="json", transport="tcp", host="127.0.0.1", port=port
                ),
                ExportSink(
                    name="file",
                    format="json",
                    transport="file",
                    path=jsonl,
                    max_bytes=4096,
                    backups=50,
                ),
            ],
        }
    )
    with OpsServer(settings) as esm:
        agent = esm.enroll()
        agent.checkin(checkin_body())
        ids = [_upload(esm, agent, 10) for _ in range(3)]
        time.sleep(0.5)
        metrics = _metrics(esm.url)
        assert re.search(r'esmd_export_failures_total\{sink="json-tcp"\} [1-9]', metrics)
        tcp = Receiver("tcp", port=port, framing="lf")
        try:
            lines = tcp.wait_for(30)
        finally:
            tcp.stop()
        records = [json.loads(line) for line in lines]
        expected = sorted(i for batch in ids for i in batch)
        assert sorted(r["event_id"] for r in records) == expected
        assert {r["hostname"] for r in records} == {"web-01"}
        assert records[0]["agent_ip"] == "10.0.0.5" and records[0]["vendor"] == "Traps"
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            metrics = _metrics(esm.url)
            if 'esmd_export_events_total{sink="file"} 30' in metrics:
                break
            time.sleep(0.05)
        assert 'esmd_export_events_total{sink="json-tcp"} 30' in metrics
        assert 'esmd_export_events_total{sink="file"} 30' in metrics
        assert 'esmd_export_lag_seconds{sink="json-tcp"} 0' in metrics
    files = sorted(jsonl.parent.glob("events.jsonl*"))
    assert len(files) > 1  # rotated at 4 KiB
    assert all(f.stat().st_size <= 4096 for f in files)
    written = [json.loads(line) for f in files for line in f.read_text().splitlines()]
    assert sorted(r["event_id"] for r in written) == sorted(i for batch in ids for i in batch)


def _metrics(url: str) -> str:
    with urllib.request.urlopen(f"{url}/metrics", timeout=10) as reply:
        text: str = reply.read().decode()
    return text


def test_two_exporters_of_one_sink_never_both_lead(esm: Esm) -> None:
    """On PostgreSQL the advisory lock lets one process export a sink; SQLite is one process."""
    if "sqlite" in esm.settings.url:
        pytest.skip("SQLite deployments run one esmd serve process")
    sink = ExportSink(name=f"s{uuid.uuid4().hex[:6]}", transport="udp", host="127.0.0.1", port=9)
    first, second = _exporter(esm, sink), _exporter(esm, sink)
    try:
        assert first.leadership.acquire() is True
        assert second.leadership.acquire() is False
        first.leadership.release()
        assert second.leadership.acquire() is True
    finally:
        second.leadership.release()
        first.db.dispose()
        second.db.dispose()


def test_a_new_sink_can_start_from_now(esm: Esm) -> None:
    agent = esm.enroll()
    _upload(esm, agent, 3)
    udp = Receiver("udp")
    try:
        sink = ExportSink(
            name="fresh", transport="udp", host="127.0.0.1", port=udp.port, start="now"
        )
        exporter = _exporter(esm, sink)
        assert exporter.step().read == 0  # the history is not sent
        later = _upload(esm, agent, 2)
        assert exporter.step().sent == 2
        assert sorted(_event_ids(udp.wait_for(2))) == sorted(later)
        exporter.db.dispose()
    finally:
        udp.stop()
