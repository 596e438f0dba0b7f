"""Private files: a 0700 state directory, 0600 files written atomically."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from trapsapi.errors import TrapsError


def ensure_private_dir(path: Path) -> Path:
    """Create ``path`` (0700) if needed and tighten it if it exists with looser bits."""
    try:
        path.mkdir(mode=0o700, parents=True, exist_ok=True)
        if path.stat().st_mode & 0o077:
            path.chmod(0o700)
    except PermissionError:
        raise TrapsError(f"{path}: permission denied (run as root or pick --state-dir)") from None
    except OSError as exc:
        raise TrapsError(f"{path}: {exc.strerror}") from None
    return path


def write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` with mode 0600: temp file, fsync, rename, fsync the dir."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            os.fchmod(handle.fileno(), 0o600)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def write_json(path: Path, value: Any) -> None:
    write_private(path, json.dumps(value, indent=2, sort_keys=True).encode() + b"\n")


def read_json(path: Path) -> Any:
    """The decoded file, or None when it does not exist; a one-line error when unreadable."""
    try:
        return json.loads(path.read_bytes())
    except FileNotFoundError:
        return None
    except PermissionError:
        raise TrapsError(f"{path}: permission denied") from None
    except ValueError as exc:
        raise TrapsError(f"{path}: not valid JSON ({exc})") from None
