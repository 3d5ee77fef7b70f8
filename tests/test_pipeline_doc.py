"""docs/pipeline.md names one module per step of an event's path: every module and name its
diagram points at exists, so the map cannot drift from the code unnoticed."""

from __future__ import annotations

import importlib
import pathlib
import re

DOC = pathlib.Path(__file__).parent.parent / "docs" / "pipeline.md"
# "<path>.py  Name[.attr][, Name...]" in the diagram.
STEP = re.compile(r"([\w/]+)\.py\s+([A-Za-z_][\w.]*)(?:\(\))?((?:, [A-Za-z_][\w.]*)*)")


def diagram() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text.split("```", 2)[1]


def test_every_module_and_name_the_pipeline_map_points_at_exists() -> None:
    found = []
    for path, first, rest in STEP.findall(diagram()):
        module = importlib.import_module("empathy_webhooks_core." + path.replace("/", "."))
        for dotted in [first, *filter(None, rest.split(", "))]:
            target: object = module
            for part in dotted.split("."):
                assert hasattr(target, part), f"{path}.py has no {dotted} (docs/pipeline.md)"
                target = getattr(target, part)
            found.append(f"{path}.{dotted}")
    # The steps that moved out of the dispatcher are on the map, each in its own module.
    for step in (
        "_pipeline/admission.admit",
        "_pipeline/lane.Lane",
        "_pipeline/work.Workers",
        "_pipeline/outcome.decide",
        "_pipeline/failures.Failures.failed",
        "_pipeline/failures.Failures.gone",
        "_pipeline/paging.Pager",
    ):
        assert step in found, step
