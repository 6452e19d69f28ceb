"""egt.models.corpus: the text the tiny/demo tokenizer is trained on."""

import subprocess
import sys

from egt.data.world import WorldConfig
from egt.models.corpus import world_corpus


def test_world_corpus():
    texts = world_corpus(WorldConfig(seed=0), n=50)
    assert all(isinstance(t, str) and t for t in texts)
    joined = "\n".join(texts)
    for needle in (
        "[Response 1]",
        "impartial evaluator",
        "How many",
        "colour",
        "<answer>1</answer>",
        "is better.",
        "which is right",
        ", wrong.",
    ):  # both teacher styles
        assert needle in joined
    assert texts == world_corpus(WorldConfig(seed=0), n=50)


def test_the_data_package_does_not_import_distillation():
    """Distillation depends on data; the corpus (which needs both) lives with the builder."""
    code = (
        "import sys, egt.data.world, egt.stages.data; "
        "print(sorted(m for m in sys.modules if m.startswith('egt.distill')))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
