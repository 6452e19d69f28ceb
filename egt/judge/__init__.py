"""The trained judge as a product (docs/judge.md): the Python API (:class:`Judge`, :class:`Verdict`), best-of-N
ranking (``python -m egt.judge rank``), reward functions for TRL and verl (:mod:`egt.judge.adapters`), the
judge card (:mod:`egt.judge.card`) and the model card (:mod:`egt.judge.model_card`)."""

from egt.judge.api import Judge, Verdict

__all__ = ["Judge", "Verdict"]
