"""Markdown tables for the U-Net model card from ``bench_unet.py``'s JSON (``docs/model_card.json``).

The model card quotes these tables; ``tests/test_unet_sources.py`` checks that the card's figures
are the JSON's and that the shipped weights reach them.

Run: ``python benchmarks/unet_card_tables.py docs/model_card.json``
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _pct(v: float | None, digits: int = 1) -> str:
    return "–" if v is None else f"{100 * v:.{digits}f}"


def _short(cls: str) -> str:
    return cls.replace("_and_", " & ").replace("_", " ")


def validation_table(card: dict[str, Any]) -> str:
    """Agreement with the teacher per source, on the validation blocks."""
    rows = ["| source | product | teacher | validation px | agreement % | teacher p ≥ 0.5: share % / agreement % "
            "| recall of every class ≥ 2 % of the side (%) | Landsat-like agreement % (p ≥ 0.5) | ECE |",
            "|---|---|---|---|---|---|---|---|---|"]
    for name, rec in card["validation"].items():
        v, ls = rec["val"], rec.get("val_landsat_like")
        rare = ", ".join(f"{_short(c)} {100 * x:.0f}" for c, x in v["rare_class_recall"].items())
        teacher = {"dynamic-world": "Dynamic World", "imputed-dynamic-world": "DW on imputed bands"}.get(
            v["teacher"], v["teacher"])
        lsl = f"{_pct(ls['agreement'])} ({_pct(ls['confident_agreement'])})" if ls else "–"
        rows.append(f"| {name} | {v['product']} | {teacher} | {v['pixels']:,} | {_pct(v['agreement'])} | "
                    f"{_pct(v['confident_share'])} / {_pct(v['confident_agreement'])} | {rare} | {lsl} | "
                    f"{v['ece']:.3f} |")
    return "\n".join(rows)


def per_class_table(card: dict[str, Any]) -> str:
    """Per-class precision / recall / F1 against the teacher, per source (classes ≥ 0.1 % of the side)."""
    rows = ["| source | class: teacher share %, precision, recall, F1 |", "|---|---|"]
    for name, rec in card["validation"].items():
        per = rec["val"]["per_class"]
        cells = [f"{_short(c)} {100 * p['share']:.1f} %: {_pct(p['precision'], 0)}/{_pct(p['recall'], 0)}/"
                 f"{_pct(p.get('f1'), 0)}"
                 for c, p in per.items() if p["share"] > 0.001 or (p.get("predicted_share") or 0) > 0.001]
        rows.append(f"| {name} | {'; '.join(cells)} |")
    return "\n".join(rows)


def qa_table(card: dict[str, Any]) -> str:
    """Landsat QA_PIXEL water and snow on clear pixels."""
    rows = ["| scene | side | clear px | QA water px | water recall % | water precision % | QA snow px "
            "| snow recall % | snow precision % |", "|---|---|---|---|---|---|---|---|---|"]
    for name, rec in card["validation"].items():
        for side in ("val", "all"):
            q = rec.get(side, {}).get("qa")
            if q:
                rows.append(f"| {name} | {'validation' if side == 'val' else 'whole scene'} | {q['clear_pixels']:,.0f} | "
                            f"{q['water_pixels']:,.0f} | {_pct(q['water_recall'])} | {_pct(q['water_precision'])} | "
                            f"{q['snow_pixels']:,.0f} | {_pct(q['snow_recall'])} | {_pct(q['snow_precision'])} |")
    return "\n".join(rows)


def rules_table(card: dict[str, Any]) -> str:
    """Spectral-index rules where there is no QA."""
    rows = ["| source | rule | pixels (validation side) | labelled as expected % |", "|---|---|---|---|"]
    for name, rec in card["validation"].items():
        for r in rec["val"].get("rules", []):
            if r["pixels"]:
                rows.append(f"| {name} | {r['rule']} ({r['definition']} → {', '.join(r['expected'])}) | "
                            f"{r['pixels']:,} | {_pct(r['share_as_expected'])} |")
    return "\n".join(rows)


def generic_table(records: list[dict[str, Any]]) -> str:
    """A list of flat records as a table (floats to 3 significant digits)."""
    if not records:
        return ""
    keys = list(records[0])
    fmt = (lambda v: f"{v:.3g}" if isinstance(v, float) else str(v))
    return "\n".join(["| " + " | ".join(keys) + " |", "|" + "---|" * len(keys)]
                     + ["| " + " | ".join(fmt(r.get(k, "")) for k in keys) + " |" for r in records])


def main(argv: list[str] | None = None) -> int:
    card = json.loads(Path((argv or sys.argv[1:])[0]).read_text())
    print(validation_table(card), per_class_table(card), qa_table(card), rules_table(card), sep="\n\n")
    for part in ("calibration", "flicker", "speed"):
        if part in card:
            print(f"\n{part}\n\n{generic_table(card[part])}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
