"""scripts/results.py: trains the chosen models through their entry points and writes one JSON."""
import json
import subprocess
import sys

from scripts.results import main
from scripts.site_build import ROOT


def test_writes_a_json_the_results_page_can_render(tmp_path, monkeypatch):
    monkeypatch.setenv("NNOTT_SYNTH_SIZES", "300,100")
    out = tmp_path / "results-synth-digits.json"
    assert main(["--dataset", "synth-digits", "--data-dir", str(tmp_path / "data"), "--models", "mlp",
                 "--epochs", "1", "--out", str(out)]) == 0
    res = json.loads(out.read_text())
    assert res["dataset"] == "synth-digits" and res["epochs"] == 1 and len(res["class_names"]) == 10
    mlp = res["models"]["mlp"]
    assert mlp["tier"] == "vectorized" and mlp["params"] > 0 and 0.0 <= mlp["test_acc"] <= 1.0
    assert mlp["command"].startswith("python vectorized/main.py --dataset synth-digits") and str(tmp_path) not in mlp["command"]
    assert len(mlp["history"]["loss"]) == 1
    cm = mlp["confusion"]
    assert len(cm) == 10 and sum(map(sum, cm)) == 100                 # every test image counted once


def test_unknown_model_is_a_usage_error():
    done = subprocess.run([sys.executable, "scripts/results.py", "--models", "mlp,transformer"],
                          cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and "transformer" in done.stderr
