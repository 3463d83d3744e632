"""The `masnn` command line: one module per group of commands (inference, training, live, bench, synth).
Imports every other part of masnn, inside its commands (torch too), so that `masnn --help` stays fast.

How a command ends (``main``):

- success: exit code 0; ``warning: FILE: ...`` lines on stderr for what was salvaged (a truncated recording).
- bad input: exit code 2 and one line on stderr, the last one, never a traceback. An option out of its range
  or choices is refused before any work (``error: --window: input should be greater than or equal to
  0.001 (got 0)``); a bad file is named with its fault (``error: FILE: problem``; a checkpoint names the
  field: ``error: FILE: checkpoint field model_args.T: ...``). Warnings about the file come before it; a damaged
  recording that kept no events is that one error line (``no events before the damage: ...``).
- an internal error (a bug of masnn, not of the input): exit code 1 and one line ``error: [FILE: ]internal
  error (TypeError: ...); please report it``, naming the file it was reading. ``MASNN_DEBUG=1`` shows the
  traceback instead.
- Ctrl-C: exit code 130; SIGTERM: 143 (both unwind, so no temporary file is left behind).
"""
from __future__ import annotations

import inspect
import os
import signal
import sys
import warnings

import typer

from masnn.cli import bench, inference, live, synth, training
from masnn.cli.errors import BAD_INPUT, INPUT_ERRORS, INTERNAL_ERROR, first_line, usage_line

try:  # typer >= 0.2x carries its own copy of click
    from typer._click.exceptions import ClickException, NoArgsIsHelpError
except ImportError:  # older typer runs on click itself
    from click.exceptions import ClickException, NoArgsIsHelpError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  context_settings={"help_option_names": ["-h", "--help"]})
# without a name, a module's commands join the root's; `masnn --help` lists them in this order
for module in (inference, training, live):
    app.add_typer(module.commands)
app.add_typer(bench.bench_app, name="bench")
app.add_typer(synth.synth_app, name="synth")


def _print_version(value: bool) -> None:
    if value:
        from masnn import __version__

        print(f"masnn {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_print_version, is_eager=True,
                                       help="Print masnn's version and exit.")):
    """Event-camera action recognition with MA-SNN."""


def _unwrapped(doc: str) -> str:
    """A docstring's paragraphs with their lines joined: the terminal wraps them, never mid-sentence at the source's
    line ends."""
    return "\n\n".join(" ".join(paragraph.split()) for paragraph in inspect.cleandoc(doc).split("\n\n"))


for group in (app, inference.commands, training.commands, live.commands, bench.bench_app, synth.synth_app):
    for command in group.registered_commands:
        if command.callback.__doc__:
            command.callback.__doc__ = _unwrapped(command.callback.__doc__)


def _one_line_warning(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=sys.stderr)


def main(args: list[str] | None = None):
    """Entry point: see the module docstring for the exit codes and the one-line errors."""
    warnings.showwarning = _one_line_warning
    # `kill` ends a run as Ctrl-C does: Python unwinds, so temporary files are removed on the way out
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    sys.exit(_run(args))


def _run(args: list[str] | None) -> int:
    try:
        code = app(args, standalone_mode=False)
    except NoArgsIsHelpError as e:  # `masnn` or `masnn bench` alone: the help, as a usage error
        e.show()
        return BAD_INPUT
    except ClickException as e:
        return _fail(usage_line(e), e.exit_code)
    except INPUT_ERRORS as e:
        return _fail(first_line(e), BAD_INPUT)
    except typer.Abort as e:  # typer turns an EOFError into Abort; Ctrl-C in a prompt is one too
        return _fail(first_line(e.__cause__), BAD_INPUT) if isinstance(e.__cause__, EOFError) else 130
    except KeyboardInterrupt:
        return 130
    except Exception as e:
        if os.environ.get("MASNN_DEBUG"):
            raise
        where = f"{e.input_file}: " if hasattr(e, "input_file") else ""
        return _fail(f"{where}internal error ({type(e).__name__}: {first_line(e)}); please report it", INTERNAL_ERROR)
    return code if isinstance(code, int) else 0


def _fail(line: str, code: int) -> int:
    print(f"error: {line}", file=sys.stderr)
    return code
