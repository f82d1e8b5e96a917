"""Who a worker runs as: a fresh unprivileged user id per worker when the grader is root, what it sees of
the file system, and the clean-up only that makes possible (kill everything the user runs, sweep its temp files).

As root every untrusted worker gets a private mount namespace in which the repository root is a tmpfs holding
bind mounts of `graders.engine.guard.visible()` only (graders/, labkit/, the lab-provided serving
engine and model, the virtual environment and the cache): the reference implementation, the labs' source
notebooks and the git history are not there to read. Python may also live under a directory other users cannot
enter (pyenv under /root, mode 0700); that directory then shows only the interpreter (and the repository).
`AILAB_SANDBOX_USER=same` runs workers as the grader's user (debugging); `AILAB_SANDBOX_USER=<name>` uses that
account. See docs/isolation.md and docs/threat-model.md.
"""
from __future__ import annotations

import ctypes
import os
import pwd
import random
import resource
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from functools import lru_cache
from pathlib import Path

from graders.paths import REPO_ROOT, cache_dir

NPROC = 512  # processes + threads of one sandbox user; torch and uvicorn thread pools need dozens
USER_ENV = "AILAB_SANDBOX_USER"
UID_BASE, UID_SPAN = 1_200_000, 100_000  # per-worker uids; far above any real account
NOGROUP = 65534
# The reference submissions are the grader's own code: they see the whole repository (they import the reference),
# and the embeddings they compute may enter the shared cache.
TRUSTED_SOURCES = ("reference_systems/rag/submission.py", "reference_systems/serving/submission.py",
                   "reference_systems/observability/submission.py", "reference_systems/agents/submission.py",
                   "reference_systems/serving/naive_submission.py")  # the serving floor (profiles with floor = true)
# Folders (os.pathsep-separated) of code the operator vouches for: a submission byte-identical to a .py file
# there may use the reference (the test suite's fixtures stand in for it; tests/conftest.py). Never set to grade.
VOUCHED_ENV = "AILAB_TRUSTED_FIXTURES"


def _die_with_parent() -> None:
    """Linux: the worker gets SIGKILL when the grader dies, so a crashed grader leaves no orphans."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # 1 = PR_SET_PDEATHSIG
    except OSError:
        pass



def _uid_in_use(uid: int) -> bool:
    """Whether a live process (not a zombie awaiting its reaper) runs as `uid`."""
    for status in Path("/proc").glob("[0-9]*/status"):
        try:
            for line in status.read_text().splitlines():
                if line.startswith("State:") and line.split()[1] == "Z":
                    break
                if line.startswith("Uid:"):
                    if str(uid) in line.split()[1:]:
                        return True
                    break
        except OSError:
            continue
    return False


def sandbox_identity() -> tuple[int, int, bool] | None:
    """(uid, gid, private) for a new worker, or None to run it as the grader's own user.

    `private` is True for a fresh per-worker uid: only then may everything running as it be killed."""
    choice = os.environ.get(USER_ENV, "").strip()
    if os.geteuid() != 0 or choice == "same":
        return None
    if choice and choice != "auto":
        try:
            entry = pwd.getpwnam(choice)
        except KeyError:
            raise SystemExit(f"{USER_ENV}={choice}: no such user; use `same`, `auto` or an existing account") from None
        return entry.pw_uid, entry.pw_gid, False
    if not _python_reachable():
        return None
    while True:
        uid = UID_BASE + random.randrange(UID_SPAN)
        if not _uid_in_use(uid):
            return uid, NOGROUP, True


MountPlan = tuple[tuple[str, tuple[str, ...]], ...]  # (folder replaced by a tmpfs, paths under it bound back)


def _interpreter_paths() -> set[Path]:
    return {Path(sys.executable), Path(sys.executable).resolve(), Path(sys.base_prefix), Path(sys.prefix)}


def _blocked_dirs() -> list[Path]:
    """Directories on the way to the interpreter, the repository or the cache that other users cannot traverse
    (pyenv under /root, mode 0700)."""
    leaves = _interpreter_paths()
    blocked: set[Path] = set()
    for path in leaves | {REPO_ROOT, cache_dir().resolve()}:
        for parent in [*reversed(path.parents), *([path] if path in leaves else [])]:
            try:
                mode = parent.stat().st_mode
            except OSError:
                continue
            if stat.S_ISDIR(mode) and not mode & stat.S_IXOTH:
                blocked.add(parent)
    return sorted(blocked)


def mount_plan(hide_repo: bool) -> MountPlan:
    """What a worker's private mount namespace replaces, outermost first: each blocked directory shows only the
    way to the interpreter, the repository and the cache; with `hide_repo` (every untrusted worker) the
    repository root shows only `guard.visible()`."""
    from graders.engine.guard import visible

    needed = _interpreter_paths() | {REPO_ROOT, cache_dir().resolve()}
    plan = [(str(blocked), tuple(sorted({p.relative_to(blocked).parts[0] for p in needed if blocked in p.parents})))
            for blocked in _blocked_dirs()]
    if hide_repo:
        plan.append((str(REPO_ROOT), visible()))
    return tuple(sorted(plan, key=lambda item: len(Path(item[0]).parts)))


def _enter_mounts(plan: MountPlan) -> None:
    """In the child, as root: a private mount namespace in which each planned folder is a tmpfs holding only
    bind mounts of the paths the plan keeps (e.g. /root shows only .pyenv). Raises on failure."""
    if not plan:
        return
    libc = ctypes.CDLL("libc.so.6", use_errno=True)
    ms_rec, ms_private, ms_bind = 0x4000, 0x40000, 0x1000
    if libc.unshare(0x20000) != 0:  # CLONE_NEWNS
        raise OSError(ctypes.get_errno(), "unshare(CLONE_NEWNS)")
    if libc.mount(b"none", b"/", None, ms_rec | ms_private, None) != 0:
        raise OSError(ctypes.get_errno(), "mount --make-rprivate /")
    # every source is opened in the new namespace (a bind needs that) and before any tmpfs covers it
    sources = {}
    for folder, keep in plan:
        for rel in keep:
            try:
                sources[folder, rel] = os.open(os.path.join(folder, rel), os.O_PATH)
            except FileNotFoundError:
                continue  # e.g. no cache folder yet: nothing to show
    for folder, keep in plan:
        if libc.mount(b"tmpfs", folder.encode(), b"tmpfs", 0, b"mode=0755,size=64k") != 0:
            raise OSError(ctypes.get_errno(), f"mount tmpfs on {folder}")
        for rel in keep:
            if (folder, rel) not in sources:
                continue
            fd, target = sources[folder, rel], os.path.join(folder, rel)
            os.makedirs(os.path.dirname(target), mode=0o755, exist_ok=True)
            if stat.S_ISDIR(os.fstat(fd).st_mode):
                os.mkdir(target)
            else:
                open(target, "w").close()
            if libc.mount(f"/proc/self/fd/{fd}".encode(), target.encode(), None, ms_bind | ms_rec, None) != 0:
                raise OSError(ctypes.get_errno(), f"bind mount {target}")
            os.close(fd)


def _become(uid: int, gid: int, private: bool, plan: MountPlan = ()) -> None:
    _enter_mounts(plan)
    if private:  # counts this user's processes and threads only, so the limit binds this worker alone
        resource.setrlimit(resource.RLIMIT_NPROC, (NPROC, NPROC))
    os.setgroups([])
    os.setgid(gid)
    os.setuid(uid)
    _die_with_parent()  # a change of credentials clears the parent-death signal: set it again


def _probe(plan: MountPlan) -> bool:
    """Whether the interpreter starts as an unprivileged user in a namespace carrying out `plan`."""
    probe = UID_BASE + UID_SPAN  # outside the per-worker range
    from graders.engine.sandbox import scrubbed_env  # the worker's own environment, as the probe's

    try:
        done = subprocess.run([sys.executable, "-c", "import numpy, graders.engine.worker"], env=scrubbed_env(Path("/")),
                              cwd="/", capture_output=True, timeout=60,
                              preexec_fn=lambda: _become(probe, NOGROUP, False, plan))
        return done.returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


@lru_cache(maxsize=1)
def _isolation() -> tuple[bool, bool]:
    """(the interpreter runs as an unprivileged user here, the repository can be hidden from it): one probe
    with the repository hidden, and one without only when that fails."""
    if _probe(mount_plan(True)):
        return True, True
    if _probe(mount_plan(False)):
        print("[sandbox] warning: no private mount namespace here, so submissions can see the whole repository; "
              "the audit hook still refuses the reference implementation (see docs/threat-model.md)",
              file=sys.stderr, flush=True)
        return True, False
    print("[sandbox] warning: the Python interpreter cannot run as an unprivileged user on this machine; "
          "submissions run as the grader's user (see docs/threat-model.md)", file=sys.stderr, flush=True)
    return False, False


def _python_reachable() -> bool:
    """Whether the interpreter starts as an unprivileged user here (directly or through the mount namespace)."""
    return _isolation()[0]


def can_hide_repo() -> bool:
    """Whether an untrusted worker's mount namespace can show it only `guard.visible()` of the repository."""
    return _isolation()[1]


def _open_model_cache() -> None:
    """Built models under the cache must be readable by the sandbox user (a build may leave 0600 files).
    Run before every worker start, not once: a model built since the last worker needs it too."""
    for root, dirs, files in os.walk(cache_dir() / "models"):
        for name in dirs + files:
            path = os.path.join(root, name)
            try:
                mode = os.lstat(path).st_mode
                if not stat.S_ISLNK(mode):
                    extra = stat.S_IROTH | (stat.S_IXOTH if stat.S_ISDIR(mode) else 0)
                    os.chmod(path, mode | extra)
            except OSError:
                pass


def _signal_user(uid: int, sig: int) -> None:
    """Send `sig` to every process running as `uid`: kill(-1) sent as that user reaches exactly its own processes."""
    def as_uid() -> None:
        os.setgroups([])
        os.setgid(NOGROUP)
        os.setuid(uid)
        try:
            os.kill(-1, sig)
        except ProcessLookupError:
            pass
        os._exit(0)

    try:
        subprocess.run(["/bin/true"], preexec_fn=as_uid, timeout=10, check=False)
    except (OSError, subprocess.SubprocessError):
        pass


def _kill_user(uid: int) -> None:
    """SIGKILL every process running as `uid`."""
    for attempt in range(20):  # SIGKILL lands asynchronously; a fork racing one kill is caught by the next
        _signal_user(uid, signal.SIGKILL)
        time.sleep(0.05 * (attempt + 1))
        if not _uid_in_use(uid):
            return


def _sweep_tmp(uid: int) -> None:
    """Remove what the submission left in the shared temp folders."""
    for folder in ("/tmp", "/var/tmp", "/dev/shm"):
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                if entry.stat(follow_symlinks=False).st_uid != uid:
                    continue
                if entry.is_dir(follow_symlinks=False):
                    shutil.rmtree(entry.path, ignore_errors=True)
                else:
                    os.unlink(entry.path)
            except OSError:
                pass


def _merge_cache(private: Path) -> None:
    """Copy the vectors a trusted worker computed into the shared embedding cache."""
    source = private / "embeddings" / "all-MiniLM-L6-v2.sqlite"
    if not source.exists():
        return
    shared = cache_dir() / "embeddings"
    shared.mkdir(parents=True, exist_ok=True)
    try:
        with sqlite3.connect(f"file:{source}?mode=ro", uri=True, timeout=30) as src:
            rows = src.execute("SELECT key, vec FROM vectors").fetchall()
        with sqlite3.connect(shared / "all-MiniLM-L6-v2.sqlite", timeout=60) as dst:
            dst.execute("CREATE TABLE IF NOT EXISTS vectors (key TEXT PRIMARY KEY, vec BLOB NOT NULL)")
            dst.executemany("INSERT OR IGNORE INTO vectors (key, vec) VALUES (?, ?)", rows)
    except sqlite3.Error:
        pass  # a cache: losing it costs time, never correctness


def _is_trusted(source: str) -> bool:
    for rel in TRUSTED_SOURCES:
        try:
            if (REPO_ROOT / rel).read_text(encoding="utf-8") == source:
                return True
        except OSError:
            continue
    return False


def _vouched(source: str) -> bool:
    """Whether the operator vouches for `source`: byte-identical to a .py file in a VOUCHED_ENV folder."""
    for folder in filter(None, os.environ.get(VOUCHED_ENV, "").split(os.pathsep)):
        for path in Path(folder).rglob("*.py"):
            try:
                if path.read_text(encoding="utf-8") == source:
                    return True
            except (OSError, UnicodeDecodeError):
                continue
    return False


def sees_reference(source: str) -> bool:
    """Whether a worker for `source` may see and import the reference: the reference itself, or a vouched fixture."""
    return _is_trusted(source) or _vouched(source)
