"""LZ4 frame decompression through the system's liblz4, callable from compiled (numba) code.

Why not python-lz4: AEDAT 4.0 packets are LZ4 frames that do not state their decompressed size, so
python-lz4 grows its output step by step and holds the GIL between steps; two threads decompressing took
longer than one. Here liblz4's frame decoder is declared to numba as an external function, so that one
compiled call decodes a whole batch of packets without the GIL. ``AVAILABLE`` is False where no liblz4 with
the frame API is found; callers then leave the file to dv-processing.

The C function is called with every pointer passed as an integer (an address): that is how both x86-64 and
AArch64 pass pointers, and it lets compiled code hand over array addresses without pointer types.
"""
from __future__ import annotations

import ctypes
import ctypes.util

import llvmlite.binding
import numpy as np
from numba import types

LZ4F_VERSION = 100


def _load_liblz4():
    name = ctypes.util.find_library("lz4")
    try:
        lib = ctypes.CDLL(name) if name else None
        if lib is not None:
            lib.LZ4F_createDecompressionContext.argtypes = [ctypes.POINTER(ctypes.c_void_p), ctypes.c_uint]
            lib.LZ4F_freeDecompressionContext.argtypes = [ctypes.c_void_p]
            lib.LZ4F_decompress.argtypes = [ctypes.c_void_p] * 6
            lib.LZ4F_decompress.restype = ctypes.c_ssize_t  # error codes are negative
            llvmlite.binding.load_library_permanently(name)  # so that compiled code finds the symbol
    except (OSError, AttributeError, RuntimeError):  # no loadable library, or one older than the frame API
        lib = None
    return lib


LIBLZ4 = _load_liblz4()
AVAILABLE = LIBLZ4 is not None

# LZ4F_decompress(context, dst, &dst_size, src, &src_size, options): on return dst_size holds the bytes
# written and src_size the bytes read; the result is 0 once the frame is complete, a hint of the input still
# expected, or an error code: (size_t)-code, negative as a signed integer.
lz4f_decompress = types.ExternalFunction("LZ4F_decompress", types.intp(*[types.uintp] * 6))


class LZ4FrameError(ValueError):
    """An LZ4 frame that does not decompress, or decompresses to more than the caller allows."""


class DecompressionContext:
    """One liblz4 decompression context (a frame decoder's state), freed on exit; ``address`` for compiled code."""

    def __enter__(self):
        self._context = ctypes.c_void_p()
        if LIBLZ4.LZ4F_createDecompressionContext(ctypes.byref(self._context), LZ4F_VERSION) != 0:
            raise MemoryError("liblz4 cannot create a decompression context")
        self.address = self._context.value
        return self

    def __exit__(self, *exc):
        LIBLZ4.LZ4F_freeDecompressionContext(self._context)


def decompress_frame(data: np.ndarray, limit: int, step: int = 1 << 20) -> bytes:
    """The decompressed content of the LZ4 frame that ``data`` (uint8) starts with, for the few frames decoded
    from Python (the packet table). Raises LZ4FrameError where the frame is corrupt or cut short, or
    decompresses to more than ``limit`` bytes: a damaged frame can claim any size, so the caller bounds it."""
    data = np.ascontiguousarray(data, np.uint8)
    out, consumed = bytearray(), 0
    window = ctypes.create_string_buffer(step)
    with DecompressionContext() as context:
        while True:
            out_size, in_size = ctypes.c_size_t(step), ctypes.c_size_t(len(data) - consumed)
            status = LIBLZ4.LZ4F_decompress(context.address, window, ctypes.byref(out_size),
                                            data.ctypes.data + consumed, ctypes.byref(in_size), None)
            if status < 0:
                raise LZ4FrameError("corrupt LZ4 data")
            out += ctypes.string_at(window, out_size.value)
            consumed += in_size.value
            if len(out) > limit:
                raise LZ4FrameError(f"decompresses to more than {limit} bytes")
            if status == 0:
                return bytes(out)
            if out_size.value == 0 and in_size.value == 0:  # no progress: the frame needs input that is not there
                raise LZ4FrameError("the LZ4 frame is cut short")
