"""A reward with variance on an untrained model (its outputs never parse), so RL tests see
non-zero advantages: shorter completions score higher. Importable by the CLI subprocess as
``tests.helpers.rl_stub.ShortIsGood`` (the repo root is on its path)."""

from egt.rl.reward import CompositeReward, RewardTerms


class ShortIsGood(CompositeReward):
    def terms(self, prompts, completions, label=None, **kw):
        base = super().terms(prompts, completions, label)
        bonus = [1.0 - min(len(c), 200) / 200 for c in completions]
        return RewardTerms(
            [r + b for r, b in zip(base.reward, bonus)], base.acc, base.logic, base.format, base.verdicts
        )
