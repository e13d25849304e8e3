"""Published DRN architectures and their training hyperparameters (Scellier 2024, Table 1).

Every preset uses mini-batches of 4, weight gain 1 (uniform(-1/sqrt(fan_in), 1/sqrt(fan_in))
initialisation clipped at 0), centred equilibrium propagation, plain SGD with one learning rate per
layer and an exponential learning-rate decay of 0.99 per epoch. The inference iteration count equals
the training one, as in the published code (rain-neuromorphics/energy-based-learning,
papers/fast-drn/drn.py: ``num_iterations_inference == num_iterations_training`` for every model).
"""
from __future__ import annotations

from dataclasses import dataclass, replace


@dataclass(frozen=True)
class Hyper:
    """Training hyperparameters of a DRN.

    ``iterations`` is the number of block-coordinate-descent sweeps (each sweep updates the even
    layers, then the odd ones) of the free and nudged phases; ``inference_iterations`` the number
    used at evaluation, starting from the zero state. ``beta`` is the nudging conductance (siemens,
    in the same units as the weights). ``lr_weights[l]`` / ``lr_biases[l]`` are the learning rates of
    ``weights[l]`` / ``biases[l]``. Beyond the paper, ``tol`` (amperes) makes every training phase
    sweep until its KKT residual is at most ``tol`` instead of a fixed count, with at most
    ``max_iterations`` sweeps.
    """

    batch_size: int = 4
    iterations: int = 4
    inference_iterations: int = 4
    beta: float = 1.0
    lr_weights: tuple[float, ...] = (0.006, 0.006)
    lr_biases: tuple[float, ...] = (0.006, 0.006)
    lr_decay: float = 0.99
    epochs: int = 10
    tol: float | None = None
    max_iterations: int = 1000

    def with_layers(self, num_layers: int) -> "Hyper":
        """These hyperparameters, with learning-rate tuples of length ``num_layers``.

        A tuple of the right length is kept; a shorter one is padded with its last value.
        """
        def fit(rates: tuple[float, ...]) -> tuple[float, ...]:
            rates = tuple(rates)[:num_layers]
            return rates + (rates[-1],) * (num_layers - len(rates))

        return replace(self, lr_weights=fit(self.lr_weights), lr_biases=fit(self.lr_biases))


@dataclass(frozen=True)
class Preset:
    """A published architecture: ``sizes`` (pixels, hidden..., outputs), input ``gain``, ``hyper``."""

    name: str
    sizes: tuple[int, ...]
    gain: float
    hyper: Hyper
    paper_test_error: float  # percent, EP, mean of five runs in the paper


PRESETS: dict[str, Preset] = {
    "xs": Preset("xs", (784, 100, 10), 100.0, Hyper(epochs=10), 3.46),
    "1h": Preset("1h", (784, 1024, 10), 480.0, Hyper(epochs=50), 1.57),
    "2h": Preset(
        "2h", (784, 1024, 1024, 10), 2000.0,
        Hyper(iterations=5, inference_iterations=5, lr_weights=(0.002, 0.006, 0.018),
              lr_biases=(0.002, 0.006, 0.018), epochs=50),
        1.48,
    ),
    "3h": Preset(
        "3h", (784, 1024, 1024, 1024, 10), 4000.0,
        Hyper(iterations=6, inference_iterations=6, beta=2.0,
              lr_weights=(0.005, 0.02, 0.08, 0.005), lr_biases=(0.0005, 0.002, 0.008, 0.0005),
              epochs=50),
        1.66,
    ),
    "xl": Preset("xl", (784, 32768, 10), 800.0, Hyper(epochs=100), 1.33),
}
