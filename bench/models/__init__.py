"""Generation backends behind the model protocol (samplers/protocol.py), registered in `registry.MODELS`."""
