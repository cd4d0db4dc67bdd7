import json

import pytest
import torch

from fmlab import checkpoint
from fmlab.checkpoint import CheckpointError
from fmlab.tokenizer import Tokenizer


def test_round_trip_is_exact(tiny_model, tiny_tok, tmp_path):
    checkpoint.save(tiny_model, tiny_tok, tmp_path / "m", {"note": "hi"})
    model, tok, meta = checkpoint.load(tmp_path / "m.safetensors")
    assert tok == tiny_tok and tok.counts == tiny_tok.counts and meta == {"note": "hi"}
    for (k, a), (_, b) in zip(tiny_model.state_dict().items(), model.state_dict().items()):
        assert torch.equal(a, b), k
    assert model.head.weight.data_ptr() == model.tok_emb.weight.data_ptr()


def test_tampered_weights_are_refused(tiny_model, tiny_tok, tmp_path):
    checkpoint.save(tiny_model, tiny_tok, tmp_path / "m")
    f = tmp_path / "m.safetensors"
    data = bytearray(f.read_bytes())
    data[-1] ^= 1
    f.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="sha256.*run X"):
        checkpoint.load(f, rebuild_hint="run X")


def test_config_and_tokenizer_are_covered_by_the_hash(tiny_model, tiny_tok, tmp_path):
    checkpoint.save(tiny_model, tiny_tok, tmp_path / "m")
    f = tmp_path / "m.safetensors"
    raw = f.read_bytes()
    n = int.from_bytes(raw[:8], "little")
    header = raw[8:8 + n].decode()
    for old, new in [('\\"n_head\\": 2', '\\"n_head\\": 1'), ('\\"merges\\": [[', '\\"merges\\": [[1')]:
        assert old in header, old
        edited = header.replace(old, new, 1).encode()
        f.write_bytes(len(edited).to_bytes(8, "little") + edited + raw[8 + n:])
        with pytest.raises(CheckpointError, match="sha256"):
            checkpoint.load(f)
    # editing the readable card instead (e.g. its config) changes nothing that is loaded: the hash holds
    f.write_bytes(raw)
    card = json.loads((tmp_path / "m.json").read_text())
    card["config"]["n_head"] = 1
    (tmp_path / "m.json").write_text(json.dumps(card))
    assert checkpoint.load(f)[0].cfg.n_head == 2


def test_wrong_tokenizer_card_or_file_is_refused(tiny_model, tiny_tok, tmp_path):
    checkpoint.save(tiny_model, tiny_tok, tmp_path / "m")
    other = Tokenizer(tiny_tok.merges[:-1])
    with pytest.raises(CheckpointError, match="different tokenizer"):
        checkpoint.load(tmp_path / "m", tokenizer=other)
    (tmp_path / "m.json").write_text("{broken")
    with pytest.raises(CheckpointError, match="card.*rebuild with Y"):
        checkpoint.load(tmp_path / "m", rebuild_hint="rebuild with Y")
    with pytest.raises(CheckpointError, match="missing"):
        checkpoint.load(tmp_path / "nothing", rebuild_hint="rebuild with Y")
    with pytest.raises(CheckpointError, match="token embeddings"):
        checkpoint.save(tiny_model, Tokenizer([]), tmp_path / "x")


def test_shape_mismatch_is_refused(tiny_model, tiny_tok, tmp_path):
    state = {k: v for k, v in tiny_model.state_dict().items() if k != "head.weight"}
    state["ln_f.weight"] = torch.ones(3)
    info = {"config": {**tiny_model.cfg.__dict__}, "tokenizer": json.loads(tiny_tok.to_json()), "meta": {}}
    checkpoint.save_tensors(state, tmp_path / "bad", info)
    with pytest.raises(CheckpointError, match="shapes"):
        checkpoint.load(tmp_path / "bad")
