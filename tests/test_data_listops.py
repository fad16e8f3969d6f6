"""ListOps: generator against an independent evaluator, release reader, datamodule."""

from __future__ import annotations

import statistics

import numpy as np
import pytest

from lra_mega.data import DATAMODULES, LRADataError, ListOpsDataModule
from lra_mega.data import listops_generate as gen
from lra_mega.data.fixtures import write_listops_release

# Independent id table (from the module docstring, typed out by hand)
IDS = {"0": 1, "1": 2, "2": 3, "3": 4, "4": 5, "5": 6, "6": 7, "7": 8, "8": 9, "9": 10,
       "[MIN": 11, "[MAX": 12, "[MED": 13, "[SM": 14, "]": 15}
NAMES = {v: k for k, v in IDS.items()}


def evaluate(source: str) -> int:
    """Recursive evaluation of an official Source string."""
    toks = source.replace("(", " ").replace(")", " ").split()

    def node(i: int) -> tuple[int, int]:
        t = toks[i]
        if t.isdigit():
            return int(t), i + 1
        args, i = [], i + 1
        while toks[i] != "]":
            v, i = node(i)
            args.append(v)
        if t == "[MIN":
            r = min(args)
        elif t == "[MAX":
            r = max(args)
        elif t == "[SM":
            r = sum(args) % 10
        else:
            s = sorted(args)
            m = len(s) // 2
            r = s[m] if len(s) % 2 else (s[m - 1] + s[m]) // 2
        return r, i + 1

    value, end = node(0)
    assert end == len(toks)
    return value


def official_form(tokens: list[str]) -> str:
    """Left-nested Source string from pre-order tokens, built independently of to_source."""
    def node(i: int) -> tuple[object, int]:
        if tokens[i] not in ("[MIN", "[MAX", "[MED", "[SM"):
            return tokens[i], i + 1
        t, i = tokens[i], i + 1
        first = True
        while tokens[i] != "]":
            c, i = node(i)
            t = (t, c)
        return (t, "]"), i + 1

    def s(t):
        return t if isinstance(t, str) else f"( {s(t[0])} {s(t[1])} )"

    tree, _ = node(0)
    return s(tree)


def test_source_form_example():
    assert gen.to_source([12, 3, 10, 15]) == "( ( ( [MAX 2 ) 9 ) ] )"
    assert evaluate("( ( ( [MAX 2 ) 9 ) ] )") == 9
    assert evaluate("( ( ( ( [MED 1 ) 2 ) 8 ) ] )") == 2
    assert evaluate("( ( ( ( ( [MED 1 ) 2 ) 7 ) 8 ) ] )") == 4  # int(median(1,2,7,8)) = int(4.5)


@pytest.fixture(scope="module")
def generated():
    return gen.generate(40, seed=11, workers=1, progress=False)


def test_generator_labels_lengths_unique(generated):
    seqs = [generated.tokens[generated.offsets[i]:generated.offsets[i + 1]].tolist() for i in range(40)]
    assert len({tuple(s) for s in seqs}) == 40
    for seq, label in zip(seqs, generated.labels.tolist()):
        assert 500 < len(seq) < 2000
        words = [NAMES[t] for t in seq]
        assert evaluate(" ".join(words)) == label
        assert evaluate(official_form(words)) == label
        assert gen.to_source(seq) == official_form(words)


def test_generator_deterministic_across_workers(generated, monkeypatch):
    again = gen.generate(40, seed=11, workers=1, progress=False)
    assert np.array_equal(again.tokens, generated.tokens) and np.array_equal(again.labels, generated.labels)
    monkeypatch.setattr(gen, "PARALLEL_MIN", 0)
    par = gen.generate(40, seed=11, workers=2, progress=False)
    assert np.array_equal(par.tokens, generated.tokens) and np.array_equal(par.offsets, generated.offsets)
    other = gen.generate(40, seed=12, workers=1, progress=False)
    assert not np.array_equal(other.labels, generated.labels) or other.tokens.size != generated.tokens.size


def test_generator_distribution_matches_branching_process():
    # Acceptance rate of the official process (P(500 < len < 2000) ~ 0.083 from 600k naive trials);
    # 12 chunks x 4096 trials give a standard error of ~0.0013.
    acc = [gen.generate_chunk(3, c).labels.size for c in range(12)]
    rate = sum(acc) / (12 * gen.CHUNK_TRIALS)
    assert abs(rate - 0.083) < 0.006
    lens = np.concatenate([np.diff(gen.generate_chunk(3, c).offsets) for c in range(12)])
    assert 950 < statistics.mean(lens.tolist()) < 1120  # naive official generator: ~1036


def test_datamodule_generate(tmp_path):
    dm = ListOpsDataModule(n_train=6, n_val=5, n_test=4, batch_size=2, num_workers=0, cache_dir=tmp_path)
    assert (dm.num_classes, dm.vocab_size, dm.input_kind, dm.seq_len, dm.dual) == (10, 16, "tokens", 2000, False)
    dm.setup()
    assert [len(dm.datasets[s]) for s in ("train", "val", "test")] == [6, 5, 4]
    batches = list(dm.val_dataloader())
    assert len(batches) == 3 and batches[-1]["label"].shape == (1,)
    for b in batches:
        for row, mask, label in zip(b["input"], b["mask"], b["label"]):
            words = [NAMES[int(t)] for t in row[mask]]
            assert evaluate(" ".join(words)) == int(label)
            assert not row[~mask].any()
    # test split independent of n_train (taken first)
    dm2 = ListOpsDataModule(n_train=3, n_val=5, n_test=4, batch_size=2, num_workers=0, cache_dir=tmp_path)
    dm2.setup("test")
    a = next(iter(dm.test_dataloader()))
    b = next(iter(dm2.test_dataloader()))
    assert all(torch_equal(a[k], b[k]) for k in a)


def torch_equal(x, y) -> bool:
    return x.shape == y.shape and bool((x == y).all())


def test_release_reader_matches_files(tmp_path):
    written = write_listops_release(tmp_path, n_per_split=5)
    dm = ListOpsDataModule(source="release", root=tmp_path, batch_size=5, num_workers=0, cache_dir=tmp_path / "c")
    dm.setup()
    for split in ("train", "val", "test"):
        batch = next(iter(dm._loader(split, shuffle=False)))
        for (src, tgt), row, mask, label in zip(written[split], batch["input"], batch["mask"], batch["label"]):
            expect = [IDS[w] for w in src.split() if w not in "()"]
            assert row[mask].tolist() == expect
            assert int(label) == tgt == evaluate(src)


def test_release_handmade_and_malformed(tmp_path, caplog):
    d = tmp_path / "lra_release" / "listops-1000"
    d.mkdir(parents=True)
    good = "( ( ( [MAX 2 ) 9 ) ] )\t9\n"
    (d / "basic_train.tsv").write_text(
        "Source\tTarget\n" + good + "( ( ( [MIN 2 ) 9 ) ] )\t2\textra\n" + "( ( ( [FOO 2 ) 9 ) ] )\t2\n"
        + "( ( ( [SM 7 ) 9 ) ] )\t12\n" + "( ( ( ( [SM 7 ) 9 ) 5 ) ] )\t1.0\n")
    (d / "basic_val.tsv").write_text("Source\tTarget\n")
    (d / "basic_test.tsv").write_text("Src\tTgt\n" + good)
    dm = ListOpsDataModule(source="release", root=tmp_path / "lra_release", batch_size=8, num_workers=0,
                           cache_dir=tmp_path / "c")
    with caplog.at_level("WARNING"):
        ds = dm.load_split("train")
    assert "skipped 3 malformed rows" in caplog.text
    assert [ds[i][0].tolist() for i in range(len(ds))] == [[12, 3, 10, 15], [14, 8, 10, 6, 15]]
    assert [ds[i][1] for i in range(len(ds))] == [9, 1]
    with pytest.raises(LRADataError, match="val split is empty"):
        dm.setup("validate")
    with pytest.raises(LRADataError, match="Source<TAB>Target"):
        dm.setup("test")


def test_release_missing_and_bad_source(tmp_path):
    dm = ListOpsDataModule(source="release", root=tmp_path, num_workers=0, cache_dir=tmp_path / "c")
    with pytest.raises(LRADataError, match=r"download_lra\.py --tasks listops"):
        dm.setup()
    with pytest.raises(ValueError, match=r"'listops'.*'hub'.*generate, release"):
        ListOpsDataModule(source="hub")
    with pytest.raises(LRADataError):
        ListOpsDataModule(limit_examples={"trian": 3})
    assert DATAMODULES["listops"] is ListOpsDataModule


def test_limit_examples_and_no_drop_last(tmp_path):
    dm = ListOpsDataModule(n_train=7, n_val=7, n_test=7, batch_size=2, num_workers=0, cache_dir=tmp_path,
                           limit_examples={"val": 5, "test": 5})
    dm.setup()
    assert len(dm.datasets["train"]) == 7
    assert [len(b["label"]) for b in dm.val_dataloader()] == [2, 2, 1]
    assert [len(b["label"]) for b in dm.test_dataloader()] == [2, 2, 1]
    assert sum(len(b["label"]) for b in dm.train_dataloader()) == 7
