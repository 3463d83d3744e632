"""`masnn info`: versions, compute devices, Triton, and connected DVS cameras."""
from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version


def package_versions(names=("masnn", "torch", "numpy", "numba", "tonic", "dv-processing", "expelliarmus", "opencv-python", "typer", "rich", "triton")):
    found = {}
    for name in names:
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = None
    return found


def torch_devices() -> dict:
    import torch

    devices = {"cpu": f"{torch.get_num_threads()} threads"}
    if torch.cuda.is_available():
        for i in range(torch.cuda.device_count()):
            devices[f"cuda:{i}"] = torch.cuda.get_device_name(i)
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        devices["mps"] = "Apple GPU"
    return devices


def triton_status() -> str:
    try:
        importlib.import_module("triton")
    except ImportError:
        return "not installed (pip install 'masnn[gpu]' on a CUDA machine)"
    import torch

    return "usable (CUDA device present)" if torch.cuda.is_available() else "installed; no CUDA device (CPU runs use the fused CPU path)"


def cameras() -> tuple[list[str], str | None]:
    """Connected DVS cameras as dv-processing discovers them, and an error text if discovery failed."""
    try:
        import dv_processing as dv

        return [f"{d.cameraModel} (serial {d.serialNumber})" for d in dv.io.camera.discover()], None
    except Exception as e:  # discovery needs libusb; its absence must not break `masnn info`
        return [], f"camera discovery unavailable ({e})"
