"""fastdistilbert: fast, faithful DistilBERT question answering on CPUs."""
from ._extension import active_isa, available_isas, compiled_isas, set_isa

__version__ = "0.1.0"

__all__ = ["active_isa", "available_isas", "compiled_isas", "set_isa", "__version__"]
