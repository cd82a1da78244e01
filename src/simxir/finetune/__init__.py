"""SimXIR self-supervised fine-tuning (SimXIR paper, Algorithm 1) of any off-the-shelf encoder: the run
(evaluate, fine-tune on the engine, evaluate, export) and its report. The method itself is
``simxir.methods.simxir``."""

from simxir.methods.simxir import SimXIR, SimXIRConfig, simxir_loss

__all__ = ["SimXIR", "SimXIRConfig", "simxir_loss"]
