"""The malware module's full precedence, and the analyst thread that learns verdicts.

On the fanotify answering thread, :meth:`Verdicts.judge` decides from memory only:

1. the policy's allowed hashes (admin overrides and feeds marked benign) → run;
2. the policy's blocked hashes (admin overrides and feeds marked malware) → deny / notify;
3. a verdict learnt since: the server's answer to a query (admin or feed), else this agent's
   own static analysis (malware → deny / notify, grayware → notify);
4. otherwise the policy's action for unknown files (``unknown_file``, or ``offline`` while
   no ESM answers): allow, notify or block.

Every hash that reaches step 4 is handed (never waited for) to the analyst thread, which
analyses the file (:mod:`trapsd.analysis`), asks the ESM about a batch of such hashes with a
short timeout, and caches the answers; the next execution of the file is judged with them.
Until a hash has a verdict, the file gets no kernel ignore mark, so it is asked about again.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import queue
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

from trapsapi.enums import Mode, Verdict
from trapsapi.errors import TrapsError
from trapsapi.wire import AgentAnalysis, AgentVerdictQuery, AgentVerdicts
from trapsd.analysis import Analysis, analyse
from trapsd.exec_rules import ALLOW, DENY, NOTIFY
from trapsd.policy import Policy

log = logging.getLogger(__name__)
SERVER = "server"
LOCAL = "local analysis"
QUERY_BATCH = 200
QUERY_EVERY_S = 0.5
LOCAL_TTL_S = 24 * 3600
UNKNOWN_TTL_S = 600  # ask the ESM again about a still-unknown hash after this long
OFFLINE_RETRY_S = 60
MAX_ENTRIES = 65536
MAX_PENDING = 4096
READ_MAX = 128 * 1024 * 1024
_WAKE: tuple[bytes, str] = (b"", "")  # put by stop(): compared by identity

Query = Callable[[AgentVerdictQuery], AgentVerdicts]


class Verdicts:
    """digest → (verdict, source, expiry); written by the analyst, read by the judge."""

    def __init__(self, query: Query | None = None, max_entries: int = MAX_ENTRIES) -> None:
        self.query = query
        self.max_entries = max_entries
        self._known: OrderedDict[bytes, tuple[str, str, float]] = OrderedDict()
        self._lock = threading.Lock()
        self._pending: queue.Queue[tuple[bytes, str]] = queue.Queue(MAX_PENDING)
        self._queued: set[bytes] = set()
        self.online = True  # the last query got an answer (or none was needed yet)
        self.counts = {"analysed": 0, "queried": 0, "query_errors": 0, "dropped": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="analyst", daemon=True)

    # --- the answering thread ------------------------------------------------------------
    def lookup(self, digest: bytes) -> tuple[str, str] | None:
        entry = self._known.get(digest)  # a dict read: atomic under the GIL, no lock
        if entry is None or entry[2] < time.monotonic():
            return None
        return entry[0], entry[1]

    def judge(self, policy: Policy, digest: bytes, path: str = "") -> str:
        """ALLOW, NOTIFY or DENY by the precedence above; queues unknown hashes."""
        malware = policy.malware
        if not malware.active or digest in policy.allowed:
            return ALLOW
        hit = DENY if malware.mode == Mode.PREVENTION else NOTIFY
        if digest in policy.blocked:
            return hit
        learnt = self.lookup(digest)
        if learnt is not None and learnt[0] != Verdict.UNKNOWN:
            if learnt[0] == Verdict.MALWARE:
                return hit
            return NOTIFY if learnt[0] == Verdict.GRAYWARE else ALLOW
        if learnt is None:
            self.submit(digest, path)
        action = policy.unknown_file if self.online else policy.offline
        if action == "block":
            return hit
        return NOTIFY if action == "notify" else ALLOW

    __call__ = judge  # a Verdicts is the sensors' Judge

    def settled(self, digest: bytes) -> bool:
        """Whether the verdict of ``digest`` is final enough for a kernel ignore mark."""
        learnt = self.lookup(digest)
        return learnt is not None and learnt[1] == SERVER

    def submit(self, digest: bytes, path: str) -> None:
        if digest in self._queued:
            return
        try:
            self._pending.put_nowait((digest, path))
            self._queued.add(digest)
        except queue.Full:
            self.counts["dropped"] += 1

    # --- the analyst thread --------------------------------------------------------------
    def start(self) -> None:
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        self._stop.set()
        with contextlib.suppress(queue.Full):  # full: the thread is busy and sees _stop
            self._pending.put_nowait(_WAKE)
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _remember(self, digest: bytes, verdict: str, source: str, ttl_s: float) -> None:
        with self._lock:
            self._known[digest] = (verdict, source, time.monotonic() + ttl_s)
            self._known.move_to_end(digest)
            while len(self._known) > self.max_entries:
                self._known.popitem(last=False)

    def _run(self) -> None:
        while not self._stop.is_set():
            batch = self._take()
            if batch:
                try:
                    self.process(batch)
                except Exception:  # never let the thread die
                    log.exception("analyst: unexpected error")

    def _take(self) -> list[tuple[bytes, str]]:
        first = self._pending.get()  # no timeout: nothing to do until a file is submitted
        if first is _WAKE:
            return []
        batch = [first]
        deadline = time.monotonic() + QUERY_EVERY_S
        while len(batch) < QUERY_BATCH and time.monotonic() < deadline:
            try:
                item = self._pending.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                break
            if item is _WAKE:
                break
            batch.append(item)
        return batch

    def process(self, batch: list[tuple[bytes, str]]) -> None:
        """Analyse each file, ask the ESM about the batch, remember what was learnt."""
        reports: list[AgentAnalysis] = []
        local: dict[bytes, Analysis] = {}
        for digest, path in batch:
            self._queued.discard(digest)
            result = analyse_path(path, digest)
            if result is not None:
                self.counts["analysed"] += 1
                local[digest] = result
                if result.verdict != Verdict.UNKNOWN:
                    reports.append(
                        {
                            "sha256": digest.hex(),
                            "verdict": result.verdict.value,
                            "reasons": list(result.reasons),
                        }
                    )
        answers: dict[str, str] = {}
        ttl = float(UNKNOWN_TTL_S)
        if self.query is not None:
            request: AgentVerdictQuery = {
                "sha256s": [digest.hex() for digest, _ in batch],
                "reports": reports,
            }
            try:
                reply = self.query(request)
                answers, ttl = reply["verdicts"], float(reply["ttl_s"])
                self.counts["queried"] += len(batch)
                self.online = True
            except TrapsError as exc:
                self.counts["query_errors"] += 1
                self.online = False
                log.info("verdict query failed (%s): local analysis only", exc.message)
        for digest, _ in batch:
            answer = answers.get(digest.hex(), Verdict.UNKNOWN)
            if answer != Verdict.UNKNOWN:
                self._remember(digest, answer, SERVER, ttl)
            elif digest in local and local[digest].verdict != Verdict.UNKNOWN:
                self._remember(digest, local[digest].verdict.value, LOCAL, LOCAL_TTL_S)
            elif answers:  # the ESM knows nothing either: unknown, ask again later
                self._remember(digest, Verdict.UNKNOWN.value, SERVER, UNKNOWN_TTL_S)
            else:  # no ESM answered: do not analyse it again on every execution
                self._remember(digest, Verdict.UNKNOWN.value, LOCAL, OFFLINE_RETRY_S)

    def snapshot(self) -> dict[str, Any]:
        return {"known": len(self._known), "online": self.online, **self.counts}


def analyse_path(path: str, digest: bytes) -> Analysis | None:
    """Static analysis of the file now at ``path`` if it still has ``digest`` (else None)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if os.fstat(fd).st_size > READ_MAX:
            return None
        sha = hashlib.sha256()
        while chunk := os.read(fd, 1 << 20):
            sha.update(chunk)
        if sha.digest() != digest:  # replaced since it was executed
            return None
        return analyse(fd, path)
    except OSError:
        return None
    finally:
        os.close(fd)
