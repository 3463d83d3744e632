"""Shipped checkpoints (package data, found with importlib.resources), a model card beside each, and the sample
recording that `masnn classify` runs on by default. No code: nothing here imports anything."""
