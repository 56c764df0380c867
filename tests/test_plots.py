"""Plots and reports: each renders headless from real evaluate() results and shows the data.

The checks read what the figure shows (points, bar heights, axis labels with units, the
lines drawn) and compare it with numbers computed here independently of the plotting
code (the results' summaries, the spec's datasheet figures, brute-force Pareto sets).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from conftest import cli

from codesign import plots, report
from codesign.assess import sweep_results
from codesign.errors import CodesignError
from codesign.perf import evaluate
from codesign.search.load import load_trials, study_references
from codesign.search.trials import Trials, param_importance, pareto_mask
from codesign.units import format_quantities, format_quantity, format_rate
from codesign.workload.scenario import Scenario

SC = Scenario(batch=4, prompt=256, generate=32)
DEVICES = ("h100-sxm", "a100-80gb", "l4")
MAGIC = {"png": b"\x89PNG\r\n\x1a\n", "pdf": b"%PDF", "svg": b"<?xml"}


@pytest.fixture(scope="module")
def results():
    return [evaluate(d, "llama-3.2-1b", SC) for d in DEVICES]


def _texts(fig) -> str:
    out = [fig.get_suptitle()]
    for ax in fig.axes:
        out += [ax.get_xlabel(), ax.get_ylabel(), ax.get_title()]
    return "\n".join(out)


def _points(ax) -> int:
    return sum(len(c.get_offsets()) for c in ax.collections if hasattr(c, "get_offsets"))


def _bars(ax):
    from matplotlib.patches import Rectangle
    return [p for p in ax.patches if isinstance(p, Rectangle)]


# ---------------------------------------------------------------------------- package hygiene
def test_import_does_not_load_matplotlib():
    code = ("import sys, codesign, codesign.plots, codesign.report, codesign.cli; "
            "print('matplotlib' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_palette_is_okabe_ito():
    assert set(plots.STYLE["palette"]) == {"#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9",
                                           "#F0E442", "#000000"}


# ---------------------------------------------------------------------------- roofline
def test_roofline_points_ceilings_and_ridge(results):
    r = results[0]
    fig = plots.roofline(r)
    ax = fig.axes[0]
    ops = r.ops
    hbm = r.hardware.main_memory()
    drawable = ops[(ops["flops"] > 0) & (ops[f"bytes_{hbm.name}"] > 0)]
    assert _points(ax) == len(drawable)
    # every point sits at (FLOPs / HBM bytes, FLOPs / time) of an operator
    xy = np.concatenate([c.get_offsets() for c in ax.collections])
    want = np.column_stack([drawable["flops"] / drawable[f"bytes_{hbm.name}"], drawable["flops"] / drawable["time_s"]])
    assert np.allclose(np.sort(xy[:, 0]), np.sort(want[:, 0])) and np.allclose(np.sort(xy[:, 1]), np.sort(want[:, 1]))
    assert ax.get_xscale() == "log" and ax.get_yscale() == "log"
    assert "(FLOP per byte of HBM3 traffic)" in ax.get_xlabel() and "(FLOP/s)" in ax.get_ylabel()
    # H100 datasheet: 989 TFLOP/s dense bf16 and 3.35 TB/s HBM3 -> ridge at 295 FLOP/B
    ridge = [ln for ln in ax.lines if ln.get_marker() == "D" and np.isclose(ln.get_ydata()[0], 989e12)]
    assert ridge and np.isclose(ridge[0].get_xdata()[0], 989e12 / 3.35e12)
    labels = " ".join(t.get_text() for t in ax.texts)
    assert "matrix bf16/fp16 989 TFLOP/s, ridge 295 FLOP/B" in labels
    # no point above the datasheet roofline min(peak, I x bandwidth) of its datatype
    assert np.all(want[:, 1] <= np.minimum(1979e12, want[:, 0] * max(m.bandwidth * (132 if m.per_core else 1)
                                                                       for m in r.hardware.memory)) * 1.0001)


def test_roofline_overlays_devices(results):
    fig = plots.roofline(results)
    ax = fig.axes[0]
    n = 0
    for r in results:
        o = r.ops
        n += int(((o["flops"] > 0) & (o[f"bytes_{r.hardware.main_memory().name}"] > 0)).sum())
    assert _points(ax) == n
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert all(r.hardware.title in legend for r in results)
    assert "main-memory" in ax.get_xlabel()       # HBM3, HBM2e and GDDR6 differ


def test_roofline_labels_count_integer_ops_use_adaptive_prefixes_and_avoid_each_other():
    r = evaluate("rk3588-npu", "llama-3.1-8b", SC)             # an edge NPU: 33.8 GB/s, int4/int8 peaks
    spec = r.hardware
    fig = plots.roofline(r)
    labels = [t.get_text() for t in fig.axes[0].texts]
    mem = spec.main_memory()
    assert f"{mem.name} {mem.bandwidth / 1e9:.3g} GB/s" in labels           # not '0.0338 TB/s'
    int8 = spec.matrix_peak("int8")
    assert f"matrix int8 {int8 / 1e12:.3g} TOP/s, ridge {int8 / mem.bandwidth:.3g} OP/B" in labels
    assert all("FLOP/s" not in lab for lab in labels if lab.startswith("matrix int"))
    bf16 = spec.matrix_peak("bf16")
    assert any(lab.startswith(f"matrix bf16/fp16 {bf16 / 1e12:.3g} TFLOP/s") for lab in labels)
    for f in (fig, plots.roofline(evaluate("h100-sxm", "llama-3.1-8b", SC))):
        boxes = [(t, b) for t, b in _text_boxes(f) if t in {a.get_text() for a in f.axes[0].texts}]
        assert len(boxes) >= 6 and not _overlapping(boxes), _overlapping(boxes)


def test_numbers_are_shown_with_adaptive_prefixes():
    assert format_quantity(33.8e9, "bandwidth") == "33.8 GB/s"
    assert format_rate(1.98e15, integer=True) == "1.98 POP/s" and format_rate(989e12) == "989 TFLOP/s"
    # one prefix per table row, chosen for its median, never exponent notation
    assert format_quantities([0.183, 0.51, 130.0], "time") == ["183 ms", "510 ms", "130,000 ms"]


def test_roofline_unknown_level_is_one_line(results):
    with pytest.raises(CodesignError, match="has no memory level 'DRAM'"):
        plots.roofline(results[0], level="DRAM")


# ---------------------------------------------------------------------------- compare
def test_compare_bars_match_summaries(results):
    metrics = plots.COMPARE_METRICS
    fig = plots.compare(results, metrics, kind="bars")
    axes = [ax for ax in fig.axes if ax.axison]
    assert len(axes) == len(metrics)
    for ax, m in zip(axes, metrics):
        bars = _bars(ax)
        assert len(bars) == len(results)
        factor = plots.METRIC_DISPLAY[m][2]
        heights = [b.get_height() for b in bars]
        assert np.allclose(heights, [r.summary[m] * factor for r in results])
        assert ax.get_ylabel() == plots.METRIC_DISPLAY[m][1]
    text = _texts(fig)
    assert "lower is better" in text and "higher is better" in text
    ttft_ax = axes[0]
    assert np.isclose(_bars(ttft_ax)[0].get_height(), results[0]["ttft_s"] * 1e3)   # ms


def test_compare_marks_a_device_the_model_does_not_fit():
    rs = [evaluate(d, "llama-2-13b", Scenario(batch=1, prompt=128, generate=8)) for d in ("h100-sxm", "l4")]
    assert rs[0]["fits"] and not rs[1]["fits"]       # 26 GB of bf16 weights vs 24 GB
    fig = plots.compare(rs, ("tpot_s",))
    bars = _bars(fig.axes[0])
    assert [b.get_hatch() or "" for b in bars] == ["", "///"]
    assert "does not fit" in " ".join(t.get_text() for t in fig.legends[0].get_texts())


def test_compare_heatmap_normalises_to_best(results):
    metrics = ("tpot_s", "throughput_tokens_per_s")
    fig = plots.compare(results, metrics, kind="heatmap")
    img = fig.axes[0].images[0].get_array()
    assert img.shape == (len(results), len(metrics))
    tp = np.array([r["tpot_s"] for r in results])
    thr = np.array([r["throughput_tokens_per_s"] for r in results])
    assert np.allclose(img[:, 0], np.log10(tp / tp.min()))          # times worse than the fastest
    assert np.allclose(img[:, 1], np.log10(thr.max() / thr))        # higher is better: inverted
    cells = [t.get_text() for t in fig.axes[0].texts]
    assert len(cells) == img.size


def test_compare_auto_switches_to_heatmap_for_many_pairs(results):
    many = results * 5       # 15 device-workload pairs
    fig = plots.compare(many, ("tpot_s",))
    assert fig.axes[0].images


# ---------------------------------------------------------------------------- breakdown
def _bar_lengths(ax) -> dict:
    """Stacked horizontal bars of a breakdown panel: {row (0 by kind, 1 by resource): total length}."""
    out: dict = {}
    for b in _bars(ax):
        y = round(b.get_y() + b.get_height() / 2)
        out[y] = out.get(y, 0.0) + b.get_width()
    return out


def test_breakdown_sums_to_phase_times_in_ms(results):
    r = results[0]
    fig = plots.breakdown(r)
    prefill, decode = fig.axes[0], fig.axes[1]
    # prefill pass = TTFT, one decode step = TPOT (single device, no pipeline), in ms on the axis,
    # by operator kind and by binding resource alike
    for ax, want in ((prefill, r["ttft_s"] * 1e3), (decode, r["tpot_s"] * 1e3)):
        lengths = _bar_lengths(ax)
        assert set(lengths) == {0, 1} and np.allclose(list(lengths.values()), want, rtol=1e-9)
    assert prefill.get_xlabel() == "Time per pass or step" and decode.get_xlabel() == "Time per pass or step"
    assert prefill.get_xlim()[1] > r["ttft_s"] * 1e3          # room for the total printed at the end
    assert "ms" in " ".join(t.get_text() for t in prefill.get_xticklabels())    # the axis says its unit
    legend = [t.get_text() for t in fig.legends[0].get_texts()]
    assert set(r.ops["kind"]) <= set(legend) and set(r.ops["bound"]) <= set(legend)
    assert legend[0] == "operator kind" and "binding resource" in legend
    # the shares are printed inside the segments
    shares = [t.get_text() for t in prefill.texts if t.get_text().endswith("%")]
    gemm = r.ops[(r.ops.phase == "prefill") & (r.ops.kind == "gemm")]["total_s"].sum()
    assert f"{100 * gemm / r.ops[r.ops.phase == 'prefill']['total_s'].sum():.0f}%" in shares


def test_breakdown_normalised_bars_reach_100(results):
    fig = plots.breakdown(results[:2], normalize=True)
    assert len(fig.axes) == 4                                   # 2 devices x 2 phases
    for ax in fig.axes:
        assert np.allclose(list(_bar_lengths(ax).values()), 100.0)
    assert fig.axes[-1].get_xlabel() == "Share of phase time (%)"


def _text_boxes(fig) -> list:
    """(text, display box) of every visible text of a drawn figure: tick labels, labels,
    titles, annotations, legend entries."""
    fig.canvas.draw()
    r = fig.canvas.get_renderer()
    arts = list(fig.texts)                     # the suptitle among them
    for ax in fig.axes:
        arts += list(ax.get_xticklabels()) + list(ax.get_yticklabels()) + list(ax.texts)
        arts += [ax.title, ax.xaxis.label, ax.yaxis.label]
    for lg in fig.legends:
        arts += list(lg.get_texts())
    out = []
    for a in arts:
        if a.get_visible() and a.get_text().strip():
            e = a.get_window_extent(r)
            out.append((a.get_text(), (e.x0, e.y0, e.x1, e.y1)))
    return out


def _overlapping(boxes) -> list:
    return [(a, b) for i, (a, p) in enumerate(boxes) for b, q in boxes[i + 1:]
            if min(p[2], q[2]) - max(p[0], q[0]) > 0.5 and min(p[3], q[3]) - max(p[1], q[1]) > 0.5]


def test_breakdown_is_readable_at_six_devices():
    six = ("h100-sxm", "a100-80gb", "l4", "jetson-agx-orin", "rk3588-npu", "mi300x")
    rs = [evaluate(d, "llama-3.1-8b", Scenario(batch=8, prompt=1024, generate=256)) for d in six]
    fig = plots.breakdown(rs)
    assert len(fig.axes) == 12 and fig.get_size_inches()[0] == plots.STYLE["width"]
    boxes = _text_boxes(fig)
    assert not _overlapping(boxes), _overlapping(boxes)[:5]
    # each device's panels are on their own scale, so the edge NPU (130 s prefill) does not
    # flatten the H100 (0.2 s): every prefill bar spans most of its panel
    for ax, r in zip(fig.axes[::2], rs):
        assert np.isclose(max(_bar_lengths(ax).values()), r["ttft_s"] * 1e3) and ax.get_xlim()[1] < 1.3 * r["ttft_s"] * 1e3


# ---------------------------------------------------------------------------- sweeps
def test_batch_sweep_lines_follow_results():
    batches = (1, 4, 16, 64)
    rs = sweep_results(["h100-sxm", "l4"], "llama-3.2-1b", SC, over="batch", values=batches)
    fig = plots.sweep(rs)
    ax = fig.axes[0]
    lines = [ln for ln in ax.lines if len(ln.get_xdata()) == len(batches)]
    assert len(lines) == 2
    h100 = [r for r in rs if r.hardware.name == "h100-sxm"]
    assert np.allclose(lines[0].get_xdata(), [r["tpot_s"] * 1e3 for r in h100])
    assert np.allclose(lines[0].get_ydata(), [r["throughput_tokens_per_s"] for r in h100])
    assert np.all(np.diff(lines[0].get_ydata()) > 0)      # a bigger batch moves more tokens per second
    assert "(ms)" in ax.get_xlabel() and "(generated tokens/s)" in ax.get_ylabel()


def test_context_sweep_shows_tpot_growing_with_context():
    ctx = (128, 1024, 8192)
    rs = sweep_results(["h100-sxm"], "llama-3.2-1b", SC, over="context", values=ctx)
    fig = plots.sweep(rs, over="context")
    ax = fig.axes[0]
    line = ax.lines[0]
    assert list(line.get_xdata()) == list(ctx)
    assert np.all(np.diff(line.get_ydata()) > 0)          # more KV cache to read per token
    assert ax.get_xlabel() == "Prompt length (tokens)" and "(ms)" in ax.get_ylabel()


def test_sweep_rejects_bad_values():
    with pytest.raises(CodesignError, match="positive integers"):
        sweep_results(["h100-sxm"], "llama-3.2-1b", SC, values=[0, 4])


# ---------------------------------------------------------------------------- study plots
def _synthetic_trials(n=60, seed=3):
    rng = np.random.default_rng(seed)
    cores = rng.integers(4, 64, n)
    clock = rng.uniform(0.5e9, 2e9, n)
    dram = rng.choice(["lpddr5", "hbm3"], n)
    tpot = 1e-3 * (64 / cores) * (1e9 / clock) * np.where(dram == "hbm3", 0.5, 1.0)
    area = 2.0 * cores + 30.0 * (dram == "hbm3") + rng.uniform(0, 5, n)
    thr = 1 / tpot
    return pd.DataFrame({"number": np.arange(n), "state": "COMPLETE", "params_cores": cores,
                         "params_clock": clock, "params_dram": dram, "values_tpot_s": tpot,
                         "values_area_mm2": area, "values_throughput_tokens_per_s": thr,
                         "system_attrs_constraints:power": np.where(rng.random(n) < 0.2, 0.5, -0.5)})


def _brute_front(v, directions):
    v = np.asarray(v, float) * np.array([1 if d == "minimize" else -1 for d in directions])
    keep = []
    for i, a in enumerate(v):
        dominated = any(np.all(b <= a) and np.any(b < a) for j, b in enumerate(v) if j != i)
        keep.append(not dominated)
    return np.array(keep)


def test_pareto_mask_matches_brute_force():
    rng = np.random.default_rng(0)
    v = rng.normal(size=(300, 3)).round(1)       # ties on purpose
    dirs = ["minimize", "maximize", "minimize"]
    assert np.array_equal(pareto_mask(v, dirs), _brute_front(v, dirs))


def test_pareto_plot_shows_front_and_references():
    df = _synthetic_trials()
    fig = plots.pareto(df, ["tpot_s", "area_mm2"],
                       references={"base": {"tpot_s": 2e-3, "area_mm2": 60.0}, "h100": {"tpot_s": 5e-4,
                                                                                        "area_mm2": 814.0}})
    ax = fig.axes[0]
    feas = df["system_attrs_constraints:power"].to_numpy() <= 0
    front = _brute_front(df[["values_tpot_s", "values_area_mm2"]].to_numpy()[feas], ["minimize", "minimize"])
    by_label = {c.get_label(): len(c.get_offsets()) for c in ax.collections}
    assert by_label["Pareto-optimal (feasible)"] == front.sum()
    assert by_label["feasible trial"] == feas.sum() - front.sum()
    assert by_label["infeasible trial"] == (~feas).sum()
    assert by_label["base"] == 1
    # the H100's 814 mm² is far beyond the designs: an edge marker pointing up, its values in the label
    assert by_label["h100 (beyond the view)"] == 1
    h100 = next(c for c in ax.collections if c.get_label() == "h100 (beyond the view)")
    assert ax.get_ylim()[0] < h100.get_offsets()[0][1] < ax.get_ylim()[1]
    assert "h100: 0.5 ms, 814 mm²" in [t.get_text() for t in ax.texts]
    assert ax.get_xlabel() == "Time per output token (ms) ↓" and ax.get_ylabel() == "Die area (mm²) ↓"


def test_pareto_counts_each_design_once_and_zooms_on_the_front():
    df = _synthetic_trials()
    t = Trials(df, ["tpot_s", "area_mm2"])
    n_front = int(t.front.sum())
    # a sampler proposed every front design again, and a few useless designs far away
    again = df[t.front].assign(number=lambda d: d["number"] + 1000)
    far = df.head(5).assign(number=range(2000, 2005), values_tpot_s=1.0, values_area_mm2=5000.0)
    both = pd.concat([df, again, far], ignore_index=True)
    tt = Trials(both, ["tpot_s", "area_mm2"])
    assert int(tt.front.sum()) == 2 * n_front and int(tt.distinct_front.sum()) == n_front
    fig = plots.pareto(both, ["tpot_s", "area_mm2"])
    ax = fig.axes[0]
    assert fig.get_suptitle().startswith(f"Pareto front: {n_front} distinct designs of {len(both)} trials")
    front = next(c for c in ax.collections if c.get_label() == "Pareto-optimal (feasible)")
    assert len(front.get_offsets()) == n_front
    # zoomed on the front: the far designs (1000 ms, 5000 mm²) are out of view and counted
    area = df["values_area_mm2"].to_numpy()[t.front]
    assert ax.get_ylim()[1] < 2 * area.max() and ax.get_xlim()[1] < 100
    assert "5 trial(s) beyond the view" in [tx.get_text() for tx in ax.texts]


def test_pareto_labels_of_colocated_references_do_not_overlap():
    df = _synthetic_trials()
    refs = {"base": {"tpot_s": 2e-3, "area_mm2": 60.0}, "twin": {"tpot_s": 2e-3, "area_mm2": 60.2},
            "third": {"tpot_s": 2.02e-3, "area_mm2": 60.0}}
    fig = plots.pareto(df, ["tpot_s", "area_mm2"], references=refs)
    fig.canvas.draw()
    boxes = [(t.get_text(), tuple(t.get_window_extent(fig.canvas.get_renderer()).extents)) for t in fig.axes[0].texts
             if t.get_text() in refs]
    assert len(boxes) == 3 and not _overlapping(boxes), boxes


def test_pareto_three_objectives_gives_pairwise_panels():
    df = _synthetic_trials()
    fig = plots.pareto(df)                 # every values_ column: 3 objectives, one maximised
    panels = [ax for ax in fig.axes if ax.axison]
    assert len(panels) == 3
    assert panels[1].get_ylabel().startswith("Throughput") and panels[1].get_ylabel().endswith("↑")
    with pytest.raises(CodesignError, match="at least two objectives"):
        plots.pareto(df, ["tpot_s"])


def test_history_best_so_far_is_running_minimum_of_feasible():
    df = _synthetic_trials()
    fig = plots.history(df, ["tpot_s", "throughput_tokens_per_s"])
    feas = df["system_attrs_constraints:power"].to_numpy() <= 0
    for ax, col, acc in ((fig.axes[0], "values_tpot_s", np.fmin), (fig.axes[1], "values_throughput_tokens_per_s",
                                                                  np.fmax)):
        scale = 1e3 if col == "values_tpot_s" else 1.0
        best = [ln for ln in ax.lines if ln.get_label() == "best so far"][0]
        want = acc.accumulate(np.where(feas, df[col].to_numpy() * scale, np.nan))
        assert np.allclose(best.get_ydata(), want, equal_nan=True)
        assert _points(ax) == len(df)
    assert fig.axes[-1].get_xlabel() == "Trial number (count)"


def test_importance_fallback_ranks_the_driving_parameter():
    rng = np.random.default_rng(1)
    n = 80
    a = rng.uniform(0, 1, n)
    df = pd.DataFrame({"number": range(n), "params_a": a, "params_noise": rng.uniform(0, 1, n),
                       "params_mode": rng.choice(["x", "y"], n), "values_tpot_s": np.exp(a)})
    imp, method = param_importance(df, ["tpot_s"])
    assert np.isclose(imp["tpot_s"]["a"], 1.0) and imp["tpot_s"]["noise"] < 0.4
    assert "not fANOVA" in method
    fig = plots.importance(df, ["tpot_s"])
    ax = fig.axes[0]
    assert len(_bars(ax)) == 3
    assert "not fANOVA" in ax.get_title() and "Spearman" in ax.get_xlabel()
    assert [t.get_text() for t in ax.get_yticklabels()][0] == "a (value)"


def test_importance_of_an_optuna_study_names_its_method():
    import optuna
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(directions=["minimize", "maximize"], sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(lambda t: (t.suggest_float("x", 0, 1) ** 2, t.suggest_float("y", 0, 1)), n_trials=30)
    imp, method = param_importance(study, ["tpot_s", "throughput_tokens_per_s"])
    assert "ANOVA" in method and set(imp) == {"tpot_s", "throughput_tokens_per_s"}
    assert max(imp["tpot_s"], key=imp["tpot_s"].get) == "x"
    assert max(imp["throughput_tokens_per_s"], key=imp["throughput_tokens_per_s"].get) == "y"
    fig = plots.importance(study, ["tpot_s", "throughput_tokens_per_s"])
    assert "ANOVA" in fig.axes[0].get_title()


def test_parallel_coordinates_one_line_per_trial():
    df = _synthetic_trials()
    fig = plots.parallel_coordinates(df, ["tpot_s", "area_mm2"])
    ax = fig.axes[0]
    n_lines = sum(len(c.get_segments()) for c in ax.collections if hasattr(c, "get_segments"))
    assert n_lines == len(df)
    ticks = [t.get_text() for t in ax.get_xticklabels()]
    assert ticks[:3] == ["cores\n(count)", "clock\n(Hz)", "dram\n(choice)"]
    assert ticks[3] == "Time per output token\n(ms)"


# ---------------------------------------------------------------------------- validation
def _validation_df():
    rng = np.random.default_rng(2)
    n = 24
    meas = 10 ** rng.uniform(-5, -2, n)
    pred = meas * (1 + rng.normal(0, 0.2, n))
    return pd.DataFrame({"kernel": [f"k{i}" for i in range(n)], "kind": rng.choice(["gemm", "softmax", "norm"], n),
                         "phase": rng.choice(["prefill", "decode"], n), "predicted_s": pred, "measured_s": meas,
                         "error_pct": 100 * (pred - meas) / meas})


def test_validation_plot_points_bands_and_mape():
    df = _validation_df()
    fig = plots.validation(df)
    ax, bx = fig.axes[0], fig.axes[1]
    scat = [c for c in ax.collections if c.get_label() in set(df["kind"])]
    assert sum(len(c.get_offsets()) for c in scat) == len(df)
    bands = sorted(c.get_label() for c in ax.collections if c.get_label().startswith("±"))
    assert bands == ["±10 %", "±25 %"]
    assert ax.get_xscale() == "log" and ax.get_xlabel() == "Measured time per kernel (s)"
    mape = np.mean(np.abs(df["error_pct"]))
    assert f"MAPE {mape:.1f} %" in fig._suptitle.get_text()
    assert len(bx.get_xticklabels()) == df["kind"].nunique()
    assert "(%)" in bx.get_ylabel()


def test_validation_colours_stay_distinct_for_many_kinds():
    df = _validation_df()
    kinds = [f"kind{i}" for i in range(12)]
    df["kind"] = [kinds[i % len(kinds)] for i in range(len(df))]
    fig = plots.validation(df)
    colours = {tuple(np.round(c.get_facecolor()[0], 3)) for c in fig.axes[0].collections if c.get_label() in kinds}
    assert len(colours) == len(kinds)
    # the kind labels under the boxes are rotated one-liners: parallel lines of text, as far
    # apart (tick spacing x sin(rotation)) as a line of text is high, do not touch
    bx = fig.axes[1]
    fig.canvas.draw()
    ticks = bx.get_xticklabels()
    assert len(ticks) == len(kinds) and all("\n" not in t.get_text() for t in ticks)
    step = np.diff(bx.transData.transform([(0, 0), (1, 0)])[:, 0])[0]
    height = ticks[0].get_fontsize() * fig.dpi / 72
    assert step * np.sin(np.radians(ticks[0].get_rotation())) > 1.2 * height


def test_every_figure_has_the_same_width(results):
    df = _synthetic_trials()
    figs = [plots.compare(results), plots.roofline(results), plots.breakdown(results), plots.sweep(results),
            plots.pareto(df, ["tpot_s", "area_mm2"]), plots.history(df, ["tpot_s"]), plots.importance(df, ["tpot_s"]),
            plots.parallel_coordinates(df, ["tpot_s", "area_mm2"]), plots.validation(_validation_df())]
    assert {float(f.get_size_inches()[0]) for f in figs} == {plots.STYLE["width"]}


def test_report_opens_with_a_verdict(results):
    from codesign.accuracy.bands import band_for
    from codesign.units import format_number
    html = report.comparison_report(results, sweeps=False)
    assert html.index("<h2>Verdict") < html.index("<h2>Key numbers") < html.index("<h2>Plots")
    verdict = html[html.index("<h2>Verdict"):html.index("<h2>Key numbers")]
    for row in ("Time per output token", "Throughput (generated tokens/s)", "Tokens/s per W",
                "Tokens/s per 1,000 USD of hardware", "Energy per token"):
        assert f'<td class="l">{row}</td>' in verdict
    fastest = min(results, key=lambda r: r["tpot_s"]).hardware.title
    assert f"fastest per output token: <b>{fastest}</b>" in verdict
    r = results[0]
    # tokens/s per W is tokens per joule; per 1,000 USD: throughput over the price
    assert f">{format_number(1 / r['energy_per_token_j'], 3)}<" in verdict
    assert f">{format_number(r['throughput_tokens_per_s'] / r.hardware.price * 1e3, 3)}<" in verdict
    assert verdict.count('class="best"') >= 5                # one best device per row, at least
    band = band_for(r.hardware.device_class, r.scenario.runtime, "tpot_s", r["tpot_s"])
    if isinstance(band, dict):                                # the validated band under the number
        assert f'{format_number(band["low"] * 1e3, 3)}–{format_number(band["high"] * 1e3, 3)} ms' in verdict
    tables = html[html.index("<h2>Verdict"):html.index("<h2>Plots")]
    assert "e+" not in tables and "e-" not in tables          # no exponent notation in a table


def test_validation_missing_columns_is_one_line():
    with pytest.raises(CodesignError, match="missing column\\(s\\) measured_s"):
        plots.validation(_validation_df().drop(columns=["measured_s"]))


# ---------------------------------------------------------------------------- files
@pytest.mark.parametrize("fmt", ["png", "svg", "pdf"])
def test_save_writes_the_format_of_the_extension(tmp_path, results, fmt):
    path = plots.save(plots.breakdown(results[0]), tmp_path / f"b.{fmt}")
    assert path.read_bytes().startswith(MAGIC[fmt])


def test_save_rejects_unknown_extension(tmp_path, results):
    with pytest.raises(CodesignError, match="expected a file name ending in .png, .svg or .pdf, got 'b.jpg'"):
        plots.save(plots.breakdown(results[0]), tmp_path / "b.jpg")


# ---------------------------------------------------------------------------- CLI
def test_cli_plot_compare_writes_png(tmp_path):
    out = tmp_path / "cmp.png"
    r = cli("plot", "compare", "--hardware", "h100-sxm,l4", "--workload", "llama-3.2-1b", "--batch", "2",
             "--prompt", "128", "--generate", "16", "--out", out)
    assert r.returncode == 0, r.stderr
    assert out.read_bytes().startswith(MAGIC["png"]) and f"wrote {out}" in r.stdout


def test_cli_bad_extension_is_one_line(tmp_path, capsys):
    from codesign.cli import run
    with pytest.raises(SystemExit) as exc:
        run(["plot", "roofline", "-H", "h100-sxm", "-w", "llama-3.2-1b", "--out", str(tmp_path / "x.jpg")])
    assert exc.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "--out" in err and "x.jpg" in err


def test_cli_in_process_plots_and_report(tmp_path):
    from click.testing import CliRunner

    from codesign.cli import main
    runner = CliRunner()
    common = ["-H", "h100-sxm,l4", "-w", "llama-3.2-1b", "--prompt", "128", "--generate", "16"]
    out = tmp_path / "breakdown.pdf"
    res = runner.invoke(main, ["plot", "breakdown", *common, "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(MAGIC["pdf"])
    out = tmp_path / "sweep.svg"
    res = runner.invoke(main, ["plot", "sweep", *common, "--values", "1,8", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(MAGIC["svg"])
    csv = tmp_path / "v.csv"
    _validation_df().to_csv(csv, index=False)
    out = tmp_path / "val.png"
    res = runner.invoke(main, ["plot", "validation", "--csv", str(csv), "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert out.read_bytes().startswith(MAGIC["png"])
    out = tmp_path / "r.html"
    res = runner.invoke(main, ["report", *common, "--no-sweeps", "--out", str(out)])
    assert res.exit_code == 0, res.output
    html = out.read_text()
    # one self-contained file: figures inline, no external resources
    assert html.startswith("<!DOCTYPE html>") and html.count('src="data:image/png;base64,') == 3
    assert 'src="http' not in html and 'href="http' not in html and "<link" not in html and "<script" not in html
    assert "NVIDIA H100 SXM5 80GB" in html and "NVIDIA L4 24GB" in html and "time per output token" in html
    assert "codesign report --hardware h100-sxm,l4 --workload llama-3.2-1b --prompt 128 --generate 16" in html


STUDY_YAML = """
name: plots-test
hardware: l4
space:
  compute.clock: {type: float, low: 1.0 GHz, high: 2.5 GHz}
  memory.GDDR6.bandwidth: {type: float, low: 200 GB/s, high: 600 GB/s}
compression:
  weight_bits: {type: categorical, choices: [16, 8, 4]}
workloads:
  - {workload: llama-3.2-1b, batch: 1, prompt: 128, generate: 16}
objectives:
  - {metric: tpot_s, direction: minimize}
  - energy_per_token_j
constraints:
  fits: true
  avg_power_w: {max: 60 W}
sampler: {name: random, seed: 1}
trials: 24
"""


@pytest.fixture(scope="module")
def study_run(tmp_path_factory):
    from codesign.search import load_study, parse_ref, run_study
    d = tmp_path_factory.mktemp("study")
    f = d / "plots-test.yaml"
    f.write_text(STUDY_YAML)
    journal = d / "s.journal"
    run_study(load_study(f), parse_ref(str(journal), "plots-test"), trials=24)
    return f, journal


def test_study_plots_and_report_from_a_real_study(study_run, tmp_path):
    from click.testing import CliRunner

    from codesign.cli import main
    f, journal = study_run
    st = load_trials(str(f), str(journal))
    assert st.objectives == ["tpot_s", "energy_per_token_j"] and len(st.trials) == 24
    refs = study_references(st.study, ["h100-sxm"])
    assert set(refs) == {"base: NVIDIA L4 24GB", "NVIDIA H100 SXM5 80GB"}
    # the base device evaluated by the study's own path equals evaluate() on its workload
    base = evaluate("l4", "llama-3.2-1b", Scenario(batch=1, prompt=128, generate=16))
    assert np.isclose(refs["base: NVIDIA L4 24GB"]["tpot_s"], base["tpot_s"], rtol=1e-9)
    fig = plots.pareto(st.trials, st.objectives, directions=st.directions, references=refs)
    by_label = {c.get_label(): len(c.get_offsets()) for c in fig.axes[0].collections}
    t = Trials(st.trials, st.objectives, st.directions)
    assert int(st.trials["pareto"].sum()) == int(t.front.sum())
    # the title counts distinct designs as 'codesign study' does (export.unique_front)
    from codesign.search.export import unique_front
    distinct = len(unique_front(st.optuna_study))
    assert by_label["Pareto-optimal (feasible)"] == int(t.distinct_front.sum()) == distinct
    assert fig.get_suptitle().startswith(f"Pareto front: {distinct} distinct designs of 24 trials")
    runner = CliRunner()
    for kind in ("pareto", "history", "importance", "parallel"):
        out = tmp_path / f"{kind}.png"
        res = runner.invoke(main, ["plot", kind, "--study", str(f), "--storage", str(journal), "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert out.read_bytes().startswith(MAGIC["png"])
    out = tmp_path / "study.html"
    res = runner.invoke(main, ["report", "--study", str(f), "--storage", str(journal), "--out", str(out)])
    assert res.exit_code == 0, res.output
    text = out.read_text()
    assert text.count("data:image/png;base64,") == 4 and "Pareto-optimal designs" in text
    assert "base: NVIDIA L4 24GB" in text


def test_trials_csv_needs_objectives(tmp_path):
    df = _synthetic_trials().rename(columns={"values_tpot_s": "tpot_s"})
    csv = tmp_path / "t.csv"
    df.drop(columns=["values_area_mm2", "values_throughput_tokens_per_s"]).to_csv(csv, index=False)
    with pytest.raises(CodesignError, match="name the objectives"):
        load_trials(trials_csv=csv)
    st = load_trials(trials_csv=csv, objectives=["tpot_s"])
    assert st.objectives == ["tpot_s"]
    with pytest.raises(CodesignError, match="no column for objective 'area'"):
        load_trials(trials_csv=csv, objectives=["area"])

