"""Serving a reward over HTTP (``rewardkit serve``), so a reward model can live on another machine.

The JSON contract (version 1), spoken by the built-in ``remote`` reward and
open to any server:

``POST /score`` with ``{"prompts": [str], "completions": [str],
"references": [str] | null, "metadata": [object] | null}`` (equal lengths;
``prompts`` may be omitted: empty strings) answers ``200`` with
``{"scores": [number | null]}``, one per completion, ``null`` for a sample
the reward cannot score. Errors answer with ``{"error": message}``: ``400``
for a malformed request and ``422`` when the reward broke its contract or
needs setup (a missing model), both the same on a retry; ``500`` when the
reward raised (perhaps transient: out of memory, an upstream API), worth a retry.

``GET /health`` answers ``{"protocol": 1, "reward", "plugin", "params",
"deterministic", "needs_references", "requests", "batches", "samples"}``.

Concurrent requests are batched: while the reward scores one merged batch,
the requests that arrive queue up and are merged into the next (up to
``max_batch`` samples, waiting at most ``window`` seconds for company), so
many small clients share the model's batched forward passes.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from rewardkit.errors import RewardError, RewardkitError
from rewardkit.reward import Batch, Reward

PROTOCOL = 1


class BadRequest(ValueError):
    """A request body that does not follow the contract (answered with 400)."""


def parse_request(body: Any) -> Batch:
    """The :class:`Batch` a ``POST /score`` body describes.

    :raises BadRequest: naming the first field that breaks the contract.
    """
    if not isinstance(body, dict):
        raise BadRequest("the body must be a JSON object with \"completions\" (and optionally \"prompts\", "
                         "\"references\", \"metadata\")")
    unknown = sorted(set(body) - {"prompts", "completions", "references", "metadata"})
    if unknown:
        raise BadRequest(f"unknown field(s) {', '.join(unknown)}")
    completions = body.get("completions")
    if not isinstance(completions, list) or not all(isinstance(c, str) for c in completions):
        raise BadRequest("\"completions\" must be a list of strings")
    n = len(completions)
    prompts = body.get("prompts")
    prompts = [""] * n if prompts is None else prompts
    for key, value, kind in (("prompts", prompts, str), ("references", body.get("references"), str),
                             ("metadata", body.get("metadata"), dict)):
        if value is None:
            continue
        if not isinstance(value, list) or not all(isinstance(v, kind) for v in value):
            raise BadRequest(f"\"{key}\" must be a list of {'strings' if kind is str else 'objects'} or null")
        if len(value) != n:
            raise BadRequest(f"\"{key}\" has {len(value)} items but \"completions\" has {n}")
    return Batch(prompts, completions, body.get("references"), body.get("metadata"))


@dataclass
class _Pending:
    batch: Batch
    future: asyncio.Future


@dataclass
class ServerStats:
    """What the server has done since it started (``GET /health``)."""

    requests: int = 0
    batches: int = 0
    samples: int = 0


@dataclass
class RewardServer:
    """One reward behind the JSON contract, batching concurrent requests.

    :param reward: the reward instance to serve.
    :param plugin: the plugin that registered it (for messages and ``/health``).
    :param max_batch: most samples merged into one scoring call.
    :param window: seconds the first request of a batch waits for others.
    """

    reward: Reward
    plugin: str | None = None
    max_batch: int = 256
    window: float = 0.005
    stats: ServerStats = field(default_factory=ServerStats)

    def __post_init__(self):
        from rewardkit.compose import Component, ComposedReward
        from rewardkit.recipe.schema import RewardSpec

        self.name = self.reward.name or type(self.reward).__name__
        self.composed = ComposedReward([Component(RewardSpec(name=self.name), self.reward, self.plugin)])
        self._queue: asyncio.Queue | None = None
        self._task: asyncio.Task | None = None

    def health(self) -> dict:
        """The ``GET /health`` document."""
        return {"protocol": PROTOCOL, "reward": self.name, "plugin": self.plugin,
                "params": self.reward.params.model_dump(mode="json"),
                "deterministic": bool(getattr(self.reward, "deterministic", False)),
                "needs_references": bool(self.reward.needs_references),
                "requests": self.stats.requests, "batches": self.stats.batches, "samples": self.stats.samples}

    async def score(self, batch: Batch) -> list[float | None]:
        """Queue ``batch`` for the next merged scoring call and wait for its scores.

        :raises RewardError: the reward failed on the merged batch this one was part of.
        """
        if self._queue is None:
            self._queue = asyncio.Queue()
            self._task = asyncio.get_running_loop().create_task(self._batcher())
        if self.reward.needs_references and batch.references is None:
            raise BadRequest(f"reward '{self.name}' compares completions with references: send \"references\"")
        self.stats.requests += 1
        future = asyncio.get_running_loop().create_future()
        await self._queue.put(_Pending(batch, future))
        return await future

    async def _batcher(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            items = [await self._queue.get()]
            size, deadline = len(items[0].batch), loop.time() + self.window
            while size < self.max_batch:
                remaining = deadline - loop.time()
                if remaining <= 0 and self._queue.empty():
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), max(remaining, 0))
                except asyncio.TimeoutError:
                    break
                items.append(item)
                size += len(item.batch)
            # Requests with and without references cannot share one Batch; score each kind apart.
            for group in ([i for i in items if i.batch.references is not None],
                          [i for i in items if i.batch.references is None]):
                if group:
                    await self._score_group(group)

    async def _score_group(self, group: list[_Pending]) -> None:
        merged = Batch(
            [p for i in group for p in i.batch.prompts], [c for i in group for c in i.batch.completions],
            None if group[0].batch.references is None else [r for i in group for r in i.batch.references],
            [m for i in group for m in i.batch.metadata])
        self.stats.batches += 1
        self.stats.samples += len(merged)
        try:
            raw = await self.composed.ascore_components(merged)
        except Exception as exc:  # every request of the batch gets the error
            for item in group:
                if not item.future.done():
                    item.future.set_exception(exc)
            return
        scores, start = raw[self.name], 0
        for item in group:
            if not item.future.done():
                item.future.set_result(scores[start:start + len(item.batch)])
            start += len(item.batch)

    def app(self):
        """The aiohttp application: ``POST /score`` and ``GET /health``."""
        from aiohttp import web

        async def score(request: web.Request) -> web.Response:
            try:
                body = await request.json()
            except ValueError:
                return web.json_response({"error": "the body is not JSON"}, status=400)
            try:
                scores = await self.score(parse_request(body))
            except BadRequest as exc:
                return web.json_response({"error": str(exc)}, status=400)
            except (RewardError, RewardkitError) as exc:
                # The reward raised (maybe transient: out of memory, an upstream API): 500, worth a retry.
                # It broke the contract or needs setup (a missing model): 422, the same next time.
                cause = exc.__cause__
                transient = isinstance(cause, Exception) and not isinstance(cause, RewardkitError)
                return web.json_response({"error": str(exc)}, status=500 if transient else 422)
            except Exception as exc:  # noqa: BLE001 - the client gets a message, the server keeps serving
                return web.json_response({"error": f"{type(exc).__name__}: {exc}"}, status=500)
            return web.json_response({"scores": scores})

        async def health(request: web.Request) -> web.Response:
            return web.json_response(self.health())

        async def cleanup(app) -> None:
            await self.close()

        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/score", score)
        app.router.add_get("/health", health)
        app.on_cleanup.append(cleanup)
        return app

    async def close(self) -> None:
        """Stop the batcher (requests still queued get an error) and the reward's worker threads."""
        task, self._task = self._task, None
        queue, self._queue = self._queue, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                pass
        while queue is not None and not queue.empty():
            item = queue.get_nowait()
            if not item.future.done():
                item.future.set_exception(RuntimeError("the server is shutting down"))
        self.composed.close()

    async def start(self, host: str = "127.0.0.1", port: int = 0):
        """Listen on ``host:port`` (``0``: a free port) and return ``(runner, base_url)``.

        Stop with ``await runner.cleanup()``.
        """
        from aiohttp import web

        # A few seconds for in-flight requests on shutdown (aiohttp's default is a minute).
        runner = web.AppRunner(self.app(), access_log=None, shutdown_timeout=5.0)
        await runner.setup()
        site = web.TCPSite(runner, host, port)
        await site.start()
        bound = runner.addresses[0]
        shown = f"[{bound[0]}]" if ":" in bound[0] else bound[0]
        return runner, f"http://{shown}:{bound[1]}"
