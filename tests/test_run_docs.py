"""Docs that are true: no citation of a file the repository does not have, links and anchors that
resolve, every `python -m lra_mega` command in README.md and docs/ accepted by the harness, and the
example error lines what the harness prints."""

from __future__ import annotations

import itertools
import re
import shlex
from pathlib import Path

import pytest
from harness import TASKS, compose_config
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from lra_mega.__main__ import composition_message
from lra_mega.run.identity import hydra_overrides
from lra_mega.run.validate import check_config

REPO = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "outputs", "__pycache__", ".pytest_cache", "build", "dist"}
# README and the guides; docs/RESULTS.md is written by scripts/results_table.py from docs/results/
DOCS = [REPO / "README.md",
        *sorted(p for p in (REPO / "docs").glob("*.md") if p.name != "RESULTS.md")]
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.S | re.M)
NOT_OVERRIDES = ("-m", "--multirun", "--cfg", "job")  # a sweep's flag; printing the config


def _repo_files():
    for path in REPO.rglob("*"):
        if path.is_file() and not SKIP & set(path.relative_to(REPO).parts) and path.suffix in (
                ".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg"):
            yield path


def _prose(doc: Path) -> str:
    """The text of a doc without its fenced code blocks."""
    return FENCE.sub("", doc.read_text())


def _anchors(doc: Path) -> set[str]:
    """GitHub's anchors of a markdown file's headings."""
    headings = re.findall(r"^#+ (.+)$", _prose(doc), re.M)
    return {re.sub(r"[^\w\- ]", "", h.strip().lower()).replace(" ", "-") for h in headings}


def test_docs_cite_only_files_in_the_repository():
    cited = re.compile(r"DESIGN\.md")
    offenders = [str(p.relative_to(REPO)) for p in _repo_files()
                 if p.name != Path(__file__).name and cited.search(p.read_text(errors="ignore"))]
    assert offenders == []


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: str(p.relative_to(REPO)))
def test_links_and_anchors_resolve(doc):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _prose(doc)):
        if re.match(r"[a-z]+:", target):
            continue  # https:, mailto:
        path, _, anchor = target.partition("#")
        file = (doc.parent / path).resolve() if path else doc
        if not file.exists():
            broken.append(target)
        elif anchor and file.suffix == ".md" and anchor not in _anchors(file):
            broken.append(target)
    assert broken == [], f"{doc.relative_to(REPO)}: {broken}"


def test_every_script_the_docs_name_exists():
    named = {m for doc in [*DOCS, REPO / "docs" / "RESULTS.md"]
             for m in re.findall(r"\bscripts/[\w/]+\.(?:py|sh)\b", doc.read_text())}
    assert named and sorted(n for n in named if not (REPO / n).is_file()) == []


def _commands() -> list[tuple[str, str]]:
    """(doc, command line) for every `python -m lra_mega ...` the docs show: in code blocks (one a
    line, continuations joined) and in inline code."""
    found = []
    for doc in DOCS:
        text = doc.read_text()
        blocks = [block.replace("\\\n", " ") for block in FENCE.findall(text)]
        lines = [ln.strip() for block in blocks for ln in block.splitlines()]
        lines += [" ".join(m.split()) for m in re.findall(r"`(python -m lra_mega [^`]+)`", text)]
        found += [(doc.name, ln) for ln in lines if ln.startswith("python -m lra_mega ")]
    return found


def _runs(command: str) -> list[list[str]]:
    """The override lists a command stands for: `<task>` over the six tasks, and every job of a
    sweep (`-m`, comma-separated values); flags that only print (`--cfg job`) dropped."""
    runs = []
    for one in sorted({command.replace("<task>", task) for task in TASKS}):
        words = [w for w in shlex.split(one, comments=True)[3:] if w not in NOT_OVERRIDES]
        values = [[f"{w.split('=', 1)[0]}={v}" for v in w.split("=", 1)[1].split(",")]
                  if "=" in w and not re.search(r"[\[{'\"]", w) else [w] for w in words]
        runs += [list(r) for r in itertools.product(*values)]
    return runs


COMMANDS = _commands()


def test_the_docs_show_commands():
    docs = {doc for doc, _ in COMMANDS}
    assert len(COMMANDS) >= 30
    guides = {"USAGE.md", "CPU_RUNS.md", "SPT.md", "GPU.md", "SWEEPS.md", "RESUME.md", "PRESETS.md"}
    assert {"README.md", *guides} <= docs


@pytest.mark.parametrize("doc, command", COMMANDS, ids=[f"{d}: {c[19:70]}" for d, c in COMMANDS])
def test_every_command_in_the_docs_is_accepted(doc, command, offline_env):
    """Composed and checked as the CLI does before any data work (`--help` is test_run_checks')."""
    runs = _runs(command)
    if runs == [["--help"]]:
        pytest.skip("--help: tests/test_run_checks.py")
    for overrides in runs:
        try:
            cfg = compose_config(overrides)
            check_config(cfg, overrides)
        except Exception as err:  # noqa: BLE001
            raise AssertionError(f"{doc}: `{command}` ({' '.join(overrides)}): {err}") from err


def _printed(overrides: list[str]) -> str:
    try:
        cfg = compose_config(overrides)
    except ConfigCompositionException as err:
        return composition_message(err)
    try:
        check_config(cfg, hydra_overrides())
        instantiate(cfg.data)
    except Exception as err:  # noqa: BLE001
        return str(err.__cause__ or err)
    raise AssertionError(f"{overrides} was accepted")


@pytest.mark.parametrize("overrides", [
    ["task=pathfindr"],
    ["task=listops", "optim.lrr=1e-3"],
    ["task=listops", "+lr=1e-3"],
    ["task=listops", "data.batch_size=big"],
])
def test_example_errors_are_what_is_printed(overrides):
    examples = []
    for doc in DOCS:
        text = doc.read_text()
        examples += re.findall(r"^lra_mega: error: (.+)$", text, re.M)
        examples += re.findall(r"`lra_mega: error: ([^`]+)`", text)
    assert _printed(overrides) in examples
