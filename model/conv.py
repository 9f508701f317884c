"""3-D convolution for the VAEs, on the CPU always through oneDNN.

PyTorch sends a batch-1 float32 Conv3d with a kernel of at most 3×3 whose N·C·T·H is ≤ 20480 to its reference
im2col kernel (`slow_conv3d`), which is ~9× slower than oneDNN on such inputs. The tiny stack's narrow VAEs hit
that rule in most layers (it cost a 5-s 448×256 Turbo-VAED decode more than half its time). Wider inputs, such as
every layer of the released VAEs, already take oneDNN, so routing all CPU float32 calls there changes nothing for
them. Other devices and dtypes keep PyTorch's own choice.
"""
import torch
import torch.nn.functional as F

Triple = tuple[int, int, int]


def conv3d(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: Triple = (1, 1, 1),
           padding: Triple = (0, 0, 0)) -> torch.Tensor:
    """`F.conv3d(x, weight, bias, stride, padding)` (zero padding, no dilation, one group)."""
    if x.device.type == "cpu" and x.dtype == torch.float32 and torch.backends.mkldnn.is_available() \
            and torch.backends.mkldnn.enabled:
        return torch.ops.aten.mkldnn_convolution(x, weight, bias, list(padding), list(stride), [1, 1, 1], 1)
    return F.conv3d(x, weight, bias, stride, padding)
