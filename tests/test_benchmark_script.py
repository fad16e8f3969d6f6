"""scripts/bench/benchmark.py: shapes from the composed paper configs, speed and --memory rows; benchmark_data --out;
benchmark_extrapolation at a smoke size."""

import json
import runpy
import sys
from pathlib import Path

import pytest
from omegaconf import OmegaConf

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "bench"
sys.path[:0] = [str(BENCH), str(ROOT / "scripts")]  # bench_common, out_paths


def _run_script(name, argv, monkeypatch):
    monkeypatch.setattr(sys, "argv", [name, *argv])
    runpy.run_path(str(BENCH / name), run_name="__main__")


def test_task_shapes_come_from_the_paper_configs():
    from bench_common import TASKS, paper_shapes

    shapes = paper_shapes(list(TASKS))
    assert set(shapes) == {"listops", "text", "retrieval", "image", "pathfinder", "pathx"}
    for task, shape in shapes.items():
        # read the task file directly (the experiment preset selects it)
        raw = OmegaConf.load(ROOT / "configs" / "task" / f"{task}.yaml")
        for key in ("depth", "dim", "zdim", "hdim", "attention", "norm", "prenorm", "chunk_size"):
            assert shape.model[key] == raw.model[key], (task, key)
        assert shape.batch == raw.data.batch_size, task
    assert shapes["retrieval"].dual and not shapes["text"].dual
    assert shapes["pathx"].length == 128 * 128 and shapes["image"].model["input_kind"] == "pixels"


def test_benchmark_writes_json_and_markdown(tmp_path, monkeypatch):
    out = tmp_path / "speed"
    _run_script("benchmark.py", ["--tasks", "listops", "pathx", "--impls", "lra_mega", "mega_pytorch",
                                 "--batch", "2", "--length", "48", "--steps", "2", "--warmup", "1",
                                 "--device", "cpu", "--out", str(out)], monkeypatch)
    data = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["task"], r["impl"]): r for r in data["results"]}
    assert set(rows) == {("listops", "lra_mega"), ("listops", "mega_pytorch"),
                         ("pathx", "lra_mega"), ("pathx", "mega_pytorch")}
    ours = rows[("listops", "lra_mega")]
    assert ours["ms_mean"] > 0 and (ours["batch"], ours["length"]) == (2, 48)
    assert "not installed" in rows[("pathx", "mega_pytorch")].get("error", "not installed")
    assert "| listops | lra_mega | 2 | 48 |" in out.with_suffix(".md").read_text()


def test_memory_mode_rows(tmp_path, monkeypatch):
    out = tmp_path / "memory"
    _run_script("benchmark.py", ["--memory", "--tasks", "retrieval", "pathx", "--impls", "lra_mega",
                                 "--length", "64", "--steps", "1", "--warmup", "0", "--layers", "pathx=1",
                                 "--out", str(out)], monkeypatch)
    data = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["task"], r["precision"]): r for r in data["results"]}
    assert set(rows) == {("retrieval", "fp32"), ("retrieval", "bf16"), ("pathx", "fp32"), ("pathx", "bf16")}
    retrieval = rows[("retrieval", "fp32")]
    assert retrieval["saved_mib_per_example"] > 0 and retrieval["gflop_per_example"] > 0
    assert retrieval["cpu_step_ms_batch1"] > 0 and retrieval["depth"] == 6
    assert rows[("pathx", "fp32")]["scaled_from_layers"] == 1
    assert "| retrieval | lra_mega | fp32 |" in out.with_suffix(".md").read_text()


def test_benchmark_data_writes_where_told(tmp_path, monkeypatch):
    before = {p: p.stat().st_mtime_ns for p in (ROOT / "docs" / "benchmarks").glob("data_cache.*")}
    try:
        _run_script("benchmark_data.py", ["--listops-n", "150", "--imdb-n", "8", "--out", str(tmp_path)],
                    monkeypatch)
    except SystemExit as done:  # a speed-up under 10x on tiny data ends with a message, not a crash
        assert "speedup" in str(done.code)
    assert json.loads((tmp_path / "data_cache.json").read_text())["results"]
    assert (tmp_path / "data_cache.md").exists()
    after = {p: p.stat().st_mtime_ns for p in (ROOT / "docs" / "benchmarks").glob("data_cache.*")}
    assert before == after  # docs/benchmarks untouched



def test_extrapolation_benchmark_smoke(tmp_path, monkeypatch):
    """Three tiny byte models on the stdlib text: every (bias, attention, length) the script
    promises, finite bits per byte, the markdown table, the plot and the goal record."""
    import torch

    out, threads = tmp_path / "extrap", torch.get_num_threads()
    try:
        _run_script("benchmark_extrapolation.py", [
            "--steps", "2", "--batch", "2", "--train-len", "32", "--lengths", "64", "32", "--eval-bytes", "128",
            "--dim", "16", "--depth", "1", "--zdim", "8", "--hdim", "16", "--ndim", "2", "--threads", "1",
            "--log-every", "1", "--out", str(out)], monkeypatch)
    finally:
        torch.set_num_threads(threads)  # the script sets the process's thread count
    data = json.loads((out / "extrapolation.json").read_text())
    rows = {(r["rel_pos"], r["attention"], r["length"]): r["bpb"] for r in data["results"]}
    assert set(rows) == {("simple", "full", 32), ("simple", "chunked", 64),
                         ("rotary", "full", 32), ("rotary", "full", 64), ("rotary", "chunked", 64),
                         ("dynamic", "full", 32), ("dynamic", "full", 64), ("dynamic", "chunked", 64)}
    assert all(0 < bpb < 9 for bpb in rows.values())  # a byte holds 8 bits; 257 classes at most ~8.006
    assert data["training"]["dynamic"]["max_len"] == 32 and data["training"]["rotary"]["max_len"] == 64
    assert data["data"]["held_out_files"] and data["data"]["train_bytes"] > 1_000_000
    assert data["machine"]["cpu_count"] and data["machine"]["threads"] == 1
    ratio = rows[("dynamic", "full", 64)] / rows[("dynamic", "full", 32)]
    assert data["goal"]["dynamic_ratio"] == pytest.approx(ratio, abs=1e-3)
    md = (out / "extrapolation.md").read_text()
    assert "| simple | full |" in md and "| dynamic | chunked |" in md and "Goal (issue 19)" in md
    assert (out / "extrapolation.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bits_per_byte_worked_by_hand():
    """``evaluate`` on a ten-byte stream with a model whose probabilities are known: logit ln 3 for
    "the next byte is this one + 1", 0 for the other 256 (p = 3/259 or 1/259). Windows of 4:
    (10 − 1) // 4 = 2, inputs [1 2 3 5] → [2 3 5 6] (3 right) and [6 7 7 8] → [7 7 8 20] (2 right)."""
    import math

    import torch
    from benchmark_extrapolation import evaluate

    class NextIsPlusOne(torch.nn.Module):
        def forward(self, window):
            logits = torch.zeros(*window.shape, 257)
            return logits.scatter_(-1, (window + 1).clamp(max=256).unsqueeze(-1), math.log(3.0))

    stream = torch.tensor([1, 2, 3, 5, 6, 7, 7, 8, 20, 21])
    by_hand = (5 * math.log2(259 / 3) + 3 * math.log2(259)) / 8
    for batch_bytes in (4, 16384):  # a window per batch, or both in one
        assert evaluate(NextIsPlusOne(), stream, 4, batch_bytes) == pytest.approx(by_hand, rel=1e-6)


@pytest.mark.parametrize("argv, needle", [
    (["--lengths", "512", "1024"], "must include --train-len 256"),
    (["--eval-bytes", "100"], "--eval-bytes 100 is below the longest length 4096"),
    (["--steps", "0"], "--steps 0 must be >= 1"),
])
def test_extrapolation_benchmark_bad_flags_name_the_fix(argv, needle, monkeypatch, capsys):
    with pytest.raises(SystemExit) as done:
        _run_script("benchmark_extrapolation.py", argv, monkeypatch)
    assert done.value.code == 2 and needle in capsys.readouterr().err


def test_megalodon_benchmark_pairs_each_preset_with_megas(tmp_path, monkeypatch):
    out = tmp_path / "megalodon"
    _run_script("benchmark_megalodon.py", ["--tasks", "pathfinder", "--length", "64", "--steps", "1",
                                           "--warmup", "0", "--out", str(out)], monkeypatch)
    rows = {(r["size"], r["model"]): r for r in json.loads(out.with_suffix(".json").read_text())["results"]}
    assert {k: r["preset"] for k, r in rows.items()} == {
        ("lite", "Mega"): "pathfinder_lite", ("lite", "Megalodon"): "pathfinder_megalodon_lite",
        ("paper", "Mega"): "pathfinder_paper", ("paper", "Megalodon"): "pathfinder_megalodon"}
    for size, batch in (("lite", 32), ("paper", 1)):
        mega, lodon = rows[(size, "Mega")], rows[(size, "Megalodon")]
        assert mega["step_batch"] == lodon["step_batch"] == batch
        assert lodon["step_vs_mega"] == pytest.approx(lodon["cpu_step_ms"] / mega["cpu_step_ms"])
        assert lodon["saved_mib_per_example"] > 0 and lodon["gflop_per_example"] > 0
    # the lite pair shares Mega's lite dims: within 2% in parameters
    assert rows[("lite", "Megalodon")]["params"] == pytest.approx(rows[("lite", "Mega")]["params"], rel=0.02)
    assert "| pathfinder | paper | Megalodon |" in out.with_suffix(".md").read_text()


def test_no_import_cycle_among_scripts():
    """scripts/ (and its gpu/, bench/) import their shared code from modules of scripts/ by path;
    none may import back (a cycle)."""
    import ast

    scripts = ROOT / "scripts"
    names = {p.stem for p in scripts.rglob("*.py")}
    assert len(names) == len(list(scripts.rglob("*.py"))), "two scripts share a module name"
    graph = {}
    for path in scripts.rglob("*.py"):
        imported = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module in names:
                imported.add(node.module)
            elif isinstance(node, ast.Import):
                imported |= {a.name for a in node.names if a.name in names}
        graph[path.stem] = imported - {path.stem}
    assert graph["benchmark"] and graph["benchmark_memory"] == {"bench_common"}

    def reaches(start: str, target: str, seen: set) -> bool:
        return any(n == target or (n not in seen and reaches(n, target, seen | {n})) for n in graph[start])

    cycles = [name for name in graph if reaches(name, name, {name})]
    assert not cycles, f"import cycle through {cycles}"


@pytest.mark.parametrize("script, args", [
    ("bench/benchmark.py", ["--out", "{file}/speed"]),
    ("bench/benchmark_data.py", ["--out", "{file}/sub"]),
    ("bench/benchmark_pathfinder.py", ["--out", "{file}/gen"]),
    ("bench/benchmark_lite.py", ["--out", "{file}"]),
    ("bench/benchmark_extrapolation.py", ["--out", "{file}/sub"]),
    ("bench/benchmark_megalodon.py", ["--out", "{file}/sub"]),
    ("results_table.py", ["{tmp}", "--out", "{file}/table.md"]),
    ("results_table.py", ["{tmp}", "--export", "{file}"]),
    ("generate_pathfinder.py", ["--samples", "{tmp}"]),
])
def test_unwritable_out_is_one_line_before_any_work(script, args, run_cli, tmp_path):
    blocker = tmp_path / "a_file"
    blocker.write_text("in the way\n")
    argv = [a.format(file=blocker, tmp=tmp_path) for a in args]
    out = run_cli(*argv, script=script, timeout=120)
    lines = [ln for ln in out.stderr.strip().splitlines() if ln.strip()]
    assert out.returncode == 1, out.stderr[-2000:]
    assert len(lines) == 1 and "error:" in lines[0] and "choose a path you can write" in lines[0], lines
