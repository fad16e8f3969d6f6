"""scripts/listops_baselines.py: the rules read the keys worked out by hand, and the CLI runs."""

from __future__ import annotations

import json

import numpy as np
from harness import load_script


def _script():
    return load_script("listops_baselines")


def _pack(exprs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    ids = {**{str(d): d + 1 for d in range(10)}, "[MIN": 11, "[MAX": 12, "[MED": 13, "[SM": 14, "]": 15}
    seqs = [[ids[t] for t in e.split()] for e in exprs]
    return np.concatenate(seqs), np.cumsum([0] + [len(s) for s in seqs])


def test_rule_keys_by_hand():
    mod = _script()
    tokens, offsets = _pack([
        "[MAX 2 [MIN 3 9 ] 5 ]",        # direct digits 2, 5 -> max 5
        "[MIN [MAX 0 1 ] 7 4 ]",        # 7, 4 -> min 4
        "[SM 8 [SM 9 9 ] 6 7 ]",        # 8 + 6 + 7 = 21 -> 1
        "[MED 1 2 3 ]",                 # the median keeps only the operator
        "[MAX [MIN 1 2 ] [SM 3 ] ]",    # no direct digit
    ])
    keys = mod.rule_keys(tokens, offsets)
    assert keys["outermost operator"].tolist() == [12, 11, 14, 13, 12]
    assert keys["operator + direct digits"].tolist() == [12 * 16 + 6, 11 * 16 + 5, 14 * 16 + 2, 13 * 16, 12 * 16]


def test_score_fits_on_train_and_falls_back_to_the_prior():
    mod = _script()
    tokens, offsets = _pack(["[MAX 2 ]", "[MAX 2 ]", "[MIN 3 ]", "[MIN 3 ]", "[SM 4 ]"])
    train = {"tokens": tokens, "offsets": offsets, "labels": np.array([2, 2, 3, 3, 3])}
    tokens, offsets = _pack(["[MAX 2 ]", "[MED 5 ]", "[MIN 3 ]"])
    test = {"tokens": tokens, "offsets": offsets, "labels": np.array([2, 3, 0])}
    acc = mod.score(train, test)
    assert acc["label prior"] == 1 / 3                  # always 3
    assert acc["outermost operator"] == 2 / 3           # MAX -> 2, MED unseen -> 3, MIN -> 3
    assert acc["operator + direct digits"] == 2 / 3


def test_cli_writes_json_and_markdown(run_cli, tmp_path):
    out = tmp_path / "b.json"
    proc = run_cli("--out", str(out), "--sizes", "64", "8", "32", script="listops_baselines.py")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert set(result["test_accuracy"]) == {"label prior", "outermost operator", "operator + direct digits"}
    assert out.with_suffix(".md").read_text().startswith("| rule")
