"""The `ailab` command line: start a lab, check a notebook, grade submissions, build an nbgrader course, run the demo."""
from __future__ import annotations

import argparse
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from graders import preflight

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _grader(lab: str) -> Callable[..., Any]:
    from graders.paths import lab_dir

    lab_dir(lab)  # exits with the list of labs when unknown
    try:
        module = importlib.import_module(f"graders.{lab}.grade")
    except ModuleNotFoundError as exc:
        raise SystemExit(f"lab {lab!r} has no grader yet ({exc})") from exc
    return module.grade  # type: ignore[no-any-return]


def cmd_start(args: argparse.Namespace) -> int:
    from graders.paths import lab_dir
    from graders.workspace import start

    lab_dir(args.lab)
    if args.dir and Path(args.dir).exists() and not Path(args.dir).is_dir():
        raise SystemExit(f"--dir {args.dir} is a file; pass a folder for the workspace (it is created if missing)")
    start(args.lab, Path(args.dir) if args.dir else None, launch=not args.no_lab)
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from graders.check import check

    notebook = Path(args.notebook)
    preflight.readable_file(notebook, "the notebook you are working on (.ipynb)")
    if notebook.suffix not in (".ipynb", ".py"):
        raise SystemExit(f"{notebook} is not a notebook (.ipynb) or a .py file; pass the notebook you are working on")
    preflight.notebook_json(notebook)
    card = check(notebook)
    return 0 if not card.errors else 1


def cmd_grade(args: argparse.Namespace) -> int:
    from graders.engine import netns
    from graders.engine.hidden import open_overlay
    from graders.engine.labconfig import load_lab
    from graders.paths import lab_dir

    lab_dir(args.lab)  # say what is wrong before anything starts or loads (an unknown lab, profile or path)
    try:
        overlay = open_overlay(args.hidden, args.lab)
        lab = load_lab(args.lab, overlay.lab_toml() if overlay else None)
    except ValueError as exc:  # a --hidden folder (HiddenError) or a merged lab.toml that does not fit; it names which
        raise SystemExit(str(exc)) from None
    known = {*lab.profiles, *lab.load_profiles, *lab.scenarios, *lab.task_profiles}
    if args.profile not in known:
        raise SystemExit(f"lab {args.lab!r} has no profile {args.profile!r}; choose one of {sorted(known)}")
    if args.profile in lab.load_profiles:
        preflight.gpu(lab.load_profiles[args.profile])
    submission: str | list[tuple[str, Path]]
    if args.course:
        from graders.gradebook import course_submissions

        course = Path(args.course).resolve()
        submission = [(s, p) for s, p in course_submissions(course, lab)
                      if args.submission is None or s == args.submission]
        if not submission:
            raise SystemExit(f"student {args.submission!r} has no {args.lab} submission in {course / 'submitted'}")
    elif args.submission is None:
        raise SystemExit("say what to grade: a notebook, a .py file, a folder of them, or `reference` "
                         "(or --course DIR for an nbgrader course's submissions)")
    else:
        preflight.submission(args.submission)
        submission = args.submission
    preflight.out_folder(Path(args.out))
    if args.workers is not None and (args.scheduler or args.workers < 1):
        raise SystemExit("--workers N starts a local cluster of N >= 1 workers; --scheduler uses one already running: "
                         "pass one of them")
    if args.reference_url:
        preflight.reference_url(args.reference_url, args.lab, args.allow_network, lab.load_profiles.get(args.profile))
    if args.model_url or args.model or args.model_prices:
        from graders.agents import upstream

        upstream.preflight(args.lab, args.model_url, args.model, args.model_prices, args.allow_network,
                           args.workers is not None or bool(args.scheduler))
    if args.lab == "rag" and not netns.isolated():  # the re-run in the namespace was checked by its parent
        preflight.rag_inputs(args.dataset, overlay)
    grade = _grader(args.lab)  # imported only now: a grader module takes a second to import
    from graders.engine.summary import format_table, write_summary
    out = Path(args.out)
    failed: list[str] = []
    if args.workers is not None or args.scheduler:  # on Dask; each grade isolates itself on its worker
        from graders.engine.cluster import Settings, grade_on_cluster

        settings = Settings(args.lab, args.profile, args.dataset, Path(args.hidden) if args.hidden else None,
                            args.reference_url, args.allow_network)
        cards, failed = grade_on_cluster(lab, submission, out, settings,
                                         course=Path(args.course).resolve() if args.course else None,
                                         workers=args.workers, scheduler=args.scheduler)
    else:
        if not args.allow_network:
            code = netns.isolate(grade_argv(args))
            if code is not None:
                return code
        external: dict[str, Any] = {"reference_url": args.reference_url} if args.reference_url else {}  # serving
        if args.model_url:  # the agents grader only
            external.update(model_url=args.model_url, model=args.model, model_prices=args.model_prices)
        cards = grade(submission, out, dataset=args.dataset, profile=args.profile,
                      hidden=Path(args.hidden) if args.hidden else None,
                      course=Path(args.course).resolve() if args.course else None, **external)
    print()
    print(format_table(cards, out))
    print(f"\nsummary: {write_summary(cards, out)}; one report.html per submission under {out}")
    if args.course:
        print(f"grades written to {Path(args.course) / 'gradebook.db'}: see formgrader, or run "
              f"`nbgrader generate_feedback {args.lab}` there for feedback that includes them")
    for line in failed:
        print(line, file=sys.stderr, flush=True)
    return 1 if failed else 0


def grade_argv(args: argparse.Namespace) -> list[str]:
    """The `ailab grade` arguments again, for the re-run inside the network namespace."""
    argv = ["grade", args.lab, *([args.submission] if args.submission else []), "--out", args.out,
            "--dataset", args.dataset, "--profile", args.profile]
    argv += ["--hidden", args.hidden] if args.hidden else []
    argv += ["--course", args.course] if args.course else []
    argv += ["--reference-url", args.reference_url] if args.reference_url else []
    for flag, value in (("--model-url", args.model_url), ("--model", args.model), ("--model-prices", args.model_prices)):
        argv += [flag, value] if value else []
    return argv


def cmd_course_init(args: argparse.Namespace) -> int:
    from graders.course import init_course
    from graders.engine.hidden import HiddenError

    if Path(args.dir).exists() and not Path(args.dir).is_dir():
        raise SystemExit(f"{args.dir} is a file; pass a folder for the course (it is created if missing)")
    try:
        path = init_course(Path(args.dir), hidden=Path(args.hidden) if args.hidden else None)
    except HiddenError as exc:
        raise SystemExit(str(exc)) from None
    print(f"nbgrader course ready in {path}; run nbgrader commands from there (e.g. `nbgrader autograde rag`).")
    return 0


def cmd_hub(args: argparse.Namespace) -> int:
    from graders.hub import start

    labs = [lab.strip() for lab in args.labs.split(",") if lab.strip()] if args.labs else None
    return start(Path(args.dir), labs, port=args.port, ip=args.ip)


def cmd_leaderboard(args: argparse.Namespace) -> int:
    from graders.leaderboard import main_static, serve

    if args.serve:
        return serve(Path(args.dir), port=args.port, duration_s=args.duration)
    main_static(Path(args.dir))
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    from graders.demo import run_demo

    return run_demo(Path(args.out), profile=args.profile)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ailab", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("start", help="make a workspace with a lab's release notebook and open JupyterLab")
    p.add_argument("lab")
    p.add_argument("--dir", help="workspace folder (default ./ailab-LAB)")
    p.add_argument("--no-lab", action="store_true", help="only prepare the workspace, do not launch JupyterLab")
    p.set_defaults(func=cmd_start)

    p = sub.add_parser("check", help="quick feedback on a notebook using the public dev data only")
    p.add_argument("notebook")
    p.set_defaults(func=cmd_check)

    p = sub.add_parser("grade", help="grade submissions against the reference: scorecard.json + report.html each")
    p.add_argument("lab")
    p.add_argument("submission", nargs="?",
                   help="a notebook, a folder of notebooks, or the word `reference` (with --course: one student id)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--dataset", default="support-kb", help="support-kb, support-kb:N, cranfield, or a BEIR/SMART folder")
    p.add_argument("--profile", default="quick", help="a profile of the lab's lab.toml: quick (default), full, smoke (a short wiring check)")
    p.add_argument("--hidden", metavar="DIR",
                   help="your private hidden set and hidden tests over the shipped ones (see docs/interviewing.md)")
    p.add_argument("--course", metavar="DIR", help="grade an nbgrader course's submitted/ notebooks and write the "
                                                   "grades into its gradebook (formgrader, generate_feedback)")
    p.add_argument("--allow-network", action="store_true",
                   help="do not grade inside a loopback-only network namespace (the default when root)")
    p.add_argument("--reference-url", metavar="URL",
                   help="serving lab: compare with an OpenAI-compatible server already running at http(s)://HOST:PORT "
                        "(e.g. `vllm serve $(python -m reference_systems.serving.model) --dtype float32 --port 8200`) instead of "
                        "the built-in reference. Load goes to 127.0.0.1 only, except to this server, which you name "
                        "here and may be on another host of yours; as root, add --allow-network to reach it")
    p.add_argument("--model-url", metavar="URL",
                   help="agents lab: a real OpenAI-compatible chat-completions server with tool calls in place of the "
                        "scripted policy model, for candidates and reference alike (base URL, e.g. "
                        "http://127.0.0.1:8000/v1; API key from $AILAB_MODEL_API_KEY); scores are then not "
                        "deterministic. As root, add --allow-network to reach it")
    p.add_argument("--model", metavar="NAME", help="with --model-url: the model to ask for (default: the one it lists)")
    p.add_argument("--model-prices", metavar="IN,OUT",
                   help="with --model-url: USD per million input and output tokens, over lab.toml [prices]")
    p.add_argument("--workers", type=int, metavar="N",
                   help="grade on a local Dask cluster of N worker processes, one submission each at a time (a rerun "
                        "of the same command skips what is already graded into OUT)")
    p.add_argument("--scheduler", metavar="tcp://HOST:8786",
                   help="grade on a running Dask cluster: one task per submission, on workers started with "
                        "`dask worker tcp://HOST:8786 --nthreads 1 --resources grade=1` (docs/scale.md)")
    p.set_defaults(func=cmd_grade)

    p = sub.add_parser("course", help="nbgrader course tools")
    course = p.add_subparsers(dest="course_command", required=True)
    c = course.add_parser("init", help="build an nbgrader course folder from labs/")
    c.add_argument("dir")
    c.add_argument("--hidden", metavar="DIR", help="your own hidden tests (DIR/<lab>/nbgrader/<grade_id>.py) in place "
                                                   "of the shipped ones")
    c.set_defaults(func=cmd_course_init)

    p = sub.add_parser("hub", help="JupyterHub for a workshop on this machine: candidates log in, fetch the labs "
                                    "from nbgrader's exchange, work in JupyterLab and submit (docs/scale.md)",
                       description="The shared password is $AILAB_HUB_PASSWORD, else one made once and kept in "
                                   "DIR/hub/password. Set AILAB_HUB_API_TOKEN to give scripts an organiser token.")
    p.add_argument("dir", help="the workshop folder: course/, exchange/, the candidates' homes (created if missing)")
    p.add_argument("--labs", help="comma-separated labs to release (default: every lab)")
    p.add_argument("--port", type=int, default=8000, help="public port (default 8000)")
    p.add_argument("--ip", default="127.0.0.1", help="address to listen on (default 127.0.0.1; a LAN address for a room)")
    p.set_defaults(func=cmd_hub)

    p = sub.add_parser("leaderboard", help="leaderboard.html from the scorecards under DIR; --serve keeps it live")
    p.add_argument("dir", help="a folder holding `ailab grade --out` folders (searched recursively)")
    p.add_argument("--serve", action="store_true", help="serve DIR on 127.0.0.1 and rebuild as scorecards land")
    p.add_argument("--port", type=int, default=8000, help="port for --serve (0 picks a free one; default 8000)")
    p.add_argument("--duration", type=float, default=None, help="stop serving after this many seconds")
    p.set_defaults(func=cmd_leaderboard)

    p = sub.add_parser("demo", help="grade the reference and the examples of every lab on the embedded data")
    p.add_argument("--out", default="out/demo")
    p.add_argument("--profile", default="quick", choices=["quick", "full"])
    p.set_defaults(func=cmd_demo)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run one command. Bad input (a refusal, a dataset or --hidden folder that cannot be used, a file that
    cannot be read or written) ends in ONE line on stderr and exit status 2, like argparse's own errors."""
    from graders.datasets.types import DatasetError
    from graders.engine.hidden import HiddenError

    args = build_parser().parse_args(argv)
    try:
        return int(args.func(args))
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except SystemExit as exc:
        if not isinstance(exc.code, str):
            raise
        message = exc.code
    except (DatasetError, HiddenError) as exc:
        message = str(exc)
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        message = f"cannot use{where}: {exc.strerror or exc}; check the path and its permissions (or the port)"
    print(f"ailab {args.command}: error: {' '.join(message.split())}", file=sys.stderr, flush=True)
    return 2


if __name__ == "__main__":
    sys.exit(main())
