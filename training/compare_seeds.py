"""The comparison over seeds from a clone: `python training/compare_seeds.py --help`
(keras_ltpa/cli/compare_seeds.py)."""
from keras_ltpa.cli.compare_seeds import main

if __name__ == "__main__":
    raise SystemExit(main())
