"""Semi-supervised methods: each a small `Method` that turns a batch into named losses."""

# Importing the modules registers the methods.
from clcc.methods import clcc, mean_teacher, supervised, uamt, urpc  # noqa: E402, F401, I001
from clcc.methods.base import METHODS, Method, build_method, check_parameters, register

__all__ = ["METHODS", "Method", "build_method", "check_parameters", "register"]
