"""The datasets masnn knows: class names and sensors (light to import: the synthetic generator and the CLI read
it without loading torch)."""
from __future__ import annotations

# DVS128 Gesture's labels 1-11, in order. "Right" is the subject's right arm (the image's left half), and
# "clockwise" is as the subject sees it.
GESTURE_CLASSES = [
    "hand clap",
    "right hand wave",
    "left hand wave",
    "right arm clockwise",
    "right arm counter-clockwise",
    "left arm clockwise",
    "left arm counter-clockwise",
    "arm roll",
    "air drums",
    "air guitar",
    "other gestures",
]
