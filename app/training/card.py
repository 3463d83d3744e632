"""Model cards. The figures a card states come from the checkpoint and its `masnn evaluate` report, so a card
cannot disagree with the file beside it; the prose (data, how to reproduce, limits) is the author's. Figures sit
between ``<!-- masnn card: NAME -->`` and ``<!-- /masnn card: NAME -->`` lines, and `masnn card` rewrites only
those blocks; a card that does not exist yet is started from a skeleton with every block."""
from __future__ import annotations

import json
import re
from pathlib import Path

import torch

from masnn.checkpoint import file_sha256, load_checkpoint
from masnn.datasets.io.writers import atomic_path
from masnn.models.attention import parse_attention


def _percent(value: float) -> str:
    return f"{100 * value:.2f} %"


def _count(report: dict, protocol: str) -> str:
    """The accuracy under ``protocol`` ("vote" or "single") with the count of samples right."""
    right = round(report["accuracy"][protocol] * report["samples"])
    return f"{_percent(report['accuracy'][protocol])} ({right} of {report['samples']})"


def _window(report: dict) -> tuple[int, float]:
    """(T, dt in milliseconds): the card states durations in ms for people; the report has microseconds."""
    framing = report["framing"]
    return framing["n_frames"], framing["dt_us"] / 1000


def model_block(weights: Path, sha256: str, checkpoint: dict, report: dict) -> str:
    args, bench = report["model"], report["neurobench"]
    half = any(t.dtype == torch.float16 for t in checkpoint["model"].values())
    storage = ", float16 storage (loads into float32)" if half else ""
    steps, dt_ms = _window(report)
    size = report["framing"]["size"]
    attention = parse_attention(args["attention"]) or "none (vanilla SNN)"
    denoise_us = report["framing"].get("denoise_us")
    filter_line = [f"Input filtered first: a background-activity filter of {denoise_us / 1000:g} ms (an event is kept "
                   "when a neighbouring pixel fired within that time before it), in every command that frames input "
                   "for it."] if denoise_us else []
    return "\n".join([
        f"MA-SNN `{args['name']}`, attention **{attention}**, placement `{args['placement']}`, {args['num_classes']} classes, "
        f"input 2 x {size} x {size}, T = {steps} frames of dt = {dt_ms:g} ms (a {steps * dt_ms / 1000:g} s window).",
        *filter_line,
        "",
        f"- file: `{weights.name}`, {weights.stat().st_size / 1e6:.1f} MB{storage}, sha256 `{sha256}`",
        f"- parameters: {bench['parameter_count']:,}; neurons: {bench['neurons']:,}",
        f"- classes: {', '.join(report['class_names'] or map(str, range(args['num_classes'])))}",
    ])


def _recipe(config: dict) -> str:
    optimizer = {"adam": "Adam", "adamw": "AdamW"}[config["optimizer"]]
    decay = f", weight decay {config['weight_decay']:g}" if config.get("weight_decay") else ""
    loss = ("MSE loss on firing rates vs one-hot" if config["loss"] == "mse"
            else f"cross-entropy on the output firing rates x {config['ce_scale']:g}")
    schedule = {"plateau": f"ReduceLROnPlateau on the training loss (factor {config.get('plateau_factor', 0.1):g}, "
                           f"patience {config.get('plateau_patience', 5)})",
                "cosine": "cosine decay of the learning rate to 0 over the epochs",
                "none": "constant learning rate"}[config["scheduler"]]
    window = config["T"] * config["framing"]["dt_us"] / 1000
    augment = f", augmented ({config['augment']})" if config.get("augment") else ""
    no_gesture = ("; crops of the stretches without a gesture trained towards every class equally likely"
                  if config.get("no_gesture") else "")
    reversed_share = (f"; {config['time_reversal']:.0%} of the crops played backwards, the arm circles' senses swapped"
                      if config.get("time_reversal") else "")
    average = (f"; the model is the moving average of the weights (decay {config['ema']:g} per step)"
               if config.get("ema") else "")
    return (f"{optimizer} lr {config['lr']:g}{decay}, batch {config['batch_size']}, {loss}, {schedule}; "
            f"{config['epochs']} epochs, seed {config['seed']}, random {window:g} ms crops{augment}{no_gesture}"
            f"{reversed_share}{average}")


def _read_json(path: Path):
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not JSON ({e.msg}, line {e.lineno})") from None


def read_report(path: Path) -> dict:
    report = _read_json(path)
    if not isinstance(report, dict) or "accuracy" not in report or "per_crop_mean" not in report:
        raise ValueError(f"{path}: not a report written by masnn evaluate --report")
    return report


def run_history(checkpoint: dict, metrics: Path | None) -> list[dict]:
    """Every epoch's metrics: the run's metrics.json when given (a best.pt holds only the epochs up to its own),
    refused when its first epochs are not the checkpoint's."""
    kept = checkpoint["history"]
    if metrics is None:
        return kept
    history = _read_json(metrics)
    if [row["train_loss"] for row in history[:len(kept)]] != [row["train_loss"] for row in kept]:
        raise ValueError(f"{metrics}: not the metrics of the run that wrote this checkpoint")
    return history


def training_block(checkpoint: dict, history: list[dict]) -> str:
    config = checkpoint["config"]
    has_val = any(row.get("val_acc") is not None for row in history)
    lines = [f"- config: {_recipe(config)}"]
    if has_val:
        lines.append(f"- selected epoch: {checkpoint['data'].get('epoch', len(history))} of {config['epochs']}, by validation "
                     f"accuracy ({checkpoint['best']:.3f}; the first epoch to reach it); the test split was not used for selection")
    else:
        lines.append(f"- kept: the epoch with the lowest training loss ({checkpoint['best']:.4f}); no validation split")
    lines += ["", "| epoch | train loss | train acc | val acc | lr | samples/s |", "|---|---|---|---|---|---|"]
    for row in history:
        val = f"{row['val_acc']:.3f}" if row.get("val_acc") is not None else "-"
        lines.append(f"| {row['epoch']} | {row['train_loss']:.4f} | {row['train_acc']:.3f} | {val} | {row['lr']:.2g} | "
                     f"{row['samples_per_s']:.2f} |")
    return "\n".join(lines)


def results_block(report: dict, history: list[dict]) -> str:
    steps, dt_ms = _window(report)
    mean = report["per_crop_mean"]
    rows = [("accuracy, 10-crop vote (paper's protocol)", _count(report, "vote")),
            ("accuracy, single centre crop", _count(report, "single")),
            ("NASAR (spikes / neurons / T)", f"{mean['nasar']:.5f}"),
            ("spikes per inference", f"{mean['spikes']:,.0f}"),
            ("SOPs / MACs per inference", f"{mean['sops']:,.0f} / {mean['macs'] + mean['attention_macs']:,.0f}"),  # MACs with attention
            (f"energy per inference ({mean['energy_preset']})", f"{mean['energy_uj']:.1f} µJ"),
            ("an ANN of the same shape, frame by frame", f"{mean['ann_energy_uj']:,.0f} µJ")]
    if mean.get("ree_vs_vanilla"):
        rows.append(("rEE against the vanilla model", f"{mean['ree_vs_vanilla']:.2f}"))
    rows.append(("latency per window (CPU)", f"{report['latency_ms_per_window']:.1f} ms"))
    names = report["class_names"] or [str(c) for c in range(len(report["per_class_accuracy"]))]
    per_class = ", ".join(f"{name} {100 * acc:.0f} %" for name, acc in zip(names, report["per_class_accuracy"])
                          if acc is not None)
    tested = [row["test_acc"] for row in history if row.get("test_acc") is not None]
    paper = (f"The paper's other figure, the best test accuracy over all epochs (random crop, the test split choosing "
             f"the epoch, so optimistic): {_percent(max(tested))}." if tested else
             "The paper's other figure, the best test accuracy over all epochs, was not computed: the test split "
             "chose nothing here.")
    both = (" Every crop was scored both ways, as recorded and played backwards, the two averaged (`masnn classify` does "
            "the same by default for this model): spikes, operations and energy count both passes, NASAR is one pass's."
            if report.get("both_ways") else "")
    return "\n".join([f"{report['samples']} samples, each scored on {report['crops']} crops of {steps * dt_ms:g} ms.{both}", "",
                      "| figure | value |", "|---|---|", *(f"| {a} | {b} |" for a, b in rows), "",
                      f"Per-class accuracy (voted): {per_class}", "", paper, *no_gesture_lines(report.get("no_gesture"))])


def no_gesture_lines(none: dict | None) -> list[str]:
    """The evaluation's stretches without a gesture, in words (nothing for a report without them)."""
    if not none:
        return []
    line = (f"Windows without a gesture (the unlabelled stretches between the split's gestures, {none['samples']} "
            f"of them, {none['crops']} crops): mean confidence {none['mean_confidence']:.2f}, against "
            f"{none['gesture_mean_confidence']:.2f} on the gesture crops")
    if none["threshold"] is None:
        return ["", line + "; no calibration file, so none is called uncertain."]
    named = ", ".join(f"{name} {count}" for name, count in none["named"].items()) or "none"
    return ["", line + f"; {_percent(none['uncertain'])} of them are uncertain under the calibrated threshold "
            f"{none['threshold']:.2f}, the others named: {named}."]


def comparison_block(report: dict, other: dict) -> str:
    """The attention model against the vanilla one, whichever of the two ``report`` is."""
    def vanilla(r):
        return not parse_attention(r["model"]["attention"])

    if vanilla(report) == vanilla(other):
        raise ValueError(f"{report['checkpoint']} and {other['checkpoint']}: a comparison needs one vanilla model "
                         "and one with attention")
    attn, base = (other, report) if vanilla(report) else (report, other)
    a, b = attn["per_crop_mean"], base["per_crop_mean"]
    name, base_name = (Path(r["checkpoint"]).stem for r in (attn, base))
    ree = f" (rEE {a['ree_vs_vanilla']:.2f}, from `masnn evaluate --vanilla`)" if a.get("ree_vs_vanilla") else ""
    rows = [("accuracy, 10-crop vote", _count(attn, "vote"), _count(base, "vote")),
            ("accuracy, single centre crop", _count(attn, "single"), _count(base, "single")),
            ("NASAR", f"{a['nasar']:.5f}", f"{b['nasar']:.5f} ({name}: {100 * (1 - a['nasar'] / b['nasar']):.1f} % lower)"),
            ("spikes per inference", f"{a['spikes']:,.0f}", f"{b['spikes']:,.0f}"),
            ("energy per inference", f"{a['energy_uj']:.1f} µJ", f"{b['energy_uj']:.1f} µJ{ree}")]
    return "\n".join([f"| | {name} | {base_name} |", "|---|---|---|", *(f"| {x} | {y} | {z} |" for x, y, z in rows)])


# a DVS128 Gesture recording named by its label, 1-based as the dataset numbers its classes: class04_... is class 4
_LABELLED_NAME = re.compile(r"class0*(\d+)")


def read_classify_reports(path: Path, sha256: str) -> list[dict]:
    """The `masnn classify --json` reports in ``path`` (one object, or JSON lines for several files), each made by
    the weights whose hash is ``sha256``."""
    text = path.read_text()
    try:
        try:
            reports = [json.loads(text)]
        except json.JSONDecodeError:  # several files: one report a line
            reports = [json.loads(line) for line in text.splitlines() if line.strip()]
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not `masnn classify --json` output ({e.msg}, line {e.lineno})") from None
    if not reports or not all(isinstance(r, dict) and "prediction" in r for r in reports):
        raise ValueError(f"{path}: not `masnn classify --json` output (no prediction in some line)")
    if any(r["model"].get("sha256") != sha256 for r in reports):
        raise ValueError(f"{path}: made by other weights than this card's (sha256 {sha256[:12]}...)")
    return reports


def real_block(reports: list[dict]) -> str:
    """What the model names each real recording; a recording named ``classNN_...`` is scored against class NN,
    its variants (`masnn classify --variants`) against the class each variant shows."""
    from masnn.variants import variant_label

    rows, named, labelled = [], 0, 0
    for report in reports:
        class_names = report["model"]["classes"]
        name, variant = Path(report["file"]).name, report.get("variant")
        found = _LABELLED_NAME.match(name)
        label = int(found.group(1)) - 1 if found and 0 < int(found.group(1)) <= len(class_names) else None
        if label is not None and variant is not None:
            label = variant_label(label, variant, class_names)
        truth = None if label is None else class_names[label]
        prediction = report["prediction"]
        ranks = {row["class"]: f"{i} ({row['probability']:.2f})" for i, row in enumerate(prediction["top_k"], start=1)}
        rank = "-" if truth is None else ranks.get(truth, f"> {len(ranks)}")
        right = truth is not None and prediction["class"] == truth
        labelled += truth is not None
        named += right
        answer = f"**{prediction['class']}**" if right else prediction["class"]
        rows.append(f"| `{name}`{'' if variant is None else f' ({variant})'} | {truth or '-'} | {answer} | {prediction['confidence']:.2f} | {rank} |")
    how = "whole clip, both ways" if reports and reports[0]["model"].get("both_ways") else "whole clip"
    kind, command = (("recordings and their variants", "`masnn classify --variants`") if any("variant" in r for r in reports)
                     else ("recordings", "`masnn classify`"))
    return "\n".join([f"Named correctly: {named} of {labelled} labelled {kind} ({command}, {how}).", "",
                      "| recording | class | named | confidence | rank of its class (probability) |",
                      "|---|---|---|---|---|", *rows])


def card_blocks(weights: Path, report: Path, metrics: Path | None = None, compare: Path | None = None,
                real: Path | None = None) -> dict[str, str]:
    """The figure blocks of the card of ``weights``, from its evaluation report, its run's metrics, the report of
    its counterpart and `masnn classify` on real recordings; ValueError naming the file that does not belong."""
    checkpoint = load_checkpoint(weights)
    result = read_report(report)
    if result["model"] != checkpoint["model_args"]:
        raise ValueError(f"{report}: a report on another model than {weights} ({result['model']})")
    history = run_history(checkpoint, metrics)
    sha256 = file_sha256(weights)
    blocks = {"model": model_block(weights, sha256, checkpoint, result), "training": training_block(checkpoint, history),
              "results": results_block(result, history)}
    if compare is not None:
        blocks["comparison"] = comparison_block(result, read_report(compare))
    if real is not None:
        blocks["real"] = real_block(read_classify_reports(real, sha256))
    return blocks


def _marked(name: str, body: str) -> str:
    return f"<!-- masnn card: {name} -->\n{body}\n<!-- /masnn card: {name} -->"


def skeleton(title: str, blocks: dict[str, str]) -> str:
    sections = [f"# {title}", blocks.get("model"), "## Data\n\nWhat it was trained and tested on; how the splits were made.",
                "## Reproduce\n\n```bash\n# the exact commands\n```",
                "## Against the vanilla SNN" if "comparison" in blocks else None, blocks.get("comparison"),
                "## Real recordings (`masnn classify`)" if "real" in blocks else None, blocks.get("real"),
                "## Training", blocks.get("training"), "## Results on the test split (`masnn evaluate`)", blocks.get("results"),
                "## Limits\n\nWhat this model was not tested on."]
    return "\n\n".join(s for s in sections if s is not None) + "\n"


def update_card(path: Path, blocks: dict[str, str]) -> None:
    """Rewrite the marked blocks of the card at ``path`` (or write a skeleton holding them); a card that lacks the
    markers of a block it is given raises ValueError, so no figure is silently left out."""
    blocks = {name: _marked(name, body) for name, body in blocks.items()}
    if not path.exists():
        text = skeleton(path.stem, blocks)
    else:
        text = path.read_text()
        for name, block in blocks.items():
            pattern = re.compile(rf"<!-- masnn card: {name} -->\n(.*?\n)?<!-- /masnn card: {name} -->", re.S)
            text, found = pattern.subn(lambda _: block, text)
            if not found:
                raise ValueError(f"{path}: no '<!-- masnn card: {name} -->' block to rewrite")
    with atomic_path(path) as temporary:
        temporary.write_text(text)
