from mgt_common.registry import Registry

#: Generation backends: name → factory(**model_args) returning a `samplers.protocol.MaskedTokenModel`.
#: Backend modules import their heavy dependencies inside the factories.
MODELS = Registry("model", "generation backends", builtins=(
    "bench.models.synthetic.backend", "bench.models.meissonic", "bench.models.amused"))
