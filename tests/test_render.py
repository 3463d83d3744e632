"""`classify --render`: the annotated video (frames, size, timing, atomic write) and the attention capture it draws."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

import masnn.render as render_module
from masnn.classify import Classifier, ClassifyOptions, Window, classify_recording
from masnn.datasets.synth.generator import write_action_clip
from masnn.models.attention import capture_attention
from masnn.models.lif import charge, fire_and_reset
from masnn.models.networks import ma_snn_3layer_net
from masnn.render import SENSOR_BOX, SIZE, Renderer, prediction_texts, text_box
from masnn.video import gif_durations


@pytest.fixture(autouse=True)
def one_torch_thread():
    # windows are tiny; on a shared two-core machine a second torch thread turns 0.1 s forwards into seconds
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def classifier(untrained_checkpoint) -> Classifier:
    return Classifier.load(untrained_checkpoint, device="cpu")


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("render") / "clip.aedat4"
    write_action_clip(path, "air guitar", "dvs128", 0, 1.5, "lab")
    return path


def render(clip: Path, classifier: Classifier, out: Path, options: ClassifyOptions | None = None) -> tuple[Renderer, dict]:
    with Renderer(out, classifier, stride_bins=classifier.framing.n_frames // 2, recording=clip) as renderer:
        report = classify_recording(clip, classifier, options or ClassifyOptions(), on_window=renderer.add)
    return renderer, report


def bins_covered(report: dict, classifier: Classifier) -> int:
    """Bins from the first event to the end of the last window: each is one video frame."""
    return round(report["windows"][-1]["end_s"] * 1e6 / classifier.framing.dt_us)


def read_video(path: Path) -> tuple[list[np.ndarray], float]:
    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened()
    frames = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        frames.append(frame)
    fps = capture.get(cv2.CAP_PROP_FPS)
    capture.release()
    return frames, fps


def window_entry(classifier: Classifier, window: Window) -> dict:
    entry = classifier(window.frames)
    entry.update({"start_s": window.start_us / 1e6, "end_s": window.start_us / 1e6 + classifier.window_us / 1e6,
                  "padded": window.padded, "idle": False})
    return entry


def test_mp4_has_one_frame_per_bin_in_real_time(clip, classifier, tmp_path):
    out = tmp_path / "clip.mp4"
    renderer, report = render(clip, classifier, out)
    frames, fps = read_video(out)
    assert len(report["windows"]) >= 2  # overlapping windows: bins they share must appear once
    assert len(frames) == renderer.frames_written == bins_covered(report, classifier)
    assert frames[0].shape == (SIZE[1], SIZE[0], 3)
    assert fps == pytest.approx(1e6 / classifier.framing.dt_us, abs=0.01)
    assert np.mean(frames[len(frames) // 2]) > 10
    assert np.abs(frames[0].astype(int) - frames[-1].astype(int)).mean() > 1  # the video changes over time
    assert [p.name for p in tmp_path.iterdir()] == ["clip.mp4"]  # no temporary left behind


def test_mp4_is_h264_that_browsers_play(clip, classifier, tmp_path):
    import av

    out = tmp_path / "clip.mp4"
    renderer, report = render(clip, classifier, out)
    with av.open(str(out)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        assert (stream.width, stream.height) == SIZE and SIZE[0] % 2 == SIZE[1] % 2 == 0
        decoded = sum(1 for _ in container.decode(stream))
    assert decoded == renderer.frames_written == bins_covered(report, classifier)


def test_the_sensor_view_shows_the_recordings_events(clip, classifier, tmp_path):
    frames, _ = read_video(render(clip, classifier, tmp_path / "clip.mp4")[0].path)
    x0, y0, width, height = SENSOR_BOX
    sensor = np.stack([frame[y0 : y0 + height, x0 : x0 + width] for frame in frames])
    assert (sensor.max(3) > 100).any(axis=(1, 2)).mean() > 0.5  # events at full brightness in most frames


def test_sensor_panel_without_a_recording_says_so(classifier, tmp_path, monkeypatch):
    monkeypatch.setattr(render_module, "TEXT_LOG", [])
    frames = np.ones((classifier.framing.n_frames, 2, 32, 32), np.int16)
    with Renderer(tmp_path / "a.mp4", classifier) as renderer:
        renderer.add(Window(0, frames), window_entry(classifier, Window(0, frames)))
    assert any("no recording" in text for text, _ in render_module.TEXT_LOG)


def test_energy_is_in_microjoules_as_in_every_other_report(classifier, tmp_path, monkeypatch):
    monkeypatch.setattr(render_module, "TEXT_LOG", [])
    frames = np.ones((classifier.framing.n_frames, 2, 32, 32), np.int16)
    with Renderer(tmp_path / "a.mp4", classifier) as renderer:
        renderer.add(Window(0, frames), window_entry(classifier, Window(0, frames)))
    energy = [text for text, _ in render_module.TEXT_LOG if "NASAR" in text]
    assert energy and all(text.endswith(" µJ") for text in energy), energy  # OpenCV's Hershey font draws µ


def disjoint(a, b) -> bool:
    return a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


@pytest.mark.parametrize("name, probability", [("air guitar", 0.57), ("right arm counter-clockwise rotation", 1.0), ("W" * 40, 0.999)])
def test_no_text_overlaps_another(clip, classifier, tmp_path, monkeypatch, name, probability):
    steps, size = classifier.framing.n_frames, classifier.framing.size
    frames = np.random.default_rng(0).poisson(0.5, (steps, 2, size, size)).astype(np.int16)
    window = Window(0, frames)
    entry = window_entry(classifier, window)
    entry["top_k"][0].update({"class": name, "probability": probability})
    log = []
    monkeypatch.setattr(render_module, "TEXT_LOG", log)
    with Renderer(tmp_path / "a.mp4", classifier, stride_bins=10, recording=clip) as renderer:
        renderer.draw(renderer._view(window, entry), steps - 1)
        renderer.add(window, entry)  # a frame is needed for the renderer to end without error
    drawn = log[: len(log) // (steps + 1)]  # the first draw's texts
    assert any(text.endswith("%") for text, _ in drawn)
    for i, (text, box) in enumerate(drawn):
        assert 0 <= box[0] and box[2] <= SIZE[0] and 0 <= box[1] and box[3] <= SIZE[1], (text, box)
        for other, other_box in drawn[i + 1 :]:
            assert disjoint(box, other_box), (text, box, other, other_box)


def test_a_long_class_name_is_elided_before_its_percentage():
    width = 244
    name, percent = prediction_texts("right arm counter-clockwise rotation", 1.0, width)
    assert name.endswith("..") and percent == "100%"
    name_box = text_box(name, (0, 30), render_module.NAME_SCALE, 2)
    percent_x = width - (text_box(percent, (0, 30), render_module.PERCENT_SCALE, 2)[2])
    assert name_box[2] + render_module.PREDICTION_GAP <= percent_x


def test_gif_of_idle_windows_plays_in_real_time(clip, classifier, tmp_path):
    out = tmp_path / "clip.gif"
    renderer, report = render(clip, classifier, out, ClassifyOptions(min_events=10**9))
    assert all(w["idle"] for w in report["windows"])
    ok, animation = cv2.imreadanimation(str(out))
    assert ok
    assert len(animation.frames) == renderer.frames_written == bins_covered(report, classifier)
    assert animation.frames[0].shape == (SIZE[1], SIZE[0], 3)
    duration_ms = renderer.frames_written * classifier.framing.dt_us / 1000
    assert sum(int(d) for d in animation.durations) == pytest.approx(duration_ms, abs=10)


def test_gif_durations_keep_real_time_in_hundredths():
    durations = gif_durations(4, 45_000)
    assert set(durations) == {40, 50} and sum(durations) == 180


def test_each_bin_is_written_once_and_padding_is_not(classifier, tmp_path):
    steps, size = classifier.framing.n_frames, classifier.framing.size
    rng = np.random.default_rng(0)
    frames = rng.poisson(0.5, (steps, 2, size, size)).astype(np.int16)
    stride = 5
    with Renderer(tmp_path / "a.mp4", classifier, stride) as renderer:
        for start_bin in (0, stride):
            window = Window(start_bin * classifier.framing.dt_us, frames)
            renderer.add(window, window_entry(classifier, window))
    assert renderer.frames_written == steps + stride

    padded = frames.copy()
    padded[7:] = 0  # a recording of 7 bins, padded to a window
    with Renderer(tmp_path / "b.mp4", classifier) as renderer:
        window = Window(0, padded, padded=True)
        renderer.add(window, window_entry(classifier, window))
    assert renderer.frames_written == 7
    assert len(read_video(tmp_path / "b.mp4")[0]) == 7


def test_failed_render_leaves_no_file(classifier, tmp_path):
    frames = np.ones((classifier.framing.n_frames, 2, 32, 32), np.int16)
    with pytest.raises(RuntimeError, match="stopped"), Renderer(tmp_path / "a.mp4", classifier) as renderer:
        renderer.add(Window(0, frames), window_entry(classifier, Window(0, frames)))
        raise RuntimeError("stopped")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a.mp4", "a.gif"])
def test_a_render_without_frames_is_an_error_not_an_empty_file(classifier, tmp_path, name):
    with pytest.raises(ValueError, match="no frames"), Renderer(tmp_path / name, classifier):
        pass
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["out.avi", "out", "out.mp4.txt"])
def test_other_suffixes_are_refused_before_any_work(classifier, tmp_path, name):
    with pytest.raises(ValueError, match=r"must end in \.mp4 or \.gif"):
        Renderer(tmp_path / name, classifier)
    assert list(tmp_path.iterdir()) == []


def test_missing_folder_is_refused(classifier, tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        Renderer(tmp_path / "nowhere" / "a.mp4", classifier)


# ---------------------------------------------------------------------------------------------------------------
# capture_attention

def spikes_in(classifier: Classifier, seed: int = 0) -> torch.Tensor:
    steps, size = classifier.framing.n_frames, classifier.framing.size
    return torch.from_numpy(np.random.default_rng(seed).poisson(0.4, (steps, 1, 2, size, size))).float()


def no_patched_scores(model: torch.nn.Module) -> bool:
    return all("scores" not in vars(module) for module in model.modules())


def test_capture_reads_the_gates_without_changing_the_output(classifier):
    model, x = classifier.model, spikes_in(classifier)
    with torch.inference_mode():
        expected_rates, trace = model(x, record=True)
    capture = capture_attention(model, x, record=True)
    assert torch.equal(capture.output[0], expected_rates)
    assert no_patched_scores(model)

    # every layer of the paper placement: TA on the synaptic current, before the neuron
    with torch.inference_mode():
        for layer, layer_trace in zip(model.layers, trace.layers):
            current = layer.synapse(layer_trace.input.flatten(0, 1)).unflatten(0, layer_trace.input.shape[:2])
            np.testing.assert_allclose(capture.layers[layer.name]["ta"], layer.post.ta.scores(current)[:, 0].numpy(), rtol=1e-6)
    assert "sa" not in capture.layers["fc1"] and capture.layers["conv3"]["sa"].shape == (x.shape[0], 8, 8)


def test_capture_reads_sa_inside_the_neuron_step_by_step(classifier):
    model, x = classifier.model, spikes_in(classifier, 1)
    conv1 = model.layers[0]
    capture = capture_attention(model, x)
    with torch.inference_mode():  # the activate-pre recurrence, written out to see U before SA at each step
        current = conv1.post(conv1.synapse(x.flatten(0, 1)).unflatten(0, x.shape[:2]))
        h, maps = None, []
        for x_t in current:
            u = conv1.neuron.ca(charge(x_t, h))
            maps.append(conv1.neuron.sa.scores(u)[0, 0])
            _, h = fire_and_reset(maps[-1] * u, conv1.neuron.current_params)
    np.testing.assert_allclose(capture.layers["conv1"]["sa"], torch.stack(maps).numpy(), rtol=1e-5, atol=1e-6)


def test_capture_restores_the_model_after_an_error(classifier):
    model, x = classifier.model, spikes_in(classifier)
    with pytest.raises(ValueError, match="TA was built for"):
        capture_attention(model, x[:3])
    assert no_patched_scores(model)
    with torch.inference_mode():
        assert torch.equal(model(x), capture_attention(model, x).output)


@pytest.mark.parametrize("attention, placement, keys", [
    ("none", "paper", set()),
    ("S", "conv-post", {"sa"}),
    ("TS", "paper", {"ta", "sa"}),
    ("TCS", "reference-code", {"ta", "sa"}),  # one SA map per sample, repeated over T
])
def test_capture_has_one_entry_per_gate_the_model_has(attention, placement, keys):
    torch.manual_seed(0)
    model = ma_snn_3layer_net(num_classes=3, input_size=8, T=5, attention=attention, placement=placement).eval()
    x = (torch.rand(5, 2, 2, 8, 8) < 0.3).float()
    capture = capture_attention(model, x)
    conv = {name: gates for name, gates in capture.layers.items() if name.startswith("conv")}
    assert {name: set(gates) for name, gates in conv.items()} == ({f"conv{i}": keys for i in (1, 2, 3)} if keys else {})
    if "sa" in keys:
        assert capture.layers["conv2"]["sa"].shape == (5, 4, 4)
    with torch.inference_mode():
        assert torch.equal(capture.output, model(x[:, :1]))


def test_capture_puts_pruned_steps_at_their_time_with_weight_zero():
    torch.manual_seed(0)
    model = ma_snn_3layer_net(num_classes=3, input_size=8, T=6, input_attention=True, prune_threshold=0.5).eval()
    x = (torch.rand(6, 1, 2, 8, 8) < 0.3).float()
    with torch.inference_mode():
        kept = model.select_frames(x)[:, 0].numpy()
    assert 0 < kept.sum() < 6  # this seed drops some frames and keeps some
    capture = capture_attention(model, x)
    assert capture.layers["input"]["ta"].shape == (6,)  # the scores that chose the frames: every step has one
    for name in ("conv1", "fc2"):
        ta = capture.layers[name]["ta"]
        assert ta.shape == (6,) and np.all(ta[~kept] == 0) and np.all(ta[kept] > 0)
    assert capture.layers["conv1"]["sa"].shape == (6, 8, 8) and np.all(capture.layers["conv1"]["sa"][~kept] == 0)
