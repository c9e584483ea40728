"""The GPU-side entry point, run as a child process of a Celery worker (or through
`accelerate launch` when several GPUs are visible). It is the only module that imports
training/ml; it knows nothing of Django and talks through files:

    python -m training.runner train SPEC.json       # events as JSON lines to spec.events_file
    python -m training.runner inspect PATH          # registry facts about a model, on stdout
    python -m training.runner convert-gguf SRC_DIR GGUF_FILE OUT_DIR
    python -m training.runner build-tiny OUT_DIR
    python -m training.runner merge-adapters OUT_DIR BASE_DIR ADAPTER_DIR...
    python -m training.runner measure BASE_PATH PATH KIND MAX_NEW_TOKENS   # one JSON line

`train` runs a compression job (merge, quantize, distill: training/ml/compress.py) when the
spec's kind is one.

`inspect` and `convert-gguf` print their progress first, as `phase` event lines, and their
answer last, as one JSON line without a "type".

Exit codes: 0 success or cancelled (the last event says which), 2 bad data or settings,
1 anything else (the traceback goes to stderr and an `error` event).
"""

import argparse
import json
import sys
import traceback
from pathlib import Path
from typing import Any

EXIT_BAD_INPUT = 2


def train(spec_path: str) -> int:
    from training.ml.data import DataError
    from training.ml.events import EventWriter
    from training.ml.methods import MethodError
    from training.ml.train import CheckpointSaveError, run_job

    spec = json.loads(Path(spec_path).read_text())
    if spec.get("config", {}).get("kind") in ("merge", "quantize", "distill"):
        from training.ml.compress import run_compress_job as run_job  # noqa: F811
    try:
        run_job(spec)
    except CheckpointSaveError as error:  # its message is complete as it stands
        EventWriter(spec.get("events_file")).emit("error", message=str(error))
        traceback.print_exc()
        return 1
    except (DataError, MethodError, ValueError) as error:
        EventWriter(spec.get("events_file")).emit("error", message=str(error), bad_input=True)
        traceback.print_exc()
        return EXIT_BAD_INPUT
    except Exception as error:  # the worker needs the reason whatever it is
        message = f"{type(error).__name__}: {error}"
        EventWriter(spec.get("events_file")).emit("error", message=message)
        traceback.print_exc()
        return 1
    return 0


def _progress():
    """Phase events as JSON lines on stdout, before the answer's own line."""
    from training.ml.events import EventWriter, Phases

    return Phases(EventWriter(None))


def inspect(path: str) -> dict[str, Any]:
    from training.ml.modelio import inspect_model

    return inspect_model(path, _progress())


def generate_completions(**kwargs: Any) -> list[tuple[str, bool]]:
    """In-process generation for the inference service (a Celery worker, never the web):
    (text, stopped at max_new_tokens) per prompt."""
    from training.ml.generation import generate_completions

    return generate_completions(**kwargs)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="training.runner")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("train").add_argument("spec")
    sub.add_parser("inspect").add_argument("path")
    convert = sub.add_parser("convert-gguf")
    convert.add_argument("source_dir")
    convert.add_argument("gguf_file")
    convert.add_argument("out_dir")
    sub.add_parser("build-tiny").add_argument("out_dir")
    merge = sub.add_parser("merge-adapters")
    merge.add_argument("out_dir")
    merge.add_argument("base_dir")
    merge.add_argument("adapters", nargs="+")
    measure = sub.add_parser("measure")
    for name in ("base_path", "path", "kind"):
        measure.add_argument(name)
    measure.add_argument("max_new_tokens", type=int)
    args = parser.parse_args(argv)

    if args.command == "train":
        return train(args.spec)
    if args.command == "inspect":
        print(json.dumps(inspect(args.path)))
        return 0
    if args.command == "convert-gguf":
        from training.ml.modelio import convert_gguf

        out = convert_gguf(
            source_dir=Path(args.source_dir),
            gguf_file=args.gguf_file,
            out_dir=Path(args.out_dir),
            progress=_progress(),
        )
        print(json.dumps({"path": str(out)}))
        return 0
    if args.command == "build-tiny":
        from training.ml.tiny import build_tiny_model

        print(json.dumps({"path": str(build_tiny_model(args.out_dir))}))
        return 0
    if args.command == "merge-adapters":
        from training.ml.modelio import merge_adapters

        out = merge_adapters(
            base_path=args.base_dir, adapters=args.adapters, out_dir=Path(args.out_dir)
        )
        print(json.dumps({"path": str(out)}))
        return 0
    if args.command == "measure":
        from training.ml.compress import measure as measure_model

        figures = measure_model(
            base_path=args.base_path,
            path=args.path,
            kind=args.kind,
            max_new_tokens=args.max_new_tokens,
        )
        print(json.dumps(figures))
        return 0
    return 1


if __name__ == "__main__":
    sys.exit(main())
