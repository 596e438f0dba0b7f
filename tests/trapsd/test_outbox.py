from __future__ import annotations

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


def test_the_cap_counts_what_it_cannot_keep(tmp_path: Path) -> None:
    one = event()
    size = len(__import__("json").dumps(one, separators=(",", ":")))
    box = Outbox(tmp_path / "outbox.db", size * 3 + 10)
    assert box.add([event() for _ in range(5)]) == 3
    assert (box.depth, box.dropped) == (3, 2)
    box.count_dropped(4)  # e.g. the in-memory queue overflowed
    assert box.dropped == 6
    box.ack([e["id"] for e in box.take(1)])
    assert box.add([event()]) == 1  # room again
    box.close()
    reopened = Outbox(tmp_path / "outbox.db", size * 3 + 10)
    assert (reopened.depth, reopened.dropped) == (3, 6)  # the count is durable too
    reopened.close()
    assert peek_depth(tmp_path) == (3, 6)


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
