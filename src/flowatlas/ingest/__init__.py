"""The one ingest pipeline: the stages every flow passes on its way into the store.

The collector, the importers and the simulator all write through :class:`Pipeline` (built by
:func:`pipeline_for`), so a record is checked, filtered and normalised the same way whichever
front end produced it. See docs/architecture.md ("The ingest pipeline").
"""

from flowatlas.ingest.pipeline import (
    ENRICHMENT,
    STAGE_ORDER,
    Pipeline,
    pipeline_for,
)
from flowatlas.ingest.stages import (
    DropCounts,
    OptOutStage,
    PlausibilityStage,
    SamplingStage,
    Stage,
)

__all__ = [
    "ENRICHMENT",
    "STAGE_ORDER",
    "DropCounts",
    "OptOutStage",
    "Pipeline",
    "PlausibilityStage",
    "SamplingStage",
    "Stage",
    "pipeline_for",
]
