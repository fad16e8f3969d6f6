"""AAN retrieval pairs: dual byte inputs from the release TSV format."""

from __future__ import annotations

import pytest
import torch

from lra_mega.data import DATAMODULES, LRADataError, RetrievalDataModule
from lra_mega.data.fixtures import write_aan_release


def test_pairs_bytes_labels_and_truncation(tmp_path):
    written = write_aan_release(tmp_path, n_per_split=5)
    dm = RetrievalDataModule(root=tmp_path, batch_size=5, num_workers=0, cache_dir=tmp_path / "c", seq_len=50)
    assert (dm.num_classes, dm.vocab_size, dm.input_kind, dm.seq_len, dm.dual) == (2, 257, "tokens", 50, True)
    dm.setup()
    for split in ("train", "val", "test"):
        b = next(iter(dm._loader(split, shuffle=False)))
        assert b["input"].shape[:2] == (5, 2) and b["input"].shape[2] <= 50
        assert b["mask"].shape == b["input"].shape and b["input"].dtype == torch.int64
        for (label, _, _, t1, t2), x, m, y in zip(written[split], b["input"], b["mask"], b["label"]):
            assert x[0][m[0]].tolist() == [c + 1 for c in t1.encode("utf-8")][:50]
            assert x[1][m[1]].tolist() == [c + 1 for c in t2.encode("utf-8")][:50]
            assert int(y) == label
    assert DATAMODULES["retrieval"] is RetrievalDataModule


def test_malformed_rows_and_quotes(tmp_path, caplog):
    d = tmp_path / "lra_release" / "tsv_data"
    d.mkdir(parents=True)
    rows = ['1.0\ta\tb\t"quoted start\tplain',          # quote must not swallow the tab
            '0\ta\tb\tonly four columns',
            '2.0\ta\tb\tx\ty',
            'nan?\ta\tb\tx\ty',
            '0.0\tc\td\tdoc "one"\tdoc\ttwo']
    (d / "new_aan_pairs.train.tsv").write_text("\n".join(rows) + "\n")
    (d / "new_aan_pairs.eval.tsv").write_text("")
    dm = RetrievalDataModule(root=tmp_path, batch_size=4, num_workers=0, cache_dir=tmp_path / "c")
    with caplog.at_level("WARNING"):
        ds = dm.load_split("train")
    assert "skipped 4 malformed rows" in caplog.text
    (x1, x2), y = ds[0]
    assert bytes((x1 - 1).tolist()) == b'"quoted start' and bytes((x2 - 1).tolist()) == b"plain" and y == 1
    with pytest.raises(LRADataError, match="no usable rows"):
        dm.load_split("val")
    with pytest.raises(LRADataError, match=r"download_lra\.py --tasks retrieval"):
        dm.load_split("test")


def test_missing_release(tmp_path):
    dm = RetrievalDataModule(num_workers=0, cache_dir=tmp_path)
    with pytest.raises(LRADataError, match=r"lra_release.*download_lra\.py --tasks retrieval.*data\.root"):
        dm.setup()
    with pytest.raises(ValueError, match=r"'retrieval'.*'generate'.*release"):
        RetrievalDataModule(source="generate")
