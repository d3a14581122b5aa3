"""Deployment: exported governors and the Hugging Face Trainer integration.

Imports neither Stable-Baselines3 nor gymnasium (tests/test_layers.py imports every module here with
them blocked): a full-size fine-tuning run needs only torch, transformers and numpy. The observation is
computed with the same ``govgym.efficiency.signals`` code as in the environment. One concern per module:

- ``callback``: ``GovernorCallback``, the Trainer events and the decision every K steps;
- ``arguments``: the callback's argument checks; ``trainer_args``: the TrainingArguments it needs;
- ``ledger``: FLOPs and the budget; ``memory``: the virtual memory cap (rules in ``efficiency/caps.py``);
- ``observe``: the Trainer's readings as the env's ``Reading``; ``resume``: its checkpoint state;
- ``decision_log``: the JSON decision log; ``levers``: the interface to ``GovernedTrainer``;
- ``trainer``: ``GovernedTrainer`` (reprune, base switches, noise scale); ``sampler``: its kept-set sampler;
- ``switch``: its base-switch lever; ``trainer_state``: its checkpoint / resume state;
- ``artifact``: export and load of a governor; ``validate``: the checks of its values; ``governor``:
  the numpy policy it loads as; ``state``: JSON for checkpointed state;
- ``shipped``: the governors packaged in the wheel (``GovernorCallback("default")``);
- ``report``: decisions through the Trainer's ``log`` (TensorBoard, W&B); ``ranks``: one decision for
  every process (rank 0 decides and broadcasts);
- ``transfer``: the zero-shot transfer experiment (``govgym transfer``); ``bases``: the bases it takes
  (named sizes, model keys, a local model directory); ``transfer_scaling``: its budget, cap and OOM rules
  at another size; ``transfer_report``: its table rows and plot;
- ``outside``: the out-of-world judgement (``govgym outside``: a BERT classifier through a plain Trainer,
  governors vs the fixed budget vs ``EarlyStoppingCallback``); ``outside_base``: its encoder, pretrained
  by masked LM and cached like the bases; ``outside_task``: its task (which stdlib package a function
  comes from); ``outside_report``: its tables, paired bootstrap intervals and plot.

``trainer`` also holds ``GovernedMixin`` and ``governed(SFTTrainer)``: the levers for any Trainer subclass.
User guide: ``docs/deploy.md``.
"""
