"""`masnn live`: sources, the framer (arriving events -> windows), the one-slot hand-off, the pipeline, its figures
and log (``stats``) and its view. Imports masnn.datasets and a classifier passed in; the CLI and benchmarks import it."""
