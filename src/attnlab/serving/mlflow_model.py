"""The code of attnlab's MLflow text models (MLflow's "models from code"): MLflow copies this
file into each logged model and runs it when the model is loaded, instead of unpickling an
object. The weights and vocabularies come from the model's ``predictor`` artifact."""

import mlflow

from attnlab.serving import TextModel

mlflow.models.set_model(TextModel())
