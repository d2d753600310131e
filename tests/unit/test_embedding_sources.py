"""Model sources: local folders (content hash), the Hugging Face cache (commit hash, offline),
URLs (downloaded once into a cache, atomically; archives unpacked)."""

from __future__ import annotations

import functools
import http.server
import shutil
import tarfile
import threading

import pytest

from conftest import run_cli_process
from virnucpro.errors import InputError, VirNucProError
from virnucpro.files.embedding_files import read_embeddings
from virnucpro.models.sources import resolve_model

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def test_local_folder_revision_is_a_content_hash(test_models, tmp_path):
    folder = tmp_path / "model"
    shutil.copytree(test_models / "dnabert-s", folder)
    resolved = resolve_model(str(folder))
    assert resolved.path == folder.resolve() and resolved.revision == "local" and resolved.name == str(folder)
    first = resolved.provenance
    assert first.startswith("local:sha256=") and len(first) == len("local:sha256=") + 64
    assert resolve_model(str(folder)).provenance == first
    (folder / "config.json").write_text((folder / "config.json").read_text() + " ")
    assert resolve_model(str(folder)).provenance != first
    with pytest.raises(InputError, match="--revision"):
        resolve_model(str(folder), revision="main")


def test_unknown_names_are_input_errors(tmp_path):
    with pytest.raises(InputError, match="not a hub id"):
        resolve_model(str(tmp_path / "missing" / "deeper" / "model"))


def fake_hub_cache(root, repo_id, source):
    """The layout `hf download` leaves: refs/main -> commit, snapshots/<commit>/files."""
    storage = root / f"models--{repo_id.replace('/', '--')}"
    (storage / "refs").mkdir(parents=True)
    (storage / "refs" / "main").write_text(COMMIT)
    shutil.copytree(source, storage / "snapshots" / COMMIT)


@pytest.mark.slow
def test_hub_model_from_the_offline_cache_records_its_commit(test_models, tmp_path, monkeypatch):
    fake_hub_cache(tmp_path / "hub", "someone/tiny-dnabert", test_models / "dnabert-s")
    shard = tmp_path / "shard_00001.nucleotide.fa"
    shard.write_text(">a_chunk_1F1\nATGGCGTACCTGAAAGGTTGA\n>b_chunk_1R2\nATGCCCGGGTTT\n")
    # huggingface_hub reads HF_HUB_CACHE when it is first imported: a process of its own, as a user's
    # command is (in this process an earlier test may have imported it already)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    result = run_cli_process(
        "embed-dna",
        shard,
        "--outdir",
        tmp_path / "out",
        "--model",
        "someone/tiny-dnabert",
        "--devices",
        "cpu",
    )
    assert result.returncode == 0, result.stderr
    metadata = read_embeddings(tmp_path / "out" / "shard_00001.dnabert.parquet").metadata
    assert metadata["model"] == "someone/tiny-dnabert" and metadata["revision"] == COMMIT
    # A revision that is not cached fails at once, saying how to pre-fetch it.
    result = run_cli_process(
        "embed-dna", shard, "--outdir", tmp_path / "out2", "--model", "someone/tiny-dnabert",
        "--revision", "v2", "--devices", "cpu",
    )  # fmt: skip
    assert result.returncode == 1
    assert "revision v2" in result.stderr and "HF_HUB_OFFLINE=1" in result.stderr


@pytest.fixture
def web_server(tmp_path, monkeypatch):
    """A loopback HTTP server over tmp_path/www; downloads go to a fresh cache, online."""
    root = tmp_path / "www"
    root.mkdir()
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(root))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.setenv("VIRNUCPRO_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    for name in ("no_proxy", "NO_PROXY"):
        monkeypatch.setenv(name, "127.0.0.1,localhost")
    yield root, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_url_is_downloaded_once_and_cached(web_server, tmp_path, monkeypatch):
    root, base = web_server
    (root / "500_model.pth").write_bytes(b"weights" * 1000)
    resolved = resolve_model(f"{base}/500_model.pth")
    assert resolved.path.read_bytes() == b"weights" * 1000 and resolved.path.name == "500_model.pth"
    assert resolved.path.is_relative_to(tmp_path / "cache") and resolved.revision == "url"
    assert resolved.provenance.startswith("url:sha256=")
    assert not list(resolved.path.parent.glob(".tmp-*"))
    (root / "500_model.pth").unlink()
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert resolve_model(f"{base}/500_model.pth").path == resolved.path  # from the cache
    with pytest.raises(VirNucProError, match="HF_HUB_OFFLINE=1"):
        resolve_model(f"{base}/300_model.pth")


def test_url_errors_and_archives(web_server, test_models):
    root, base = web_server
    with pytest.raises(VirNucProError, match="404"):
        resolve_model(f"{base}/missing.pth")
    with tarfile.open(root / "esm2.tar.gz", "w:gz") as archive:
        archive.add(test_models / "esm2", arcname="esm2")
    folder = resolve_model(f"{base}/esm2.tar.gz").path
    assert folder.name == "esm2" and (folder / "config.json").is_file() and (folder / "vocab.txt").is_file()
