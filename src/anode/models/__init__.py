"""Models: vector fields, the ODE block, NODE/ANODE networks and ResNet baselines."""

from .block import ODEBlock as ODEBlock
from .fields import ConvODEFunc as ConvODEFunc
from .fields import ODEFunc as ODEFunc
from .nets import ConvODENet as ConvODENet
from .nets import ConvResNet as ConvResNet
from .nets import ODEFlow as ODEFlow
from .nets import ODENet as ODENet
from .nets import ResNet as ResNet
from .nets import count_parameters as count_parameters

__all__ = ["ConvODEFunc", "ConvODENet", "ConvResNet", "ODEBlock", "ODEFlow", "ODEFunc", "ODENet", "ResNet", "count_parameters"]
