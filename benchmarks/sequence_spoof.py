"""The red team's spoofed source (issue 18.4): IPFIX messages with random sequence numbers in
a few observation domains, from one exporter address, into the decoder; prints what the
sequence accounting makes of them.

    .venv/bin/python benchmarks/sequence_spoof.py --messages 200000
"""

from __future__ import annotations

import argparse
import random
import struct
import time

from flowatlas.addresses import pack
from flowatlas.collect import Decoder


def message(seq: int, domain: int) -> bytes:
    return struct.pack("!HHIII", 10, 16, 1_700_000_000, seq, domain)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--messages", type=int, default=200_000)
    ap.add_argument("--domains", type=int, default=4)
    ap.add_argument("--seed", type=int, default=18)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    msgs = [message(rng.randrange(1 << 32), rng.randrange(args.domains))
            for _ in range(args.messages)]
    decoder = Decoder()
    started = time.perf_counter()
    for i in range(0, len(msgs), 1000):
        decoder.decode_many([(m, "192.0.2.66") for m in msgs[i:i + 1000]], 1.0)
    c = decoder.status.of(pack("192.0.2.66"))
    print(f"{args.messages:,} spoofed messages in {args.domains} domains: lost {c.lost:,}, "
          f"gaps {c.sequence_gaps:,}, resets {c.sequence_resets:,} "
          f"({time.perf_counter() - started:.1f} s)")


if __name__ == "__main__":
    main()
