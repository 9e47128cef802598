"""A model card as a person reads it (`embedkit zoo show`); `--json` keeps the raw card.

The card JSON is for scripts; on screen a user wants what the model is (task,
architecture, dimension), what it takes as input, its licence, where it came from, how
well it did and how to use it, in that order, with long lists shortened.
"""

from __future__ import annotations

import textwrap

from embedkit.zoo import ModelCard

WIDTH = 96
LIST_SHOWN = 12  # items of a long list (channels, cell lines, files) shown before "… N more"
SECTIONS = (("input", "Input"), ("provenance", "Provenance"), ("metrics", "Metrics"))
HEADER_KEYS = {"name", "summary", "task", "architecture", "embedding_dim", "license", "hub_repo"}
HEADER_KEYS |= {"revision", "files", "citation", "shipped", *(key for key, _ in SECTIONS)}


def card_text(card: ModelCard) -> str:
    """The card of one model: header, input spec, provenance, metrics, usage."""
    data = card.to_dict()
    where = "shipped with embedkit" if data.get("shipped") else "downloaded from the Hub"
    header = {
        "task": data.get("task"),
        "architecture": f"{data.get('architecture')} ({data.get('embedding_dim')}-d embeddings)",
        "licence": data.get("license"),
        "source": f"{data.get('hub_repo')} @ {data.get('revision')} ({where})",
        "files": f"{', '.join(data.get('files') or {})} (sha256 pinned; `embedkit zoo verify`)",
        "citation": data.get("citation"),
    }
    lines = [data["name"], *_wrap(data.get("summary") or "", "  "), ""]
    lines += _entries(header, "  ")
    extra = {k: v for k, v in data.items() if k not in HEADER_KEYS}
    for key, title in (*SECTIONS, *((k, k.replace("_", " ").capitalize()) for k in extra)):
        value = data.get(key)
        if value in (None, {}, [], ""):
            continue
        lines += ["", f"{title}:"]
        lines += _entries(value, "  ") if isinstance(value, dict) else _wrap(_plain(value), "  ")
    lines += ["", "Usage:", card.usage().rstrip()]  # not indented: it is copied as is
    return "\n".join(lines)


def _entries(mapping: dict, indent: str) -> list[str]:
    """`key: value` lines; a nested mapping of plain values on one line, deeper ones below."""
    lines = []
    for key, value in mapping.items():
        if value in (None, "", [], {}):
            continue
        label = str(key).replace("_", " ")
        if isinstance(value, dict) and any(isinstance(v, (dict, list)) for v in value.values()):
            lines.append(f"{indent}{label}:")
            lines += _entries(value, indent + "  ")
        else:
            lines += _wrap(f"{label}: {_plain(value)}", indent, hang="  ")
    return lines


def _plain(value) -> str:
    """A value in words: lists joined (long ones shortened), yes/no, no Python reprs."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, dict):
        return ", ".join(f"{k} {_plain(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        items = [_plain(v) for v in value]
        more = f", … {len(items) - LIST_SHOWN} more" if len(items) > LIST_SHOWN else ""
        return ", ".join(items[:LIST_SHOWN]) + more
    return str(value)


def _wrap(text: str, indent: str, hang: str = "") -> list[str]:
    return textwrap.wrap(
        text, WIDTH, initial_indent=indent, subsequent_indent=indent + hang, break_on_hyphens=False
    ) or [indent.rstrip()]
