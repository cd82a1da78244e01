"""The papers' evaluation protocols that train on the engine's data path (``--linear-protocol augmented``)."""

from simxir.protocol.linear import (
    PROTOCOLS,
    ProtocolConfig,
    build_classifier,
    encoder_protocol_probe,
    protocol_config,
    protocol_probe,
)

__all__ = ["PROTOCOLS", "ProtocolConfig", "build_classifier", "encoder_protocol_probe", "protocol_config",
           "protocol_probe"]
