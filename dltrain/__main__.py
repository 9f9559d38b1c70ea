"""`python -m dltrain` runs the same command as `dltrain` (torchrun needs a module)."""

from dltrain.cli import main

if __name__ == "__main__":
    main()
