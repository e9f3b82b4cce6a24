"""Each toy task, trained with its recipe (vectorized/playground.py RECIPES), clears a stated bar.

The bars sit a few points under what the recipes reach (see the tutorial's toy page), so
they catch a broken pipeline, loss or recipe, not the noise of one seed.
"""
import pytest

#: task -> (score, bar): test accuracy for classification, test R^2 for regression
BARS = {"moons": ("acc", 0.95), "rings": ("acc", 0.98), "blobs": ("acc", 0.93), "xor": ("acc", 0.97),
        "spirals": ("acc", 0.95), "piecewise": ("r2", 0.97), "sine": ("r2", 0.95)}


@pytest.mark.parametrize("name", BARS)
def test_toy_task_clears_its_bar(name, tmp_path, capsys):
    from vectorized.experiment import run_experiment
    from vectorized.main import build_parser, model_builder
    from vectorized.playground import apply_recipe

    parser = build_parser()
    args = parser.parse_args(["--dataset", name, "--run-dir", str(tmp_path)])
    apply_recipe(parser, args)
    result = run_experiment(args, tier="vectorized", model_name="mlp", build_model=model_builder(args),
                            flatten_input=True, quiet=True)
    score, bar = BARS[name]
    value = result["test_acc"] if score == "acc" else result["test_r2"]
    assert value >= bar, f"{name}: test {score} {value:.4f} < {bar}"
    assert f"[toy] {name}:" in capsys.readouterr().out
