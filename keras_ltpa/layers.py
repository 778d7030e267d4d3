"""The attention layers of "Learn To Pay Attention" (Jetley et al., ICLR 2018).

Each equation of the paper's Section 3 lives in exactly one layer here:

- `LinearProjector`: projects local features `l_i` to the width of `g`.
- `CompatibilityScore`: `c_i = <u, l_i + g>` ("pc") or `c_i = <l_i, g>` ("dp").
- `AttentionPool`: `a = softmax(c)` and `g_a = sum_i a_i l_i` ("softmax"), or
  `a = sigmoid(c)` and `g_a = mean_i a_i l_i` ("sigmoid").

All maths is written in `keras.ops`, so the same layers run on the
TensorFlow, JAX and PyTorch backends. Tensors are channels-last and every
layer accepts a dynamic batch, height and width.

Reference: Jetley, Lord, Lee, Torr. "Learn To Pay Attention". ICLR 2018.
https://arxiv.org/abs/1804.02391
"""

import keras
from keras import ops

from keras_ltpa.utils.checks import check_choice

COMPATIBILITY_MODES = ("pc", "dp")
NORMALIZATIONS = ("softmax", "sigmoid")


def _check_rank(layer, argument, shape, rank):
    if shape is not None and len(shape) != rank:
        raise ValueError(
            f"{type(layer).__name__} expects `{argument}` of rank {rank}; "
            f"received shape {tuple(shape)}."
        )


@keras.saving.register_keras_serializable(package="keras_ltpa")
class LinearProjector(keras.layers.Layer):
    """Linear 1x1 projection of local features to `units` channels.

    The paper projects the local features `l_i` of a layer to the width of the
    global feature `g` when the two differ, so that `l_i + g` and `<l_i, g>`
    are defined:

        l'_i = W l_i        (W: units x C, no bias)

    Args:
        units: int. Number of output channels (the width of `g`).
        kernel_initializer: initializer for `W`.
        **kwargs: standard `keras.layers.Layer` arguments (`name`, `dtype`).

    Example:
    >>> import numpy as np
    >>> projector = LinearProjector(512)
    >>> tuple(projector(np.zeros((2, 32, 32, 256), "float32")).shape)
    (2, 32, 32, 512)

    Reference: Jetley et al., "Learn To Pay Attention", ICLR 2018, Sec. 3.1.
    """

    def __init__(self, units, kernel_initializer="he_normal", **kwargs):
        super().__init__(**kwargs)
        if not isinstance(units, int) or isinstance(units, bool) or units < 1:
            raise ValueError(
                f"`units` must be a positive integer; received units={units!r}."
            )
        self.units = units
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, input_shape):
        _check_rank(self, "local_features", input_shape, 4)
        self.kernel = self.add_weight(
            name="kernel",
            shape=(input_shape[-1], self.units),
            initializer=self.kernel_initializer,
        )

    def call(self, local_features):
        return ops.matmul(local_features, self.kernel)

    def compute_output_shape(self, input_shape):
        return tuple(input_shape[:-1]) + (self.units,)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "units": self.units,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_ltpa")
class CompatibilityScore(keras.layers.Layer):
    """Compatibility score between each local feature and the global feature.

    For local features `l_i` (N, H, W, C) and the global feature `g` (N, C):

        "pc" (parametrised):  c_i = <u, l_i + g>      (u: C learned weights)
        "dp" (dot product):   c_i = <l_i, g>

    Args:
        mode: `"pc"` or `"dp"`.
        use_bias: bool. `"pc"` only: add a learned scalar to `c_i`. The paper
            (and its public PyTorch code) has none.
        kernel_initializer: initializer for `u`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        local_features: (N, H, W, C) tensor.
        global_features: (N, C) tensor.

    Returns:
        scores: (N, H, W) tensor of raw compatibility scores.

    Example:
    >>> import numpy as np
    >>> score = CompatibilityScore("pc")
    >>> l, g = np.ones((2, 8, 8, 16), "float32"), np.ones((2, 16), "float32")
    >>> tuple(score(l, g).shape)
    (2, 8, 8)

    Reference: Jetley et al., "Learn To Pay Attention", ICLR 2018, Eq. 2.
    """

    def __init__(
        self, mode="pc", use_bias=False, kernel_initializer="he_normal", **kwargs
    ):
        super().__init__(**kwargs)
        check_choice("mode", mode, COMPATIBILITY_MODES)
        self.mode = mode
        self.use_bias = use_bias
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    def build(self, local_features_shape, global_features_shape):
        _check_rank(self, "local_features", local_features_shape, 4)
        _check_rank(self, "global_features", global_features_shape, 2)
        local_width = local_features_shape[-1]
        global_width = global_features_shape[-1]
        if None not in (local_width, global_width) and local_width != global_width:
            raise ValueError(
                "CompatibilityScore needs local and global features of the same "
                f"width; received local_features with {local_width} channels and "
                f"global_features with {global_width}. Project the local "
                "features with LinearProjector first."
            )
        if self.mode == "pc":
            self.kernel = self.add_weight(
                name="kernel",
                shape=(local_width,),
                initializer=self.kernel_initializer,
            )
            if self.use_bias:
                self.bias = self.add_weight(
                    name="bias", shape=(), initializer="zeros"
                )

    def call(self, local_features, global_features):
        g = global_features[:, None, None, :]
        if self.mode == "dp":
            return ops.sum(local_features * g, axis=-1)
        scores = ops.tensordot(local_features + g, self.kernel, axes=1)
        if self.use_bias:
            scores = scores + self.bias
        return scores

    def compute_output_shape(self, local_features_shape, global_features_shape):
        return tuple(local_features_shape[:-1])

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "mode": self.mode,
                "use_bias": self.use_bias,
                "kernel_initializer": keras.initializers.serialize(
                    self.kernel_initializer
                ),
            }
        )
        return config


@keras.saving.register_keras_serializable(package="keras_ltpa")
class AttentionPool(keras.layers.Layer):
    """Normalises compatibility scores and pools the local features with them.

    With scores `c_i` over the n = H*W positions of local features `l_i`:

        "softmax":  a_i = exp(c_i) / sum_j exp(c_j),   g_a = sum_i a_i l_i
        "sigmoid":  a_i = sigmoid(c_i),                g_a = (1/n) sum_i a_i l_i

    The normalisation is computed in float32 even under a mixed-precision
    policy (so a softmax map sums to 1), and the pooled vector is cast back
    to the layer's compute dtype. The attention map is returned in float32.

    Args:
        normalization: `"softmax"` (the paper's) or `"sigmoid"`.
        **kwargs: standard `keras.layers.Layer` arguments.

    Call arguments:
        local_features: (N, H, W, C) tensor.
        scores: (N, H, W) tensor from `CompatibilityScore`.

    Returns:
        A tuple `(pooled, attention)`: `pooled` (N, C) is `g_a`, `attention`
        (N, H, W) is the map `a`.

    Example:
    >>> import numpy as np
    >>> pool = AttentionPool("softmax")
    >>> l, c = np.ones((2, 8, 8, 16), "float32"), np.zeros((2, 8, 8), "float32")
    >>> pooled, attention = pool(l, c)
    >>> tuple(pooled.shape), tuple(attention.shape)
    ((2, 16), (2, 8, 8))

    Reference: Jetley et al., "Learn To Pay Attention", ICLR 2018, Eq. 3-4
    and Sec. 3.1 ("sigmoid" normalisation).
    """

    def __init__(self, normalization="softmax", **kwargs):
        super().__init__(**kwargs)
        check_choice("normalization", normalization, NORMALIZATIONS)
        self.normalization = normalization

    def build(self, local_features_shape, scores_shape):
        _check_rank(self, "local_features", local_features_shape, 4)
        _check_rank(self, "scores", scores_shape, 3)

    def call(self, local_features, scores):
        scores = ops.cast(scores, "float32")
        local_features_32 = ops.cast(local_features, "float32")
        if self.normalization == "softmax":
            # Softmax over all H*W positions; subtracting the max keeps exp finite.
            shifted = scores - ops.max(scores, axis=(1, 2), keepdims=True)
            exponentials = ops.exp(shifted)
            attention = exponentials / ops.sum(
                exponentials, axis=(1, 2), keepdims=True
            )
            pooled = ops.einsum("nhw,nhwc->nc", attention, local_features_32)
        else:
            attention = ops.sigmoid(scores)
            pooled = ops.mean(
                attention[..., None] * local_features_32, axis=(1, 2)
            )
        return ops.cast(pooled, self.compute_dtype), attention

    def compute_output_shape(self, local_features_shape, scores_shape):
        pooled_shape = (local_features_shape[0], local_features_shape[-1])
        return pooled_shape, tuple(scores_shape)

    def compute_output_spec(self, local_features, scores):
        pooled_shape, attention_shape = self.compute_output_shape(
            local_features.shape, scores.shape
        )
        return (
            keras.KerasTensor(pooled_shape, dtype=self.compute_dtype),
            keras.KerasTensor(attention_shape, dtype="float32"),
        )

    def get_config(self):
        config = super().get_config()
        config.update({"normalization": self.normalization})
        return config


@keras.saving.register_keras_serializable(package="keras_ltpa")
class ProbabilityAverage(keras.layers.Layer):
    """Logits whose softmax is the mean of several classifiers' softmaxes.

    The paper's "indep" aggregation averages the class probabilities of one
    classifier per attention layer. Returning `log(mean_s softmax(z_s))`
    keeps the model's single output a logit tensor: its softmax is exactly
    the averaged probabilities, and cross-entropy from logits on it is the
    cross-entropy of the averaged prediction.

        logits = logsumexp_s(log_softmax(z_s)) - log(S)

    Call arguments:
        logits_list: a list of S tensors (N, K).

    Returns:
        (N, K) float32 logits.
    """

    def call(self, logits_list):
        log_probabilities = ops.stack(
            [ops.log_softmax(ops.cast(z, "float32"), axis=-1) for z in logits_list],
            axis=0,
        )
        return ops.logsumexp(log_probabilities, axis=0) - ops.log(
            float(len(logits_list))
        )

    def compute_output_shape(self, logits_shapes):
        return tuple(logits_shapes[0])

    def compute_output_spec(self, logits_list):
        return keras.KerasTensor(logits_list[0].shape, dtype="float32")
