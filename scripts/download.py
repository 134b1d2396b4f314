"""Download and verify a dataset by its manifest; print the path of the cached file.

    python scripts/download.py data/ml-1m.json [--cache DIR]
"""

import argparse
import logging
import sys

from recvae.data.download import DatasetManifest, fetch
from recvae.errors import DataError


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("manifest")
    parser.add_argument("--cache", help="cache folder (default: $RECVAE_DATA or ~/.cache/recvae)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        print(fetch(DatasetManifest.from_file(args.manifest), args.cache))
    except DataError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
