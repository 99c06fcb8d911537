"""auto_map shim: resolves FastDistilBertConfig from the installed fastdistilbert package.

`trust_remote_code=True` loads this file in a process that never imported fastdistilbert. The package itself
must be installed (`pip install fastdistilbert`): its C++ kernels cannot ship as remote code.
"""
from fastdistilbert.configuration_fast_distilbert import FastDistilBertConfig

__all__ = ["FastDistilBertConfig"]
