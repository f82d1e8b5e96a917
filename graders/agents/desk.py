"""The support desk the grader runs in its own process: the world's tools and the policy model, on one port.

`Desk` serves both apps with uvicorn in a background thread on 127.0.0.1 (paths under /v1 go to the model, the
rest to the world). A conversation is opened with a fresh database and a session token that only the agent's
requests carry; closing it makes both answer 410, so an agent that outlives its conversation can do nothing more.
With an `Upstream` (`--model-url`), /v1 forwards to that real model instead (graders.agents.upstream), keeping the
sessions, the completion budget and the token counts here.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any

from graders.agents import upstream as upstream_model
from graders.engine.sandbox import free_port
from reference_systems.agents import policy_model, world
from reference_systems.agents.tasks import Task


class _Dispatch:
    """ASGI: /v1/* to the model server, everything else to the world."""

    def __init__(self, model_app: Any, world_app: Any) -> None:
        self.model_app, self.world_app = model_app, world_app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        app = self.model_app if scope.get("path", "").startswith("/v1") else self.world_app
        await app(scope, receive, send)


@dataclass
class Opened:
    token: str
    task: Task
    fault_seed: int


class Desk:
    def __init__(self, lab_raw: dict[str, Any], upstream: upstream_model.Upstream | None = None) -> None:
        self.policy = dict(lab_raw["policy"])
        self.world = world.World(dict(lab_raw.get("faults", {})), self.policy)
        config = dict(lab_raw.get("model", {}))
        self.upstream = upstream
        self.model: policy_model.PolicyModel | upstream_model.UpstreamModel
        if upstream is None:
            self.model = policy_model.PolicyModel(config, self.policy)
        else:  # a completion never outlasts the conversation it belongs to
            self.model = upstream_model.UpstreamModel(upstream, int(config.get("max_calls", 40)), float(
                lab_raw.get("conversation", {}).get("deadline_s", 12.0)))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._server: Any = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> Desk:
        import uvicorn

        model_app = (upstream_model.create_app(self.model) if isinstance(self.model, upstream_model.UpstreamModel)
                     else policy_model.create_app(self.model))
        app = _Dispatch(model_app, world.create_app(self.world))
        config = uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False,
                                lifespan="on", timeout_graceful_shutdown=1)
        self._server = uvicorn.Server(config)
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        self._thread = threading.Thread(target=self._server.run, name="agents-desk", daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the agents desk (world and model server) did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.world.shutdown()
        if isinstance(self.model, upstream_model.UpstreamModel):
            self.model.shutdown()

    def open(self, task: Task, fault_seed: int) -> Opened:
        token = self.world.open(task, fault_seed)
        self.model.open(token, task.id, fault_seed)
        return Opened(token, task, fault_seed)

    def close(self, opened: Opened) -> None:
        self.world.close(opened.token)
        self.model.close(opened.token)

    def drop(self, opened: Opened) -> None:
        self.world.drop(opened.token)
        self.model.drop(opened.token)

    @property
    def model_name(self) -> str:
        """The `model` an agent is told to ask for."""
        return str(self.model.config.get("name", "policy"))

    @property
    def schemas(self) -> list[dict[str, Any]]:
        return world.TOOLS
