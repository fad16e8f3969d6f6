"""One run, from a composed Hydra config to ``results.json``: ``train`` orchestrates it, ``validate``
checks the config before any data work, ``resume`` continues a run exactly or refuses, ``identity``
names it (preset, overrides, digests), ``init_from`` starts it from a pretraining run's checkpoint,
``evaluation`` re-evaluates a checkpoint, and ``callbacks``, ``progress`` and ``resolvers`` are what
the configs in ``configs/`` refer to (callbacks, log lines, ``${lra.*}`` resolvers). It is the top
layer: it may import every other part of the package (``model``, ``data``, ``training``,
``results``), and none of them imports it (tests/test_layers.py checks the imports)."""
