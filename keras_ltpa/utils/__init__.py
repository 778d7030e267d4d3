"""Foundations every part of the package uses: argument checks (`checks`),
atomic file writes (`files`) and the private Keras APIs we rely on, wrapped
in one place (`keras_internals`). Nothing here imports the rest of
keras_ltpa."""
