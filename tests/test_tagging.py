"""Sequence labelling (notes §2.1): the ambiguous-word generator, the CoNLL-U reader, the tag
task's metrics over real tokens only, and what each tagger can see."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as L
import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader

from attnlab.core.contracts import IGNORE_TAG, TaggingDims
from attnlab.core.errors import ConfigError
from attnlab.data.tagging import (
    AmbiguousTaggingDataModule,
    ConlluDataModule,
    collate_sentences,
)
from attnlab.models.conv import ConvTagger
from attnlab.models.rnn import RNNTagger
from attnlab.models.transformer import TransformerTagger
from attnlab.tasks.tag import TagTask
from attnlab.training.train import run

SMALL = dict(n_train=300, n_val=30, n_test=300)


def generated(**kwargs) -> AmbiguousTaggingDataModule:
    data = AmbiguousTaggingDataModule(**{**SMALL, **kwargs})
    data.setup()
    return data


def test_generator_is_seeded_and_publishes_dims():
    data = generated()
    assert data.sentences == generated().sentences != generated(seed=1).sentences
    dims = data.dims
    assert isinstance(dims, TaggingDims) and dims.group_names == ("plain", "left", "right")
    assert dims.tag_names == ("DET", "PRON", "NOUN", "VERB", "ADV", "CONJ", "ADJ", "AUX")
    tokens, tags, groups = next(iter(data.train_dataloader()))
    assert tokens.shape == tags.shape == groups.shape and tokens.shape[0] == 64
    assert ((tokens == 0) == (tags == IGNORE_TAG)).all()  # padding and only padding ignored


def test_ambiguous_words_take_the_tag_their_neighbour_decides():
    """Left-context words: NOUN after a the-word, VERB after a we-word (very-words between);
    right-context words: ADJ before a dog-word, AUX before a ran-word."""
    data = generated()
    tag = {name: i for i, name in enumerate(data.tag_names)}
    seen = set()
    for ids, tags, groups in data.sentences["train"]:
        words = [data.itos[i] for i in ids]
        for t, group in enumerate(groups):
            step = {1: -1, 2: 1}.get(group)
            if step is None:
                continue
            cue = t + step
            while words[cue].startswith("very"):
                cue += step
            expected = {"the": "NOUN", "we": "VERB", "dog": "ADJ", "ran": "AUX"}[words[cue][:-1]]
            assert tags[t] == tag[expected]
            seen.add((group, expected))
    assert seen == {(1, "NOUN"), (1, "VERB"), (2, "ADJ"), (2, "AUX")}


def test_most_frequent_tag_baseline_is_at_chance_on_ambiguous_words():
    baselines = generated(n_train=2000, n_test=2000).baselines()
    assert baselines["test/token_acc_by_group/plain/most_frequent_tag"] == 1.0
    for group in ("left", "right"):
        score = baselines[f"test/token_acc_by_group/{group}/most_frequent_tag"]
        assert score == pytest.approx(0.5, abs=0.05)
    assert 0.8 < baselines["test/token_acc/most_frequent_tag"] < 0.95
    assert baselines["test/token_acc/majority_tag"] < baselines["test/token_acc/most_frequent_tag"]


def test_collate_pads_tags_with_the_ignored_tag():
    sentences = [([5, 6, 7], [1, 2, 3], [0, 1, 2]), ([8], [4], [0])]
    tokens, tags, groups = collate_sentences(sentences, pad_id=0)
    assert tokens.tolist() == [[5, 6, 7], [8, 0, 0]]
    assert tags.tolist() == [[1, 2, 3], [4, IGNORE_TAG, IGNORE_TAG]]
    assert groups[1, 1:].tolist() == [IGNORE_TAG, IGNORE_TAG]


CONLLU = """# sent_id = 1
1-2\tdon't\t_\t_\t_\t_\t_\t_\t_\t_
1\tdo\tdo\tAUX\tVBP\t_\t3\taux\t_\t_
2\tn't\tnot\tPART\tRB\t_\t3\tadvmod\t_\t_
3\tGo\tgo\tVERB\tVB\t_\t0\troot\t_\t_
3.1\tgo\tgo\tVERB\tVB\t_\t_\t_\t_\t_

# sent_id = 2
1\tThe\tthe\tDET\tDT\t_\t2\tdet\t_\t_
2\tdog\tdog\tNOUN\tNN\t_\t3\tnsubj\t_\t_
3\truns\trun\tVERB\tVBZ\t_\t0\troot\t_\t_

"""


def treebank(folder: Path) -> Path:
    """A tiny UD-style treebank: the same two sentences in train, dev and test."""
    folder.mkdir()
    for split in ("train", "dev", "test"):
        (folder / f"xx_tiny-ud-{split}.conllu").write_text(CONLLU, encoding="utf-8")
    return folder


def test_conllu_treebank_folder_skips_multiword_tokens_and_empty_nodes(tmp_path: Path):
    data = ConlluDataModule(path=str(treebank(tmp_path / "tb")), lowercase=True)
    data.setup()
    assert [data.itos[i] for i in data.sentences["train"][0][0]] == ["do", "n't", "go"]
    assert data.tag_names == ["AUX", "DET", "NOUN", "PART", "VERB"]
    assert [data.tag_names[t] for t in data.sentences["test"][1][1]] == ["DET", "NOUN", "VERB"]
    assert data.dims.num_tags == 5 and data.dims.group_names == ("known", "unknown")
    assert data.baselines()["test/token_acc/most_frequent_tag"] == 1.0
    xpos = ConlluDataModule(path=str(tmp_path / "tb"), tag="xpos")
    xpos.setup()
    assert "VBZ" in xpos.tag_names and "The" in xpos.itos


def test_conllu_single_file_is_split_and_unknown_words_are_grouped(tmp_path: Path):
    file = tmp_path / "one.conllu"
    file.write_text(CONLLU * 5, encoding="utf-8")
    data = ConlluDataModule(path=str(file), val_fraction=0.2, test_fraction=0.2, min_freq=4)
    data.setup()
    assert [len(data.sentences[s]) for s in ("train", "val", "test")] == [6, 2, 2]
    unknown = [g for _, _, groups in data.sentences["train"] for g in groups]
    assert 1 in unknown and 0 in unknown  # words seen fewer than 4 times are <unk>


@pytest.mark.parametrize(
    "content, expected",
    [(None, "a .conllu file or a treebank folder"), ("", "at least one sentence")],
)
def test_conllu_mistakes_are_one_line(tmp_path: Path, content, expected: str):
    path = tmp_path / "bad.conllu"
    if content is not None:
        path.write_text(content)
    with pytest.raises(ConfigError, match=expected):
        ConlluDataModule(path=str(path)).setup()
    (tmp_path / "folder").mkdir()
    with pytest.raises(ConfigError, match=r"\*train\*\.conllu"):
        ConlluDataModule(path=str(tmp_path / "folder")).setup()


class Lookup(nn.Module):
    """Tags token t with tag tokens[t] - 1: a tagger whose predictions a test chooses."""

    def __init__(self, num_tags: int):
        super().__init__()
        self.num_tags = num_tags
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        tags = (tokens - 1).clamp(min=0)
        return self.scale * nn.functional.one_hot(tags, self.num_tags).float()  # (B, S, T)


def test_tag_metrics_count_real_tokens_only():
    # Sentence 1 all right; sentence 2 one of two right; padding predicted wrong on purpose.
    tokens = torch.tensor([[1, 2, 3], [2, 3, 0]])  # predicted tags 0, 1, 2 / 1, 2, (0)
    tags = torch.tensor([[0, 1, 2], [1, 0, IGNORE_TAG]])
    groups = torch.tensor([[0, 0, 1], [1, 0, IGNORE_TAG]])
    loader = DataLoader([(tokens[i], tags[i], groups[i]) for i in range(2)], batch_size=2)
    task = TagTask(
        Lookup(3), torch.optim.SGD, num_tags=3, tag_names=("A", "B", "C"), group_names=("x", "y")
    )
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    (metrics,) = trainer.validate(task, dataloaders=loader, verbose=False)
    assert metrics["val/token_acc"] == pytest.approx(4 / 5)
    assert metrics["val/sentence_acc"] == pytest.approx(1 / 2)
    assert metrics["val/f1_by_tag/A"] == pytest.approx(2 / 3)  # 1 of 2 A found
    assert metrics["val/f1_by_tag/B"] == pytest.approx(1.0)
    assert metrics["val/f1_by_tag/C"] == pytest.approx(2 / 3)  # C predicted twice, once right
    assert metrics["val/f1"] == pytest.approx((1 + 2 / 3 + 2 / 3) / 3)
    assert metrics["val/token_acc_by_group/x"] == pytest.approx(2 / 3)
    assert metrics["val/token_acc_by_group/y"] == pytest.approx(1.0)


def tagger(cls, **kwargs) -> nn.Module:
    torch.manual_seed(0)
    small = dict(width=16, dropout=0.0) | (
        dict(heads=2, ff_width=32, depth=1) if cls is TransformerTagger else {}
    )
    return cls(vocab_size=20, num_tags=5, **small, **kwargs).eval()


CASES = {
    "rnn": (RNNTagger, {}, "left"),
    "birnn": (RNNTagger, dict(bidirectional=True), "both"),
    "conv_causal": (ConvTagger, dict(causal=True), "left"),
    "conv": (ConvTagger, {}, "both"),
    "transformer": (TransformerTagger, {}, "both"),
}


@pytest.mark.parametrize("name", CASES)
def test_what_a_tagger_sees(name: str):
    """The tag at t changes with a later token only for taggers that look right; padding
    never changes the real positions' tags."""
    cls, kwargs, sees = CASES[name]
    model = tagger(cls, **kwargs)
    x = torch.randint(1, 20, (2, 6))
    changed = x.clone()
    changed[:, 3] = (x[:, 3] % 19) + 1  # another real token at t = 3
    out, out_changed = model(x), model(changed)
    assert torch.allclose(out[:, :3], out_changed[:, :3]) == (sees == "left")
    padded = torch.cat([x, torch.zeros(2, 3, dtype=torch.long)], dim=1)
    torch.testing.assert_close(model(padded)[:, :6], out, atol=1e-5, rtol=1e-5)


def test_a_tracked_treebank_run_logs_tag_metrics_and_the_baseline(
    make_cfg, tracking_uri, tmp_path: Path
):
    from mlflow import MlflowClient

    cfg = make_cfg(
        "experiment=tagging", "data=conllu", f"data.path={treebank(tmp_path / 'tb')}",
        "data.batch_size=2", "trainer.max_epochs=1", "model.width=8", "model.emb_dim=4",
        "callbacks.progress_bar=null", "callbacks.model_summary=null", "logger.log_model=false",
    )  # fmt: skip
    value = run(cfg)
    client = MlflowClient(tracking_uri)
    experiment = client.get_experiment_by_name("tagging")
    (record,) = client.search_runs([experiment.experiment_id], max_results=2)
    metrics = record.data.metrics
    assert metrics["test/token_acc"] == pytest.approx(value)
    assert metrics["baseline/test/token_acc/most_frequent_tag"] == 1.0
    for key in ("test/sentence_acc", "test/f1", "test/f1_by_tag/NOUN", "val/token_acc"):
        assert key in metrics, key
    assert "test/token_acc_by_group/known" in metrics
