"""The ``kiln`` command: ``kiln info`` prints what this installation runs on."""

from __future__ import annotations

import argparse
import json
import sys


def _info(args) -> int:
    import kiln

    inf = kiln.info()
    if args.json:
        print(json.dumps(inf, indent=2, default=str))
        return 0
    cpu, cuda = inf["cpu"], inf["cuda"]
    a = cpu["allocator"]
    print(f"kiln {inf['version']}  (Python {inf['python']}, NumPy {inf['numpy']})")
    print(f"cpu:  kernels {cpu['table']}, instruction set {cpu['isa']} "
          f"(CPU supports {cpu['isa_supported']}; KILN_CPU_ISA lowers it), "
          f"{cpu['threads']} threads")
    print(f"      caching allocator: {a['cached_bytes'] >> 20} MiB cached, limit "
          f"{a['cache_limit_bytes'] >> 20} MiB")
    if cuda["table"]:
        print(f"cuda: served by {cuda['table']}: {cuda['reason']}")
    else:
        print(f"cuda: unavailable: {cuda['reason']}")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="kiln", description="kiln neural-network engine")
    sub = p.add_subparsers(dest="cmd")
    pi = sub.add_parser("info", help="version, CPU instruction set, threads, CUDA availability")
    pi.add_argument("--json", action="store_true", help="machine-readable output")
    args = p.parse_args(argv)
    if args.cmd == "info":
        return _info(args)
    p.print_help()
    return 0


if __name__ == "__main__":
    sys.exit(main())
