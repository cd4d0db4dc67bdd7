import pytest
import torch

from fmlab import device


def test_cpu_choices(monkeypatch):
    monkeypatch.setenv("FMLAB_DEVICE", "cpu")
    d = device.pick_device()
    assert d.type == "cpu" and device.autocast_dtype(d) is None and not device.needs_grad_scaler(d)
    monkeypatch.setenv("FMLAB_DEVICE", "tpu")
    with pytest.raises(ValueError, match="use 'cpu'"):
        device.pick_device()


def test_bf16_only_on_native_gpus(monkeypatch):
    cuda = torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (7, 5))   # T4
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)        # emulated
    assert device.autocast_dtype(cuda) == torch.float16 and device.needs_grad_scaler(cuda)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (8, 0))   # A100
    assert device.autocast_dtype(cuda) == torch.bfloat16 and not device.needs_grad_scaler(cuda)


def test_seed_everything_repeats():
    device.seed_everything(3)
    a = torch.rand(3)
    device.seed_everything(3)
    assert torch.equal(a, torch.rand(3))


def test_thread_tuning_measures_once_per_process(monkeypatch):
    monkeypatch.delenv("FMLAB_THREADS", raising=False)
    monkeypatch.setattr(device, "_TUNED", {})
    before = torch.get_num_threads()
    calls = []
    real = device._time_steps
    monkeypatch.setattr(device, "_time_steps", lambda *a: calls.append(1) or real(*a))
    try:
        n = device.tune_cpu_threads(n_steps=1)
        assert n >= 1 and torch.get_num_threads() == n and calls
        calls.clear()
        assert device.tune_cpu_threads() == n and not calls
        monkeypatch.setenv("FMLAB_THREADS", "1")
        assert device.tune_cpu_threads() == 1 and torch.get_num_threads() == 1
    finally:
        torch.set_num_threads(before)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_cuda_autocast_runs():
    d = torch.device("cuda")
    with device.autocast(d):
        y = torch.ones(4, 4, device=d) @ torch.ones(4, 4, device=d)
    assert y.dtype == device.autocast_dtype(d)


def test_setup_gives_the_same_random_stream_and_training_curve_however_often_called(monkeypatch):
    """Seeding happens after thread tuning: two setup(0) calls -> identical streams and identical short runs."""
    import dataclasses

    from fmlab.batches import lm_batches
    from fmlab.gpt import GPTConfig, MiniGPT
    from fmlab.train import TrainConfig, train

    monkeypatch.delenv("FMLAB_THREADS", raising=False)
    before = torch.get_num_threads()
    curves = []
    try:
        for remeasure in (True, False):
            monkeypatch.setattr(device, "_TUNED", {} if remeasure else device._TUNED)
            device.setup(0)
            stream = torch.rand(5)
            model = MiniGPT(GPTConfig(vocab_size=20, block_size=8, n_layer=1, n_head=2, n_embd=16))
            h = train(model, lm_batches(torch.arange(300) % 20, 8), TrainConfig(steps=5, batch_size=4, warmup=1,
                                                                               progress=False))
            curves.append((stream.tolist(), h["loss"].iloc[1:].tolist()))
    finally:
        torch.set_num_threads(before)
    assert curves[0] == curves[1]


def test_environment_overrides_are_checked(monkeypatch):
    monkeypatch.setenv("FMLAB_THREADS", "abc")
    with pytest.raises(ValueError, match="FMLAB_THREADS"):
        device.tune_cpu_threads()
    monkeypatch.setenv("FMLAB_THREADS", "0")
    with pytest.raises(ValueError, match=">= 1"):
        device.tune_cpu_threads()
    monkeypatch.delenv("FMLAB_THREADS")
    monkeypatch.setenv("FMLAB_DEVICE", "cuda:0")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA GPU"):
            device.pick_device()
    monkeypatch.setenv("FMLAB_PRECISION", "fp8")
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda d=None: (9, 0))
    with pytest.raises(ValueError, match="FMLAB_PRECISION"):
        device.autocast_dtype(torch.device("cuda"))
    monkeypatch.setenv("FMLAB_PRECISION", "fp16")
    assert device.autocast_dtype(torch.device("cuda")) == torch.float16       # the T4 path, forced
    with pytest.raises(ValueError, match="not supported on Apple MPS"):        # MPS: fp32 only, said plainly
        device.autocast_dtype(torch.device("mps"))
    monkeypatch.delenv("FMLAB_PRECISION")
    assert device.autocast_dtype(torch.device("mps")) is None


@pytest.mark.parametrize("name, dtype, scaler", [("bf16", torch.bfloat16, False), ("fp16", torch.float16, True),
                                                 ("fp32", None, False), ("", None, False)])
def test_forced_precision_emulates_the_gpu_numerics_on_cpu(monkeypatch, name, dtype, scaler):
    """FMLAB_PRECISION on CPU: the same autocast dtype and grad-scaler choice as on CUDA; unset means fp32."""
    monkeypatch.setenv("FMLAB_PRECISION", name)
    cpu = torch.device("cpu")
    assert device.autocast_dtype(cpu) == dtype and device.needs_grad_scaler(cpu) == scaler
    layer = torch.nn.Linear(4, 4)
    with device.autocast(cpu):
        out = layer(torch.randn(2, 4))
    assert out.dtype == (dtype or torch.float32)          # the matrix product really ran in that precision
    if dtype is not None:
        assert "CPU emulation" in device.describe(cpu)


def test_fp16_training_on_cpu_uses_the_grad_scaler_and_learns(monkeypatch):
    from fmlab.gpt import GPTConfig, MiniGPT
    from fmlab.train import TrainConfig, train
    monkeypatch.setenv("FMLAB_PRECISION", "fp16")
    torch.manual_seed(0)
    model = MiniGPT(GPTConfig(vocab_size=11, block_size=8, n_layer=1, n_head=1, n_embd=16))
    fixed = torch.arange(8).remainder(11).repeat(4, 1)

    def batches(n, gen):
        return {"tokens": fixed[:n], "targets": fixed[:n].roll(-1, dims=1)}

    history = train(model, batches, TrainConfig(steps=30, batch_size=4, lr=1e-2, warmup=3, progress=False))
    assert history["loss"].iloc[-1] < 0.5 * history["loss"].iloc[1], history["loss"].tolist()
    assert next(model.parameters()).dtype == torch.float32     # autocast: the weights stay fp32
