"""The requireSignedModels policy as the control plane applies it: at apply, and before any replica loads.

A deployment requires signed models when its spec says ``requireSignedModels: true`` or the setting
``require_signed_models`` is on; its version must then carry a signature, by a key in the trusted keys
directory, that verifies for its name, number and artifact digest (security/signing.py). The trusted keys
are read at each check, so a ``.pub`` copied in (or removed) counts from the next apply or start on.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from conveyor.registry import Registry
from conveyor.registry.records import VersionInfo
from conveyor.security.signing import trusted_keys
from conveyor.settings import Settings
from conveyor.spec.resources import DeploymentSpec


@dataclass(frozen=True, slots=True)
class SignedModels:
    everywhere: bool
    """The setting require_signed_models: every deployment, whatever its spec says."""
    trusted_dir: Path | None
    """The trusted keys directory; None: no key is trusted."""

    @classmethod
    def from_settings(cls, settings: Settings) -> SignedModels:
        return cls(settings.require_signed_models, settings.effective_trusted_keys_dir)

    def required(self, spec: DeploymentSpec) -> bool:
        return self.everywhere or spec.require_signed_models

    def problem(self, registry: Registry, spec: DeploymentSpec, version: VersionInfo) -> str | None:
        """Why ``version`` may not run for a deployment of ``spec``, or None (not required, or it is signed
        by a trusted key and the signature verifies)."""
        if not self.required(spec):
            return None
        trusted = {} if self.trusted_dir is None else trusted_keys(self.trusted_dir)
        return registry.signature_problem(version, trusted)
