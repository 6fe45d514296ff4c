"""Pairwise self-attention (notes §7.3-7.4), the pairs-decide sentiment data, the bag-of-tokens
baseline and the pair attention plot."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from attnlab.core.contracts import AttendsPairs, HasTokenText
from attnlab.data.baselines import bag_of_tokens_accuracy, token_counts
from attnlab.data.probes import OrderCountDataModule
from attnlab.data.sentiment import (
    INTENSIFIERS,
    NEGATIVE_WORDS,
    NEGATORS,
    POSITIVE_WORDS,
    PairSentimentDataModule,
)
from attnlab.models.pairwise import PairwiseSelfAttention
from attnlab.training.callbacks import AttentionMaps

SMALL = dict(emb_dim=8, width=16, dropout=0.0)


def model(**kwargs) -> PairwiseSelfAttention:
    torch.manual_seed(0)
    return PairwiseSelfAttention(vocab_size=12, num_classes=3, **{**SMALL, **kwargs}).eval()


def tokens() -> torch.Tensor:
    x = torch.randint(1, 12, (4, 7))
    x[1, 5:] = 0  # padding
    return x


@pytest.mark.parametrize("shared", [False, True])
def test_attention_rows_are_distributions_over_real_positions(shared: bool):
    alpha = model(shared=shared).pair_attention(tokens())  # (B, T, T)
    assert alpha.shape == (4, 7, 7)
    torch.testing.assert_close(alpha.sum(-1), torch.ones(4, 7))
    assert alpha[1, :, 5:].abs().max() == 0  # no pair with a padded position
    # sigmoid then softmax: scores in (0, 1), so no weight exceeds e times another's
    real = alpha[0]
    assert (real.amax(-1) / real.amin(-1)).max() < torch.e


def test_shared_uses_one_network_for_features_and_scores():
    separate, shared = model(), model(shared=True)
    assert hasattr(separate, "features") and hasattr(separate, "scores")
    assert not hasattr(shared, "features") and shared.pairs.out.out_features == 16 + 1


@pytest.mark.parametrize("pooling", ["max", "mean"])
def test_padding_changes_nothing(pooling: str):
    net, x = model(pooling=pooling), tokens()
    padded = torch.cat([x, torch.zeros(4, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(net(padded), net(x), atol=1e-5, rtol=1e-5)


def test_without_positions_a_sentence_is_a_bag_of_pairs():
    """positions=none: permuting the words leaves the logits unchanged; relative offsets don't."""
    x, order = torch.randint(1, 12, (2, 6)), torch.randperm(6)
    blind, relative = model(positions="none"), model()
    torch.testing.assert_close(blind(x[:, order]), blind(x), atol=1e-5, rtol=1e-5)
    assert not torch.allclose(relative(x[:, order]), relative(x), atol=1e-4)
    assert isinstance(relative, AttendsPairs)


def polarity(word: str) -> int:
    return 0 if word in NEGATIVE_WORDS else 1


def test_sentiment_label_is_the_modified_word_and_the_distance_its_bucket():
    data = PairSentimentDataModule(n_train=400, n_val=20, n_test=20)
    data.setup()
    assert data.dims.group_names == ("1-2", "3-5", "6-10", "11-16")
    assert isinstance(data, HasTokenText)
    for ids, label, group in data.examples["train"]:
        words = [data.itos[i] for i in ids]
        (m,) = [i for i, w in enumerate(words) if w in NEGATORS + INTENSIFIERS]
        sentiment = [i for i, w in enumerate(words) if w in NEGATIVE_WORDS + POSITIVE_WORDS]
        assert len(sentiment) == 2 and sentiment[0] < m < sentiment[1]
        assert {polarity(words[i]) for i in sentiment} == {0, 1}
        modified = polarity(words[sentiment[1]])
        assert label == (1 - modified if words[m] in NEGATORS else modified)
        low, high = data.ranges[group]
        assert low <= sentiment[1] - m <= high


def test_sentiment_is_at_chance_for_a_bag_of_tokens():
    data = PairSentimentDataModule(n_train=4000, n_val=20, n_test=4000, seed=1)
    data.setup()
    baselines = data.baselines()
    assert baselines["test/acc/chance"] == 0.5
    assert baselines["test/acc/bag_of_tokens"] == pytest.approx(0.5, abs=0.03)
    assert baselines["test/acc/last_word"] == pytest.approx(0.5, abs=0.03)


def test_the_bag_of_tokens_scorer_solves_count_and_not_order():
    """Its own check: counts decide "is A in the majority?", not "does A come first?"."""
    scores = {}
    for question in ("count", "order"):
        data = OrderCountDataModule(question=question, n_train=3000, n_val=20, n_test=1000)
        data.setup()
        train, test = ([(ids, y) for ids, y, _ in data.examples[s]] for s in ("train", "test"))
        scores[question] = bag_of_tokens_accuracy(train, test, len(data.itos))
    assert scores["count"] > 0.9 and scores["order"] == pytest.approx(0.5, abs=0.05)
    assert token_counts([[1, 1, 2], [0]], 3).toarray().tolist() == [[0, 2, 1], [1, 0, 0]]


def test_pair_attention_plot_is_written(tmp_path):
    data = PairSentimentDataModule(n_train=20, n_val=4, n_test=4)
    data.setup()
    net = PairwiseSelfAttention(data.dims.vocab_size, 2, **SMALL)
    trainer = SimpleNamespace(datamodule=data, loggers=[])
    AttentionMaps(n_examples=2, output_dir=str(tmp_path)).on_test_end(
        trainer, SimpleNamespace(model=net, device=torch.device("cpu"))
    )
    assert (tmp_path / "plots" / "pair_attention.png").stat().st_size > 0
    assert net.training  # the callback puts the model back in the mode it found
