"""The four commands: `fit`, `evaluate`, `visualize` and `export`.

Each module parses its flags and calls the library; its `main()` is what
the console command (`ltpa-fit`, ...) and the `training/*.py` wrapper run.
`common` holds their shared habits (one-line errors with exit code 2, the
`--model` argument, argument types). A command parses its flags before it
loads the data, training or serving code, so `--help` and flag errors cost
only `import keras_ltpa` (Keras and its backend).
"""
