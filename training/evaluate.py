"""`ltpa-evaluate` from a clone: `python training/evaluate.py --help` (keras_ltpa/cli/evaluate.py)."""
from keras_ltpa.cli.evaluate import main

if __name__ == "__main__":
    raise SystemExit(main())
