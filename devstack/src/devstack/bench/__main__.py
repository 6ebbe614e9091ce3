import sys

from devstack.bench.cli import main

if __name__ == "__main__":
    sys.exit(main())
