"""Evaluation: models x layers x test set -> outputs, scores and a report.

Modules: `text_metrics` (BLEU, ROUGE-L), `bertscore`, `pii_metrics` (precision, recall, F1, F5
over (value, label) pairs), `metrics` (every score of a run, with bootstrap intervals),
`config` (what an eval is), `run` (`piilab eval`: decode, resume, score, results.json),
`inputs` (what its outputs depend on), `report` (`piilab report`).
"""

from piilab.eval.metrics import METRICS, score
from piilab.eval.report import build_report
from piilab.eval.config import EvalConfig, ModelUnderTest
from piilab.eval.run import evaluate

__all__ = ["METRICS", "EvalConfig", "ModelUnderTest", "build_report", "evaluate", "score"]
