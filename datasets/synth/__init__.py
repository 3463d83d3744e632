"""Synthetic DVS recordings: a figure (``figure``) moved through gestures and walks (``motions``), seen by a DVS
pixel model (``emulator``), written as datasets (``generator``). Imports masnn.datasets.io and loaders' class names."""
