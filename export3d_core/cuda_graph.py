"""A tensor function captured once as a CUDA graph and replayed with new input values.

On a GPU the editor's frame is bound by kernel launches, not by arithmetic: a paper-preset frame
launches about 460 kernels, which keep the CPU busy for 14 ms while the GPU works for 3 ms (the
docs/performance.md). A graph launches them all at once. It needs fixed shapes and no
host synchronisation, which the reference renderer has (the accelerated renderer's live-sample
sets change size with every camera, so it cannot be captured).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor


def _signature(tensors: Sequence[Tensor]) -> tuple:
    return tuple((tuple(t.shape), t.dtype, t.device) for t in tensors)


class GraphedCall:
    """`fn(*inputs) -> tuple of tensors`, captured on the inputs' CUDA device.

    Calling it copies new values into the captured inputs, replays the graph and returns clones
    of the outputs (the captured ones are overwritten by the next replay). Inputs must keep the
    shapes, dtypes and device of the example (`accepts` tells); anything `fn` closes over (the
    model's weights) is read where it lies at each replay.
    """

    def __init__(self, fn: Callable[..., Sequence[Tensor]], *example_inputs: Tensor, warmup: int = 2) -> None:
        if not example_inputs or any(t.device.type != "cuda" for t in example_inputs):
            raise ValueError("a CUDA graph needs CUDA tensors as inputs")
        self.inputs = [t.detach().clone() for t in example_inputs]
        self._signature = _signature(self.inputs)
        # Warm-up on a side stream, as CUDA graph capture requires (lazy initialisation, cuDNN
        # algorithm choice and the allocator's first blocks happen outside the graph).
        side = torch.cuda.Stream(device=self.inputs[0].device)
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            for _ in range(warmup):
                fn(*self.inputs)
        torch.cuda.current_stream().wait_stream(side)
        self.graph = torch.cuda.CUDAGraph()
        # thread_local: the editor's export jobs render on their own threads while the render
        # worker may be capturing; the default ("global") capture would make their CUDA calls fail.
        with torch.cuda.graph(self.graph, capture_error_mode="thread_local"):
            self.outputs = tuple(fn(*self.inputs))

    def accepts(self, *inputs: Tensor) -> bool:
        return _signature(inputs) == self._signature

    def __call__(self, *inputs: Tensor) -> tuple[Tensor, ...]:
        if not self.accepts(*inputs):
            raise ValueError(f"inputs {_signature(inputs)} differ from the captured {self._signature}")
        for static, value in zip(self.inputs, inputs):
            static.copy_(value)
        self.graph.replay()
        return tuple(output.clone() for output in self.outputs)


__all__ = ["GraphedCall"]
