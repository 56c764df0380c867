"""A derived design outside the envelope of chips that exist gets a note (issue 17)."""
from __future__ import annotations

import pytest
from test_exhaustive import run, study

from codesign.hardware import list_hardware, load_hardware
from codesign.hardware.credibility import ENVELOPE_MARGIN, credibility_notes, densities, envelope, model_area


def test_no_library_chip_is_outside_the_envelope_it_builds():
    assert [s.name for s in list_hardware() if credibility_notes(s)] == []


def test_densities_by_hand():
    h100 = load_hardware("h100-sxm")
    d = densities(h100, 800.0)
    assert d["power_w_per_mm2"] == pytest.approx(700 / 800)
    hbm = sum(m.bandwidth for m in h100.memory if m.kind == "hbm")
    assert d["shoreline.hbm"] == pytest.approx(hbm / (4 * 800 ** 0.5))


def test_a_tdp_no_die_could_shed_and_hbm_without_shoreline_are_flagged():
    hot = load_hardware("h100-sxm", overrides={"power.tdp": "3000 W"})
    notes = credibility_notes(hot)
    assert len(notes) == 1 and notes[0].startswith("power density") and "known gpu" in notes[0]
    top = envelope("gpu")["power_w_per_mm2"][0]
    assert 3000 / model_area(hot) > ENVELOPE_MARGIN * top
    # just inside the margin: no note
    ok = load_hardware("h100-sxm", overrides={"power.tdp": f"{0.99 * ENVELOPE_MARGIN * top * model_area(hot)} W"})
    assert credibility_notes(ok) == []


def test_a_study_names_its_front_designs_outside_known_chips(tmp_path):
    """The tiny enumerated study with a clock range far past the base NPU's: its fastest
    designs do more matrix work per transistor than any known NPU and are noted."""
    st = study(space={"compute.cores": {"type": "int", "low": 1, "high": 2},
                      "compute.clock": {"type": "categorical", "choices": ["1 GHz", "20 GHz"]}})
    rep = run(st, tmp_path)
    assert rep.credibility, "a 20 GHz NPU design on the front should be noted"
    for notes in rep.credibility.values():
        assert any("FLOP/s per transistor" in n for n in notes)
