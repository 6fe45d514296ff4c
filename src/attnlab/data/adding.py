"""The adding problem (Hochreiter & Schmidhuber 1997; Le et al. 2015): long memory as regression."""

from __future__ import annotations

import numpy as np
import torch
from torch.utils.data import TensorDataset

from attnlab.core.contracts import SeriesDims
from attnlab.core.registry import Settings, register
from attnlab.data.loaders import check_loading
from attnlab.data.series import SPLITS, RegressionDataModule

# Predicting the constant 1.0 on the adding problem: Var(u1 + u2) = 2/12 for u ~ U[0, 1].
ADDING_BASELINE_MSE = 1 / 6


def adding_problem(n: int, length: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` sequences of the adding problem.

    Each step holds (value ~ U[0, 1], marker); exactly two markers are 1, one in each half of
    the sequence, and the target is the sum of the two marked values. Returns inputs
    (n, length, 2) and targets (n, 1, 1), float32. Predicting 1.0 scores ADDING_BASELINE_MSE.
    """
    rng = np.random.default_rng(seed)
    values = rng.uniform(0.0, 1.0, size=(n, length))
    rows = np.arange(n)
    first = rng.integers(0, length // 2, n)
    second = rng.integers(length // 2, length, n)
    markers = np.zeros_like(values)
    markers[rows, first] = markers[rows, second] = 1.0
    targets = values[rows, first] + values[rows, second]
    inputs = np.stack([values, markers], axis=-1)  # (n, length, 2)
    return inputs.astype(np.float32), targets.reshape(n, 1, 1).astype(np.float32)


def check_adding(c: Settings) -> None:
    check_loading(c)
    if c.length < 2:
        c.fail("length", ">= 2 (one marker in each half)")


@register("data", "adding", check=check_adding)
class AddingDataModule(RegressionDataModule):
    """The adding problem as regression with horizon 1: (B, length, 2) -> (B, 1, 1).

    The splits are disjoint draws of one seeded generator. Values are not standardised; the
    constant prediction 1.0 scores ADDING_BASELINE_MSE (about 0.167), the level to beat.
    """

    def __init__(
        self,
        length: int = 100,
        n_train: int = 10000,
        n_val: int = 1000,
        n_test: int = 1000,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, num_workers)
        self.length, self.seed = length, seed
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}

    def setup(self, stage: str | None = None) -> None:
        if self.datasets:
            return
        inputs, targets = adding_problem(sum(self.sizes.values()), self.length, self.seed)
        cuts = np.cumsum([self.sizes[name] for name in SPLITS])[:-1]
        parts = zip(np.split(inputs, cuts), np.split(targets, cuts), strict=True)
        self.datasets = {
            name: TensorDataset(torch.from_numpy(x), torch.from_numpy(y))
            for name, (x, y) in zip(SPLITS, parts, strict=True)
        }

    @property
    def dims(self) -> SeriesDims:
        return SeriesDims(in_features=2, input_len=self.length, horizon=1)

    def baselines(self) -> dict[str, float]:
        """The MSE of always answering 1.0, the mean of the target."""
        return {"test/mse/predict_1": ADDING_BASELINE_MSE}
