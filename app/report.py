"""Terminal rendering of reports (rich tables); the JSON is the report dict itself. Report keys are identifiers;
the words people read are here."""
from __future__ import annotations

import numpy as np
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from masnn.calibration import uncertain_text

# `masnn evaluate` report keys -> their labels in the printed table
PROTOCOL_LABELS = {"vote": "10-crop vote (paper)", "single": "single crop (centre)"}


def bar(fraction: float, width: int = 20) -> str:
    filled = int(round(max(0.0, min(1.0, fraction)) * width))
    return "█" * filled + "░" * (width - filled)


def _mean(windows: list[dict], key: str) -> float:
    return float(np.mean([w["stats"][key] for w in windows]))


def _segment_windows(report: dict, segment: dict) -> list[dict]:
    """The windows whose centre is in the segment (a window stands for its centre)."""
    return [w for w in report["windows"] if segment["start_s"] <= (w["start_s"] + w["end_s"]) / 2 <= segment["end_s"]] or report["windows"]


def answer_text(label: str, top_guess: str | None, confidence: float | None) -> str:
    """A class, "idle", or "uncertain (top guess: X, 31 %)"."""
    if label == "uncertain" and top_guess is not None and confidence is not None:
        return uncertain_text(top_guess, confidence)
    return label


def threshold_text(model: dict) -> str:
    threshold = model.get("uncertain_threshold")
    if threshold is None:
        return "no calibrated threshold: no answer is called uncertain"
    return f"answers under {100 * threshold:.0f} % confidence are uncertain (calibrated: {model.get('calibration_data') or '?'})"


def classify_tables(report: dict) -> list:
    """What `masnn classify` prints: header, prediction or timeline, per-inference statistics, totals."""
    model, recording, totals = report["model"], report["recording"], report["totals"]
    duration = f"{recording['duration_s']:.2f} s" if recording["duration_s"] is not None else "?"
    header = Text.from_markup(
        f"[bold]{escape(report['file'])}[/]  {recording['format']}, {recording['camera']} "
        f"{recording['sensor'][0]}x{recording['sensor'][1]}, {duration}\n"
        f"model {escape(model['weights'])} ({model['name']}, attention {model['attention'] or 'none'}), window {model['window_us'] / 1000:.0f} ms, "
        f"stride {model['stride_us'] / 1000:.0f} ms, {model['device']}\n{escape(threshold_text(model))}")
    out = [header]
    out += [Text(f"note: {note}", style="yellow") for note in report.get("notes", [])]
    if report["mode"] == "clip":
        prediction = report["prediction"]
        top = prediction["top_k"][0]
        out.append(Text.from_markup(f"[bold]answer: {escape(answer_text(prediction['class'], top['class'], prediction['confidence']))}[/]"))
        table = Table(title="prediction (mean over the clip's windows)")
        for column in ("#", "action", "probability", ""):
            table.add_column(column)
        for rank, entry in enumerate(report["prediction"]["top_k"], 1):
            table.add_row(str(rank), entry["class"], f"{100 * entry['probability']:.1f} %", bar(entry["probability"]))
    else:
        table = Table(title=f"timeline: {len(report['segments'])} segments (smoothed windows)")
        for column in ("start s", "end s", "action", "confidence", "windows", "spikes / inference", "energy / inference µJ"):
            table.add_column(column, justify="right" if column != "action" else "left")
        for segment in report["segments"]:
            inside = _segment_windows(report, segment)
            confidence = "" if segment["confidence"] is None else f"{100 * segment['confidence']:.0f} % {bar(segment['confidence'], 10)}"
            action = answer_text(segment["class"], segment.get("top_guess"), segment["confidence"])
            table.add_row(f"{segment['start_s']:.2f}", f"{segment['end_s']:.2f}", action, confidence, str(segment["windows"]),
                          f"{_mean(inside, 'spikes'):,.0f}", f"{_mean(inside, 'energy_uj'):.1f}")
    out.append(table)
    out.append(inference_table(report["windows"], model["energy_preset"]))
    latency = totals["latency_ms"]
    out.append(Text(f"total: {totals['windows']} inferences, {totals['events_in_windows']:,} events in windows, {totals['spikes']:,.0f} spikes, "
                    f"{totals['energy_uj']:,.1f} µJ (an ANN of the same shape: {totals['ann_energy_uj']:,.0f} µJ), "
                    f"latency p50 {latency['p50']:.1f} ms / p99 {latency['p99']:.1f} ms, {totals['wall_s']:.1f} s wall"))
    return out


def inference_table(windows: list[dict], preset: str) -> Table:
    """Mean per inference over ``windows``: per layer spikes and firing rate, then the totals."""
    table = Table(title=f"per inference (mean of {len(windows)} windows, energy {preset})")
    for column in ("", "spikes", "firing rate"):
        table.add_column(column, justify="right")
    for layer in windows[0]["stats"]["spikes_per_layer"]:
        spikes = np.mean([w["stats"]["spikes_per_layer"][layer] for w in windows])
        rate = np.mean([w["stats"]["firing_rate_per_layer"][layer] for w in windows])
        table.add_row(layer, f"{spikes:,.0f}", f"{100 * rate:.2f} %")
    table.add_row("all (NASAR)", f"{_mean(windows, 'spikes'):,.0f}", f"{100 * _mean(windows, 'nasar'):.2f} %")
    table.add_row("events in", f"{_mean(windows, 'events'):,.0f}", "")
    table.add_row("SOPs / MACs", f"{_mean(windows, 'sops'):,.0f}", f"{_mean(windows, 'macs'):,.0f}")
    table.add_row("attention MACs", f"{_mean(windows, 'attention_macs'):,.0f}", "")
    table.add_row("energy µJ (SNN / ANN)", f"{_mean(windows, 'energy_uj'):.1f}", f"{_mean(windows, 'ann_energy_uj'):,.0f}")
    table.add_row("latency ms", f"{_mean(windows, 'latency_ms'):.1f}", "")
    return table


# `masnn evaluate`: per_crop_mean key -> (label, unit, format); counts with thousands separators, never 7.61e+06
EVALUATE_ROWS = {
    "spikes": ("spikes per inference", "", "{:,.0f}"), "nasar": ("NASAR (share of neurons spiking per step)", "", "{:.4f}"),
    "sops": ("synaptic operations (SOPs)", "", "{:,.0f}"), "macs": ("MACs, attention not included", "", "{:,.0f}"),
    "attention_macs": ("attention MACs", "", "{:,.0f}"), "energy_uj": ("SNN energy per inference", " µJ", "{:,.1f}"),
    "ann_energy_uj": ("ANN energy, frame by frame (an ANN of the same shape)", " µJ", "{:,.1f}"),
    "ree_vs_vanilla": ("rEE vs vanilla (energy ratio)", "x", "{:,.2f}"), "energy_preset": ("energy preset", "", "{}"),
}


def evaluate_table(result: dict, title: str) -> Table:
    """What `masnn evaluate` prints: accuracy under both protocols, the per-inference means (one crop's window)
    with their units, and the latency."""
    table = Table(title=escape(title), show_header=False)
    table.add_column("", justify="left")
    table.add_column("", justify="right")
    for protocol, value in result["accuracy"].items():
        right = round(value * result["samples"])
        table.add_row(f"accuracy, {PROTOCOL_LABELS.get(protocol, protocol)}", f"{100 * value:.2f} % ({right} of {result['samples']})")
    for key, value in result["per_crop_mean"].items():
        if value is None:
            continue
        label, unit, shape = EVALUATE_ROWS.get(key, (key.replace("_", " "), "", "{:,.4f}"))
        table.add_row(label, shape.format(value) + unit)
    table.add_row("latency per window", f"{result['latency_ms_per_window']:,.1f} ms")
    none = result.get("no_gesture")
    if none:
        table.add_row(f"no gesture: {none['samples']} stretches, {none['crops']} crops", "")
        table.add_row("  mean confidence (gesture crops)", f"{none['mean_confidence']:.2f} ({none['gesture_mean_confidence']:.2f})")
        if none["threshold"] is not None:
            table.add_row(f"  uncertain (below {none['threshold']:.2f})", f"{100 * none['uncertain']:.1f} %")
            table.add_row("  named otherwise", escape(", ".join(f"{name} {count}" for name, count in none["named"].items()) or "none"))
    return table
