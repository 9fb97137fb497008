"""Import torchvision on a CPU build of torch.

The torchvision 0.28.0 wheel is a CUDA build; its compiled ops do not load with the CPU
wheel of torch 2.13.0, and `import torchvision` then fails with "operator torchvision::nms
does not exist" because its Python side registers fake kernels for ops nobody defined.
Defining the two op schemas first lets the import go through. The suite never calls them
(no detection code), so a call would fail loudly rather than silently. Where the compiled
ops load (a matching CUDA or CPU build), nothing is defined."""
from __future__ import annotations

import sys

import torch

_MISSING_OP_ERROR = "torchvision::nms does not exist"
_SCHEMAS = (
    "nms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
    "qnms(Tensor dets, Tensor scores, float iou_threshold) -> Tensor",
)
_library = None  # kept alive: the definitions vanish when the Library object is collected


def import_torchvision():
    """Return the torchvision module, defining its op schemas first only when they are missing."""
    global _library
    try:
        import torchvision
    except RuntimeError as error:
        if _MISSING_OP_ERROR not in str(error) or _library is not None:
            raise
        _library = torch.library.Library("torchvision", "DEF")
        for schema in _SCHEMAS:
            _library.define(schema)
        for name in [m for m in sys.modules if m.split(".")[0] == "torchvision"]:
            del sys.modules[name]
        import torchvision
    return torchvision
