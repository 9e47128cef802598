"""Check a model folder and upload it to the Hugging Face Hub with `upload_folder`.

A dry run only checks the folder (the three Hub files present, the weights loadable, the
card's front matter) and prints each file's sha256, which the zoo card pins. A push
prints the commit id: that is the revision to pin, never a branch name.
"""

from __future__ import annotations

from pathlib import Path

from embedkit.errors import InputError
from embedkit.pretrained import CONFIG_NAME, WEIGHTS_NAME
from embedkit.registry import kind_of_folder
from embedkit.zoo import sha256_of
from embedkit.zoo.hub_card import check_card_text

REQUIRED = (CONFIG_NAME, WEIGHTS_NAME, "README.md")


def check_folder(folder: str | Path) -> dict[str, str]:
    """Raise with a reason when the folder is not a publishable model; else name → sha256."""
    folder = Path(folder)
    missing = [name for name in REQUIRED if not (folder / name).is_file()]
    if missing:
        raise InputError(f"{folder} lacks {', '.join(missing)}; run training first")
    # the Hub's own parser (huggingface_hub.ModelCard): library_name, licence id, tags, pipeline
    check_card_text((folder / "README.md").read_text(), f"{folder}/README.md")
    # the weights must load, by the kind's own class, before anyone downloads them
    kind_of_folder(folder).model_class().from_pretrained(folder)
    return {p.name: sha256_of(p) for p in sorted(folder.iterdir()) if p.is_file()}


def publish(
    folder: str | Path,
    repo_id: str | None,
    push: bool,
    private: bool = False,
    commit_message: str = "Upload embedkit model",
    log=print,
) -> dict:
    """Dry run (push=False) or upload; returns files, sha256 and the pushed revision."""
    folder = Path(folder)
    files = check_folder(folder)
    for name, sha in files.items():
        log(f"  {name:<20} sha256 {sha}")
    if not push:
        log(f"dry run: {folder} is ready; nothing uploaded")
        return {"pushed": False, "files": files}
    if not repo_id:
        raise InputError("--push needs a repo id such as org/embedkit-infoalign")
    from huggingface_hub import HfApi

    api = HfApi()
    api.create_repo(repo_id, repo_type="model", private=private, exist_ok=True)
    info = api.upload_folder(
        folder_path=str(folder), repo_id=repo_id, repo_type="model", commit_message=commit_message
    )
    revision = getattr(info, "oid", None)
    log(f"pushed {repo_id} at revision {revision}: pin this revision in the zoo card")
    return {"pushed": True, "repo_id": repo_id, "revision": revision, "files": files}
