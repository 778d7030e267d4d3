"""`ltpa-visualize` from a clone: `python training/visualize.py --help` (keras_ltpa/cli/visualize.py)."""
from keras_ltpa.cli.visualize import main

if __name__ == "__main__":
    raise SystemExit(main())
