"""Remote rewards: ``rewardkit serve`` as a real server on 127.0.0.1, the built-in ``remote`` reward
through it (same scores as in-process), request batching, retries with backoff, and errors naming
the URL. Every server here listens on loopback, on a port the system picks, and is bounded in time."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from pathlib import Path

import pytest

pytest.importorskip("aiohttp")

import rewardkit  # noqa: E402
from rewardkit.compose import Component, ComposedReward  # noqa: E402
from rewardkit.errors import RecipeError, RewardError  # noqa: E402
from rewardkit.plugins import load_registry  # noqa: E402
from rewardkit.recipe import load_recipe  # noqa: E402
from rewardkit.recipe.schema import RewardSpec  # noqa: E402
from rewardkit.reward import Batch  # noqa: E402
from rewardkit.serve import RewardServer  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
QUICKSTART = ROOT / "recipes" / "quickstart.yaml"
TINY = {"model": "asset:tiny-hate-roberta"}
STARTUP_S = 120


@pytest.fixture(scope="module")
def served_toxicity():
    """``rewardkit serve toxicity`` in its own process on 127.0.0.1:<free port>; yields the base URL."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "rewardkit", "serve", "toxicity", "--param",
                             "model=asset:tiny-hate-roberta", "--host", "127.0.0.1", "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env)
    lines: list[str] = []
    found: list[str] = []

    def read():
        for line in proc.stdout:
            lines.append(line)
            match = re.search(r" on (http://127\.0\.0\.1:\d+): ", line)
            if match and not found:
                found.append(match.group(1))

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    deadline = time.monotonic() + STARTUP_S
    while not found and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        if not found:
            pytest.fail(f"rewardkit serve did not start within {STARTUP_S} s:\n{''.join(lines)}")
        yield found[0]
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=20)


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=30) as resp:
        return json.loads(resp.read())


def _post(url: str, body) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _completions() -> list[str]:
    rows = [json.loads(line) for line in (ROOT / "rewardkit" / "assets" / "dialogues.jsonl").open()][:24]
    return [r["summary"] for r in rows] + ["", "you are an idiot", "shut up, stupid", "THANK YOU SO MUCH",
                                           "ok", "the the the the", "Person2 will fix it.", "..."]


def test_quickstart_with_toxicity_served_remotely_scores_the_same(served_toxicity):
    registry = load_registry()
    specs = load_recipe(QUICKSTART, registry=registry).recipe.rewards
    local = ComposedReward.from_specs(specs, registry)
    remote_specs = [RewardSpec(name="remote", weight=s.weight, params={"url": served_toxicity + "/score"})
                    if s.name == "toxicity" else s for s in specs]
    remote = ComposedReward.from_specs(remote_specs, registry)
    batch = Batch.from_lists(_completions(), prompts=["Summarize: ..."] * len(_completions()))
    a, b = local(batch), remote(batch)
    diff = max(abs(x - y) for x, y in zip(a.components["toxicity"], b.components["remote"]))
    assert diff < 1e-5, diff
    assert max(abs(x - y) for x, y in zip(a.total, b.total)) < 1e-5
    assert a.components["length"] == b.components["length"]


def test_health_and_the_contract_errors(served_toxicity):
    health = _get(served_toxicity + "/health")
    assert health["protocol"] == 1 and health["reward"] == "toxicity" and health["params"]["model"] == TINY["model"]
    status, body = _post(served_toxicity + "/score", {"completions": "not a list"})
    assert status == 400 and body == {"error": "\"completions\" must be a list of strings"}
    status, body = _post(served_toxicity + "/score", {"completions": ["a"], "prompts": ["x", "y"]})
    assert status == 400 and "\"prompts\" has 2 items but \"completions\" has 1" in body["error"]
    status, body = _post(served_toxicity + "/score", {"completions": ["a", ""]})
    assert status == 200 and len(body["scores"]) == 2


def test_concurrent_requests_are_batched(served_toxicity):
    before = _get(served_toxicity + "/health")
    # 16 samples in requests of 2, all 8 in flight at once: the server merges them
    reward = Component(RewardSpec(name="remote"), _remote(served_toxicity, batch_size=2, concurrency=8))
    scores = ComposedReward([reward])(Batch.from_lists(_completions()[:16]))
    after = _get(served_toxicity + "/health")
    assert len(scores.total) == 16
    requests, batches = after["requests"] - before["requests"], after["batches"] - before["batches"]
    assert requests == 8 and batches < requests


def _remote(url, **params):
    from rewardkit_remote import Remote

    return Remote({"url": url + "/score", **params})


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_unreachable_server_is_an_error_naming_the_url_after_retries():
    url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    comp = Component(RewardSpec(name="remote"), _remote(url, retries=2, backoff=0.01, timeout=2), "rewardkit")
    start = time.perf_counter()
    with pytest.raises(RewardError, match=rf"reward 'remote' \(plugin rewardkit\): raised RemoteRewardError: "
                                          rf"POST {url}/score: failed after 3 attempts; last: ClientConnectorError"):
        ComposedReward([comp])(Batch.from_lists(["a"]))
    assert time.perf_counter() - start < 10
    # under on_error: skip the same failure masks the samples instead
    skip = Component(RewardSpec(name="remote", on_error="skip"), _remote(url, retries=0), "rewardkit")
    scores = ComposedReward([skip])(Batch.from_lists(["a", "b"]))
    assert scores.valid == [False, False] and scores.failures["remote"].skipped == 2


class Flaky(rewardkit.Reward):
    """Fails its first ``failures`` calls (the server answers 500), then scores the length."""

    name = "flaky_len"
    calls = 0
    failures = 2

    def score(self, batch):
        type(self).calls += 1
        if type(self).calls <= self.failures:
            raise ConnectionError("warming up")
        return [float(len(c)) for c in batch.completions]


class Hang(rewardkit.Reward):
    """Never answers in time."""

    name = "hang"

    async def score(self, batch):
        await asyncio.sleep(3)  # far past the timeouts below; short, so the server shuts down soon
        return [0.0] * len(batch)


@contextmanager
def serving(reward):
    """A :class:`RewardServer` for ``reward`` on 127.0.0.1:<free port> in a background thread."""
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    server = RewardServer(reward, plugin="test")
    runner, url = asyncio.run_coroutine_threadsafe(server.start("127.0.0.1", 0), loop).result(timeout=30)
    try:
        yield url, server
    finally:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=30)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)


def test_server_errors_are_retried_with_backoff():
    Flaky.calls = 0
    with serving(Flaky()) as (url, server):
        start = time.perf_counter()
        assert ComposedReward([Component(RewardSpec(name="remote"), _remote(url, backoff=0.2))])(
            Batch.from_lists(["abc"])).total == [3.0]
        # two failures: waits of 0.2 s then 0.4 s before the third try
        assert time.perf_counter() - start >= 0.55
        assert server.stats.requests == 3


def test_a_request_the_server_refuses_is_not_retried():
    Flaky.calls = 0
    with serving(Flaky()) as (url, server):
        comp = Component(RewardSpec(name="remote"), _remote(url + "/nowhere"))
        with pytest.raises(RewardError, match=r"/nowhere/score: HTTP 404: .*\(not retried\)"):
            ComposedReward([comp])(Batch.from_lists(["abc"]))


def test_timeout_per_request_then_the_recipe_timeout():
    with serving(Hang()) as (url, _):
        comp = Component(RewardSpec(name="remote"), _remote(url, timeout=0.3, retries=1, backoff=0.0))
        with pytest.raises(RewardError, match=r"failed after 2 attempts; last: no answer within 0.3 s \(timeout\)"):
            ComposedReward([comp])(Batch.from_lists(["abc"]))
        # the recipe's timeout cancels the whole call, retries included (remote's score is async)
        comp = Component(RewardSpec(name="remote", timeout=0.5, on_error="skip"), _remote(url, timeout=20))
        start = time.perf_counter()
        scores = ComposedReward([comp])(Batch.from_lists(["abc"]))
        assert time.perf_counter() - start < 5
        assert scores.failures["remote"].timed_out == 1 and scores.valid == [False]


def test_remote_params_and_cache_are_validated(tmp_path):
    registry = load_registry()
    path = tmp_path / "r.yaml"
    base = "model: {name: asset:tiny-t5}\ndata: {source: asset:dialogues.jsonl}\nrewards:\n  - name: remote\n"
    path.write_text(base + "    params: {url: 'ftp://x'}\n")
    with pytest.raises(RecipeError, match=r"rewards\[0\]\.params\.url.*http:// or https://"):
        load_recipe(path, registry=registry)
    path.write_text(base + "    params: {url: 'http://127.0.0.1:9/score'}\n    cache: true\n")
    with pytest.raises(RecipeError, match=r"rewards\[0\]\.cache.*does not declare itself deterministic"):
        load_recipe(path, registry=registry)
    path.write_text(base + "    params: {url: 'http://127.0.0.1:9/score', deterministic: true}\n    cache: true\n"
                    "    timeout: 5\n")
    assert load_recipe(path, registry=registry).recipe.rewards[0].cache is True


def test_cached_remote_reward_does_not_ask_twice():
    Flaky.calls = 0
    Flaky.failures = 0
    try:
        with serving(Flaky()) as (url, server):
            comp = Component(RewardSpec(name="remote", cache=True), _remote(url, deterministic=True))
            reward = ComposedReward([comp])
            reward(Batch.from_lists(["a", "bb"]))
            scores = reward(Batch.from_lists(["bb", "a", "ccc"]))
            assert scores.total == [2.0, 1.0, 3.0]
            assert server.stats.samples == 3  # "a" and "bb" once, "ccc" once
            assert scores.failure_stats()["reward/remote/cache_hit_rate"] == pytest.approx(2 / 3)
    finally:
        Flaky.failures = 2
