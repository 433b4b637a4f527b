"""The ``rewardkit`` command line.

Each command lives in its own module; this one only assembles the group and
turns :class:`rewardkit.RewardkitError` into a clean message and exit code.
Heavy libraries (torch, transformers) are imported inside commands, so
``rewardkit --help`` and ``rewardkit plugins`` stay fast.
"""

from __future__ import annotations

import sys

import click

from rewardkit import __version__
from rewardkit.errors import RewardkitError


class _Group(click.Group):
    """A click group that prints user errors without a traceback."""

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except RewardkitError as exc:
            click.secho(f"Error: {exc}", fg="red", err=True)
            sys.exit(exc.exit_code)
        except KeyboardInterrupt:  # Ctrl-C outside a training loop (which says what it kept itself)
            click.secho("aborted (Ctrl-C)", fg="red", err=True)
            sys.exit(130)


@click.group(cls=_Group)
@click.version_option(__version__, prog_name="rewardkit")
def cli():
    """PPO fine-tuning of LoRA seq2seq models with composable reward plugins."""
    from rewardkit.quiet import quiet_libraries

    quiet_libraries()


def _add_commands():
    from rewardkit.cli import (check_plugin, eval_cmd, new_plugin, plugins_cmd, probe_cmd, run_cmd, schema_cmd,
                               score_cmd, serve_cmd, validate_cmd)

    for module in (run_cmd, validate_cmd, schema_cmd, plugins_cmd, score_cmd, eval_cmd, new_plugin, check_plugin,
                   probe_cmd, serve_cmd):
        cli.add_command(module.command)


_add_commands()


def main():
    """Console-script entry point."""
    cli(prog_name="rewardkit")
