"""What `ailab` checks in its inputs before any work starts, so bad input costs a second, not a grading run.

Every check refuses with `SystemExit(one line that says what to do)`; `graders.cli.main` prints that line
and exits with status 2 (a usage error), never a traceback.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from graders.engine.hidden import Overlay
    from graders.engine.labconfig import LoadProfile


def readable_file(path: Path, what: str) -> None:
    """`path` is a file this process can read; `what` names it in the refusal ("the notebook to check")."""
    if not path.exists():
        raise SystemExit(f"{path} does not exist; pass {what}")
    if path.is_dir():
        raise SystemExit(f"{path} is a folder; pass {what}")
    try:
        with path.open("rb") as f:
            f.read(1)
    except OSError as exc:
        raise SystemExit(f"cannot read {path}: {exc.strerror or exc}; make it readable or pass another file") from None


def notebook_json(path: Path, batch_hint: bool = False) -> None:
    """A `.ipynb` that is not a Jupyter notebook is refused here, not graded (`batch_hint`: say that a
    folder of submissions grades such a file as 0 with its reason instead)."""
    if path.suffix != ".ipynb":
        return
    from graders.engine.notebook import read_notebook

    _, error = read_notebook(path)
    if error:
        hint = " (grade the folder that holds it to record it as 0)" if batch_hint else ""
        raise SystemExit(error.replace("\n", " ") + hint)


def out_folder(path: Path) -> None:
    """`--out` is a folder or can become one."""
    if path.exists() and not path.is_dir():
        raise SystemExit(f"--out {path} is a file; pass a folder for the reports (it is created if missing)")
    parent = next((p for p in path.parents if p.exists()), None)
    if parent is not None and not parent.is_dir():
        raise SystemExit(f"--out {path}: {parent} is a file, not a folder; pass another --out")


def submission(path: str) -> None:
    """A submission argument: the word `reference`, or a notebook / .py / folder that exists and reads."""
    if path == "reference":
        return
    p = Path(path)
    if not p.exists():
        raise SystemExit(f"{p} does not exist; pass a notebook, a .py file, a folder of them, or the word `reference`")
    if p.is_file():
        readable_file(p, "a notebook, a .py file, a folder of them, or the word `reference`")
        notebook_json(p, batch_hint=True)


def rag_inputs(dataset: str, overlay: Overlay | None) -> None:
    """The RAG lab's `--dataset` loads and can be graded; a `--hidden` split and checks over it load too."""
    from graders.datasets import DatasetError, load_dataset, support_kb_size
    from graders.engine.hidden import HiddenError

    try:
        # the generator's own data is gradable by construction: check N without building a large KB twice
        if support_kb_size(dataset) is None or (overlay is not None and overlay.has_split()):
            data = load_dataset(dataset)
            if overlay is not None and overlay.has_split():
                overlay.split({d.id for d in data.docs})
        if overlay is not None:
            overlay.checks()
    except (DatasetError, HiddenError) as exc:
        raise SystemExit(str(exc)) from None


def gpu(profile: LoadProfile) -> None:
    """A GPU profile (lab.toml `device = "cuda"`) on a machine where torch sees no GPU is refused in one line."""
    if not profile.device.startswith("cuda"):
        return
    import torch

    if not torch.cuda.is_available():
        raise SystemExit(f"profile {profile.name!r} runs on a CUDA GPU and torch sees none here; grade with "
                         "--profile quick (CPU), or run benchmarks/gpu_check.sh on a machine with an NVIDIA GPU")


def reference_url(url: str, lab: str, network_open: bool, profile: LoadProfile | None) -> None:
    """`--reference-url`: the serving lab only; http(s)://HOST:PORT; reachable from the grading process (a
    loopback-only network namespace cannot reach it: `--allow-network` is then required); serving some model.
    `profile` (the load profile graded) names the model and dtype in the hint of what to start."""
    from graders.engine import netns
    from graders.serving import remote

    if lab != "serving":
        raise SystemExit(f"--reference-url is for the serving lab (an OpenAI-compatible server); lab {lab!r} grades "
                         "against its own reference, so leave the flag out")
    url = remote.parse(url)
    if not network_open and not netns.isolated() and netns.unavailable() is None:
        raise SystemExit(f"--reference-url {url}: as root the grader runs in a loopback-only network namespace, where "
                         "that server cannot be reached; add --allow-network (submissions can then reach the network "
                         "too: see docs/threat-model.md)")
    remote.connect(url, profile)
