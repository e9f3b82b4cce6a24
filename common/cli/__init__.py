"""Command-line helpers shared by every entry point: one definition of each flag.

Five files, one concern each:

- :mod:`common.cli.types`: argument types (``positive_int``, ``float_range``, comma lists);
- :mod:`common.cli.flags`: the flag groups a launcher assembles (``add_data_args``, ...);
- :mod:`common.cli.rundir`: run folders and the one-line run header;
- :mod:`common.cli.entry`: the entry wrapper (exit codes, Ctrl-C, resume command);
- :mod:`common.cli.preflight`: checks of flag combinations and output paths made before anything
  is loaded or written (``check_run_flags``; imported from there, not re-exported here).

A launcher builds its parser from argument groups and runs through :func:`run_main`::

    parser = make_parser("Train an MLP.", ["python vectorized/main.py --epochs 3"])
    add_data_args(parser)
    add_training_args(parser, epochs=10, batch_size=128)
    ...
    if __name__ == "__main__":
        sys.exit(run_main(main))

Entry points run as a file path (``python convolutional/main.py``) from any folder. Python
then puts the tier folder, not the repository root, on ``sys.path``, so ``import common``
fails until the root is added. ``common`` cannot do that for you before it is importable,
so each entry point starts with two lines::

    import sys, pathlib
    sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))  # repo root

(:func:`bootstrap_repo_path` does the same for files deeper in the tree.)
"""
from common.cli.entry import (TrainingInterrupted, bootstrap_repo_path, resume_command, run_main,
                              save_on_interrupt)
from common.cli.flags import (DEFAULT_DATASET, OPTIMIZERS, SCHEDULES, ArgumentParser, HelpFormatter,
                              add_augment_args, add_checkpoint_args, add_data_args, add_device_args,
                              add_distributed_args,
                              add_experiment_args, add_mlp_args, add_optimizer_args, add_output_args,
                              add_schedule_args, add_training_args, augment_overrides, dataset_is_explicit,
                              dataset_name, make_parser, mlp_layers)
from common.cli.flags import add_toy_args, apply_toy_recipe
from common.cli.rundir import RunDir, run_header
from common.cli.types import (MAX_SEED, broadcast_list, float_list_or_none, float_range, hidden_size_list,
                              increasing_int_list,
                              int_list, name_list, nonneg_float, nonneg_int, positive_float, positive_int,
                              positive_int_list, probability, seed_value, shape3)

__all__ = [
    "TrainingInterrupted", "bootstrap_repo_path", "resume_command", "run_main", "save_on_interrupt",
    "DEFAULT_DATASET", "OPTIMIZERS", "SCHEDULES", "ArgumentParser", "HelpFormatter", "add_augment_args",
    "add_checkpoint_args", "add_data_args", "add_device_args", "add_distributed_args", "add_experiment_args", "add_mlp_args",
    "add_optimizer_args", "add_output_args", "add_schedule_args", "add_training_args", "augment_overrides",
    "dataset_is_explicit", "dataset_name", "make_parser", "mlp_layers", "RunDir", "run_header", "MAX_SEED",
    "broadcast_list", "float_list_or_none", "float_range", "hidden_size_list", "increasing_int_list", "int_list", "name_list",
    "nonneg_float", "nonneg_int", "positive_float", "positive_int", "positive_int_list", "probability",
    "seed_value", "shape3",
    "add_toy_args", "apply_toy_recipe",
]
