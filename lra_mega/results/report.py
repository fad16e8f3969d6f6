"""Collect ``results.json`` files into a markdown table against the paper (mean ± std over seeds).

Runs are grouped by task and the config digest without the seed (``seed_free_digest``): a
group is one setting, its runs are its seeds. Smoke or size-limited runs (``limited``) are
listed but left out of the comparison with the paper unless asked for. Curves: see
:mod:`lra_mega.results.curves`.
"""

from __future__ import annotations

import json
import os
import statistics
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

TASK_ORDER = ("listops", "text", "retrieval", "image", "pathfinder", "pathx")
NUM_CLASSES = {"listops": 10, "text": 2, "retrieval": 2, "image": 10, "pathfinder": 2, "pathx": 2}
# Test accuracy (%) of Mega, Mega-chunk (Ma et al. 2022) and S4 v2 (docs/PRESETS.md).
PAPER = {
    "listops": (63.14, 58.76, 59.60),
    "text": (90.43, 90.19, 86.82),
    "retrieval": (91.25, 90.97, 90.90),
    "image": (90.44, 85.80, 88.65),
    "pathfinder": (96.01, 94.41, 94.20),
    "pathx": (97.98, 93.81, 96.35),
}
# Test accuracy (%) of Megalodon (Ma et al. 2024, arXiv 2404.08801, the LRA table; average 88.63).
PAPER_MEGALODON = {"listops": 63.79, "text": 90.48, "retrieval": 91.76, "image": 89.42,
                   "pathfinder": 98.13, "pathx": 98.17}
MODELS = {"MegaEncoder": "Mega", "MegalodonEncoder": "Megalodon"}
# Test accuracy (%) of the vanilla Transformer in the LRA paper (Tay et al. 2021, Table 1);
# None: it failed (chance level) on Path-X.
TRANSFORMER = {"listops": 36.37, "text": 64.27, "retrieval": 57.46, "image": 42.44,
               "pathfinder": 71.40, "pathx": None}
# overrides that say where a run lives or how it logs, or that have their own column
_QUIET = ("seed", "hydra", "paths", "logger", "callbacks.progress_bar", "resume", "data.root",
          "data.cache_dir", "data.num_workers", "data.pin_memory")
# config-group choices with their own column; their keys (`trainer.max_steps=…`) are shown
_CHOICES = ("task", "experiment", "trainer")
_LIMITING = ("trainer=smoke", "data.limit_examples", "trainer.limit_train_batches",
             "trainer.limit_test_batches", "trainer.fast_dev_run", "trainer.overfit_batches")


def _result_dirs(runs_dir: Path) -> list[Path]:
    """Directories holding a results.json under ``runs_dir``, following symlinked directories
    (each real directory once, so a link loop or a second link is harmless)."""
    found, seen = [], set()
    for root, dirs, files in os.walk(runs_dir, followlinks=True):
        real = os.path.realpath(root)
        if real in seen:
            dirs[:] = []
            continue
        seen.add(real)
        if "results.json" in files:
            found.append(Path(root))
    return found


def _overrides_file(run_dir: Path) -> list[str]:
    path = run_dir / ".hydra" / "overrides.yaml"
    if not path.is_file():
        return []
    lines = path.read_text().splitlines()
    return [ln[2:].strip().strip("'\"") for ln in lines if ln.startswith("- ")]


def _fill_identity(result: dict[str, Any], run_dir: Path) -> None:
    """Results written before runs recorded their identity: take it from .hydra/overrides.yaml."""
    if "overrides" in result and "limited" in result:
        return
    overrides = result.get("overrides") or _overrides_file(run_dir)
    choice = {o.split("=", 1)[0]: o.split("=", 1)[1] for o in overrides if "=" in o}
    result.setdefault("overrides", overrides)
    result.setdefault("experiment", choice.get("experiment"))
    result.setdefault("trainer", choice.get("trainer", "default"))
    result.setdefault("seed", int(choice["seed"]) if choice.get("seed", "").isdigit() else None)
    result.setdefault("limited", any(o.lstrip("+").startswith(_LIMITING) for o in overrides))


def collect(runs_dir: str | Path) -> list[dict[str, Any]]:
    """Every ``results.json`` under ``runs_dir`` (symlinks followed), by task, then path."""
    runs_dir = Path(runs_dir)
    results = []
    for run_dir in _result_dirs(runs_dir):
        result = json.loads((run_dir / "results.json").read_text())
        result["_dir"] = run_dir
        result["_name"] = str(run_dir.relative_to(runs_dir))
        _fill_identity(result, run_dir)
        results.append(result)
    _link_pretraining(results)
    order = {t: i for i, t in enumerate(TASK_ORDER)}
    return sorted(results, key=lambda r: (order.get(r["task"], len(order)), r["_name"]))


def _link_pretraining(results: list[dict[str, Any]]) -> None:
    """Give each fine-tuning run (``init_from``) the steps and wall time of the pretraining run
    it started from, found by the checkpoint or run directory ``init_from`` recorded (paths as
    the runs wrote them, so the link survives ``export_runs``), so that a comparison at equal
    compute counts both stages."""
    pretrained = {}
    for r in results:
        if r.get("stage") == "pretrain":
            for key in ("best_checkpoint", "run_dir"):
                if r.get(key):
                    pretrained[os.path.normpath(r[key])] = r
    for r in results:
        if r.get("init_from"):
            r["_pretraining"] = pretrained.get(os.path.normpath(r["init_from"]))


EXPORTED = ("results.json", "curves.png", "csv/version_*/metrics.csv", ".hydra/overrides.yaml")


def export_runs(results: list[dict[str, Any]], dest: str | Path) -> list[Path]:
    """Copy what matters of each run (results.json, curves.png, the csv logs, the overrides) to
    ``dest/<preset or task>[+<overrides>]/seed<N>/`` (the overrides that change what it computes,
    so a variant never lands on its preset's runs); returns the run directories written."""
    import shutil

    written = []
    for r in results:
        name = str(r.get("experiment") or r["task"])
        changed = shown_overrides(r)
        if changed:
            name += "+" + changed.replace(" ", ",").replace("/", "_")
        target = Path(dest) / name / f"seed{r.get('seed')}"
        if target.resolve() == Path(r["_dir"]).resolve():
            continue
        for pattern in EXPORTED:
            for src in sorted(Path(r["_dir"]).glob(pattern)):
                out = target / src.relative_to(r["_dir"])
                out.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(src, out)
        written.append(target)
    return written


def model_of(result: dict[str, Any]) -> str:
    """Mega or Megalodon: the encoder ``results.json`` names, else (runs recorded before it named
    one) Megalodon when the preset or an override (``model=megalodon``) says so."""
    if result.get("model"):
        return MODELS.get(result["model"], result["model"])
    said = [str(result.get("experiment") or ""), *(o for o in result.get("overrides") or [] if o.startswith("model="))]
    return "Megalodon" if any("megalodon" in s for s in said) else "Mega"


def shown_overrides(result: dict[str, Any]) -> str:
    """The overrides that change what a run computes (not seed, paths, loggers, or choices
    that have their own column)."""
    kept = []
    for ov in result.get("overrides") or []:
        key = ov.lstrip("+~").split("=", 1)[0]
        if key not in _CHOICES and not any(key == q or key.startswith(q + ".") for q in _QUIET):
            kept.append(ov)
    return " ".join(kept)


@dataclass
class Group:
    """Runs of one setting (task + config digest without the seed): its seeds."""

    task: str
    runs: list[dict[str, Any]] = field(default_factory=list)

    @property
    def first(self) -> dict[str, Any]:
        return self.runs[0]

    @property
    def n(self) -> int:
        return len(self.runs)

    @property
    def limited(self) -> bool:
        return any(r.get("limited") for r in self.runs)

    @property
    def at_chance(self) -> int:
        return sum(1 for r in self.runs if r.get("at_chance") is True)

    @property
    def seeds(self) -> list:
        return [r.get("seed") for r in self.runs]

    def joined(self, key: str) -> str:
        """The runs' values of ``key`` (one when they agree), ``–`` for none."""
        values = sorted({str(r.get(key)) for r in self.runs if r.get(key)})
        return ", ".join(values) or "–"

    def stats(self, key: str) -> tuple[float | None, float | None, int]:
        """(mean, sample std or None, count) of ``key`` over the runs that have it."""
        values = [r[key] for r in self.runs if r.get(key) is not None]
        if not values:
            return None, None, 0
        std = statistics.stdev(values) if len(values) > 1 else None
        return statistics.fmean(values), std, len(values)


def group_runs(results: list[dict[str, Any]]) -> list[Group]:
    """Groups in first-seen order; results without a seed-free digest stand alone."""
    groups: dict[tuple, Group] = {}
    for r in results:
        digest = r.get("seed_free_digest") or f"run:{r['_name']}"
        groups.setdefault((r["task"], digest), Group(r["task"])).runs.append(r)
    return list(groups.values())


def _pct(x: float | None) -> str:
    return "–" if x is None else f"{100 * x:.2f}"


def mean_std(mean: float | None, std: float | None) -> str:
    """``63.10 ± 0.42`` (%), or the single value when there is one run."""
    if mean is None:
        return "–"
    return _pct(mean) if std is None else f"{_pct(mean)} ± {100 * std:.2f}"


def run_steps(result: dict[str, Any]) -> str:
    """Its steps; ``<pretraining> + <fine-tuning>`` for a run started from a pretraining run."""
    steps = str(result.get("steps", "–"))
    if not result.get("init_from"):
        return steps
    source = result.get("_pretraining")
    if source is None:
        return f"{steps} (+ pretraining, not listed)"
    return f"{source.get('steps', '?')} + {steps}"


def run_wall_time(result: dict[str, Any]) -> float | None:
    """Its wall time, with the pretraining run's when it started from one that is listed."""
    source = result.get("_pretraining")
    if source is None:
        return result.get("wall_time_s")
    return (result.get("wall_time_s") or 0) + (source.get("wall_time_s") or 0)


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "–"
    minutes, s = divmod(int(round(seconds)), 60)
    h, m = divmod(minutes, 60)
    return f"{h}:{m:02d}:{s:02d}"


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"


def _code(text: str) -> str:
    return f"`{text}`" if text else "–"


def comparison_table(groups: list[Group]) -> list[str]:
    """One row per setting: mean ± std of test and best val accuracy over its seeds."""
    lines = [
        _row(["task", "model", "preset", "trainer", "overrides", "limited", "n", "seeds", "test acc",
              "best val acc", "at chance", "paper Mega", "paper Mega-chunk", "paper Megalodon", "S4",
              "Transformer (LRA)", "steps", "wall time", "machine"]),
        "|" + "---|" * 19,
    ]
    for g in groups:
        r = g.first
        mega, mega_chunk, s4 = [f"{x:.2f}" for x in PAPER.get(g.task, ())] or ["–"] * 3
        megalodon = PAPER_MEGALODON.get(g.task)
        transformer = TRANSFORMER.get(g.task, "–")
        walls = [w for w in map(run_wall_time, g.runs) if w is not None]
        lines.append(_row([
            g.task, ", ".join(sorted({model_of(r) for r in g.runs})), g.joined("experiment"),
            g.joined("trainer"), _code(shown_overrides(r)),
            "yes" if g.limited else "no", g.n,
            ", ".join("–" if s is None else str(s) for s in g.seeds),
            mean_std(*g.stats("test_acc")[:2]), mean_std(*g.stats("best_val_acc")[:2]),
            f"{g.at_chance}/{g.n}", mega, mega_chunk, "–" if megalodon is None else f"{megalodon:.2f}", s4,
            "fail (chance)" if transformer is None else transformer,
            ", ".join(sorted(set(map(run_steps, g.runs)))),
            _duration(statistics.fmean(walls) if walls else None), g.joined("machine"),
        ]))
    return lines


def runs_table(results: list[dict[str, Any]]) -> list[str]:
    """One row per run, limited ones marked."""
    lines = [
        _row(["task", "run", "preset", "trainer", "overrides", "limited", "seed", "test acc",
              "best val acc", "at chance", "steps", "wall time"]),
        "|" + "---|" * 12,
    ]
    for r in results:
        chance = {True: "yes", False: "no"}.get(r.get("at_chance"), "–")
        test, val = _pct(r.get("test_acc")), _pct(r.get("best_val_acc"))
        if r.get("stage", "classify") != "classify":  # pretraining: masked accuracy and loss
            test = f"{_pct(r.get('test_masked_acc'))} (masked)"
            val = "–" if r.get("best_val_loss") is None else f"loss {r['best_val_loss']:.4f}"
        lines.append(_row([
            r["task"], r["_name"], r.get("experiment") or "–", r.get("trainer") or "–",
            _code(shown_overrides(r)), "yes" if r.get("limited") else "no",
            "–" if r.get("seed") is None else r["seed"], test, val, chance, run_steps(r),
            _duration(run_wall_time(r)),
        ]))
    return lines


def markdown_table(results: list[dict[str, Any]], include_limited: bool = False) -> str:
    """The comparison with the paper (settings × seeds) and the list of every run; pretraining
    runs (``stage=pretrain``: no accuracy on the task) are in the list only."""
    classifiers = [r for r in results if r.get("stage", "classify") == "classify"]
    compared = [r for r in classifiers if include_limited or not r.get("limited")]
    left_out = len(classifiers) - len(compared)
    out = [
        "## Against the paper",
        "",
        "Test and best validation accuracy (%) as mean ± sample std over the runs of one setting "
        "(same task and config digest without the seed); n: runs, seeds: their seeds; at chance: "
        "runs whose validation accuracy never left chance level (included in the mean). Model: the "
        "encoder that ran. Paper: Mega, Mega-chunk (Ma et al. 2022), Megalodon (Ma et al. 2024), "
        "S4; Transformer (LRA): the vanilla Transformer of "
        "the LRA paper (Tay et al. 2021). Wall time: mean per run, data generation included; "
        "a run fine-tuned from a pretraining run (`init_from`) counts both: its steps read "
        "`<pretraining> + <fine-tuning>` and its wall time is the sum.",
        "",
    ]
    if compared:
        out += comparison_table(group_runs(compared))
    else:
        out.append("No full-size runs yet.")
    if left_out:
        out += ["", f"{left_out} smoke or size-limited run(s) left out of this comparison "
                    "(`--include-limited` adds them)."]
    if len(classifiers) < len(results):
        out += ["", f"{len(results) - len(classifiers)} pretraining run(s) (stage=pretrain) are listed under "
                    "Runs only: their numbers are a loss, not the task's accuracy."]
    out += ["", "## Runs", ""] + runs_table(results)
    return "\n".join(out) + "\n"
