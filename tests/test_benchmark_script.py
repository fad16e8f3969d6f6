"""scripts/benchmark.py runs end to end on CPU and records a comparable row per implementation."""

import json
import runpy
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_benchmark_writes_json_and_markdown(tmp_path, monkeypatch):
    out = tmp_path / "speed"
    argv = ["benchmark.py", "--tasks", "listops", "pathx", "--impls", "lra_mega", "mega_pytorch",
            "--batch", "2", "--length", "48", "--steps", "2", "--warmup", "1", "--device", "cpu",
            "--out", str(out)]
    monkeypatch.setattr(sys, "argv", argv)
    runpy.run_path(str(ROOT / "scripts" / "benchmark.py"), run_name="__main__")
    data = json.loads(out.with_suffix(".json").read_text())
    rows = {(r["task"], r["impl"]): r for r in data["results"]}
    assert set(rows) == {("listops", "lra_mega"), ("listops", "mega_pytorch"),
                         ("pathx", "lra_mega"), ("pathx", "mega_pytorch")}
    ours = rows[("listops", "lra_mega")]
    assert ours["ms_mean"] > 0 and (ours["batch"], ours["length"]) == (2, 48)
    assert "not installed" in rows[("pathx", "mega_pytorch")].get("error", "not installed")
    assert "| listops | lra_mega | 2 | 48 |" in out.with_suffix(".md").read_text()
