"""`ltpa-export` from a clone: `python training/export.py --help` (keras_ltpa/cli/export.py)."""
from keras_ltpa.cli.export import main

if __name__ == "__main__":
    raise SystemExit(main())
