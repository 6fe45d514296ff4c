"""Shortcut baselines that data modules log beside a model's score (DESIGN.md), and how a
report finds them again.

One naming convention: a baseline's score of the metric logged as ``<metric key>`` (such as
``test/acc`` or ``test/acc_by_group/5-8``) is logged as ``baseline/<metric key>/<name>``
(``baseline/test/acc/bag_of_tokens``). A data module's ``baselines()`` returns the keys without
the ``baseline/`` prefix, which the training run adds.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from sklearn.linear_model import LogisticRegression
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_exact_match
from torchmetrics.functional.text import bleu_score

from attnlab.data.text import Vocab, pad_batch

PREFIX = "baseline/"
Labelled = Sequence[tuple[Sequence[int], int]]  # (token ids, label) per example
# Metrics where a lower score is the better one; every other metric is maximised.
LOWER_IS_BETTER = ("loss", "error", "mse", "mae", "rmse")


def baseline_key(metric_key: str, name: str) -> str:
    """``test/acc``, ``chance`` -> ``test/acc/chance`` (the key a data module returns)."""
    return f"{metric_key}/{name}"


def baseline_names(metrics: Mapping[str, float], metric_key: str) -> dict[str, float]:
    """{baseline name: score} of ``metric_key`` among logged metrics (keys ``baseline/...``)."""
    start = f"{PREFIX}{metric_key}/"
    return {
        key[len(start) :]: value
        for key, value in metrics.items()
        if key.startswith(start) and "/" not in key[len(start) :]
    }


def lower_is_better(metric_key: str) -> bool:
    """Whether ``metric_key`` (``test/error``, ``test/mse_by_len/lt10``) is minimised."""
    metric = metric_key.split("/")[1] if "/" in metric_key else metric_key
    return metric.split("_by_")[0] in LOWER_IS_BETTER


def best_baseline(
    metrics: Mapping[str, float], metric_key: str, higher_is_better: bool | None = None
) -> tuple[str, float] | None:
    """The baseline with the best score of ``metric_key`` among logged metrics, as
    (name, score); None when none was logged. The direction is read from the metric's name
    (:data:`LOWER_IS_BETTER`) unless ``higher_is_better`` says it."""
    scores = baseline_names(metrics, metric_key)
    if not scores:
        return None
    higher = not lower_is_better(metric_key) if higher_is_better is None else higher_is_better
    pick = max if higher else min
    return pick(scores.items(), key=lambda item: item[1])


def token_counts(sequences: Sequence[Sequence[int]], vocab_size: int) -> csr_matrix:
    """(N, V) sparse counts: how often each token id occurs in each sequence."""
    rows = np.repeat(np.arange(len(sequences)), [len(ids) for ids in sequences])
    cols = np.fromiter((token for ids in sequences for token in ids), dtype=np.int64)
    values = np.ones(len(cols), dtype=np.float64)
    return csr_matrix((values, (rows, cols)), shape=(len(sequences), vocab_size))


def bag_of_tokens_predictions(train: Labelled, test: Labelled, vocab_size: int) -> np.ndarray:
    """The classes (N_test,) a logistic regression on token counts, fitted on ``train``,
    predicts for ``test``.

    What order-blind features with a linear read-out reach: if this is far above chance, one
    token's identity carries the label and the task tests no interaction between positions.
    """
    model = LogisticRegression(max_iter=1000)
    model.fit(token_counts([ids for ids, _ in train], vocab_size), [y for _, y in train])
    return model.predict(token_counts([ids for ids, _ in test], vocab_size))


def bag_of_tokens_accuracy(train: Labelled, test: Labelled, vocab_size: int) -> float:
    """Test accuracy of :func:`bag_of_tokens_predictions`."""
    predicted = bag_of_tokens_predictions(train, test, vocab_size)
    return float(np.mean(predicted == np.array([y for _, y in test])))


def one_hot(classes: Sequence[int] | np.ndarray, num_classes: int) -> np.ndarray:
    """Predicted classes (N,) -> probabilities (N, num_classes), all mass on the class."""
    return np.eye(num_classes)[np.asarray(classes, dtype=np.int64)]


def classification_baselines(
    predictions: Mapping[str, np.ndarray],
    labels: Sequence[int] | np.ndarray,
    groups: Sequence[int] | np.ndarray | None = None,
    group_names: Sequence[str] = (),
    split: str = "test",
) -> dict[str, float]:
    """Scores of each baseline as the classify task logs its own: ``<split>/acc/<name>``,
    ``<split>/error/<name>`` and, given groups, ``<split>/acc_by_group/<group>/<name>``.

    ``predictions`` maps a name to class probabilities (N, K); the score is the expected
    accuracy, mean P(label), so a coin (0.5, 0.5) counts half right, as chance does.
    """
    labels = np.asarray(labels, dtype=np.int64)
    scores = {}
    for name, probabilities in predictions.items():
        right = probabilities[np.arange(len(labels)), labels]  # (N,) P(label)
        scores[baseline_key(f"{split}/acc", name)] = float(right.mean())
        scores[baseline_key(f"{split}/error", name)] = float(1.0 - right.mean())
        if groups is None:
            continue
        for index, group in enumerate(group_names):
            rows = np.asarray(groups) == index
            if rows.any():
                key = f"{split}/acc_by_group/{group}"
                scores[baseline_key(key, name)] = float(right[rows].mean())
    return scores


def copy_source_baselines(
    pairs: Sequence[tuple[str, str]], tgt_vocab: Vocab, split: str = "test"
) -> dict[str, float]:
    """Scores of answering every source with the source itself, encoded in the target
    vocabulary, as the seq2seq task scores its decoded output: ``<split>/token_acc``,
    ``<split>/exact_match`` and ``<split>/bleu``, each ``/copy_source``.

    The output is cut or padded to the target's width as the task's are, so the same
    torchmetrics functions give the task's numbers for a model that copies.
    """
    pad, eos, num_classes = tgt_vocab.pad_id, tgt_vocab.eos_id, len(tgt_vocab)
    target = pad_batch([tgt_vocab.encode(t, add_eos=True) for _, t in pairs], pad)  # (N, T)
    copied = pad_batch([tgt_vocab.encode(s, add_eos=True) for s, _ in pairs], pad)  # (N, S')
    width = target.size(1)
    copied = F.pad(copied, (0, max(0, width - copied.size(1))), value=pad)[:, :width]  # (N, T)

    def words(ids: torch.Tensor) -> list[str]:  # rows up to EOS, ids as words (as the task)
        rows = [row[: row.index(eos)] if eos in row else row for row in ids.tolist()]
        return [" ".join(str(t) for t in row if t != pad) for row in rows]

    scores = {
        "token_acc": multiclass_accuracy(
            copied, target, num_classes, average="micro", ignore_index=pad
        ),
        "exact_match": multiclass_exact_match(copied, target, num_classes, ignore_index=pad),
        "bleu": bleu_score(words(copied), [[w] for w in words(target)], n_gram=4),
    }
    return {baseline_key(f"{split}/{k}", "copy_source"): float(v) for k, v in scores.items()}
