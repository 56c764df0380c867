"""The README's images show what the code computes now (issue 16).

``benchmarks/render_readme_images.py`` saves each image with a fingerprint of what it
shows (``codesign.plots.fingerprint``: its texts and a hash of its data, no pixels) in
docs/images/fingerprints.json. Here the same figures are built again, without drawing
them, and their fingerprints compared: a change to the plotting code, the engine or a
spec that changes a README figure fails until the images are rendered again. Pixels are
not compared, so matplotlib or font versions do not make this flaky.
"""
from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

from codesign import plots

ROOT = Path(__file__).resolve().parents[1]
IMAGES = ROOT / "docs" / "images"
RENDER = "python benchmarks/render_readme_images.py"


def _renderer():
    spec = importlib.util.spec_from_file_location("render_readme_images", ROOT / "benchmarks" / "render_readme_images.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _stored() -> dict:
    return json.loads((IMAGES / "fingerprints.json").read_text(encoding="utf-8"))


def test_every_readme_image_is_rendered_by_the_script():
    shown = set(re.findall(r"docs/images/([\w.-]+\.png)", (ROOT / "README.md").read_text(encoding="utf-8")))
    stored = _stored()
    assert shown and shown <= set(stored), f"README images the script does not render: {shown - set(stored)}"
    missing = [n for n in stored if not (IMAGES / n).is_file()]
    assert not missing, f"missing {missing}: run {RENDER}"


def test_readme_images_are_fresh():
    stored = _stored()
    figs = _renderer().figures()
    assert set(figs) == set(stored), f"the script renders {sorted(figs)}, fingerprints list {sorted(stored)}: run {RENDER}"
    stale = {}
    for name, fig in figs.items():
        now, then = plots.fingerprint(fig), stored[name]
        if now != then:
            changed = [t for t in now["texts"] if t not in then["texts"]][:3]
            stale[name] = changed or ("data changed" if now["data_sha256"] != then["data_sha256"] else "size changed")
    assert not stale, f"README images out of date ({stale}): run {RENDER}"
