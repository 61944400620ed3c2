"""`python -m infer IMAGE [--box x0,y0,x1,y1] [--labels FILE] [--ckpt PATH] [--hypotheses N]
[--focal PX] [--out DIR] [key=value …]`: run the configured detector (`precompute.detector`) and
model (default: the latest checkpoint of the configured run, as `make eval`) on an image and write
`<reports>/infer/<image stem>/{overlay.png, side_view.png, hypotheses.npz}` (infer/run.py)."""
from __future__ import annotations

import sys

from core.cli import ArgumentParser, run_cli
from core.config import load_config


def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(prog="python -m infer", description=__doc__)
    parser.add_argument("image")
    parser.add_argument("--box", default=None, help="x0,y0,x1,y1 of a tight person box (px)")
    parser.add_argument("--labels", default=None,
                        help="a label file with the people's boxes (the synthetic scene "
                             "side-car; found next to the image by itself)")
    parser.add_argument("--ckpt", default=None)
    parser.add_argument("--hypotheses", type=int, default=100)
    parser.add_argument("--focal", type=float, default=None,
                        help="focal length (px); default: the image diagonal")
    parser.add_argument("--out", default=None, help="output folder")
    parser.add_argument("overrides", nargs="*", help="pipelines.yaml overrides, key=value")
    args = parser.parse_intermixed_args(argv)
    from .run import infer_image

    out = infer_image(load_config(args.overrides), args.image, args.box, args.labels, args.ckpt,
                      args.hypotheses, args.focal, args.out)
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
