"""The papers' evaluation protocols that train on the engine's data path (``--linear-protocol augmented``),
and the evaluation ``simxir eval`` and ``simxir finetune`` share (:func:`evaluate`)."""

from simxir.protocol.evaluate import EvalProtocol, evaluate, score_features
from simxir.protocol.linear import (
    PROTOCOLS,
    ProtocolConfig,
    build_classifier,
    protocol_config,
    protocol_probe,
)

__all__ = ["PROTOCOLS", "EvalProtocol", "ProtocolConfig", "build_classifier", "evaluate", "protocol_config",
           "protocol_probe", "score_features"]
