"""The `masnn` command line: one module per group of commands (inference, training, live, bench, synth).
Imports every other part of masnn, inside its commands (torch too), so that `masnn --help` stays fast."""
from __future__ import annotations

import sys
import warnings

import typer

from masnn.cli import bench, inference, live, synth, training
from masnn.datasets.events import EventFileError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Event-camera action recognition with MA-SNN.")
# without a name, a module's commands join the root's; `masnn --help` lists them in this order
for module in (inference, training, live):
    app.add_typer(module.commands)
app.add_typer(bench.bench_app, name="bench")
app.add_typer(synth.synth_app, name="synth")


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main():
    """Entry point: bad input ends with one line on stderr and exit code 2, never a traceback."""
    warnings.showwarning = _one_line_warning
    try:
        app()
    except (EventFileError, ValueError, OSError) as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        sys.exit(130)
