"""`saved_models/models.config` is a TF Serving ModelServerConfig that serves
the exports where this package writes them."""

import os

from keras_ltpa.serving import DEFAULT_MODEL_NAME
from keras_ltpa.train import runs
from tests.conftest import require_package

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CONFIG = os.path.join(REPO_ROOT, runs.EXPORT_DIR, "models.config")
# docs/serving.md mounts saved_models/ at /models in the container.
MOUNT = "/models"


def test_models_config_parses_as_tf_serving_model_server_config():
    require_package("tensorflow_serving", "serving")
    from google.protobuf import text_format
    from tensorflow_serving.config import model_server_config_pb2

    with open(CONFIG) as f:
        config = text_format.Parse(f.read(), model_server_config_pb2.ModelServerConfig())
    assert config.WhichOneof("config") == "model_config_list"
    entries = list(config.model_config_list.config)
    assert [entry.name for entry in entries] == [DEFAULT_MODEL_NAME]
    (entry,) = entries
    assert entry.base_path == f"{MOUNT}/{DEFAULT_MODEL_NAME}"
    assert entry.model_platform == "tensorflow"
    assert entry.model_version_policy.WhichOneof("policy_choice") == "latest"
    assert entry.model_version_policy.latest.num_versions == 1
    # The mount in the file's own docker command is the one the paths assume.
    assert f"target={MOUNT} " in open(CONFIG).read()
