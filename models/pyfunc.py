"""The risk model as an MLflow pyfunc, so the registry holds booster and calibrator together.

MLflow's built-in LightGBM flavour would return class labels and lose the
calibrator; this wrapper returns the calibrated ``risk_score`` and keeps the
whole :class:`RiskModel` reachable, so serving can explain what it scores:

    info = log_risk_model(model, "risk_model", features.head(), registered_model_name="relapse-risk")
    model = load_risk_model("models:/relapse-risk@champion")   # a RiskModel again

The model is logged "from code" (``pyfunc_entry.py``), so no pickle is stored;
that entry point imports this module, so the ``relapse_risk`` package must be
importable wherever the model is loaded (it is in this project's environment
and in any image built from it).
"""

from __future__ import annotations

import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import mlflow
import pandas as pd
from mlflow.models import ModelSignature
from mlflow.models.model import ModelInfo

# From the module itself: the attribute mlflow.pyfunc is a lazy loader that type checkers
# cannot see through. Subclassing loads the module at import either way.
from mlflow.pyfunc import PythonModel, PythonModelContext
from mlflow.types.schema import ColSpec, Schema, TensorSpec

from .model import RiskModel

ARTIFACT_KEY = "risk_model"
SCORE_COLUMN = "risk_score"
ID_COLUMN = "household_id"

_ENTRY_POINT = Path(__file__).with_name("pyfunc_entry.py")

# Packages the wrapper needs at load time; pinned to what trained the model.
_RUNTIME_PACKAGES = ("lightgbm", "numpy", "pandas", "scikit-learn", "mlflow")


class RiskModelPyfunc(PythonModel):
    """Scores a feature frame with a saved :class:`RiskModel`.

    Input: one row per household with the model's feature columns as float64
    (any order; ``household_id`` is optional and ignored; see
    :func:`model_input_frame`). Output: a frame with
    one ``risk_score`` column, the calibrated probability, in input row order.
    """

    def load_context(self, context: PythonModelContext) -> None:
        self.model = RiskModel.load(context.artifacts[ARTIFACT_KEY])

    def predict(
        self,
        context: PythonModelContext | None,
        model_input: pd.DataFrame,
        params: dict[str, Any] | None = None,
    ) -> pd.DataFrame:
        frame = model_input if isinstance(model_input, pd.DataFrame) else pd.DataFrame(model_input)
        return pd.DataFrame({SCORE_COLUMN: self.model.predict_proba(frame)}, index=frame.index)


def model_signature(model: RiskModel) -> ModelSignature:
    """Feature columns as doubles (integer codes included), ``household_id`` optional; ``risk_score`` out."""
    inputs: list[ColSpec | TensorSpec] = [ColSpec("string", ID_COLUMN, required=False)]
    inputs += [ColSpec("double", name) for name in model.feature_names_]
    return ModelSignature(inputs=Schema(inputs), outputs=Schema([ColSpec("double", SCORE_COLUMN)]))


def model_input_frame(model: RiskModel, features: pd.DataFrame) -> pd.DataFrame:
    """``features`` as the pyfunc's schema wants them: declared columns only, features as float64.

    MLflow's schema enforcement refuses int64 -> float64 (it is not lossless
    above 2**53), so integer-typed feature columns (counts, category codes)
    must be cast before calling the pyfunc's ``predict``. :class:`RiskModel`
    itself accepts any numeric dtype.
    """
    columns = [ID_COLUMN] if ID_COLUMN in features.columns else []
    frame = features.loc[:, columns + list(model.feature_names_)].copy()
    if ID_COLUMN in frame.columns:
        frame[ID_COLUMN] = frame[ID_COLUMN].astype(str)
    frame[list(model.feature_names_)] = model.feature_matrix(frame)
    return frame


def runtime_requirements() -> list[str]:
    requirements = []
    for package in _RUNTIME_PACKAGES:
        try:
            requirements.append(f"{package}=={version(package)}")
        except PackageNotFoundError:
            requirements.append(package)
    return requirements


def log_risk_model(
    model: RiskModel,
    name: str,
    input_example: pd.DataFrame,
    registered_model_name: str | None = None,
    *,
    example_rows: int = 5,
) -> ModelInfo:
    """Log ``model`` as a pyfunc into the active MLflow run (and register it when a name is given).

    ``input_example`` is a feature frame; its first ``example_rows`` rows are
    stored as the example. The model's metadata records the feature pipeline
    version, the best iteration and the feature names, so a registry entry can
    be checked against the features it will be fed.
    """
    if not model.is_fitted:
        raise ValueError("log_risk_model needs a fitted RiskModel")
    example = model_input_frame(model, input_example.head(example_rows))
    metadata = {
        "feature_pipeline_version": model.feature_pipeline_version,
        "best_iteration": model.best_iteration_,
        "calibration": model.calibration,
        "feature_names": list(model.feature_names_),
    }
    with tempfile.TemporaryDirectory(prefix="risk_model_") as folder:
        saved = model.save(Path(folder) / ARTIFACT_KEY)
        info: ModelInfo = mlflow.pyfunc.log_model(
            name=name,
            python_model=str(_ENTRY_POINT),
            artifacts={ARTIFACT_KEY: str(saved)},
            signature=model_signature(model),
            input_example=example,
            registered_model_name=registered_model_name,
            pip_requirements=runtime_requirements(),
            metadata=metadata,
        )
        return info


def load_risk_model(uri: str) -> RiskModel:
    """Load a logged or registered risk model (``runs:/``, ``models:/NAME@alias``, ...) as a RiskModel."""
    wrapper = mlflow.pyfunc.load_model(uri).unwrap_python_model()
    if not isinstance(wrapper, RiskModelPyfunc):
        raise TypeError(f"{uri} is not a relapse risk model (its pyfunc is {type(wrapper).__name__})")
    return wrapper.model


def load_model_reference(reference: str) -> RiskModel:
    """A saved model folder (``RiskModel.save``) or an MLflow model URI, as a RiskModel."""
    folder = Path(reference)
    if folder.is_dir():
        return RiskModel.load(folder)
    if "://" not in reference and not reference.startswith(("models:", "runs:")):
        raise FileNotFoundError(f"{reference}: neither a model folder nor an MLflow model URI")
    return load_risk_model(reference)
