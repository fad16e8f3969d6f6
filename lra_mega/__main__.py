"""Hydra entry point: ``python -m lra_mega task=pathfinder [overrides]``.

Errors the user can fix (unknown config choice or key, invalid model/data/trainer setting,
missing data, a run directory that cannot be resumed) are printed as one line and exit with
status 1; ``LRA_MEGA_DEBUG=1`` or ``hydra.verbose=true`` shows the full traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
from importlib import resources
from typing import NoReturn

import hydra
from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException
from omegaconf import DictConfig
from omegaconf.errors import OmegaConfBaseException

from lra_mega import resolvers  # noqa: F401  (registers ${lra.*} before composition)

PROG = "lra_mega"
GROUPS = ("task", "experiment", "trainer", "model", "optim", "logger", "callbacks", "sweep")
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
  python -m lra_mega -m task=listops seed=1,2,3        a sweep: outputs/multiruns/<time>/<job>/

keys:
  seed=N              model init, dropout and training order (generated data is fixed by data.seed)
  resume=auto|never|PATH.ckpt   continue the run in its directory (default auto)
  data.limit_examples=N         cap every split (smoke runs); data.root=DIR reads local files
  +trainer.<flag>=V   a Lightning Trainer flag the configs do not list

other options:
  --cfg job           print the composed config and exit
  -m, --multirun      run a sweep (comma-separated values)
  --hydra-help        Hydra's own options

Errors print one line (LRA_MEGA_DEBUG=1 shows the traceback). Docs: README.md, docs/PRESETS.md.
"""


def _debug() -> bool:
    return os.environ.get("LRA_MEGA_DEBUG", "") not in ("", "0") or any(
        a.startswith("hydra.verbose=") and not a.endswith(("=false", "=False")) for a in sys.argv
    )


def _fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(1)


def choices(group: str) -> list[str]:
    """The shipped choices of a config group (file names under lra_mega/configs/<group>/)."""
    folder = resources.files("lra_mega.configs") / group
    return sorted(p.name[:-5] for p in folder.iterdir() if p.name.endswith(".yaml"))


def help_text() -> str:
    lines = [f"  {g + ':':<11} {', '.join(choices(g))}" for g in GROUPS]
    return HELP.format(groups="\n".join(lines))


def _unknown_key(err: ConfigCompositionException) -> str | None:
    """"unknown key X; nearest valid: ..." for an override of a key no config defines."""
    from lra_mega.validate import flat_keys, unknown_key_message

    cause = err.__cause__
    full_key = getattr(cause, "full_key", None)
    parent = getattr(cause, "parent_node", None)
    if not full_key or "not in struct" not in str(cause) and "Key '" not in str(cause):
        return None
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


def _user_error(err: BaseException) -> str | None:
    """The one-line message of an error the user can fix, or None for a bug (traceback)."""
    from lra_mega.data.errors import LRADataError

    cause = err.__cause__ if isinstance(err, InstantiationException) and err.__cause__ else err
    if isinstance(cause, (ValueError, LRADataError)):
        return str(cause)
    if isinstance(cause, OmegaConfBaseException):  # e.g. a bad ${...} in an override
        first = str(cause).splitlines()[0] if str(cause) else type(cause).__name__
        key = getattr(cause, "full_key", None)
        return f"{key}: {first}" if key and str(key) not in first else first
    if isinstance(cause, TypeError) and "unexpected keyword argument" in str(cause):
        return f"{str(cause).splitlines()[0]}; a + override added an argument this class does not take"
    return None


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def _app(cfg: DictConfig) -> float | None:
    # heavy imports after composition, so bad choices fail fast
    from lra_mega.train import train

    # `import lightning` adds its own stderr handler; Hydra's root handler already prints.
    logging.getLogger("lightning").handlers.clear()
    try:
        results = train(cfg)
    except Exception as err:  # noqa: BLE001  (narrowed below)
        message = None if _debug() else _user_error(err)
        if message is None:
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
    except ConfigCompositionException as err:
        if _debug():
            raise
        _fail(composition_message(err))
    except OmegaConfBaseException as err:
        if _debug():
            raise
        _fail(_user_error(err) or str(err))


if __name__ == "__main__":
    main()
