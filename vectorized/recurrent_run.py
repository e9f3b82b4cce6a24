"""One recurrent run, from parsed flags to a trained, saved model: what ``vectorized/recurrent.py`` does.

The pieces are the tier's own: the task's arrays and model (:mod:`vectorized.sequence_tasks`),
the shared Trainer (through :class:`~vectorized.array_trainer.ArrayTrainer`), the optimizer
and schedule the flags describe, run folders, checkpoints and exact resume.
"""
from __future__ import annotations

import json

from common import backend, plots
from common.checkpoint import check_compatible, library_version, load_checkpoint, save_checkpoint
from common.cli import RunDir, run_header
from common.errors import UserError
from common.seed import seed_everything
from vectorized.array_trainer import ArrayTrainer
from vectorized.experiment import build_optimizer, build_schedule
from vectorized.sequence_tasks import build_model, load_task, loss_for, plot_forecast, plot_predictions, sample_text
from vectorized.trainer import EarlyStopping

DEFAULT_SEQ_LEN = {"sine": 20, "adding": 20, "chars": 64}
_MODEL_KEYS = ("task", "cell", "hidden_size", "num_layers", "seq_len", "bptt", "embed_dim", "text")


def run_recurrent(args, quiet: bool = False) -> dict:
    """Train and evaluate as the flags say; returns {'history', 'val_loss', 'trainer', 'model', 'data', 'sample'}."""
    if args.gpu:
        backend.use_gpu()
    resume = load_checkpoint(args.resume) if args.resume else None
    load = load_checkpoint(args.load) if args.load else None
    source = resume or load
    if source is not None:  # a saved model keeps its own task and shape; the flags cannot change them
        saved = source.config.get("recurrent")
        if not saved:
            raise UserError(f"{source.path} is not a checkpoint of vectorized/recurrent.py")
        for key in _MODEL_KEYS:
            setattr(args, key, saved[key])
    args.seq_len = args.seq_len or DEFAULT_SEQ_LEN[args.task]
    if args.bptt is not None and args.bptt > args.seq_len:
        raise UserError(f"--bptt {args.bptt} is longer than --seq-len {args.seq_len}; "
                        "give a window of at most the sequence length")
    seed_everything(args.seed)
    data = load_task(args.task, args.seq_len, args.samples, max(1, args.samples // 4), seed=args.seed, text=args.text)
    model = build_model(data, args.cell, args.hidden_size, args.num_layers, args.bptt, args.embed_dim)
    config = {"tier": "vectorized", "architecture": model.arch_name, "input_shape": list(data.x_train.shape[1:]),
              "num_classes": data.output_size, "dataset": data.name, "version": library_version(),
              "recurrent": {k: getattr(args, k) for k in _MODEL_KEYS}}
    run_dir = RunDir.for_checkpoint(args.resume) if resume else RunDir(args.run_dir, args.run_name or
                                                                        f"recurrent-{args.cell}-{args.task}")
    run_dir.save_config(config)
    if not quiet:
        print(run_header(tier="vectorized", model=f"{args.cell.upper()} x{args.num_layers}, {args.hidden_size} units",
                         dataset=f"{data.name} (T={args.seq_len})", device=backend.device_name(), seed=args.seed,
                         params=model.num_parameters(),
                         extra={"train": len(data.x_train), "val": len(data.x_val),
                                "bptt": args.bptt or "full", "run": run_dir}), flush=True)
    optimizer = build_optimizer(args, model)
    schedule = build_schedule(args, optimizer, max(1, -(-len(data.x_train) // args.batch_size)))
    early = EarlyStopping(args.early_metric, args.early_patience, args.early_delta) if args.early_stopping else None
    if early is not None and early.metric == "val_acc" and data.task == "regression":
        raise UserError(f"--early-metric val_acc needs a classification task; {data.name} reports val_loss")
    trainer = ArrayTrainer(model, loss_for(data), optimizer, task=data.task, schedule=schedule,
                           grad_clip=args.grad_clip, early_stopping=early, run_dir=run_dir, config=config,
                           seed=args.seed, progress=not quiet, verbose=not quiet)
    if resume is not None:
        trainer.resume(args.resume)
        print(f"[resume] continuing from epoch {trainer.epoch} (step {trainer.step}) of {args.resume}")
    elif load is not None:
        check_compatible(load, model_shapes=model.state_shapes(), config=config)
        model.load_state_dict(load.model_state)
        print(f"[load] weights from {args.load}")
    if trainer.epoch >= args.epochs:
        print(f"[resume] the checkpoint already has {trainer.epoch} epochs; raise --epochs to train more")
    trainer.fit((data.x_train, data.y_train), (data.x_val, data.y_val), epochs=args.epochs,
                batch_size=args.batch_size)
    val = trainer.evaluate(data.x_val, data.y_val)
    line = f"validation loss {val['loss']:.4f}"
    if "acc" in val:
        line += f" | validation accuracy {100 * val['acc']:.2f}% (per character)"
    print(line)
    sample = None
    if data.name == "chars" and args.sample_length:
        sample = sample_text(model, data.vocab, args.prime, args.sample_length, args.temperature, seed=args.seed)
        print(f"[sample] temperature {args.temperature}:\n{sample}")
    if args.plot:
        paths = [plots.plot_history(trainer.history, run_dir.plot_path("curves"))] if trainer.history else []
        if data.name == "sine":
            paths.append(plot_forecast(model, data, run_dir.plot_path("forecast")))
        elif data.name == "adding":
            paths.append(plot_predictions(model, data, run_dir.plot_path("predictions")))
        for path in paths:
            print(f"[plot] {path}")
    if args.save:
        print(f"[save] {save_checkpoint(args.save, trainer.checkpoint())}")
    (run_dir.path / "results.json").write_text(json.dumps({"val_loss": val["loss"], "val_acc": val.get("acc"),
                                                           "epochs": trainer.epoch, "sample": sample}, indent=2) + "\n")
    return {"history": trainer.history, "val_loss": val["loss"], "val_acc": val.get("acc"), "trainer": trainer,
            "model": model, "data": data, "sample": sample, "run_dir": run_dir}
