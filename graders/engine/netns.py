"""Grade without a network: `ailab grade` re-runs itself in a new network namespace that has only loopback.

The grader, Locust and every submission talk over 127.0.0.1 only, so nothing of a grading run needs
another address. As root, with util-linux `unshare` installed, the whole run moves into a fresh
network namespace (`unshare --net`) whose only interface, `lo`, is brought up; a submission that
tries to reach any other address gets "Network is unreachable". `--allow-network` opts out.
"""
from __future__ import annotations

import fcntl
import os
import shutil
import socket
import struct
import subprocess
import sys

MARK = "AILAB_NETNS"  # set in the re-run grader: it is already isolated and must not re-run again
SIOCGIFFLAGS, SIOCSIFFLAGS, IFF_UP = 0x8913, 0x8914, 0x1
IFREQ = "16sh22x"  # struct ifreq: the name, then ifr_flags in a 24-byte union


def loopback_up() -> None:
    """Bring `lo` up (a new network namespace starts with it down)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        request = struct.pack(IFREQ, b"lo", 0)
        flags = struct.unpack(IFREQ, fcntl.ioctl(s, SIOCGIFFLAGS, request))[1]
        if not flags & IFF_UP:
            fcntl.ioctl(s, SIOCSIFFLAGS, struct.pack(IFREQ, b"lo", flags | IFF_UP))


def isolated() -> bool:
    """Whether this process runs in the grader's network namespace (set up by `isolate`)."""
    return os.environ.get(MARK) == "1"


def unavailable() -> str | None:
    """Why `isolate` would leave the network open (not root, no `unshare`), or None when it would isolate."""
    if os.geteuid() != 0:
        return "not running as root"
    return None if shutil.which("unshare") else "`unshare` (util-linux) is not installed"


def isolate(cli_args: list[str]) -> int | None:
    """Re-run `python -m graders.cli CLI_ARGS` inside a new network namespace and return its exit code.

    None means "go on in this process": already isolated (then `lo` is brought up here), or isolation
    is not possible (not root, no `unshare`), in which case one line says the network is open."""
    if isolated():
        loopback_up()
        return None
    why = unavailable()
    unshare = shutil.which("unshare")
    if why is not None or unshare is None:
        print(f"[grade] note: the network is not isolated ({why}); submissions could reach other hosts",
              file=sys.stderr, flush=True)
        return None
    env = {**os.environ, MARK: "1"}
    try:
        return subprocess.call([unshare, "--net", "--", sys.executable, "-m", "graders.cli", *cli_args], env=env)
    except KeyboardInterrupt:
        return 130
