"""relapse_risk.generator: a generated county that stands in for a county's information system.

It writes dataset folders that keep the data contract, plus the oracle's
truth file beside them, and imports nothing else of the project.

    from relapse_risk.generator import CountyConfig, TruthOptions, generate
    generate(CountyConfig(households=20_000, seed=7), Path("county"), TruthOptions())
"""

from .calibration import Figure, calibration_report, rule_panel
from .config import CountyConfig, Dynamics, Profile, Scenario, TruthOptions
from .run import GenerationResult, default_truth_path, generate

__all__ = [
    "CountyConfig",
    "Dynamics",
    "Figure",
    "GenerationResult",
    "Profile",
    "Scenario",
    "TruthOptions",
    "calibration_report",
    "default_truth_path",
    "generate",
    "rule_panel",
]
