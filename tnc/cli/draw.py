"""``tnc draw FILE -o net.png``: draw a network as a diagram (needs matplotlib)."""
from __future__ import annotations

from pathlib import Path

from tnc.engine.draw import LAYOUTS, draw
from tnc.cli._common import add_network_options, load_networks

HELP = "draw a network as a diagram (tensors as nodes, legs as edges)"


def register(subparsers) -> None:
    parser = subparsers.add_parser(
        "draw", help=HELP, description=HELP.capitalize() + ". Open legs end in a small "
        "circle, hyperedges meet at a black dot, data tensors are orange squares. A file "
        "with several networks gives one picture each (OUT-NAME.png) unless --name picks one. "
        "Needs matplotlib: pip install 'tnc[draw]'.",
        epilog="example: tnc draw peps.tn --size Lx=4 -o peps.png")
    add_network_options(parser)
    parser.add_argument("--output", "-o", metavar="IMAGE", required=True,
                        help="picture to write; the suffix picks the format (.png, .svg, .pdf)")
    parser.add_argument("--layout", default="auto", choices=LAYOUTS,
                        help="node placement (default: auto, a grid for A[x, y] tensors)")
    parser.set_defaults(run=run)


def run(args) -> int:
    networks = load_networks(args)
    out = Path(args.output)
    for name, net in networks.items():
        target = out if len(networks) == 1 else out.with_name(f"{out.stem}-{name}{out.suffix}")
        draw(net, target, layout=args.layout)
        print(f"wrote {target}")
    return 0
