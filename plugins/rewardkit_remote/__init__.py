"""Built-in reward plugin: ``remote``, a reward scored by an HTTP server.

The server speaks rewardkit's small JSON contract (see :mod:`rewardkit.serve`,
and ``rewardkit serve NAME``, which serves any installed reward with it):
``POST url`` with ``{"prompts", "completions", "references", "metadata"}``,
answered by ``{"scores": [number | null, ...]}``. So a reward model can run
on its own GPU or machine while training runs elsewhere.

``score`` is ``async def``: batches are sent in chunks of ``batch_size``,
``concurrency`` requests at once, each with its own ``timeout``; connection
errors, timeouts, 408, 429 and 5xx answers are retried ``retries`` times
with exponential backoff. The error after the last try names the URL. Needs
aiohttp (``pip install 'rewardkit[remote]'``).
"""

from __future__ import annotations

import asyncio
import json
import math
from urllib.parse import urlparse

from pydantic import Field, field_validator

import rewardkit

#: HTTP answers worth another try: the server is busy or broke, not the request.
RETRIED_STATUS = {408, 429, 500, 502, 503, 504}


class RemoteRewardError(Exception):
    """A remote reward call failed (not a :class:`rewardkit.RewardkitError`: ``on_error`` applies to it)."""


class Remote(rewardkit.Reward):
    """The scores a remote server returns for each sample (``rewardkit serve``, or any server of the contract)."""

    name = "remote"

    class Params(rewardkit.Params):
        """Parameters of the ``remote`` reward."""

        url: str = Field(description="the scoring endpoint, e.g. http://127.0.0.1:8000/score")
        timeout: float = Field(30.0, gt=0.0, description="seconds per HTTP request (each retry gets its own)")
        retries: int = Field(3, ge=0, description="further tries after a connection error, timeout, 408/429/5xx")
        backoff: float = Field(0.5, ge=0.0, description="seconds before the first retry; doubled for each next one")
        batch_size: int = Field(64, ge=1, description="samples per request (the reward's max_batch_size)")
        concurrency: int = Field(4, ge=1, description="requests in flight at once (the reward's max_concurrency)")
        deterministic: bool = Field(False, description="the server always gives the same score to the same "
                                                       "sample: allows cache: true in the recipe")
        headers: dict[str, str] = Field(default_factory=dict, description="extra HTTP headers, e.g. Authorization")

        @field_validator("url")
        @classmethod
        def _http_url(cls, url: str) -> str:
            parsed = urlparse(url)
            if parsed.scheme not in ("http", "https") or not parsed.netloc:
                raise ValueError(f"url must be an http:// or https:// URL with a host, got {url!r}")
            return url

    def __init__(self, params=None, *, device: str = "cpu"):
        super().__init__(params, device=device)
        # The host reads these per instance: they come from the params here.
        self.max_batch_size = self.params.batch_size
        self.max_concurrency = self.params.concurrency
        self.deterministic = self.params.deterministic

    async def score(self, batch: rewardkit.Batch) -> list[float | None]:
        """POST the batch; retry what is worth retrying; return the server's scores."""
        try:
            import aiohttp
        except ImportError:
            raise rewardkit.RewardError(self.name, "needs aiohttp: pip install 'rewardkit[remote]'") from None
        p = self.params
        payload = {"prompts": list(batch.prompts), "completions": list(batch.completions),
                   "references": None if batch.references is None else list(batch.references),
                   "metadata": [dict(m) for m in batch.metadata]}
        last = ""
        for attempt in range(p.retries + 1):
            if attempt:
                await asyncio.sleep(p.backoff * 2 ** (attempt - 1))
            try:
                timeout = aiohttp.ClientTimeout(total=p.timeout)
                async with aiohttp.ClientSession(timeout=timeout) as session:
                    async with session.post(p.url, json=payload, headers=p.headers) as resp:
                        text = await resp.text()
                        if resp.status == 200:
                            return self._parse(text, len(batch))
                        last = f"HTTP {resp.status}: {_error_text(text)}"
                        if resp.status not in RETRIED_STATUS:
                            raise RemoteRewardError(f"POST {p.url}: {last} (not retried)")
            except asyncio.TimeoutError:
                last = f"no answer within {p.timeout:g} s (timeout)"
            except aiohttp.ClientError as exc:
                last = f"{type(exc).__name__}: {exc}"
        tries = f"{p.retries + 1} attempt{'s' if p.retries else ''}"
        raise RemoteRewardError(f"POST {p.url}: failed after {tries}; last: {last}")

    def _parse(self, text: str, n: int) -> list[float | None]:
        """The ``scores`` of a 200 answer, checked against the contract (a bad answer is not retried)."""
        url = self.params.url
        try:
            body = json.loads(text)
        except ValueError:
            raise RemoteRewardError(f"POST {url}: the answer is not JSON: {text[:200]!r}") from None
        scores = body.get("scores") if isinstance(body, dict) else None
        if not isinstance(scores, list) or len(scores) != n:
            got = f"{len(scores)} scores" if isinstance(scores, list) else repr(text[:200])
            raise RemoteRewardError(f"POST {url}: expected {{\"scores\": [...]}} with {n} numbers or nulls, got {got}")
        for value in scores:
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value)):
                raise RemoteRewardError(f"POST {url}: the answer holds {value!r}, not a number or null")
        return [None if v is None else float(v) for v in scores]


def _error_text(text: str) -> str:
    """The server's ``{"error": ...}`` message, or the start of the body."""
    try:
        body = json.loads(text)
        if isinstance(body, dict) and isinstance(body.get("error"), str):
            return body["error"]
    except ValueError:
        pass
    return text[:200] or "(empty body)"


@rewardkit.hookimpl
def register_rewards(register):
    """Register the ``remote`` reward."""
    register(Remote)
