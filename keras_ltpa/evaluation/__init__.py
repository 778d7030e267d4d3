"""Scoring a trained model on each claim of the paper: accuracy, with flip
test-time augmentation (`accuracy`), attention localisation against
figure-ground masks (`localisation`, its mask sets in `masks`), FGSM
robustness (`robustness`), transfer (`domain_transfer`), Grad-CAM for the
baseline (`gradcam`), attention overlays (`overlays`, drawn by `heatmaps` and
laid out by `grids`), one report of them all (`report`), and the figures of
several training seeds compared with t-intervals (`seeds`). Never imports
`keras_ltpa.train`."""

from keras_ltpa.evaluation.accuracy import evaluate_classification
from keras_ltpa.evaluation.accuracy import flip_tta_outputs
from keras_ltpa.evaluation.accuracy import format_classification
from keras_ltpa.evaluation.domain_transfer import FEATURE_KINDS
from keras_ltpa.evaluation.domain_transfer import feature_model
from keras_ltpa.evaluation.domain_transfer import format_transfer
from keras_ltpa.evaluation.domain_transfer import linear_classifier_scores
from keras_ltpa.evaluation.domain_transfer import transfer
from keras_ltpa.evaluation.domain_transfer import transfer_features
from keras_ltpa.evaluation.gradcam import grad_cam
from keras_ltpa.evaluation.localisation import check_threshold
from keras_ltpa.evaluation.localisation import format_localization
from keras_ltpa.evaluation.localisation import gaussian_map
from keras_ltpa.evaluation.localisation import gaussian_prior
from keras_ltpa.evaluation.localisation import jaccard
from keras_ltpa.evaluation.localisation import localization
from keras_ltpa.evaluation.localisation import threshold_map
from keras_ltpa.evaluation.masks import MASK_THRESHOLD
from keras_ltpa.evaluation.masks import OBJECT_DISCOVERY_MASKS
from keras_ltpa.evaluation.masks import load_mask_dataset
from keras_ltpa.evaluation.masks import mask_dataset_layout
from keras_ltpa.evaluation.robustness import MAX_EPSILON
from keras_ltpa.evaluation.robustness import check_epsilons
from keras_ltpa.evaluation.robustness import fgsm_images
from keras_ltpa.evaluation.robustness import fgsm_robustness
from keras_ltpa.evaluation.robustness import format_robustness
from keras_ltpa.evaluation.robustness import gradient_sign
from keras_ltpa.evaluation.robustness import perturb
from keras_ltpa.evaluation.seeds import compare_seeds
from keras_ltpa.evaluation.seeds import paired_difference

__all__ = [
    "FEATURE_KINDS",
    "MASK_THRESHOLD",
    "MAX_EPSILON",
    "OBJECT_DISCOVERY_MASKS",
    "check_epsilons",
    "check_threshold",
    "compare_seeds",
    "evaluate_classification",
    "feature_model",
    "fgsm_images",
    "fgsm_robustness",
    "flip_tta_outputs",
    "format_classification",
    "format_localization",
    "format_robustness",
    "format_transfer",
    "gaussian_map",
    "gaussian_prior",
    "grad_cam",
    "gradient_sign",
    "jaccard",
    "linear_classifier_scores",
    "load_mask_dataset",
    "localization",
    "mask_dataset_layout",
    "paired_difference",
    "perturb",
    "threshold_map",
    "transfer",
    "transfer_features",
]
