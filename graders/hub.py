"""`ailab hub DIR`: JupyterHub for a workshop on one machine, with the ailab course and nbgrader's exchange.

`prepare` lays out the workshop folder DIR:
  course/    the nbgrader course (`ailab course init`); its config also names the exchange, so the organiser
             runs `nbgrader collect LAB` there and then `ailab grade LAB --course DIR/course`
  exchange/  nbgrader's exchange, with each lab released into it
  jupyter/   what every candidate's server reads (JUPYTER_CONFIG_PATH): nbgrader_config.py, and the
             settings that hide nbgrader's instructor tools (formgrader, create assignment, course list)
  home/      one folder per candidate, made at their first login
  hub/       JupyterHub's database, cookie secret, proxy pid file, and the shared password (mode 0600)
`start` then replaces this process with JupyterHub on deploy/jupyterhub/jupyterhub_config.py, so a
Ctrl+C or a SIGTERM reaches JupyterHub itself, which stops the proxy and the candidates' servers.
"""
from __future__ import annotations

import json
import os
import secrets
import sys
from pathlib import Path

from graders.course import COURSE_ID, _labs, assignment_of, init_course, run_nbgrader
from graders.paths import REPO_ROOT, lab_dir

CONFIG = REPO_ROOT / "deploy" / "jupyterhub" / "jupyterhub_config.py"
EXCHANGE_MARK = "# --- ailab hub: the workshop's exchange (written by `ailab hub`) ---"

CANDIDATE_NBGRADER = '''\
"""nbgrader settings of every candidate's server in this workshop, written by `ailab hub`."""
import os

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.Exchange.root = {exchange!r}
# Every candidate's server runs as the hub's own system user (SimpleLocalProcessSpawner), so nbgrader's
# default, the system user name, would name every submission alike: the hub's user name names it instead.
c.CourseDirectory.student_id = os.environ.get("JUPYTERHUB_USER", "*")
'''

COURSE_EXCHANGE = '''
{mark}
c.Exchange.root = {exchange!r}
# The candidates' servers all run as the hub's system user: the owner of a submission cannot tell who made it.
c.ExchangeCollect.check_owner = False
'''

# Candidates fetch, validate and submit; the instructor's nbgrader tools stay off their servers.
SERVER_CONFIG = {"ServerApp": {"jpserver_extensions": {"nbgrader.server_extensions.formgrader": False,
                                                       "nbgrader.server_extensions.course_list": False}}}
PAGE_CONFIG = {"disabledExtensions": {"@jupyter/nbgrader:formgrader": True, "@jupyter/nbgrader:course-list": True,
                                      "@jupyter/nbgrader:create-assignment": True}}


def password(workshop: Path) -> str:
    """The shared password: AILAB_HUB_PASSWORD, else the one kept in hub/password, else a new one kept there."""
    given = os.environ.get("AILAB_HUB_PASSWORD")
    if given is not None:
        if len(given) < 8:
            raise SystemExit("AILAB_HUB_PASSWORD must have at least 8 characters (JupyterHub's shared-password rule)")
        return given
    kept = workshop / "hub" / "password"
    if kept.exists():
        return kept.read_text().strip()
    new = secrets.token_urlsafe(9)
    kept.write_text(new + "\n")
    kept.chmod(0o600)
    return new


def prepare(workshop: Path, labs: list[str]) -> Path:
    """Lay out the workshop folder (see the module docstring) and release `labs` into its exchange;
    the course is built on first use, and a lab added later is built then."""
    workshop = workshop.resolve()
    course, exchange = workshop / "course", workshop / "exchange"
    for folder in (workshop / "hub", workshop / "home", workshop / "jupyter" / "labconfig"):
        folder.mkdir(parents=True, exist_ok=True)
    exchange.mkdir(exist_ok=True)
    exchange.chmod(0o1777)  # nbgrader's rule for a shared exchange: everyone writes, nobody removes others' files
    missing = [lab for lab in labs if not (course / "release" / assignment_of(lab)[0]).is_dir()]
    if missing:
        init_course(course, missing)  # rewrites the course config: the exchange block goes back on below
    config = course / "nbgrader_config.py"
    if EXCHANGE_MARK not in config.read_text():
        with open(config, "a") as f:
            f.write(COURSE_EXCHANGE.format(mark=EXCHANGE_MARK, exchange=str(exchange)))
    for lab in labs:
        assignment = assignment_of(lab)[0]
        print(f"[hub] nbgrader release_assignment {assignment} ...", file=sys.stderr, flush=True)
        run_nbgrader(course, "release_assignment", assignment, "--force")
    (workshop / "jupyter" / "nbgrader_config.py").write_text(
        CANDIDATE_NBGRADER.format(course_id=COURSE_ID, exchange=str(exchange)))
    (workshop / "jupyter" / "jupyter_server_config.json").write_text(json.dumps(SERVER_CONFIG, indent=2) + "\n")
    (workshop / "jupyter" / "labconfig" / "page_config.json").write_text(json.dumps(PAGE_CONFIG, indent=2) + "\n")
    return workshop


def start(workshop: Path, labs: list[str] | None, port: int, ip: str = "127.0.0.1") -> int:
    """Prepare the workshop and run JupyterHub in this process (it does not return unless exec fails)."""
    if workshop.exists() and not workshop.is_dir():
        raise SystemExit(f"{workshop} is a file; pass a folder for the workshop (it is created if missing)")
    for lab in labs or []:
        lab_dir(lab)  # exits with the list of labs when unknown
    workshop.mkdir(parents=True, exist_ok=True)
    workshop = prepare(workshop, labs or _labs())
    shared = password(workshop)
    env = {**os.environ, "AILAB_WORKSHOP": str(workshop), "AILAB_HUB_PASSWORD": shared,
           "AILAB_HUB_PORT": str(port), "AILAB_HUB_IP": ip}
    shown = "(from AILAB_HUB_PASSWORD)" if "AILAB_HUB_PASSWORD" in os.environ else shared
    print(f"[hub] candidates log in at http://{ip}:{port}/ with any user name and the password {shown}\n"
          f"[hub] when they have submitted: (cd {workshop / 'course'} && nbgrader collect LAB), then "
          f"ailab grade LAB --course {workshop / 'course'} --out {workshop / 'graded' / 'LAB'} --workers 1",
          file=sys.stderr, flush=True)
    os.chdir(workshop / "hub")  # JupyterHub's own leftovers, if any, land beside its state
    argv = [sys.executable, "-m", "jupyterhub", "-f", str(CONFIG)]
    os.execve(sys.executable, argv, env)
    return 1  # unreachable: execve replaces the process or raises OSError
