"""Results across runs: ``report`` collects the ``results.json`` of many runs into markdown tables
against the paper (mean ± std over seeds) and exports run records; ``curves`` draws their training
loss and validation accuracy from the csv logs. It reads only the files runs leave behind, so it
imports nothing else of the package (not ``model``, ``data``, ``training`` or ``run``); the run
layer calls it to draw a run's own curves (tests/test_layers.py checks the imports)."""
