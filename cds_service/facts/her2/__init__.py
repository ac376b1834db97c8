"""HER2 (DESIGN §6.1): read each result from the encodings EHRs and labs use (readings, text, sites), categorise it
by the §6.1 table (category), and build the patient's picture with history and discordance (picture)."""

from cds_service.facts.her2.category import HER2_TABLE, Interpretation, categorise, ish_group, ratio_at_least_2
from cds_service.facts.her2.model import (
    BINARY_ONLY,
    CATEGORY_LABEL,
    INCONSISTENT,
    INDETERMINATE,
    LOW,
    NULL,
    POSITIVE,
    ULTRALOW,
    ZERO_UNSPECIFIED,
    Her2Picture,
    Her2Result,
    Her2Values,
    Partial,
)
from cds_service.facts.her2.picture import build_picture
from cds_service.facts.her2.readings import read_bound, read_observation
from cds_service.facts.her2.text import ihc_score_from_text

__all__ = [
    "BINARY_ONLY",
    "CATEGORY_LABEL",
    "HER2_TABLE",
    "INCONSISTENT",
    "INDETERMINATE",
    "LOW",
    "NULL",
    "POSITIVE",
    "ULTRALOW",
    "ZERO_UNSPECIFIED",
    "Her2Picture",
    "Her2Result",
    "Her2Values",
    "Interpretation",
    "Partial",
    "build_picture",
    "categorise",
    "ihc_score_from_text",
    "ish_group",
    "ratio_at_least_2",
    "read_bound",
    "read_observation",
]
