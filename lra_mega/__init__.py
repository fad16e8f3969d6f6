"""Mega (Moving Average Equipped Gated Attention) on the Long Range Arena.

The package in layers, each importing only those below it (tests/test_layers.py): ``model`` (Mega
itself, torch only) and ``data`` (one datamodule per task; no model) at the bottom, ``training``
(the LightningModules that join them), ``results`` (tables and curves across runs), and ``run`` (one
run from config to ``results.json``) on top; ``__main__`` is the Hydra entry point."""

__version__ = "0.1.0"
