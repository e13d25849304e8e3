"""Deep resistive networks (DRNs): exact block-coordinate-descent relaxation and EP training.

>>> from resgraph.drn import preset, Trainer
>>> model = preset("xs")                       # 784-100-10, gain 100, batch 4, centred EP
>>> trainer = Trainer(model)                   # doctest: +SKIP
>>> trainer.train_epoch(train_x, train_y)      # doctest: +SKIP
"""
from .errors import ConvergenceError, DRNError, NudgingError
from .model import DRN, preset
from .presets import PRESETS, Hyper, Preset
from .training import Trainer, train

__all__ = ["DRN", "preset", "PRESETS", "Hyper", "Preset", "Trainer", "train",
           "DRNError", "NudgingError", "ConvergenceError"]
