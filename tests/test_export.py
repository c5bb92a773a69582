"""`gateway export --format fides`: a manifest the Fides tools accept, validated with the
`fideslang` package itself, and true to what the gateway lets leave."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml
from fideslang.default_taxonomy import DEFAULT_TAXONOMY
from fideslang.models import System

from gateway.export.fides import FIDES_CATEGORY
from gateway.policy.model import CATEGORIES

ROOT = Path(__file__).resolve().parent.parent


def _export(tmp_path: Path) -> dict[str, Any]:
    out = tmp_path / "systems.yml"
    env = {k: v for k, v in os.environ.items() if not k.startswith("GATEWAY_")}
    proc = subprocess.run(
        [sys.executable, "-m", "gateway", "export", "--format", "fides", "--out", str(out)],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    doc = yaml.safe_load(out.read_text())  # what `fides push` reads
    assert doc == json.loads(out.read_text())
    assert isinstance(doc, dict)
    return doc


def test_every_category_maps_into_the_taxonomy() -> None:
    keys = {c.fides_key for c in DEFAULT_TAXONOMY.data_category}
    assert set(FIDES_CATEGORY) == {c for c in CATEGORIES if not c.startswith("secret.")}
    assert set(FIDES_CATEGORY.values()) <= keys


def test_manifest_validates_with_fideslang(tmp_path: Path) -> None:
    doc = _export(tmp_path)
    categories = {c.fides_key for c in DEFAULT_TAXONOMY.data_category}
    uses = {u.fides_key for u in DEFAULT_TAXONOMY.data_use}
    subjects = {s.fides_key for s in DEFAULT_TAXONOMY.data_subject}
    systems = {s["fides_key"]: System.model_validate(s) for s in doc["system"]}
    assert set(systems) == {"mi_home", "mi_tv_remote", "mijia_camera", "smartmi", "xiaofang_camera"}
    for system in systems.values():
        for d in system.privacy_declarations:
            assert set(d.data_categories) <= categories
            assert d.data_use in uses
            assert set(d.data_subjects) <= subjects
            # Nothing secret is ever declared, identifiers only as pseudonyms, IPs coarsened.
            assert not any(c.startswith("user.authorization") for c in d.data_categories)
            assert "user.device.device_id" not in d.data_categories
            assert "user.device.ip_address" not in d.data_categories
    # A product whose policy names no region forwards nothing: it declares nothing.
    assert systems["smartmi"].privacy_declarations == []
    assert systems["smartmi"].processes_personal_data is False
    cam = systems["mijia_camera"]
    assert cam.meta is not None and cam.meta["regions"] == ["cn", "us", "sg", "fr"]
    opt_in = [d for d in cam.privacy_declarations if "opt-in" in (d.name or "")]
    assert opt_in and all(d.legal_basis_for_processing == "Consent" for d in opt_in)
