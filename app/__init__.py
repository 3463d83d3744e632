"""masnn: event-camera action recognition with MA-SNN (multi-dimensional attention spiking networks). The application:
checkpoint, classify, report, render, pictures here; cli, live, training, bench below. Imports masnn.datasets, masnn.models."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("masnn")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0"
