"""Shortcut baselines that data modules log beside a model's score (chance, majority, bag of
tokens: a task one of them solves cannot compare architectures); their keys follow
attnlab.core.metric_keys."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from scipy.sparse import csr_matrix
from torchmetrics.functional.classification import multiclass_accuracy, multiclass_exact_match
from torchmetrics.functional.text import bleu_score

from attnlab.core.metric_keys import baseline_key
from attnlab.data.text import Vocab, pad_batch

Labelled = Sequence[tuple[Sequence[int], int]]  # (token ids, label) per example


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
    from sklearn.linear_model import LogisticRegression  # ~0.4 s to import: when used

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
