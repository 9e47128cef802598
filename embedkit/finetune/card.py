"""README.md for a fine-tuned model (RUN_DIR/model): Hub front matter, what it was
fine-tuned from and on, the run's result table, and whether the data were simulated.

Without it `python -m train.publish` refuses the folder (it needs a card the Hub parses),
so every fine-tuning run writes one. The licence is the base model's (the weights derive
from it); a classifier trained from scratch on profiles gets `other`, to be set by whoever
owns the data before publishing.
"""

from __future__ import annotations

import json
from pathlib import Path

from embedkit.finetune.report import markdown

TASK_TAGS = {"images": ["image-classification", "few-shot"], "profiles": ["cell-profiling"]}


def base_license(spec: str | None) -> str:
    """The base model's licence: its zoo card, or its folder's README front matter."""
    if not spec:
        return "other"
    from embedkit.zoo import get_card

    try:
        return get_card(spec).license
    except Exception:  # not a zoo name: a local folder or a Hub spec
        pass
    folder = Path(spec.removeprefix("local-dir:"))
    readme = folder / "README.md"
    if readme.is_file():
        from huggingface_hub import ModelCard

        try:
            meta = ModelCard(readme.read_text()).data.to_dict()
        except Exception:  # a card the Hub cannot parse says nothing about its licence
            return "other"
        if meta.get("license") == "other" and meta.get("license_name"):
            return str(meta["license_name"])
        return str(meta.get("license") or "other")
    return "other"


def simulated_inputs(report: dict) -> list[str]:
    """The data folders of the run that `embedkit datasets synth-plate` wrote."""
    from embedkit.datasets.synthetic.writing import simulated_root

    found = []
    for spec in report.get("data", {}).get("data", []):
        folder = Path(str(spec).partition(":")[0])
        if folder.exists() and simulated_root(folder) is not None:
            found.append(str(spec))
    return found


def write_finetuned_card(model_dir: Path, report: dict) -> Path:
    """Write model_dir/README.md for the run `report` describes (report.json's content)."""
    from embedkit.zoo.hub_card import write_card

    model_dir = Path(model_dir)
    config = json.loads((model_dir / "config.json").read_text())
    architecture = config["architecture"]
    base = report["model"].get("spec")
    simulated = simulated_inputs(report) or (
        [str(config.get("extra", {}).get("simulated"))]
        if config.get("extra", {}).get("simulated")
        else []
    )
    labels = report["labels"]
    lines = [
        f"# Fine-tuned {architecture}",
        "",
        (
            f"Fine-tuned from `{base}` by `embedkit finetune` ({report.get('embedkit_version')})"
            if base
            else f"Trained from scratch by `embedkit finetune` ({report.get('embedkit_version')})"
        )
        + f" to predict `{labels['column']}` ({labels['classes']} classes) from {report['input']}.",
        "",
    ]
    if simulated:
        lines += [
            "**SIMULATED data**: it was trained and scored on simulated plates "
            f"({', '.join(simulated)}), not real microscopy; its accuracy says nothing about "
            "real cells.",
            "",
        ]
    if report.get("command"):
        lines += ["```bash", str(report["command"]), "```", ""]
    result = markdown(report, None).split("\n", 2)[2]  # the report without its title
    lines += ["## Result", "", result.strip(), ""]
    lines += [
        "## Files",
        "",
        "The run folder beside this model holds report.json (every seed's scores, the "
        "splits, the settings), splits.csv and history.csv.",
        "",
    ]
    tags = [*TASK_TAGS.get(report["input"], []), "fine-tuned"]
    if simulated:
        tags.append("simulated-data")
    return write_card(model_dir, architecture, base_license(base), tags, "\n".join(lines))
