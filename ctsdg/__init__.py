"""CTSDG image inpainting (Guo, Yang, Huang, ICCV 2021) in PyTorch.

Conventions used throughout: images are float NCHW RGB in [-1, 1]; inside the networks a mask is
1 on known pixels and 0 on holes (mask files on disk are white on holes); gray images are in
[0, 1] and edges in {0, 1}.
"""

__version__ = "0.1.0"
