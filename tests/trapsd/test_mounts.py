from __future__ import annotations

from trapsd.sensors.mounts import parse_mountinfo, read_mounts, select_mounts

SAMPLE = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
25 24 0:23 / /dev/shm rw,relatime - tmpfs tmpfs rw
40 27 254:0 /srv /mnt/bind\\040dir rw - ext4 /dev/vda rw
41 27 0:50 / /mnt/nfs rw shared:7 - nfs4 srv:/x rw
42 27 0:51 / /backup/x rw - xfs /dev/vdb rw
43 27 0:52 / /var/lib/docker/overlay2/a/merged rw - overlay overlay rw
"""


def test_parse_and_choose_one_mount_per_local_filesystem() -> None:
    mounts = parse_mountinfo(SAMPLE)
    assert mounts[3].mount_point == "/mnt/bind dir"
    assert mounts[4].fstype == "nfs4"  # optional fields before "-" are skipped
    chosen, skipped = select_mounts(mounts, exclude=["/backup"])
    assert [m.mount_point for m in chosen] == ["/", "/dev/shm", "/var/lib/docker/overlay2/a/merged"]
    assert {m.mount_point for m in skipped} == {"/proc", "/mnt/nfs", "/backup/x"}


def test_this_host_has_a_root_filesystem_to_watch() -> None:
    chosen, _ = select_mounts(read_mounts())
    assert any(m.mount_point == "/" for m in chosen)
