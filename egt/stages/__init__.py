"""The pipeline's stages, one module each: ``egt.stages.<name>.run(cfg, pipe) -> dict``.

Every stage module declares ``REQUIRES``, the stages it may ask the pipeline for (``pipe.get``); the
pipeline refuses any other request (egt.pipeline.Pipeline.get), so the dependency graph below is the
one the code follows:

    model ─┐
    data ──┼─ distill ─ sft ─ probe ─ [rft] ─ select ─ rl
           └──────────────────────────────────────────────┴─ eval (data; model / sft / rft / rl per eval.models)

``rft`` (UnifiedReward-Think's rejection-sampling fine-tuning) runs only when named in ``stages``; rl and eval
then start from its model (egt.stages.rl.start_model, eval.models).
"""

STAGES = ("model", "data", "distill", "sft", "probe", "rft", "select", "rl", "eval")  # every stage, in run order
DEFAULT_STAGES = tuple(s for s in STAGES if s != "rft")  # what `stages` runs unless told: the paper's pipeline
MODEL_STAGES = ("model", "sft", "rft", "rl")  # stages whose result has a ``model_path`` (what eval.models may name)

# The stages whose summary has a ``headline``, the one number a sweep optimises (egt.cli.headline_metric:
# that of the last of these stages the run reached; None if it ran without one). Always a fraction.
HEADLINES = {
    "sft": "accuracy of the saved SFT model on the first sft.eval_n bench items (greedy; absent if eval_n=0)",
    "rft": "accuracy of the saved rft model on the first eval_n bench items of its SFT settings (as sft's)",
    "rl": "accuracy of the saved RL model on the first rl.eval_n bench items (greedy; absent if eval_n=0)",
    "eval": "the last evaluated model's headline metric on the synthetic benchmark (else the first one)",
}
