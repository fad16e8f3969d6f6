"""`experiment=<task>_paper` equals the official Mega LRA command, key by key.

Hand-written copy of facebookresearch/mega `examples/mega/README.lra.md` (the six commands,
CHUNK=-1 for the Mega rows) and of the `mega_lra_*` architecture defaults they rely on
(`fairseq/models/lra/model.py`: `base_architecture` plus each `register_model_architecture`).
"""

from __future__ import annotations

import math

import pytest
import torch
from harness import compose_config
from hydra.utils import instantiate

# --- the six commands (flags copied from README.lra.md) ---
COMMON = {
    "n_dim": 16, "activation_fn": "silu", "sen_rep_type": "mp", "optimizer": "adam",
    "adam_betas": (0.9, 0.98), "adam_eps": 1e-8, "clip_norm": 1.0, "attention_dropout": 0.0,
    "act_dropout": 0.0, "lr_scheduler": "linear_decay", "end_learning_rate": 0.0,
    "warmup_init_lr": 1e-7, "warmup_power": 1, "chunk_size": -1,  # CHUNK=-1: Mega (full attention)
}
COMMANDS = {
    "listops": dict(arch="mega_lra_listop", encoder_layers=6, attention_activation_fn="softmax",
                    norm_type="layernorm", encoder_normalize_before=False, lr=0.001, dropout=0.1,
                    weight_decay=0.01, batch_size=64, update_freq=1, gpus=1, max_update=90000,
                    total_num_update=90000, warmup_updates=3000),
    "text": dict(arch="mega_lra_imdb", encoder_layers=4, attention_activation_fn="softmax",
                 norm_type="scalenorm", encoder_normalize_before=False, lr=0.004, dropout=0.1,
                 weight_decay=0.01, batch_size=25, update_freq=2, gpus=1, max_update=25000,
                 total_num_update=25000, warmup_updates=10000),
    "retrieval": dict(arch="mega_lra_aan", encoder_layers=6, attention_activation_fn="softmax",
                      norm_type="scalenorm", encoder_normalize_before=False, lr=0.003, dropout=0.1,
                      weight_decay=0.04, batch_size=8, update_freq=8, gpus=1, max_update=91960,
                      total_num_update=91960, warmup_updates=10000),
    "image": dict(arch="mega_lra_cifar10", encoder_layers=8, attention_activation_fn="laplace",
                  norm_type="batchnorm", encoder_normalize_before=True, lr=0.01, dropout=0.0,
                  weight_decay=0.02, batch_size=50, update_freq=1, gpus=1, max_update=180000,
                  total_num_update=180000, warmup_updates=9000),
    "pathfinder": dict(arch="mega_lra_pf32", encoder_layers=6, attention_activation_fn="laplace",
                       norm_type="batchnorm", encoder_normalize_before=True, lr=0.01, dropout=0.0,
                       weight_decay=0.01, batch_size=128, update_freq=1, gpus=1, max_update=250000,
                       total_num_update=250000, warmup_updates=50000),
    # tested on 8 x A100 (README.lra.md)
    "pathx": dict(arch="mega_lra_pf128", encoder_layers=4, attention_activation_fn="laplace",
                  norm_type="syncbatchnorm", encoder_normalize_before=True, lr=0.01, dropout=0.0,
                  weight_decay=0.01, batch_size=2, update_freq=8, gpus=8, max_update=125000,
                  total_num_update=125000, warmup_updates=25000, warmup_power=2),
}
# --- architecture defaults the commands do not override (model.py) ---
# embed d, hidden v (= ffn), z, classifier in/out, truncation_length, arch chunk_size
ARCH = {
    "mega_lra_listop": dict(d=80, v=160, z=64, cls_in=80, cls_out=160, truncation=1024, chunk=-1),
    "mega_lra_imdb": dict(d=128, v=256, z=64, cls_in=128, cls_out=256, truncation=1024, chunk=-1),
    "mega_lra_aan": dict(d=128, v=256, z=64, cls_in=256, cls_out=256, truncation=1024, chunk=-1),
    "mega_lra_cifar10": dict(d=160, v=320, z=96, cls_in=160, cls_out=320, truncation=1024, chunk=1024),
    "mega_lra_pf32": dict(d=128, v=256, z=64, cls_in=128, cls_out=256, truncation=1024, chunk=1024),
    "mega_lra_pf128": dict(d=64, v=128, z=32, cls_in=64, cls_out=128, truncation=4096,
                           chunk=128 * 128),
}
# base_architecture: one classifier layer with gelu, simple relative position bias
BASE = {"classifier_layers": 1, "classifier_activation_fn": "gelu", "rel_pos_bias": "simple"}
CLASSES = {"listops": 10, "text": 2, "retrieval": 2, "image": 10, "pathfinder": 2, "pathx": 2}
# training examples per epoch (official splits): one validation per epoch
TRAIN_EXAMPLES = {"listops": 96_000, "text": 25_000, "retrieval": 147_086, "image": 45_000,
                  "pathfinder": 160_000, "pathx": 160_000}


def _official(task: str) -> dict:
    cmd = {**COMMON, **COMMANDS[task]}
    return {**BASE, **ARCH[cmd["arch"]], **cmd}


@pytest.mark.parametrize("task", COMMANDS)
def test_paper_preset_equals_official_command(task):
    off = _official(task)
    cfg = compose_config([f"experiment={task}_paper"])
    m, o, t, h = cfg.model, cfg.optim, cfg.trainer, cfg.head
    # architecture
    assert m.depth == off["encoder_layers"]
    assert (m.dim, m.hdim, m.zdim, m.ndim) == (off["d"], off["v"], off["z"], off["n_dim"])
    assert m.ffn_dim in (None, off["v"])  # encoder_ffn_embed_dim defaults to encoder_hidden_dim
    assert m.attention == off["attention_activation_fn"]
    norm = "batchnorm" if off["norm_type"] == "syncbatchnorm" else off["norm_type"]
    assert m.norm == norm and m.prenorm == off["encoder_normalize_before"]
    assert m.chunk_size == off["chunk_size"]  # -1 = full attention (= arch chunk >= length)
    assert m.truncation == off["truncation"]
    assert m.rel_pos == off["rel_pos_bias"] and m.bidirectional is True
    assert (m.dropout, m.attention_dropout, m.hidden_dropout) == (
        off["dropout"], off["attention_dropout"], off["act_dropout"])
    # head: mean pooling, Linear(cls_in, cls_out) -> model dropout -> gelu -> Linear(cls_out, C, no bias)
    assert h.pooling == "mean" and off["sen_rep_type"] == "mp" and h.dropout == off["dropout"]
    head = instantiate(h, dim=m.dim, num_classes=CLASSES[task])
    hidden, out = head.mlp[0], head.mlp[-1]
    in_dim = 2 * off["d"] if task == "retrieval" else off["cls_in"]
    assert (hidden.in_features, hidden.out_features) == (in_dim, off["cls_out"])
    assert isinstance(head.mlp[1], torch.nn.Dropout) and head.mlp[1].p == off["dropout"]
    assert isinstance(head.mlp[2], torch.nn.GELU) and off["classifier_activation_fn"] == "gelu"
    assert out.bias is None and (out.in_features, out.out_features) == (off["cls_out"], CLASSES[task])
    assert len(head.mlp) == 4 * off["classifier_layers"]
    # optimizer: AdamW-style decay on every parameter (one group)
    assert o.lr == off["lr"] and tuple(o.betas) == off["adam_betas"] and o.eps == off["adam_eps"]
    assert o.weight_decay == off["weight_decay"] and o.weight_decay_exempt is False
    # schedule: linear_decay with warmup from warmup_init_lr, power, to 0 at total_num_update
    assert o.warmup_steps == off["warmup_updates"] and o.warmup_init_lr == off["warmup_init_lr"]
    assert o.warmup_power == off["warmup_power"] and off["end_learning_rate"] == 0.0
    assert o.total_steps == off["total_num_update"] and t.max_steps == off["max_update"]
    # effective batch per update
    ours = cfg.data.batch_size * t.accumulate_grad_batches * t.devices * t.num_nodes
    assert ours == off["batch_size"] * off["update_freq"] * off["gpus"]
    assert t.gradient_clip_val == off["clip_norm"]
    assert t.get("gradient_clip_algorithm") in (None, "norm")
    # validation once per epoch, in optimizer updates (Lightning counts batches)
    per_epoch = math.ceil(TRAIN_EXAMPLES[task] / ours)
    assert t.val_check_interval == per_epoch * t.accumulate_grad_batches
    assert t.check_val_every_n_epoch is None
    assert t.precision == "32-true"  # the official runs are fp32


EXPECTED_CADENCE = {"listops": 1500, "text": 500, "retrieval": 2299, "image": 900,
                    "pathfinder": 1250, "pathx": 1250}


@pytest.mark.parametrize("task", COMMANDS)
def test_validation_cadence_counts_updates_under_accumulation(task):
    cmd = COMMANDS[task]
    per_gpu = cmd["batch_size"] * cmd["gpus"]  # one process, the official per-step batch
    cfg = compose_config([f"experiment={task}_paper", f"data.batch_size={per_gpu}",
                          f"trainer.accumulate_grad_batches={cmd['update_freq']}"])
    assert cfg.trainer.val_check_interval == EXPECTED_CADENCE[task] * cmd["update_freq"]


def test_pathx_paper_is_full_attention_and_chunk_is_4096():
    paper = compose_config(["experiment=pathx_paper"]).model
    chunk = compose_config(["experiment=pathx_chunk"]).model
    assert paper.chunk_size == -1 and paper.truncation == 4096
    assert chunk.chunk_size == 4096 and chunk.truncation == 4096


def test_pathx_syncbatchnorm_under_ddp_on_gpus():
    cfg = compose_config(["experiment=pathx_paper", "trainer=ddp"])
    assert cfg.trainer.sync_batchnorm is True and cfg.trainer.precision == "32-true"


# --- what the official model sees (the input each `lra-text` task builds) ---
# fairseq/tasks/long_range_arena.py (LRATextTask.load_dataset): the binarized lines of src-bin
# (and src1-bin for AAN), `TruncateDataset(..., max_positions)`, right-padded; a <CLS> is
# prepended only for `--sen-rep-type cls` (the commands use `mp`). The lines were binarized
# by fairseq-preprocess (`Binarizer.binarize(..., append_eos=True)`): every line ends in </s>.
# The content: LRA ListOps expressions (parentheses dropped, 500 < tokens < 2000); IMDB as
# `imdb-4000`, AAN documents at LRA's `max_length` 4000 (`lra_benchmarks/matching`), bytes.
MAX_POSITIONS = {"listops": 2002, "text": 4002, "retrieval": 4002}  # model.py mega_lra_* defaults
CONTENT_CAP = {"listops": None, "text": 4000, "retrieval": 4000}
OUR_EOS = {"listops": 16, "text": 257, "retrieval": 257}  # </s>: one past the content ids


def _byte_ids(text: str) -> list[int]:
    return [b + 1 for b in text.encode("utf-8")]


def _paper_batch(task: str, root, tmp_path, n: int) -> tuple[object, dict]:
    over = [f"experiment={task}_paper", f"data.root={root}", "data.num_workers=0", f"data.batch_size={n}"]
    if task == "listops":
        over.append("data.source=release")
    cfg = compose_config(over)
    dm = instantiate(cfg.data, cache_dir=str(tmp_path / "cache"))
    dm.setup("test")
    return dm, next(iter(dm.test_dataloader()))


def test_listops_paper_input_is_tokens_then_eos_within_2002(tmp_path):
    d = tmp_path / "lra_release" / "listops-1000"
    d.mkdir(parents=True)
    long = "[SM " + " ".join(["3"] * 1999) + " ]"  # 2001 tokens: the cap holds them and </s>
    longer = "[SM " + " ".join(["3"] * 2099) + " ]"  # 2101: cut at 2002, as TruncateDataset does
    rows = ["( ( ( [MAX 2 ) 9 ) ] )\t9", f"{long}\t7", f"{longer}\t7"]
    for split in ("train", "val", "test"):
        (d / f"basic_{split}.tsv").write_text("Source\tTarget\n" + "\n".join(rows) + "\n")
    dm, batch = _paper_batch("listops", tmp_path, tmp_path, 3)
    assert (dm.seq_len, dm.vocab_size) == (MAX_POSITIONS["listops"], 17) and CONTENT_CAP["listops"] is None
    x, m = batch["input"], batch["mask"]
    assert x.shape == (3, 2002)
    assert x[0][m[0]].tolist() == [12, 3, 10, 15, OUR_EOS["listops"]]  # [MAX 2 9 ] </s>, no <s>
    assert x[1][m[1]].tolist() == [14] + [4] * 1999 + [15, OUR_EOS["listops"]]
    assert x[2][m[2]].tolist() == [14] + [4] * 2001  # the first 2002 tokens, </s> cut off
    assert batch["label"].tolist() == [9, 7, 7]


def test_text_paper_input_is_4000_bytes_then_eos(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    texts = ["ab", "é" * 2500, "x" * 3999 + "é"]  # 2, 5000 and 4001 bytes
    for split in ("train", "test"):
        pq.write_table(pa.table({"text": texts, "label": [1, 0, 1]}), tmp_path / f"{split}-00000-of-00001.parquet")
    dm, batch = _paper_batch("text", tmp_path, tmp_path, 3)
    assert (dm.seq_len, dm.vocab_size) == (MAX_POSITIONS["text"], 258)
    x, m = batch["input"], batch["mask"]
    assert x.shape == (3, CONTENT_CAP["text"] + 1)  # 4,001 tokens: bytes then </s>
    eos = OUR_EOS["text"]
    assert x[0][m[0]].tolist() == [98, 99, eos]
    assert x[1][m[1]].tolist() == [0xC3 + 1, 0xA9 + 1] * 2000 + [eos]
    assert x[2][m[2]].tolist() == [ord("x") + 1] * 3999 + [0xC3 + 1, eos]  # a cut mid-character, as bytes
    assert batch["label"].tolist() == [1, 0, 1]


def test_retrieval_paper_input_is_4000_bytes_then_eos_per_document(tmp_path):
    d = tmp_path / "lra_release" / "tsv_data"
    d.mkdir(parents=True)
    rows = ["1.0\tA\tB\tdoc one\t" + "z" * 4500, "0.0\tC\tD\t" + "q" * 4000 + "\tb"]
    for name in ("train", "eval", "test"):
        (d / f"new_aan_pairs.{name}.tsv").write_text("\n".join(rows) + "\n")
    dm, batch = _paper_batch("retrieval", tmp_path, tmp_path, 2)
    assert (dm.seq_len, dm.vocab_size) == (MAX_POSITIONS["retrieval"], 258)
    x, m = batch["input"], batch["mask"]
    assert x.shape == (2, 2, CONTENT_CAP["retrieval"] + 1)
    eos = OUR_EOS["retrieval"]
    assert x[0, 0][m[0, 0]].tolist() == _byte_ids("doc one") + [eos]
    assert x[0, 1][m[0, 1]].tolist() == [ord("z") + 1] * 4000 + [eos]
    assert x[1, 0][m[1, 0]].tolist() == [ord("q") + 1] * 4000 + [eos]
    assert x[1, 1][m[1, 1]].tolist() == [ord("b") + 1, eos]
    assert batch["label"].tolist() == [1, 0]


@pytest.mark.parametrize("task", ["listops", "text", "retrieval"])
def test_eos_option_speaks_to_the_user(task, tmp_path):
    from hydra.utils import get_class

    from lra_mega.data.errors import LRAConfigError

    dm_cls = get_class(compose_config([f"experiment={task}_paper"]).data._target_)
    with pytest.raises(LRAConfigError, match=r"data\.eos='sometimes' is not valid; use true"):
        dm_cls(eos="sometimes", cache_dir=tmp_path)
