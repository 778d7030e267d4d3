"""The one image path: list, decode and resize image files (`images`); where
examples come from, image folders or tensorflow-datasets (`sources`); the
augmentation names, the label-mode rule and their layers (`augmentation`);
and the `tf.data` pipelines with their pixel statistics (`pipelines`).
Imports only the model core."""

from keras_ltpa.data.pipelines import AUGMENTATIONS
from keras_ltpa.data.pipelines import BATCH_AUGMENTATIONS
from keras_ltpa.data.pipelines import CIFAR10_CLASS_NAMES
from keras_ltpa.data.pipelines import FILE_ORDER_SEED
from keras_ltpa.data.pipelines import LABEL_MODES
from keras_ltpa.data.pipelines import PAPER_AUGMENTATION
from keras_ltpa.data.pipelines import SHUFFLE_BUFFER_BYTES
from keras_ltpa.data.pipelines import DataError
from keras_ltpa.data.pipelines import batch_augmenter
from keras_ltpa.data.pipelines import check_images
from keras_ltpa.data.pipelines import class_folders
from keras_ltpa.data.pipelines import dataset_arrays
from keras_ltpa.data.pipelines import dataset_size
from keras_ltpa.data.pipelines import image_augmenter
from keras_ltpa.data.pipelines import list_image_folder
from keras_ltpa.data.pipelines import load_dataset
from keras_ltpa.data.pipelines import parse_augment
from keras_ltpa.data.pipelines import pixel_statistics
from keras_ltpa.data.pipelines import resolve_label_mode

__all__ = [
    "AUGMENTATIONS",
    "BATCH_AUGMENTATIONS",
    "CIFAR10_CLASS_NAMES",
    "DataError",
    "FILE_ORDER_SEED",
    "LABEL_MODES",
    "PAPER_AUGMENTATION",
    "SHUFFLE_BUFFER_BYTES",
    "batch_augmenter",
    "check_images",
    "class_folders",
    "dataset_arrays",
    "dataset_size",
    "image_augmenter",
    "list_image_folder",
    "load_dataset",
    "parse_augment",
    "pixel_statistics",
    "resolve_label_mode",
]
