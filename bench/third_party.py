"""Quiet the notices that libraries print at import or first use and that a user cannot act on.

Every run used to start with three such lines: torch's pytree logger calling torchao's registration of
two enums deprecated, and diffusers' torchao quantizer saying it cannot import torchao tensor types
that this torchao version no longer has. They are about those libraries' internals, not about a
run. The filters are scoped: a deprecation *warning* is dropped only when a third-party module issues
it, and a *log record* only on the named logger when its text matches the known notice, so that a
library's warning about the user's input, and every warning of mgt-bench's own, still shows.
"""
from __future__ import annotations

import logging
import re
import warnings

#: modules whose DeprecationWarning / FutureWarning describe their own internals
THIRD_PARTY = ("torch", "torchao", "torchvision", "diffusers", "transformers", "open_clip", "timm", "huggingface_hub",
               "accelerate", "torchmetrics")

#: logger → notices (regular expressions) printed through `logging` rather than `warnings`
LOG_NOTICES = {
    "torch.utils._pytree": (r"is an Enum subclass and is now natively supported by torch\.compile",),
    "diffusers.quantizers.torchao.torchao_quantizer": (r"Unable to import `torchao` Tensor objects",),
}


class _DropNotices(logging.Filter):
    def __init__(self, patterns: tuple[str, ...]):
        super().__init__()
        self.patterns = [re.compile(p) for p in patterns]

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(p.search(message) for p in self.patterns)


def quiet_third_party_notices() -> None:
    for module in THIRD_PARTY:
        for category in (DeprecationWarning, FutureWarning, PendingDeprecationWarning):
            warnings.filterwarnings("ignore", category=category, module=rf"{re.escape(module)}(\.|$)")
    for name, patterns in LOG_NOTICES.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNotices) for f in logger.filters):
            logger.addFilter(_DropNotices(patterns))
