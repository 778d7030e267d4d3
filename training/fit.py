"""`ltpa-fit` from a clone: `python training/fit.py --help` (keras_ltpa/cli/fit.py)."""
from keras_ltpa.cli.fit import main

if __name__ == "__main__":
    raise SystemExit(main())
