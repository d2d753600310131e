"""Where a model comes from: a local folder or file, a Hugging Face hub id (at a revision), or a
URL. Every form resolves to a local path plus the provenance recorded in output metadata: the hub
commit hash, or a content hash for local folders and downloaded files.

Hub downloads go to the Hugging Face cache (`HF_HOME`); URL downloads to `$VIRNUCPRO_CACHE`
(default `~/.cache/virnucpro`), written atomically. With `HF_HUB_OFFLINE=1` nothing is downloaded
and a model that is not already cached fails at once with a message saying how to pre-fetch it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import tarfile
import tempfile
import urllib.parse
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from virnucpro.defaults import HUB_ID_PATTERN
from virnucpro.errors import InputError, VirNucProError
from virnucpro.files.atomic import atomic_open
from virnucpro.progress import log

HUB_ID = re.compile(HUB_ID_PATTERN)
COMMIT_HASH = re.compile(r"^[0-9a-f]{40}$")
# A local model's identity computed earlier (`virnucpro model-identity`), given as its revision so
# that many tasks on one model do not each hash its files again
LOCAL_IDENTITY = re.compile(r"^local:sha256=([0-9a-f]{64})$")
# Only what inference needs: configs, tokenizers, safetensors weights. `.bin` weights are fetched
# only for repositories without safetensors (they are often both present, and 11 GB each for ESM-2 3B).
HUB_PATTERNS = ["*.json", "*.txt", "*.safetensors"]
HUB_FALLBACK_PATTERNS = ["pytorch_model*.bin"]
WEIGHT_SUFFIXES = (".safetensors", ".bin", ".pth", ".pt")
ARCHIVE_SUFFIXES = (".tar.gz", ".tgz", ".tar", ".zip")
PREFETCH_HINT = (
    "pre-fetch it on a machine with network access (`virnucpro download-models --outdir DIR`, or "
    "`hf download {name}` into the same HF_HOME) and pass the local folder or keep that cache"
)


@dataclass(frozen=True)
class ResolvedModel:
    """A model available locally. `revision` is the hub commit hash, "local" or "url"."""

    name: str  # as the user gave it
    path: Path
    revision: str
    _content_hash: list[str] = field(default_factory=list, repr=False, compare=False)

    @property
    def provenance(self) -> str:
        """What output metadata records as the revision: the commit hash for hub models, else
        `local:sha256=...`/`url:sha256=...` of the files' content (a changed folder is a new model)."""
        if self.revision not in ("local", "url"):
            return self.revision
        if not self._content_hash:
            self._content_hash.append(content_hash(self.path))
        return f"{self.revision}:sha256={self._content_hash[0]}"


def offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def content_hash(path: Path) -> str:
    """sha256 over a file, or over a folder's regular files (relative names and bytes, sorted by
    name; hidden files such as `.cache/` are skipped)."""
    digest = hashlib.sha256()
    if path.is_file():
        named = [(path.name, path)]
    else:
        named = sorted(
            (str(p.relative_to(path)), p)
            for p in path.rglob("*")
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
    for name, file in named:
        digest.update(name.encode() + b"\0")
        with open(file, "rb") as handle:
            while block := handle.read(1 << 24):
                digest.update(block)
    return digest.hexdigest()


def resolve_model(spec: str | os.PathLike[str], revision: str | None = None) -> ResolvedModel:
    """A local path, an `http(s)://` URL or a hub id `owner/name` (at `revision`, default main)."""
    text = str(spec)
    if text.startswith(("http://", "https://")):
        if revision:
            raise InputError(f"--revision {revision} applies to hub models, not to the URL {text}")
        return ResolvedModel(name=text, path=download_url(text), revision="url")
    path = Path(text).expanduser()
    if path.exists():
        identity = LOCAL_IDENTITY.match(revision or "")
        if revision and not identity:
            raise InputError(
                f"--revision {revision} applies to hub models, not to the local path {text} "
                "(whose only revision is its identity, local:sha256=..., from `virnucpro model-identity`)"
            )
        known = [identity.group(1)] if identity else []
        return ResolvedModel(name=text, path=path.resolve(), revision="local", _content_hash=known)
    if HUB_ID.match(text):
        folder, commit = download_hub(text, revision)
        return ResolvedModel(name=text, path=folder, revision=commit)
    raise InputError(f"model {text!r}: no such file or folder, and not a hub id (owner/name) or URL")


def download_hub(repo_id: str, revision: str | None) -> tuple[Path, str]:
    """Snapshot folder and commit hash of a hub model, downloading what is missing from the cache."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, IncompleteSnapshotError, LocalEntryNotFoundError

    wanted = revision or "main"
    try:
        folder = Path(snapshot_download(repo_id, revision=wanted, allow_patterns=HUB_PATTERNS))
        if not any(p.suffix == ".safetensors" for p in folder.iterdir()):
            folder = Path(snapshot_download(repo_id, revision=wanted, allow_patterns=HUB_FALLBACK_PATTERNS))
    except LocalEntryNotFoundError as err:
        why = "HF_HUB_OFFLINE=1 is set" if offline() else "the hub cannot be reached"
        state = "incomplete in" if isinstance(err, IncompleteSnapshotError) else "not in"
        raise VirNucProError(
            f"model {repo_id} (revision {wanted}) is {state} the Hugging Face cache and {why}; "
            + PREFETCH_HINT.format(name=repo_id)
        ) from err
    except (HfHubHTTPError, OSError, ValueError) as err:
        raise VirNucProError(f"model {repo_id} (revision {wanted}): {err}") from err
    commit = folder.name if COMMIT_HASH.match(folder.name) else wanted
    log.info("model %s: revision %s at %s", repo_id, commit, folder)
    return folder, commit


def cache_root() -> Path:
    return Path(os.environ.get("VIRNUCPRO_CACHE", Path.home() / ".cache" / "virnucpro")).expanduser()


def download_url(url: str) -> Path:
    """The cached copy of `url` (downloaded atomically on first use); archives are unpacked and the
    folder is returned."""
    name = Path(urllib.parse.urlparse(url).path).name or "download"
    folder = cache_root() / "urls" / hashlib.sha256(url.encode()).hexdigest()[:16]
    target = folder / name
    if not target.is_file():
        if offline():
            raise VirNucProError(
                f"{url} is not in the download cache ({folder}) and HF_HUB_OFFLINE=1 is set; "
                + PREFETCH_HINT.format(name=url)
            )
        folder.mkdir(parents=True, exist_ok=True)
        log.info("downloading %s", url)
        try:
            with urllib.request.urlopen(url, timeout=60) as response, atomic_open(target, "wb") as out:
                shutil.copyfileobj(response, out, 1 << 20)
        except OSError as err:
            raise VirNucProError(f"downloading {url} failed: {err}") from err
    if name.endswith(ARCHIVE_SUFFIXES):
        return unpack(target)
    return target


def unpack(archive: Path) -> Path:
    """Unpack next to the archive, once, refusing members that would land outside the folder."""
    out = archive.parent / "unpacked"
    if not out.is_dir():
        tmp = Path(tempfile.mkdtemp(prefix=".tmp-unpack-", dir=archive.parent))
        try:
            if archive.name.endswith(".zip"):
                with zipfile.ZipFile(archive) as zf:
                    for member in zf.namelist():
                        if member.startswith("/") or ".." in Path(member).parts:
                            raise VirNucProError(f"{archive}: unsafe member path {member!r}")
                    zf.extractall(tmp)
            else:
                with tarfile.open(archive) as tf:
                    tf.extractall(tmp, filter="data")
            os.replace(tmp, out)
        except (tarfile.TarError, zipfile.BadZipFile) as err:
            raise VirNucProError(f"{archive}: not a readable archive ({err})") from err
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    entries = [p for p in out.iterdir() if not p.name.startswith(".")]
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else out
