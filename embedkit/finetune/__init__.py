"""Few-shot fine-tuning on a new cell line (`embedkit finetune`) and classification with the
fine-tuned model (`embedkit predict`).

* `embedkit.finetune.splits`: k shots per perturbation, validation, test; seeds; the
  paper's split conditions; split files (`u2os_data.csv`, a run's own `splits.csv`).
* `embedkit.finetune.training`: one run of the reference protocol (AdamW, one-cycle,
  early stopping on validation top-1), optional graph loss, linear probing.
* `embedkit.finetune.image_classifier` / `profile_classifier`: the registered model kinds
  `embedkit-vit-classifier` and `embedkit-profile-classifier`.
* `embedkit.finetune.jobs`: `finetune_images`, `finetune_profiles`, `predict_images`,
  `predict_profiles` (files in, a run folder or a table out).

Importing this package imports neither torch nor pandas; its modules do.
"""
