"""`ailab start LAB`: a candidate workspace holding the lab's release notebook, opened in JupyterLab.

The release notebook comes from nbgrader's own `generate_assignment` (run in a throwaway course),
so it has exactly what nbgrader hands students: no solutions, no hidden tests.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import tomllib
from pathlib import Path

from graders.course import generate_release, nbgrader_env, notebook_of
from graders.paths import lab_dir

README = """\
# {title}

Your workspace for the `{lab}` lab of ailab.

- Open `{notebook}` in JupyterLab and work through the tasks in order; run each task's test cell.
  Test cells also hold hidden tests: passing the visible asserts is necessary, not sufficient.
- Code cells tagged `ailab-exclude` (explorations on the public dev data) are not graded; every
  other code cell except the test cells becomes your submission, so keep heavy work out of them.
- Quick score on the public dev data, any time:

      ailab check {notebook_path}

- Hand in `{notebook}` when you are done.
"""


def start(lab: str, dest: Path | None = None, launch: bool = True) -> Path:
    """Create DEST (default ./ailab-LAB) with the lab's release notebook and a README; launch JupyterLab unless told not to."""
    dest = (Path(dest) if dest else Path.cwd() / f"ailab-{lab}").resolve()
    meta = tomllib.loads((lab_dir(lab) / "lab.toml").read_text())["lab"]
    _refuse_overwrite(dest / Path(notebook_of(lab, meta)).name, lab)
    with tempfile.TemporaryDirectory(prefix=f"ailab-{lab}-course-") as tmp:
        print(f"[start] generating the release notebook of {lab!r} with nbgrader ...", file=sys.stderr, flush=True)
        release = generate_release(lab, Path(tmp))
        files = sorted(p for p in release.rglob("*") if p.is_file())
        notebooks = [p for p in files if p.suffix == ".ipynb"]
        if not notebooks:
            raise RuntimeError(f"nbgrader produced no notebook for lab {lab!r} in {release}")
        for path in notebooks:
            _refuse_overwrite(dest / path.relative_to(release), lab)
        dest.mkdir(parents=True, exist_ok=True)
        for path in files:
            target = dest / path.relative_to(release)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(path, target)
    title = meta.get("title", lab)
    notebook = notebooks[0].name
    readme = dest / "README.md"
    if not readme.exists():
        readme.write_text(README.format(title=title, lab=lab, notebook=notebook, notebook_path=dest / notebook))
    print(f"workspace ready: {dest / notebook}\nnext: work through the tasks, then `ailab check {dest / notebook}`")
    if launch:
        _launch_lab(dest, notebook)
    return dest


def _refuse_overwrite(notebook: Path, lab: str) -> None:
    if notebook.exists():
        raise SystemExit(f"{notebook} already exists; not overwriting your work. "
                         f"Use another folder (ailab start {lab} --dir OTHER) or delete that notebook first.")


def _launch_lab(dest: Path, notebook: str) -> None:
    cmd = [sys.executable, "-m", "jupyter", "lab", "--ServerApp.ip=127.0.0.1", notebook]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        cmd.append("--allow-root")
    print(f"[start] launching JupyterLab in {dest} (Ctrl-C stops it) ...", file=sys.stderr, flush=True)
    try:
        subprocess.run(cmd, cwd=dest, env=nbgrader_env(), check=False)
    except KeyboardInterrupt:
        pass
