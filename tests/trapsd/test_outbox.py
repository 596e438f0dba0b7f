from __future__ import annotations

import json
import uuid
from pathlib import Path

from trapsapi.wire import SecurityEvent
from trapsd.events import Detection, build_event
from trapsd.outbox import Outbox, peek_depth


def event(path: str = "/tmp/evil") -> SecurityEvent:
    return build_event(Detection(action="prevented", process_path=path, sha256="ab" * 32, pid=42))


def test_add_take_ack(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", 1 << 20)
    events = [event(f"/bin/e{n}") for n in range(5)]
    assert box.add(events) == 5
    assert box.depth == 5
    taken = box.take(3)
    assert [e["id"] for e in taken] == [e["id"] for e in events[:3]]  # oldest first
    assert taken[0] == events[0]
    assert box.take(3)[0]["id"] == events[0]["id"]  # taking does not remove
    # Only the acknowledged ids go, whatever else the server says.
    assert box.ack([events[1]["id"], str(uuid.uuid4())]) == 1
    assert [e["id"] for e in box.take(10)] == [e["id"] for e in events if e is not events[1]]
    assert box.depth == 4
    box.close()


def test_the_same_event_is_stored_once(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", 1 << 20)
    one = event()
    assert box.add([one, one]) == 1
    assert box.add([one]) == 0
    assert box.depth == 1
    box.close()


def test_events_survive_a_reopen_and_the_file_is_private(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, 1 << 20)
    events = [event() for _ in range(3)]
    box.add(events)
    box.ack([events[0]["id"]])
    box.close()  # or a crash: every add was committed with synchronous=FULL
    again = Outbox(path, 1 << 20)
    assert again.depth == 2
    assert [e["id"] for e in again.take(5)] == [e["id"] for e in events[1:]]
    assert path.stat().st_mode & 0o777 == 0o600
    again.close()
    assert peek_depth(tmp_path) == (2, 0)


def _sized(severity: str = "high") -> SecurityEvent:
    """Events of one size whatever their severity (the severities differ in length)."""
    made = event()
    made["severity"] = severity
    made["details"] = {"pad": "x" * (12 - len(severity))}
    return made


def _size() -> int:
    return len(json.dumps(_sized(), separators=(",", ":")))


def test_the_cap_counts_what_it_cannot_keep_and_reports_it_as_a_gap(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", _size() * 3 + 10)
    assert box.add([_sized() for _ in range(5)]) == 3
    assert (box.depth, box.dropped) == (3, 2)
    box.count_dropped(4)  # e.g. the in-memory queue overflowed
    assert box.dropped == 6
    assert box.pending_gap() == {"high": 2, "unknown": 4}
    box.close()
    reopened = Outbox(tmp_path / "outbox.db", _size() * 3 + 10)
    assert (reopened.depth, reopened.dropped) == (3, 6)  # the counts are durable too
    assert reopened.pending_gap() == {"high": 2, "unknown": 4}
    sent = reopened.take(10)  # the gap becomes an event of its own, sent like the others
    gaps = [e for e in sent if e["details"].get("kind") == "gap"]
    assert len(sent) == 4 and len(gaps) == 1 and reopened.pending_gap() == {}
    assert gaps[0]["details"]["dropped"] == 6
    assert gaps[0]["details"]["by_severity"] == {"high": 2, "unknown": 4}
    assert gaps[0]["module"] == "agent" and gaps[0]["details"]["first_dropped_at"]
    reopened.ack([e["id"] for e in sent])
    assert reopened.add([_sized()]) == 1  # room again
    assert reopened.take(10)[0]["details"].get("kind") != "gap"  # no new gap
    reopened.close()
    assert peek_depth(tmp_path) == (1, 6)


def test_a_full_outbox_drops_low_value_records_before_security_events(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", _size() * 4 + 10)
    low = [_sized("low") for _ in range(2)]
    info = _sized("informational")
    box.add([low[0], info, low[1], _sized("high")])
    critical = _sized("critical")
    assert box.add([critical]) == 1  # evicts the informational one, the lowest priority
    assert box.add([_sized("medium")]) == 1  # then the oldest low one
    assert box.add([_sized("informational")]) == 0  # nothing below it: refused itself
    assert box.pending_gap() == {"informational": 2, "low": 1}
    kept = {e["id"] for e in box.take(10) if e["details"].get("kind") != "gap"}
    assert critical["id"] in kept and low[1]["id"] in kept
    assert info["id"] not in kept and low[0]["id"] not in kept


def test_events_in_flight_are_never_evicted(tmp_path: Path) -> None:
    box = Outbox(tmp_path / "outbox.db", _size() * 2 + 10)
    first = [_sized("low"), _sized("low")]
    box.add(first)
    in_flight = box.take(1)  # sent, not yet acknowledged
    assert box.add([_sized("critical")]) == 1  # evicts the other low one, not the sent one
    remaining = {e["id"] for e in box.take(10)}
    assert in_flight[0]["id"] in remaining and first[1]["id"] not in remaining
    assert box.ack([in_flight[0]["id"]]) == 1


def test_a_corrupt_outbox_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    path.write_bytes(b"this is not sqlite" * 100)
    box = Outbox(path, 1 << 20)
    assert box.depth == 0 and box.add([event()]) == 1
    box.close()
    assert [p.name for p in tmp_path.glob("outbox.db.corrupt-*")]


def test_wire_event_fields() -> None:
    detection = Detection(
        action="killed",
        process_path="/x" * 5000,
        sha256="cd" * 32,
        pid=7,
        ppid=1,
        uid=0,
        cmdline="x y",
    )
    wire = build_event(detection)
    assert uuid.UUID(wire["id"]).version == 4
    assert wire["time"].endswith("+00:00")
    assert (wire["module"], wire["severity"], wire["action"]) == ("malware", "high", "killed")
    assert len(wire["process_path"]) == 8192
    assert wire["user"] == "root"


def test_the_disk_is_given_back_once_a_backlog_is_delivered(tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    box = Outbox(path, 64 << 20)
    events = [event(f"/backlog/{n}" + "x" * 400) for n in range(3000)]
    box.add(events)
    box.close()  # checkpoints the WAL into the main file
    full = path.stat().st_size
    box = Outbox(path, 64 << 20)
    assert box.ack(e["id"] for e in events[:1000]) == 1000
    assert (box.depth, box.size_bytes > 0) == (2000, True)
    assert box.ack(e["id"] for e in events[1000:]) == 2000
    assert (box.depth, box.size_bytes) == (0, 0)
    box.close()
    assert path.stat().st_size < full / 4
