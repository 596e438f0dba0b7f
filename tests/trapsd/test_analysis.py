"""Static analysis of unknown executables: real ELF files built here, and altered copies."""

from __future__ import annotations

import os
import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from trapsapi.enums import Verdict
from trapsd.analysis import analyse

TRUE = Path(shutil.which("true") or "/bin/true")


def _analyse(path: Path) -> tuple[Verdict, tuple[str, ...]]:
    fd = os.open(path, os.O_RDONLY)
    try:
        result = analyse(fd, str(path))
    finally:
        os.close(fd)
    return result.verdict, result.reasons


def _copy(directory: Path, name: str, change: bytes | None = None, at: int = 0) -> Path:
    data = bytearray(TRUE.read_bytes())
    if change is not None:
        data[at : at + len(change)] = change
    path = directory / name
    path.write_bytes(bytes(data))
    path.chmod(0o755)
    return path


@pytest.fixture
def private(tmp_path: Path) -> Path:
    directory = tmp_path / "private"
    directory.mkdir(mode=0o755)
    return directory


def test_system_binaries_and_copies_of_them_are_not_suspicious(
    private: Path, tmp_path: Path
) -> None:
    assert _analyse(TRUE) == (Verdict.UNKNOWN, ())
    assert _analyse(_copy(private, "true"))[0] == Verdict.UNKNOWN
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    verdict, reasons = _analyse(_copy(shared, "true"))
    assert verdict == Verdict.UNKNOWN and reasons == ("in a world-writable directory",)


def test_a_packed_binary_in_a_writable_directory_is_malware(tmp_path: Path) -> None:
    shared = tmp_path / "shm"
    shared.mkdir()
    shared.chmod(0o1777)
    packed = _copy(shared, "payload", b"UPX!", at=0x200)
    # and without section headers, as packers leave it: e_shoff = 0, e_shnum = 0
    data = bytearray(packed.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)
    struct.pack_into("<H", data, 0x3C, 0)
    packed.write_bytes(bytes(data))
    verdict, reasons = _analyse(packed)
    assert verdict == Verdict.MALWARE
    assert "packed (UPX signature)" in reasons and "in a world-writable directory" in reasons


def test_no_section_headers_alone_is_grayware(private: Path) -> None:
    data = bytearray(TRUE.read_bytes())
    struct.pack_into("<Q", data, 0x28, 0)
    path = private / "headerless"
    path.write_bytes(bytes(data))
    assert _analyse(path) == (Verdict.GRAYWARE, ("no section headers (packed or tampered)",))


def test_a_static_stripped_build_in_tmp_is_grayware(tmp_path: Path) -> None:
    source = tmp_path / "hello.c"
    source.write_text("int main(void) { return 0; }\n")
    shared = tmp_path / "drop"
    shared.mkdir()
    shared.chmod(0o1777)
    binary = shared / "hello"
    built = subprocess.run(
        ["gcc", "-static", "-s", "-o", str(binary), str(source)], capture_output=True
    )
    if built.returncode:
        pytest.skip(f"no static libc to build with: {built.stderr.decode()[:200]}")
    verdict, reasons = _analyse(binary)
    assert verdict == Verdict.GRAYWARE
    assert reasons == ("stripped and statically linked", "in a world-writable directory")


def test_scripts_and_garbage_are_not_judged(private: Path) -> None:
    script = private / "run.sh"
    script.write_text("#!/bin/sh\necho hi\n")
    assert _analyse(script) == (Verdict.UNKNOWN, ())
    broken = private / "broken"
    broken.write_bytes(b"\x7fELF" + b"\xff" * 60 + os.urandom(1000))
    assert _analyse(broken) == (Verdict.UNKNOWN, ())  # not a class/byte order it knows
    lying = bytearray(TRUE.read_bytes())
    struct.pack_into("<Q", lying, 0x28, 1 << 40)  # a section table far past the end
    path = private / "lying"
    path.write_bytes(bytes(lying))
    assert _analyse(path)[1] == ("no section headers (packed or tampered)",)
