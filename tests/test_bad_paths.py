"""Paths a user sets (run dir, cache dir, data.root, download destination) and a full disk end in
one line naming the path, the reason and the fix, and leave nothing half-written under a final
name."""

from __future__ import annotations

import errno
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from harness import compose_config, error_lines
from omegaconf import OmegaConf

from lra_mega.data import cache, shards
from lra_mega.data.errors import LRADataError
from lra_mega.run.validate import check_paths

REPO = Path(__file__).resolve().parents[1]
NO_PROC = not Path("/proc/self").exists()


def _one_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 1, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr, proc.stderr[-2000:]
    lines = error_lines(proc.stderr)
    assert len(lines) == 1, proc.stderr[-2000:]
    return lines[0]


def _enospc(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def _a_file(tmp_path: Path) -> Path:
    path = tmp_path / "a_file"
    path.write_text("not a directory\n")
    return path


# ----- the CLI: run directory and cache directory ------------------------------------------

@pytest.mark.skipif(NO_PROC, reason="needs /proc")
def test_run_dir_in_proc_is_one_line(run_cli):
    line = _one_line(run_cli("task=listops", "trainer=smoke", "hydra.run.dir=/proc/nope"))
    assert "cannot write the run directory /proc/nope" in line and "set hydra.run.dir=DIR" in line


def test_run_dir_under_a_file_is_one_line(run_cli, tmp_path):
    bad = _a_file(tmp_path) / "run"
    line = _one_line(run_cli("task=listops", "trainer=smoke", f"hydra.run.dir={bad}"))
    assert f"cannot write the run directory {bad}" in line and "is a file, not a directory" in line


def test_run_dir_whose_log_file_cannot_be_opened_is_one_line(run_cli, tmp_path):
    """Hydra opens <run dir>/lra_mega.log before the run starts; here a directory is in the way."""
    (tmp_path / "run" / "lra_mega.log").mkdir(parents=True)
    line = _one_line(run_cli("task=listops", "trainer=smoke", f"hydra.run.dir={tmp_path / 'run'}"))
    assert f"cannot write the run directory {tmp_path / 'run'} ({tmp_path / 'run' / 'lra_mega.log'}" in line


def test_sweep_dir_that_is_a_file_is_one_line(run_cli, tmp_path):
    bad = _a_file(tmp_path)
    line = _one_line(run_cli("-m", "task=listops", "trainer=smoke", f"hydra.sweep.dir={bad}"))
    assert f"cannot write the sweep directory {bad}" in line and "hydra.sweep.dir=DIR" in line


@pytest.mark.skipif(NO_PROC, reason="needs /proc")
def test_cache_dir_in_proc_is_one_line(run_cli, tmp_path):
    line = _one_line(run_cli("task=listops", "trainer=smoke", "paths.cache_dir=/proc/nope",
                             f"hydra.run.dir={tmp_path / 'run'}"))
    assert "paths.cache_dir=/proc/nope: cannot create the data cache directory" in line
    assert "set paths.cache_dir=DIR" in line


# ----- config checks before any data work ------------------------------------------------

def test_cache_dir_that_is_a_file_is_refused(tmp_path):
    bad = _a_file(tmp_path)
    with pytest.raises(ValueError, match=f"paths.cache_dir={bad} is a file, not a directory"):
        check_paths(compose_config(["task=listops", f"paths.cache_dir={bad}"]))
    with pytest.raises(ValueError, match="data.cache_dir=.*a_file/sub: cannot create the data cache directory .*a_file is a file"):
        check_paths(compose_config(["task=listops", f"data.cache_dir={bad}/sub"]))


def test_cache_dir_is_created(tmp_path):
    check_paths(compose_config(["task=listops", f"paths.cache_dir={tmp_path / 'new' / 'cache'}"]))
    assert (tmp_path / "new" / "cache").is_dir()


def test_data_root_that_is_a_file_is_refused(tmp_path):
    bad = _a_file(tmp_path)
    with pytest.raises(ValueError, match=f"data.root={bad} is a file, not a directory"):
        check_paths(compose_config(["task=retrieval", f"data.root={bad}", f"paths.cache_dir={tmp_path}"]))
    # a generated source reads no data.root: the datamodule's own message says so, not this check
    check_paths(compose_config(["task=listops", f"data.root={bad}", f"paths.cache_dir={tmp_path}"]))


def test_unreadable_data_root_is_refused(tmp_path, monkeypatch):
    import lra_mega.run.validate as validate

    root = tmp_path / "root"
    root.mkdir()
    real = validate.os.access
    monkeypatch.setattr(validate.os, "access", lambda p, mode: Path(p) != root and real(p, mode))
    with pytest.raises(ValueError, match=f"data.root={root} cannot be read .*chmod"):
        check_paths(compose_config(["task=retrieval", f"data.root={root}", f"paths.cache_dir={tmp_path}"]))


# ----- errors during a run -------------------------------------------------------------

def test_disk_full_during_a_run_is_one_line(tmp_path):
    """ENOSPC with no file name (Lightning writing a checkpoint) names both places to free."""
    from lra_mega.__main__ import _user_error

    cfg = compose_config(["task=listops", f"paths.cache_dir={tmp_path / 'cache'}"], output_dir=tmp_path / "run")
    line = _user_error(OSError(errno.ENOSPC, "No space left on device"), cfg)
    assert line and "\n" not in line and "no space left on the device" in line
    assert str(tmp_path / "run") in line and str(tmp_path / "cache") in line and "re-run the same command" in line


def test_refused_path_during_a_run_names_its_key(tmp_path):
    from lra_mega.__main__ import _user_error

    root = tmp_path / "root"
    cfg = compose_config(["task=retrieval", f"data.root={root}", f"paths.cache_dir={tmp_path / 'c'}"],
                         output_dir=tmp_path / "run")
    line = _user_error(PermissionError(errno.EACCES, "Permission denied", str(root / "x.tsv")), cfg)
    assert f"data.root={root}" in line and "permission denied" in line
    line = _user_error(PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "run" / "a")), cfg)
    assert "hydra.run.dir=" in line
    assert _user_error(OSError(errno.EINVAL, "Invalid argument"), cfg) is None  # a bug: traceback


# ----- the data cache and shards on a full disk --------------------------------------------

def test_cache_write_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "listops" / "split"
    monkeypatch.setattr(cache.np, "save", _enospc)
    with pytest.raises(LRADataError) as err:
        cache.save_split(target, {"x": np.arange(10)}, {})
    msg = str(err.value)
    assert f"cannot write the data cache {target}" in msg and "no space left" in msg and "paths.cache_dir" in msg
    assert list(target.parent.iterdir()) == []
    monkeypatch.undo()

    cache.save_split(target, {"x": np.arange(10)}, {})  # a complete old split survives a failed rewrite
    monkeypatch.setattr(cache.np, "save", _enospc)
    with pytest.raises(LRADataError):
        cache.save_split(target, {"x": np.arange(20)}, {})
    monkeypatch.undo()
    assert [p.name for p in target.parent.iterdir()] == ["split"]
    assert cache.load_split(target)["x"].tolist() == list(range(10))


def test_cache_dir_under_a_file_is_one_line(tmp_path):
    with pytest.raises(LRADataError, match="is a file, not a directory; free space there, or set paths.cache_dir"):
        cache.save_split(_a_file(tmp_path) / "listops" / "split", {"x": np.arange(3)}, {})


def test_shard_write_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(shards.np, "savez", _enospc)
    with pytest.raises(LRADataError, match="cannot write the data shard .*shard_00000.npz: no space left"):
        shards.write_shard(shards.shard_path(tmp_path, 0), {"x": np.arange(4)})
    assert list(tmp_path.iterdir()) == []


def test_consolidation_without_the_space_keeps_the_shards(tmp_path, monkeypatch, capsys):
    """Writing a memory map past the free space is a SIGBUS: generation checks first, says so in
    one line and keeps its shards, so the same command continues once space is freed."""
    from lra_mega.__main__ import os_error_message
    from lra_mega.data import pathfinder
    from lra_mega.data.pathfinder_generate import pathfinder_settings

    out = tmp_path / "cache" / "train"
    monkeypatch.setattr(pathfinder.shutil, "disk_usage", lambda p: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    with pytest.raises(OSError) as info:
        pathfinder.generate_split(out, pathfinder_settings(32), 256, 0, shard_size=256, workers=1, progress=False)
    assert info.value.errno == errno.ENOSPC and not out.exists()
    assert list((tmp_path / "cache" / "train.shards").glob("shard_*.npz")), "the shards must be kept"
    cfg = OmegaConf.create({"paths": {"output_dir": str(tmp_path / "run")}, "data": {"cache_dir": str(tmp_path)}})
    line = os_error_message(info.value, cfg)
    assert "no space left on the device" in line and "train.shards/pixels.npy" in line and "re-run" in line
    monkeypatch.undo()
    arrays = pathfinder.generate_split(out, pathfinder_settings(32), 256, 0, shard_size=256, workers=1, progress=False)
    assert arrays["pixels"].shape == (256, 1024)


def _in_small_file_limit(code: str, limit: int) -> subprocess.CompletedProcess:
    """Run ``code`` where no file may grow past ``limit`` bytes (a real, partial write that fails
    with EFBIG, whatever function does the writing)."""
    prelude = textwrap.dedent(f"""
        import resource, signal
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        resource.setrlimit(resource.RLIMIT_FSIZE, ({limit}, {limit}))
    """)
    return subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(code)], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_partial_writes_leave_no_complete_looking_file(tmp_path):
    proc = _in_small_file_limit(f"""
        import numpy as np
        from pathlib import Path
        from lra_mega.data import cache, shards
        from lra_mega.data.errors import LRADataError
        root = Path({str(tmp_path)!r})
        for name, call in [
            ("cache", lambda: cache.save_split(root / "c" / "split", {{"x": np.arange(1000)}}, {{}})),
            ("shard", lambda: shards.write_shard(shards.shard_path(root, 0), {{"x": np.arange(1000)}})),
            ("spec", lambda: shards.prepare_shard_dir(root / "s", {{"blob": "y" * 1000}})),
        ]:
            try:
                call()
                print(name, "no error")
            except LRADataError as e:
                print(name, "one line" if "\\n" not in str(e) and "cannot write" in str(e) else e)
    """, limit=200)
    assert proc.stdout.split("\n")[:3] == ["cache one line", "shard one line", "spec one line"], proc.stderr
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


# ----- the download destination ---------------------------------------------------------

def test_download_dest_under_a_file_is_one_line(tmp_path):
    from lra_mega.data.download import download_file

    bad = _a_file(tmp_path)
    with pytest.raises(LRADataError, match=f"cannot write the download directory {bad}: .*is a file.*--dest"):
        download_file("http://127.0.0.1:9/x.gz", bad / "lra_release.gz", progress=False)


def test_extract_into_a_file_blames_the_destination_not_the_archive(tmp_path):
    from test_download import build_archive

    from lra_mega.data.download import extract_tasks

    archive = tmp_path / "lra_release.gz"
    archive.write_bytes(build_archive())
    dest = tmp_path / "dest"
    dest.mkdir()
    (dest / "lra_release").write_text("in the way\n")
    with pytest.raises(LRADataError) as err:
        extract_tasks(archive, dest, ["listops"], progress=False)
    msg = str(err.value)
    assert "cannot write the extracted data" in msg and "is a file, not a directory" in msg
    assert "truncated" not in msg and "delete it" not in msg  # the archive is fine: keep it


def test_download_script_with_a_file_as_dest_is_one_line(tmp_path, capsys):
    from test_download import _download_script

    bad = _a_file(tmp_path)
    rc = _download_script().main(["--tasks", "listops", "--url", "http://127.0.0.1:9/x.gz", "--dest", str(bad),
                                  "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith(f"error: cannot write the download directory {bad}")


@pytest.mark.skipif(sys.platform == "win32", reason="needs RLIMIT_FSIZE")
def test_download_and_extract_on_a_full_disk_leave_no_final_files(tmp_path):
    from test_download import build_archive

    archive = tmp_path / "src" / "lra_release.gz"
    archive.parent.mkdir()
    archive.write_bytes(build_archive() + bytes(4000))  # trailing zeros: still a valid tar.gz
    proc = _in_small_file_limit(f"""
        from pathlib import Path
        from lra_mega.data.download import download_file, extract_tasks
        from lra_mega.data.errors import LRADataError
        root, archive = Path({str(tmp_path)!r}), Path({str(archive)!r})
        for name, call in [
            ("download", lambda: download_file(archive.as_uri(), root / "dl" / "lra_release.gz", progress=False)),
            ("extract", lambda: extract_tasks(archive, root / "out", ["listops", "retrieval"], progress=False)),
        ]:
            try:
                call()
                print(name, "no error")
            except LRADataError as e:
                print(name, str(e).replace("\\n", " | "))
    """, limit=1500)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith(f"download cannot write the download {tmp_path / 'dl' / 'lra_release.gz.part'}")
    assert "rerun the same command to resume" in lines[0]
    assert lines[1].startswith("extract cannot write the extracted file") and "truncated" not in lines[1]
    assert not (tmp_path / "dl" / "lra_release.gz").exists()
    written = [p for p in (tmp_path / "out").rglob("*") if p.is_file()]
    assert all(p.suffix != ".tmp" for p in written), written  # no half-extracted member left over


def test_hub_parquet_on_a_full_disk_leaves_no_parquet(tmp_path, monkeypatch):
    import types

    from lra_mega.data.download import fetch_hub

    class Split:
        def to_parquet(self, path: str) -> None:
            Path(path).write_bytes(b"PAR1 half")
            raise OSError(errno.ENOSPC, "No space left on device")

    fake = types.SimpleNamespace(load_dataset=lambda name: {"train": Split(), "test": Split()})
    monkeypatch.setitem(sys.modules, "datasets", fake)
    with pytest.raises(LRADataError, match="cannot write the parquet file .*train-00000-of-00001.parquet: no space"):
        fetch_hub("text", tmp_path)
    assert [p.name for p in tmp_path.rglob("*") if p.is_file()] == []


@pytest.mark.parametrize("error, one_line", [
    (OSError(errno.ENOSPC, "No space left on device"), True),  # e.g. Lightning writing a checkpoint
    (OSError(errno.EINVAL, "Invalid argument"), False),  # a bug: its traceback, not a run-dir message
])
def test_os_errors_of_the_run_itself(tmp_path, monkeypatch, capsys, error, one_line):
    import lra_mega.run.train
    from hydra.core.global_hydra import GlobalHydra

    from lra_mega.__main__ import main

    def train(cfg):
        raise error

    monkeypatch.setattr(lra_mega.run.train, "train", train)
    monkeypatch.setattr(sys, "argv", ["lra_mega", "task=listops", "trainer=smoke", "logger=none",
                                      f"hydra.run.dir={tmp_path / 'run'}"])
    monkeypatch.delenv("LRA_MEGA_DEBUG", raising=False)
    GlobalHydra.instance().clear()
    try:
        if one_line:
            with pytest.raises(SystemExit) as exit_:
                main()
            assert exit_.value.code == 1
            lines = error_lines(capsys.readouterr().err)
            assert len(lines) == 1 and "no space left on the device" in lines[0]
            assert str(tmp_path / "run") in lines[0] and "re-run the same command" in lines[0]
        else:
            with pytest.raises(OSError):
                main()
            assert error_lines(capsys.readouterr().err) == []
    finally:
        GlobalHydra.instance().clear()
