"""One experiment, from parsed flags to a trained, evaluated, saved model.

``vectorized/main.py``, ``convolutional/main.py`` and the quickstarts all run through
:func:`run_experiment`, so a flag means the same thing everywhere and the pipeline (data,
normalization, optimizer, schedule, augmentation, checkpoints, plots, reports) exists once.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from common import backend, dispatch, metrics, plots
from common.augment import AugmentConfig, Augmenter
from common.checkpoint import check_compatible, check_tier, library_version, load_checkpoint, save_checkpoint
from common.cli import RunDir, augment_overrides, run_header
from common.cli.preflight import check_run_flags
from common.config import config_values, save_run_config
from common.data import Normalizer, load_run_data
from common.data.shards import check_divisible
from common.errors import UserError
from common.guard import refuse_non_finite
from common.seed import seed_everything
from vectorized import data_parallel
from common.tensorboard import logger_for
from common.tracking import save_predictions
from vectorized import playground
from vectorized.losses import CrossEntropyLoss
from vectorized.optim import Lookahead, make_optimizer
from common.run_cost import CostEstimate, cost_line
from vectorized.schedules import make_schedule
from vectorized.sync_bn import convert_sync_batchnorm
from vectorized.trainer import EarlyStopping, Trainer


def build_optimizer(args, model):
    """The optimizer the flags describe, wrapped in Lookahead when asked."""
    opt = make_optimizer(args.optimizer, model.parameters(), args.lr, momentum=args.momentum,
                         weight_decay=args.weight_decay)
    if getattr(args, "lookahead", False):
        opt = Lookahead(opt, k=args.lookahead_k, alpha=args.lookahead_alpha)
    return opt


def build_schedule(args, optimizer, steps_per_epoch):
    return make_schedule(args.lr_schedule, optimizer, args.epochs, steps_per_epoch,
                         step_size=args.step_size, milestones=args.milestones, gamma=args.gamma,
                         min_lr=args.min_lr, warmup_epochs=args.warmup_epochs,
                         restart_epochs=args.restart_period, factor=args.reduce_factor,
                         patience=args.reduce_patience, threshold=args.reduce_delta)


def build_augmenter(args, data_name, seed):
    """An Augmenter for the dataset's defaults plus the user's --augment-* flags, or None."""
    if getattr(args, "no_augment", False) or data_name in playground.TOYS:  # toy points: nothing to augment
        return None
    config = AugmentConfig.for_dataset(data_name, **augment_overrides(args))
    config.validate()
    return Augmenter(config, seed=seed)


def _jsonable(args) -> dict:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if not callable(v)}


def run_experiment(args, *, tier, model_name, build_model, flatten_input=False, quiet=False):
    """Train and evaluate one model as the flags say. Returns a dict of results.

    ``build_model(input_shape, num_classes)`` makes the model; ``input_shape`` is (C, H, W).
    """
    check_run_flags(args)  # flag combinations and output paths, before anything is loaded
    parallel = data_parallel.from_args(args)  # None unless --distributed (one rank of mpiexec -n N)
    root = parallel is None or parallel.is_root  # the process that writes files
    if args.gpu:
        backend.use_gpu()
    seed_everything(args.seed)
    resume_ckpt = load_checkpoint(args.resume) if getattr(args, "resume", None) else None
    load_ckpt = load_checkpoint(args.load) if getattr(args, "load", None) else None
    source = resume_ckpt or load_ckpt
    if source is not None:  # another tier's checkpoint, or a diverged one: say so before the data loads
        check_tier(source, tier, "--resume" if resume_ckpt is not None else "--load")
        refuse_non_finite(source)
    if source is not None and "input_shape" in source.config:
        shape = tuple(source.config["input_shape"])  # a saved model keeps its own input shape
    else:
        shape = getattr(args, "image_shape", None)    # the conv quickstart's --image-shape C,H,W
    data = load_run_data(args, input_shape=shape)
    playground.check_flags(args, data, tier)  # toy tasks (points, not images): vectorized/playground.py
    early = (EarlyStopping(args.early_metric, args.early_patience, args.early_delta)
             if args.early_stopping else None)
    if early is not None and len(data.x_val) == 0:
        raise UserError("--early-stopping needs a validation set, and --limit leaves none: raise --limit")

    model = build_model(data.image_shape, 1 if data.task == "regression" else data.num_classes)
    if parallel is not None:
        check_divisible(len(data.x_train), args.batch_size, parallel.size)
        if args.sync_bn:
            convert_sync_batchnorm(model, parallel)
    arch = getattr(model, "arch_name", model_name)
    if source is not None and "normalization" in source.config:
        normalizer = Normalizer(**source.config["normalization"])
    else:
        normalizer = data.normalizer
    config = {"tier": tier, "architecture": arch, "variant": getattr(model, "variant", None),
              "input_shape": list(data.image_shape), "num_classes": data.num_classes,
              "dataset": data.name, "class_names": data.class_names,
              "normalization": {"mean": normalizer.mean.tolist(), "std": normalizer.std.tolist()},
              "version": library_version(), "args": _jsonable(args)}
    if source is not None:  # a refused --resume/--load must leave the run folder as it was
        check_compatible(source, model_shapes=model.state_shapes(),
                         config={k: config[k] for k in ("tier", "architecture", "num_classes", "input_shape")})

    if not root:
        run_dir = None
    elif resume_ckpt is not None:
        run_dir = RunDir.for_checkpoint(args.resume)
    else:
        run_dir = RunDir(args.run_dir, args.run_name or f"{tier}-{model_name}")
    if run_dir is not None and parallel is not None:  # a rank that dies is reported with the newest checkpoint
        parallel.watch_checkpoints(run_dir.path)
    tensorboard = None
    if run_dir is not None:
        run_dir.save_config(config)
        save_run_config(run_dir.path, args)
        tensorboard = logger_for(args, run_dir.path, config_values(args))

    variant = getattr(model, "variant", None)
    augmenter = build_augmenter(args, data.name, args.seed + 1)
    augment = "off" if augmenter is None else augmenter.config.describe()
    print(run_header(tier=tier, model=arch + (f" ({variant})" if variant else ""), dataset=data.name,
                     fell_back=data.fell_back, device=backend.device_name(), seed=args.seed,
                     params=model.num_parameters(),
                     extra={"engine": dispatch.engine_name(), "input": "x".join(map(str, data.image_shape)),
                            "train": len(data.x_train), "val": len(data.x_val), "test": len(data.x_test),
                            "augment": f'"{augment}"', "run": run_dir,
                            **({"ranks": parallel.size} if parallel is not None else {})}), flush=True)

    optimizer = build_optimizer(args, model)
    steps_per_epoch = max(1, -(-len(data.x_train) // args.batch_size))
    schedule = build_schedule(args, optimizer, steps_per_epoch)
    trainer_cls, loss = Trainer, CrossEntropyLoss(label_smoothing=getattr(args, "label_smoothing", 0.0))
    if data.is_points:
        trainer_cls, loss = playground.trainer_parts(args, data)
    trainer = trainer_cls(model, loss, optimizer,
                      normalizer=normalizer, num_classes=data.num_classes, schedule=schedule,
                      grad_clip=getattr(args, "grad_clip", None),
                      augmenter=augmenter, early_stopping=early,
                      run_dir=run_dir, config=config, flatten_input=flatten_input, seed=args.seed,
                      progress=not quiet and root, parallel=parallel,
                      callbacks=[tensorboard] if tensorboard else ())
    if data.is_points:
        playground.setup(trainer, args, data)  # the --animate recorder; checkpoints every few epochs
    if resume_ckpt is not None:
        trainer.resume(args.resume)
        print(f"[resume] continuing from epoch {trainer.epoch} (step {trainer.step}) of {args.resume}")
        if parallel is not None:
            parallel.after_resume(trainer)
    elif load_ckpt is not None:
        model.load_state_dict(load_ckpt.model_state)
        print(f"[load] weights from {args.load}")

    val = (data.x_val, data.y_val) if len(data.x_val) else None
    if not getattr(args, "skip_train", False) and trainer.epoch < args.epochs:
        epochs_left = args.epochs - trainer.epoch
        print(cost_line(args.epochs, trainer.epoch, steps_per_epoch, args.batch_size, len(data.x_train)), flush=True)
        trainer.callbacks.append(CostEstimate(epochs_left * steps_per_epoch, steps_per_epoch, epochs_left,
                                              len(data.x_train) + len(data.x_val)))
    if not getattr(args, "skip_train", False):
        if trainer.epoch >= args.epochs:
            print(f"[resume] the checkpoint already has {trainer.epoch} epochs; raise --epochs to train more")
        trainer.fit((data.x_train, data.y_train), val, epochs=args.epochs, batch_size=args.batch_size)
    if not root:  # rank 0 evaluates, reports and saves
        return {"history": trainer.history, "run_dir": None, "trainer": trainer, "model": model, "data": data}
    if data.is_points:
        return playground.finish(args, trainer, data, run_dir, model)

    test = trainer.evaluate(data.x_test, data.y_test, batch_size=max(args.batch_size, 256), keep_logits=True)
    print(f"test loss {test['loss']:.4f} | test accuracy {100 * test['acc']:.2f}% ({len(data.x_test)} images)")
    save_predictions(run_dir.path, data.y_test, test["logits"], data.x_test, data.class_names, test_loss=test["loss"])
    if tensorboard:
        tensorboard.log_test(test["loss"], test["acc"], trainer.epoch)
        tensorboard.close()
    cm = metrics.confusion_matrix(data.y_test, test["pred"], data.num_classes)
    if getattr(args, "confusion_matrix", False):
        print(metrics.format_confusion_matrix(cm, data.class_names))
        print(metrics.classification_report(cm, data.class_names))
    wrong = np.flatnonzero(test["pred"] != data.y_test)
    if getattr(args, "show_misclassified", False):
        _print_misclassified(wrong, data, test["pred"])

    figures = []
    if getattr(args, "plot", False):
        figures = _save_figures(run_dir, trainer, data, test["pred"], wrong, cm)
        for path in figures:
            print(f"[plot] {path}")
    if args.save:
        path = save_checkpoint(args.save, trainer.checkpoint())
        print(f"[save] {path}")
    (run_dir.path / "results.json").write_text(json.dumps(
        {"test_loss": test["loss"], "test_acc": test["acc"], "epochs": trainer.epoch}, indent=2) + "\n")
    return {"history": trainer.history, "test_acc": test["acc"], "test_loss": test["loss"], "run_dir": run_dir,
            "trainer": trainer, "model": model, "data": data, "figures": figures}


def _print_misclassified(wrong, data, pred, show=10):
    n = len(data.y_test)
    print(f"misclassified: {len(wrong)} of {n} test images ({100 * len(wrong) / max(n, 1):.2f}%)")
    if len(wrong):
        pairs = np.stack([data.y_test[wrong], pred[wrong]], axis=1)
        kinds, counts = np.unique(pairs, axis=0, return_counts=True)
        top = np.argsort(-counts, kind="stable")[:5]
        names = data.class_names
        print("most frequent confusions: " + ", ".join(
            f"{names[t]}->{names[p]} x{c}" for (t, p), c in zip(kinds[top], counts[top])))
        print("examples (test index: true -> predicted): " + ", ".join(
            f"{i}: {names[data.y_test[i]]} -> {names[pred[i]]}" for i in wrong[:show]))


def _save_figures(run_dir, trainer, data, pred, wrong, cm):
    out = []
    if trainer.history:
        out.append(plots.plot_history(trainer.history, run_dir.plot_path("curves")))
    out.append(plots.plot_confusion_matrix(cm, run_dir.plot_path("confusion_matrix"), data.class_names))
    out.append(plots.plot_samples(data.x_train[:20], data.y_train[:20], run_dir.plot_path("samples"),
                                  data.class_names))
    if len(wrong):
        out.append(plots.plot_misclassified(data.x_test[wrong], data.y_test[wrong], pred[wrong],
                                            run_dir.plot_path("misclassified"), data.class_names))
    first_conv = next((p for _, p in trainer.model.named_parameters() if p.data.ndim == 4), None)
    if first_conv is not None:
        out.append(plots.plot_filters(backend.to_numpy(first_conv.data), run_dir.plot_path("filters")))
    return out

