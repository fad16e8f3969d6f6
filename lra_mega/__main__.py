"""Hydra entry point: ``python -m lra_mega task=pathfinder [overrides]``.

Errors the user can fix (unknown config choice or key, an override that is not key=value,
invalid model/data/trainer setting, missing data, a run directory that cannot be resumed or
written, a data cache that cannot be written, a full disk) are printed as one line and exit with
status 1; ``LRA_MEGA_DEBUG=1`` or ``hydra.verbose=true`` shows the full traceback instead.
"""

from __future__ import annotations

import contextlib
import difflib
import errno
import logging
import os
import sys
from importlib import resources
from pathlib import Path
from typing import NoReturn

import hydra
from hydra.errors import (ConfigCompositionException, InstantiationException, MissingConfigException,
                          OverrideParseException)
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from lra_mega.run import resolvers  # noqa: F401  (registers ${lra.*} before composition)

PROG = "lra_mega"
GROUPS = ("task", "experiment", "stage", "trainer", "model", "optim", "logger", "callbacks", "sweep")
HELP = """\
usage: python -m lra_mega task=<task> [group=choice ...] [key=value ...] [-m] [--cfg job]

Train and evaluate Mega on a Long Range Arena task (Lightning + Hydra).

config groups (choose one with group=choice):
{groups}

examples:
  python -m lra_mega task=listops trainer=smoke        tiny CPU check of the whole pipeline
  python -m lra_mega experiment=pathfinder_paper       the paper's Pathfinder setting
  python -m lra_mega task=text optim.lr=3e-3 seed=2    any key of `--cfg job` can be overridden
  python -m lra_mega task=listops hydra.run.dir=DIR    re-running the same command in DIR resumes
  python -m lra_mega task=listops stage=pretrain hydra.run.dir=DIR   self-pretraining, no labels
  python -m lra_mega task=listops init_from=DIR        fine-tune from that pretrained encoder
  python -m lra_mega -m task=listops seed=1,2,3        a sweep: outputs/multiruns/<time>/<job>/

keys:
  seed=N              model init, dropout and training order (generated data is fixed by data.seed)
  resume=auto|never|PATH.ckpt   continue the run in its directory (default auto)
  init_from=DIR|PATH.ckpt       start the encoder from a stage=pretrain run (a fresh head)
  pretrain.objective=masked|causal, pretrain.mask_prob=P, pretrain.loss=ce|l1   (stage=pretrain)
  data.limit_examples=N         cap every split (smoke runs); data.root=DIR reads local files
  +trainer.<flag>=V   a Lightning Trainer flag the configs do not list

other options:
  --cfg job           print the composed config and exit
  -m, --multirun      run a sweep (comma-separated values)
  --hydra-help        Hydra's own options

Errors print one line (LRA_MEGA_DEBUG=1 shows the traceback).
Docs: README.md, docs/USAGE.md, docs/PRESETS.md.
"""


def _debug() -> bool:
    return os.environ.get("LRA_MEGA_DEBUG", "") not in ("", "0") or any(
        a.startswith("hydra.verbose=") and not a.endswith(("=false", "=False")) for a in sys.argv
    )


def _fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(1)


def choices(group: str) -> list[str]:
    """The shipped choices of a config group (file names under configs/<group>/, shipped as lra_mega.configs)."""
    folder = resources.files("lra_mega.configs") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def help_text() -> str:
    lines = [f"  {g + ':':<11} {', '.join(choices(g))}" for g in GROUPS]
    return HELP.format(groups="\n".join(lines))


def _unknown_key(err: ConfigCompositionException) -> str | None:
    """"unknown key X; nearest valid: ..." for an override of a key no config defines."""
    from lra_mega.run.validate import flat_keys, unknown_key_message

    cause = err.__cause__
    full_key = getattr(cause, "full_key", None)
    parent = getattr(cause, "parent_node", None)
    if not full_key or "not in struct" not in str(cause) and "Key '" not in str(cause):
        return None
    if str(full_key) == "pretrain" or str(full_key).startswith("pretrain."):
        from lra_mega.run.validate import PRETRAIN_ONLY

        return PRETRAIN_ONLY
    if parent is None:
        return unknown_key_message(str(full_key), [])
    prefix = str(full_key).rsplit(".", 1)[0] + "." if "." in str(full_key) else ""
    candidates = [prefix + k for k in flat_keys(parent)]
    return unknown_key_message(str(full_key), candidates,
                               " (no config defines it; a new Trainer flag takes +trainer.<flag>)"
                               if str(full_key).startswith("trainer.") else "")


def composition_message(err: ConfigCompositionException) -> str:
    """One line for a bad config choice or key, naming the valid options."""
    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, choice = err.missing_cfg_file.rpartition("/")
        return f"unknown {group} '{choice}'; choose one of: {', '.join(sorted(err.options))}"
    unknown = _unknown_key(err)
    if unknown:
        return unknown
    text = str(err) or str(err.__cause__ or type(err).__name__)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[1].startswith("Available options"):
        # "You must specify 'task', e.g, task=<OPTION>" + option list
        return f"{lines[0]}; choose one of: {', '.join(sorted(lines[2:]))}"
    cause = err.__cause__
    if cause is not None and str(cause) and str(cause) not in text:
        lines.append(f"({str(cause).splitlines()[0]})")
    return " ".join(lines)


def override_message(err: OverrideParseException) -> str:
    """One line for an override Hydra cannot parse; a bare word gets the ``group=choice`` it
    probably meant (``listops`` -> ``task=listops``)."""
    word = str(getattr(err, "override", "") or "")
    if word and "=" not in word and not word.startswith(("+", "~", "-")):
        if word in GROUPS:
            return f"'{word}' needs a value: {word}=<choice>, one of: {', '.join(choices(word))}"
        exact = [f"{g}={word}" for g in GROUPS if word in choices(g)]
        options = {f"{g}={c}": c for g in GROUPS for c in choices(g)}
        near = exact or [o for c in difflib.get_close_matches(word, set(options.values()), n=3, cutoff=0.7)
                         for o, oc in options.items() if oc == c][:3]
        if near:
            return f"'{word}' is not an override (key=value); did you mean {' or '.join(near)}?"
        return (f"'{word}' is not an override; overrides are key=value or group=choice, e.g. task=listops "
                f"seed=2 (python -m lra_mega --help lists the groups)")
    lines = str(getattr(err, "message", "") or err).splitlines()
    detail = next((ln.strip() for ln in lines if ln.strip() and not ln.startswith(("See ", "Error parsing"))),
                  "syntax error")
    return (f"cannot parse the override {word!r} ({detail}); write key=value, quoting a value "
            f"with spaces or special characters, e.g. 'data.root=\"/my data\"'")


def run_dir_message(err: OSError) -> str:
    """One line for a run (or sweep) directory Hydra cannot create or write."""
    from lra_mega.data.errors import os_reason

    sweep = any(a in ("-m", "--multirun") for a in sys.argv[1:])
    key = "hydra.sweep.dir" if sweep else "hydra.run.dir"
    given = next((a.split("=", 1)[1] for a in reversed(sys.argv[1:]) if a.startswith(key + "=")), None)
    failed = str(err.filename or given or "?")
    reason = os_reason(err, err.filename)
    where = f"{given} ({failed}: {reason})" if given and Path(given) != Path(failed) else f"{failed}: {reason}"
    return (f"cannot write the {'sweep' if sweep else 'run'} directory {where}; set {key}=DIR to a directory "
            f"you can write")


def _within(path: Path, base: object) -> bool:
    if base is None:
        return False
    try:
        return path.resolve().is_relative_to(Path(str(base)).expanduser().resolve())
    except (OSError, RuntimeError):
        return False


def _select(cfg: DictConfig | None, key: str) -> object:
    """``cfg``'s value at ``key``, or None when absent or unresolvable (an error message must not fail)."""
    from omegaconf import OmegaConf

    if cfg is None:
        return None
    try:
        return OmegaConf.select(cfg, key, default=None, throw_on_resolution_failure=False)
    except Exception:  # noqa: BLE001
        return None


def os_error_message(err: OSError, cfg: DictConfig | None) -> str | None:
    """One line for an OSError of a run: a full disk, or a path of the run directory, the data
    cache or ``data.root`` the system refused; None for anything else (a traceback)."""
    from lra_mega.data.errors import os_reason

    out, cache, root = (_select(cfg, k) for k in ("paths.output_dir", "data.cache_dir", "data.root"))
    if err.errno in (errno.ENOSPC, errno.EDQUOT):
        where = f"while writing {err.filename}" if err.filename else "while writing the run's files"
        places = ", ".join(f"{what} {p}" for what, p in (("the run directory", out), ("the data cache", cache)) if p)
        return (f"{os_reason(err, err.filename or out or '.')} {where}; free space ({places or 'on that disk'}) and "
                f"re-run the same command: resume=auto continues from the last checkpoint")
    if not err.filename:
        return None
    path = Path(str(err.filename))
    reason = os_reason(err, err.filename)
    if _within(path, root):
        return (f"cannot read {path} (data.root={root}): {reason}; fix its permissions or point "
                f"data.root at a readable copy")
    for key, base in (("hydra.run.dir", out), ("paths.cache_dir", cache)):
        if _within(path, base):
            return f"cannot write {path} ({key}={base}): {reason}; set {key}=DIR to a directory you can write"
    return f"cannot use {path}: {reason}; check that path (LRA_MEGA_DEBUG=1 shows where it was used)"


def _user_error(err: BaseException, cfg: DictConfig | None = None) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug (traceback)."""
    from lra_mega.data.errors import LRADataError

    cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
    if isinstance(cause, (ValueError, LRADataError)):
        return str(cause)
    if isinstance(cause, OSError):
        return os_error_message(cause, cfg)
    if isinstance(cause, OmegaConfBaseException):  # e.g. a bad ${...} in an override
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        key = getattr(cause, "full_key", None)
        return f"{key}: {first}" if key and str(key) not in first else first
    if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
        return f"{str(cause).splitlines()[0]}; a + override added an argument this class does not take"
    return None


@hydra.main(version_base="1.3", config_path="pkg://lra_mega.configs", config_name="config")
def _app(cfg: DictConfig) -> float | None:
    # heavy imports after composition, so bad choices fail fast
    from lra_mega.run.train import train

    # `import lightning` adds its own stderr handler; Hydra's root handler already prints.
    logging.getLogger("lightning").handlers.clear()
    try:
        results = train(cfg)
    except Exception as err:  # noqa: BLE001  (narrowed below)
        message = None if _debug() else _user_error(err, cfg)
        if message is None:
            with contextlib.suppress(AttributeError):  # main() must not take it for Hydra's run dir error
                err._lra_mega_train = True  # type: ignore[attr-defined]
            raise
        _fail(message)
    return results.get(cfg.get("optimized_metric") or "best_val_acc")


def main() -> None:
    """Run the Hydra app; print composition errors as one line listing the valid choices."""
    if any(a in ("--help", "-h") for a in sys.argv[1:]):
        print(help_text(), end="")
        return
    # Let Hydra raise instead of printing multi-line reports, so we can shorten them.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        _app()
    except OverrideParseException as err:
        if _debug():
            raise
        _fail(override_message(err))
    except ConfigCompositionException as err:
        if _debug():
            raise
        _fail(composition_message(err))
    except OmegaConfBaseException as err:
        if _debug():
            raise
        _fail(_user_error(err) or str(err))
    except (OSError, ValueError) as err:  # Hydra making the run dir or its log file (train's are above)
        os_err = err if isinstance(err, OSError) else err.__cause__ or err.__context__
        if _debug() or not isinstance(os_err, OSError) or getattr(err, "_lra_mega_train", False):
            raise
        _fail(run_dir_message(os_err))


if __name__ == "__main__":
    main()
