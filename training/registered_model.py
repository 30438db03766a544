"""MLflow models-from-code entry point: the registered model's python_model file. It imports the
model code by the name it travels under in the model's code_paths."""

from longview_recommender.packaged import PackagedModel
from mlflow.models import set_model

set_model(PackagedModel())
