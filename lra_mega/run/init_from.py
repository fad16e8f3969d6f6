"""Fine-tuning from a self-pretrained encoder: ``init_from=<a stage=pretrain run directory or .ckpt>``.

:func:`find_pretrained` resolves what the user named (a finished pretraining run's directory gives
its best checkpoint), reads it and checks that it is a pretraining checkpoint of this task;
:func:`load_encoder` checks that its encoder was built with the same settings (dropout rates and
activation checkpointing may differ: they hold no weights) and copies the encoder's weights and
buffers (BatchNorm running statistics included) into the new model. The head is the new model's
own, freshly initialised; the pretraining's prediction layer and mask embedding are left behind.
Every refusal is one ValueError line naming ``init_from`` and the fix.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from lra_mega.run.callbacks import CONFIG_KEY
from lra_mega.run.resume import LAST_CHECKPOINT, RESULTS_FILE, _one_line

PRETRAIN_STAGE = "pretrain"
#: Encoder arguments that hold no weights (or only set initial ones) and may differ between pretraining
#: and fine-tuning.
MAY_DIFFER = ("dropout", "attention_dropout", "hidden_dropout", "checkpoint_blocks", "ema_init", "ema_timescales",
              "attention_impl", "omega_init", "init_mode")
#: Encoder arguments the datamodule sets, and the data key behind each.
FROM_DATA = {"vocab_size": "the task's vocabulary", "input_kind": "the task's input", "max_len": "data.seq_len"}


@dataclass
class Pretrained:
    """A pretraining checkpoint, read: its file, its run config and the checkpoint itself."""

    path: Path
    config: dict[str, Any]
    checkpoint: dict[str, Any]


def _pretrain_command(task: str) -> str:
    return f"python -m lra_mega task={task} stage=pretrain hydra.run.dir=<dir>"


def checkpoint_file(spec: str, task: str) -> Path:
    """The checkpoint ``init_from=spec`` names: a file as given, or the best checkpoint of the
    finished pretraining run in a directory."""
    path = Path(str(spec)).expanduser()
    if not path.exists():
        raise ValueError(f"init_from={spec} does not exist; give the directory of a finished stage=pretrain run "
                         f"of this task (its hydra.run.dir, e.g. from `{_pretrain_command(task)}`) or one of its "
                         f"checkpoints")
    if not path.is_dir():
        return path
    ckpt_dir = path / "checkpoints"
    if not (path / RESULTS_FILE).is_file():
        if (ckpt_dir / LAST_CHECKPOINT).is_file():
            raise ValueError(f"init_from={spec}: the pretraining run there has not finished (no {RESULTS_FILE}); "
                             f"finish it by re-running its command (it resumes), or start from where it is: "
                             f"init_from={ckpt_dir / LAST_CHECKPOINT}")
        raise ValueError(f"init_from={spec} holds no finished run (no {RESULTS_FILE}, no checkpoints/); give the "
                         f"directory of a stage=pretrain run (`{_pretrain_command(task)}`) or a .ckpt file")
    best = sorted(ckpt_dir.glob("best-*.ckpt"))
    try:
        recorded = Path(str(json.loads((path / RESULTS_FILE).read_text()).get("best_checkpoint") or "")).name
    except (ValueError, AttributeError):
        recorded = ""
    chosen = [p for p in best if p.name == recorded] or best
    if len(chosen) == 1:
        return chosen[0]
    if not chosen and (ckpt_dir / LAST_CHECKPOINT).is_file():
        return ckpt_dir / LAST_CHECKPOINT
    raise ValueError(f"init_from={spec}: {'several' if chosen else 'no'} best-*.ckpt in {ckpt_dir}; name the "
                     f"checkpoint to start from, e.g. init_from={(chosen or [ckpt_dir / LAST_CHECKPOINT])[0]}")


def find_pretrained(spec: str, task: str) -> Pretrained:
    """Read the checkpoint ``init_from=spec`` names and check it is a pretraining run of ``task``."""
    path = checkpoint_file(spec, task)
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as err:  # noqa: BLE001  (torch raises many types for a file that is no checkpoint)
        raise ValueError(f"init_from={spec}: {path} cannot be read as a checkpoint ({type(err).__name__}: "
                         f"{_one_line(err)}); give the directory of a stage=pretrain run of task {task!r} or one "
                         f"of its checkpoints/*.ckpt (a truncated one: pretrain again)") from err
    config = ckpt.get(CONFIG_KEY) if isinstance(ckpt, dict) else None
    if not isinstance(config, dict) or "encoder" not in (ckpt.get("hyper_parameters") or {}):
        raise ValueError(f"init_from={spec}: {path} is not a checkpoint written by `python -m lra_mega`; give the "
                         f"directory of a stage=pretrain run of task {task!r} (`{_pretrain_command(task)}`)")
    stage = config.get("stage", "classify")
    if stage != PRETRAIN_STAGE:
        raise ValueError(f"init_from={spec}: {path} is a checkpoint of a stage={stage} run, not of a pretraining "
                         f"run; give the directory of a stage=pretrain run of task {task!r} "
                         f"(`{_pretrain_command(task)}`)")
    if config.get("task_name") != task:
        raise ValueError(f"init_from={spec}: {path} pretrained on task {config.get('task_name')!r}, not {task!r}; "
                         f"pretrain on {task} first (`{_pretrain_command(task)}`)")
    return Pretrained(path, config, ckpt)


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 30 else text[:27] + "..."


def encoder_differences(stored: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """``key: stored -> new`` for each encoder setting that differs (weightless ones aside), named
    by the config key a user sets."""
    diffs = []
    for key in sorted(set(stored) | set(new)):
        if key in MAY_DIFFER:
            continue
        if stored.get(key, "(unset)") != new.get(key, "(unset)"):
            name = f"model.{key}" if key not in FROM_DATA else f"{key} ({FROM_DATA[key]})"
            diffs.append(f"{name}: {_short(stored.get(key, '(unset)'))} -> {_short(new.get(key, '(unset)'))}")
    return diffs


def load_encoder(model: nn.Module, pretrained: Pretrained, spec: str) -> None:
    """Copy the pretrained encoder's weights and buffers into ``model.encoder`` (its head untouched),
    after checking that the two encoders were built alike."""
    stored = dict(pretrained.checkpoint["hyper_parameters"]["encoder"])
    new = dict(model.hparams.encoder)
    diffs = encoder_differences(stored, new)
    if diffs:
        shown = "; ".join(diffs[:6]) + (f"; and {len(diffs) - 6} more" if len(diffs) > 6 else "")
        raise ValueError(f"init_from={spec}: its encoder was pretrained with other settings ({shown}); fine-tune "
                         f"with the pretraining run's model.* settings, or pretrain again with these")
    state = {k[len("encoder."):]: v for k, v in pretrained.checkpoint["state_dict"].items()
             if k.startswith("encoder.")}
    try:
        model.encoder.load_state_dict(state, strict=True)
    except RuntimeError as err:
        first = " ".join(str(err).split())[:200]
        raise ValueError(f"init_from={spec}: the encoder weights in {pretrained.path} do not fit this encoder "
                         f"({first}); pretrain again with these model.* settings") from err
