#!/usr/bin/env python
"""Length extrapolation of the relative position biases, on real text: the Python standard library.

    python scripts/bench/benchmark_extrapolation.py       # < 30 min on 2 cores; docs/benchmarks/extrapolation.*
    python scripts/bench/benchmark_extrapolation.py --steps 20 --eval-bytes 16384 --out /tmp/x   # smoke run, ~1 min

Text: the ``.py`` files of the running interpreter's stdlib directory (``sysconfig``), read as
bytes (token = byte + 1; id 0 is padding), without site-packages and test suites. A fixed set of
files is held out for evaluation: those whose path relative to the stdlib has crc32 % 20 == 0.

Training: one causal ``Mega`` per bias (``rel_pos`` = simple, rotary, dynamic), same size, seed,
batches (random windows of the training files) and number of steps, at ``--train-len`` (256).
Evaluation: bits per byte of next-byte prediction on the same first ``--eval-bytes`` held-out
bytes, cut into windows of each ``--lengths`` (256, 1,024, 4,096), averaged over every byte;
with full attention and with Mega-chunk attention (chunk = the training length, so attention
never meets an offset it was not trained on; the EMA still runs over the whole window).
``simple`` has a table of offsets up to its max_len (the training length): full attention at
the training length only. Writes extrapolation.{json,md,png} in ``--out`` (docs/benchmarks).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import sysconfig
import time
import zlib
from pathlib import Path

from lra_mega.run.progress import duration

sys.path[:0] = [str(Path(__file__).resolve().parent), str(Path(__file__).resolve().parents[1])]  # bench/, scripts/
from out_paths import require_writable  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
OUT = ROOT / "docs" / "benchmarks"
KINDS = ("simple", "rotary", "dynamic")
SKIPPED_DIRS = {"site-packages", "dist-packages", "test", "tests", "idle_test", "__pycache__"}
HOLD_OUT_EVERY = 20  # a file is held out when crc32(its relative path) % 20 == 0
PROG = "benchmark_extrapolation"


def stdlib_text(root: Path) -> tuple[bytes, bytes, dict]:
    """(training bytes, held-out bytes, description): the stdlib's .py files, in path order."""
    train, held, held_names = [], [], []
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if SKIPPED_DIRS & set(rel.split("/")[:-1]):
            continue
        data = path.read_bytes()
        if zlib.crc32(rel.encode()) % HOLD_OUT_EVERY == 0:
            held.append(data)
            held_names.append(rel)
        else:
            train.append(data)
    info = {"stdlib": str(root), "train_files": len(train), "train_bytes": sum(map(len, train)),
            "held_out_files": held_names, "held_out_bytes": sum(map(len, held)),
            "rule": f".py files outside {sorted(SKIPPED_DIRS)}; held out: crc32(path) % {HOLD_OUT_EVERY} == 0"}
    return b"".join(train), b"".join(held), info


def build_model(kind: str, args: argparse.Namespace):
    """A causal byte-level Mega with ``rel_pos=kind``. simple and dynamic are built for the
    training length; rotary (no table, but a max_len check) for the longest evaluation."""
    import torch

    from lra_mega.model import Mega

    torch.manual_seed(args.seed)
    max_len = max(args.lengths) if kind == "rotary" else args.train_len
    model = Mega(num_tokens=257, dim=args.dim, depth=args.depth, ema_heads=args.ndim, attn_dim_qk=args.zdim,
                 attn_dim_value=args.hdim, causal=True, attention=args.attention, max_len=max_len, rel_pos=kind)
    return model, max_len


def set_chunk(model, chunk: int) -> None:
    """Mega-chunk attention of ``chunk`` (−1: full) in every layer of a built model."""
    for block in model.encoder.layers:
        block.attention.chunk_size = chunk


def train(model, text, args: argparse.Namespace, label: str, clock: dict) -> dict:
    """``args.steps`` AdamW steps on random windows; the same windows for every model."""
    import torch
    import torch.nn.functional as F

    from lra_mega.training.optim import warmup_linear_decay

    gen = torch.Generator().manual_seed(args.seed)
    warmup = max(1, args.steps // 10)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, betas=(0.9, 0.98), weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: warmup_linear_decay(s + 1, warmup, args.steps + 1))
    model.train()
    start, losses = time.perf_counter(), []
    for step in range(1, args.steps + 1):
        offsets = torch.randint(0, len(text) - args.train_len - 1, (args.batch, 1), generator=gen)
        window = text[offsets + torch.arange(args.train_len + 1)]
        logits = model(window[:, :-1])
        loss = F.cross_entropy(logits.flatten(0, 1), window[:, 1:].flatten())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(loss.item() / math.log(2))
        clock["steps_done"] += 1
        if step % args.log_every == 0 or step == args.steps:
            rate = step / (time.perf_counter() - start)
            left = (clock["steps_total"] - clock["steps_done"]) / rate + clock["eval_left"]()
            recent = losses[-args.log_every:]
            print(f"[{label}] step {step}/{args.steps}  train bpb {sum(recent) / len(recent):.3f}  "
                  f"{rate:.2f} steps/s, {rate * args.batch * args.train_len:,.0f} bytes/s  "
                  f"left: this model {duration((args.steps - step) / rate)}, all ~{duration(left)}", flush=True)
    tail = losses[-max(1, args.steps // 10):]
    return {"seconds": round(time.perf_counter() - start, 1), "final_train_bpb": round(sum(tail) / len(tail), 4)}


def evaluate(model, stream, length: int, batch_bytes: int) -> float:
    """Bits per byte of next-byte prediction over non-overlapping windows of ``length``."""
    import torch
    import torch.nn.functional as F

    windows = (len(stream) - 1) // length
    starts = torch.arange(windows) * length
    per_batch = max(1, batch_bytes // length)
    total, count = 0.0, 0
    model.eval()
    with torch.no_grad():
        for first in range(0, windows, per_batch):
            idx = starts[first:first + per_batch, None] + torch.arange(length + 1)
            window = stream[idx]
            logits = model(window[:, :-1])
            total += F.cross_entropy(logits.flatten(0, 1).float(), window[:, 1:].flatten(), reduction="sum").item()
            count += window[:, 1:].numel()
    return total / count / math.log(2)


def runs_for(kind: str, args: argparse.Namespace) -> list[tuple[str, int]]:
    """(attention, length) evaluations of one bias: full attention wherever the bias reaches,
    chunked (chunk = training length) at every length above it."""
    out = [("full", n) for n in args.lengths if kind != "simple" or n <= args.train_len]
    return out + [("chunked", n) for n in args.lengths if n > args.train_len]


def curve(result: dict, kind: str, attention: str) -> dict[int, float]:
    """{length: bits per byte} of one bias and attention; chunked at the training length is the
    full-attention value (one chunk)."""
    rows = {r["length"]: r["bpb"] for r in result["results"]
            if r["rel_pos"] == kind and r["attention"] == attention}
    if attention == "chunked" and rows:
        full = curve(result, kind, "full")
        train_len = result["config"]["train_len"]
        rows = ({train_len: full[train_len]} if train_len in full else {}) | rows
    return dict(sorted(rows.items()))


def markdown(result: dict) -> str:
    config, m, d, g = result["config"], result["machine"], result["data"], result["goal"]
    lengths, train_len = config["lengths"], config["train_len"]
    longest = max(lengths)
    lines = [
        "# Length extrapolation of the relative position biases (bits per byte, stdlib source)", "",
        f"Machine: {m['cpu_model']} ({m['cpu_count']} CPUs, {m['threads']} torch threads), torch {m['torch']}, "
        f"Python {m['python']}; load average {m['load_before']} before / {m['load_after']} after; "
        f"{duration(result['seconds'])} in all.", "",
        f"Text: {d['train_files']} stdlib .py files ({d['train_bytes']:,} bytes) for training, "
        f"{len(d['held_out_files'])} held out ({d['held_out_bytes']:,} bytes; the first "
        f"{config['eval_bytes']:,} scored at every length). Each model: causal Mega, {config['model']}, "
        f"{config['steps']} steps of {config['batch']} × {train_len} bytes. Chunked = Mega-chunk attention "
        f"of {train_len} at evaluation. Lower is better; — = not possible (simple has no bias past "
        f"its max_len).", "",
        "| rel_pos | attention | " + " | ".join(f"{n:,}" for n in lengths) + f" | {longest:,} / {train_len} |",
        "|---|---|" + "---|" * (len(lengths) + 1),
    ]
    for kind in KINDS:
        for attention in ("full", "chunked"):
            cells = curve(result, kind, attention)
            if not cells:
                continue
            ratio = f"{cells[longest] / cells[train_len]:.3f}" if longest in cells and train_len in cells else "—"
            row = " | ".join(f"{cells[n]:.3f}" if n in cells else "—" for n in lengths)
            lines.append(f"| {kind} | {attention} | {row} | {ratio} |")
    verdict = {True: "yes", False: "no", None: "not measured"}
    lines += ["", f"Goal (issue 19): the dynamic model, full attention, at {longest:,} within 5% of its own value "
                  f"at {train_len} (ratio {g['dynamic_ratio']}): **{verdict[g['within_5_percent']]}**; "
                  f"below rotary at {longest:,}: **{verdict[g['beats_rotary']]}**.", "",
              f"Reproduce: `{result['command']}`.", "", "![bits per byte against length](extrapolation.png)", ""]
    return "\n".join(lines)


def plot(result: dict, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    colours = dict(zip(KINDS, ("tab:gray", "tab:orange", "tab:blue")))
    for kind in KINDS:
        for attention, style in (("full", "-o"), ("chunked", "--s")):
            points = curve(result, kind, attention)
            if points:
                ax.plot(list(points), list(points.values()), style, color=colours[kind], label=f"{kind}, {attention}")
    ax.set_xscale("log", base=2)
    ax.set_xticks(result["config"]["lengths"], [f"{n:,}" for n in result["config"]["lengths"]])
    ax.set_xlabel("evaluation length (bytes)")
    ax.set_ylabel("bits per byte (held-out stdlib)")
    ax.set_title(f"causal Mega trained at {result['config']['train_len']} bytes")
    ax.axvline(result["config"]["train_len"], color="black", linewidth=0.5)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def goal(results: list[dict], train_len: int, longest: int) -> dict:
    """Issue 19's goal: dynamic at ``longest`` within 5% of dynamic at ``train_len``, and below rotary."""
    index = {(r["rel_pos"], r["attention"], r["length"]): r["bpb"] for r in results}
    dyn_long, dyn_short = index.get(("dynamic", "full", longest)), index.get(("dynamic", "full", train_len))
    rot_long = index.get(("rotary", "full", longest))
    ratio = None if dyn_long is None or dyn_short is None else round(dyn_long / dyn_short, 4)
    return {"dynamic_ratio": ratio, "within_5_percent": None if ratio is None else ratio <= 1.05,
            "beats_rotary": None if dyn_long is None or rot_long is None else dyn_long < rot_long}


def train_and_score(args: argparse.Namespace, text, stream) -> tuple[list[dict], dict]:
    """Train each bias's model, then score it at every (attention, length) of ``runs_for``."""
    eval_seconds: list[float] = []
    clock = {"steps_done": 0, "steps_total": args.steps * len(args.kinds),  # for the time left
             "eval_left": lambda: (len(args.kinds) - len(eval_seconds)) * max(eval_seconds, default=0.0)}
    results, training = [], {}
    for kind in args.kinds:
        model, max_len = build_model(kind, args)
        training[kind] = {"max_len": max_len, **train(model, text, args, kind, clock)}
        t0 = time.perf_counter()
        for attention, length in runs_for(kind, args):
            set_chunk(model, args.train_len if attention == "chunked" else -1)
            t1 = time.perf_counter()
            bpb = evaluate(model, stream, length, batch_bytes=max(16384, length))
            results.append({"rel_pos": kind, "attention": attention, "length": length, "bpb": round(bpb, 4)})
            print(f"[{kind}] eval {attention:7s} {length:>5}: {bpb:.4f} bits/byte  "
                  f"({args.eval_bytes / (time.perf_counter() - t1):,.0f} bytes/s)", flush=True)
        eval_seconds.append(time.perf_counter() - t0)
    return results, training


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog=PROG, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--kinds", nargs="+", choices=KINDS, default=list(KINDS), help="rel_pos values to train")
    p.add_argument("--steps", type=int, default=1000, help="training steps per model")
    p.add_argument("--batch", type=int, default=16, help="windows per training step")
    p.add_argument("--train-len", type=int, default=256, help="training length (bytes)")
    p.add_argument("--lengths", type=int, nargs="+", default=[256, 1024, 4096], help="evaluation lengths")
    p.add_argument("--eval-bytes", type=int, default=131072, help="held-out bytes scored at every length")
    p.add_argument("--dim", type=int, default=96)
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--zdim", type=int, default=48)
    p.add_argument("--hdim", type=int, default=192)
    p.add_argument("--ndim", type=int, default=8, help="EMA dimension")
    p.add_argument("--attention", default="softmax", choices=("softmax", "laplace", "relu2"))
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    p.add_argument("--log-every", type=int, default=50, help="steps between progress lines")
    p.add_argument("--out", type=Path, default=OUT, help="directory for extrapolation.{json,md,png}")
    args = p.parse_args(argv)
    for flag in ("steps", "batch", "train_len", "eval_bytes", "dim", "depth", "zdim", "hdim", "ndim", "threads",
                 "log_every"):
        if getattr(args, flag) < 1:
            p.error(f"--{flag.replace('_', '-')} {getattr(args, flag)} must be >= 1")
    args.lengths = sorted(set(args.lengths))
    if args.train_len not in args.lengths:
        p.error(f"--lengths {args.lengths} must include --train-len {args.train_len} (the reference length)")
    if args.eval_bytes < max(args.lengths):
        p.error(f"--eval-bytes {args.eval_bytes} is below the longest length {max(args.lengths)}; raise it")
    require_writable(PROG, "--out", args.out)
    return args


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    import torch

    from bench_common import cpu_model, environment

    torch.set_num_threads(args.threads)
    load_before = round(os.getloadavg()[0], 2)
    began = time.perf_counter()
    train_bytes, held_bytes, data = stdlib_text(Path(sysconfig.get_paths()["stdlib"]))
    if len(held_bytes) < args.eval_bytes + 1:
        raise SystemExit(f"{PROG}: error: --eval-bytes {args.eval_bytes} exceeds the held-out text "
                         f"({len(held_bytes):,} bytes); lower it")
    text = torch.frombuffer(bytearray(train_bytes), dtype=torch.uint8).long() + 1
    stream = torch.frombuffer(bytearray(held_bytes[: args.eval_bytes + 1]), dtype=torch.uint8).long() + 1
    print(f"text: {data['train_bytes']:,} training bytes in {data['train_files']} files, {data['held_out_bytes']:,} "
          f"held out in {len(data['held_out_files'])}; scoring {args.eval_bytes:,}", flush=True)
    results, training = train_and_score(args, text, stream)
    model_text = f"dim {args.dim}, depth {args.depth}, z {args.zdim}, h {args.hdim}, EMA {args.ndim}, {args.attention}"
    command = "python scripts/bench/benchmark_extrapolation.py " + " ".join(
        f"--{k.replace('_', '-')} {' '.join(map(str, v)) if isinstance(v, list) else v}"
        for k, v in vars(args).items() if k not in ("out", "threads", "log_every"))
    result = {
        "machine": {**environment("cpu"), "cpu_model": cpu_model(), "cpu_count": os.cpu_count(),
                    "threads": args.threads, "load_before": load_before, "load_after": round(os.getloadavg()[0], 2)},
        "config": {"model": model_text, "steps": args.steps, "batch": args.batch, "train_len": args.train_len,
                   "lengths": args.lengths, "eval_bytes": args.eval_bytes, "lr": args.lr, "seed": args.seed},
        "data": data, "training": training, "results": results,
        "goal": goal(results, args.train_len, max(args.lengths)),
        "seconds": round(time.perf_counter() - began, 1), "command": command,
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "extrapolation.json").write_text(json.dumps(result, indent=1) + "\n")
    (args.out / "extrapolation.md").write_text(markdown(result))
    plot(result, args.out / "extrapolation.png")
    print(markdown(result))
    print(f"wrote {args.out / 'extrapolation.md'} (.json, .png) in {duration(result['seconds'])}")


if __name__ == "__main__":
    main()
