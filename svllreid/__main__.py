"""Allows ``python -m svllreid`` (and ``torchrun -m svllreid``)."""

from svllreid.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
