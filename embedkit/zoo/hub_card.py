"""README.md as a Hugging Face model card: front matter written by `huggingface_hub`'s own
`ModelCardData` (so the Hub parses it), the usage snippet of the model's own task from the
registry, and a check that `publish` runs before anything is uploaded.

Every writer of a model folder's README (the train recipes, `train.ship`, the converters)
goes through here, so the front matter has one shape: `library_name: embedkit`, a Hub
licence id in lowercase (`cc-by-4.0`, `mit`; anything else is `other` with `license_name`),
tags, and the pipeline tag of the kind's task.

Generated sections sit between `<!-- embedkit:NAME -->` markers, so writing the card again
(`python -m train.ship --card-only`) replaces them instead of stacking copies.
"""

from __future__ import annotations

import json
import re

from embedkit.errors import InputError

# The Hub's pipeline tag for each registry task (embedkit.registry.TASKS).
PIPELINE_TAGS = {
    "molecules": "feature-extraction",
    "images": "image-feature-extraction",
    "image-classification": "image-classification",
    "profile-classification": "tabular-classification",
}
# Hub licence ids embedkit's models use or are likely to; the Hub lists them in lowercase.
HUB_LICENSES = (
    "apache-2.0",
    "mit",
    "bsd-3-clause",
    "cc0-1.0",
    "cc-by-4.0",
    "cc-by-sa-4.0",
    "cc-by-nc-4.0",
    "cc-by-nc-sa-4.0",
    "openrail",
    "other",
)
REQUIRED = ("library_name", "license", "pipeline_tag", "tags")
FRONT = re.compile(r"\A---\n.*?\n---\n", re.S)


def hub_license(license: str) -> dict[str, str]:
    """{"license": id} for a Hub licence id in any case; else `other` plus its name."""
    lid = license.strip().lower()
    if lid in HUB_LICENSES:
        return {"license": lid}
    return {"license": "other", "license_name": re.sub(r"[^a-z0-9.]+", "-", lid).strip("-")}


def card_data(architecture: str, license: str, tags: list[str] = (), **extra):
    """`ModelCardData` for a model of `architecture` (its task gives the pipeline tag)."""
    from huggingface_hub import ModelCardData

    from embedkit.registry import get_kind

    task = get_kind(architecture).task
    tags = list(dict.fromkeys(["embedkit", *tags]))  # embedkit first, no repeats
    return ModelCardData(
        library_name="embedkit",
        pipeline_tag=PIPELINE_TAGS[task],
        tags=tags,
        **{**hub_license(license), **extra},  # an explicit license_name wins
    )


def render(data, body: str) -> str:
    """The card text: `data`'s YAML front matter, then `body` (any front matter it has is
    replaced). Parsed back with `huggingface_hub.ModelCard` before it is returned."""
    from huggingface_hub import ModelCard

    body = FRONT.sub("", body, count=1).lstrip("\n")
    text = f"---\n{data.to_yaml()}\n---\n\n{body}"
    check_card_text(text, "the card")
    return str(ModelCard(text))


def check_card_text(text: str, where: str) -> dict:
    """Parse `text` as the Hub does; one sentence naming what is missing, else the metadata."""
    from huggingface_hub import ModelCard

    if not FRONT.match(text):
        raise InputError(
            f"{where} has no YAML front matter (a `---` block with library_name: embedkit); "
            "write it with `python -m train.ship RUN_DIR --card-only` or embedkit.zoo.hub_card"
        )
    try:
        meta = ModelCard(text, ignore_metadata_errors=False).data.to_dict()
    except Exception as err:  # the Hub's own parser: whatever it rejects, we reject
        raise InputError(f"{where}: its front matter does not parse ({err})") from err
    missing = [key for key in REQUIRED if not meta.get(key)]
    if missing:
        raise InputError(f"{where}: its front matter lacks {', '.join(missing)}")
    if meta["library_name"] != "embedkit":
        raise InputError(f"{where}: library_name is {meta['library_name']!r}, not embedkit")
    if meta["license"] != str(meta["license"]).lower():
        raise InputError(f"{where}: licence {meta['license']!r} is not a lowercase Hub id")
    return meta


def section(name: str, lines: list[str]) -> str:
    """A generated section between markers, so it can be replaced later."""
    return "\n".join([f"<!-- embedkit:{name} -->", *lines, f"<!-- /embedkit:{name} -->"])


def put_section(
    body: str, name: str, text: str, first: bool = False, after: str | None = None
) -> str:
    """Replace section `name` in `body` (or an unmarked section with its heading); else
    insert it right after generated section `after`, or before the first `## ` heading when
    `first`, or append it."""
    marked = re.compile(rf"<!-- embedkit:{name} -->.*?<!-- /embedkit:{name} -->", re.S)
    if marked.search(body):
        return marked.sub(lambda _: text, body, count=1)
    heading = text.split("\n")[1] if text.count("\n") > 1 else ""
    if heading.startswith("## "):  # a card written before the markers: its own section
        # the heading and the code blocks under it; prose after them stays
        old = re.compile(rf"^{re.escape(heading)}\n(\s*```.*?\n```\n)*\n*", re.M | re.S)
        if old.search(body):
            return old.sub(lambda _: text + "\n\n", body, count=1)
    end = f"<!-- /embedkit:{after} -->"
    if after is not None and end in body:
        return body.replace(end, f"{end}\n\n{text}", 1)
    if first:
        match = re.search(r"^(## |<!-- embedkit:)", body, re.M)
        if match:
            return f"{body[: match.start()]}{text}\n\n{body[match.start() :]}"
    return f"{body.rstrip()}\n\n{text}\n"


class _Literal(str):
    """A model spec whose repr is a double-quoted literal, as ruff formats Python."""

    def __repr__(self) -> str:
        return json.dumps(str(self))


def usage_lines(architecture: str, spec: str) -> list[str]:
    """ "## Use": the registry's snippet for the kind's own task, as ruff-formatted blocks."""
    from embedkit.registry import get_kind

    snippet = get_kind(architecture).usage_for(_Literal(spec)).rstrip("\n")
    shell, _, python = snippet.partition("\n# Python\n")
    shell = shell.removeprefix("# command line\n").rstrip("\n")
    lines = ["## Use", "", "```bash", *shell.split("\n"), "```"]
    if python:
        lines += ["", "```python", *_blank_after_imports(python.split("\n")), "```"]
    return lines


def _blank_after_imports(lines: list[str]) -> list[str]:
    out = []
    for i, line in enumerate(lines):
        out.append(line)
        is_import = line.startswith(("import ", "from "))
        following = lines[i + 1] if i + 1 < len(lines) else ""
        if is_import and following and not following.startswith(("import ", "from ")):
            out.append("")
    return out


def write_card(folder, architecture: str, license: str, tags: list[str], body: str, **extra):
    """Write folder/README.md (atomically): front matter for the kind, `body`, and the
    registry's usage section when the body has none."""
    from pathlib import Path

    from embedkit.io import atomic_path

    if "<!-- embedkit:use -->" not in body:
        body = put_section(body, "use", section("use", usage_lines(architecture, _LOCAL)))
    path = Path(folder) / "README.md"
    with atomic_path(path) as tmp:
        tmp.write_text(render(card_data(architecture, license, tags, **extra), body))
    return path


_LOCAL = "local-dir:/path/to/this/folder"
