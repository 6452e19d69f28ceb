"""The pipeline's stages, one module each: ``egt.stages.<name>.run(cfg, pipe) -> dict``.

Every stage module declares ``REQUIRES``, the stages it may ask the pipeline for (``pipe.get``); the
pipeline refuses any other request (egt.pipeline.Pipeline.get), so the dependency graph below is the
one the code follows:

    model ─┐
    data ──┼─ distill ─ sft ─ probe ─ select ─ rl
           └──────────────────────────────────────┴─ eval (data; model / sft / rl per eval.models)
"""

STAGES = ("model", "data", "distill", "sft", "probe", "select", "rl", "eval")  # the run order of the default
MODEL_STAGES = ("model", "sft", "rl")  # stages whose result has a ``model_path`` (what eval.models may name)
