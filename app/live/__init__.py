"""`masnn live`: sources (camera, DV stream, replay), the framer that turns arriving events into windows, the
hand-off between the reader and the classifier, the pipeline (reader thread, classifier, reconnects), its
figures and log (``stats``) and its view (dashboard, OpenCV window).
Imports masnn.datasets and the classifier's interface; the CLI and benchmarks import this."""
