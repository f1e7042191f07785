"""Entry point MLflow runs when it loads a logged risk model ("models from code").

Not imported by the package: :func:`relapse_risk.models.pyfunc.log_risk_model`
hands this file's path to MLflow, which copies it into the model artefact and
executes it at load time. Declaring the model this way stores no pickle.
"""

import mlflow
from relapse_risk.models.pyfunc import RiskModelPyfunc

mlflow.models.set_model(RiskModelPyfunc())
