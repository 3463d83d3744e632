"""Events in, frames out: readers and writers (``io``), framing, spatial mapping and denoising (``transforms``),
dataset indexes and the frame cache (``loaders``), synthetic recordings (``synth``); ``events`` is the
event array every subsystem shares. Imports numpy, numba, torch, tonic, dv-processing; never masnn.models or the app."""
