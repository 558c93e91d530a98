"""Training of Export3D: data pairs -> losses -> Trainer (phases, checkpoints, DDP), and CLeBS.

Sub-modules: losses (Eq. 3-4), vgg (perceptual features), clebs (contrastive LeBS pre-training),
loop (Trainer), checkpointing (resumable state, no pickle), ddp (process group), logs, commands
(the `train` / `pretrain-clebs` CLI). Import them directly; this package imports nothing heavy.
"""
