"""The GPU check's machine record and its ``summary.md``.

    python scripts/gpu/gpu_summary.py env ENV_JSON                    # GPU, driver, library versions
    python scripts/gpu/gpu_summary.py summary OUT_DIR STEPS_TSV ENV_JSON [--dry-run]

``summary.md`` names every file the check writes (and says which are missing), the status and
time of each step against its limit, and every figure: the attention self-check's verdict per
combination, pytest counts, the SDPA backend of each case, the speed table with the lra_mega / HF ratios, and the short paper runs.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
from collections import Counter
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

# every file the check leaves in OUT_DIR, and what it holds
FILES = {
    "summary.md": "this summary",
    "log.txt": "the last lines of each step's console output",
    "selfcheck.json": "the attention self-check per paper task's combination: passed, or why auto would fall back",
    "pytest.txt": "`pytest -m gpu` output: Triton kernels, every attention path, the lean EMA",
    "sdpa.json": "SDPA backend taken by the softmax path, per task / mask / precision, and each backend's cost",
    "speed.json": "step time and peak memory, lra_mega vs HF port vs mega-pytorch, fp32 and bf16",
    "speed.md": "the same as a table, with the lra_mega / HF ratios",
    "runs.json": "short paper runs: results.json, metrics.csv, loss start/end, steps/s, peak memory",
}
LIBRARIES = ("torch", "triton", "lightning", "torchmetrics", "hydra-core", "omegaconf", "numpy", "numba",
             "transformers", "tokenizers", "huggingface-hub", "mega-pytorch", "pytest")


def env_record(path: Path) -> None:
    """Write the machine record: GPU, driver (nvidia-smi), CUDA, library versions."""
    import torch

    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine()}
    for name in LIBRARIES:
        try:
            env[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            env[name] = "absent"
    env["torch_cuda"] = str(torch.version.cuda)
    env["cuda_available"] = torch.cuda.is_available()
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)
        env["gpu"] = props.name
        env["gpu_memory_gib"] = round(props.total_memory / 2**30, 1)
        env["compute_capability"] = f"{props.major}.{props.minor}"
        env["bf16_supported"] = torch.cuda.is_bf16_supported()
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=name,driver_version,memory.total",
                              "--format=csv,noheader"], capture_output=True, text=True, timeout=20)
        env["nvidia_smi"] = smi.stdout.strip() or smi.stderr.strip()
    except (OSError, subprocess.TimeoutExpired) as err:
        env["nvidia_smi"] = f"not available ({type(err).__name__})"
    path.write_text(json.dumps(env, indent=2))
    print("\n".join(f"{k}: {v}" for k, v in env.items()))


def load(path: Path) -> Any:
    """A JSON file, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def steps_section(steps_tsv: Path) -> list[str]:
    lines = ["## Steps", "", "| step | status | seconds | limit s | note |", "|---|---|---|---|---|"]
    total = 0.0
    for row in steps_tsv.read_text().splitlines() if steps_tsv.exists() else []:
        name, status, seconds, limit, note = (row.split("\t") + [""] * 5)[:5]
        total += float(seconds or 0)
        lines.append(f"| {name} | {status} | {seconds} | {limit} | {note} |")
    return lines + ["", f"Total: {total:.0f} s.", ""]


def selfcheck_section(out: Path) -> list[str]:
    report = load(out / "selfcheck.json")
    lines = ["## Self-check of the GPU attention paths (what impl=auto runs)", ""]
    if not report:
        return lines + ["No selfcheck.json (see the steps).", ""]
    lines += [f"On {report['device']}, {report['length']} positions a check"
              + (" (dry run: Triton's interpreter on the CPU)." if report.get("dry_run") else "."), "",
              "| fn | path | zdim | hdim | keys | dtype | tasks | max error | tolerance | verdict |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for r in report["results"]:
        error = "" if r.get("error") is None else f"{r['error']:.2g}"
        tol = "" if r.get("tolerance") is None else f"{r['tolerance']:.0e}"
        path = r.get("path") or ("sdpa" if r["fn"] == "softmax" else "triton")
        lines.append(f"| {r['fn']} | {path} | {r['zdim']} | {r['hdim']} | {'masked' if r['masked'] else 'dense'} | "
                     f"{r['dtype']} | {', '.join(r['tasks'])} | {error} | {tol} | {r['verdict']} |")
    return lines + [""]


def pytest_section(out: Path) -> list[str]:
    lines = ["## pytest -m gpu", ""]
    text = (out / "pytest.txt").read_text() if (out / "pytest.txt").exists() else ""
    closing = re.compile(r"=+ .*\d+ (passed|failed|skipped|error)")
    finals = [ln.strip("= ") for ln in text.splitlines() if closing.match(ln)]
    lines.append(f"Result: {finals[-1] if finals else 'no closing line (killed at its limit?)'}.")
    # -v lines, one per test: they survive a run killed at its limit
    outcomes = re.findall(r"^(\S+)::(\S+) (PASSED|FAILED|SKIPPED|ERROR|XFAIL|XPASS)", text, re.M)
    per_file = Counter((path, outcome.lower()) for path, _, outcome in outcomes)
    for path in dict.fromkeys(path for path, _, _ in outcomes):
        counts = ", ".join(f"{n} {outcome}" for (p, outcome), n in per_file.items() if p == path)
        lines.append(f"- {path}: {counts}")
    failed = [f"{path}::{test}" for path, test, outcome in outcomes if outcome in ("FAILED", "ERROR")]
    if failed:
        lines += ["", "Failed:", ""] + [f"- {t}" for t in failed]
    return lines + [""]


def fmt(entry: dict[str, Any] | None) -> str:
    if not entry:
        return ""
    if "error" in entry:
        refused = re.search(r"No (available kernel|viable backend)", entry["error"])
        return "refused" if refused else entry["error"][:50]
    peak = entry.get("peak_gib")
    return f"{entry['ms']:.2f} ms" + ("" if peak is None or peak != peak else f" / {peak:.2f} GiB")


def sdpa_section(out: Path) -> list[str]:
    report = load(out / "sdpa.json")
    lines = ["## SDPA backend of the softmax path (forward + backward)", ""]
    if not report:
        return lines + ["No sdpa.json (see the steps).", ""]
    lines += ["| task | mask | precision | default takes | default | flash | efficient | cudnn | math |",
              "|---|---|---|---|---|---|---|---|---|"]
    for row in report["results"]:
        default = row.get("default") or {}
        taken = default.get("backend") or row.get("error") or default.get("error", "")
        cells = [fmt(row.get(k)) for k in ("default", "flash", "efficient", "cudnn", "math")]
        lines.append(f"| {row['task']} | {row['mask']} | {row['precision']} | {taken} | "
                     + " | ".join(cells) + " |")
    lines += ["", "Times are medians of fwd + bwd of `lra_mega.model.attend`; "
              "GiB is the peak above the inputs.", ""]
    reasons: dict[str, dict[str, None]] = {}
    for row in report["results"]:
        for backend in ("flash", "efficient", "cudnn", "math"):
            for reason in (row.get(backend) or {}).get("reasons", []):
                reasons.setdefault(backend, {})[reason] = None
    if reasons:
        lines += ["Why PyTorch refused a forced backend (its warnings, all cases together):", ""]
        lines += [f"- {backend}: {' / '.join(found)}" for backend, found in reasons.items()]
        lines.append("")
    return lines


def speed_section(out: Path) -> list[str]:
    lines = ["## Speed: one training step per implementation (scripts/bench/benchmark.py's step)", ""]
    md = out / "speed.md"
    return lines + ([md.read_text().strip(), ""] if md.exists() else ["No speed.md (see the steps).", ""])


def runs_section(out: Path) -> list[str]:
    runs = load(out / "runs.json")
    lines = ["## Short paper runs", ""]
    if not runs:
        return lines + ["No runs.json (see the steps).", ""]
    lines += ["| run | verdict | steps | loss start → end | steps/s | peak allocated GiB | wall s |",
              "|---|---|---|---|---|---|---|"]
    for name, e in runs.items():
        steps = (e.get("results") or {}).get("steps", "")
        loss = f"{e['loss_start']:.4f} → {e['loss_end']:.4f}" if "loss_start" in e else ""
        rate = f"{e['steps_per_s']:.2f}" if "steps_per_s" in e else ""
        peak = f"{e['peak_allocated_gib']:.2f}" if "peak_allocated_gib" in e else "n/a (CPU)"
        lines.append(f"| {name} | {e.get('verdict', '')} | {steps} | {loss} | {rate} | {peak} | "
                     f"{e.get('wall_s', '')} |")
    return lines + [""]


def goals_section(out: Path, dry_run: bool) -> list[str]:
    """The issue's goals in one place: kernels equal brute force, ratios to the HF port."""
    lines = ["## Goals", ""]
    if dry_run:
        return lines + ["Not judged: CPU dry run (tiny shapes; nothing ran on CUDA).", ""]
    text = (out / "pytest.txt").read_text() if (out / "pytest.txt").exists() else ""
    kernel_fail = re.findall(r"test_kernels_triton.py::\S+ (?:FAILED|ERROR)", text)
    kernel_pass = re.search(r"test_kernels_triton.py::test_compiled\S* PASSED", text) is not None
    lines.append(f"- Triton kernels equal to the reference on CUDA: "
                 f"{'yes' if kernel_pass and not kernel_fail else 'NO or not run'}")
    checks = (load(out / "selfcheck.json") or {}).get("results", [])
    failed = [r for r in checks if r["verdict"].startswith("FAILED")]
    passed = sum(r["verdict"] == "passed" for r in checks)
    lines.append(f"- attention self-check: {passed} of {len(checks)} combinations passed"
                 + (f"; FAILED (auto falls back): {', '.join(r['fn'] + ' ' + r['dtype'] for r in failed)}"
                    if failed else ""))
    speed = load(out / "speed.json") or {}
    for r in speed.get("ratios", []):
        lines.append(f"- {r['task']} {r['precision']}: step time ×{r['time_ratio']:.3f} of HF "
                     f"({'met' if r['time_goal_met'] else 'NOT met'}, goal ≤ 0.25), peak memory "
                     f"×{r['memory_ratio']:.3f} ({'met' if r['memory_goal_met'] else 'NOT met'}, goal ≤ 0.33)")
    if not speed.get("ratios"):
        lines.append("- lra_mega / HF ratios: none measured (HF port missing or failed; see speed.md)")
    for name, run in (load(out / "runs.json") or {}).items():
        lines.append(f"- {name} paper run: {run.get('verdict', 'no verdict')}")
    return lines + [""]


def summary(out: Path, steps_tsv: Path, env_json: Path, dry_run: bool) -> None:
    env = load(env_json) or {}
    mode = "CPU dry run (tiny shapes and steps; CUDA-only parts skip)" if dry_run else "on the GPU"
    lines = [f"# GPU check — {mode}", "",
             f"Written {datetime.now(timezone.utc):%Y-%m-%d %H:%M UTC} by scripts/gpu/gpu_check.sh.", "",
             "## Machine", ""]
    lines += [f"- {k}: {v}" for k, v in env.items()] or ["- (no machine record: the env step failed)"]
    lines += [""] + steps_section(steps_tsv) + goals_section(out, dry_run)
    lines += selfcheck_section(out) + pytest_section(out) + sdpa_section(out) + speed_section(out) + runs_section(out)
    lines += ["## Files", ""]
    for name, what in FILES.items():
        state = "" if (out / name).exists() or name == "summary.md" else " — MISSING"
        lines.append(f"- `{name}`: {what}{state}")
    (out / "summary.md").write_text("\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    env = sub.add_parser("env", help="write the machine record")
    env.add_argument("env_json", type=Path)
    summ = sub.add_parser("summary", help="write OUT_DIR/summary.md")
    summ.add_argument("out_dir", type=Path)
    summ.add_argument("steps_tsv", type=Path)
    summ.add_argument("env_json", type=Path)
    summ.add_argument("--dry-run", action="store_true")
    args = parser.parse_args(argv)
    if args.command == "env":
        env_record(args.env_json)
    else:
        summary(args.out_dir, args.steps_tsv, args.env_json, args.dry_run)


if __name__ == "__main__":
    sys.exit(main())
