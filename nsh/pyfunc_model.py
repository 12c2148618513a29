"""The MLflow pyfunc entry point, logged as code: MLflow runs this file to build the model when it loads it, so
nothing is pickled (the weights come from the checkpoint artifact, loaded weights-only)."""
import mlflow

from nsh.tracking import HasherModel

mlflow.models.set_model(HasherModel())
