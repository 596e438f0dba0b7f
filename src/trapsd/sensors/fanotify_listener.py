"""One fanotify group, its filesystem marks and its verdict thread.

The verdict thread only reads metadata, fstat()s, hashes (pread, bounded, cached), reads /proc
of the exec'ing process when it denies, answers, and hands the detection to a queue with
``put_nowait``. It never logs, execs, touches the network or waits on another thread: the
kernel holds every execve on the host until it answers.
"""

from __future__ import annotations

import errno
import os
import select
import stat
import threading
import time
from typing import TYPE_CHECKING

from trapsd import scheduling
from trapsd.events import Detection, exec_detection, parent_images
from trapsd.exec_rules import ALLOW, DENY, MALWARE, Finding, decide_exec, depends_on_path
from trapsd.policy import Policy
from trapsd.sensors.fanotify_api import (
    AT_FDCWD,
    FAN_ALLOW,
    FAN_CLASS_CONTENT,
    FAN_CLOEXEC,
    FAN_DENY,
    FAN_MARK_ADD,
    FAN_MARK_FILESYSTEM,
    FAN_MARK_FLUSH,
    FAN_MARK_IGNORED_MASK,
    FAN_MARK_MOUNT,
    FAN_NONBLOCK,
    FAN_OPEN_EXEC_PERM,
    FAN_UNLIMITED_QUEUE,
    FANOTIFY_METADATA_VERSION,
    METADATA,
    RESPONSE,
    fanotify_init,
    fanotify_mark,
)
from trapsd.sensors.hashing import HashCache, Hasher, cache_key
from trapsd.sensors.mounts import Mount, network_mounts

if TYPE_CHECKING:
    from trapsd.sensors.fanotify import FanotifySensor


class Listener:
    """One fanotify group, its marks and its verdict thread."""

    def __init__(self, sensor: FanotifySensor) -> None:
        self.sensor = sensor
        self.fd = fanotify_init(
            FAN_CLASS_CONTENT | FAN_CLOEXEC | FAN_NONBLOCK | FAN_UNLIMITED_QUEUE,
            os.O_RDONLY | os.O_LARGEFILE | os.O_CLOEXEC,
        )
        self.wake_r, self.wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
        self._fd_lock = threading.Lock()
        self._closed = False
        self.abandoned = False
        self.busy_since = 0.0
        self.current_key = b""  # the file being judged, remembered if the watchdog trips
        self.marked: dict[tuple[str, str], Mount] = {}
        # (mount point, fstype) of network filesystems (and "" for local ones mounted below
        # them), longest first: files there are never read from the verdict thread
        self.network: tuple[tuple[str, str], ...] = ()
        self.failed: dict[str, str] = {}
        self.policy: Policy | None = None
        self.cache = HashCache(sensor.settings.verdict_cache_size)
        self.hasher = Hasher()
        self.ignores = 0
        self.counts = {"events": 0, "denied": 0, "notified": 0, "errors": 0, "too_large": 0}
        self.thread = threading.Thread(target=self._run, name="fanotify-verdict", daemon=True)

    # --- marks (supervisor thread) ---------------------------------------------------------
    def mark(self, mounts: list[Mount], all_mounts: list[Mount] | None = None) -> None:
        if self._closed or self.abandoned:
            return
        self.network = network_mounts(all_mounts or mounts)
        current = {(m.mount_id, m.device) for m in mounts}
        for key in [k for k in self.marked if k not in current]:
            del self.marked[key]  # unmounted: a new filesystem may reuse the device number
        for mount in mounts:
            key = (mount.mount_id, mount.device)
            if key in self.marked:
                continue
            try:
                fanotify_mark(
                    self.fd, FAN_MARK_ADD | FAN_MARK_FILESYSTEM, FAN_OPEN_EXEC_PERM, AT_FDCWD,
                    mount.mount_point,
                )  # fmt: skip
            except OSError as exc:
                if exc.errno != errno.EXDEV:  # EXDEV: e.g. a btrfs subvolume; mark the mount
                    self.failed[mount.device] = f"{mount.mount_point}: {exc.strerror}"
                    continue
                try:
                    fanotify_mark(
                        self.fd, FAN_MARK_ADD | FAN_MARK_MOUNT, FAN_OPEN_EXEC_PERM, AT_FDCWD,
                        mount.mount_point,
                    )  # fmt: skip
                except OSError as again:
                    self.failed[mount.device] = f"{mount.mount_point}: {again.strerror}"
                    continue
            self.failed.pop(mount.device, None)
            self.marked[key] = mount

    # --- verdict thread --------------------------------------------------------------------
    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        scheduling.foreground()  # every exec on the host waits for this thread
        poller = select.poll()
        poller.register(self.fd, select.POLLIN)
        poller.register(self.wake_r, select.POLLIN)
        try:
            while not self.abandoned:
                for fd, _ in poller.poll():  # abandon() and set_policy() write wake_w
                    if fd == self.wake_r:
                        try:
                            os.read(self.wake_r, 512)
                        except OSError:
                            pass
                if self.sensor.policy is not self.policy:
                    self._apply(self.sensor.policy)
                try:
                    data = os.read(self.fd, 24 * 256)
                except BlockingIOError:
                    continue
                if not data:  # abandoned: the descriptor is /dev/null now
                    break
                self.busy_since = time.monotonic()
                if not self.sensor.watching:  # the watchdog sleeps: wake it (a pipe write)
                    self.sensor.alarm()
                try:
                    self._batch(data)
                finally:
                    self.busy_since = 0.0
        except OSError:
            pass  # EBADF and friends after a fail-open: nothing left to answer
        finally:
            self._close()
            if not self.abandoned:  # died on its own: the watchdog replaces it now
                self.sensor.alarm()

    def _batch(self, data: bytes) -> None:
        offset = 0
        while offset + METADATA.size <= len(data):
            length, version, _, _, _mask, event_fd, pid = METADATA.unpack_from(data, offset)
            if version != FANOTIFY_METADATA_VERSION or length < METADATA.size:
                raise OSError(errno.EPROTO, "unexpected fanotify metadata version")
            offset += length
            if event_fd >= 0:
                self._answer(event_fd, pid)

    def _answer(self, event_fd: int, pid: int) -> None:
        response, detections = FAN_ALLOW, None
        self.counts["events"] += 1
        self.current_key = b""
        try:
            if pid != self.sensor.own_pid:
                response, detections = self._judge(event_fd, pid)
        except Exception:  # fail open on anything unexpected, never die holding an event
            self.counts["errors"] += 1
        recorder = self.sensor.recorder
        slots = [-1] * len(detections or ())
        if detections and recorder is not None:  # journaled first: nothing lost after a kill
            slots = [recorder.journal_detection(d) for d in detections]
        try:
            os.write(self.fd, RESPONSE.pack(event_fd, response))
            answered = True
        except OSError:
            answered = False
        try:
            os.close(event_fd)
        except OSError:
            pass
        for slot, detection in zip(slots, detections or (), strict=True):
            if response == FAN_DENY and not answered:  # the watchdog already let it run
                detection.action = "notified"
                detection.details["fail_open"] = True
                if recorder is not None:
                    slot = recorder.journal_detection(detection, replaces=slot)
            if recorder is not None:
                recorder.emit_journaled(slot, detection)
            else:
                self.sensor.emit(detection)

    def _fstype(self, path: str) -> str | None:
        """The type of the network filesystem holding ``path`` (None: a local one)."""
        for mount_point, fstype in self.network:
            if path == mount_point or path.startswith(mount_point + "/") or mount_point == "/":
                return fstype or None
        return None

    def _judge(self, event_fd: int, pid: int) -> tuple[int, list[Detection] | None]:
        policy = self.policy
        if policy is None or not policy.exec_active:
            return FAN_ALLOW, None
        path = os.readlink(f"/proc/self/fd/{event_fd}")  # d_path: no filesystem I/O
        fstype = self._fstype(path) if self.network else None
        if fstype is not None:  # a network share: decide on the path alone, read nothing
            return self._verdict(policy, pid, path, fstype, [], None)
        st = os.fstat(event_fd)
        if not stat.S_ISREG(st.st_mode):
            return FAN_ALLOW, None
        key = cache_key(st)
        if key in self.sensor.fail_open_keys:
            return FAN_ALLOW, None
        findings: list[Finding] = []
        digest: bytes | None = None
        ignorable = True
        if policy.malware.active:
            self.current_key = key
            digest = self.cache.get(key)
            if digest is None and st.st_size > self.sensor.settings.hash_max_bytes:
                self.counts["too_large"] += 1
                ignorable = False
            elif digest is None:
                digest = self.hasher.sha256_fd(event_fd)
                self.cache.put(key, digest)
            if digest is not None:
                decision = self.sensor.judge(policy, digest, path)
                ignorable = ignorable and self.sensor.settled(digest)
                if decision != ALLOW:
                    findings.append(Finding(MALWARE, decision, "sha256"))
            self.current_key = b""
        response, detections = self._verdict(policy, pid, path, None, findings, digest)
        if (
            detections is None
            and ignorable
            and self.sensor.settings.ignore_marks
            and not depends_on_path(policy, path, None)
            and (st.st_nlink <= 1 or not policy.path_rules_active)
        ):  # an ignore mark is per inode: a hard link is the same file under another name
            self._ignore(event_fd)
        return response, detections

    def _verdict(
        self,
        policy: Policy,
        pid: int,
        path: str,
        fstype: str | None,
        findings: list[Finding],
        digest: bytes | None,
    ) -> tuple[int, list[Detection] | None]:
        findings += decide_exec(policy, path, fstype, lambda: parent_images(pid))
        if not findings:
            return FAN_ALLOW, None
        deny = any(f.decision == DENY for f in findings)
        detections = exec_detection(
            findings, path, digest, pid, "fanotify", policy.version, can_block=True
        )
        for detection in detections:
            self.counts["notified" if detection.action == "notified" else "denied"] += 1
        return (FAN_DENY if deny else FAN_ALLOW), detections

    def _ignore(self, event_fd: int) -> None:
        """Tell the kernel to stop asking about this inode (until it is modified)."""
        if self.ignores >= self.sensor.settings.ignore_marks_max:
            self._flush_ignores()
        try:
            fanotify_mark(
                self.fd, FAN_MARK_ADD | FAN_MARK_IGNORED_MASK, FAN_OPEN_EXEC_PERM, event_fd, None
            )
            self.ignores += 1
        except OSError:
            pass

    def _flush_ignores(self) -> None:
        if self.ignores:
            try:
                fanotify_mark(self.fd, FAN_MARK_FLUSH, 0, AT_FDCWD, None)  # inode marks only
            except OSError:
                self.counts["errors"] += 1
            self.ignores = 0

    def _apply(self, policy: Policy) -> None:
        """New rules: drop the ignore marks made under the old ones before the next verdict.

        The digest cache holds file contents' hashes, not verdicts, so it stays valid.
        """
        self._flush_ignores()
        self.policy = policy

    # --- shutdown (any thread) -------------------------------------------------------------
    def abandon(self) -> None:
        """Fail open now: the kernel allows every pending and future event of this group.

        dup2() of /dev/null over the descriptor releases the group without freeing the fd
        number, so a late write by a stuck verdict thread fails with EBADF instead of landing
        in whatever file might have reused the number.
        """
        self.abandoned = True
        with self._fd_lock:
            if not self._closed:
                null = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
                try:
                    os.dup2(null, self.fd, inheritable=False)
                finally:
                    os.close(null)
        self.wake()

    def wake(self) -> None:
        """Interrupt the verdict thread's poll (only while our descriptors are still ours)."""
        with self._fd_lock:
            if not self._closed:
                try:
                    os.write(self.wake_w, b"x")
                except OSError:
                    pass

    def _close(self) -> None:
        with self._fd_lock:
            if not self._closed:
                self._closed = True
                for fd in (self.fd, self.wake_r, self.wake_w):
                    try:
                        os.close(fd)
                    except OSError:
                        pass

    def stop(self, timeout: float = 2.0) -> None:
        self.abandon()
        if self.thread.is_alive():
            self.thread.join(timeout)
        elif self.thread.ident is None:
            self._close()
