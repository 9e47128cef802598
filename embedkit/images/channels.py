"""Which of the user's channels feeds which of the model's input channels.

Models name their channels (card / config.json); plates name theirs however the
microscope did (`w3`, `ch2`, `Hoechst`, `OrigDNA`). A channel plan maps one onto the other
by name or alias, or by the user's `--channel-map`. A model channel nobody supplies is an
error naming it — never silent zero-padding — unless the user drops it, in which case the
encoder keeps the patch weights of the channels that remain (the seed paper's 6 → 5
channel transfer from RxRx1 to RxRx19a).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from embedkit.errors import InputError


class MissingChannelError(InputError):
    """A model channel has no source in the plate and was not dropped."""


@dataclass(frozen=True)
class ChannelPlan:
    """`sources[i]` is the plate channel read for the i-th *kept* model channel."""

    model_channels: list[str]
    kept: list[int]  # indices into model_channels, in model order
    sources: list[str]  # plate channel key per kept model channel

    @property
    def dropped(self) -> list[str]:
        return [c for i, c in enumerate(self.model_channels) if i not in self.kept]

    def describe(self) -> str:
        pairs = ", ".join(
            f"{self.model_channels[i]}←{s}" for i, s in zip(self.kept, self.sources, strict=True)
        )
        dropped = f"; dropped: {', '.join(self.dropped)}" if self.dropped else ""
        return pairs + dropped


def parse_channel_map(text: str | None) -> dict[str, str]:
    """`"DNA=ch5,ER=ch4"` → {"DNA": "ch5", "ER": "ch4"} (model channel = plate channel)."""
    if not text:
        return {}
    mapping = {}
    for item in text.split(","):
        if "=" not in item:
            raise InputError(
                f"--channel-map item {item!r} is not MODEL=PLATE (e.g. DNA=ch5,ER=ch4)"
            )
        model, plate = (s.strip() for s in item.split("=", 1))
        mapping[model] = plate
    return mapping


def plan_channels(
    model_channels: Sequence[str],
    available: Sequence[str],
    aliases: Mapping[str, Sequence[str]] | None = None,
    channel_map: Mapping[str, str] | None = None,
    drop: Sequence[str] = (),
) -> ChannelPlan:
    """Match every model channel to a plate channel: explicit map, then name, then alias."""
    model_channels = list(model_channels)
    lower = {a.lower(): a for a in available}
    channel_map = dict(channel_map or {})
    unknown = [m for m in list(channel_map) + list(drop) if m not in model_channels]
    if unknown:
        raise InputError(
            f"{', '.join(unknown)}: not channels of this model; its channels are "
            f"{', '.join(model_channels)}"
        )
    kept, sources, missing = [], [], []
    for i, name in enumerate(model_channels):
        if name in drop:
            continue
        if name in channel_map:
            source = channel_map[name]
            if source not in available:
                raise MissingChannelError(
                    f"--channel-map {name}={source}: the plate has no channel {source!r}; "
                    f"it has {', '.join(available)}"
                )
        else:
            candidates = [name, *(aliases or {}).get(name, [])]
            source = next((lower[c.lower()] for c in candidates if c.lower() in lower), None)
        if source is None:
            missing.append(name)
            continue
        kept.append(i)
        sources.append(source)
    if missing:
        found = f"has only {', '.join(available)}" if available else "has no channel at all"
        raise MissingChannelError(
            f"the model needs channel(s) {', '.join(missing)} but the plate {found}; map them "
            f"with --channel-map {missing[0]}=<plate channel> or leave them out with "
            f"--drop-channel {missing[0]} "
            "(the model then keeps the weights of the channels present)"
        )
    if not kept:
        raise MissingChannelError("every model channel was dropped; nothing to embed")
    duplicated = {s for s in sources if sources.count(s) > 1}
    if duplicated:
        raise InputError(
            f"plate channel(s) {', '.join(sorted(duplicated))} feed two model channels"
        )
    return ChannelPlan(model_channels, kept, sources)
