"""Events -> model input: framing (``framing``), the spatial map to the model's grid (``spatial``), denoising
(``denoise``), the streaming framer and recording pipeline that compose them (``stream``, ``pipeline``), and
event-domain augmentation for training (``augment_spatial``, ``augment``, ``augment_recipe``).
Imports masnn.datasets.events and masnn.datasets.io."""
