"""A trained judge as the reward of the next RL run: a TRL ``reward_funcs`` function and a verl-style
``compute_score``. Neither imports TRL or verl.

Score of a completion against a reference answer (both orders, 2 judge calls): the fraction of the orders
with a verdict whose verdict picks the completion — 1 (both pick it), ½ (the orders disagree: a position
tie), 0 (both pick the reference); None (TRL: NaN, the row is left out) when neither order has a verdict,
never a guess. Against its group (``mode="group"``): the completion's round-robin points over the other
completions for the same prompt (win 1, tie ½, as :class:`egt.judge.tournament.RoundRobin`), divided by
G − 1, so both scores are fractions in [0, 1]. egt's choices: R1-Reward / UnifiedReward score pairs, not
completions; TRL's contract (trl/trainer/grpo_trainer.py ``_calculate_rewards``, TRL 1.16) passes every
dataset column as a keyword, a prompt's G completions as consecutive rows.
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

from egt.judge.tournament import RoundRobin, match_from

__all__ = ["TRLJudgeReward", "verl_compute_score", "text_of"]


def text_of(message: Any) -> str:
    """The text of a TRL prompt / completion: a string, or a conversation (the last message's text parts)."""
    if isinstance(message, str):
        return message
    if isinstance(message, Mapping):
        content = message.get("content", "")
        if isinstance(content, str):
            return content
        return "".join(p.get("text", "") for p in content if isinstance(p, Mapping) and p.get("type") == "text")
    if isinstance(message, Sequence) and message:
        users = [m for m in message if isinstance(m, Mapping) and m.get("role") == "user"]
        return text_of(users[-1] if users else message[-1])
    raise ValueError(f"cannot read text from {type(message).__name__}: {message!r:.80}")


def _images(row_images: Any) -> list:
    if row_images is None:
        return []
    return list(row_images) if isinstance(row_images, (list, tuple)) else [row_images]


def _against(judge: Any, rows: list[dict[str, Any]]) -> list[float | None]:
    """Each row's completion ("response_1") against its reference ("response_2"), both orders."""
    out = []
    for v in judge.compare_many(rows, order="both", on_bad_sample="error"):
        picks = [d for d in (v.verdict, v.swapped_verdict) if d is not None]
        out.append(sum(d == 1 for d in picks) / len(picks) if picks else None)
    return out


def _group_scores(judge: Any, images: list, question: str, completions: list[str]) -> list[float]:
    """Round-robin points / (n − 1) over the n completions of one prompt. An empty completion plays no match:
    it scores 0 and each other completion wins against it without a judge call."""
    n = len(completions)
    if n < 2:
        raise ValueError("mode='group' needs at least two completions per prompt (TRL num_generations >= 2)")
    players = [i for i, c in enumerate(completions) if c.strip()]

    def play(pairs: Sequence[tuple[int, int]]) -> list:
        items = [
            {
                "images": images,
                "question": question,
                "response_1": completions[players[a]],
                "response_2": completions[players[b]],
            }
            for a, b in pairs
        ]
        return [match_from(a, b, v) for (a, b), v in zip(pairs, judge.compare_many(items, order="both"))]

    points = RoundRobin().run(len(players), play)[1] if len(players) > 1 else [0.0] * len(players)
    out = [0.0] * n
    for k, i in enumerate(players):
        out[i] = (points[k] + (n - len(players))) / (n - 1)  # + a win over every empty completion
    return out


class TRLJudgeReward:
    """``fn(prompts, completions, **columns) -> list[float | None]`` for TRL's ``reward_funcs`` (GRPOTrainer and
    the trainers sharing its contract), scoring each completion with ``judge`` (a :class:`egt.judge.Judge`).

    ``mode="reference"``: against the dataset's ``reference_column``; ``"group"``: against the other
    completions of its prompt. Images come from ``image_column`` (one image or a list a row; TRL's VLM
    datasets use ``image`` / ``images``); the question from ``question_column`` when set, else the prompt's
    last user text. An empty completion scores 0 (no judge call); it cannot be the better response.

    >>> class Always1:  # a stand-in judge that always prefers the response shown first
    ...     def compare_many(self, items, order="both", on_bad_sample="error"):
    ...         from egt.judge.api import Verdict
    ...         return [Verdict(1, None, None, None, "", Verdict(1, None, None, None, ""), 2, False) for _ in items]
    >>> fn = TRLJudgeReward(Always1(), reference_column="solution")
    >>> fn(["How many?"], ["Two."], image=["img.png"], solution=["Three."])  # a position tie
    [0.5]
    """

    def __init__(
        self,
        judge: Any,
        mode: str = "reference",
        reference_column: str = "solution",
        image_column: str = "image",
        question_column: str | None = None,
    ) -> None:
        if mode not in ("reference", "group"):
            raise ValueError(f"mode={mode!r}: write 'reference' or 'group'")
        self.judge, self.mode = judge, mode
        self.reference_column, self.image_column, self.question_column = reference_column, image_column, question_column
        self.__name__ = f"egt_judge_{mode}"  # TRL logs each reward function under its __name__

    def __call__(self, prompts: Sequence[Any], completions: Sequence[Any], **columns: Any) -> list[float | None]:
        n = len(completions)
        column = columns.get(self.image_column)
        if column is None:
            have = sorted(k for k in columns if not k.startswith(("trainer_state", "log_", "completion_ids")))
            raise KeyError(f"TRLJudgeReward: no image column {self.image_column!r} in the batch (columns: {have})")
        questions = columns[self.question_column] if self.question_column else [text_of(p) for p in prompts]
        texts = [text_of(c) for c in completions]
        if self.mode == "group":
            return self._groups(prompts, questions, texts, column)
        if self.reference_column not in columns:
            raise KeyError(f"TRLJudgeReward: no reference column {self.reference_column!r} in the batch")
        refs = [text_of(r) for r in columns[self.reference_column]]
        out: list[float | None] = [0.0] * n
        todo = [i for i in range(n) if texts[i].strip()]
        rows = [
            {"images": _images(column[i]), "question": questions[i], "response_1": texts[i], "response_2": refs[i]}
            for i in todo
        ]
        for i, s in zip(todo, _against(self.judge, rows)):
            out[i] = s
        return out

    def _groups(self, prompts: Sequence[Any], questions: Sequence[str], texts: list[str], column: Any) -> list:
        out: list[float | None] = []
        start = 0
        while start < len(texts):  # a group: consecutive rows with the same prompt
            end = start + 1
            while end < len(texts) and prompts[end] == prompts[start]:
                end += 1
            out += _group_scores(self.judge, _images(column[start]), questions[start], texts[start:end])
            start = end
        return out


def verl_compute_score(judge: Any) -> Callable[..., float]:
    """A verl-style per-sample reward ``compute_score(data_source, solution_str, ground_truth, extra_info=None)
    -> float``: ``solution_str`` against ``ground_truth`` (the reference answer) by ``judge``, both orders (see
    the module docstring; no verdict in either order: 0.0, as verl needs a number). ``extra_info`` holds
    ``images`` (or ``image``) and ``question``.

    >>> class Always1:
    ...     def compare_many(self, items, order="both", on_bad_sample="error"):
    ...         from egt.judge.api import Verdict
    ...         return [Verdict(1, None, None, None, "", Verdict(2, None, None, None, ""), 1, True) for _ in items]
    >>> verl_compute_score(Always1())("world", "Two.", "Three.", {"images": ["i.png"], "question": "How many?"})
    1.0
    """

    def compute_score(data_source: str, solution_str: str, ground_truth: str, extra_info: dict | None = None) -> float:
        info = dict(extra_info or {})
        if not solution_str or not solution_str.strip():
            return 0.0
        images = _images(info.get("images", info.get("image")))
        row = {"images": images, "question": info.get("question", ""), "response_1": solution_str}
        (score,) = _against(judge, [{**row, "response_2": str(ground_truth), "id": data_source}])
        return 0.0 if score is None else float(score)

    return compute_score
