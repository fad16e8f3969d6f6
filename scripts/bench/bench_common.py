"""What scripts/bench/benchmark.py and scripts/bench/benchmark_memory.py share (neither imports the other's
code back): the task shapes from the composed paper configs, the implementations compared, a
timed training step, the environment record.
"""

from __future__ import annotations

import contextlib
import platform
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

TASKS = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")


@dataclass(frozen=True)
class TaskShape:
    """What a benchmark needs of one composed paper config."""

    task: str
    model: dict[str, Any]  # the encoder's config (its _target_ and keywords, max_len included)
    head: dict[str, Any]
    batch: int
    length: int
    num_classes: int
    dual: bool


def paper_shapes(tasks: list[str], length: int | None = None, preset: str = "{task}_paper") -> dict[str, TaskShape]:
    """Compose ``experiment=<preset>`` (``{task}`` filled in) for each task and read the model
    (its ``_target_`` included), head and batch.

    The datamodule is constructed (no data is read or generated) for its contract attributes:
    vocabulary, input kind, sequence length, classes, dual. ``length`` overrides the length.
    """
    from hydra import compose, initialize_config_module
    from hydra.utils import instantiate
    from omegaconf import OmegaConf

    from lra_mega.run import resolvers  # noqa: F401  (registers ${lra.*})

    shapes = {}
    with initialize_config_module(config_module="lra_mega.configs", version_base="1.3"):
        for task in tasks:
            cfg = compose(config_name="config", overrides=[f"experiment={preset.format(task=task)}"])
            datamodule = instantiate(OmegaConf.to_container(cfg.data, resolve=True))
            seq_len = length or datamodule.seq_len
            model = OmegaConf.to_container(cfg.model, resolve=True)
            model.update(vocab_size=datamodule.vocab_size, input_kind=datamodule.input_kind, max_len=seq_len)
            head = OmegaConf.to_container(cfg.head, resolve=True)
            head.update(dim=model["dim"], num_classes=datamodule.num_classes)
            shapes[task] = TaskShape(task, model, head, int(cfg.data.batch_size), seq_len,
                                     datamodule.num_classes, bool(datamodule.dual))
    return shapes


class HFEncoder(nn.Module):
    """The Hugging Face port as an encoder: (B, L) tokens or pixels + mask → (B, L, D)."""

    def __init__(self, model: dict[str, Any]) -> None:
        super().__init__()
        from transformers import MegaConfig, MegaModel  # transformers==4.46.3 keeps the deprecated port

        from lra_mega.model import RealNumberEmbedding

        chunk = model["chunk_size"] if 0 < model["chunk_size"] < model["max_len"] else None
        config = MegaConfig(
            vocab_size=model["vocab_size"] or 2, hidden_size=model["dim"],
            num_hidden_layers=model["depth"], shared_representation_size=model["zdim"],
            intermediate_size=model["hdim"], nffn_hidden_size=model["ffn_dim"] or model["hdim"],
            ema_projection_size=model["ndim"], bidirectional=model["bidirectional"],
            attention_activation=model["attention"], normalization_type=model["norm"],
            normalize_before_mega=model["prenorm"], normalize_before_ffn=model["prenorm"],
            max_positions=chunk or model["max_len"], use_chunking=chunk is not None,
            chunk_size=chunk or -1, truncation=model["truncation"],
            relative_positional_bias=model["rel_pos"], dropout_prob=model["dropout"],
            hidden_dropout_prob=model["hidden_dropout"], nffn_activation_dropout_prob=model["hidden_dropout"],
            attention_probs_dropout_prob=model["attention_dropout"], add_token_type_embeddings=False,
            pad_token_id=0,
        )
        self.pixels = model["input_kind"] == "pixels"
        self.embed = RealNumberEmbedding(model["dim"]) if self.pixels else None
        self.model = MegaModel(config, add_pooling_layer=False)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        attention_mask = None if mask is None else mask.long()
        if self.pixels:
            return self.model(inputs_embeds=self.embed(x), attention_mask=attention_mask).last_hidden_state
        return self.model(input_ids=x, attention_mask=attention_mask).last_hidden_state


class MegaPytorchEncoder(nn.Module):
    """mega-pytorch's features (tokens only: pixel inputs are quantised to 256 levels)."""

    def __init__(self, model: dict[str, Any]) -> None:
        super().__init__()
        from mega_pytorch import Mega

        self.model = Mega(
            num_tokens=max(model["vocab_size"] or 256, 256), dim=model["dim"], depth=model["depth"],
            ema_heads=model["ndim"], attn_dim_qk=model["zdim"], attn_dim_value=model["hdim"],
            laplacian_attn_fn=model["attention"] == "laplace",
        )
        self.model.to_logits = nn.Identity()
        self.pixels = model["input_kind"] == "pixels"

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        if self.pixels:
            x = (x.float().clamp(-3, 3) * 40 + 128).long().clamp(0, 255)
        return self.model(x)


def build(impl: str, shape: TaskShape) -> nn.Module:
    """The task's classifier (encoder + the preset's head) with ``impl``'s encoder (lra_mega: the
    encoder the preset names, Mega or Megalodon)."""
    from lra_mega.training.classifier import LRAClassifier

    if impl == "lra_mega":
        encoder: nn.Module | dict = {"_target_": "lra_mega.model.MegaEncoder", **shape.model}
    else:
        encoder = {"hf": HFEncoder, "mega_pytorch": MegaPytorchEncoder}[impl](shape.model)
    return LRAClassifier(encoder=encoder, head=shape.head, num_classes=shape.num_classes, dual=shape.dual)


IMPLEMENTATIONS = ("lra_mega", "hf", "mega_pytorch")


def make_batch(shape: TaskShape, batch: int, device: torch.device, seed: int = 0) -> tuple:
    """Random inputs of the task's kind at full length (no padding), mask and labels."""
    gen = torch.Generator().manual_seed(seed)
    size = (batch, 2, shape.length) if shape.dual else (batch, shape.length)
    if shape.model["input_kind"] == "pixels":
        x = torch.randn(size, generator=gen)
    else:
        x = torch.randint(1, shape.model["vocab_size"], size, generator=gen)
    y = torch.randint(0, shape.num_classes, (batch,), generator=gen)
    return x.to(device), torch.ones(size, dtype=torch.bool, device=device), y.to(device)


def autocast_for(precision: str, device: torch.device):
    """bf16 autocast context, or a no-op for fp32."""
    if precision == "bf16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def time_training_step(
    model: nn.Module, shape: TaskShape, batch: int, device: torch.device, precision: str,
    warmup: int, steps: int,
) -> dict[str, float]:
    """Mean/std of the step time (ms) after ``warmup`` steps, and peak memory (GiB, CUDA only)."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8)
    x, mask, y = make_batch(shape, batch, device)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast_for(precision, device):
            loss = F.cross_entropy(model(x, mask).float(), y)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    sync()
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        step()
        sync()
        times.append((time.perf_counter() - start) * 1000)
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else float("nan")
    return {"ms_mean": statistics.mean(times), "ms_std": statistics.pstdev(times), "peak_gib": peak}


def error_text(err: BaseException) -> str:
    """One line for a failed implementation."""
    if isinstance(err, ImportError):
        return f"not installed ({err.name})"
    if isinstance(err, torch.cuda.OutOfMemoryError):
        return "out of memory"
    return f"{type(err).__name__}: {(str(err).splitlines() or [''])[0][:120]}"


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo``), else what ``platform`` knows."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def environment(device: str) -> dict[str, str]:
    """Library versions and the machine the numbers come from."""
    import os

    env = {"torch": torch.__version__, "python": platform.python_version(), "device": device}
    if device.startswith("cuda") and torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    env["cpu"] = f"{platform.machine()}, {os.cpu_count()} cores visible, {platform.processor() or 'unknown CPU'}"
    for name in ("transformers", "mega_pytorch", "triton"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            env[name] = version(name.replace("_", "-"))
    return env
