"""simxir: non-contrastive self-supervised learning, SimXIR fine-tuning, evaluation and analysis."""

__version__ = "0.1.0"
