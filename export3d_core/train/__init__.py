"""Training of Export3D: data pairs -> losses -> Trainer (phases, checkpoints, DDP), and CLeBS.

Sub-modules: losses (Eq. 3-4), vgg (perceptual features), clebs (contrastive LeBS pre-training),
loop (Trainer), checkpointing (resumable state, no pickle), ddp (process group), logs, run_config
(`RunConfig`: every setting of a run, from which the `train` flags are generated), commands (the
`train` / `pretrain-clebs` / `expression-gain` / `train-face-features` CLI). Import them directly;
this package imports nothing heavy.
"""
