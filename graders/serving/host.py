"""Host one serving submission: build the lab engine, call its `create_app(engine, config)`, serve it.

Runs inside the sandboxed worker process (`graders.engine.sandbox.Worker` with a command):

    python -m graders.serving.host --module candidate.py --port N [--max-batch 32 --max-waiting 64 ...]

The candidate's app is wrapped in a thin ASGI shim that answers one path of its own,
`/__ailab__/health` -> {"ok": bool, "error": str | None}, which is how the grader learns that the
submission loaded (or why it did not: import error, missing `create_app`, `create_app` raising or
returning something that is not an ASGI app). Every other request goes to the candidate's app.
"""
from __future__ import annotations

import argparse
import inspect
import json
import sys
import time
import traceback
from typing import Any

HEALTH_PATH = "/__ailab__/health"


class Hosted:
    """ASGI shim: our health path, then the candidate's app (None when it failed to load)."""

    def __init__(self, app: Any, error: str | None) -> None:
        self.app, self.error = app, error

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] == "http" and scope["path"] == HEALTH_PATH:
            body = json.dumps({"ok": self.error is None, "error": self.error}).encode()
            await send({"type": "http.response.start", "status": 200,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return
        if self.app is None:
            if scope["type"] == "lifespan":  # nothing to start: answer uvicorn's lifespan protocol
                while (await receive())["type"] != "lifespan.shutdown":
                    await send({"type": "lifespan.startup.complete"})
                await send({"type": "lifespan.shutdown.complete"})
                return
            await send({"type": "http.response.start", "status": 503, "headers": []})
            await send({"type": "http.response.body", "body": b"the submission did not load"})
            return
        await self.app(scope, receive, send)


def load(module_path: str, settings: Any, threads: int, device: str = "cpu", model: str = "tiny-gpt2",
         dtype: str | None = None) -> tuple[Any, str | None]:
    """(asgi_app, None) or (None, a reason written for the candidate)."""
    from graders.engine.worker import describe, load_submission, where

    try:
        module = load_submission(module_path)
    except BaseException as exc:  # noqa: BLE001 - SyntaxError, ImportError, SystemExit: all become a reason
        return None, f"the submission failed while loading: {describe(exc)}{where(exc, module_path)}"
    create_app = getattr(module, "create_app", None)
    if not callable(create_app):
        return None, "the submission defines no function `create_app(engine, config)` (see the lab's interface)"
    from reference_systems.serving.engine import Engine
    from reference_systems.serving.model import model_dir

    started = time.perf_counter()
    engine = Engine(model_dir(model), max_batch=settings.max_batch, threads=threads, device=device, dtype=dtype)
    print(f"engine ready in {time.perf_counter() - started:.1f} s", file=sys.stderr, flush=True)
    try:
        app = create_app(engine, settings)
    except BaseException as exc:  # noqa: BLE001
        traceback.print_exc()
        return None, f"create_app(engine, config) raised {describe(exc)}{where(exc, module_path)}"
    if inspect.iscoroutine(app):
        app.close()
        return None, "create_app must return the ASGI app itself, not a coroutine (define it with `def`, not `async def`)"
    if not callable(app):
        return None, f"create_app returned a {type(app).__name__}, not an ASGI application (e.g. a FastAPI app)"
    return app, None


def main(argv: list[str] | None = None) -> None:
    from graders.engine import guard  # before the submission loads: the reference is not its to use
    guard.install()
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--module", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--max-batch", type=int, default=32)
    ap.add_argument("--max-waiting", type=int, default=64)
    ap.add_argument("--request-timeout", type=float, default=30.0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--device", default="cpu", help="cpu or cuda (lab.toml profile `device`)")
    ap.add_argument("--model", default="tiny-gpt2", help="a name in reference_systems.serving.model.MODELS")
    ap.add_argument("--dtype", default=None, help="float32 (default) or bfloat16")
    args = ap.parse_args(argv)

    import uvicorn

    from graders.serving.interface import ServerSettings

    # Same as the reference CLI: the engine thread's Python holds the GIL; a short switch interval
    # lets the event loop write tokens sooner. Every submission is hosted the same way.
    sys.setswitchinterval(0.001)
    settings = ServerSettings(max_batch=args.max_batch, max_waiting=args.max_waiting,
                              request_timeout_s=args.request_timeout)
    app, error = load(args.module, settings, args.threads, args.device, args.model, args.dtype)
    if error:
        print(error, file=sys.stderr, flush=True)
    print(f"host ready on 127.0.0.1:{args.port}", file=sys.stderr, flush=True)
    uvicorn.run(Hosted(app, error), host="127.0.0.1", port=args.port, log_level="warning", access_log=False,
                timeout_graceful_shutdown=2)


if __name__ == "__main__":
    main()
