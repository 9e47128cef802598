"""The model zoo: cards shipped in the package, and resolution of a name to verified files.

The cards (`<name>.card.json`) and the small checkpoints that ship with embedkit
(`<name>/config.json, model.safetensors, README.md`) are package data in this folder.

A card is the model's contract (like timm's `pretrained_cfg`): architecture and config,
embedding size, input spec, Hub repo at a pinned revision, per-file sha256, license,
citation and provenance. Resolution order for `name[@rev]`:

1. files shipped inside the package (`zoo/<name>/`), when the revision is the card's;
2. the Hugging Face cache (`HF_HUB_CACHE` / `HF_HOME`), at the pinned revision;
3. a Hub download at the pinned revision (unless `HF_HUB_OFFLINE=1`).

Every file is checked against the card's sha256 before any byte is deserialized.
`hf-hub:org/repo[@rev]` and `local-dir:PATH` bypass the cards (no pinned checksums).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

from embedkit.errors import ChecksumError, ModelNotFoundError, UntrustedFormatError

CARD_SUFFIX = ".card.json"
# Cards (and the small checkpoints shipped with the package) live beside this module.
SHIPPED_DIR = Path(__file__).resolve().parent
EXTRA_CARDS_ENV = "EMBEDKIT_EXTRA_CARDS"
PICKLE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".pkl")


@dataclass(frozen=True)
class ModelCard:
    name: str
    task: str
    architecture: str
    embedding_dim: int
    hub_repo: str
    revision: str
    files: dict[str, str]
    license: str
    summary: str
    citation: str = ""
    input: dict = field(default_factory=dict)
    provenance: dict = field(default_factory=dict)
    metrics: dict = field(default_factory=dict)
    shipped_dir: Path | None = None

    @classmethod
    def from_file(cls, path: Path) -> ModelCard:
        data = json.loads(path.read_text())
        shipped = data.pop("shipped", False)
        shipped_dir = path.parent / data["name"] if shipped else None
        return cls(**data, shipped_dir=shipped_dir)

    def to_dict(self) -> dict:
        data = {k: v for k, v in self.__dict__.items() if k != "shipped_dir"}
        data["shipped"] = self.shipped_dir is not None
        return data

    def usage(self) -> str:
        """A copy-paste snippet for this model's kind, as molfeat's cards offer."""
        from embedkit.registry import get_kind

        return get_kind(self.architecture, where=f"zoo card {self.name}").usage_for(self.name)


def _card_dirs() -> list[Path]:
    dirs = [SHIPPED_DIR]
    extra = os.environ.get(EXTRA_CARDS_ENV)
    if extra:
        dirs += [Path(p) for p in extra.split(os.pathsep) if p]
    return dirs


def list_cards() -> list[ModelCard]:
    cards: dict[str, ModelCard] = {}
    for folder in _card_dirs():
        for path in sorted(folder.glob(f"*{CARD_SUFFIX}")):
            card = ModelCard.from_file(path)
            cards.setdefault(card.name, card)
    return sorted(cards.values(), key=lambda c: c.name)


def get_card(name: str) -> ModelCard:
    for card in list_cards():
        if card.name == name:
            return card
    known = ", ".join(c.name for c in list_cards()) or "(none)"
    raise ModelNotFoundError(f"no model named {name!r} in the zoo; known models: {known}")


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_file(path: Path, expected: str) -> None:
    actual = sha256_of(path)
    if actual != expected:
        raise ChecksumError(
            f"{path}: sha256 {actual[:12]}… differs from the pinned {expected[:12]}…; "
            "the file is corrupt or was replaced — delete it and download again"
        )


@dataclass(frozen=True)
class ResolvedModel:
    """Where a model's files are, and what produced them (recorded in every output)."""

    model_id: str
    revision: str
    folder: Path
    sha256: dict[str, str]
    source: str
    card: ModelCard | None = None

    def run_info(self) -> dict:
        return {
            "model_id": self.model_id,
            "revision": self.revision,
            "weights_sha256": self.sha256.get("model.safetensors", ""),
            "config_sha256": self.sha256.get("config.json", ""),
            "source": self.source,
        }


def split_revision(spec: str) -> tuple[str, str | None]:
    if "@" in spec:
        name, rev = spec.rsplit("@", 1)
        return name, rev or None
    return spec, None


def resolve(spec: str) -> ResolvedModel:
    """Turn `name[@rev]`, `hf-hub:org/repo[@rev]` or `local-dir:PATH` into verified files."""
    if spec.startswith("local-dir:"):
        return _resolve_local(Path(spec[len("local-dir:") :]).expanduser())
    if spec.startswith("hf-hub:"):
        repo, rev = split_revision(spec[len("hf-hub:") :])
        files = ["config.json", "model.safetensors"]
        folder = _fetch_from_hub(repo, rev or "main", files, spec)
        sums = {f: sha256_of(folder / f) for f in files}
        # the commit the branch or tag pointed at (the snapshot folder's name), not "main"
        return ResolvedModel(spec, folder.name, folder, sums, "hub")
    name, rev = split_revision(spec)
    card = get_card(name)
    if rev is None or rev == card.revision:
        if card.shipped_dir is not None and all(
            (card.shipped_dir / f).exists() for f in card.files
        ):
            for fname, digest in card.files.items():
                verify_file(card.shipped_dir / fname, digest)
            return ResolvedModel(name, card.revision, card.shipped_dir, card.files, "shipped", card)
        rev = card.revision
    folder = _fetch_from_hub(card.hub_repo, rev, list(card.files), f"{name}@{rev}")
    if rev == card.revision:
        for fname, digest in card.files.items():
            verify_file(folder / fname, digest)
        sums = card.files
    else:
        sums = {f: sha256_of(folder / f) for f in card.files}
    return ResolvedModel(name, rev, folder, sums, "hub", card)


def _resolve_local(folder: Path) -> ResolvedModel:
    if not folder.is_dir():
        raise ModelNotFoundError(f"local-dir:{folder}: no such folder")
    missing = [f for f in ("config.json", "model.safetensors") if not (folder / f).exists()]
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if "model.safetensors" in missing and pickles:
        names = _converters_for(folder)
        kinds = names[0] if len(names) == 1 else "{" + "|".join(names) + "}"
        raise UntrustedFormatError(
            f"local-dir:{folder}: {pickles[0]} is a pickle checkpoint, which embedkit does not "
            f"load; convert it: embedkit zoo convert {kinds} {folder / pickles[0]} -o OUT_DIR"
        )
    if missing:
        raise ModelNotFoundError(
            f"local-dir:{folder}: missing {', '.join(missing)} (expected a folder written by "
            "save_pretrained or the train recipes)"
        )
    sums = {f: sha256_of(folder / f) for f in ("config.json", "model.safetensors")}
    verify_local_weights(folder, sums["model.safetensors"])
    return ResolvedModel(f"local-dir:{folder}", "local", folder, sums, "local")


CHECKSUM_FILE = "model.safetensors.sha256"  # = embedkit.pretrained.CHECKSUM_NAME
log = logging.getLogger("embedkit")


def verify_local_weights(folder: Path, actual: str) -> None:
    """Check model.safetensors against the model.safetensors.sha256 that save_pretrained
    wrote beside it; without one, say (once, on stderr) that the weights are unverified."""
    path = folder / CHECKSUM_FILE
    if not path.is_file():
        log.warning(
            f"note: local-dir:{folder} has no {CHECKSUM_FILE}, so its weights are not "
            "verified (save_pretrained writes one)"
        )
        return
    entries = {}
    for line in path.read_text(errors="replace").splitlines():
        parts = line.split()
        if len(parts) == 2:
            entries[parts[1].lstrip("*")] = parts[0].lower()
    expected = entries.get("model.safetensors")
    if expected is None or not re.fullmatch(r"[0-9a-f]{64}", expected):
        raise ChecksumError(
            f"{path}: holds no sha256 of model.safetensors; delete it to load the weights "
            "unverified, or save the model again"
        )
    if actual != expected:
        raise ChecksumError(
            f"{folder / 'model.safetensors'}: sha256 {actual[:12]}… differs from the "
            f"{expected[:12]}… in {CHECKSUM_FILE}; the weights are corrupt or were replaced "
            "after they were saved"
        )


def verify_cached_blob(path: Path) -> None:
    """A Hugging Face cache file is a link to a blob named by its content: the sha256
    (LFS files such as weights) or the git blob sha1 (small files such as config.json).
    Bytes that differ from that name are a corrupt or tampered cache."""
    if not path.is_symlink():
        return  # a copy (no symlinks on this file system): nothing names its content
    blob = path.resolve()
    name = blob.name
    if re.fullmatch(r"[0-9a-f]{64}", name):
        actual = sha256_of(blob)
    elif re.fullmatch(r"[0-9a-f]{40}", name):
        digest = hashlib.sha1(f"blob {blob.stat().st_size}\0".encode(), usedforsecurity=False)
        with open(blob, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
        actual = digest.hexdigest()
    else:
        return
    if actual != name:
        raise ChecksumError(
            f"{path}: its bytes hash to {actual[:12]}… but the cache stores them as blob "
            f"{name[:12]}…; the Hugging Face cache is corrupt or was tampered with — delete "
            f"{blob} and download again"
        )


COMMIT = re.compile(r"[0-9a-f]{40}")
HUB_TIMEOUT_S = 10  # one question to the Hub: which commit does this revision name?


def _fetch_from_hub(repo: str, revision: str, files: list[str], spec: str) -> Path:
    """The cached snapshot folder (named by its commit) holding `files` of repo@revision.

    A commit never moves, so a cached one is used without the network. Otherwise the Hub is
    asked once which commit `revision` names (huggingface_hub retries some calls for half a
    minute; this one fails at once), then `snapshot_download` fetches it and records the
    branch in the cache's refs. Offline (`HF_HUB_OFFLINE=1`) or with the Hub unreachable, the
    cache's refs answer; when they cannot, one sentence says what to do.
    """
    from huggingface_hub import HfApi, snapshot_download, try_to_load_from_cache
    from huggingface_hub.constants import HF_HUB_OFFLINE
    from huggingface_hub.errors import (
        EntryNotFoundError,
        HfHubHTTPError,
        LocalEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    cached = [try_to_load_from_cache(repo, f, revision=revision) for f in files]
    if COMMIT.fullmatch(revision) and all(isinstance(c, str) for c in cached):
        paths = [Path(c) for c in cached]
    else:
        online, failure = not HF_HUB_OFFLINE, None
        if online:
            try:
                HfApi().repo_info(repo, revision=revision, timeout=HUB_TIMEOUT_S)
            except (RepositoryNotFoundError, RevisionNotFoundError) as err:
                raise ModelNotFoundError(f"{repo}@{revision}: not found on the Hub") from err
            except Exception as err:  # no connection, a timeout, or the Hub answered 5xx / 401
                online, failure = False, err
        try:
            folder = Path(
                snapshot_download(
                    repo, revision=revision, allow_patterns=files, local_files_only=not online
                )
            )
        except LocalEntryNotFoundError as err:
            uncached = [f for f, c in zip(files, cached, strict=True) if not isinstance(c, str)]
            raise _unreachable(repo, revision, uncached or files, spec, failure) from err
        except (RepositoryNotFoundError, RevisionNotFoundError, EntryNotFoundError) as err:
            raise ModelNotFoundError(f"{repo}@{revision}: not found on the Hub") from err
        except HfHubHTTPError as err:
            raise _unreachable(repo, revision, files, spec, err) from err
        missing = [f for f in files if not (folder / f).is_file()]
        if missing:
            raise ModelNotFoundError(
                f"{repo}@{revision} (commit {folder.name[:12]}): {', '.join(missing)} not found on "
                "the Hub or in the Hugging Face cache"
            )
        paths = [folder / f for f in files]
    for path in paths:
        verify_cached_blob(path)
    folders = {p.parent for p in paths}
    if len(folders) != 1:
        raise ModelNotFoundError(f"{repo}@{revision}: files resolved to different folders")
    return folders.pop()


def _unreachable(repo: str, revision: str, files: list[str], spec: str, failure) -> Exception:
    """One sentence for "`files` are not in the cache, and the Hub was not asked (offline)
    or did not answer (`failure`)"."""
    fetch = (
        f"on a connected machine run `embedkit zoo download {spec}`, then copy its Hugging "
        "Face cache (HF_HUB_CACHE) here"
    )
    if failure is None:
        return ModelNotFoundError(
            f"{files[0]} of {repo}@{revision[:12]} is not in the Hugging Face cache and "
            f"HF_HUB_OFFLINE=1 (offline); {fetch}"
        )
    text = str(failure).strip()
    reason = text.splitlines()[0] if text else type(failure).__name__
    return ModelNotFoundError(
        f"cannot reach the Hugging Face Hub to resolve {repo}@{revision} ({reason}) and it is "
        f"not in the Hugging Face cache; {fetch} and set HF_HUB_OFFLINE=1 to use it"
    )


def _converters_for(folder: Path) -> list[str]:
    """The converters of the folder's kind when its config.json names one, else all."""
    from embedkit.registry import converters, get_kind

    try:
        architecture = json.loads((folder / "config.json").read_text()).get("architecture")
        own = [c.name for c in get_kind(architecture).converters]
    except Exception:  # no, unreadable or unknown config: offer every converter
        own = []
    return own or list(converters())
