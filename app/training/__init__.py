"""Training and scoring: config and presets, the training loop, distributed helpers, evaluation reports,
ablations and model cards. Imports masnn.datasets, masnn.models and masnn.checkpoint; inference never imports this."""
