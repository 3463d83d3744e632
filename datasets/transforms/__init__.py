"""Events -> model input: framing (``framing``), the spatial map to the model's grid (``spatial``), denoising
(``denoise``), and the streaming framer and recording pipeline that compose them (``stream``, ``pipeline``).
Imports masnn.datasets.events and masnn.datasets.io."""
