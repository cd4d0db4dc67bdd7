"""The shipped data and base model: present, hash-checked, and reproducing their manifest."""
import json
import shutil
import sys

import pytest
import torch

from fmlab import corpus, domain, foundation, world
from fmlab.checkpoint import CheckpointError
from fmlab.evaluate import fact_recall, perplexity


def test_data_files_match_manifest_and_generators():
    manifest = json.loads((foundation.data_dir() / "manifest.json").read_text())["files"]
    for name in ["world.json", "pretrain.txt", "station.txt", "python.txt", "tasks.json", "tokenizer.json",
                 "base_model.safetensors", "base_model.json"]:
        assert name in manifest, name
    assert foundation.load_world() == world.make_world(0)
    if sys.version_info[:2] == domain.PYTHON_BUILT_WITH:    # the Python reference in the corpus is version-specific
        assert foundation.load_corpus("pretrain") == corpus.pretraining_corpus(world.make_world(0))
    with pytest.raises(ValueError, match="choose one of"):
        foundation.load_task("poetry")
    with pytest.raises(ValueError, match="choose one of"):
        foundation.load_corpus("poetry")


def test_base_model_reproduces_its_manifest():
    model, tok = foundation.load_base_model()
    meta = foundation.base_model_card()
    ppl = perplexity(model, foundation.corpus_stream("pretrain", "val"))
    assert ppl == pytest.approx(meta["val_perplexity"], rel=1e-3)
    recall = fact_recall(model, tok, world.fact_cloze(foundation.load_world()))
    assert recall == pytest.approx(meta["fact_recall"], abs=0.011)


def test_tampered_data_names_the_rebuild_command(tmp_path, monkeypatch):
    shutil.copytree(foundation.data_dir(), tmp_path / "data")
    monkeypatch.setenv("FMLAB_DATA", str(tmp_path / "data"))
    foundation._verified_text.cache_clear()
    try:
        with open(tmp_path / "data" / "tokenizer.json", "a") as f:
            f.write(" ")
        with pytest.raises(CheckpointError, match="python -m fmlab.foundation data"):
            foundation.load_tokenizer()
        w = tmp_path / "data" / "base_model.safetensors"
        w.write_bytes(w.read_bytes()[:-1] + b"\0")
        with pytest.raises(CheckpointError, match="python -m fmlab.foundation model"):
            foundation.load_base_model()
    finally:
        foundation._verified_text.cache_clear()


def test_base_model_card_records_its_data():
    card = foundation.base_model_card()
    assert card["data"] == foundation.lineage("pretrain.txt", "tokenizer.json")
    with pytest.raises(ValueError, match="manifest"):
        foundation.lineage("nope.txt")


def test_corpus_stream_returns_a_copy():
    s = foundation.corpus_stream("station", "val")
    s.zero_()
    assert foundation.corpus_stream("station", "val").sum() > 0
