"""Hugging Face hub datasets (IMDB, CIFAR-10) as Arrow tables, from a local parquet
directory or through ``datasets``; offline failures become one :class:`LRADataError`.
"""

from __future__ import annotations

import logging
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from lra_mega.data.cache import files_fingerprint
from lra_mega.data.errors import LRADataError

log = logging.getLogger(__name__)

#: task -> (hub dataset name, columns we read)
HUB_DATASETS = {
    "text": ("stanfordnlp/imdb", ("text", "label")),
    "image": ("uoft-cs/cifar10", ("img", "label")),
}


def local_parquet_dir(cache_dir: Path, task: str) -> Path:
    """Where ``scripts/download_lra.py`` puts the parquet files of a hub task."""
    return Path(cache_dir) / "hub" / task


def find_parquet_files(root: Path, split: str) -> list[Path]:
    """Parquet files of ``split`` under ``root``: flat (``train-*.parquet``) or the hub's
    layout (``plain_text/train-*.parquet``, ``data/train-*.parquet``)."""
    root = Path(root)
    found: list[Path] = []
    for pattern in (f"{split}-*.parquet", f"{split}.parquet", f"*/{split}-*.parquet", f"*/{split}.parquet",
                    f"*/*/{split}-*.parquet", f"*/*/{split}.parquet"):
        found.extend(sorted(root.glob(pattern)))
    return list(dict.fromkeys(found))


def read_local(root: Path, task: str, split: str) -> pa.Table:
    """Read the parquet files of ``split`` under ``root`` (columns of ``task``)."""
    columns = list(HUB_DATASETS[task][1])
    if not Path(root).is_dir():
        raise LRADataError(f"task {task!r}: data.root={root} is not a directory; point it at a directory "
                           f"holding {split}-*.parquet, or run `python scripts/download_lra.py --tasks {task}`")
    files = find_parquet_files(root, split)
    if not files:
        raise LRADataError(f"task {task!r}: no {split}-*.parquet file under data.root={root}; expected the "
                           f"hub layout (plain_text/{split}-*.parquet) or a flat one ({split}-*.parquet)")
    tables = []
    for f in files:
        try:
            t = pq.read_table(f)
        except (pa.ArrowException, OSError) as e:
            raise LRADataError(f"task {task!r}: cannot read parquet file {f} ({e}); delete or re-download it") from e
        missing = [c for c in columns if c not in t.column_names]
        if missing:
            raise LRADataError(f"task {task!r}: parquet file {f} lacks columns {missing} "
                               f"(has {t.column_names}); is it {HUB_DATASETS[task][0]}?")
        tables.append(t.select(columns))
    return pa.concat_tables(tables)


def read_hub(task: str, split: str) -> pa.Table:
    """Load ``split`` of the task's hub dataset via ``datasets`` (its own cache, or the network)."""
    name, columns = HUB_DATASETS[task]
    try:
        import datasets

        ds = datasets.load_dataset(name, split=split)
        if task == "image":
            ds = ds.cast_column("img", datasets.Image(decode=False))
        table = ds.with_format("arrow")[:]
    except Exception as e:  # noqa: BLE001 - datasets raises many types when offline
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise LRADataError(
            f"task {task!r}: could not load hub dataset {name!r} split {split!r} ({type(e).__name__}: {first[:200]}); "
            f"run `python scripts/download_lra.py --tasks {task}` while online, "
            f"or set data.root=<directory with {split}-*.parquet of {name}>"
        ) from e
    return table.select(list(columns))


def load_table(task: str, split: str, root: Path | None, cache_dir: Path) -> tuple[pa.Table, str]:
    """The table of ``split`` and a description of where it came from.

    Order: ``root`` if given; else the parquet directory written by the download script;
    else the hub through ``datasets``.
    """
    if root is not None:
        return read_local(root, task, split), f"local:{Path(root).resolve()}"
    local = local_parquet_dir(cache_dir, task)
    if find_parquet_files(local, split):
        return read_local(local, task, split), f"local:{local.resolve()}"
    return read_hub(task, split), f"hub:{HUB_DATASETS[task][0]}"


def source_fingerprint(task: str, root: Path | None, cache_dir: Path) -> str:
    """A string that changes when the underlying files change (for cache keys)."""
    base = Path(root) if root is not None else local_parquet_dir(cache_dir, task)
    stamps = files_fingerprint(base.rglob("*.parquet")) if base.is_dir() else []
    return ";".join(stamps) if stamps else f"hub:{HUB_DATASETS[task][0]}"
