"""Method entries as users write them (`clcc:n=4,alpha=0`, optionally `LABEL=entry`): the
method, its parameters, the run-folder slug and the label a reader sees in tables and figures."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

import yaml

from clcc.errors import ClccError

METHOD_NAMES = {"supervised": "Supervised", "clcc": "CLCC", "mean-teacher": "Mean Teacher",
                "uamt": "UAMT", "urpc": "URPC", "fixmatch": "FixMatch", "unimatch": "UniMatch",
                "bcp": "BCP"}
PARAMETER_NAMES = {("clcc", "alpha", 0): "w/o contrast", ("clcc", "beta", 0): "w/o consistency",
                   ("clcc", "patch_bn", "frozen"): "frozen patch BN",
                   (None, "train.recalibrate_bn", True): "recalibrated BN"}


@dataclass(frozen=True)
class Variant:
    """A method name with parameter overrides, e.g. `clcc:alpha=0`; a dotted key is a config
    key of the run, e.g. `clcc:patch_bn=frozen,train.recalibrate_bn=true`. A display label may
    stand in front: `CLCC+BN=clcc:n=4,patch_bn=frozen` (a label holds no `:`, `=` or space);
    without one a readable label is derived. Run folders are named after the label given
    (`clcc+bn-sel0`), else after the entry (`clcc-n4-sel0`)."""

    spec: str

    @property
    def entry(self) -> str:
        """The method entry without its label."""
        head = self.spec.split(":", 1)[0]
        return self.spec.split("=", 1)[1] if "=" in head else self.spec

    @property
    def label(self) -> str:
        head = self.spec.split(":", 1)[0]
        return head.split("=", 1)[0] if "=" in head else self.derived_label()

    def derived_label(self) -> str:
        """e.g. `clcc:n=4,alpha=0` → "CLCC (n=4, w/o contrast)"."""
        parts = []
        for key, value in self.params.items():
            named = (PARAMETER_NAMES.get((self.method, key, value))
                     or PARAMETER_NAMES.get((None, key, value)))
            parts.append(named or f"{key.rsplit('.', 1)[-1]}={_plain(value)}")
        name = METHOD_NAMES.get(self.method, self.method)
        return f"{name} ({', '.join(parts)})" if parts else name

    @property
    def method(self) -> str:
        return self.entry.split(":", 1)[0]

    def _pairs(self) -> list[tuple[str, str]]:
        """The entry's key=value pairs as written."""
        if ":" not in self.entry:
            return []
        pairs = [p for p in self.entry.split(":", 1)[1].split(",") if p]
        if not all("=" in p for p in pairs):
            raise ClccError(f"method entry {self.spec!r} must look like name:key=value,key=value")
        return [(k.strip(), v.strip()) for k, v in (p.split("=", 1) for p in pairs)]

    @property
    def params(self) -> dict[str, Any]:
        return {k: yaml.safe_load(v) for k, v in self._pairs()}

    @property
    def slug(self) -> str:
        head = self.spec.split(":", 1)[0]
        if "=" in head:  # a label given: short and readable
            return re.sub(r"[^a-z0-9+._-]+", "-", head.split("=", 1)[0].lower()).strip("-.")
        suffix = "".join(f"-{k}{v}" for k, v in self._pairs())
        return f"{self.method}{suffix}".replace("/", "_").replace(" ", "")


def _plain(value: Any) -> str:
    return str(value).lower() if isinstance(value, bool) else str(value)


def label_of(run: dict[str, Any]) -> str:
    """A run's display label (runs tabled before labels existed get the derived one)."""
    return run.get("label") or Variant(run["variant"]).label
