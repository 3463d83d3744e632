"""LZ4 frame decompression through the system's liblz4 (ctypes), which releases the GIL.

Why not python-lz4: AEDAT 4.0 packets are LZ4 frames that do not state their decompressed size, so
python-lz4 grows its output step by step and holds the GIL between steps; two threads decompressing took
longer than one. Here the block sizes bound the output first, then liblz4 decodes the frame into it in one
call, during which other threads run. ``AVAILABLE`` is False where no liblz4 with the frame API is found;
callers then leave the file to dv-processing.

Frame layout (LZ4 frame specification): magic 0x184D2204, FLG and BD bytes, an optional 8-byte content size
and 4-byte dictionary id, a header checksum byte, then blocks: a 4-byte little-endian size (high bit: stored
uncompressed), the data, an optional 4-byte checksum; a zero size ends the frame, and an optional 4-byte
content checksum follows.
"""
from __future__ import annotations

import ctypes
import ctypes.util
import struct

import numpy as np

MAGIC = 0x184D2204
BLOCK_MAX = {4: 1 << 16, 5: 1 << 18, 6: 1 << 20, 7: 1 << 22}  # by BD's block size id
LZ4F_VERSION = 100


def _load_liblz4():
    name = ctypes.util.find_library("lz4")
    try:
        lib = ctypes.CDLL(name) if name else None
        if lib is not None:
            lib.LZ4F_createDecompressionContext.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint]
            lib.LZ4F_freeDecompressionContext.argtypes = [ctypes.c_void_p]
            lib.LZ4F_decompress.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t),
                                            ctypes.c_void_p, ctypes.POINTER(ctypes.c_size_t), ctypes.c_void_p]
            lib.LZ4F_decompress.restype = ctypes.c_size_t
    except (OSError, AttributeError):  # no loadable library, or one older than the frame API
        lib = None
    return lib


LIBLZ4 = _load_liblz4()
AVAILABLE = LIBLZ4 is not None


def decompressed_bound(data) -> int:
    """An upper bound of the frame's decompressed size: its block count times the block size."""
    try:
        magic, flags, bd = struct.unpack_from("<IBB", data, 0)
        if magic != MAGIC or flags >> 6 != 1 or (bd >> 4) & 7 not in BLOCK_MAX:
            raise ValueError("not an LZ4 frame")
        block_max = BLOCK_MAX[(bd >> 4) & 7]
        i = 7 + (8 if flags & 8 else 0) + (4 if flags & 1 else 0)
        blocks = 0
        while (size := struct.unpack_from("<I", data, i)[0] & 0x7FFFFFFF) != 0:
            i += 4 + size + (4 if flags & 16 else 0)
            blocks += 1
    except struct.error:
        raise ValueError("an LZ4 frame cut short") from None
    return blocks * block_max


def decompress(data) -> np.ndarray:
    """The decompressed bytes of one LZ4 frame as a uint8 array. Raises ValueError on corrupt data."""
    source = np.frombuffer(data, np.uint8)
    out = np.empty(decompressed_bound(data), np.uint8)
    context = ctypes.c_void_p()
    if LIBLZ4.LZ4F_createDecompressionContext(ctypes.byref(context), LZ4F_VERSION) != 0:
        raise MemoryError("liblz4 cannot create a decompression context")
    try:
        written, read = ctypes.c_size_t(out.size), ctypes.c_size_t(source.size)
        status = LIBLZ4.LZ4F_decompress(context, out.ctypes.data, ctypes.byref(written), source.ctypes.data,
                                        ctypes.byref(read), None)
    finally:
        LIBLZ4.LZ4F_freeDecompressionContext(context)
    if status != 0 or read.value != source.size:  # 0: the frame is complete; else an error code or a hint
        raise ValueError("corrupt LZ4 data")
    return out[: written.value]
