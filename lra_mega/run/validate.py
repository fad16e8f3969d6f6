"""Checks of a composed run config that need no data: each failure is one ValueError line naming
the key, the value and the fix. ``train()`` runs them before any data work, the paths last (the
data cache directory is created, ``data.root`` must be a readable directory)."""

from __future__ import annotations

import difflib
import inspect
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from hydra.utils import get_object
from omegaconf import DictConfig, OmegaConf, open_dict

# Top-level keys the harness reads (config.yaml); anything else added with `+key` is a typo.
TOP_LEVEL = ("task_name", "seed", "resume", "test", "compile", "optimized_metric", "data", "model", "head",
             "optim", "trainer", "callbacks", "logger", "paths", "hydra", "run_name", "stage", "pretrain",
             "init_from")
# results.json values a sweeper can optimise (``optimized_metric``); train.py writes them (the
# last four for stage=pretrain runs, whose loss a sweeper minimises)
METRICS = ("best_val_acc", "val_acc", "test_acc", "test_loss", "train_loss", "best_val_loss", "val_loss",
           "val_masked_acc", "test_masked_acc")
PRETRAIN_ONLY = "pretrain.* settings are read by pretraining runs only: add stage=pretrain"
SPLITS = ("train", "val", "test")


def nearest(key: str, candidates: Iterable[str], n: int = 3) -> list[str]:
    """The valid keys closest to ``key`` (by full path, then by last component)."""
    candidates = sorted(set(candidates))
    near = difflib.get_close_matches(key, candidates, n=n, cutoff=0.6)
    if not near:
        last = key.rsplit(".", 1)[-1]
        by_last = {c.rsplit(".", 1)[-1]: c for c in candidates}
        near = [by_last[m] for m in difflib.get_close_matches(last, list(by_last), n=n, cutoff=0.6)]
    return near


def unknown_key_message(key: str, candidates: Iterable[str], what: str = "") -> str:
    """``unknown key K; nearest valid: ...`` (Hydra's own keys are offered only for ``hydra.*``)."""
    candidates = [c for c in candidates if not c.rsplit(".", 1)[-1].startswith("_")  # _target_ & co
                  and (key.startswith("hydra") or not c.startswith("hydra"))]
    near = nearest(key, candidates)
    hint = f"; nearest valid: {', '.join(near)}" if near else "; see `--cfg job` for the valid keys"
    return f"unknown key {key}{what}{hint}"


def flat_keys(node: Any, prefix: str = "") -> list[str]:
    """Dotted paths of every key under ``node`` (a DictConfig or dict)."""
    out = []
    items = node.items_ex(resolve=False) if isinstance(node, DictConfig) else dict(node).items()
    for k, v in items:
        path = f"{prefix}{k}"
        out.append(path)
        if isinstance(v, DictConfig) and (v._is_none() or v._is_missing() or v._is_interpolation()):
            continue  # e.g. hydra.sweeper.params: null; nothing under it to offer
        if isinstance(v, (DictConfig, dict)):
            out.extend(flat_keys(v, path + "."))
    return out


def _init_params(target: str) -> tuple[set[str], bool]:
    """(keyword names a ``_target_`` accepts, whether it also takes any ``**kwargs``), following
    ``**kwargs`` up the class hierarchy."""
    obj = get_object(target)
    functions = [obj] if not inspect.isclass(obj) else [
        c.__dict__["__init__"] for c in obj.__mro__ if c is not object and "__init__" in c.__dict__]
    names: set[str] = set()
    for fn in functions:
        try:
            params = inspect.signature(fn).parameters
        except (TypeError, ValueError):
            return names, True
        names |= {p for p, v in params.items() if v.kind not in (v.VAR_KEYWORD, v.VAR_POSITIONAL)}
        if not any(v.kind == v.VAR_KEYWORD for v in params.values()):
            return names - {"self"}, False
    return names - {"self"}, True


def _section_params(cfg: DictConfig, section: str) -> tuple[set[str], bool] | None:
    """(accepted keys, open) for a section whose keys become constructor arguments."""
    if section == "trainer":
        import lightning as L

        return _init_params_of(L.Trainer)
    if section == "optim":
        from lra_mega.training.classifier import LRAClassifier

        names, open_ = _init_params_of(LRAClassifier)
        return names - {"encoder", "head", "num_classes", "dual"}, open_
    if section == "pretrain":
        from lra_mega.training.classifier import LRAClassifier
        from lra_mega.training.pretrain import SelfPretrainer

        names, open_ = _init_params_of(SelfPretrainer)
        return names - _init_params_of(LRAClassifier)[0] - {"encoder", "pixel_mean", "pixel_std"}, open_
    node = cfg.get(section)
    if isinstance(node, DictConfig) and "_target_" in node:
        names, open_ = _init_params(str(node._target_))
        return names | {"_target_", "_partial_", "_convert_", "_recursive_", "_args_"}, open_
    return None


def _init_params_of(cls: type) -> tuple[set[str], bool]:
    return _init_params(f"{cls.__module__}.{cls.__qualname__}")


def check_added_keys(cfg: DictConfig, overrides: Iterable[str]) -> None:
    """Reject ``+key=value`` overrides that nothing reads (Hydra accepts any of them)."""
    from hydra.core.override_parser.overrides_parser import OverridesParser

    parsed = OverridesParser.create().parse_overrides(list(overrides))
    groups = _group_names()
    for ov in parsed:
        if not (ov.is_add() or ov.is_force_add()):
            continue
        key = ov.key_or_group
        if key.split("/")[0] in groups or key.startswith("hydra"):
            continue
        parts = key.split(".")
        top = parts[0]
        if top == "pretrain" and cfg.get("stage") != "pretrain":
            raise ValueError(f"+{key}: {PRETRAIN_ONLY}")
        if top not in TOP_LEVEL:
            raise ValueError(unknown_key_message(
                key, [k for k in flat_keys(cfg) if k.split(".")[0] in TOP_LEVEL],
                " (added with +, but nothing reads it)"))
        if len(parts) == 2 and top in ("callbacks", "logger"):
            value = OmegaConf.select(cfg, key)
            if value is not None and not (isinstance(value, DictConfig) and "_target_" in value):
                raise ValueError(f"+{key} must be a mapping with a _target_ (a class to build), got {value!r}")
        if len(parts) == 2 and top in ("trainer", "optim", "data", "model", "head", "pretrain"):
            spec = _section_params(cfg, top)
            if spec is not None and not spec[1] and parts[1] not in spec[0]:
                raise ValueError(unknown_key_message(
                    key, [f"{top}.{p}" for p in spec[0] if not p.startswith("_")],
                    f" (added with +, but {top} takes no such argument)"))


def _group_names() -> set[str]:
    from hydra.core.hydra_config import HydraConfig

    if not HydraConfig.initialized():
        return set()
    return {str(k).split("/")[0] for k in HydraConfig.get().runtime.choices}


def _require(ok: bool, key: str, value: Any, what: str) -> None:
    if not ok:
        raise ValueError(f"{key}={value!r} is not valid; it must be {what}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def check_run_settings(cfg: DictConfig) -> None:
    """Reject the run-level numbers a typo breaks, with the key and the fix, before any work."""
    steps = cfg.trainer.get("max_steps")
    _require(_is_int(steps) and steps >= 1, "trainer.max_steps", steps,
             "a positive integer (optimizer updates)")
    interval = cfg.trainer.get("val_check_interval")
    _require(interval is None or (_is_number(interval) and interval > 0),
             "trainer.val_check_interval", interval, "a positive number of training batches")
    lr = cfg.optim.get("lr")
    _require(_is_number(lr) and lr > 0, "optim.lr", lr, "a positive number")
    decay = cfg.optim.get("weight_decay")
    _require(_is_number(decay) and decay >= 0, "optim.weight_decay", decay, "a number >= 0")
    warmup = cfg.optim.get("warmup_steps")
    _require(_is_int(warmup) and 0 <= warmup <= steps, "optim.warmup_steps", warmup,
             f"an integer in [0, trainer.max_steps={steps}]")
    seed = cfg.get("seed")
    _require(_is_int(seed) and 0 <= seed < 2**32, "seed", seed, "an integer in [0, 2**32)")
    accumulate = cfg.trainer.get("accumulate_grad_batches", 1)
    _require(_is_int(accumulate) and accumulate >= 1, "trainer.accumulate_grad_batches", accumulate,
             "a positive integer")
    resume = cfg.get("resume")
    _require(isinstance(resume, str) and resume != "", "resume", resume,
             "auto, never or the path of a .ckpt file")
    test = cfg.get("test", True)
    _require(isinstance(test, bool), "test", test, "true (test the best checkpoint after fitting) or false")
    metric = cfg.get("optimized_metric")
    near = difflib.get_close_matches(str(metric), METRICS, n=1)
    _require(metric is None or metric in METRICS, "optimized_metric", metric,
             f"one of {', '.join(METRICS)}{f' (did you mean {near[0]}?)' if near else ''}")
    _require(metric not in ("test_acc", "test_loss", "test_masked_acc") or test, "optimized_metric", metric,
             "a validation metric when test=false (best_val_acc), or set test=true")
    init = cfg.get("init_from")
    _require(init is None or isinstance(init, str) and init.strip() != "", "init_from", init,
             "null or the directory of a stage=pretrain run (or one of its .ckpt files)")
    if init is not None and cfg.get("stage") == "pretrain":
        raise ValueError(f"init_from={init} starts a classification run from a pretrained encoder, but this is a "
                         f"pretraining run (stage=pretrain); drop init_from, or drop stage=pretrain to fine-tune")


def normalize_limits(cfg: DictConfig) -> None:
    """``data.limit_examples=16`` means 16 per split: spell it out as a mapping, so the task
    configs' ``${data.limit_examples.train}`` (how many examples to generate) sees it too."""
    limit = cfg.data.get("limit_examples")
    if limit is None or isinstance(limit, DictConfig):
        if isinstance(limit, DictConfig):
            for k in limit:
                if k not in SPLITS:
                    near = difflib.get_close_matches(str(k), SPLITS, n=1)
                    raise ValueError(f"data.limit_examples has unknown split {k!r}"
                                     f"{f' (did you mean {near[0]!r}?)' if near else ''}; "
                                     f"use positive ints keyed by {', '.join(SPLITS)}")
        return
    _require(_is_int(limit) and limit >= 1, "data.limit_examples", limit,
             "a positive integer (every split) or a mapping such as {train: 256, val: 64, test: 64}")
    with open_dict(cfg):
        cfg.data.limit_examples = {s: int(limit) for s in SPLITS}


def check_resolves(cfg: DictConfig) -> None:
    """Every ``${...}`` resolves; else one line naming the key."""
    from omegaconf.errors import OmegaConfBaseException

    try:
        OmegaConf.to_container(cfg, resolve=True)
    except OmegaConfBaseException as err:
        first = (str(err).splitlines() or [type(err).__name__])[0]
        key = getattr(err, "full_key", None) or "the config"
        raise ValueError(f"{key} cannot be resolved ({first}); fix the ${{...}} interpolation in "
                         f"that value") from err


def _cache_key(cfg: DictConfig) -> str:
    """The key a user sets for the data cache: ``paths.cache_dir`` unless data.cache_dir differs."""
    paths = cfg.get("paths")
    same = isinstance(paths, DictConfig) and paths.get("cache_dir") == cfg.data.get("cache_dir")
    return "paths.cache_dir" if same else "data.cache_dir"


def _reads_files(cfg: DictConfig) -> bool:
    """Whether ``cfg.data``'s source reads ``data.root`` (generated sources do not)."""
    try:
        cls = get_object(str(cfg.data._target_))
    except Exception:  # noqa: BLE001  (the datamodule's own check reports a bad _target_)
        return True
    return cfg.data.get("source") not in getattr(cls, "generated_sources", ())


def check_paths(cfg: DictConfig) -> None:
    """The data cache directory exists or can be created (an existing read-only one is accepted:
    a complete cache is only read), and ``data.root``, when the source reads it, is a directory
    this process can read. A missing ``data.root`` is left to the datamodule, whose error names the
    command that fetches the data."""
    from lra_mega.data.errors import os_reason

    cache = cfg.data.get("cache_dir")
    if cache is not None:
        key, path = _cache_key(cfg), Path(str(cache)).expanduser()
        fix = f"set {key}=DIR (or $LRA_MEGA_CACHE) to a directory you can write"
        if path.exists() and not path.is_dir():
            raise ValueError(f"{key}={cache} is a file, not a directory; {fix}")
        try:
            path.mkdir(parents=True, exist_ok=True)
        except OSError as err:
            expanded = "" if str(path) == str(cache) else f" {path}"
            raise ValueError(f"{key}={cache}: cannot create the data cache directory{expanded} "
                             f"({os_reason(err, err.filename or path)}); {fix}") from err
    root = cfg.data.get("root")
    if root is None or not _reads_files(cfg):
        return
    path = Path(str(root)).expanduser()
    if path.exists() and not path.is_dir():
        raise ValueError(f"data.root={root} is a file, not a directory; point data.root at the directory "
                         f"holding the data (lra_release/, or the parquet files of text/image)")
    if path.is_dir() and not os.access(path, os.R_OK | os.X_OK):
        raise ValueError(f"data.root={root} cannot be read (permission denied); fix its permissions "
                         f"(chmod u+rx) or point data.root at a readable copy")


def check_config(cfg: DictConfig, overrides: Iterable[str] = ()) -> None:
    """Everything checkable from the config alone: added keys, interpolations, run numbers, data
    limits, then the paths."""
    check_added_keys(cfg, overrides)
    normalize_limits(cfg)
    check_resolves(cfg)
    check_run_settings(cfg)
    check_paths(cfg)


def trainer_error_message(cfg: DictConfig, err: BaseException) -> str:
    """One line for a Trainer that Lightning refuses to build."""
    text = " ".join(str(err).split())
    accelerator = cfg.trainer.get("accelerator")
    if isinstance(err, ImportError) or any(m in text for m in (
            "not available", "can not run on your system", "No supported gpu backend")):
        return (f"trainer.accelerator={accelerator!r} asks for a device this machine does not have "
                f"({text.split('. ')[0].rstrip('!.')}); use trainer=cpu, or trainer=default to pick the device itself")
    if isinstance(err, TypeError) and "unexpected keyword argument" in text:
        bad = text.split("unexpected keyword argument")[-1].strip(" '\"")
        names, _ = _section_params(cfg, "trainer") or (set(), True)
        return unknown_key_message(f"trainer.{bad}", [f"trainer.{n}" for n in names],
                                   " (not a Lightning Trainer flag)")
    return f"Lightning rejected the trainer settings: {text}; fix the trainer.* overrides"
