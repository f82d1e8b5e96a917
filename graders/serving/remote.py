"""An external reference for the serving lab: an OpenAI-compatible server the user already runs (`--reference-url`).

    ref = connect("http://127.0.0.1:8200")   # GET /v1/models: reachable, and the name it serves
    ref.url, ref.model, ref.alive(), ref.cleanup()

The grader usually starts the lab's reference in a sandboxed worker; an interviewer may instead point it at a
`vllm serve <model folder>` of their own (the model folder is laid out for vLLM: `python -m
reference_systems.serving.model` prints it). `RemoteReference` has the small surface the grader uses of a
worker (`url`, `proc`, `cleanup`, `output_tail`), with no process of ours behind it: cleanup leaves it running.

The grader's load goes to 127.0.0.1 only; the one exception is this server, whose URL the user typed, so it
may be on another host of theirs. vLLM names the model by the path it was given and samples at the model's
default temperature unless told otherwise, so every request to it carries the first id of its GET /v1/models
and `temperature: 0` (`RemoteReference.fields`; candidates decode greedily by the lab's contract and get
neither). Before any submission is graded, the server must give the engine's greedy output for one of the
run's warm-up requests (`check_greedy`): a server of another model, another dtype, or not greedy is refused
in one line instead of marking every candidate down.
"""
from __future__ import annotations

import json
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import httpx

from graders.serving import checks, verify, wire

if TYPE_CHECKING:
    from graders.engine.labconfig import LoadProfile

CONNECT_S = 5.0  # GET /v1/models at start: a server that is up answers at once


def serve_hint(profile: LoadProfile | None = None) -> str:
    """The command that serves the profile's model as the lab's engine runs it (what --reference-url points at):
    the same weights in the same dtype, since a near-tie decided otherwise changes the rest of a greedy stream."""
    model, device = (profile.model, profile.device) if profile else ("tiny-gpt2", "cpu")
    dtype = (profile.dtype if profile else None) or ("bfloat16" if device.startswith("cuda") else "float32")
    return (f"`vllm serve $(python -m reference_systems.serving.model {model}) --dtype {dtype} --port 8200`, then "
            "pass --reference-url http://127.0.0.1:8200")


def parse(url: str) -> str:
    """`url` as http(s)://HOST:PORT without a trailing slash; one line saying what to pass otherwise."""
    try:
        parts = urlsplit(url.strip())
        port = parts.port
    except ValueError:
        parts, port = None, None
    if (parts is None or parts.scheme not in ("http", "https") or not parts.hostname or port is None
            or parts.path not in ("", "/") or parts.query or parts.fragment or parts.username or parts.password):
        raise SystemExit(f"--reference-url {url!r} is not http(s)://HOST:PORT; pass the root of an OpenAI-compatible "
                         "server, without /v1 (e.g. http://127.0.0.1:8200)")
    return f"{parts.scheme}://{parts.netloc}"


@dataclass(frozen=True)
class RemoteReference:
    """A reference server the user runs; the grader neither started it nor stops it."""
    url: str
    model: str  # what its requests send as `model` (vLLM's served name: the model folder's path by default)
    proc: None = None  # no process of ours: graders.serving.grade.alive asks the server instead

    def alive(self) -> bool:
        try:
            return wire.fetch("GET", self.url + "/v1/models", CONNECT_S)[0] == 200
        except httpx.HTTPError:
            return False

    def cleanup(self) -> None:
        """Nothing to clean: the server is the user's and keeps running."""

    def output_tail(self, limit: int = 1500) -> str:
        return ""

    @property
    def fields(self) -> dict[str, Any]:
        """What every request to this server adds to its body: the served model's name, greedy decoding."""
        return {"model": self.model, "temperature": 0}

    def describe(self) -> str:
        return f"external: {self.url}"


def connect(url: str, profile: LoadProfile | None = None) -> RemoteReference:
    """The server at `url` (checked by `parse`) and the first model it lists; one line when it cannot be used
    (naming what to start for `profile`)."""
    url = parse(url)
    try:
        status, raw = wire.fetch("GET", url + "/v1/models", CONNECT_S)
    except httpx.HTTPError as exc:
        raise SystemExit(f"--reference-url: nothing answers at {url} ({type(exc).__name__}: {exc}); start the "
                         f"reference server first, e.g. {serve_hint(profile)}") from None
    try:
        ids = [m["id"] for m in json.loads(raw)["data"] if isinstance(m.get("id"), str)]
    except (ValueError, TypeError, KeyError, AttributeError):
        ids = []
    if status != 200 or not ids:
        raise SystemExit(f"--reference-url: GET {url}/v1/models answered HTTP {status} without a model id; pass an "
                         f"OpenAI-compatible server, e.g. {serve_hint(profile)}")
    if len(ids) > 1:
        print(f"[serving] {url} serves {len(ids)} models; grading against the first, {ids[0]!r}", file=sys.stderr)
    return RemoteReference(url, ids[0])


def drive_options(w: Any) -> dict[str, Any]:
    """Keyword arguments of graders.serving.client.drive for server `w`: the external reference's request fields
    and the user's leave to reach its host; nothing for a worker of ours (127.0.0.1, the lab's model name)."""
    return {"fields": w.fields, "any_host": True} if isinstance(w, RemoteReference) else {}


def request_fields(w: Any) -> dict[str, Any]:
    """Fields to add to a request body for server `w` (graders.serving.checks.completion / chat take them)."""
    return w.fields if isinstance(w, RemoteReference) else {}


def not_greedy(ref: RemoteReference, failed: int, compared: int, profile: LoadProfile | None = None) -> str:
    """The scorecard's line when the external reference's own streams fail output verification."""
    return (f"the external reference at {ref.url} does not serve the lab's model greedily: {failed} of its "
            f"{compared} streams under load were not the engine's greedy output, so the performance ratios compare "
            "with a different system; serve the lab's model folder there unchanged, in the engine's dtype (e.g. "
            f"{serve_hint(profile)})")


def check_greedy(ref: RemoteReference, requests: Iterable[tuple[float, str, int]], greedy: verify.Greedy,
                 timeout: float, profile: LoadProfile | None = None) -> None:
    """Refuse (one line) a server none of whose completions for `requests` is the engine's greedy output."""
    seen: list[tuple[str, str]] = []
    for _, prompt, n in requests:
        want = greedy.texts[(prompt, n)]
        status, body = checks.completion(ref.url, timeout, **ref.fields, prompt=prompt, max_tokens=n,
                                         ignore_eos=True)
        try:
            got = str(body["choices"][0]["text"])
        except (TypeError, KeyError, IndexError):
            got = f"HTTP {status}: {str(body)[:80]}"
        if got == want or verify.loose(got) == verify.loose(want):
            return
        seen.append((got, want))
    if not seen:
        return
    got, want = seen[0]
    raise SystemExit(f"--reference-url: the server at {ref.url} (model {ref.model!r}) does not serve the lab's model "
                     f"greedily: for a planned request it answered {got[:40]!r} where the lab's engine gives "
                     f"{want[:40]!r}; serve the lab's model folder unchanged, e.g. {serve_hint(profile)}")
