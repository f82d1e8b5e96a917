"""What a submission's process may see of the repository, and the audit hook that refuses the rest.

A submission is graded against the reference implementation, so it must not run, read or copy it. Its
process needs only these parts of the repository (the one list of them; `visible()`):

- graders/       the worker, the hosts, and the lab interfaces and adapters they import
- labkit/        what candidate code may import (text analysis, embeddings, the serving engine, telemetry)
- LAB_PROVIDED   the serving lab's engine and tiny GPT-2, which `labkit.serving` hands out; they live in
                 reference_systems/serving/ beside the reference server, and only these files are shown
- the virtual environment and the cache folder, where they live inside the repository (.venv, .cache/ailab)

Everything else is hidden: reference_systems/ (the reference solutions), labs/ (the source notebooks hold the
solutions), .git (its objects hold both), tests/, benchmarks/, docs/.

1. Prevention, when the grader is root: `graders.engine.sandbox_user` gives every untrusted worker a private
   mount namespace in which the repository root is a tmpfs holding bind mounts of `visible()` only.
2. Detection, everywhere (not root, `AILAB_SANDBOX_USER=same`, no mount namespace): `install()`, called by the
   worker and the hosts before any candidate code loads, adds an audit hook (PEP 578) and an import finder.
   Importing a reference module (other than the lab-provided ones), opening a hidden file for reading, or
   starting a process that names a hidden path or runs inside one raises `ReferenceRefused`, whose message
   starts with REFUSAL, and reports the attempt to the grader on the descriptor in `AILAB_GUARD_FD`; the
   grader flags the submission and zeroes its parts (`graders.engine.integrity.flag_reference_access`).

The hook runs in the submission's own process, so a determined submission can get past it (system calls
through ctypes, a child process with obfuscated arguments); as root the mount namespace still holds.
docs/isolation.md and docs/threat-model.md say what each layer covers.
"""
from __future__ import annotations

import importlib.abc
import os
import re
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from graders.paths import REPO_ROOT, cache_dir

REFUSAL = "the reference implementation is not available to submissions"
FD_ENV = "AILAB_GUARD_FD"  # the descriptor (a grader-only file) on which refusals are reported
SWITCH_ENV = "AILAB_GUARD"  # "off" only for the reference itself (graders.engine.sandbox_user._is_trusted)
LAB_PROVIDED = ("reference_systems/__init__.py", "reference_systems/serving/__init__.py",
                "reference_systems/serving/engine.py", "reference_systems/serving/model.py")
SHOWN = ("graders", "labkit", *LAB_PROVIDED)
REFERENCE_PACKAGE = "reference_systems"
MAX_REPORTS = 20
_SPAWNS = {"subprocess.Popen": 2, "os.system": None, "os.exec": None, "os.posix_spawn": None, "os.spawn": None}
_ACCESS = os.O_RDONLY | os.O_WRONLY | os.O_RDWR
_PYC = re.compile(r"(.*/)?__pycache__/([^/.]+)\.[^/]+\.pyc")


class ReferenceRefused(PermissionError):
    """A submission reached for a hidden part of the repository (the reference, the labs' sources, git)."""


def visible(root: Path = REPO_ROOT) -> tuple[str, ...]:
    """The paths, relative to the repository root, that a submission's process may see."""
    extra = []
    for folder in (Path(sys.prefix), cache_dir()):
        try:
            extra.append(folder.resolve().relative_to(root).as_posix())
        except ValueError:
            continue  # outside the repository: nothing to hide or show
    return (*SHOWN, *extra)


def _module(rel: str) -> str:
    return rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".")


PROVIDED_MODULES = frozenset(_module(rel) for rel in LAB_PROVIDED if rel.startswith(REFERENCE_PACKAGE + "/"))


class Policy:
    """Which module names and paths are refused; immutable once built."""

    def __init__(self, root: Path = REPO_ROOT, shown: Sequence[str] | None = None) -> None:
        self.root = str(root)
        self.shown = tuple(shown if shown is not None else visible(root))
        tail = r"(?:/[^\s'\"`;:|&<>()=,]*)?(?![^/\s'\"`;:|&<>()=,])"
        self._mention = re.compile(re.escape(self.root) + tail)

    def module_refused(self, name: str) -> bool:
        return (name == REFERENCE_PACKAGE or name.startswith(REFERENCE_PACKAGE + ".")) and name not in PROVIDED_MODULES

    def hidden(self, path: str) -> bool:
        """Whether the absolute, normalised `path` lies inside the repository but outside what is shown
        (the repository root itself included: a process on it could reach everything below)."""
        if path != self.root and not path.startswith(self.root + "/"):
            return False
        rel = path[len(self.root) + 1:]
        cached = _PYC.fullmatch(rel)  # a shown module's bytecode cache is as harmless as its source
        rel = f"{cached.group(1) or ''}{cached.group(2)}.py" if cached else rel
        return not any(rel == s or rel.startswith(s + "/") for s in self.shown)

    def folder_refused(self, folder: Any) -> bool:
        """Whether an import path entry (sys.path, a package's __path__) is a hidden folder; the folders that
        lead to shown files (the repository root, reference_systems/serving) are not."""
        if not isinstance(folder, str):
            return False
        path = os.path.abspath(folder or ".")
        if path == self.root or not self.hidden(path):
            return False
        rel = path[len(self.root) + 1:]
        return not any(s.startswith(rel + "/") for s in self.shown)

    def open_refused(self, path: Any, flags: Any) -> bool:
        if isinstance(path, int):
            return False
        if isinstance(flags, int) and flags & _ACCESS == os.O_WRONLY:
            return False  # writing is not reading the reference; the sandbox user's permissions decide it
        text = os.fsdecode(path)
        if self.hidden(os.path.realpath(text)):
            return True
        # a relative path may be relative to a descriptor of the repository (dir_fd): judge it by its names
        return not os.path.isabs(text) and bool({REFERENCE_PACKAGE, ".git"} & set(text.split("/")))

    def spawn_refused(self, args: Any, cwd: Any) -> bool:
        """Whether a process would start in a hidden folder or with an argument naming a hidden path."""
        try:
            where = os.path.realpath(os.fsdecode(cwd)) if isinstance(cwd, (str, bytes, os.PathLike)) else os.getcwd()
        except OSError:  # the working folder is gone: it is not the repository's
            where = ""
        return self.hidden(where) or any(
            REFERENCE_PACKAGE in text or any(self.hidden(os.path.normpath(m.group(0))) for m in self._mention.finditer(text))
            for text in _strings(args))


def _strings(value: Any, depth: int = 0) -> Iterator[str]:
    """Every string in a spawn's arguments (environments are not arguments and are skipped)."""
    if isinstance(value, (str, bytes, os.PathLike)):
        yield os.fsdecode(value)
    elif isinstance(value, (list, tuple)) and depth < 3:
        for item in value:
            yield from _strings(item, depth + 1)


class _Reporter:
    """Writes each distinct refusal once, as one line, to the grader's descriptor (at most MAX_REPORTS)."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.sent: set[str] = set()

    def __call__(self, message: str) -> None:
        if self.fd < 0 or message in self.sent or len(self.sent) >= MAX_REPORTS:
            return
        self.sent.add(message)
        try:
            os.write(self.fd, (" ".join(message.split())[:500] + "\n").encode())
        except OSError:
            pass  # the submission closed it: the refusal itself still stands


def refusal(what: str) -> str:
    return (f"{REFUSAL} ({what}); graded work must be the candidate's own, and the attempt is reported "
            "to the interviewer")


class _RefuseImports(importlib.abc.MetaPathFinder):
    """First on sys.meta_path, so every import asks it first (importlib.import_module and runpy raise no
    'import' audit event): refuses reference modules by name, and any module from a hidden folder."""

    def __init__(self, policy: Policy, report: _Reporter) -> None:
        self.policy, self.report = policy, report

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> None:
        if self.policy.module_refused(name):
            what = f"import of {name}"
        else:  # sys.path tricks: a hidden folder as a place to import from
            folder = next((f for f in (sys.path if path is None else path) if self.policy.folder_refused(f)), None)
            what = f"import of {name} from {folder}" if folder else ""
        if what:
            message = refusal(what)
            self.report(message)
            raise ReferenceRefused(message)
        return None


def _hook(policy: Policy, report: _Reporter) -> Any:
    """The audit hook; every other event passes at the cost of three comparisons (none of the checks'
    own calls, realpath and getcwd, raises an audit event, so the hook never re-enters itself)."""

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event == "open":
            what = f"opening {os.fsdecode(args[0])}" if policy.open_refused(args[0], args[2]) else None
        elif event == "import":
            what = f"import of {args[0]}" if policy.module_refused(str(args[0])) else None
        elif event in _SPAWNS:
            cwd_at = _SPAWNS[event]
            refused = policy.spawn_refused(args, args[cwd_at] if cwd_at is not None else None)
            command = " ".join(_strings(args[1] if event == "subprocess.Popen" else args))
            what = f"starting `{command[:200]}`" if refused else None
        else:
            return
        if what:
            message = refusal(what)
            report(message)
            raise ReferenceRefused(message)

    return hook


_installed: list[bool] = []


def install() -> None:
    """From now on refuse this process the hidden parts of the repository; call it before loading candidate
    code. A no-op when the grader marked this process as the reference itself (AILAB_GUARD=off)."""
    if _installed or os.environ.get(SWITCH_ENV) == "off":
        return
    policy = Policy()
    try:
        fd = int(os.environ.pop(FD_ENV, "-1"))
    except ValueError:
        fd = -1
    report = _Reporter(fd)
    sys.meta_path.insert(0, _RefuseImports(policy, report))
    sys.addaudithook(_hook(policy, report))
    _installed.append(True)
