"""Locate the data folders the service ships (hooks/, fhir_profiles/) in a checkout or an install."""

from __future__ import annotations

import os
import sys
from functools import cache
from pathlib import Path


@cache
def data_root() -> Path:
    """The folder holding hooks/ and fhir_profiles/.

    Looked up in order: $HER2_CDS_HOME, the source checkout next to this package,
    and the data files of an installed wheel (<prefix>/share/her2-cds).
    """
    candidates = []
    if os.environ.get("HER2_CDS_HOME"):
        candidates.append(Path(os.environ["HER2_CDS_HOME"]))
    candidates.append(Path(__file__).resolve().parent.parent)
    candidates.append(Path(sys.prefix) / "share" / "her2-cds")
    for root in candidates:
        if (root / "hooks" / "services.json").is_file():
            return root
    raise FileNotFoundError(
        "cannot find hooks/services.json; set HER2_CDS_HOME to the folder holding hooks/ "
        "and fhir_profiles/ (looked in: " + ", ".join(str(c) for c in candidates) + ")"
    )


def hooks_dir() -> Path:
    return data_root() / "hooks"


def profiles_dir() -> Path:
    return data_root() / "fhir_profiles"
