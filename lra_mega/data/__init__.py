"""Data layer: one LightningDataModule per LRA task, keyed by task name (``DATAMODULES``), with what
they need: the generators (ListOps, Pathfinder / Path-X), the readers of the official release and of
the Hugging Face parquet files, the download, the cache and the samplers. It knows nothing of the
model: it imports neither ``lra_mega.model`` nor the layers above (``training``, ``run``,
``results``), only itself and its libraries (tests/test_layers.py checks the imports)."""

from __future__ import annotations

from lra_mega.data.base import LRADataModule
from lra_mega.data.errors import LRAConfigError, LRADataError
from lra_mega.data.image import ImageDataModule
from lra_mega.data.listops import ListOpsDataModule
from lra_mega.data.pathfinder import PathfinderDataModule, PathXDataModule
from lra_mega.data.retrieval import RetrievalDataModule
from lra_mega.data.text import TextDataModule

DATAMODULES: dict[str, type[LRADataModule]] = {
    "listops": ListOpsDataModule,
    "text": TextDataModule,
    "retrieval": RetrievalDataModule,
    "image": ImageDataModule,
    "pathfinder": PathfinderDataModule,
    "pathx": PathXDataModule,
}

__all__ = [
    "DATAMODULES", "LRADataModule", "LRADataError", "LRAConfigError",
    "ListOpsDataModule", "TextDataModule", "RetrievalDataModule", "ImageDataModule",
    "PathfinderDataModule", "PathXDataModule",
]
