"""Gateway pipes: the client's pipe model on the server side.

A gateway pipe is ``async def pipe(call: Call, next: Next) -> Reply``. Before ``next`` it
may inspect or change the call (``call.body``, ``call.model``) or reject it by raising
``GatewayError``; after ``next`` it may inspect or change the reply, and for a stream
register ``reply.on_event(hook)`` to see each event as it passes (nothing is buffered).
Pipes come from config as ``module:attr``. The chain's end is the dispatcher bound to the
request, so a call a pipe makes itself runs as part of that request; with no pipes
configured the call goes straight to the dispatcher.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys
from collections.abc import Awaitable, Sequence
from typing import TYPE_CHECKING, Any

from ._call import CHAT, RESPONSES, Call, Next, Pipe, Reply
from ._config import ConfigError, FilePipeConfig, PipeConfig
from ._context import RequestContext
from ._errors import GatewayError

if TYPE_CHECKING:
    from ._dispatch import Dispatcher

__all__ = ["PipeChain", "load_pipes", "log_calls", "request_policy"]


def load_pipes(configs: Sequence[PipeConfig]) -> list[Pipe]:
    """Import each configured pipe; ``ConfigError`` names the entry that fails.

    A project's own pipes (``use: myapp.pipes:team_rules``) load without ``PYTHONPATH``:
    the config file's folder and the working directory are put on the import path, as
    ``python -m`` and uvicorn's ``--app-dir`` do for an app. They go after every entry
    already there, so a file in those folders never shadows an installed module, and they
    stay: a pipe that imports from its package later, at call time, still finds it.
    """
    roots = _import_roots(configs) if configs else []
    _make_importable(roots)
    pipes = []
    for i, config in enumerate(configs):
        module_name, _, attr = config.use.partition(":")
        try:
            target: Any = importlib.import_module(module_name)
            for part in attr.split("."):
                target = getattr(target, part)
        except (ImportError, AttributeError) as exc:
            where = " and ".join(roots)
            raise ConfigError(
                f"pipes[{i}].use: cannot load {config.use!r}: {exc} "
                f"(searched the import path, which includes {where})"
            ) from None
        if config.options is not None:
            try:
                target = target(**config.options)
            except TypeError as exc:
                raise ConfigError(f"pipes[{i}].options: {exc}") from None
        if not callable(target):
            raise ConfigError(f"pipes[{i}].use: {config.use!r} is not callable")
        pipes.append(target)
    return pipes


def _import_roots(configs: Sequence[PipeConfig]) -> list[str]:
    """The config file's folder (when the config came from a file), then the working
    directory."""
    roots = [c.folder for c in configs if isinstance(c, FilePipeConfig)][:1]
    cwd = os.getcwd()
    if cwd not in roots:
        roots.append(cwd)
    return roots


def _make_importable(roots: Sequence[str]) -> None:
    # An empty entry on sys.path stands for the working directory.
    present = {os.path.abspath(entry or os.curdir) for entry in sys.path}
    added = [root for root in roots if root not in present]
    if added:
        sys.path.extend(added)
        # Finders cache directory listings; a module written since must still be found.
        importlib.invalidate_caches()


class PipeChain:
    """The configured pipes around the dispatcher, the first outermost."""

    def __init__(self, pipes: Sequence[Pipe], dispatcher: Dispatcher) -> None:
        self.pipes = tuple(pipes)
        self.dispatcher = dispatcher
        # Without pipes a call goes straight to the dispatcher, with no call in between.
        self.run = self._through_pipes if self.pipes else dispatcher.dispatch

    def _through_pipes(self, call: Call, ctx: RequestContext) -> Awaitable[Reply]:
        """``call`` through the pipes, as part of the request ``ctx``."""
        handler: Next = _End(self.dispatcher, ctx)
        for pipe in reversed(self.pipes):
            handler = _Link(pipe, handler)
        return handler(call)


class _Link:
    """One pipe bound to the rest of the chain (returns the pipe's own awaitable)."""

    __slots__ = ("next", "pipe")

    def __init__(self, pipe: Pipe, next: Next) -> None:
        self.pipe, self.next = pipe, next

    def __call__(self, call: Call) -> Awaitable[Reply]:
        return self.pipe(call, self.next)


class _End:
    """The chain's end for one request: whatever call reaches it joins that request."""

    __slots__ = ("ctx", "dispatcher")

    def __init__(self, dispatcher: Dispatcher, ctx: RequestContext) -> None:
        self.dispatcher, self.ctx = dispatcher, ctx

    def __call__(self, call: Call) -> Awaitable[Reply]:
        return self.dispatcher.dispatch(call, self.ctx)


# ---------------------------------------------------------------------------- built-ins


def request_policy(
    *,
    allow_params: Sequence[str] | None = None,
    deny_params: Sequence[str] = (),
    max_tokens: int | None = None,
    system_prompt: str | None = None,
) -> Pipe:
    """A request policy: which body fields are allowed, a ``max_tokens`` cap, and an
    optional system message put first (in a chat's ``messages`` or a Responses call's
    ``input``).

    ``allow_params``: if given, any other top-level field is rejected (400, ``param`` named).
    ``max_tokens``: a larger output cap is lowered to it, and a missing one set to it: the
    call's ``max_tokens``/``max_completion_tokens``, or on ``/v1/responses`` its
    ``max_output_tokens`` (a cap the caller could dodge by changing route is none);
    embeddings have no output to cap.
    """
    allowed = frozenset(allow_params) | {"model"} if allow_params is not None else None
    denied = frozenset(deny_params)

    async def policy(call: Call, next: Next) -> Reply:
        body = call.body
        for name in body:
            if name in denied or (allowed is not None and name not in allowed):
                raise GatewayError(400, f"the parameter '{name}' is not allowed here", param=name)
        if max_tokens is not None:
            _cap_tokens(body, max_tokens, _OUTPUT_CAPS.get(call.route, ()))
        if system_prompt is not None:
            _put_system_first(body, call.route, system_prompt)
        return await next(call)

    return policy


# The fields each route caps its output with, the one set when none is given first; a
# route not here (embeddings) produces no tokens to cap.
_OUTPUT_CAPS = {
    CHAT: ("max_tokens", "max_completion_tokens"),
    "/v1/completions": ("max_tokens",),
    RESPONSES: ("max_output_tokens",),
}


def _put_system_first(body: dict[str, Any], route: str, prompt: str) -> None:
    """The system message first, where the route takes its messages: a chat's
    ``messages``, or a Responses call's ``input`` (a string is the user's message, so it
    becomes a list; a missing one gets the system message alone, so the prompt cannot be
    dodged by changing route or leaving the field out)."""
    system = {"role": "system", "content": prompt}
    if route == RESPONSES:
        given = body.get("input")
        if isinstance(given, list):
            given.insert(0, system)
        elif isinstance(given, str):
            body["input"] = [system, {"role": "user", "content": given}]
        elif given is None:
            body["input"] = [system]
    elif isinstance(body.get("messages"), list):
        body["messages"].insert(0, system)


def _cap_tokens(body: dict[str, Any], cap: int, fields: tuple[str, ...]) -> None:
    present = [k for k in fields if k in body]
    for key in present:
        value = body[key]
        if not isinstance(value, int) or value > cap:
            body[key] = cap
    if fields and not present:
        body[fields[0]] = cap


def log_calls(*, logger: str = "aifetch.gateway.calls", level: str = "INFO") -> Pipe:
    """Log each call and its reply, redacted: field names, message roles and content
    *lengths*, never content, keys or headers."""
    log = logging.getLogger(logger)
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise TypeError(f"unknown log level {level!r}")

    async def logged(call: Call, next: Next) -> Reply:
        if not log.isEnabledFor(lvl):
            return await next(call)
        log.log(
            lvl,
            "call %s model=%s caller=%s %s",
            call.route,
            call.model,
            call.caller,
            _shape(call.body),
        )
        try:
            reply = await next(call)
        except GatewayError as exc:
            log.log(
                lvl, "reply %s model=%s error=%s %s", call.route, call.model, exc.status, exc.code
            )
            raise
        if reply.stream:
            counter = _EventCounter(log, lvl, call)
            reply.on_event(counter)
        else:
            log.log(
                lvl,
                "reply %s model=%s status=%s bytes=%d",
                call.route,
                call.model,
                reply.status,
                len(reply.content or b""),
            )
        return reply

    return logged


def _shape(body: dict[str, Any]) -> str:
    """A redacted outline of a request body."""
    parts = [f"fields={','.join(sorted(body))}"]
    messages = body.get("messages")
    if isinstance(messages, list):
        outline = []
        for m in messages:
            if isinstance(m, dict):
                content = m.get("content")
                size = len(content) if isinstance(content, str | list) else 0
                outline.append(f"{m.get('role')}:{size}")
        parts.append(f"messages=[{' '.join(outline)}]")
    return " ".join(parts)


class _EventCounter:
    """A stream hook that counts events and logs once at ``[DONE]``."""

    def __init__(self, log: logging.Logger, level: int, call: Call) -> None:
        self.log, self.level, self.call, self.count = log, level, call, 0

    def __call__(self, event: Any) -> Any:
        if event.data == "[DONE]":
            self.log.log(
                self.level,
                "reply %s model=%s stream events=%d",
                self.call.route,
                self.call.model,
                self.count,
            )
        else:
            self.count += 1
        return event
