"""How the command line ends on bad input: one line, ``error: FILE: problem`` or ``error: --option: problem``.

``reading(path)`` wraps the work on one input file: an error raised inside that does not name the file (numpy's
"cannot convert float NaN to integer", a MemoryError from a size a header claims) is
given the file's name; its warnings (``warning: FILE: ...``, a truncated recording) are held until the work
ends, then printed before the error line if one follows. A damaged file that kept no events at all ends
as one error line that names the damage instead of a warning and "no events".

Any other exception met inside (a bug of masnn) keeps its type and gets ``input_file``, so that ``main`` can
say which file it was reading when it reports the internal error.
"""
from __future__ import annotations

import re
import struct
import warnings
from contextlib import contextmanager, suppress
from pathlib import Path

from masnn.datasets.events import EventFileError, TruncatedRecordingWarning

# what reading a bad file raises; anything else (TypeError, KeyError, ...) is a bug of masnn
INPUT_ERRORS = (EventFileError, ValueError, OSError, OverflowError, MemoryError, EOFError, struct.error)
BAD_INPUT, INTERNAL_ERROR = 2, 1
_KEPT = "; kept the events before it"  # how a truncation warning ends (datasets.io readers)


def first_line(error: BaseException) -> str:
    """The first non-empty line of an exception's message, or its class name (MemoryError says nothing)."""
    return next((line.strip() for line in str(error).splitlines() if line.strip()), type(error).__name__)


class InputError(ValueError):
    """A fault of one input file, already in its one line ``FILE: problem``."""


@contextmanager
def reading(path: str | Path | None):
    """Work on one input file: its errors name it, its warnings come before the error (see the module)."""
    if path is None:
        yield
        return
    try:
        with warnings.catch_warnings(record=True) as caught:
            yield
    except INPUT_ERRORS as e:
        damage = _damage(path, e, caught)
        if damage is not None:  # one line: the warning is the reason for the error
            if e.problem == "no events":
                raise InputError(f"{path}: no events before the damage: {damage}") from e
            raise InputError(f"{path}: {e.problem}, where the recording is damaged: {damage}") from e
        _show(caught)
        named = _naming(path, e)
        if named is e:
            raise
        raise named from e
    except Exception as e:  # a bug met while reading the file: the file is named in its report
        _show(caught)
        with suppress(AttributeError):
            e.input_file = str(path)
        raise
    except BaseException:
        _show(caught)
        raise
    _show(caught)


def _show(caught: list) -> None:
    """Warnings held back, shown now through the filters and the one-line printer the caller has; once each
    (a file read twice, to measure and then to frame it, warns twice)."""
    shown = set()
    for warning in caught:
        if str(warning.message) not in shown:
            shown.add(str(warning.message))
            warnings.warn_explicit(warning.message, warning.category, warning.filename, warning.lineno)


def _naming(path, error: Exception) -> Exception:
    """The error itself when its message names ``path`` already, else an InputError that does."""
    message = first_line(error)
    if str(path) in message:
        return error
    if isinstance(error, MemoryError):  # says nothing or a size: the line says what happened
        message = "out of memory" if message == "MemoryError" else f"out of memory ({message})"
    return InputError(f"{path}: {message}")


def _damage(path, error: Exception, caught: list) -> str | None:
    """The truncation a recording (or a time selection of it) that kept no events reported: the reason it has none."""
    if not (isinstance(error, EventFileError) and error.problem.startswith("no events")):
        return None
    for warning in caught:
        text = str(warning.message)
        if issubclass(warning.category, TruncatedRecordingWarning) and text.startswith(f"{path}: "):
            return text[len(f"{path}: "):].removesuffix(_KEPT)
    return None


def usage_line(error) -> str:
    """A usage error of click (typer) as one line: ``--top-k: input should be ... (got 0)``."""
    param = getattr(error, "param", None)
    if param is None or type(error).__name__ == "MissingParameter":
        message = error.format_message()
    else:
        choice = _NOT_A_CHOICE.match(error.message)
        if choice:  # a value outside an option's choices: the list, in the checks' words
            given, choices = choice.groups()
            message = f"{_option_name(param)}: must be one of {choices.replace(chr(39), '')} (got '{given}')"
        else:
            message = f"{_option_name(param)}: {_lower_first(error.message)}{_given(error)}"
    return _lower_first(message).rstrip(".")


# typer's refusal of a value outside a Literal's choices: "Value error, 'x' is not one of 'a', 'b'."
_NOT_A_CHOICE = re.compile(r"(?:Value error, )?'(.*)' is not one of (.*?)\.?$")


def _option_name(param) -> str:
    if param.param_type_name != "option":
        return param.name.upper()
    return next((opt for opt in param.opts if opt.startswith("--")), param.opts[0])


def _given(error) -> str:
    """`` (got VALUE)`` when the value typer refused can be told (it keeps it on the validation error)."""
    cause = error.__cause__
    try:
        return f" (got {cause.errors()[0]['input']})"
    except (AttributeError, IndexError, KeyError, TypeError):
        return ""


def _lower_first(text: str) -> str:
    return text[:1].lower() + text[1:]
