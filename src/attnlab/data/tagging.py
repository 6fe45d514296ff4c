"""One tag per token (notes §2.1: one-to-one sequence labelling, POS tagging with a plain RNN):
a seeded generator whose ambiguous words need a neighbour on their left or on their right, and a
reader of CoNLL-U files (Universal Dependencies treebanks)."""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from collections import Counter
from functools import partial
from pathlib import Path
from typing import Literal

import conllu
import lightning.pytorch as L
from torch import Tensor
from torch.utils.data import Dataset
from torchdata.stateful_dataloader import StatefulDataLoader

from attnlab.core.contracts import IGNORE_TAG, TaggingDims
from attnlab.core.errors import ConfigError
from attnlab.core.registry import Settings, register
from attnlab.data.loaders import SplitLoaders, check_loading, check_split_fractions, stateful_loader
from attnlab.data.sampling import split_rng
from attnlab.data.seq2seq import SPLITS
from attnlab.data.text import pad_batch

Sentence = tuple[list[int], list[int], list[int]]  # token ids, tag ids, group of each token


class SentenceDataset(Dataset):
    def __init__(self, sentences: list[Sentence]):
        self.sentences = sentences

    def __len__(self) -> int:
        return len(self.sentences)

    def __getitem__(self, index: int) -> Sentence:
        return self.sentences[index]


def collate_sentences(items: list[Sentence], pad_id: int) -> tuple[Tensor, Tensor, Tensor]:
    """-> tokens (B, S) padded with pad_id, tags (B, S) padded with IGNORE_TAG, groups (B, S)."""
    tokens = pad_batch([ids for ids, _, _ in items], pad_id)  # (B, S)
    tags = pad_batch([tags for _, tags, _ in items], IGNORE_TAG)  # (B, S)
    groups = pad_batch([groups for _, _, groups in items], IGNORE_TAG)  # (B, S)
    return tokens, tags, groups


class TaggingDataModule(SplitLoaders, L.LightningDataModule, ABC):
    """Tagged sentences; subclasses implement ``make_splits`` and set ``itos``, ``tag_names``
    and ``group_names`` (the names of the token groups scored apart, if any).

    After ``setup``, ``dims`` holds vocab_size, num_tags, pad_id, max_src_len, tag_names and
    group_names; ``baselines`` scores the most frequent tag of each word.
    """

    pad_id = 0

    def __init__(self, batch_size: int, num_workers: int):
        super().__init__()
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.sentences: dict[str, list[Sentence]] = {}
        self.itos: list[str] = []
        self.tag_names: list[str] = []
        self.group_names: tuple[str, ...] = ()

    @abstractmethod
    def make_splits(self) -> dict[str, list[Sentence]]:
        """The sentences of each split in SPLITS."""

    def setup(self, stage: str | None = None) -> None:
        if self.sentences:
            return
        self.sentences = self.make_splits()
        self.datasets = {split: SentenceDataset(s) for split, s in self.sentences.items()}

    @property
    def dims(self) -> TaggingDims:
        every = (ids for sentences in self.sentences.values() for ids, _, _ in sentences)
        return TaggingDims(
            vocab_size=len(self.itos),
            num_tags=len(self.tag_names),
            pad_id=self.pad_id,
            max_src_len=max(map(len, every)),
            tag_names=tuple(self.tag_names),
            group_names=tuple(self.group_names),
        )

    def baselines(self) -> dict[str, float]:
        """Scored on test as the tag task scores a model (token accuracy, sentence accuracy,
        token accuracy per group): ``most_frequent_tag``, each word's most frequent training
        tag (unseen words: the most frequent tag), the bag-of-tokens analogue of tagging; and
        ``majority_tag``, the most frequent training tag for every token, its chance."""
        counts: dict[int, Counter] = {}
        for ids, tags, _ in self.sentences["train"]:
            for token, tag in zip(ids, tags, strict=True):
                counts.setdefault(token, Counter())[tag] += 1
        overall = sum(counts.values(), Counter()).most_common(1)[0][0]
        best = {token: c.most_common(1)[0][0] for token, c in counts.items()}
        rules = {
            "most_frequent_tag": lambda token: best.get(token, overall),
            "majority_tag": lambda token: overall,
        }
        test = self.sentences["test"]
        groups = [group for _, _, token_groups in test for group in token_groups]
        scores = {}
        for name, rule in rules.items():
            right = [  # (sentences, tokens): is the rule's tag the token's tag?
                [rule(token) == tag for token, tag in zip(ids, tags, strict=True)]
                for ids, tags, _ in test
            ]
            hits = [hit for sentence in right for hit in sentence]
            scores[f"test/token_acc/{name}"] = sum(hits) / len(hits)
            scores[f"test/sentence_acc/{name}"] = sum(map(all, right)) / len(test)
            for index, group in enumerate(self.group_names):
                in_group = [hit for hit, g in zip(hits, groups, strict=True) if g == index]
                if in_group:
                    key = f"test/token_acc_by_group/{group}/{name}"
                    scores[key] = sum(in_group) / len(in_group)
        return scores

    def _loader(self, split: str, shuffle: bool) -> StatefulDataLoader:
        return stateful_loader(
            self.datasets[split],
            batch_size=self.batch_size,
            shuffle=shuffle,
            num_workers=self.num_workers,
            collate_fn=partial(collate_sentences, pad_id=self.pad_id),
        )


def check_tagging(c: Settings) -> None:
    check_loading(c)
    c.positive("words_per_class", "ambiguous_words", "min_chunks")
    c.non_negative("max_gap")
    if c.max_chunks < c.min_chunks:
        c.fail("max_chunks", f">= data.min_chunks={c.min_chunks}")


# Word classes of the generator and the prefix of their words (the0, the1, ...).
CLASSES = {
    "det": "the", "pron": "we", "noun": "dog", "verb": "ran", "gap": "very", "conj": "and",
    "left": "walk", "right": "round",
}  # fmt: skip
TAGS = ("DET", "PRON", "NOUN", "VERB", "ADV", "CONJ", "ADJ", "AUX")
GROUPS = ("plain", "left", "right")


@register("data", "tagging", check=check_tagging)
class AmbiguousTaggingDataModule(TaggingDataModule):
    """Sentences of chunks whose ambiguous words are tagged by a neighbour (notes §2.1).

    Words come in classes with one tag each (the0.. DET, we0.. PRON, dog0.. NOUN, ran0.. VERB,
    very0.. ADV, and0.. CONJ) plus two ambiguous classes. A sentence is ``min_chunks`` to
    ``max_chunks`` chunks, an and-word between two chunks half of the time, each chunk one of
    (0 to ``max_gap`` very-words inside, written ...):

    - plain: ``the ... dog`` or ``we ... ran``;
    - left context: ``the ... walk`` (walk: NOUN) or ``we ... walk`` (walk: VERB), the tag
      set by the word on its left;
    - right context: ``round ... dog`` (round: ADJ) or ``round ... ran`` (round: AUX), the tag
      set by the word on its right, which nothing on the left announces.

    A left-to-right tagger sees what decides a left-context word before it, never what decides
    a right-context one: on those it is at chance (50%), a bidirectional one need not be.
    Token groups: plain, left, right (the ambiguous words' context).
    """

    def __init__(
        self,
        words_per_class: int = 6,
        ambiguous_words: int = 4,
        min_chunks: int = 2,
        max_chunks: int = 6,
        max_gap: int = 2,
        n_train: int = 5000,
        n_val: int = 500,
        n_test: int = 1000,
        seed: int = 0,
        batch_size: int = 64,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, num_workers)
        self.itos = ["<pad>"]
        self.words: dict[str, list[int]] = {}
        for name, prefix in CLASSES.items():
            size = ambiguous_words if name in ("left", "right") else words_per_class
            self.words[name] = list(range(len(self.itos), len(self.itos) + size))
            self.itos += [f"{prefix}{i}" for i in range(size)]
        self.tag_names = list(TAGS)
        self.group_names = GROUPS
        self.chunks = (min_chunks, max_chunks)
        self.max_gap = max_gap
        self.sizes = {"train": n_train, "val": n_val, "test": n_test}
        self.seed = seed

    def make_splits(self) -> dict[str, list[Sentence]]:
        splits = {}
        for split, size in self.sizes.items():
            rng = split_rng(self.seed, split)
            splits[split] = [self.make_sentence(rng) for _ in range(size)]
        return splits

    def make_sentence(self, rng: random.Random) -> Sentence:
        words: list[tuple[str, str, str]] = []  # (class, tag, group)
        for number in range(rng.randint(*self.chunks)):
            if number and rng.random() < 0.5:
                words.append(("conj", "CONJ", "plain"))
            words += self.make_chunk(rng)
        ids = [rng.choice(self.words[kind]) for kind, _, _ in words]
        tags = [TAGS.index(tag) for _, tag, _ in words]
        return ids, tags, [GROUPS.index(group) for _, _, group in words]

    def make_chunk(self, rng: random.Random) -> list[tuple[str, str, str]]:
        gap = [("gap", "ADV", "plain")] * rng.randint(0, self.max_gap)
        nominal = rng.random() < 0.5  # a noun-like or a verb-like chunk
        kind = rng.choice(GROUPS)
        if kind == "right":
            cue = ("noun", "NOUN", "plain") if nominal else ("verb", "VERB", "plain")
            return [("right", "ADJ" if nominal else "AUX", "right"), *gap, cue]
        cue = ("det", "DET", "plain") if nominal else ("pron", "PRON", "plain")
        if kind == "left":
            return [cue, *gap, ("left", "NOUN" if nominal else "VERB", "left")]
        return [cue, *gap, ("noun", "NOUN", "plain") if nominal else ("verb", "VERB", "plain")]


def check_conllu(c: Settings) -> None:
    check_loading(c)
    check_split_fractions(c)
    c.positive("min_freq")


TREEBANK_FILES = {"train": "*train*.conllu", "val": "*dev*.conllu", "test": "*test*.conllu"}
UNK = "<unk>"


@register("data", "conllu", check=check_conllu)
class ConlluDataModule(TaggingDataModule):
    """Part-of-speech tags read from CoNLL-U files, e.g. a Universal Dependencies treebank.

    ``path``: a folder holding the treebank's ``*train*.conllu``, ``*dev*.conllu`` and
    ``*test*.conllu`` (UD's ``xx_name-ud-train.conllu`` ...), or one .conllu file dealt to
    train/val/test by a seeded shuffle. ``tag``: the UPOS or XPOS column. Multiword-token
    lines (1-2) and empty nodes (8.1) are skipped: one tag per syntactic word. Words seen fewer
    than ``min_freq`` times in training become <unk>; token groups: known, unknown words.
    """

    def __init__(
        self,
        path: str,
        tag: Literal["upos", "xpos"] = "upos",
        lowercase: bool = False,
        min_freq: int = 1,
        val_fraction: float = 0.1,
        test_fraction: float = 0.1,
        seed: int = 0,
        batch_size: int = 32,
        num_workers: int = 0,
    ):
        super().__init__(batch_size, num_workers)
        self.path, self.tag, self.lowercase, self.min_freq = path, tag, lowercase, min_freq
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.seed = seed
        self.group_names = ("known", "unknown")

    def make_splits(self) -> dict[str, list[Sentence]]:
        texts = self.read_splits()
        counts = Counter(word for words, _ in texts["train"] for word in words)
        known = sorted(word for word, count in counts.items() if count >= self.min_freq)
        self.itos = ["<pad>", UNK, *known]
        self.tag_names = sorted({t for split in texts.values() for _, tags in split for t in tags})
        stoi = {word: index for index, word in enumerate(self.itos)}
        tag_ids = {tag: index for index, tag in enumerate(self.tag_names)}
        splits = {}
        for split, sentences in texts.items():
            splits[split] = []
            for words, tags in sentences:
                ids = [stoi.get(word, 1) for word in words]
                groups = [int(i == 1) for i in ids]  # 1: unknown word
                splits[split].append((ids, [tag_ids[t] for t in tags], groups))
        return splits

    def read_splits(self) -> dict[str, list[tuple[list[str], list[str]]]]:
        """(words, tags) of each sentence of each split."""
        root = Path(self.path)
        if root.is_dir():
            splits = {}
            for split, pattern in TREEBANK_FILES.items():
                found = sorted(root.glob(pattern))
                if len(found) != 1:
                    allowed = "a folder with one *train*.conllu, *dev*.conllu and *test*.conllu"
                    raise ConfigError("data.path", self.path, f"{allowed}; {pattern}: {found}")
                splits[split] = self.read_file(found[0])
            return splits
        if not root.is_file():
            allowed = "a .conllu file or a treebank folder (*train*, *dev*, *test*.conllu)"
            raise ConfigError("data.path", self.path, allowed)
        sentences = self.read_file(root)
        random.Random(self.seed).shuffle(sentences)
        n_val = int(len(sentences) * self.val_fraction)
        n_test = int(len(sentences) * self.test_fraction)
        sizes = {"train": len(sentences) - n_val - n_test, "val": n_val, "test": n_test}
        if min(sizes.values()) == 0:
            allowed = f"enough sentences for every split; {len(sentences)} give {sizes}"
            raise ConfigError("data.path", self.path, allowed)
        splits, start = {}, 0
        for split in SPLITS:
            splits[split] = sentences[start : start + sizes[split]]
            start += sizes[split]
        return splits

    def read_file(self, file: Path) -> list[tuple[list[str], list[str]]]:
        sentences = []
        try:
            with file.open(encoding="utf-8") as handle:
                for tokens in conllu.parse_incr(handle):
                    words = [t for t in tokens if isinstance(t["id"], int)]  # no 1-2, no 8.1
                    if words:
                        forms = [w["form"].lower() if self.lowercase else w["form"] for w in words]
                        sentences.append((forms, [w[self.tag] or "_" for w in words]))
        except (conllu.exceptions.ParseException, UnicodeDecodeError) as error:
            raise ConfigError("data.path", str(file), f"CoNLL-U in UTF-8 ({error})") from None
        if not sentences:
            raise ConfigError("data.path", str(file), "a CoNLL-U file with at least one sentence")
        return sentences
