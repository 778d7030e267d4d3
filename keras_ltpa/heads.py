"""The paper's attention head and classifier, applied to a backbone's taps.

`attention_head` turns each local feature map l^s and the global feature g
into the attention-pooled vector g_a^s (Jetley et al., ICLR 2018, Sec. 3);
`classifier` maps those vectors (or g alone, for the plain baseline) to the
class logits.
"""

import keras

from keras_ltpa import layers as ltpa_layers


def attention_head(local_features, global_features, compatibility, normalization, projector):
    """The paper's attention estimators, one per local feature map:
    project l^s to g's width when they differ, score every position
    (`CompatibilityScore`), normalise and pool (`AttentionPool`).

    Returns:
        The attention-pooled vectors `[g_a^1, ..., g_a^S]`.
    """
    global_width = global_features.shape[-1]
    pooled = []
    for index, features in enumerate(local_features, start=1):
        if features.shape[-1] != global_width:
            if not projector:
                raise ValueError(
                    f"Local features of attention layer {index} have "
                    f"{features.shape[-1]} channels but g has {global_width}, "
                    "and `projector=False`. Set projector=True (the paper "
                    "projects l to g's width) or tap layers of g's width."
                )
            features = ltpa_layers.LinearProjector(
                global_width, name=f"projector_{index}"
            )(features)
        scores = ltpa_layers.CompatibilityScore(
            compatibility, name=f"compatibility_{index}"
        )(features, global_features)
        vector, _ = ltpa_layers.AttentionPool(
            normalization, name=f"attention_pool_{index}"
        )(features, scores)
        pooled.append(vector)
    return pooled


def classifier(features, num_classes, aggregation):
    """Logits from the classifier's input vectors: one linear layer on their
    concatenation ("concat", or on g alone for the baseline), or one per
    vector with the class probabilities averaged ("indep")."""
    if aggregation == "concat" or len(features) == 1:
        joined = (
            features[0]
            if len(features) == 1
            else keras.layers.Concatenate(name="concat_pooled")(features)
        )
        return keras.layers.Dense(num_classes, name="classifier", dtype="float32")(joined)
    per_layer = [
        keras.layers.Dense(num_classes, name=f"classifier_{index}", dtype="float32")(vector)
        for index, vector in enumerate(features, start=1)
    ]
    return ltpa_layers.ProbabilityAverage(name="probability_average")(per_layer)


def attention_logits(local_features, global_features, num_classes, projector, **head):
    """The logits of a backbone's taps: the attention head on each local
    feature map, then the classifier on the pooled vectors (on g alone when
    there are no local features: the plain baseline).

    Args:
        local_features: `[l^1, ..., l^S]`, (N, H_s, W_s, C_s) each.
        global_features: `g`, (N, C).
        num_classes: int.
        projector: bool (see `attention_head`).
        **head: `compatibility`, `normalization` and `aggregation`.
    """
    pooled = attention_head(
        local_features, global_features, head["compatibility"], head["normalization"], projector
    )
    return classifier(pooled or [global_features], num_classes, head["aggregation"])
