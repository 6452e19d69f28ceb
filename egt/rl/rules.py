"""The RL reward's accuracy and format rules (docs/design.md §5.1), one class each, chosen by
``reward/accuracy=r1|strict|unifiedreward_think`` and ``reward/format=r1|strict|unifiedreward_think``.

``r1`` is R1-Reward's released reward server (openrlhf/models/remote_rm/math_verifier_mllm.py and
strict_math_verify.py, yfzhang114/r1_reward@3693413), what the paper trained with and the default;
``unifiedreward_think`` is UnifiedReward-Think's GRPO reward (UnifiedReward-Think/src/open_r1/grpo.py,
CodeGoat24/UnifiedReward@ff6f520);
``strict`` is egt's own parse (egt.data.prompt.parse_answer / format_ok), which the probe and the
evaluation always use for the judge's verdict whatever the RL reward's rule.

A rule follows the reward contract ``fn(prompts, completions, **kw) -> list[float]``; an accuracy rule
also gives the answer it read (:meth:`AccuracyRule.answer`, what the logic judge is told).
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from typing import Any, Mapping, Sequence

from egt.data.prompt import format_ok, parse_answer

__all__ = [
    "AccuracyRule",
    "FormatRule",
    "R1Accuracy",
    "R1Format",
    "StrictAccuracy",
    "StrictFormat",
    "UnifiedRewardThinkAccuracy",
    "UnifiedRewardThinkFormat",
]

_R1_FORMAT = re.compile(r"^<think>.*?</think><answer>.*?</answer>$", re.DOTALL)
_R1_ANSWER = re.compile(r"<answer>(.*?)</answer>", re.DOTALL)
_R1_PREFIXES = (
    "The best answer is",
    "The correct answer is",
    "The answer is",
    "The answer: ",
    "Answer: ",
    "The best option is",
    "The correct option is",
    "Best answer:",
    "Best option:",
)
_URT_FORMAT = re.compile(r"<think>.*?</think>\s*<answer>.*?</answer>", re.DOTALL)
_BOXED = re.compile(r"\\(?:boxed|fbox)\{([^{}]*)\}")
_NUMBER = re.compile(r"(?<![\w>])\d+(?:\.\d+)?(?!\w)")


class AccuracyRule(ABC):
    """R_acc ∈ {0, 1}: the answer the rule reads equals the label."""

    @abstractmethod
    def answer(self, completion: str) -> int | None:
        """The chosen response as this rule reads it (None: nothing it can read)."""

    def __call__(
        self,
        prompts: Sequence[Mapping[str, Any]],
        completions: Sequence[str],
        label: Sequence[int] | None = None,
        **kw: Any,
    ) -> list[float]:
        labels = [int(x) for x in label] if label is not None else [int(p["label"]) for p in prompts]
        return [float(self.answer(c) == y) for c, y in zip(completions, labels)]


class FormatRule(ABC):
    """R_format ∈ {0, 1}: the output has the required shape."""

    @abstractmethod
    def ok(self, completion: str) -> bool:
        """Whether ``completion`` is well-formed."""

    def __call__(self, prompts: Sequence[Any], completions: Sequence[str], **kw: Any) -> list[float]:
        return [float(self.ok(c)) for c in completions]


class StrictAccuracy(AccuracyRule):
    """egt's rule: exactly one ``<answer>`` holding 1 or 2 (egt.data.prompt.parse_answer), else 0.

    >>> StrictAccuracy()([{}] * 5, ["<answer>2</answer>", "Response 2", "<answer>Response 2</answer>",
    ...                             "<answer>\\\\boxed{2}</answer>", "<answer>2</answer><answer>1</answer>"],
    ...                  label=[2] * 5)
    [1.0, 0.0, 0.0, 0.0, 0.0]
    """

    def answer(self, completion: str) -> int | None:
        return parse_answer(completion)


class R1Accuracy(AccuracyRule):
    """R1-Reward's rule (``verify_math`` in openrlhf/models/remote_rm/math_verifier_mllm.py,
    yfzhang114/r1_reward@3693413), as it acts on a 1-or-2 answer: the text of the *first*
    ``<answer>…</answer>`` (stripped), or the whole stripped output when there is none; its answer
    prefixes ("The answer is", "Answer: ", …) removed; then the last ``\\boxed{…}`` if any, else the last
    number standing alone (math_verify 0.9's ``parse`` takes the last match: "Response 1 is better than
    Response 2" → 2; "<answer>2" unclosed → no number, as math_verify reads it). Not ported: the
    sympy/LaTeX equivalences of its math grader (irrelevant to 1/2) and its ``except: reward = 1.0``
    (an exception scores as correct; here nothing raises, docs/design.md §11).

    >>> R1Accuracy()([{}] * 6, ["<answer>2</answer>", "Response 2", "<answer>Response 2</answer>",
    ...                         "<answer>\\\\boxed{2}</answer>", "<answer>2</answer><answer>1</answer>",
    ...                         "<answer>12</answer>"], label=[2] * 6)
    [1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    >>> R1Accuracy().answer("<think>x</think><answer>The answer is Response 1 over Response 2</answer>")
    2
    """

    def answer(self, completion: str) -> int | None:
        text = (completion or "").strip()
        m = _R1_ANSWER.search(text)
        text = m.group(1).strip() if m else text
        for prefix in _R1_PREFIXES:
            text = text.replace(prefix, "")
        boxed = _BOXED.findall(text)
        numbers = _NUMBER.findall(boxed[-1] if boxed else text)
        if not numbers:
            return None
        value = float(numbers[-1])
        return int(value) if value.is_integer() else None


class StrictFormat(FormatRule):
    """egt's rule (egt.data.prompt.format_ok): the stripped output is
    ``<think>…</think>\\s*<answer>…</answer>``, exactly one of each of the four tags.

    >>> StrictFormat()([{}] * 3, ["<think>a</think>\\n<answer>2</answer>", "<think>a</think></think><answer>2</answer>",
    ...                           "<think>a</think><answer>2</answer>"])
    [1.0, 0.0, 1.0]
    """

    def ok(self, completion: str) -> bool:
        return format_ok(completion)


class R1Format(FormatRule):
    """R1-Reward's rule (``verify_format`` in openrlhf/models/remote_rm/math_verifier_mllm.py,
    yfzhang114/r1_reward@3693413, on the stripped response): ``^<think>.*?</think><answer>.*?</answer>$``
    (DOTALL) with one ``<think>`` and one ``<answer>``; nothing, not even a newline, between ``</think>``
    and ``<answer>``, and the closing tags are not counted (repeats pass).

    >>> R1Format()([{}] * 3, ["<think>a</think>\\n<answer>2</answer>", "<think>a</think></think><answer>2</answer>",
    ...                       "<think>a</think><answer>2</answer>"])
    [0.0, 1.0, 1.0]
    """

    def ok(self, completion: str) -> bool:
        text = (completion or "").strip()
        return _R1_FORMAT.match(text) is not None and text.count("<think>") == 1 and text.count("<answer>") == 1


class UnifiedRewardThinkAccuracy(AccuracyRule):
    """UnifiedReward-Think's rule (``accuracy_reward`` / ``extract_answer`` in
    UnifiedReward-Think/src/open_r1/grpo.py, CodeGoat24/UnifiedReward@ff6f520): exact string match of the
    *first* ``<answer>…</answer>``'s content, stripped (the whole stripped output when there is none), with
    the solution. Their solutions are sentences ("Image 1 is better") that their prompts ask the judge to
    copy; egt's prompt asks for the digit, so the solution here is ``str(label)``: "1" or "2". An empty
    output scores 0, as theirs. Unlike egt's strict rule, a second ``<answer>`` or an untagged bare digit
    does not fail it.

    >>> UnifiedRewardThinkAccuracy()([{}] * 6, ["<answer> 2 </answer>", "2", "<answer>Response 2</answer>",
    ...                                         "<answer>2</answer><answer>1</answer>", "", "<answer>2.</answer>"],
    ...                              label=[2] * 6)
    [1.0, 1.0, 0.0, 1.0, 0.0, 0.0]
    """

    def answer(self, completion: str) -> int | None:
        if not completion:
            return None
        m = _R1_ANSWER.search(completion)
        text = m.group(1).strip() if m else completion.strip()
        return int(text) if text in ("1", "2") else None


class UnifiedRewardThinkFormat(FormatRule):
    """UnifiedReward-Think's rule (``format_reward`` in UnifiedReward-Think/src/open_r1/grpo.py,
    CodeGoat24/UnifiedReward@ff6f520): ``re.match(r"<think>.*?</think>\\s*<answer>.*?</answer>", output,
    re.DOTALL)`` on the output as decoded: anchored at the start only (no leading whitespace, anything may
    follow the first ``</answer>``), whitespace allowed between ``</think>`` and ``<answer>``, tags not
    counted (repeats pass).

    >>> UnifiedRewardThinkFormat()([{}] * 5, ["<think>a</think>\\n <answer>2</answer>",
    ...     "<think>a</think></think><answer>2</answer><answer>1</answer>", " <think>a</think><answer>2</answer>",
    ...     "<think>a</think>b<answer>2</answer>", "<think>a</think><answer>2</answer> and more"])
    [1.0, 1.0, 0.0, 0.0, 1.0]
    """

    def ok(self, completion: str) -> bool:
        return _URT_FORMAT.match(completion or "") is not None
