"""The fixed sets of values that options take, as ``Literal`` types: typer lists them in ``--help``
(``<table|csv|jsonl>``), refuses any other value with the list, and hands the command a plain string, which is
what the library functions take.

Spelled out here rather than imported, so that `masnn --help` does not load torch; tests/test_cli_help.py holds
each one equal to the list the library checks against. Sets that are not finite keep a callback in ``checks``
and show their forms as the metavar: devices (``cuda:N``) and comma-separated lists.
"""
from __future__ import annotations

from typing import Literal

TableFormat = Literal["table", "csv", "jsonl"]  # masnn.batch.FORMATS
ClassifyMode = Literal["auto", "clip", "timeline"]  # masnn.classify.MODES
FrameMode = Literal["crop", "stretch"]  # FramingConfig.mode
ModelName = Literal["ma-snn-3layer", "ma-snn-5layer"]  # masnn.models.list_models()
# canonical letters (masnn.models.attention.ATTENTIONS, "" as none), then the paper's spellings parse_attention reads
Attention = Literal["none", "T", "C", "S", "TC", "TS", "CS", "TCS", "TA", "CA", "SA", "TCA", "TSA", "CSA", "TCSA"]
Placement = Literal["paper", "conv-pre", "conv-post", "activate-pre", "reference-code"]  # attention.PLACEMENTS
EnergyPreset = Literal["fp32-45nm", "fp16-45nm", "int8-45nm"]  # accounting.ENERGY_PRESETS
Surrogate = Literal["rectangular", "sigmoid", "atan"]  # masnn.models.lif.SURROGATES
Dataset = Literal["gesture", "tonic-gesture", "gait"]  # masnn.datasets.loaders.table.DATASETS
Split = Literal["train", "test"]  # masnn.datasets.loaders.table.SPLITS
CalibrationSplit = Literal["validation", "test"]  # masnn.calibration.calibrate
TrainPreset = Literal["gesture-paper", "gait-paper", "gesture-cpu-small", "gesture-cpu-sim2real",
                      "gait-cpu-small"]  # masnn.training.config.TRAIN_PRESETS
Loss = Literal["mse", "ce"]  # TrainConfig.loss
Scheduler = Literal["plateau", "cosine", "none"]  # TrainConfig.scheduler
SynthPreset = Literal["full", "small", "tiny"]  # masnn.datasets.synth.generator.GESTURE_PRESETS
PixelModel = Literal["measured", "ideal"]  # masnn.datasets.synth.generator.PIXEL_MODELS
Sensor = Literal["dvs128", "davis346", "dvxplorer", "dvxplorer-lite"]  # generator.SENSORS
Lighting = Literal["fluorescent", "fluorescent_led", "lab", "led", "natural"]  # generator.LIGHTINGS

ModelBenchPart = Literal["all", "lif", "inference", "window"]  # masnn bench model --part

DEVICE_METAVAR = "<auto|cpu|cuda|cuda:N>"  # any CUDA device index: checked by checks.device
BOTH_WAYS_HELP = ("Score every window as recorded and played backwards (frames reversed, ON and OFF swapped; the arm "
                  "circles' senses swapped back) and average: what the window's order says, not where its motion sits. "
                  "Twice the spikes and energy. Default: as the model was trained (both ways for models trained on "
                  "crops played backwards).")
