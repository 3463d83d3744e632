"""Block-wise reading of binary event files: bounded memory whatever the file's size.

A decoder gets a buffer whose first byte is a record boundary and returns how many bytes it used;
the unused tail moves to the front of the buffer before the next read. Plain reads, not mmap, so that
a 1 GB recording never counts 1 GB of mapped pages against the process.
"""
from __future__ import annotations

import os
import warnings
from typing import Callable, Iterator

import numpy as np

from masnn.datasets.events import EventFileError, TruncatedRecordingWarning

# decode(buffer, n_bytes, at_end) -> (bytes_consumed, events, stop, need_bytes)
Decoder = Callable[[np.ndarray, int, bool], tuple[int, np.ndarray, bool, int]]


def iter_blocks(path: str, offset: int, block_bytes: int, decode: Decoder, what: str) -> Iterator[np.ndarray]:
    """Reads ``path`` from ``offset`` in blocks, yielding what ``decode`` makes of each.

    ``need_bytes`` > 0 asks for a larger buffer (one record bigger than the block), never beyond what the file
    holds. Bytes left over at the end of the file are a truncated record: the decoder salvages what it can, and
    a warning says so.
    """
    buffer = np.empty(block_bytes, dtype=np.uint8)
    filled = 0
    at_end = False
    with open(path, "rb") as f:
        f.seek(offset)
        while True:
            if not at_end:
                n = f.readinto(memoryview(buffer)[filled:])
                at_end = n == 0 or filled + n < len(buffer)
                filled += n
            consumed, events, stop, need = decode(buffer, filled, at_end)
            if len(events):
                yield events
            if stop:
                return
            if consumed == 0 and filled == len(buffer) and not at_end:
                need = max(need, 2 * len(buffer))  # not even one record fits: read more before decoding
            # A record can be no larger than what the file still holds: a corrupt size must not allocate more.
            need = min(need, filled + max(0, os.fstat(f.fileno()).st_size - f.tell()))
            if need > len(buffer):
                grown = np.empty(need, dtype=np.uint8)
                grown[:filled] = buffer[:filled]
                buffer = grown
            leftover = filled - consumed
            if at_end and consumed == 0:
                if leftover:
                    warnings.warn(
                        TruncatedRecordingWarning(
                            f"{path}: ends inside {what} ({leftover} bytes left over); kept the events before it"
                        ),
                        stacklevel=2,
                    )
                return
            buffer[:leftover] = buffer[consumed:filled]
            filled = leftover


# The most a text header may take. Real ones are a few KB (jAER's, with its XML preferences, about 5 KB); a file
# whose header never ends (a '#' or '%' byte at the start of a data file) must not be read line by line to its end.
MAX_HEADER_BYTES = 1 << 20


def read_text_header(path: str, prefix: bytes = b"#", end_line: bytes | None = None) -> tuple[list[str], int]:
    """Header lines starting with ``prefix`` (decoded, stripped) and the byte offset of the data after them.

    Refuses a header longer than MAX_HEADER_BYTES and a file that ends inside a header line (cut short there:
    a reader looking for that line's end would look forever)."""
    lines: list[str] = []
    offset = 0
    with open(path, "rb") as f:
        while True:
            line = f.readline(MAX_HEADER_BYTES + 1 - offset)
            if not line.startswith(prefix):
                break
            if offset + len(line) > MAX_HEADER_BYTES:
                raise EventFileError(path, f"header runs past {MAX_HEADER_BYTES >> 20} MB without ending")
            if not line.endswith(b"\n"):
                raise EventFileError(path, f"ends inside header line {len(lines) + 1} ({_shown(line)})")
            offset += len(line)
            lines.append(line.decode("latin-1").strip())
            if end_line is not None and line.rstrip(b"\r\n") == end_line:
                break
    return lines, offset


def header_value(lines: list[str], key: str) -> str | None:
    """The text after ``key`` on the first header line that starts with it (stripped; "" if there is none),
    or None without such a line."""
    line = next((line for line in lines if line.startswith(key)), None)
    return None if line is None else line[len(key):].strip()


def _shown(line: bytes, limit: int = 60) -> str:
    text = line.decode("latin-1").strip()
    return repr(text if len(text) <= limit else text[:limit] + "...")
