"""results_table / report / curves on hand-made run directories (no training)."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest

from lra_mega.results.curves import curves_figure, read_curves, run_label
from lra_mega.results.report import collect, markdown_table


def _run(root: Path, name: str, task: str = "listops", *, seed: int | None = 1, test_acc: float = 0.6,
         digest: str | None = "A", experiment: str | None = "listops_paper", trainer: str = "default",
         overrides: list[str] | None = None, limited: bool | None = False, at_chance: bool | None = False,
         curves: list[list[tuple[int, float | None, float | None]]] | None = None) -> Path:
    """A run directory as train.py leaves it: results.json (+ csv versions of step, loss, acc)."""
    run_dir = root / name
    run_dir.mkdir(parents=True)
    result = {"task": task, "config_digest": f"{digest}{seed}", "test_acc": test_acc,
              "best_val_acc": test_acc + 0.01, "steps": 100, "wall_time_s": 61.0}
    if limited is not None:  # None: an old results.json without the run's identity
        result.update(experiment=experiment, trainer=trainer, limited=limited, seed=seed,
                      overrides=overrides or [f"experiment={experiment}", f"seed={seed}"],
                      seed_free_digest=digest, at_chance=at_chance)
    (run_dir / "results.json").write_text(json.dumps(result))
    for k, rows in enumerate(curves or []):
        path = run_dir / "csv" / f"version_{k}" / "metrics.csv"
        path.parent.mkdir(parents=True)
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["epoch", "step", "train/loss_step", "val/acc"])
            for step, loss, acc in rows:
                w.writerow([0, step, "" if loss is None else loss, "" if acc is None else acc])
    return run_dir


def _rows(table: str, section: str) -> list[list[str]]:
    part = table.split(f"## {section}")[1].split("## ")[0]
    rows = [ln for ln in part.splitlines() if ln.startswith("| ") and not ln.startswith("| task")]
    return [[c.strip() for c in ln.strip("|").split(" | ")] for ln in rows]


def test_two_seeds_give_mean_std_n_and_chance_count(tmp_path):
    _run(tmp_path, "lo1", seed=1, test_acc=0.60)
    _run(tmp_path, "lo2", seed=2, test_acc=0.64)
    _run(tmp_path, "px1", "pathx", seed=1, test_acc=0.50, digest="P", experiment="pathx_paper",
         at_chance=True)
    _run(tmp_path, "px2", "pathx", seed=2, test_acc=0.97, digest="P", experiment="pathx_paper")
    table = markdown_table(collect(tmp_path))
    assert "mean ± sample std" in table and "at chance" in table
    listops, pathx = _rows(table, "Against the paper")
    # task, model, preset, trainer, overrides, limited, n, seeds, test, best val, at chance,
    # paper Mega, Mega-chunk, Megalodon, S4, Transformer, steps
    assert listops[:3] == ["listops", "Mega", "listops_paper"] and listops[5:8] == ["no", "2", "1, 2"]
    # (60 + 64) / 2 = 62; sample std √(2·2²/1) = 2.83
    assert listops[8] == "62.00 ± 2.83" and listops[9] == "63.00 ± 2.83" and listops[10] == "0/2"
    assert listops[11:16] == ["63.14", "58.76", "63.79", "59.60", "36.37"]
    # (50 + 97) / 2 = 73.5; |97 - 50| / √2 = 33.23; one of the two stayed at chance
    assert pathx[8] == "73.50 ± 33.23" and pathx[10] == "1/2" and pathx[6] == "2"
    assert pathx[13] == "98.17" and pathx[15] == "fail (chance)"
    assert len(_rows(table, "Runs")) == 4


def test_model_column_tells_megalodon_runs_from_mega_runs(tmp_path):
    """The encoder results.json names; for runs recorded before it did, the preset or a
    ``model=megalodon`` override; Mega and Megalodon runs of one task are separate settings."""
    _run(tmp_path, "mega", seed=1, experiment="listops_lite", digest="A")
    _run(tmp_path, "lodon", seed=1, experiment="listops_megalodon_lite", digest="B")
    _run(tmp_path, "override", seed=1, experiment="listops_lite", digest="C",
         overrides=["experiment=listops_lite", "model=megalodon", "seed=1"])
    named = _run(tmp_path, "named", seed=1, experiment="listops_lite", digest="D")
    result = json.loads((named / "results.json").read_text())
    (named / "results.json").write_text(json.dumps({**result, "model": "MegalodonEncoder"}))
    rows = _rows(markdown_table(collect(tmp_path)), "Against the paper")
    assert [(r[1], r[2], r[4]) for r in rows] == [  # in the order of the run directories' names
        ("Megalodon", "listops_megalodon_lite", "–"), ("Mega", "listops_lite", "–"),
        ("Megalodon", "listops_lite", "–"), ("Megalodon", "listops_lite", "`model=megalodon`")]


def test_limited_runs_are_marked_and_left_out_unless_asked(tmp_path):
    _run(tmp_path, "paper", seed=1, test_acc=0.63)
    _run(tmp_path, "smoke", seed=1, test_acc=0.2, digest="S", experiment=None, trainer="smoke",
         overrides=["task=listops", "trainer=smoke", "optim.lr=3e-3", "hydra.run.dir=x"], limited=True)
    # an old results.json without identity: taken from .hydra/overrides.yaml
    old = _run(tmp_path, "old", seed=None, test_acc=0.1, limited=None)
    (old / ".hydra").mkdir()
    (old / ".hydra" / "overrides.yaml").write_text("- task=listops\n- data.limit_examples.train=16\n")
    results = collect(tmp_path)
    table = markdown_table(results)
    compared = _rows(table, "Against the paper")
    assert [r[7] for r in compared] == ["1"] and compared[0][8] == "63.00"
    assert "2 smoke or size-limited run(s) left out" in table and "--include-limited" in table
    runs = {r[1]: r for r in _rows(table, "Runs")}
    assert runs["smoke"][2:6] == ["–", "smoke", "`optim.lr=3e-3`", "yes"]
    assert runs["old"][4:6] == ["`data.limit_examples.train=16`", "yes"]
    assert runs["paper"][5] == "no"
    everything = _rows(markdown_table(results, include_limited=True), "Against the paper")
    assert len(everything) == 3 and sorted(r[5] for r in everything) == ["no", "yes", "yes"]


def test_run_dirs_behind_symlinks_are_found_once(tmp_path):
    runs, elsewhere = tmp_path / "runs", tmp_path / "elsewhere"
    runs.mkdir()
    _run(elsewhere, "a", seed=1)
    os.symlink(elsewhere / "a", runs / "linked")
    os.symlink(runs, runs / "loop")  # a cycle must not hang or double count
    _run(runs, "b", seed=2)
    assert sorted(r["_name"] for r in collect(runs)) == ["b", "linked"]


def test_started_over_run_is_not_joined_to_the_old_one(tmp_path):
    old = [(s, 2.3 - 0.1 * s, None) for s in range(10)] + [(9, None, 0.5)]
    new = [(s, 2.0 - 0.05 * s, None) for s in range(4)]
    curves = read_curves(_run(tmp_path, "r", curves=[old, new]))
    assert curves["train/loss_step"] == [(s, pytest.approx(2.0 - 0.05 * s)) for s in range(4)]
    assert curves["val/acc"] == []


def test_resumed_run_continues_and_replaces_the_killed_tail(tmp_path):
    first = [(s, float(s), None) for s in range(8)] + [(4, None, 0.3)]  # checkpoint at 4, killed at 7
    resumed = [(s, 100.0 + s, None) for s in range(5, 9)] + [(8, None, 0.4)]
    resumed.insert(1, (2, None, None))  # a ThroughputMonitor row of validation, its own batch count
    curves = read_curves(_run(tmp_path, "r", curves=[first, resumed]))
    assert curves["train/loss_step"] == [(0, 0.0), (1, 1.0), (2, 2.0), (3, 3.0), (4, 4.0),
                                         (5, 105.0), (6, 106.0), (7, 107.0), (8, 108.0)]
    assert curves["val/acc"] == [(4, 0.3), (8, 0.4)]


def test_curves_distinct_colours_split_class_counts_legend_outside(tmp_path):
    rows = [[(s, 1.0 / (s + 1), None) for s in range(5)] + [(4, None, 0.5)]]
    for i in range(12):
        task = "listops" if i % 2 else "pathfinder"
        _run(tmp_path, f"r{i:02d}", task, seed=i, digest=f"D{i}", curves=rows)
    results = collect(tmp_path)
    fig = curves_figure(results)
    lines = [ln for ax in fig.axes for ln in ax.get_lines() if ln.get_linestyle() != ":"]
    colors = {tuple(ln.get_color()) for ln in lines}
    assert len(lines) == 24 and len(colors) == 12  # 12 runs × (loss, acc), no colour repeated
    # 10-class and 2-class losses on separate axes
    by_axis = {ax.get_title(): len([ln for ln in ax.get_lines() if ln.get_linestyle() != ":"])
               for ax in fig.axes}
    assert by_axis["training loss, 10 classes"] == 6 and by_axis["training loss, 2 classes"] == 6
    # the legend covers no axes
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert len(fig.legends[0].get_texts()) == 12
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(renderer)), ax.get_title()


def test_many_runs_legend_is_not_clipped_nor_under_the_title(tmp_path):
    rows = [[(0, 0.7, None), (1, 0.6, 0.5)]]
    for i in range(40):  # long override names wrap to three legend lines each
        _run(tmp_path, f"pathfinder_lite+data.difficulty=6,model.chunk_size=512,trainer.max_steps={i}",
             "pathfinder", seed=1, digest=f"D{i}", curves=rows)
    fig = curves_figure(collect(tmp_path))
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    legend = fig.legends[0].get_window_extent(renderer)
    assert len(fig.legends[0].get_texts()) == 40
    page = fig.bbox
    assert page.y0 <= legend.y0 and legend.y1 <= page.y1 and legend.x1 <= page.x1, (legend, page)
    title = fig._suptitle.get_window_extent(renderer)
    assert not title.overlaps(legend)
    for ax in fig.axes:
        assert not legend.overlaps(ax.get_window_extent(renderer)), ax.get_title()


def test_script_writes_table_and_plot(tmp_path, run_cli):
    _run(tmp_path, "a", seed=1, curves=[[(0, 2.3, None), (1, 2.2, 0.2)]])
    proc = run_cli(str(tmp_path), "--include-limited", script="results_table.py")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "## Against the paper" in (tmp_path / "results.md").read_text()
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert not (tmp_path / "a" / "curves.png").exists()
    proc = run_cli(str(tmp_path), "--redraw-curves", script="results_table.py")
    assert proc.returncode == 0 and (tmp_path / "a" / "curves.png").read_bytes()[:4] == b"\x89PNG"
    bad = run_cli(str(tmp_path / "missing"), script="results_table.py")
    assert bad.returncode == 1 and "Traceback" not in bad.stderr and "not a directory" in bad.stderr


def test_pretraining_runs_are_listed_but_not_compared(tmp_path):
    _run(tmp_path, "ft1", seed=1, test_acc=0.40, experiment="listops_lite_spt")
    pre = _run(tmp_path, "pre1", seed=1, experiment="listops_lite_spt_pretrain", digest="P")
    result = json.loads((pre / "results.json").read_text())
    for key in ("test_acc", "best_val_acc"):
        result.pop(key)
    result.update(stage="pretrain", best_val_loss=1.23456, test_masked_acc=0.25)
    (pre / "results.json").write_text(json.dumps(result))
    table = markdown_table(collect(tmp_path))
    (compared,) = _rows(table, "Against the paper")
    assert compared[2] == "listops_lite_spt" and compared[8] == "40.00"
    assert "1 pretraining run(s)" in table
    runs = {r[1]: r for r in _rows(table, "Runs")}
    assert runs["pre1"][7] == "25.00 (masked)" and runs["pre1"][8] == "loss 1.2346"


def _edit(path: Path, **changes) -> None:
    result = json.loads((path / "results.json").read_text())
    result.update(changes)
    (path / "results.json").write_text(json.dumps(result))


def test_fine_tuning_counts_its_pretraining_steps_and_time(tmp_path):
    """Equal compute: a run started from a pretraining run (found by the checkpoint or directory
    its init_from names, also after export) shows both stages' steps and the sum of their times."""
    from lra_mega.results.report import export_runs

    runs = tmp_path / "runs"
    pre = _run(runs, "pre1", seed=1, experiment="listops_lite_spt_pretrain", digest="P")
    _edit(pre, stage="pretrain", steps=1000, wall_time_s=100.0,
          best_checkpoint="/old/pre1/checkpoints/best.ckpt", run_dir="/old/pre1")
    by_ckpt = _run(runs, "ft1", seed=1, experiment="listops_lite_spt", digest="F")
    _edit(by_ckpt, init_from="/old/pre1/checkpoints/best.ckpt")  # steps 100, 61 s
    by_dir = _run(runs, "ft2", seed=1, experiment="listops_lite_spt_dir", digest="G")
    _edit(by_dir, init_from="/old/pre1/")
    lost = _run(runs, "ft3", seed=1, experiment="listops_lite_spt_lost", digest="H")
    _edit(lost, init_from="/elsewhere/best.ckpt")
    for source in (runs, tmp_path / "docs"):
        if source != runs:
            export_runs(collect(runs), source)
        table = markdown_table(collect(source))
        steps_wall = sorted((r[16], r[17]) for r in _rows(table, "Against the paper"))
        # 1000 + 100 steps; 100 s + 61 s = 2 min 41 s
        assert steps_wall == [("100 (+ pretraining, not listed)", "0:01:01"),
                              ("1000 + 100", "0:02:41"), ("1000 + 100", "0:02:41")]
        (pre_row,) = [r for r in _rows(table, "Runs") if r[2] == "listops_lite_spt_pretrain"]
        assert pre_row[10:12] == ["1000", "0:01:40"]


def test_export_keeps_a_variant_apart_from_its_preset(tmp_path):
    """A run with overrides that change what it computes is exported beside its preset's runs of
    the same seed, never over them."""
    from lra_mega.results.report import export_runs

    runs = tmp_path / "runs"
    _run(runs, "a", "pathfinder", seed=1, experiment="pathfinder_lite", test_acc=0.51)
    _run(runs, "b", "pathfinder", seed=1, experiment="pathfinder_lite", digest="B", test_acc=0.80,
         overrides=["experiment=pathfinder_lite", "data.difficulty=6", "trainer.max_steps=2000", "seed=1"])
    _run(runs, "c", "pathfinder", seed=1, experiment="pathfinder_lite", digest="C", test_acc=0.60,
         overrides=["experiment=pathfinder_lite", "trainer=cpu", "trainer.max_steps=9000", "seed=1"])
    written = export_runs(collect(runs), tmp_path / "docs")
    names = sorted(p.relative_to(tmp_path / "docs").as_posix() for p in written)
    assert names == ["pathfinder_lite+data.difficulty=6,trainer.max_steps=2000/seed1",
                     "pathfinder_lite+trainer.max_steps=9000/seed1", "pathfinder_lite/seed1"]
    accs = sorted(json.loads((p / "results.json").read_text())["test_acc"] for p in written)
    assert accs == [0.51, 0.60, 0.80]


def test_legend_label_names_preset_and_seed_once():
    base = {"experiment": "listops_lite", "seed": 1}
    assert run_label({**base, "_name": "r"}) == "r · listops_lite · seed 1"
    assert run_label({**base, "_name": "listops_lite_old"}) == "listops_lite_old · listops_lite · seed 1"
    assert run_label({**base, "_name": "listops_lite/seed1", "at_chance": True}) == "listops_lite/seed1 (at chance)"
    long = run_label({**base, "_name": "listops_lite+trainer.max_steps=3600,trainer.val_check_interval=900/seed1"})
    assert long.replace("\n  ", " ") == "listops_lite+trainer.max_steps=3600, trainer.val_check_interval=900/seed1"
    assert max(len(line) for line in long.splitlines()) <= 60
