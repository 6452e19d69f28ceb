"""A reward with variance on an untrained model (its outputs never parse), so RL tests see
non-zero advantages: shorter completions score higher. Importable by the CLI subprocess as
``tests.helpers.rl_stub.ShortIsGood`` (the repo root is on its path)."""

import hashlib
from collections import Counter

from egt.rl.reward import CompositeReward, RewardTerms


class ShortIsGood(CompositeReward):
    def terms(self, prompts, completions, label=None, **kw):
        base = super().terms(prompts, completions, label)
        bonus = [1.0 - min(len(c), 200) / 200 for c in completions]
        return RewardTerms(
            [r + b for r, b in zip(base.reward, bonus)], base.acc, base.logic, base.format, base.verdicts
        )


def varies(sample_id: str) -> bool:
    """Whether :class:`AccVariesByPrompt` gives this prompt's completions different accuracies (about a
    third of ids: sha256 of the id ≡ 0 mod 3)."""
    return int(hashlib.sha256(str(sample_id).encode()).hexdigest(), 16) % 3 == 0


class AccVariesByPrompt(ShortIsGood):
    """R_acc by prompt, whatever the completions say: 1, 0, 1, … over a group when ``varies(id)``, else 0
    for every completion (a zero-variance group); R = R_acc + ShortIsGood's length bonus (so R still varies
    in a dropped group). ``reward._target_=tests.helpers.rl_stub.AccVariesByPrompt``."""

    def terms(self, prompts, completions, label=None, **kw):
        t = super().terms(prompts, completions, label)
        seen: Counter = Counter()
        acc = []
        for p in prompts:
            acc.append(float(varies(p["id"]) and seen[p["id"]] % 2 == 0))
            seen[p["id"]] += 1
        reward = [a + 1.0 - min(len(c), 200) / 200 for a, c in zip(acc, completions)]
        return RewardTerms(reward, acc, t.logic, t.format, t.verdicts)
