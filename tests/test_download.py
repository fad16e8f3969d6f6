"""Download (resume, size/sha checks, offline message) and task extraction, on loopback only."""

from __future__ import annotations

import http.server
import io
import tarfile
import threading

import pytest

from lra_mega.data import LRADataError
from lra_mega.data.download import download_file, extract_tasks

MEMBERS = {
    "lra_release/listops-1000/basic_train.tsv": b"Source\tTarget\n( ( ( [MAX 2 ) 9 ) ] )\t9\n" * 50,
    "lra_release/listops-1000/basic_val.tsv": b"Source\tTarget\n",
    "lra_release/tsv_data/new_aan_pairs.train.tsv": b"1.0\ta\tb\tx\ty\n" * 40,
    "lra_release/tsv_data/other.tsv": b"not aan\n",
    "lra_release/pathfinder32/curv_baseline/metadata/0.npy": b"imgs/0 sample_0.png 0 1\n",
}


def build_archive() -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tf:
        for name, data in MEMBERS.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


class Server:
    """http.server on 127.0.0.1 serving one blob, with optional Range support."""

    def __init__(self, blob: bytes, ranges: bool = True) -> None:
        self.blob, self.ranges, self.seen = blob, ranges, []
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def do_HEAD(self):
                self.send_response(200)
                self.send_header("Content-Length", str(len(outer.blob)))
                self.end_headers()

            def do_GET(self):
                rng = self.headers.get("Range")
                outer.seen.append(rng)
                start = int(rng.split("=")[1].rstrip("-")) if rng and outer.ranges else 0
                body = outer.blob[start:]
                self.send_response(206 if start else 200)
                if start:
                    self.send_header("Content-Range", f"bytes {start}-{len(outer.blob) - 1}/{len(outer.blob)}")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/lra_release.gz"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def blob():
    return build_archive()


@pytest.mark.parametrize("ranges", [True, False])
def test_resume_partial_download(tmp_path, blob, ranges):
    srv = Server(blob, ranges=ranges)
    try:
        dest = tmp_path / "lra_release.gz"
        (tmp_path / "lra_release.gz.part").write_bytes(blob[:300])
        download_file(srv.url, dest, progress=False)
        assert dest.read_bytes() == blob and not (tmp_path / "lra_release.gz.part").exists()
        assert srv.seen == ["bytes=300-"]
        download_file(srv.url, dest, progress=False)  # complete file: no new GET
        assert len(srv.seen) == 1
    finally:
        srv.close()


def test_size_and_checksum_mismatch(tmp_path, blob):
    srv = Server(blob)
    try:
        with pytest.raises(LRADataError, match="rerun the same command to resume"):
            download_file(srv.url, tmp_path / "a.gz", expected_size=len(blob) + 10, progress=False)
        with pytest.raises(LRADataError, match="sha256"):
            download_file(srv.url, tmp_path / "b.gz", sha256="0" * 64, progress=False)
    finally:
        srv.close()


def test_extract_only_requested_tasks(tmp_path, blob):
    archive = tmp_path / "lra_release.gz"
    archive.write_bytes(blob)
    counts = extract_tasks(archive, tmp_path / "out", ["listops", "retrieval"], progress=False)
    assert counts == {"listops": 2, "retrieval": 1}
    root = tmp_path / "out" / "lra_release"
    for name, data in MEMBERS.items():
        path = tmp_path / "out" / name
        wanted = "listops-1000" in name or "new_aan_pairs" in name
        assert path.exists() == wanted
        if wanted:
            assert path.read_bytes() == data
    assert not (root / "pathfinder32").exists()
    with pytest.raises(LRADataError, match="truncated"):
        (tmp_path / "cut.gz").write_bytes(blob[: len(blob) // 2])
        extract_tasks(tmp_path / "cut.gz", tmp_path / "out2", ["pathfinder"], progress=False)


def test_offline_is_one_line(tmp_path, capsys):
    url = "http://127.0.0.1:9/lra_release.gz"  # closed port on loopback
    with pytest.raises(LRADataError) as e:
        download_file(url, tmp_path / "lra_release.gz", timeout=5, progress=False)
    msg = str(e.value)
    assert "\n" not in msg and "could not reach http://127.0.0.1:9/" in msg and "lra_release" in msg

    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(
        "download_lra", pathlib.Path(__file__).parents[1] / "scripts" / "download_lra.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    rc = mod.main(["--tasks", "listops", "--url", url, "--dest", str(tmp_path), "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert rc == 1 and len(err) == 1 and err[0].startswith("error: could not reach")


def _download_script():
    import importlib.util
    import pathlib

    spec = importlib.util.spec_from_file_location(
        "download_lra", pathlib.Path(__file__).parents[1] / "scripts" / "download_lra.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_offline_hint_works_as_printed(tmp_path, blob, capsys):
    """The hint's two ways out, followed with no server at all: an archive put in DEST, and
    --url file://..."""
    dead = "http://127.0.0.1:9/lra_release.gz"
    mod = _download_script()
    assert mod.main(["--tasks", "listops", "--url", dead, "--dest", str(tmp_path), "--no-progress"]) == 1
    hint = capsys.readouterr().err
    assert f"put lra_release.gz in {tmp_path}" in hint and "--url file://" in hint

    (tmp_path / "lra_release.gz").write_bytes(blob)  # "put lra_release.gz in DEST and rerun"
    assert mod.main(["--tasks", "listops", "--url", dead, "--dest", str(tmp_path), "--no-progress"]) == 0
    assert (tmp_path / "lra_release" / "listops-1000" / "basic_train.tsv").is_file()

    elsewhere = tmp_path / "elsewhere"
    local = tmp_path / "copy" / "lra_release.gz"
    local.parent.mkdir()
    local.write_bytes(blob)
    assert mod.main(["--tasks", "retrieval", "--url", local.as_uri(), "--dest", str(elsewhere),
                     "--no-progress"]) == 0
    assert (elsewhere / "lra_release.gz").read_bytes() == blob
    assert (elsewhere / "lra_release" / "tsv_data" / "new_aan_pairs.train.tsv").is_file()
