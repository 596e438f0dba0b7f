"""What the agent reports about its host: name, OS, addresses."""

from __future__ import annotations

import functools
import ipaddress
import platform
import socket

import psutil

MAX_IPS = 64  # the server's limit


def hostname() -> str:
    return socket.gethostname() or "localhost"


@functools.cache
def os_name() -> str:
    return platform.system() or "Linux"


@functools.cache
def os_version() -> str:
    """Distribution name and kernel, e.g. 'Debian GNU/Linux 12 (bookworm); kernel 6.1.0'."""
    pretty = ""
    try:
        pretty = platform.freedesktop_os_release().get("PRETTY_NAME", "")
    except OSError:
        pass
    kernel = platform.release()
    text = f"{pretty}; kernel {kernel}" if pretty else f"kernel {kernel}"
    return text[:255]


def ip_addresses() -> list[str]:
    """Non-loopback, non-link-local addresses of every interface, IPv4 first."""
    found: list[str] = []
    try:
        interfaces = psutil.net_if_addrs()
    except OSError:
        return found
    for addresses in interfaces.values():
        for address in addresses:
            if address.family not in (socket.AF_INET, socket.AF_INET6):
                continue
            text = address.address.split("%", 1)[0]
            try:
                ip = ipaddress.ip_address(text)
            except ValueError:
                continue
            if ip.is_loopback or ip.is_link_local or text in found:
                continue
            found.append(text)
    found.sort(key=lambda a: (":" in a, a))
    return found[:MAX_IPS]
