"""`masnn live`: sources (camera, DV stream, replay), the framer that turns arriving events into windows, the
pipeline (reader thread, one-slot hand-off, classifier, reconnects) and its view (dashboard, OpenCV window).
Imports masnn.datasets and the classifier's interface; the CLI and benchmarks import this."""
