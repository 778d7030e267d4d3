"""The one image path: list, decode and resize image files (`images`); where
examples come from, image folders or tensorflow-datasets (`sources`); the
augmentation names, the label-mode rule and their layers (`augmentation`);
and the `tf.data` pipelines with their pixel statistics (`pipelines`).
Imports only the model core."""

from keras_ltpa.data import pipelines as _pipelines
from keras_ltpa.data.pipelines import *  # noqa: F403  (its __all__ is the package's)

__all__ = list(_pipelines.__all__)
