"""The code of attnlab's MLflow models (MLflow's "models from code"): MLflow copies this file
into each logged model and runs it when the model is loaded, instead of unpickling an object.
The weights and what reads the inputs come from the model's ``predictor`` artifact."""

import mlflow

from attnlab.serving import PredictorModel

mlflow.models.set_model(PredictorModel())
