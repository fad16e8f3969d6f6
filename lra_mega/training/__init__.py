"""What is trained: the LightningModules that join a Mega encoder (``lra_mega.model``) to a task's
batches (``lra_mega.data``): ``classifier.LRAClassifier`` (loss, metrics, optimizer of a task's
classifier) and ``pretrain.SelfPretrainer`` (self-pretraining of its encoder, ``stage=pretrain``),
with what they share: ``masking`` (what self-pretraining hides and predicts) and ``optim`` (AdamW's
parameter groups and the paper's warmup / linear-decay schedule). It may import ``lra_mega.model``
and ``lra_mega.data``, never the run layer (``lra_mega.run``) or ``lra_mega.results``; nothing here
reads a config file or a run directory (tests/test_layers.py checks the imports)."""
