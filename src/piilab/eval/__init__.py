"""Evaluation: models x layers x test set -> outputs, scores and a report.

Modules: `text_metrics` (BLEU, ROUGE-L), `bertscore`, `pii_metrics` (precision, recall, F1, F5
over (value, label) pairs), `metrics` (every score of a run, with bootstrap intervals),
`evaluate` (`piilab eval`: decode, resume, score, results.json), `report` (`piilab report`).
"""

from piilab.eval.metrics import METRICS, score
from piilab.eval.report import build_report
from piilab.eval.run import EvalConfig, ModelUnderTest, evaluate

__all__ = ["METRICS", "EvalConfig", "ModelUnderTest", "build_report", "evaluate", "score"]
