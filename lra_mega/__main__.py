"""Hydra entry point: ``python -m lra_mega task=pathfinder [overrides]``.

Errors the user can fix (unknown config choice, invalid model/data argument, missing
data) are printed as one line and exit with status 1; ``LRA_MEGA_DEBUG=1`` or
``hydra.verbose=true`` shows the full traceback instead.
"""

from __future__ import annotations

import logging
import os
import sys
from typing import NoReturn

import hydra
from hydra.errors import ConfigCompositionException, InstantiationException, MissingConfigException
from omegaconf import DictConfig

from lra_mega import resolvers  # noqa: F401  (registers ${lra.*} before composition)

PROG = "lra_mega"


def _debug() -> bool:
    return os.environ.get("LRA_MEGA_DEBUG", "") not in ("", "0") or any(
        a.startswith("hydra.verbose=") and not a.endswith(("=false", "=False")) for a in sys.argv
    )


def _fail(message: str) -> NoReturn:
    print(f"{PROG}: error: {' '.join(message.split())}", file=sys.stderr)
    raise SystemExit(1)


def composition_message(err: ConfigCompositionException) -> str:
    """One line for a bad config choice, naming the group and its valid options."""
    if isinstance(err, MissingConfigException) and err.options and err.missing_cfg_file:
        group, _, choice = err.missing_cfg_file.rpartition("/")
        return f"unknown {group} '{choice}'; choose one of: {', '.join(sorted(err.options))}"
    text = str(err) or str(err.__cause__ or type(err).__name__)
    lines = [ln.strip() for ln in text.splitlines() if ln.strip()]
    if len(lines) > 1 and lines[1].startswith("Available options"):
        # "You must specify 'task', e.g, task=<OPTION>" + option list
        return f"{lines[0]}; choose one of: {', '.join(sorted(lines[2:]))}"
    return " ".join(lines)


@hydra.main(version_base="1.3", config_path="configs", config_name="config")
def _app(cfg: DictConfig) -> float | None:
    # heavy imports after composition, so bad choices fail fast
    from lra_mega.data.errors import LRADataError
    from lra_mega.train import train

    # `import lightning` adds its own stderr handler; Hydra's root handler already prints.
    logging.getLogger("lightning").handlers.clear()
    try:
        results = train(cfg)
    except Exception as err:  # noqa: BLE001  (narrowed below)
        cause = err.__cause__ if isinstance(err, InstantiationException) else err
        if _debug() or not isinstance(cause, (ValueError, LRADataError)):
            raise
        _fail(str(cause))
    return results.get(cfg.get("optimized_metric") or "best_val_acc")


def main() -> None:
    """Run the Hydra app; print composition errors as one line listing the valid choices."""
    # Let Hydra raise instead of printing multi-line reports, so we can shorten them.
    os.environ.setdefault("HYDRA_FULL_ERROR", "1")
    try:
        _app()
    except ConfigCompositionException as err:
        if _debug():
            raise
        _fail(composition_message(err))


if __name__ == "__main__":
    main()
