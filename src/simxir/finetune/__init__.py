"""SimXIR self-supervised fine-tuning (SimXIR paper, Algorithm 1) of any off-the-shelf encoder."""

from simxir.finetune.loss import simxir_loss
from simxir.finetune.method import RawAnchorViews, SimXIR, SimXIRConfig

__all__ = ["RawAnchorViews", "SimXIR", "SimXIRConfig", "simxir_loss"]
