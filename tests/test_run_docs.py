"""Docs that are true: no citation of a file the repository does not have, and the README's
example error lines are what the harness prints."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from harness import compose_config
from hydra.errors import ConfigCompositionException
from hydra.utils import instantiate

from lra_mega.__main__ import composition_message
from lra_mega.identity import hydra_overrides
from lra_mega.validate import check_config

REPO = Path(__file__).resolve().parents[1]
SKIP = {".git", ".venv", "outputs", "__pycache__", ".pytest_cache", "build", "dist"}


def _repo_files():
    for path in REPO.rglob("*"):
        if path.is_file() and not SKIP & set(path.relative_to(REPO).parts) and path.suffix in (
                ".py", ".md", ".yaml", ".yml", ".toml", ".txt", ".cfg"):
            yield path


def test_docs_cite_only_files_in_the_repository():
    cited = re.compile(r"DESIGN\.md")
    offenders = [str(p.relative_to(REPO)) for p in _repo_files()
                 if p.name != Path(__file__).name and cited.search(p.read_text(errors="ignore"))]
    assert offenders == []
    for doc in re.findall(r"\((docs/[\w./-]+\.md)\)", (REPO / "README.md").read_text()):
        assert (REPO / doc).is_file(), doc


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
def test_readme_error_examples_are_what_is_printed(overrides):
    readme = (REPO / "README.md").read_text()
    examples = [ln[len("lra_mega: error: "):] for ln in readme.splitlines() if ln.startswith("lra_mega: error: ")]
    examples += re.findall(r"`lra_mega: error: ([^`]+)`", readme)
    assert _printed(overrides) in examples
