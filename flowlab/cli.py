"""The ``flowlab`` console command.

    flowlab demo [--out DIR] [--quick]                 render the lecture's 2D figures + index.html
    flowlab train toy --data moons --steps N --out P   train the 2D MLP, save a checkpoint
    flowlab sample --checkpoint moons --out s.png      sample a 2D model, save a scatter plot
    flowlab bench samplers [--quick]                   solver error vs NFE table
    flowlab bench moons                                moons checkpoints: 1/2/4/16 Euler steps vs the floor
    flowlab train moons-reflow --out P                 the few-step moons checkpoint (flowlab.distill)
    flowlab train mnist-cfg [--steps N] [--out P]      train an MNIST checkpoint (one command a recipe)
    flowlab bench mnist [--quick]                      guidance, classifier guidance, inversion, speed
    flowlab bench speed [--device cuda] [--quick]      ms per NFE: integrate vs torchdiffeq vs a bare loop
    flowlab references | release | grade | merge-manual | merge-shards | rehearse
    flowlab export gradescope | bench grading          instructor commands (the grader, autograder/)

Each subcommand is one small function registered with ``@command(words..., arguments=[...])``; the
parser is built from the registry, so a new command is one more function. Installed packages add
commands through the ``flowlab.commands`` entry-point group (the instructor's grader does).
Mistakes (an unknown data set, a bad number, a missing file) print one line and exit with code 2,
without a traceback (set ``FLOWLAB_TRACEBACK=1`` to see it).
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

PROGRAM = "flowlab"
USAGE_ERROR = 2
DEFAULT_SAMPLE_STEPS = 50
GROUP_HELP = {"train": "train a model and save a checkpoint", "bench": "benchmarks: print tables"}


class UsageError(Exception):
    """A mistake on the command line or in its values: reported in one line, exit code 2."""


class _Parser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line (``prog: error: ...``) and exit code 2."""

    def error(self, message: str):
        raise UsageError(f"{self.prog}: error: {message} (see {self.prog} --help)")


@dataclass(frozen=True)
class Command:
    """A leaf subcommand: its words (``("train", "toy")``), help, argument specs and function."""
    words: tuple[str, ...]
    help: str
    arguments: tuple[tuple[tuple[str, ...], dict], ...]
    run: Callable[[argparse.Namespace], int | None]


COMMANDS: dict[tuple[str, ...], Command] = {}


def argument(*flags: str, **options) -> tuple[tuple[str, ...], dict]:
    """One ``add_argument(*flags, **options)`` call, kept as data until the parser is built."""
    return flags, options


def command(*words: str, help: str, arguments: Sequence = ()):
    """Register the decorated ``run(args) -> exit code`` as the subcommand ``flowlab <words>``."""
    def register(run: Callable[[argparse.Namespace], int | None]):
        if words in COMMANDS:
            raise ValueError(f"the command {' '.join(words)!r} is registered twice")
        COMMANDS[words] = Command(tuple(words), help, tuple(arguments), run)
        return run
    return register


# ---- value checks for argparse (their ValueError becomes "invalid ... value") -------------------

def positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text}")
    return value


def nonnegative_float(text: str) -> float:
    value = float(text)
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text}")
    return value


def torch_device(text: str):
    """A ``torch.device`` that exists on this machine (``cpu``, ``cuda``, ``cuda:1``, ``mps``)."""
    import torch

    try:
        device = torch.device(text)
    except RuntimeError as error:
        raise argparse.ArgumentTypeError(f"not a torch device: {text}") from error
    if device.type == "cuda" and not torch.cuda.is_available():
        raise argparse.ArgumentTypeError(f"{text}: CUDA is not available on this machine")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise argparse.ArgumentTypeError(f"{text}: MPS is not available on this machine")
    return device


def _toy_names() -> tuple[str, ...]:
    from flowlab.data import toy
    return toy.NAMES


def _method_names() -> tuple[str, ...]:
    from flowlab.solvers import METHODS
    return tuple(METHODS)


def _schedule_names() -> tuple[str, ...]:
    from flowlab.schedules import SCHEDULES
    return tuple(SCHEDULES)


# ---- subcommands ---------------------------------------------------------------------------------

@command("demo", help="render the 2D lecture figures (PNGs and index.html)", arguments=[
    argument("--out", default="demo-out", metavar="DIR", help="output folder (default: %(default)s)"),
    argument("--quick", action="store_true", help="few points and steps: seconds instead of minutes"),
])
def run_demo(args: argparse.Namespace) -> int:
    from flowlab.demo import render_demo

    render_demo(args.out, quick=args.quick)
    return 0


@command("train", "toy", help="train the 2D velocity MLP on a toy data set and save it", arguments=[
    argument("--data", default="moons", choices=_toy_names(), help="toy data set (default: %(default)s)"),
    argument("--steps", type=positive_int, default=3000, help="optimiser steps (default: %(default)s)"),
    argument("--seed", type=int, default=0, help="seed of the weights and every draw (default: %(default)s)"),
    argument("--batch-size", type=positive_int, help="points per step (default: train_toy's)"),
    argument("--device", type=torch_device, default="cpu", help="torch device (default: %(default)s)"),
    argument("--out", required=True, metavar="PATH",
             help="checkpoint path; writes PATH.safetensors and PATH.json"),
])
def run_train_toy(args: argparse.Namespace) -> int:
    from flowlab import pretrained, train
    from flowlab.checkpoints import checkpoint_paths

    options = {} if args.batch_size is None else {"batch_size": args.batch_size}
    result = train.train_toy(data=args.data, steps=args.steps, seed=args.seed, device=args.device, **options)
    meta = pretrained.save_toy(result, args.out)
    metrics = meta["metrics"]
    print(f"trained MLP on {args.data}: {args.steps} steps in {result.seconds:.1f} s, "
          f"final loss {meta['final_loss']:.4f}")
    print(f"sample quality: sliced W2 = {metrics['sliced_w2']:.4f} "
          f"(floor between two data draws: {metrics['sliced_w2_floor']:.4f}; {metrics['sampler']})")
    print("saved " + ", ".join(str(path) for path in checkpoint_paths(args.out)))
    return 0


def _register_mnist_recipes() -> None:
    """``flowlab train mnist-cfg ...``: one subcommand per recipe in ``flowlab.mnist.recipes``."""
    from flowlab.mnist.recipes import RECIPES

    for name, recipe in RECIPES.items():
        @command("train", name, help=f"train the {recipe.checkpoint} checkpoint (MNIST)", arguments=[
            argument("--steps", type=positive_int, default=recipe.steps, help="optimiser steps (default: %(default)s)"),
            argument("--seed", type=int, default=0, help="seed of the weights and every draw (default: %(default)s)"),
            argument("--device", type=torch_device, default="cpu", help="torch device (default: %(default)s)"),
            argument("--out", default=f"data/checkpoints/{recipe.checkpoint}", metavar="PATH",
                     help="checkpoint path; writes PATH.safetensors and PATH.json (default: %(default)s)"),
        ])
        def run(args: argparse.Namespace, name: str = name) -> int:
            import json

            from flowlab.checkpoints import checkpoint_paths
            from flowlab.mnist.recipes import save_recipe, train_recipe

            result = train_recipe(name, steps=args.steps, seed=args.seed, device=args.device)
            meta = save_recipe(result, args.out)
            print(f"trained {name}: {args.steps} steps in {result.seconds:.1f} s, final loss {meta['final_loss']:.4f}")
            print("metrics: " + json.dumps(meta["metrics"], indent=1))
            print("saved " + ", ".join(str(path) for path in checkpoint_paths(args.out)))
            return 0


_register_mnist_recipes()


def _load_2d_model(name_or_path: str):
    """A checkpoint by path (with or without suffix) or by pretrained name: ``(model, meta)``."""
    from flowlab import checkpoints, pretrained

    if checkpoints.checkpoint_paths(name_or_path)[0].is_file():
        model, meta = checkpoints.load(name_or_path)
    elif name_or_path in pretrained.available():
        model, meta = pretrained.load(name_or_path), pretrained.info(name_or_path)
    else:
        raise UsageError(f"no checkpoint {name_or_path!r}: not a file (PATH.safetensors) and not one of "
                         f"the pretrained models {pretrained.available()}")
    if getattr(model, "config", {}).get("dim") != 2:
        raise UsageError(f"flowlab sample draws 2D models only; {name_or_path!r} has "
                         f"config {getattr(model, 'config', None)}")
    return model.eval(), meta


def _sampling_steps(args: argparse.Namespace, method: str) -> int:
    """Solver steps from ``--steps`` or ``--nfe`` (which must be a multiple of the method's cost)."""
    from flowlab.solvers import NFE_PER_STEP

    if args.nfe is not None and args.steps is not None:
        raise UsageError("give --steps or --nfe, not both")
    if args.nfe is None:
        return args.steps or DEFAULT_SAMPLE_STEPS
    per_step = 1 if args.eta > 0 else NFE_PER_STEP[method]
    if args.nfe % per_step:
        raise UsageError(f"--nfe {args.nfe} is not a multiple of {per_step}, the evaluations per "
                         f"{method} step")
    return args.nfe // per_step


@command("sample", help="sample a 2D model and save a scatter plot", arguments=[
    argument("--checkpoint", default="moons", metavar="NAME_OR_PATH",
             help="a pretrained name or a checkpoint path (default: %(default)s)"),
    argument("--n", type=positive_int, default=5000, help="number of samples (default: %(default)s)"),
    argument("--steps", type=positive_int, help=f"solver steps (default: {DEFAULT_SAMPLE_STEPS})"),
    argument("--nfe", type=positive_int, help="velocity evaluations instead of --steps"),
    argument("--method", choices=_method_names(),
             help="ODE solver (default: heun; with --eta > 0 only euler, i.e. Euler-Maruyama)"),
    argument("--schedule", default="uniform", choices=_schedule_names(), help="time grid (default: %(default)s)"),
    argument("--eta", type=nonnegative_float, default=0.0,
             help="SDE noise: 0 is the ODE, 1 DDPM-like (default: %(default)s)"),
    argument("--seed", type=int, default=0, help="seed of the noise (default: %(default)s)"),
    argument("--out", default="samples.png", metavar="PNG", help="output image (default: %(default)s)"),
])
def run_sample(args: argparse.Namespace) -> int:
    import torch

    from flowlab import schedules, viz
    from flowlab.sde import sample_sde
    from flowlab.solvers import CountingVelocity, integrate

    if args.eta > 0 and args.method not in (None, "euler"):
        raise UsageError(f"--eta > 0 samples with Euler-Maruyama; use --method euler or leave it out, "
                         f"got --method {args.method}")
    method = args.method or ("euler" if args.eta > 0 else "heun")
    grid = schedules.get(args.schedule, _sampling_steps(args, method))
    model, meta = _load_2d_model(args.checkpoint)
    generator = torch.Generator().manual_seed(args.seed)
    noise = torch.randn(args.n, 2, generator=generator)
    velocity = CountingVelocity(model)
    start = time.perf_counter()
    with torch.inference_mode():
        if args.eta > 0:
            samples = sample_sde(velocity, noise, grid, eta=args.eta, generator=generator)
        else:
            samples = integrate(velocity, noise, grid, method)
    seconds = time.perf_counter() - start
    sampler = f"{method}, {velocity.nfe} NFE, {args.schedule}" + (f", eta = {args.eta:g}" if args.eta else "")
    title = f"{Path(args.checkpoint).name}: {sampler}"
    viz.save(viz.scatter_density(samples, title=title, color=viz.STYLE["sample_color"]), args.out, close=True)
    print(f"sampled {args.n} points ({sampler}) in {seconds:.2f} s{_quality(samples, meta)}")
    print(f"wrote {args.out}")
    return 0


def _quality(samples, meta: dict) -> str:
    """``"; sliced W2 to moons data = 0.05"`` when the checkpoint names its toy data set."""
    import torch

    from flowlab.data import toy
    from flowlab.metrics import sliced_wasserstein

    data = meta.get("data")
    if data not in toy.NAMES:
        return ""
    reference = toy.sample(data, len(samples), generator=torch.Generator().manual_seed(12345))
    distance = sliced_wasserstein(samples, reference, generator=torch.Generator().manual_seed(0))
    return f"; sliced W2 to {data} data = {float(distance):.4f}"


@command("bench", "samplers", help="table of solver error vs NFE on the exact 8-Gaussian velocity", arguments=[
    argument("--quick", action="store_true", help="fewer points and NFEs"),
    argument("--n-points", type=positive_int, help="points per measurement"),
    argument("--seed", type=int, default=0, help="seed of the starting noise (default: %(default)s)"),
])
def run_bench_samplers(args: argparse.Namespace) -> int:
    from flowlab import bench

    bench.main_samplers(quick=args.quick, n_points=args.n_points, seed=args.seed)
    return 0


@command("bench", "moons", help="moons checkpoints: sliced W2 / floor after 1, 2, 4, 16 Euler steps, straightness",
         arguments=[
    argument("--n-points", type=positive_int, default=20_000, help="samples and data points (default: %(default)s)"),
    argument("--n-proj", type=positive_int, default=200, help="sliced-W2 projections (default: %(default)s)"),
    argument("--seed", type=int, default=0, help="seed of the noise, data and projections (default: %(default)s)"),
])
def run_bench_moons(args: argparse.Namespace) -> int:
    from flowlab import bench

    bench.main_moons(n_points=args.n_points, n_proj=args.n_proj, seed=args.seed)
    return 0


@command("train", "moons-reflow", help="train the moons_reflow checkpoint (teacher, reflow pairs, student)",
         arguments=[
    argument("--seed", type=int, default=0, help="seed of the weights and every draw (default: %(default)s)"),
    argument("--out", required=True, metavar="PATH", help="checkpoint path; writes PATH.safetensors and PATH.json"),
])
def run_train_moons_reflow(args: argparse.Namespace) -> int:
    import torch

    from flowlab import distill, pretrained
    from flowlab.checkpoints import checkpoint_paths

    torch.set_num_threads(1)   # the shipped checkpoint was trained on one thread (the same float sums)
    result = distill.reflow_moons(seed=args.seed, progress=True)
    meta = pretrained.save_toy(result, args.out)
    print(f"trained moons_reflow (recipe flowlab.distill.MOONS_REFLOW) in {result.seconds:.0f} s; "
          f"sliced W2 {meta['metrics']['sliced_w2']:.4f} (floor {meta['metrics']['sliced_w2_floor']:.4f}; "
          f"{meta['metrics']['sampler']}); `flowlab bench moons` measures few-step sampling")
    print("saved " + ", ".join(str(path) for path in checkpoint_paths(args.out)))
    return 0


@command("bench", "mnist", help="MNIST tables: CFG sweep, solvers at 20 NFE, classifier guidance, inversion, speed",
         arguments=[
    argument("--quick", action="store_true", help="tiny sample sizes (seconds; for tests)"),
    argument("--seed", type=int, default=0, help="seed of the starting noise (default: %(default)s)"),
    argument("--device", type=torch_device, default="cpu", help="torch device (default: %(default)s)"),
])
def run_bench_mnist(args: argparse.Namespace) -> int:
    from flowlab.mnist.bench import main_mnist

    main_mnist(quick=args.quick, seed=args.seed, device=args.device)
    return 0


@command("bench", "speed", help="ms per NFE of integrate vs torchdiffeq vs a bare loop (2D MLP, MNIST UNet)",
         arguments=[
    argument("--device", type=torch_device, default="cpu", help="torch device (default: %(default)s)"),
    argument("--quick", action="store_true", help="tiny batches, one repeat (seconds; for tests)"),
    argument("--steps", type=positive_int, help="grid steps per run (default: 20; quick: 2)"),
    argument("--repeats", type=positive_int, help="timed runs per cell, the best is kept (default: 5)"),
    argument("--mlp-batch", type=positive_int, help="batch of the 2D MLP (default: 100000)"),
    argument("--unet-batch", type=positive_int, help="batch of the MNIST UNet (default: 1000)"),
    argument("--clock", choices=("wall", "process"), default="wall",
             help="wall time, or this process's CPU time on a shared CPU (default: %(default)s)"),
])
def run_bench_speed(args: argparse.Namespace) -> int:
    from flowlab.bench_speed import main_speed

    main_speed(args.device, quick=args.quick, steps_=args.steps, repeats=args.repeats,
               mlp_batch=args.mlp_batch, unet_batch=args.unet_batch, clock=args.clock)
    return 0


# ---- instructor commands (the grader in autograder/ adds them) ------------------------------------

PLUGIN_GROUP = "flowlab.commands"
INSTRUCTOR_COMMANDS = ("references", "release", "grade", "merge-manual", "rehearse")


def plugin_commands() -> dict[tuple[str, ...], Command]:
    """Commands that installed packages add through the ``flowlab.commands`` entry-point group: each
    entry point is a function returning ``Command``s (the grader's: ``flowlab_grader.commands``)."""
    from importlib.metadata import entry_points

    found = {}
    for entry in entry_points(group=PLUGIN_GROUP):
        try:
            specs = entry.load()()
        except Exception as error:   # a broken or half-removed plugin must not take `flowlab demo` down
            print(f"{PROGRAM}: warning: commands from {entry.value!r} not loaded ({type(error).__name__}: "
                  f"{error})", file=sys.stderr)
            continue
        for spec in specs:
            found[spec.words] = spec
    return found


def missing_instructor_command(argv: Sequence[str], commands: dict[tuple[str, ...], Command]) -> str | None:
    """The one-line error for ``flowlab grade ...`` where no grader is installed (a student's
    flowlab), instead of argparse's "invalid choice"; None otherwise."""
    if argv[:1] and argv[0] in INSTRUCTOR_COMMANDS and (argv[0],) not in commands:
        return (f"{PROGRAM} {argv[0]}: error: an instructor command; install the grader from autograder/ "
                f"(pip install -e ./autograder)")
    return None


# ---- the parser and main -------------------------------------------------------------------------

def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version
    try:
        return version("flowlab")
    except PackageNotFoundError:
        return "unknown"


def build_parser(commands: dict[tuple[str, ...], Command] | None = None) -> argparse.ArgumentParser:
    """The argument parser for ``commands`` (default: ``COMMANDS`` and ``plugin_commands()``; groups
    such as ``train`` made on the way)."""
    root = _Parser(prog=PROGRAM, description="flowlab: flow matching for teaching (t = 0 noise, t = 1 data).")
    root.add_argument("--version", action="version", version=f"{PROGRAM} {_version()}")
    children = {(): root.add_subparsers(title="commands", required=True, parser_class=_Parser)}
    commands = {**COMMANDS, **plugin_commands()} if commands is None else commands
    for words, spec in commands.items():
        for depth in range(1, len(words)):
            prefix = words[:depth]
            if prefix not in children:
                group = children[prefix[:-1]].add_parser(prefix[-1], help=GROUP_HELP.get(prefix[-1], ""))
                children[prefix] = group.add_subparsers(title="subcommands", required=True, parser_class=_Parser)
        leaf = children[words[:-1]].add_parser(words[-1], help=spec.help, description=spec.help)
        for flags, options in spec.arguments:
            leaf.add_argument(*flags, **options)
        leaf.set_defaults(run=spec.run, prog=leaf.prog)
    return root


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``flowlab`` with ``argv`` (default ``sys.argv[1:]``); returns the exit code.

    0: success (or ``--help``); 2: a usage or input error, reported on one line of stderr.
    """
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = {**COMMANDS, **plugin_commands()}
    missing = missing_instructor_command(argv, commands)
    if missing:
        print(missing, file=sys.stderr)
        return USAGE_ERROR
    parser = build_parser(commands)
    try:
        args = parser.parse_args(argv)
    except SystemExit as exit_:           # --help, --version
        return exit_.code if isinstance(exit_.code, int) else 0
    except UsageError as error:
        print(error, file=sys.stderr)
        return USAGE_ERROR
    try:
        code = args.run(args)
    except (UsageError, ValueError, TypeError, FileNotFoundError) as error:
        if os.environ.get("FLOWLAB_TRACEBACK") and not isinstance(error, UsageError):
            raise                         # for debugging flowlab itself
        print(f"{args.prog}: error: {error}", file=sys.stderr)
        return USAGE_ERROR
    except KeyboardInterrupt:
        print(f"{PROGRAM}: interrupted", file=sys.stderr)
        return 130
    return 0 if code is None else int(code)


if __name__ == "__main__":
    sys.exit(main())
