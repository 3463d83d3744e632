"""Event files: one reader per format behind ``open_recording`` / ``read_events`` (format chosen by content), the
``Recording`` base they extend, and the writers. Imports masnn.datasets.events only, of masnn."""
from masnn.datasets.io.readers import detect_format, open_recording, read_events
from masnn.datasets.io.recording import Recording

__all__ = ["Recording", "detect_format", "open_recording", "read_events"]
