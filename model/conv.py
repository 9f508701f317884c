"""3-D convolution for the VAEs: narrow layers on the CPU through oneDNN in channels-last layout.

PyTorch sends a batch-1 float32 Conv3d with a kernel of at most 3×3 whose N·C·T·H is ≤ 20480 to its im2col + GEMM
kernel (`slow_conv3d`). That suits wide layers on small frames, but narrow layers on large frames, such as the
tiny stack's VAEs at full resolution, run 5-10× faster in oneDNN with channels-last (NDHWC) data (a 5-s 448×256
tiny Turbo-VAED decode spent most of its time there). So layers with at most `NARROW` input channels take oneDNN
on channels-last data (their outputs stay channels-last for the next layer); wider layers, every layer of the
released VAEs, keep PyTorch's own choice, as do other devices and dtypes.
"""
import torch
import torch.nn.functional as F

Triple = tuple[int, int, int]
NARROW = 32   # input channels; measured: oneDNN wins at 8-32 channels on any frame size, GEMM at 1024 on 4×4 frames


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Triple = (1, 1, 1),
           padding: Triple = (0, 0, 0)) -> torch.Tensor:
    """`F.conv3d(x, weight, bias, stride, padding)` (zero padding, no dilation, one group)."""
    if weight.shape[1] <= NARROW and x.device.type == "cpu" and x.dtype == torch.float32 \
            and torch.backends.mkldnn.is_available() and torch.backends.mkldnn.enabled:
        return torch.ops.aten.mkldnn_convolution(x.contiguous(memory_format=torch.channels_last_3d), weight, bias,
                                                 list(padding), list(stride), [1, 1, 1], 1)
    return F.conv3d(x, weight, bias, stride, padding)
