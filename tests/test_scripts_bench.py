"""Smoke tests of scripts/benchmark.py and scripts/test_cupy.py (run as a user would, from another directory)."""
import json
import math
import subprocess
import sys
from importlib.util import find_spec
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
BENCH = ROOT / "scripts" / "benchmark.py"
HAVE_TORCH = find_spec("torch") is not None


def run(args, cwd, timeout=300):
    return subprocess.run([sys.executable, *map(str, args)], cwd=cwd, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.mark.slow
def test_quick_benchmark_writes_wellformed_json(tmp_path):
    out = tmp_path / "bench.json"
    proc = run([BENCH, "--models", "mlp,lenet", "--quick", "--steps", "2", "--repeats", "1",
                "--warmup", "1", "--json", out], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    report = json.loads(out.read_text())
    assert report["batch_size"] == 64 and report["threads"] >= 1
    assert report["machine"]["cpu"] and report["machine"]["numpy"]
    assert report["gemm"]["gflops"] > 0
    by_name = {m["model"]: m for m in report["models"]}
    assert set(by_name) == {"mlp", "lenet"}
    mlp = by_name["mlp"]
    assert mlp["params"] == 784 * 256 + 256 + 256 * 128 + 128 + 128 * 64 + 64 + 64 * 10 + 10
    assert mlp["flops_fwd"] == 2 * (784 * 256 + 256 * 128 + 128 * 64 + 64 * 10)
    for m in by_name.values():
        ours = m["ours"]
        assert "error" not in ours, ours
        assert ours["train_ips"] > 0 and ours["infer_ips"] > 0 and ours["peak_rss_mb"] > 0
        assert ours["loss_finite"]
        assert ours["parallelism"] == "blas"  # both are small models at batch 64 (engine.tuning.SMALL_MODEL_FLOPS)
        assert m["flops_train"] == 3 * m["flops_fwd"]
        if HAVE_TORCH:
            torch_side = m["torch"]
            assert "error" not in torch_side, torch_side
            assert torch_side["parity_rel_diff"] < 1e-4           # the same weights give the same logits
            assert torch_side["torch_flops_fwd"] == m["flops_fwd"]  # our FLOP count equals torch's counter
            for mode in ("train", "infer"):
                r = m[f"ratio_{mode}"]
                assert r["min"] <= r["median"] <= r["max"] and len(r["per_repeat"]) == 1
                assert math.isclose(r["median"], ours[f"{mode}_ips"] / torch_side[f"{mode}_ips"], rel_tol=1e-9)
    assert "mlp" in proc.stdout and "lenet" in proc.stdout         # the printed table

    sys.path.insert(0, str(ROOT))
    from scripts.bench.report import render

    page = render(out)
    assert "| mlp |" in page and "MNIST" in page and "CIFAR-10" not in page


def test_parallelism_flag_reaches_our_worker(tmp_path):
    out = tmp_path / "bench.json"
    proc = run([BENCH, "--models", "lenet", "--quick", "--no-torch", "--parallelism", "blocks", "--json", out],
               cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    ours = json.loads(out.read_text())["models"][0]["ours"]
    assert ours["parallelism"] == "blocks" and ours["train_ips"] > 0
    bad = run([BENCH, "--parallelism", "fast"], cwd=tmp_path)
    assert bad.returncode == 2 and "invalid choice" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.parametrize("parallelism", ["auto", "blocks", "blas"])
def test_profile_layers_runs_with_each_parallelism(tmp_path, parallelism):
    proc = run([ROOT / "scripts" / "profile_layers.py", "lenet", "--steps", "1", "--warmup", "0",
                "--parallelism", parallelism, "--by", "type"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    expected = "blas" if parallelism == "auto" else parallelism  # LeNet-5 at batch 64 is a small model
    assert f"parallelism '{expected}'" in proc.stdout and "| Conv2D |" in proc.stdout


def test_unknown_model_is_one_line_error(tmp_path):
    proc = run([BENCH, "--models", "mlp,nosuchnet"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    expected = ("error: unknown model 'nosuchnet'; choose from mlp, scalar, lenet, baseline, baseline_gap, alexnet, "
                "resnet18, vgg16, efficientnet_lite0, convnext_tiny or all")
    assert proc.stderr.strip().splitlines() == [expected]


def test_torch_required_but_missing(monkeypatch):
    sys.path.insert(0, str(ROOT))
    from scripts import benchmark

    monkeypatch.setattr(benchmark, "find_spec", lambda name: None)
    assert benchmark.main(["--models", "mlp", "--torch"]) == 2


@pytest.mark.skipif(find_spec("cupy") is not None, reason="CuPy is installed")
def test_gpu_flags_without_cupy_exit_2(tmp_path):
    proc = run([BENCH, "--gpu", "--models", "mlp"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "CuPy" in proc.stderr

    proc = run([ROOT / "scripts" / "test_cupy.py"], cwd=tmp_path, timeout=60)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr + proc.stdout
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("no GPU to test:")


def test_busy_machine_warning_ignores_the_benchmarks_own_load():
    from scripts.bench.report import other_load
    report = {"threads": 2, "machine": {"load_average_at_start": [0.3, 0.2, 0.1],
                                        "load_average_at_end": [2.1, 1.5, 0.9], "usable_cores": 2}}
    assert other_load(report) == pytest.approx(0.3)   # the 2.1 at the end is the benchmark itself
    report["machine"]["load_average_at_end"] = [5.0, 4.0, 3.0]
    assert other_load(report) == pytest.approx(3.0)   # three cores' worth of someone else's work
    report["machine"]["load_average_at_start"] = [6.5, 6.0, 6.0]
    assert other_load(report) == pytest.approx(6.5)


def test_profile_layers_ab_alternates_and_restores_the_setting():
    """--ab: the steps alternate A B B A ... and the setting is put back afterwards."""
    sys.path.insert(0, str(ROOT))
    import types

    import numpy as np

    from scripts import profile_layers

    model, _flat = profile_layers.build("mlp", (1, 4, 4), 3, "auto")
    knob = types.SimpleNamespace(__name__="knob", VALUE="before")
    seen = []
    forward = model.forward
    model.forward = lambda x: (seen.append(knob.VALUE), forward(x))[1]
    x = np.random.default_rng(0).standard_normal((8, 16)).astype(np.float32)
    y = np.arange(8) % 3
    a_times, b_times = profile_layers.ab_steps(model, x, y, [(knob, "VALUE", "a", "b")], steps=3, warmup=1)
    assert seen == ["a", "b", "b", "a", "a", "b", "b", "a"]
    assert len(a_times) == len(b_times) == 3 and min(a_times + b_times) > 0
    assert knob.VALUE == "before"


def test_profile_layers_ab_command_and_its_errors(tmp_path):
    script = ROOT / "scripts" / "profile_layers.py"
    out = tmp_path / "ab.json"
    proc = run([script, "lenet", "--steps", "2", "--warmup", "0", "--json", out,
                "--ab", "engine.tuning.CONV_BLOCK_BYTES=2**22,2**21"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "B faster in" in proc.stdout
    report = json.loads(out.read_text())
    assert report["settings"] == [{"name": "engine.tuning.CONV_BLOCK_BYTES", "a": 2**22, "b": 2**21}]
    assert report["pairs"] == 2 and len(report["a_steps_ms"]) == 2 and report["a_ms"] > 0
    for bad, message in [("nosuch.module.X=1,2", "no module 'nosuch.module'"),
                         ("engine.tuning.NOPE=1,2", "has no setting 'NOPE'"),
                         ("engine.tuning.CONV_BLOCK_BYTES=1", "must be MODULE.NAME=A,B"),
                         ("engine.tuning.CONV_BLOCK_BYTES=big,2", "Python literals"),
                         ("engine.tuning.BAND_MAX_RUN=32,'x'", "a training step failed")]:
        proc = run([script, "lenet", "--ab", bad], cwd=tmp_path, timeout=60)
        assert proc.returncode == 2 and message in proc.stderr, proc.stderr
        assert "Traceback" not in proc.stderr
