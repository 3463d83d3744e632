"""`masnn bench fuzz`: seeded corruptions of small recordings in every format, run through `masnn inspect`, `frames`
(from the start, and from 0.3 s in: a time selection) and `classify`, each run sorted by what it did to the user.

Seeds are made here (AEDAT 4.0 LZ4 and uncompressed, AEDAT 3.1, .npy, tonic's .npy layout, .npz, text, slayer
.bs2) and, given a folder of real recordings, taken from it (AEDAT 2.0, Prophesee EVT 2/3, real AEDAT 4.0, .bs2).
Each seed gets truncations, byte flips, zeroed regions, huge lengths, damaged header lines and, for the formats
whose values are plain numbers, values that are wrong on purpose (a coordinate beyond int16, one far outside the
sensor, NaN or jumping timestamps; .bs2 times out of order): those must never be read as if nothing were wrong.

The commands run in a worker process that answers one case at a time; a case that takes longer than the time
limit is a hang (the worker is killed and replaced), a worker that dies by a signal is a crash, and the worker's
address space is capped so that a memory bomb fails fast instead of taking the machine.
"""
from __future__ import annotations

import json
import os
import resource
import select
import signal
import subprocess
import sys
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

OUTCOMES = ("read", "refused", "salvaged", "crash", "hang", "memory", "traceback", "unclean", "silently wrong")
GOOD = {"read", "refused", "salvaged"}
MEMORY_LIMIT_BYTES = 8 << 30
HEADER_SPAN = 1 << 16  # text headers are looked for in the first 64 KiB
REAL_SEEDS = {  # name in a folder of real recordings -> seed name
    "dvs128_aedat2/alex_walking_again.aedat": "aedat2-real",
    "prophesee_evt2_640x480.raw": "evt2-real",
    "prophesee_evt3_1280x720.raw": "evt3-real",
    "dvxplorer_320x240_person.aedat4": "aedat4-real",
    "dvsgesture_bs2/class01_hand_clap.bs2": "bs2-real",
}


@dataclass(frozen=True)
class Case:
    seed: str
    mutation: str
    path: str
    command: str
    expect_fault: bool  # the file holds a value that is wrong on purpose: reading it without a word is a lie


# --- seeds -------------------------------------------------------------------------------------------------------

def _events(n: int = 20_000, seed: int = 0):
    from masnn.bench.common import moving_blob_events

    return moving_blob_events(n, 1_000_000, seed=seed, t0=1_000_000)


def _write_aedat4_uncompressed(path: Path, events) -> None:
    import dv_processing as dv

    config = dv.io.MonoCameraWriter.EventOnlyConfig("DVS128", (128, 128))
    config.compression = dv.CompressionType.NONE
    writer = dv.io.MonoCameraWriter(str(path), config)
    store = dv.EventStore()
    for t, x, y, p in zip(*(events[k].tolist() for k in ("t", "x", "y", "p"))):
        store.push_back(t, x, y, bool(p))
    writer.writeEvents(store)
    del writer


def make_seeds(folder: Path, real: Path | None) -> dict[str, Path]:
    """Small recordings in every format: name -> path."""
    from masnn.datasets.io.writers import write_aedat4, write_aedat31, write_bs2, write_npz, write_text

    events = _events()
    seeds = {"aedat4-lz4": folder / "seed.aedat4", "aedat4-raw": folder / "seed-raw.aedat4",
             "aedat31": folder / "seed.aedat", "npy": folder / "seed.npy", "npy-tonic": folder / "seed-tonic.npy",
             "npz": folder / "seed.npz", "text": folder / "seed.txt", "bs2": folder / "seed.bs2"}
    write_aedat4(seeds["aedat4-lz4"], events, (128, 128))
    _write_aedat4_uncompressed(seeds["aedat4-raw"], events)
    write_aedat31(seeds["aedat31"], events)
    plain = np.zeros(len(events), [("t", "<i8"), ("x", "<i2"), ("y", "<i2"), ("p", "u1")])
    for name in plain.dtype.names:
        plain[name] = events[name]
    np.save(seeds["npy"], plain)
    table = np.stack([events["x"], events["y"], events["p"], (events["t"] - events["t"][0]) / 1000.0], axis=1)
    np.save(seeds["npy-tonic"], table)
    write_npz(seeds["npz"], events, (128, 128))
    write_text(seeds["text"], events)
    write_bs2(seeds["bs2"], events)  # times 1-2 s: inside the format's 23-bit clock
    for name, seed in REAL_SEEDS.items():
        if real is not None and (real / name).is_file():
            seeds[seed] = real / name
    return seeds


# --- mutations ---------------------------------------------------------------------------------------------------

def _byte_mutations(data: bytes, rng: np.random.Generator, per_kind: int) -> list[tuple[str, bytes]]:
    n = len(data)
    out = []
    for _ in range(per_kind):
        cut = int(rng.integers(1, min(n, 400))) if rng.random() < 0.4 else int(rng.integers(1, n))
        out.append((f"truncated at byte {cut}", data[:cut]))
    for count in (1, 8, 50):
        for _ in range(max(1, per_kind // 2)):
            buffer = bytearray(data)
            places = rng.integers(0, n, count)
            for place in places:
                buffer[place] ^= int(rng.integers(1, 256))
            out.append((f"{count} bytes flipped from byte {int(places.min())}", bytes(buffer)))
    for _ in range(per_kind):
        start, length = int(rng.integers(0, n)), int(rng.integers(16, 4096))
        buffer = bytearray(data)
        buffer[start : start + length] = bytes(min(length, n - start))
        out.append((f"zeroed bytes {start}-{start + length}", bytes(buffer)))
    for _ in range(per_kind):
        place = int(rng.integers(0, max(1, n - 4))) & ~3
        value = bytes([0xFF, 0xFF, 0xFF, 0x7F]) if rng.random() < 0.5 else bytes([0xFF] * 4)
        buffer = bytearray(data)
        buffer[place : place + 4] = value
        out.append((f"huge length at byte {place}", bytes(buffer)))
    return out


def _header_mutations(data: bytes, rng: np.random.Generator) -> list[tuple[str, bytes]]:
    """Damaged header lines of the formats whose header is text (AEDAT 2.0/3.1, Prophesee)."""
    head, rest = data[:HEADER_SPAN], data[HEADER_SPAN:]
    lines = head.split(b"\n")
    header = [k for k, line in enumerate(lines[:-1]) if line[:1] in (b"#", b"%")]
    out = []
    for k in rng.permutation(header)[:3]:
        words = lines[k].split(b" ")
        for label, line in (("without its value", b" ".join(words[:2] if len(words) > 2 else words[:1])),
                            ("with huge numbers", lines[k] + b" 3000000x3000000 99999999999999999999")):
            out.append((f"header line {k} {label}", b"\n".join(lines[:k] + [line] + lines[k + 1 :]) + rest))
    return out


def _value_mutations(seed: str, path: Path, folder: Path) -> list[tuple[str, Path]]:
    """Files whose values are wrong on purpose (expect_fault), written in the seed's format."""
    from masnn.datasets.io.readers import read_events

    if seed in ("bs2", "bs2-real"):
        return _bs2_value_mutations(seed, path, folder)
    if seed not in ("npy", "npz", "text"):
        return []
    events, _ = read_events(path)
    middle = len(events) // 2
    faults = {"x = 65541, beyond int16": ("x", 65541), "x = 30000, one event far outside the rest": ("x", 30000),
              "timestamps jump by 10^12 us": ("t", 10**12), "t = NaN": ("t", np.nan)}
    out = []
    for k, (label, (field, value)) in enumerate(faults.items()):
        floating = isinstance(value, float)
        if floating and seed != "npy":
            continue  # NaN exists only in a float array
        bad = np.zeros(len(events), [("t", "<f8" if floating else "<i8"), ("x", "<i8"), ("y", "<i8"), ("p", "u1")])
        for name in bad.dtype.names:
            bad[name] = events[name]
        if field == "t" and not floating:
            bad["t"][middle:] += value
        else:
            bad[field][middle] = value
        target = folder / f"{seed}-value-{k}{path.suffix}"
        if seed == "text":
            target.write_text("".join(f"{t} {x} {y} {p}\n" for t, x, y, p in bad.tolist()))
        elif seed == "npz":
            np.savez(target, x=bad["x"], y=bad["y"], t=bad["t"], p=bad["p"], sensor_size=np.array([128, 128]))
        else:
            np.save(target, bad)
        out.append((label, target))
    return out


def _bs2_value_mutations(seed: str, path: Path, folder: Path) -> list[tuple[str, Path]]:
    """Every 5 bytes are some .bs2 event: the values wrong on purpose are times out of order (the format does not
    promise order; masnn refuses it), each half written in order by the writer."""
    from masnn.datasets.io.bs2 import decode_bs2, encode_bs2

    events = decode_bs2(path.read_bytes())
    first, second = events[: len(events) // 2], events[len(events) // 2 :].copy()
    out = [("halves swapped", encode_bs2(second) + encode_bs2(first))]
    second["t"] -= second["t"][0]
    out.append(("times restart from 0 halfway (a wrapped clock)", encode_bs2(first) + encode_bs2(second)))
    targets = []
    for k, (label, data) in enumerate(out):
        target = folder / f"{seed}-value-{k}{path.suffix}"
        target.write_bytes(data)
        targets.append((label, target))
    return targets


def make_cases(folder: Path, real: Path | None, per_kind: int, commands: tuple[str, ...], seed: int) -> list[Case]:
    rng = np.random.default_rng(seed)
    cases = []
    for name, path in make_seeds(folder, real).items():
        data = path.read_bytes()
        mutated = _byte_mutations(data, rng, per_kind)
        if data[:1] in b"#%" or name == "text":
            mutated += _header_mutations(data, rng)
        for k, (label, content) in enumerate(mutated):
            target = folder / f"{name}-{k}{path.suffix}"
            target.write_bytes(content)
            cases += [Case(name, label, str(target), c, False) for c in commands]
        for label, target in _value_mutations(name, path, folder):
            cases += [Case(name, label, str(target), c, True) for c in commands]
    return cases


# --- running -----------------------------------------------------------------------------------------------------

def command_line(case: Case, out_dir: str) -> list[str]:
    if case.command == "frames":
        return ["frames", case.path, "-o", os.path.join(out_dir, "frames.npy")]
    if case.command == "classify":
        return ["classify", case.path, "--json"]
    if case.command == "select":  # a time selection: readers seek through their index instead of reading on
        return ["frames", case.path, "--start", "0.3", "-o", os.path.join(out_dir, "frames.npy")]
    return ["inspect", case.path]


def serve() -> None:
    """The worker: reads one JSON argument list a line, runs `masnn ARGS` with fds 1 and 2 sent to files, answers
    {"rc", "out", "err"} on its own stdout."""
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT_BYTES, MEMORY_LIMIT_BYTES))
    from masnn.cli import main

    answer = os.fdopen(os.dup(1), "w")
    for line in sys.stdin:
        args, out_path, err_path = json.loads(line)
        saved = os.dup(1), os.dup(2)
        with open(out_path, "wb") as out, open(err_path, "wb") as err:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.argv = ["masnn", *args]
            try:
                main()
                code = 0
            except SystemExit as e:
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
            except BaseException as e:  # noqa: BLE001 (a fuzzer reports everything)
                print(f"Traceback (most recent call last): worker caught {type(e).__name__}: {e}", file=sys.stderr)
                code = 1
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os.dup2(saved[0], 1)
                os.dup2(saved[1], 2)
                os.close(saved[0])
                os.close(saved[1])
        answer.write(json.dumps({"rc": code}) + "\n")
        answer.flush()


class Worker:
    def __init__(self, python: str = sys.executable, env: dict | None = None):
        self.python, self.env = python, env
        self.process = None

    def _start(self):
        code = "from masnn.bench.fuzz import serve; serve()"
        self.process = subprocess.Popen([self.python, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                        stderr=subprocess.DEVNULL, env=self.env, text=True, bufsize=1)

    def run(self, args: list[str], work: str, timeout: float) -> tuple[str, int | None, str, str]:
        """(how it ended: "done" | "hang" | "died", return code or signal, stdout, stderr)."""
        if self.process is None or self.process.poll() is not None:
            self._start()
        out_path, err_path = os.path.join(work, "out.txt"), os.path.join(work, "err.txt")
        self.process.stdin.write(json.dumps([args, out_path, err_path]) + "\n")
        self.process.stdin.flush()
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        line = self.process.stdout.readline() if ready else ""
        read = lambda p: Path(p).read_text(errors="replace") if os.path.exists(p) else ""  # noqa: E731
        if not ready:
            self.close()
            return "hang", None, read(out_path), read(err_path)
        if not line:
            code = self.process.wait()
            self.process = None
            return "died", code, read(out_path), read(err_path)
        return "done", json.loads(line)["rc"], read(out_path), read(err_path)

    def close(self):
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()
        self.process = None


def outcome(case: Case, ended: str, code: int | None, err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    named = lambda line: case.path in line or Path(case.path).name in line  # noqa: E731
    if ended == "hang":
        return "hang"
    if ended == "died":
        return "memory" if code == -signal.SIGKILL else "crash"
    if "MemoryError" in err or "bad_alloc" in err or "out of memory" in err:
        return "memory"
    if "Traceback" in err or "internal error" in err:
        return "traceback"  # a bug of masnn's own, whether or not MASNN_DEBUG shows the traceback
    if code == 2:
        return "refused" if len(lines) == 1 and lines[0].startswith("error:") and named(lines[0]) else "unclean"
    if code == 0:
        warned = [line for line in lines if line.startswith("warning:")]
        if len(warned) != len(lines) or (warned and not all(named(line) for line in warned)):
            return "unclean"
        if warned:
            return "salvaged"
        return "silently wrong" if case.expect_fault else "read"
    return "unclean"


def run_fuzz(per_kind: int = 3, commands: tuple[str, ...] = ("inspect", "frames", "select", "classify"), seed: int = 0,
             real: Path | None = None, timeout: float = 30.0, limit: int | None = None, python: str = sys.executable,
             env: dict | None = None, progress=None) -> dict:
    """Every case's outcome and a table of outcomes per command."""
    with tempfile.TemporaryDirectory(prefix="masnn-fuzz-") as folder:
        cases = make_cases(Path(folder), real, per_kind, commands, seed)
        if limit is not None:
            picked = np.random.default_rng(seed).permutation(len(cases))[:limit]
            cases = [cases[k] for k in sorted(picked)]
        worker, results = Worker(python, env), []
        work = tempfile.mkdtemp(dir=folder)
        try:
            for k, case in enumerate(cases):
                ended, code, _, err = worker.run(command_line(case, work), work, timeout)
                first = next((line for line in err.splitlines() if line.strip()), "")
                results.append({"seed": case.seed, "mutation": case.mutation, "command": case.command,
                                "outcome": outcome(case, ended, code, err), "code": code, "stderr": first[:300]})
                if progress is not None:
                    progress(k + 1, len(cases))
        finally:
            worker.close()
    table = Counter((r["outcome"], r["command"]) for r in results)
    return {"cases": results, "runs": len(results),
            "table": {o: {c: table[(o, c)] for c in commands} for o in OUTCOMES},
            "bad": sum(1 for r in results if r["outcome"] not in GOOD)}
