"""The reference server as a serving-lab submission: `create_app(engine, config)` per graders/serving/interface.py.

The grader loads this exactly as it loads a candidate's notebook module, so the reference is
measured through the same host, client and checks.
"""
from __future__ import annotations

from typing import Any

from reference_systems.serving.engine import Engine
from reference_systems.serving.server import ServerConfig, create_app as _create_reference_app


def server_config(config: Any) -> ServerConfig:
    """The reference's ServerConfig from the grader's settings (anything with max_batch, max_waiting, request_timeout_s)."""
    return ServerConfig(max_batch=config.max_batch, max_waiting=config.max_waiting,
                        request_timeout_s=config.request_timeout_s, threads=None)


def create_app(engine: Engine, config: Any) -> Any:
    return _create_reference_app(server_config(config), engine=engine)
