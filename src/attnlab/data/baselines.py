"""Shortcut baselines that classification data logs beside a model's score (DESIGN.md)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy.sparse import csr_matrix

Labelled = Sequence[tuple[Sequence[int], int]]  # (token ids, label) per example


def token_counts(sequences: Sequence[Sequence[int]], vocab_size: int) -> csr_matrix:
    """(N, V) sparse counts: how often each token id occurs in each sequence."""
    rows = np.repeat(np.arange(len(sequences)), [len(ids) for ids in sequences])
    cols = np.fromiter((token for ids in sequences for token in ids), dtype=np.int64)
    values = np.ones(len(cols), dtype=np.float64)
    return csr_matrix((values, (rows, cols)), shape=(len(sequences), vocab_size))


def bag_of_tokens_accuracy(train: Labelled, test: Labelled, vocab_size: int) -> float:
    """Test accuracy of a logistic regression on token counts fitted on ``train``.

    What order-blind features with a linear read-out reach: if this is far above chance, one
    token's identity carries the label and the task tests no interaction between positions.
    """
    from sklearn.linear_model import LogisticRegression  # ~0.4 s to import: when used

    model = LogisticRegression(max_iter=1000)
    model.fit(token_counts([ids for ids, _ in train], vocab_size), [y for _, y in train])
    predicted = model.predict(token_counts([ids for ids, _ in test], vocab_size))
    return float(np.mean(predicted == np.array([y for _, y in test])))
