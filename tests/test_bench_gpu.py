"""`masnn bench gpu` on the CPU: every comparison against independent references and deliberately wrong values, the
skip paths, the report, and one whole run of the "cpu" plan (Triton under its interpreter in a child process,
gloo for the distributed step)."""
import dataclasses
import importlib.util
import json
import math
import time

import pytest
import torch

from masnn.bench import gpu, gpu_dist, gpu_lif, gpu_model
from masnn.bench.gpu import PLANS, CheckResult, Context, run_checks, run_group
from masnn.bench.gpu_report import report_table, verdict
from masnn.models.lif import BACKENDS, LIFParams, lif_multistep
from masnn.models.lif.triton_kernel import interpreting

HAS_TRITON = importlib.util.find_spec("triton") is not None
CPU = torch.device("cpu")
PLAN = PLANS["cpu"]


def context(tmp_path, plan=PLAN, budget_s=60.0) -> Context:
    return Context(plan, CPU, tmp_path, time.monotonic() + budget_s)


# ---------------------------------------------------------------------------------------------- LIF parity
P = LIFParams(decay=0.6, threshold=0.5, v_reset=-0.2, reset="soft", surrogate="sigmoid")
fused = BACKENDS["fused"]


def runs(size=2000, dtype=torch.float32):
    """(fused run, reference run): the fused CPU path is an implementation independent of the reference loop."""
    x, h, w = gpu_lif.make_inputs(size, dtype, CPU)
    return gpu_lif.run_lif(fused, P, x, h, w), gpu_lif.reference_run(P, x, h, w)


def test_shapes_of_sizes():
    assert gpu_lif.shape_of(1000) == (4, 250)
    assert gpu_lif.shape_of(10**8) == (60, 1_666_667)
    for size in (10**3, 10**5, 10**7):
        steps, n = gpu_lif.shape_of(size)
        assert 0 <= steps * n - size < steps


def test_compare_lif_passes_an_independent_implementation_and_catches_wrong_values():
    ours, ref = runs()
    tol = gpu_lif.TOLERANCES["float32"]
    ok, figures, why = gpu_lif.compare_lif(ours, ref, tol)
    assert ok and why == "" and figures["spikes_differ"] == 0 and 0 < figures["spike_rate"] < 1

    flipped = dataclasses.replace(ours, spikes=ours.spikes.clone())
    flipped.spikes.view(-1)[17] = 1 - flipped.spikes.view(-1)[17]
    ok, figures, why = gpu_lif.compare_lif(flipped, ref, tol)
    assert not ok and figures["spikes_differ"] == 1 and "1 of" in why

    for error, expected in ((1e-4, False), (1e-7, True)):
        nudged = dataclasses.replace(ours, grad_x=ours.grad_x.clone())
        nudged.grad_x.view(-1)[5] += error
        ok, figures, why = gpu_lif.compare_lif(nudged, ref, tol)
        assert ok is expected, why
        assert figures["grads_beyond_tolerance"] == (0 if expected else 1)

    wrong_h = dataclasses.replace(ours, grad_h=ours.grad_h * 1.001)
    assert "dL/dh" in gpu_lif.compare_lif(wrong_h, ref, tol)[2]
    assert "no gradient for x" in gpu_lif.compare_lif(dataclasses.replace(ours, grad_x=None), ref, tol)[2]
    silent = gpu_lif.LIFRun(torch.zeros_like(ref.spikes), torch.zeros_like(ref.grad_x), torch.zeros_like(ref.grad_h))
    ok, _, why = gpu_lif.compare_lif(silent, silent, tol)
    assert not ok and "means nothing" in why


class _ScaledGradient(torch.autograd.Function):
    """The identity forward; the backward scales the gradient: a kernel whose forward is right and backward wrong."""

    @staticmethod
    def forward(ctx, x, scale):
        ctx.scale = scale
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad):
        return grad * ctx.scale, None


def wrong_backward(scale):
    return lambda x, p, h: lif_multistep(_ScaledGradient.apply(x, scale), p, h)


@pytest.mark.parametrize("kernel,passed,because", [
    (fused, True, ""),
    (lambda x, p, h: lif_multistep(x, dataclasses.replace(p, decay=p.decay * 1.01), h), False, "spikes differ"),
    (wrong_backward(1 + 1e-4), False, "beyond tolerance"),
    (lambda x, p, h: lif_multistep(x, p, None), False, "spikes differ"),  # drops the initial state
    (lambda x, p, h: lif_multistep(x, p, h.detach()), False, "no gradient for h"),
])
def test_lif_case_catches_a_wrong_kernel(kernel, passed, because):
    result = gpu_lif.check_lif_case(kernel, "float32", P, (1000, 4000), CPU)
    assert result.passed is passed and result.status == ("pass" if passed else "FAIL")
    assert because in result.detail
    assert [row["size"] for row in result.figures["sizes"]] == [1000, 4000]


def half_kernel(grad_scale=1.0):
    """Computes in float32 on the half input's values and rounds the spikes to half, as the Triton kernel does; its
    gradient comes back through the rounding to half (within half a unit in the last place), scaled."""
    def run(x, p, h):
        return lif_multistep(_ScaledGradient.apply(x, grad_scale).float(), p, h.float()).to(x.dtype)
    return run


@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_half_tolerance_is_the_rounding_and_no_more(dtype):
    ulp = {"bfloat16": 2**-7, "float16": 2**-10}[dtype]
    assert gpu_lif.check_lif_case(half_kernel(), dtype, P, (2000,), CPU).passed
    wrong = gpu_lif.check_lif_case(half_kernel(1 + 3 * ulp), dtype, P, (2000,), CPU)
    assert not wrong.passed and "beyond tolerance" in wrong.detail


def test_lif_case_out_of_time_is_skipped():
    result = gpu_lif.check_lif_case(fused, "float32", P, (1000,), CPU, deadline=time.monotonic() - 1)
    assert result.status == "skip" and "budget" in result.skipped


def test_lif_cases_cover_every_reset_and_surrogate_in_every_dtype():
    cases = gpu_lif.lif_cases(PLANS["full"])
    for dtype in gpu_lif.DTYPES:
        chosen = [p for d, p, _ in cases if d == dtype]
        assert {p.reset for p in chosen} == {"hard", "soft", "threshold"}
        assert {p.surrogate for p in chosen} == {"rectangular", "sigmoid", "atan"}
    fp32 = [(p.reset, p.surrogate, p.detach_reset) for d, p, _ in cases if d == "float32"]
    assert len(set(fp32)) == 12 and any(detach for *_, detach in fp32)
    assert max(max(sizes) for *_, sizes in cases) == 10**8 and min(min(sizes) for *_, sizes in cases) == 10**3


def test_auto_backend_check():
    result = gpu_lif.check_auto_backend(CPU, has_triton=True)
    assert result.passed and result.figures == {"here": "fused", "cuda": "triton"}
    wrong = gpu_lif.check_auto_backend(CPU, select=lambda x, requested: "reference", has_triton=True)
    assert not wrong.passed and "'reference'" in wrong.detail
    assert "not installed" in gpu_lif.check_auto_backend(CPU, has_triton=False).detail


def test_lif_group_outside_the_interpreter_is_skipped_with_the_reason(tmp_path):
    if interpreting():
        pytest.skip("this process runs under the interpreter")
    results = gpu_lif.lif_group(context(tmp_path))
    assert results[0].name == "auto backend"
    assert results[1].status == "skip" and ("TRITON_INTERPRET=1" in results[1].skipped or "not installed" in results[1].skipped)


# ---------------------------------------------------------------------------------------------- bandwidth, SpikingJelly
def test_lif_bytes_by_hand():
    assert gpu_lif.lif_bytes(10, 100, torch.float32, "forward") == 10 * 100 * 12  # X, S, U
    assert gpu_lif.lif_bytes(10, 100, torch.float32, "inference") == 10 * 100 * 8  # X, S
    assert gpu_lif.lif_bytes(10, 100, torch.bfloat16, "backward") == 10 * 100 * (4 + 2 + 2)  # U fp32, dS, dX


def test_bandwidth_fractions():
    phases = {"forward": {"seconds": 1e-3, "bytes": 2e9, "bytes_per_s": 2e12}}
    results = gpu_lif.bandwidth_results(4e12, {"float32": phases}, 2**30)
    assert results[0].figures["bytes_per_s"] == 4e12 and "4000 GB/s" in results[0].summary
    assert results[1].figures["forward"]["fraction_of_copy"] == 0.5 and "(0.50)" in results[1].summary
    assert all(r.passed is None for r in results)  # measurements, not checks
    assert gpu_lif.copy_bandwidth(2**20, CPU, 1) > 0


def test_spikingjelly_comparison_with_a_stand_in(tmp_path):
    reference = lambda p, device: (lambda x: lif_multistep(x, p), "reference loop")  # noqa: E731
    result = gpu_lif.check_spikingjelly(context(tmp_path), factory=reference, ours=fused)
    assert result.status == "info" and result.figures["spike_agreement"] == 1.0
    assert result.figures["speedup"] == pytest.approx(result.figures["theirs_s"] / result.figures["ours_s"])
    missing = gpu_lif.check_spikingjelly(context(tmp_path), factory=lambda p, device: (None, "not here"))
    assert missing.status == "skip" and missing.skipped == "not here"
    assert gpu_lif.spikingjelly_cuda(LIFParams(), CPU) == (None, "SpikingJelly's CUDA LIF needs a CUDA device")


# ---------------------------------------------------------------------------------------------- training, inference
def test_compare_losses():
    assert gpu_model.compare_losses([0.1, 0.09], [0.101, 0.0895])[0]
    ok, figures, why = gpu_model.compare_losses([0.1, 0.09], [0.1, 0.1])
    assert not ok and "11.1%" in why and figures["relative_differences"][1] == pytest.approx(1 / 9)
    assert "not finite" in gpu_model.compare_losses([0.1], [math.nan])[2]
    assert "epochs" in gpu_model.compare_losses([0.1, 0.1], [0.1])[2]


def test_compare_predictions():
    torch.manual_seed(0)
    ref = torch.rand(32, 11)
    assert gpu_model.compare_predictions(ref.clone(), ref)[0]
    three_off, four_off = ref.clone(), ref.clone()
    three_off[:3] = three_off[:3].roll(1, dims=1)
    four_off[:4] = four_off[:4].roll(1, dims=1)
    assert gpu_model.compare_predictions(three_off, ref)[0]  # at most 3 in 32
    ok, figures, why = gpu_model.compare_predictions(four_off, ref)
    assert not ok and figures["differing"] == 4 and "4 of 32" in why
    silent = torch.zeros(32, 11)
    assert "silent" in gpu_model.compare_predictions(silent, silent)[2]


def test_loader_verdict():
    assert gpu_model.loader_verdict(300.0, 100.0).startswith("keeps the model busy (3.0x")
    assert gpu_model.loader_verdict(50.0, 100.0).startswith("the bottleneck: 0.50x")
    assert "did not run" in gpu_model.loader_verdict(50.0, None)


# ---------------------------------------------------------------------------------------------- distributed
def weights(seed=0):
    g = torch.Generator().manual_seed(seed)
    return {"conv.weight": torch.randn(64, 9, generator=g), "bn.running_mean": torch.randn(8, generator=g),
            "bn.num_batches_tracked": torch.tensor(2)}


def test_compare_runs():
    one = {"losses": [0.1, 0.09], "state": weights()}
    assert gpu_dist.compare_runs(one, {"losses": [0.1, 0.09], "state": weights()})[0]
    assert "losses differ" in gpu_dist.compare_runs(one, {"losses": [0.1, 0.095], "state": weights()})[2]
    stats = weights()
    stats["bn.running_mean"] *= 1.01
    assert "running statistics" in gpu_dist.compare_runs(one, {"losses": [0.1, 0.09], "state": stats})[2]
    moved = weights()
    moved["conv.weight"][:2] += 10 * gpu_dist.LR
    assert "weights moved differently" in gpu_dist.compare_runs(one, {"losses": [0.1, 0.09], "state": moved})[2]
    assert "missing" in gpu_dist.compare_runs(one, {"losses": [0.1, 0.09], "state": {}})[2]


def test_distributed_is_skipped_with_one_gpu_or_none(tmp_path, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    ctx = Context(PLAN, torch.device("cuda", 0), tmp_path, time.monotonic() + 60)
    (result,) = gpu_dist.distributed_group(ctx)
    assert result.status == "skip" and "1 GPU here" in result.skipped
    no_cpu_run = dataclasses.replace(PLAN, cpu_distributed=False)
    assert gpu_dist.distributed_group(context(tmp_path, no_cpu_run))[0].status == "skip"


# ---------------------------------------------------------------------------------------------- runner, report
def test_run_group_turns_a_crash_into_a_failed_check_and_respects_the_budget(tmp_path):
    def broken(ctx):
        raise RuntimeError("CUDA error: an illegal memory access was encountered")

    (result,) = run_group("training", context(tmp_path), {"training": broken})
    assert result.status == "FAIL" and "illegal memory access" in result.detail
    assert "in broken" in result.figures["traceback"]  # where it broke, for the first run on a GPU
    (late,) = run_group("training", context(tmp_path, budget_s=-1), {"training": broken})
    assert late.status == "skip" and "budget" in late.skipped


def test_interpreter_child_failure_and_missing_triton(tmp_path, monkeypatch):
    bogus = dataclasses.replace(PLAN, name="no-such-plan")
    (failed,) = gpu._triton_groups_in_interpreter(["lif"], context(tmp_path, bogus))
    assert failed.status == "FAIL" and "no-such-plan" in failed.detail
    monkeypatch.setattr("masnn.models.lif.triton_kernel.HAS_TRITON", False)
    results = gpu._triton_groups_in_interpreter(["lif", "bandwidth"], context(tmp_path))
    assert [r.status for r in results] == ["skip", "skip"] and "not installed" in results[0].skipped


def test_resolve_device(monkeypatch):
    assert gpu.resolve_device("cpu") == CPU
    with pytest.raises(ValueError, match="--device"):
        gpu.resolve_device("tpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.resolve_device("auto") is None and gpu.resolve_device("cuda:1") is None


@pytest.fixture(scope="module")
def cpu_run():
    """One whole run of the "cpu" plan: every group, the Triton ones in the interpreter's child process."""
    started = time.monotonic()
    results = run_checks(PLAN, CPU, budget_s=300)
    return results, time.monotonic() - started


EXPECTED = ["environment", "auto backend", *[gpu_lif.case_name(d, p) for d, p, _ in gpu_lif.lif_cases(PLAN)],
            "copy bandwidth", "lif bandwidth float32", "lif bandwidth bfloat16", "spikingjelly", "train fp32",
            "train bf16", "train bf16 vs fp32", "loader, 0 workers", "inference latency", "inference throughput",
            "inference vs CPU copy", "classify, shipped model", "torchrun vs one process"]


def test_the_cpu_plan_runs_every_check_and_passes(cpu_run):
    results, elapsed = cpu_run
    by_name = {r.name: r for r in results}
    assert list(by_name) == EXPECTED
    assert not gpu.failures(results), [(r.name, r.detail) for r in gpu.failures(results)]
    for name in ("train bf16 vs fp32", "inference vs CPU copy", "torchrun vs one process"):
        assert by_name[name].status == "pass"
    lif = [r for r in results if r.name.startswith("lif ") and r.group == "lif"]
    if HAS_TRITON:  # the kernels ran (in the interpreter), bf16 and fp16 among them
        assert all(r.status == "pass" for r in lif)
        assert by_name["lif bandwidth float32"].figures["forward"]["bytes"] > 0
    else:
        assert all(r.status == "skip" for r in lif)
    assert by_name["spikingjelly"].status == "skip" and "CUDA" in by_name["spikingjelly"].skipped
    assert by_name["inference vs CPU copy"].figures["active_samples"] >= 0.5  # the comparison meant something
    assert by_name["torchrun vs one process"].figures["backend"] == "gloo"
    assert by_name["loader, 0 workers"].figures["model_samples_per_s"] == by_name["train fp32"].figures["samples_per_s"]


def test_report_json_table_and_verdict(cpu_run, tmp_path):
    results, elapsed = cpu_run
    report = gpu.report_dict(results, PLAN, elapsed)
    path = tmp_path / "out" / "gpu.json"
    gpu.write_report(path, report)
    loaded = json.loads(path.read_text())
    assert loaded["passed"] is True and loaded["failed"] == [] and loaded["plan"]["name"] == "cpu"
    assert [CheckResult.from_dict(c) for c in loaded["checks"]] == results
    assert list(path.parent.iterdir()) == [path]  # no temporary left beside it
    table = report_table(results, "t")
    assert table.row_count == len(results)
    failed = results + [CheckResult("lif float32 hard/atan (planted)", "lif", False, "3 spikes differ")]
    assert verdict(failed, 12.0).startswith("FAILED: lif float32 hard/atan (planted) (")
    assert "passed every check" in verdict(results, 12.0, "the GPU path")


# ---------------------------------------------------------------------------------------------- the command
def run_main(capsys, *args):
    from masnn.cli import main

    with pytest.raises(SystemExit) as ended:
        main([str(a) for a in args])
    out = capsys.readouterr()
    return ended.value.code, out.out, out.err


@pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA device is present")
def test_command_without_cuda_says_so_in_one_line(capsys):
    code, out, err = run_main(capsys, "bench", "gpu")
    assert code == 0 and out.strip() == gpu.NO_CUDA and err == ""


def test_command_json_out_and_exit_codes(capsys, tmp_path, monkeypatch):
    out_file = tmp_path / "report.json"
    code, out, err = run_main(capsys, "bench", "gpu", "--device", "cpu", "--only", "inference", "--json", "--out", out_file)
    assert code == 0, err
    assert json.loads(out) == json.loads(out_file.read_text())
    assert [c["name"] for c in json.loads(out)["checks"]][1:] == EXPECTED[-5:-1]
    assert "pass inference vs CPU copy" in err  # progress on stderr

    def planted(ctx):
        return [CheckResult("planted", "training", False, "wrong on purpose", detail="wrong on purpose")]

    functions = {**gpu._group_functions(), "training": planted}
    monkeypatch.setattr(gpu, "_group_functions", lambda: functions)
    code, out, _ = run_main(capsys, "bench", "gpu", "--device", "cpu", "--only", "training")
    assert code == 1 and "FAILED: planted" in " ".join(out.split())
    code, _, err = run_main(capsys, "bench", "gpu", "--only", "lif,nope")
    assert code == 2 and err.strip() == ("error: --only: unknown group(s) nope; choose from lif, bandwidth, "
                                         "spikingjelly, training, loader, inference, distributed")
