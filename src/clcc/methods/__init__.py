"""Semi-supervised methods: each a small `Method` that turns a batch into named losses."""

# Importing the modules registers the methods.
from clcc.methods import (  # noqa: E402, F401, I001
    bcp, clcc, fixmatch, fixmatch_ssl4mis, mean_teacher, supervised, uamt, unimatch, urpc,
)
from clcc.methods.base import (
    METHODS, Method, build_method, check_parameters, register, resolved_parameters,
)

__all__ = ["METHODS", "Method", "build_method", "check_parameters", "register",
           "resolved_parameters"]
