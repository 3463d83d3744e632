"""Datasets: DVS128 Gesture and DVS128 Gait sample indexes, the table of datasets (``table``), and the frame
cache with its torch Dataset (``cache``). Imports masnn.datasets.io and masnn.datasets.transforms."""
