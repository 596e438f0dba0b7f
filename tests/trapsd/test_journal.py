"""The crash journal: detections survive the process, torn slots are refused, a full ring
degrades to the queue alone."""

from __future__ import annotations

import multiprocessing
import os
import signal
from pathlib import Path

from trapsd.events import Detection
from trapsd.journal import SLOT_BYTES, Journal


def _detection(n: int, **extra: object) -> Detection:
    return Detection("prevented", f"/tmp/evil-{n}", "ab" * 32, 1000 + n, **extra)  # type: ignore[arg-type]


def _journal_then_die(path: str) -> None:
    journal = Journal(Path(path))
    for n in range(5):
        journal.append(_detection(n, details={"n": n}))
    os.kill(os.getpid(), signal.SIGKILL)  # no close, no flush, no atexit


def test_detections_survive_sigkill_and_are_recovered_in_order(tmp_path: Path) -> None:
    path = tmp_path / "journal.ring"
    child = multiprocessing.get_context("fork").Process(target=_journal_then_die, args=(path,))
    child.start()
    child.join(10)
    assert child.exitcode == -signal.SIGKILL
    journal = Journal(path)
    recovered = journal.recover()
    assert [d.process_path for _, d in recovered] == [f"/tmp/evil-{n}" for n in range(5)]
    assert recovered[2][1].details == {"n": 2} and recovered[2][1].pid == 1002
    journal.release([slot for slot, _ in recovered])
    assert Journal(path).recover() == []  # released slots stay free


def test_a_torn_slot_is_refused_and_freed(tmp_path: Path) -> None:
    path = tmp_path / "journal.ring"
    journal = Journal(path)
    slot = journal.append(_detection(1))
    journal.append(_detection(2))
    journal.close()
    with path.open("r+b") as handle:  # a kill in the middle of writing slot's payload
        handle.seek(slot * SLOT_BYTES + 20)
        handle.write(b"XXXX")
    recovered = Journal(path).recover()
    assert [d.process_path for _, d in recovered] == ["/tmp/evil-2"]
    assert [d.process_path for _, d in Journal(path).recover()] == ["/tmp/evil-2"]


def test_a_full_ring_refuses_without_blocking_and_long_texts_are_clipped(tmp_path: Path) -> None:
    journal = Journal(tmp_path / "journal.ring", slots=4)
    slots = [journal.append(_detection(n, cmdline="x" * 20_000)) for n in range(6)]
    assert slots[4:] == [-1, -1] and journal.full == 2
    journal.release(slots[:1])
    assert journal.append(_detection(9)) == slots[0]
    recovered = Journal(tmp_path / "journal.ring", slots=4).recover()
    assert len(recovered) == 4
    assert all(len(d.cmdline) <= 512 for _, d in recovered)
