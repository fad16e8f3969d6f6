"""Time one training step (forward + backward + AdamW) and peak memory on each task's paper config.

Implementations: lra_mega always; the Hugging Face port (transformers==4.46.3,
``models/deprecated/mega``) and mega-pytorch when they are installed. All run in one process on
the same device, one after the other, so their numbers compare.

    python scripts/benchmark.py                                  # all tasks, every installed impl
    python scripts/benchmark.py --tasks listops --precision bf16
    python scripts/benchmark.py --tasks pathfinder --batch 2 --length 128 --steps 2   # CPU smoke

Writes ``<out>.json`` and ``<out>.md`` (default docs/benchmarks/speed).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from lra_mega.model import ClassificationHead, MegaEncoder


@dataclass(frozen=True)
class BenchConfig:
    """The paper's model shape and batch for one task (DESIGN.md §4, issue #6 table)."""

    layers: int
    dim: int
    zdim: int
    hdim: int
    length: int
    batch: int
    attention: str
    norm: str
    prenorm: bool
    classes: int
    pixels: bool
    chunk_size: int = -1
    truncation: int | None = None


TASKS: dict[str, BenchConfig] = {
    "listops": BenchConfig(6, 80, 64, 160, 2000, 64, "softmax", "layernorm", False, 10, False),
    "text": BenchConfig(4, 128, 64, 256, 4096, 25, "softmax", "scalenorm", True, 2, False),
    "image": BenchConfig(8, 160, 96, 320, 1024, 50, "laplace", "batchnorm", True, 10, True),
    "pathfinder": BenchConfig(6, 128, 64, 256, 1024, 64, "laplace", "batchnorm", True, 2, True),
    "pathx": BenchConfig(4, 64, 32, 128, 16384, 2, "laplace", "batchnorm", True, 2, True, 4096, 4096),
}
VOCAB = 256
TABLE_HEADER = "| task | impl | batch | length | step ms | peak GiB |\n|---|---|---|---|---|---|"


class PooledClassifier(nn.Module):
    """features(x) (B, L, D) → mean pool → MLP, the head every implementation gets."""

    def __init__(self, features: nn.Module, dim: int, classes: int) -> None:
        super().__init__()
        self.features = features
        self.head = ClassificationHead(dim, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x), None)


class LastHiddenState(nn.Module):
    """Adapts a Hugging Face model to return its (B, L, D) features."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(input_ids=x).last_hidden_state


def build_lra_mega(cfg: BenchConfig, length: int) -> tuple[nn.Module, bool]:
    encoder = MegaEncoder(
        vocab_size=None if cfg.pixels else VOCAB,
        input_kind="pixels" if cfg.pixels else "tokens",
        dim=cfg.dim, depth=cfg.layers, zdim=cfg.zdim, hdim=cfg.hdim, attention=cfg.attention,
        norm=cfg.norm, prenorm=cfg.prenorm, chunk_size=cfg.chunk_size, truncation=cfg.truncation,
        max_len=max(length, 1),
    )
    return PooledClassifier(encoder, cfg.dim, cfg.classes), cfg.pixels


def build_hf(cfg: BenchConfig, length: int) -> tuple[nn.Module, bool]:
    from transformers import MegaConfig, MegaModel  # transformers==4.46.3 keeps the deprecated port

    chunk = cfg.chunk_size if cfg.chunk_size > 0 else None
    config = MegaConfig(
        vocab_size=VOCAB, hidden_size=cfg.dim, num_hidden_layers=cfg.layers,
        shared_representation_size=cfg.zdim, intermediate_size=cfg.hdim, nffn_hidden_size=cfg.hdim,
        ema_projection_size=16, bidirectional=True, attention_activation=cfg.attention,
        normalization_type=cfg.norm, normalize_before_mega=cfg.prenorm, max_positions=length,
        use_chunking=chunk is not None, chunk_size=chunk or -1, truncation=cfg.truncation,
        dropout_prob=0.0, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
        add_token_type_embeddings=False, pad_token_id=0,
    )
    model = MegaModel(config, add_pooling_layer=False)
    return PooledClassifier(LastHiddenState(model), cfg.dim, cfg.classes), False


def build_mega_pytorch(cfg: BenchConfig, length: int) -> tuple[nn.Module, bool]:
    from mega_pytorch import Mega

    model = Mega(
        num_tokens=VOCAB, dim=cfg.dim, depth=cfg.layers, ema_heads=16, attn_dim_qk=cfg.zdim,
        attn_dim_value=cfg.hdim, laplacian_attn_fn=cfg.attention == "laplace",
    )
    model.to_logits = nn.Identity()  # keep the features; every impl gets the same pooled head
    return PooledClassifier(model, cfg.dim, cfg.classes), False


IMPLEMENTATIONS: dict[str, Callable[[BenchConfig, int], tuple[nn.Module, bool]]] = {
    "lra_mega": build_lra_mega,
    "hf": build_hf,
    "mega_pytorch": build_mega_pytorch,
}


def time_training_step(
    model: nn.Module, pixels: bool, batch: int, length: int, classes: int, device: torch.device,
    precision: str, warmup: int, steps: int,
) -> dict[str, float]:
    """Mean/std of the step time (ms) after ``warmup`` steps, and peak memory (GiB, CUDA only)."""
    model.to(device).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4, betas=(0.9, 0.98), eps=1e-8)
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(batch, length, generator=gen) if pixels else torch.randint(1, VOCAB, (batch, length), generator=gen)
    x, y = x.to(device), torch.randint(0, classes, (batch,), generator=gen).to(device)
    autocast = (
        torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    )
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        with autocast:
            loss = F.cross_entropy(model(x).float(), y)
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


def run(args: argparse.Namespace) -> list[dict]:
    device = torch.device(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    rows = []
    for task in args.tasks:
        cfg = TASKS[task]
        batch, length = args.batch or cfg.batch, args.length or cfg.length
        for impl in args.impls:
            row = {"task": task, "impl": impl, "batch": batch, "length": length, "precision": args.precision}
            model = None
            try:
                torch.manual_seed(0)
                model, pixels = IMPLEMENTATIONS[impl](cfg, length)
                row.update(time_training_step(
                    model, pixels, batch, length, cfg.classes, device, args.precision, args.warmup, args.steps
                ))
            except ImportError as err:
                row["error"] = f"not installed ({err.name})"
            except torch.cuda.OutOfMemoryError:
                row["error"] = "out of memory"
            except Exception as err:  # one broken impl must not end the comparison
                row["error"] = f"{type(err).__name__}: {str(err).splitlines()[0][:120]}"
            finally:
                del model
                if device.type == "cuda":
                    torch.cuda.empty_cache()
            rows.append(row)
            print(format_row(row), flush=True)
    return rows


def format_row(row: dict) -> str:
    if "error" in row:
        return f"| {row['task']} | {row['impl']} | {row['batch']} | {row['length']} | {row['error']} | |"
    return (
        f"| {row['task']} | {row['impl']} | {row['batch']} | {row['length']} | "
        f"{row['ms_mean']:.1f} ± {row['ms_std']:.1f} | {row['peak_gib']:.2f} |"
    )


def environment(device: str) -> dict[str, str]:
    env = {"torch": torch.__version__, "python": platform.python_version(), "device": device}
    if torch.cuda.is_available():
        env["gpu"] = torch.cuda.get_device_name(0)
    else:
        env["cpu"] = platform.processor() or platform.machine()
    for name in ("transformers", "mega_pytorch"):
        with contextlib.suppress(Exception):
            from importlib.metadata import version

            env[name] = version(name.replace("_", "-"))
    return env


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=list(TASKS), choices=list(TASKS))
    parser.add_argument("--impls", nargs="+", default=list(IMPLEMENTATIONS), choices=list(IMPLEMENTATIONS))
    parser.add_argument("--precision", choices=["fp32", "bf16"], default="fp32")
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--batch", type=int, help="override every task's paper batch (smoke runs)")
    parser.add_argument("--length", type=int, help="override every task's paper length (smoke runs)")
    parser.add_argument("--device", help="cuda or cpu (default: cuda when available)")
    parser.add_argument("--out", type=Path, default=Path("docs/benchmarks/speed"))
    args = parser.parse_args(argv)

    print(TABLE_HEADER)
    rows = run(args)
    env = environment(args.device or ("cuda" if torch.cuda.is_available() else "cpu"))
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps({"environment": env, "results": rows}, indent=2))
    table = "\n".join(format_row(r) for r in rows)
    env_line = ", ".join(f"{k} {v}" for k, v in env.items())
    args.out.with_suffix(".md").write_text(f"Environment: {env_line}\n\n{TABLE_HEADER}\n{table}\n")


if __name__ == "__main__":
    main()
