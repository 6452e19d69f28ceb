"""Logic judges for R_logic (docs/design.md §5.1): does the reasoning support the chosen answer?

``rule`` (default, offline), ``hf`` (a local model), ``http`` (an OpenAI-compatible
endpoint); chosen by ``reward/judge=…``.
"""

from egt.rl.judges.base import JudgeItem, LogicJudge, consistency_prompt, parse_consistency

__all__ = ["JudgeItem", "LogicJudge", "consistency_prompt", "parse_consistency"]
