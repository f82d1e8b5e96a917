"""The naive baseline as a serving-lab submission: one request at a time behind a lock, no batching, no 429."""
from __future__ import annotations

from typing import Any

from reference_systems.serving.engine import Engine
from reference_systems.serving.naive_server import create_naive_app
from reference_systems.serving.submission import server_config


def create_app(engine: Engine, config: Any) -> Any:
    return create_naive_app(server_config(config), engine=engine)
