"""``rewardkit serve NAME``: serve one installed reward over HTTP (the JSON contract of :mod:`rewardkit.serve`).

The reward is created with ``--param`` values, warmed up on one sample (so a
missing model is an error now, not on the first request), then served until
Ctrl-C or SIGTERM. Once listening it prints one line with the URL; with
``--port 0`` the port is one the system picked.
"""

from __future__ import annotations

import asyncio
import signal
import sys

import click


@click.command("serve")
@click.argument("name")
@click.option("--param", "params", multiple=True, metavar="KEY=VALUE",
              help="A reward parameter (repeatable), as in a recipe's params:. VALUE is read as YAML.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; 127.0.0.1 serves this machine only (there is no authentication).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True,
              help="Port to listen on; 0 picks a free one (printed).")
@click.option("--max-batch", type=click.IntRange(min=1), default=256, show_default=True,
              help="Most samples of concurrent requests merged into one scoring call.")
@click.option("--batch-window", type=click.FloatRange(min=0), default=0.005, show_default=True,
              help="Seconds a request waits for others to batch with.")
@click.option("--device", default="cpu", show_default=True, help="Where the reward loads its model, e.g. cuda:0.")
@click.option("--plugin", "modules", multiple=True, metavar="MODULE",
              help="Also load this module or .py file as a plugin (repeatable).")
def command(name, params, host, port, max_batch, batch_window, device, modules):
    """Serve reward NAME over HTTP: POST /score, GET /health.

    The built-in 'remote' reward scores through such a server, so a reward
    model can sit on its own GPU or machine while training runs elsewhere.

    \b
    Example:
      rewardkit serve toxicity --param model=asset:tiny-hate-roberta --port 8000
      # recipe: - name: remote
      #           params: {url: "http://127.0.0.1:8000/score"}
    """
    from pathlib import Path

    from rewardkit.cli.score_cmd import _validated_params
    from rewardkit.plugins import load_registry
    from rewardkit.reward import Batch, call_score
    from rewardkit.serve import RewardServer

    try:
        import aiohttp  # noqa: F401
    except ImportError:
        raise click.ClickException("rewardkit serve needs aiohttp: pip install 'rewardkit[remote]'") from None
    registry = load_registry(modules, base_dir=Path.cwd())
    info = registry.get(name)
    reward = info.cls(_validated_params(name, info.cls, params), device=device)
    # Warm up: loads the model now, so a missing one is reported before anyone connects.
    call_score(reward, Batch.from_lists(["warm up"], references=["warm up"] if reward.needs_references else None))
    server = RewardServer(reward, plugin=info.plugin, max_batch=max_batch, window=batch_window)
    asyncio.run(_serve(server, host, port))


async def _serve(server, host: str, port: int) -> None:
    """Listen, print the URL, and wait for SIGINT/SIGTERM."""
    try:
        runner, url = await server.start(host, port)
    except OSError as exc:
        raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    click.echo(f"Serving reward '{server.name}' (plugin {server.plugin}) on {url}: POST {url}/score, GET {url}/health")
    sys.stdout.flush()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()  # also stops the server's batcher and worker threads
        click.echo("stopped")
