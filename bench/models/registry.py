from mgt_common.registry import Registry

#: Generation backends: name → factory(**model_args) returning a `samplers.protocol.MaskedTokenModel`.
MODELS = Registry("model", "generation backends")
