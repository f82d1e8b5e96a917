"""JupyterHub for an ailab workshop on one machine: `ailab hub DIR` (or `make hub`) prepares DIR and starts this.

Candidates log in with any name and the workshop's shared password, get a JupyterLab server of their own
(a local process, home DIR/home/<name>), fetch the labs from nbgrader's exchange (DIR/exchange) in the
Assignments tab, work and submit. The organiser collects and grades from DIR/course (see docs/scale.md).

Read from the environment (`ailab hub` sets them):
  AILAB_WORKSHOP       the workshop folder, prepared by `ailab hub` (course/, exchange/, jupyter/, home/, hub/)
  AILAB_HUB_PASSWORD   the shared password, at least 8 characters
  AILAB_HUB_PORT       the public port on 127.0.0.1 (default 8000)
  AILAB_HUB_IP         the address to listen on (default 127.0.0.1; a LAN address for a classroom)
  AILAB_HUB_API_TOKEN  optional: a token for scripts (a service that can create users, start servers and
                       issue their tokens, e.g. tests/test_hub.py)

Everything here is for one trusted room: SimpleLocalProcessSpawner runs every candidate's server as the
hub's own system user, so a candidate's code can read the course folder (solutions, hidden tests). For an
exam or strangers, use real users or containers: docs/scale.md says what changes.
"""
import os
import socket
import sys
from pathlib import Path

c = get_config()  # noqa: F821

WORKSHOP = Path(os.environ["AILAB_WORKSHOP"]).resolve()
BIN = Path(sys.executable).parent  # the environment ailab is installed in: jupyterhub, the proxy, the servers
REPO = Path(__file__).resolve().parents[2]
IP = os.environ.get("AILAB_HUB_IP", "127.0.0.1")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# Public address: the proxy. The hub's own API and the proxy's API stay on loopback, on free ports, so two
# workshops (or a test beside a running workshop) do not collide on JupyterHub's defaults 8081 and 8001.
c.JupyterHub.bind_url = f"http://{IP}:{int(os.environ.get('AILAB_HUB_PORT', '8000'))}"
c.JupyterHub.hub_ip = "127.0.0.1"
c.JupyterHub.hub_port = _free_port()
c.ConfigurableHTTPProxy.api_url = f"http://127.0.0.1:{_free_port()}"
# The pure-Python configurable-http-proxy from PyPI (a dependency of ailab): no Node.js needed.
c.ConfigurableHTTPProxy.command = [str(BIN / "configurable-http-proxy")]
c.ConfigurableHTTPProxy.pid_file = str(WORKSHOP / "hub" / "proxy.pid")

c.JupyterHub.db_url = f"sqlite:///{WORKSHOP / 'hub' / 'jupyterhub.sqlite'}"
c.JupyterHub.cookie_secret_file = str(WORKSHOP / "hub" / "jupyterhub_cookie_secret")
c.JupyterHub.cleanup_servers = True  # stopping the hub stops the candidates' servers (their files stay)

# One shared password for the room (a real deployment uses OAuth or LDAP: docs/scale.md).
c.JupyterHub.authenticator_class = "shared-password"
c.SharedPasswordAuthenticator.user_password = os.environ["AILAB_HUB_PASSWORD"]
c.Authenticator.allow_all = True

c.JupyterHub.spawner_class = "jupyterhub.spawner.SimpleLocalProcessSpawner"
c.SimpleLocalProcessSpawner.home_dir_template = str(WORKSHOP / "home" / "{username}")
c.Spawner.cmd = [str(BIN / "jupyterhub-singleuser")]
c.Spawner.default_url = "/lab"
c.Spawner.start_timeout = 120  # a first JupyterLab start on a busy 2-core machine
c.Spawner.http_timeout = 90
if os.getuid() == 0:  # a workshop VM or container run as root: Jupyter refuses root unless told
    c.Spawner.args = ["--ServerApp.allow_root=True"]
c.Spawner.environment = {
    # JupyterHub passes only what is listed here: the candidate's terminal and kernels find ailab, nbgrader
    # and the labs' packages, offline like every ailab run.
    "PATH": os.pathsep.join((str(BIN), "/usr/local/bin", "/usr/bin", "/bin")),
    "PYTHONPATH": str(REPO),
    "LANG": os.environ.get("LANG", "C.UTF-8"),
    "HF_HUB_OFFLINE": "1",
    "TOKENIZERS_PARALLELISM": "false",
    # nbgrader_config.py (course id, exchange, student id = hub user) and the page config that hides the
    # instructor's nbgrader tools from candidates; each candidate's own settings stay in ~/.jupyter.
    "JUPYTER_CONFIG_PATH": str(WORKSHOP / "jupyter"),
}

token = os.environ.get("AILAB_HUB_API_TOKEN")
if token:
    c.JupyterHub.services = [{"name": "ailab-organiser", "api_token": token}]
    c.JupyterHub.load_roles = [{
        "name": "ailab-organiser",
        "description": "create candidates, start and stop their servers, issue their API tokens",
        "scopes": ["admin:users", "admin:servers", "tokens", "access:servers"],
        "services": ["ailab-organiser"],
    }]
