"""What the two training stages (sft, rl) share: the Lightning recipe (:mod:`egt.training.recipe`) and
what is done with the model they trained (:mod:`egt.training.trained`)."""
