"""scripts/evaluate.py and scripts/results_table.py on a real (smoke) run."""

from __future__ import annotations

import json

import pytest
import torch
from harness import compose_config
from hydra.utils import instantiate

from lra_mega.training.classifier import LRAClassifier
from lra_mega.run.train import train


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory, lra_cache):
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("LRA_MEGA_CACHE", str(lra_cache))
    runs = tmp_path_factory.mktemp("runs")
    run_dir = runs / "listops_smoke"
    cfg = compose_config(["task=listops", "trainer=smoke", "logger=csv", "callbacks.progress_bar=null",
                          "data.limit_examples.test=10"], output_dir=run_dir)
    results = train(cfg)
    mp.undo()
    return runs, run_dir, results, cfg


def _accuracy_by_hand(ckpt, cfg) -> tuple[float, int]:
    model = LRAClassifier.load_from_checkpoint(ckpt, map_location="cpu").eval()
    dm = instantiate(cfg.data)
    dm.setup("test")
    correct = total = 0
    with torch.no_grad():
        for batch in dm.test_dataloader():
            pred = model(batch["input"], batch["mask"]).argmax(-1)
            correct += int((pred == batch["label"]).sum())
            total += len(batch["label"])
    return correct / total, total


def test_evaluate_reports_whole_split_accuracy(smoke_run, run_cli, tmp_path):
    runs, run_dir, results, cfg = smoke_run
    ckpt = run_dir / "checkpoints" / "last.ckpt"
    out = tmp_path / "eval.json"
    proc = run_cli(str(ckpt), "test", "--out", str(out), script="evaluate.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(out.read_text())
    expected, n = _accuracy_by_hand(ckpt, cfg)
    # 10 test examples in batches of 4: the last, partial batch counts too
    assert report["examples"] == n == 10
    assert report["acc"] == pytest.approx(expected)
    assert report["task"] == "listops" and report["split"] == "test"
    assert f"{100 * expected:.2f}%" in proc.stdout


def test_evaluate_rejects_foreign_checkpoint(run_cli, tmp_path):
    bogus = tmp_path / "x.ckpt"
    torch.save({"state_dict": {}}, bogus)
    proc = run_cli(str(bogus), script="evaluate.py")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    assert "python -m lra_mega" in proc.stderr


def test_results_table_and_curves(smoke_run, run_cli):
    runs, run_dir, results, _ = smoke_run
    proc = run_cli(str(runs), script="results_table.py")
    assert proc.returncode == 0, proc.stderr[-3000:]
    table = (runs / "results.md").read_text()
    # a smoke run is listed, marked limited, and left out of the comparison with the paper
    assert "1 smoke or size-limited run(s) left out" in table
    runs_part = table.split("## Runs")[1]
    row = next(line for line in runs_part.splitlines() if line.startswith("| listops"))
    cells = [c.strip() for c in row.strip("|").split("|")]
    # task, run, preset, trainer, overrides, limited, seed, test acc (%), best val (%), at chance, steps
    assert cells[:2] == ["listops", "listops_smoke"] and cells[3] == "smoke" and cells[5] == "yes"
    assert cells[7] == f"{100 * results['test_acc']:.2f}"
    assert cells[10] == "6"
    png = (runs / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_evaluate_bad_checkpoint_is_one_line(run_cli, tmp_path, smoke_run):
    _, run_dir, _, _ = smoke_run
    cut = tmp_path / "cut.ckpt"
    cut.write_bytes((run_dir / "checkpoints" / "last.ckpt").read_bytes()[:3000])
    proc = run_cli(str(cut), "test", script="evaluate.py")
    lines = [ln for ln in proc.stderr.splitlines() if ln.startswith("evaluate: error:")]
    assert proc.returncode == 1 and "Traceback" not in proc.stderr and len(lines) == 1
    assert str(cut) in lines[0] and "truncated or corrupt" in lines[0] and "best-*.ckpt" in lines[0]


@pytest.mark.parametrize("override, needle", [
    ("model.dim=3", "model.dim cannot be changed at evaluation"),
    ("data.rot=/x", "unknown key data.rot; nearest valid: data.root"),
    ("data.root", "'data.root' is not key=value"),
    ("split=val", "unknown key split"),
])
def test_evaluate_bad_overrides_name_the_key(smoke_run, override, needle):
    from lra_mega.run.evaluation import parse_overrides

    _, _, _, cfg = smoke_run
    from omegaconf import OmegaConf

    with pytest.raises(ValueError, match=needle.replace("*", r"\*")):
        parse_overrides([override], OmegaConf.to_container(cfg, resolve=True))
    assert parse_overrides(["data.root=/x", "data.batch_size=2"], OmegaConf.to_container(cfg, resolve=True))
