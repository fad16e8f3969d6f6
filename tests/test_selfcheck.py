"""The one-time self-check of the GPU-only attention paths (lra_mega/model/kernels/selfcheck.py).

Without a GPU: the Triton kernels run under Triton's interpreter in a child process (as in
tests/test_kernels_triton.py), and ``attention._on_gpu`` is patched so that ``auto`` takes the
GPU paths for CPU tensors. A kernel that raises and one that returns wrong values are injected by
monkeypatching the path table (the kernels are not edited): under ``auto`` each falls back to the
blockwise path with one warning, under an explicit impl each raises its finding, and results.json
names the path that ran.
"""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from harness import SMOKE, compose_config
from torch.utils.flop_counter import FlopCounterMode

from lra_mega.model import MegaEncoder, attend, attention
from lra_mega.model.kernels import HAS_TRITON, selfcheck
from lra_mega.model.kernels.blockwise import blockwise_element_attention
from lra_mega.model.position import SimpleRelativePositionalBias

REPO = Path(__file__).resolve().parents[1]
SMALL = (40, 29)  # CHECK_LENGTH, CHECK_REAL: small for the interpreter and a 2-core CPU
needs_triton = pytest.mark.skipif(not HAS_TRITON, reason="triton is not installed (pip install triton)")


def _interpreted_report() -> dict:
    """(Child process, TRITON_INTERPRET=1) every self-check at small shapes, twice; then ``auto``
    on a rehearsed GPU with the real (interpreted) kernel."""
    attention.CHECK_LENGTH, attention.CHECK_REAL = SMALL
    rows = []
    for fn in ("laplace", "relu2", "softmax"):
        for causal in (False, True):
            for masked in (False, True):
                finding = attention.self_check(fn, "cpu", torch.float32, causal=causal, masked=masked, zdim=8, hdim=12)
                again = attention.self_check(fn, "cpu", torch.float32, causal=causal, masked=masked, zdim=8, hdim=12)
                rows.append({**finding.as_dict(), "cached": again is finding})
    attention._on_gpu = lambda q: True
    gen = torch.Generator().manual_seed(3)
    q, k, v = (torch.randn(2, 50, d, generator=gen) for d in (8, 8, 12))
    bias = SimpleRelativePositionalBias(50)
    auto = attend(q, k, v, fn="laplace", bias=bias, impl="auto")
    lean = attend(q, k, v, fn="laplace", bias=bias, impl="blockwise")
    return {"rows": rows, "auto_vs_blockwise": (auto - lean).abs().max().item(), "report": selfcheck.report()}


@needs_triton
def test_self_check_passes_the_interpreted_kernels_once_per_combination():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": os.pathsep.join([str(REPO), str(REPO / "tests")])}
    done = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=1800)
    assert done.returncode == 0, done.stderr[-3000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    rows = report["rows"]
    assert len(rows) == 12 and all(r["cached"] for r in rows)
    for row in rows:
        assert row["ok"] and row["error"] < row["tolerance"] == 1e-4, row
        assert row["path"] == ("sdpa" if row["fn"] == "softmax" else "triton") and row["fallback"] == "blockwise"
    assert report["auto_vs_blockwise"] < 1e-5
    assert report["report"]["paths"] == {"laplace attention": ["blockwise", "triton"]}
    assert report["report"]["fallbacks"] == []


# ----- injected faults, in this process --------------------------------------------------------

def raising_kernel(*args, **kwargs):
    raise RuntimeError("injected: the kernel does not compile on this GPU")


def wrong_kernel(q, k, v, bias, key_mask, visible, *, causal, fn, dropout_p=0.0, **kwargs):
    """The blockwise path with the relative position bias read one offset off: subtly wrong."""
    return blockwise_element_attention(q, k, v, bias.roll(1), key_mask, visible, causal=causal, fn=fn)


FAULTS = {"raises": (raising_kernel, "it raised RuntimeError: injected"), "wrong": (wrong_kernel, "max error")}


@pytest.fixture
def rehearsed_gpu(monkeypatch):
    """``auto`` takes the GPU paths for CPU tensors; verdicts and warnings start afresh."""
    selfcheck.forget()
    attention._WARNED.clear()
    monkeypatch.setattr(attention, "CHECK_LENGTH", SMALL[0])
    monkeypatch.setattr(attention, "CHECK_REAL", SMALL[1])
    monkeypatch.setattr(attention, "_on_gpu", lambda q: True)
    monkeypatch.setattr(attention, "HAS_TRITON", True)
    yield
    selfcheck.forget()
    attention._WARNED.clear()


def _inputs(length: int = 45):
    gen = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, length, d, generator=gen).requires_grad_(True) for d in (8, 8, 12))
    mask = torch.ones(2, length, dtype=torch.bool)
    mask[1, 30:] = False
    return q, k, v, mask, SimpleRelativePositionalBias(length)


def _warnings(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING and "self-check" in r.getMessage()]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_auto_falls_back_to_blockwise_with_one_warning(fault, rehearsed_gpu, monkeypatch, caplog):
    kernel, needle = FAULTS[fault]
    monkeypatch.setitem(attention._ELEMENT_PATHS, "triton", kernel)
    q, k, v, mask, bias = _inputs()
    with caplog.at_level(logging.WARNING):
        out = attend(q, k, v, fn="laplace", bias=bias, key_mask=mask, impl="auto")
        out.sum().backward()
        attend(q, k, v, fn="laplace", bias=bias, key_mask=mask, impl="auto")  # no second check, no second warning
    want = attend(q, k, v, fn="laplace", bias=bias, key_mask=mask, impl="blockwise")
    assert torch.equal(out, want)
    warnings = _warnings(caplog)
    assert len(warnings) == 1, warnings
    for part in ("triton attention path failed its one-time self-check", needle, "PyTorch blockwise path instead",
                 "model.attention_impl=blockwise", "model.attention_impl=triton", "laplace, cpu, float32"):
        assert part in warnings[0], warnings[0]
    record = selfcheck.report()
    assert record["paths"] == {"laplace attention": ["blockwise"]}
    [fallback] = record["fallbacks"]
    assert fallback["path"] == "triton" and fallback["fallback"] == "blockwise" and needle in fallback["reason"]
    assert fallback["masked"] is True and fallback["causal"] is False


@pytest.mark.parametrize("fault", list(FAULTS))
def test_explicit_triton_raises_the_finding(fault, rehearsed_gpu, monkeypatch):
    kernel, needle = FAULTS[fault]
    monkeypatch.setitem(attention._ELEMENT_PATHS, "triton", kernel)
    q, k, v, mask, bias = _inputs()
    with pytest.raises(selfcheck.SelfCheckError) as err:
        attend(q, k, v, fn="laplace", bias=bias, key_mask=mask, impl="triton")
    message = str(err.value)
    assert "\n" not in message and message.startswith("attention_impl='triton': the triton attention path failed")
    assert needle in message and "model.attention_impl=auto" in message and "model.attention_impl=blockwise" in message
    assert isinstance(err.value, ValueError)  # the CLI prints it as one line


def wrong_sdpa(q, k, v, bias, key_mask, causal, dropout_p):
    """SDPA as a GPU kernel might get it wrong: the key padding ignored."""
    return attention_sdpa(q, k, v, bias, None, causal, dropout_p)


attention_sdpa = attention._softmax_attention


def test_sdpa_with_our_padding_is_checked_and_replaced(rehearsed_gpu, monkeypatch, caplog):
    monkeypatch.setattr(attention, "_softmax_attention", wrong_sdpa)
    q, k, v, mask, bias = _inputs()
    with caplog.at_level(logging.WARNING):
        out = attend(q, k, v, fn="softmax", bias=bias, key_mask=mask, impl="auto")
    assert torch.equal(out, attend(q, k, v, fn="softmax", bias=bias, key_mask=mask, impl="blockwise"))
    assert len(_warnings(caplog)) == 1 and "the sdpa attention path failed" in _warnings(caplog)[0]
    assert "model.attention_impl=reference (this one" in _warnings(caplog)[0]
    with pytest.raises(selfcheck.SelfCheckError, match="attention_impl='reference': the sdpa attention path"):
        attend(q, k, v, fn="softmax", bias=bias, key_mask=mask, impl="reference")
    unmasked = attend(q, k, v, fn="softmax", bias=bias, impl="auto")  # no padding: SDPA passes its check
    assert selfcheck.report()["paths"] == {"softmax attention": ["blockwise", "sdpa"]}
    assert torch.allclose(unmasked, attend(q, k, v, fn="softmax", bias=bias, impl="blockwise"), atol=1e-5)


def test_self_check_leaves_rng_flop_count_and_grad_mode_alone(rehearsed_gpu):
    rng = torch.get_rng_state()
    with FlopCounterMode(display=False) as counter, torch.inference_mode():
        finding = attention.self_check("softmax", "cpu", torch.float32, masked=True, zdim=8, hdim=12)
    assert finding.ok and counter.get_total_flops() == 0
    assert torch.equal(rng, torch.get_rng_state())


def test_tolerances_and_errors():
    assert selfcheck.tolerance(torch.float32) == 1e-4 and selfcheck.tolerance(torch.float32, tf32=True) == 1e-2
    assert selfcheck.tolerance(torch.bfloat16) == 5e-2 and selfcheck.tolerance(torch.float16) == 1e-2
    ones = torch.ones(3)
    assert selfcheck.relative_error([ones * 1.5], [ones]) == pytest.approx(0.25)
    assert selfcheck.relative_error([ones * float("nan")], [ones]) == float("inf")


# ----- what results.json records -----------------------------------------------------------------

def test_what_ran_records_the_fallback_for_the_run_layer(rehearsed_gpu, monkeypatch):
    from lra_mega.run.train import what_ran

    monkeypatch.setitem(attention._ELEMENT_PATHS, "triton", wrong_kernel)
    selfcheck.start_record()
    encoder = MegaEncoder(vocab_size=None, input_kind="pixels", dim=16, depth=1, zdim=8, hdim=12,
                          attention="laplace", max_len=64)
    encoder(torch.rand(2, 64)).sum().backward()
    ran = what_ran(type("M", (), {"encoder": encoder})(), type("T", (), {"precision": "32-true"})())
    assert ran["attention_paths"] == {"laplace attention": ["blockwise"]}
    assert ran["precision"] == "32-true" and ran["compiled"] is False
    [fallback] = ran["self_check_fallbacks"]
    assert fallback["path"] == "triton" and fallback["replaced_by"] == "blockwise" and "max error" in fallback["reason"]
    assert ran["self_checks"] == ["triton (laplace, cpu, float32, bidirectional, unmasked): FAILED"]


@pytest.mark.parametrize("fault", list(FAULTS))
def test_results_json_names_the_path_that_ran(fault, rehearsed_gpu, monkeypatch, tmp_path, offline_env):
    from lra_mega.run.train import train

    monkeypatch.setitem(attention._ELEMENT_PATHS, "triton", FAULTS[fault][0])
    overrides = [*SMOKE, "task=pathfinder", "trainer.max_steps=2", "trainer.val_check_interval=2",
                 "data.limit_examples=8", "test=false", "model.depth=1"]
    train(compose_config(overrides, output_dir=tmp_path / "auto"))
    ran = json.loads((tmp_path / "auto" / "results.json").read_text())["ran"]
    assert ran["attention_paths"] == {"laplace attention": ["blockwise"]}
    assert ran["precision"] == "32-true" and ran["compiled"] is False
    assert [f["reason"].split(":")[0] for f in ran["self_check_fallbacks"]] == [
        "it raised RuntimeError" if fault == "raises" else "its outputs or gradients differ from the blockwise path's"]
    with pytest.raises(selfcheck.SelfCheckError, match="attention_impl='triton'"):
        train(compose_config([*overrides, "model.attention_impl=triton"], output_dir=tmp_path / "forced"))


if __name__ == "__main__":
    print(json.dumps(_interpreted_report()))
