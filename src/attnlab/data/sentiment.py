"""Sentiment that only word pairs decide (notes §7.3: "I like" tells the sentiment, "I" and
"you" do not): a modifier and the sentiment word after it, at a distance that varies."""

from __future__ import annotations

import random
from collections.abc import Sequence

import numpy as np

from attnlab.core.registry import Settings, register
from attnlab.data.baselines import one_hot
from attnlab.data.loaders import check_loading
from attnlab.data.probes import Example, SequenceClassificationDataModule
from attnlab.data.sampling import bucket_ranges, check_buckets

NEGATIVE_WORDS = ("bad", "awful", "poor", "dull", "hate", "boring")
POSITIVE_WORDS = ("good", "great", "fine", "nice", "like", "love")
NEGATORS = ("not", "never")
INTENSIFIERS = ("very", "really")
FILLERS = (
    "the", "a", "movie", "film", "plot", "it", "was", "is", "this", "and", "i", "story", "cast",
    "ending", "to", "of",
)  # fmt: skip


def check_sentiment(c: Settings) -> None:
    check_loading(c)
    check_buckets(c, "distance", 1)
    c.non_negative("max_fillers")


@register("data", "sentiment", check=check_sentiment)
class PairSentimentDataModule(SequenceClassificationDataModule):
    """Is the sentence positive (1) or negative (0)? Group: the modifier-word distance bucket.

    Every sentence holds one positive and one negative word, and one modifier: a negator
    (not, never) or an intensifier (very, really), d tokens before one of the two words, the
    other word before the modifier, fillers around:

        [fillers] other [fillers] modifier [d - 1 fillers] word [fillers]

    Scored as words are (+1 / -1, an intensified one x2, a negated one x-1), the modified word
    decides: "good ... not bad" and "bad ... very good" are positive, "bad ... not good" and
    "good ... very bad" negative. Every sentence has the same kinds of token whatever its
    label, and which word and which modifier appear is drawn apart from the label, so a bag of
    tokens is at chance; only the pair (modifier, the word after it) tells the label.
    """

    class_names = ("negative", "positive")

    def __init__(
        self,
        min_distance: int = 1,
        max_distance: int = 16,
        bucket_edges: Sequence[int] = (3, 6, 11),
        max_fillers: int = 3,
        n_train: int = 20000,
        n_val: int = 2000,
        n_test: int = 5000,
        seed: int = 0,
        batch_size: int = 128,
        num_workers: int = 0,
        bucketing: bool = False,
    ):
        itos = ["<pad>", *NEGATIVE_WORDS, *POSITIVE_WORDS, *NEGATORS, *INTENSIFIERS, *FILLERS]
        super().__init__(
            bucket_ranges(min_distance, max_distance, bucket_edges),
            itos,
            n_train, n_val, n_test, seed, batch_size, num_workers, bucketing,
        )  # fmt: skip
        ids = {token: index for index, token in enumerate(itos)}
        self.words = tuple([ids[w] for w in group] for group in (NEGATIVE_WORDS, POSITIVE_WORDS))
        self.negators = [ids[w] for w in NEGATORS]
        self.intensifiers = [ids[w] for w in INTENSIFIERS]
        self.fillers = [ids[w] for w in FILLERS]
        self.max_fillers = max_fillers

    def make_example(self, label: int, value: int, group: int, rng: random.Random) -> list[int]:
        negated = rng.random() < 0.5
        target = 1 - label if negated else label  # the modified word's own polarity
        modifier = rng.choice(self.negators if negated else self.intensifiers)

        def fillers(count: int) -> list[int]:
            return [rng.choice(self.fillers) for _ in range(count)]

        def some() -> list[int]:
            return fillers(rng.randint(0, self.max_fillers))

        other, word = rng.choice(self.words[1 - target]), rng.choice(self.words[target])
        return [*some(), other, *some(), modifier, *fillers(value - 1), word, *some()]

    def heuristics(self, examples: list[Example]) -> dict[str, np.ndarray]:
        """``last_word``: the polarity of the last sentiment word, its modifier ignored."""
        polarity = {word: number for number, words in enumerate(self.words) for word in words}
        last = [[polarity[t] for t in ids if t in polarity][-1] for ids, _, _ in examples]
        return {"last_word": one_hot(last, self.num_classes)}
