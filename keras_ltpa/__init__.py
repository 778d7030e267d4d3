"""keras-ltpa: "Learn To Pay Attention" (Jetley et al., ICLR 2018) in Keras 3."""

from keras_ltpa import layers
from keras_ltpa.layers import AttentionPool
from keras_ltpa.layers import CompatibilityScore
from keras_ltpa.layers import LinearProjector
from keras_ltpa.model import attention_model
from keras_ltpa.model import build_model
from keras_ltpa.model import parse_variant

__version__ = "0.1.0"
