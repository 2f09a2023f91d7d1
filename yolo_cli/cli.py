"""The ``yolo`` command: a click group whose subcommands parse options and call one library
function each. Library modules (and TensorFlow) are imported inside the commands so that
``yolo --help`` stays fast."""

from __future__ import annotations

import logging
import sys

import click

from yolo_cli import __version__
from yolo_cli.errors import YoloError


class _Group(click.Group):
    """Turns a :class:`YoloError` into one line on stderr and exit status 2."""

    def invoke(self, ctx: click.Context):
        try:
            return super().invoke(ctx)
        except YoloError as e:
            if ctx.find_root().params.get("debug"):
                raise
            click.echo(f"error: {e}", err=True)
            ctx.exit(2)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="yolo-cli")
@click.option("--debug", is_flag=True, help="Show tracebacks and debug logs.")
def cli(debug: bool) -> None:
    """Train, run and evaluate a YOLO object detector (Keras 3 on TensorFlow)."""
    logging.basicConfig(
        level=logging.DEBUG if debug else logging.WARNING,
        format="%(levelname)s %(name)s: %(message)s",
    )


@cli.group()
def data() -> None:
    """Inspect, convert and synthesize datasets."""


def main() -> None:
    cli(prog_name="yolo")


if __name__ == "__main__":
    sys.exit(main())
