import pytest
import torch

from fmlab.gpt import GPTConfig, MiniGPT


def test_logits_shape_and_tied_embeddings(tiny_model):
    x = torch.randint(0, tiny_model.cfg.vocab_size, (3, 10))
    assert tiny_model(x).shape == (3, 10, tiny_model.cfg.vocab_size)
    assert tiny_model.head.weight.data_ptr() == tiny_model.tok_emb.weight.data_ptr()
    counted = sum(p.numel() for n, p in tiny_model.named_parameters())
    assert tiny_model.num_params() == counted


def test_causal_masking(tiny_model):
    """Changing a future token never changes an earlier position's logits."""
    x = torch.randint(0, tiny_model.cfg.vocab_size, (2, 12))
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % tiny_model.cfg.vocab_size
    torch.testing.assert_close(tiny_model(x)[:, :7], tiny_model(y)[:, :7])
    assert not torch.allclose(tiny_model(x)[:, 7:], tiny_model(y)[:, 7:])


def test_residual_stream_matches_forward(tiny_model):
    x = torch.randint(0, tiny_model.cfg.vocab_size, (2, 9))
    states = tiny_model.residual_stream(x)
    assert len(states) == tiny_model.cfg.n_layer + 1
    torch.testing.assert_close(tiny_model.head(tiny_model.ln_f(states[-1])), tiny_model(x))


def test_hook_edits_residual_stream(tiny_model):
    x = torch.randint(0, tiny_model.cfg.vocab_size, (1, 5))
    before = tiny_model(x)
    handle = tiny_model.blocks[0].register_forward_hook(lambda m, i, out: out + 1.0)
    after = tiny_model(x)
    handle.remove()
    assert not torch.allclose(before, after)
    torch.testing.assert_close(tiny_model(x), before)


def test_generate_greedy_is_deterministic_and_stops(tiny_model):
    x = torch.tensor([[3, 4]])
    a = tiny_model.generate(x, 5)
    assert a.shape == (1, 7) and torch.equal(a, tiny_model.generate(x, 5))
    first = int(a[0, 2])
    stopped = tiny_model.generate(x, 5, stop_token=first)
    assert stopped.shape == (1, 3)
    g = torch.Generator().manual_seed(0)
    s1 = tiny_model.generate(x, 8, temperature=1.0, top_k=3, generator=g)
    s2 = tiny_model.generate(x, 8, temperature=1.0, top_k=3, generator=torch.Generator().manual_seed(0))
    assert torch.equal(s1, s2)


def test_bad_inputs(tiny_model):
    with pytest.raises(ValueError, match="longer than the model's context"):
        tiny_model(torch.zeros(1, tiny_model.cfg.block_size + 1, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        tiny_model(torch.full((1, 3), 10_000))
    with pytest.raises(ValueError, match="empty prompt"):
        tiny_model.generate(torch.zeros(1, 0, dtype=torch.long), 3)
    with pytest.raises(ValueError, match="divisible"):
        GPTConfig(vocab_size=10, n_embd=10, n_head=3)


def test_cached_generation_equals_the_plain_loop(tiny_model):
    """The key/value-cache path of `generate` gives the same tokens as re-running the whole prefix."""
    torch.manual_seed(0)
    prompt = torch.randint(0, tiny_model.cfg.vocab_size, (3, 5))
    cached = tiny_model.generate(prompt, 12)
    tiny_model.blocks[0].register_forward_hook(lambda m, i, o: None)    # a hook forces the plain path
    plain = tiny_model.generate(prompt, 12)
    assert torch.equal(cached, plain)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    a = tiny_model.generate(prompt, 8, temperature=1.0, generator=g1)
    b = tiny_model.generate(prompt, 8, temperature=1.0, generator=g2)
    assert torch.equal(a, b)


def test_bad_inputs_get_clear_errors(tiny_model):
    with pytest.raises(TypeError, match="integer tensor"):
        tiny_model(torch.rand(1, 4))
    with pytest.raises(ValueError, match="top_k"):
        tiny_model.generate(torch.ones(1, 2, dtype=torch.long), 2, temperature=1.0, top_k=0)
    for bad in ({"n_head": 0}, {"vocab_size": 0}, {"n_embd": 30, "n_head": 4}, {"dropout": 1.0}):
        with pytest.raises(ValueError):
            GPTConfig(**{"vocab_size": 10, **bad})


def _host_reads(fn):
    """How many times `fn` reads a tensor's value on the host (what makes a CPU wait for a GPU)."""
    from torch.utils._python_dispatch import TorchDispatchMode

    class Count(TorchDispatchMode):
        reads = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            if func.overloadpacket.__name__ in ("_local_scalar_dense", "is_nonzero", "equal"):
                Count.reads += 1
            return func(*args, **(kwargs or {}))

    with Count():
        fn()
    return Count.reads


def test_ids_are_checked_once_where_they_are_made(tiny_model):
    from fmlab.gpt import ids_to
    V = tiny_model.cfg.vocab_size
    host = torch.randint(0, V, (2, 8))
    on_device = ids_to(host, V, "cpu")
    assert _host_reads(lambda: tiny_model(on_device)) == 0          # checked already: no read per forward
    assert _host_reads(lambda: tiny_model(on_device[:, :-1])) == 0  # a slice of checked ids holds checked ids
    fresh = host.clone()
    assert _host_reads(lambda: tiny_model(fresh)) > 0                # never checked: the model checks it
    out = tiny_model.generate(on_device, 3, temperature=1.0, generator=torch.Generator().manual_seed(0))
    assert _host_reads(lambda: tiny_model(out)) == 0                 # generated ids index the vocabulary
    on_device[0, 0] = V + 5                                          # changed in place: the mark is gone
    with pytest.raises(ValueError, match="token ids must lie in"):
        tiny_model(on_device)
    with pytest.raises(ValueError, match="token ids must lie in"):
        tiny_model(on_device[:, :-1])                                # nor do its views keep it
    with pytest.raises(ValueError, match="stop_token"):
        tiny_model.generate(fresh[:1], 2, stop_token=V)
