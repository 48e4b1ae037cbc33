"""Which bundles may run Python code: decided before anything named by a card is imported.

Bundles are exchanged between groups, so opening one must never execute code. A card's
`architecture` is one of

- `timm:<name>` / `torchvision:<name>` (also `timm.models:` / `torchvision.models:`): built by
  those installed libraries with no pretrained download; the safe default, always allowed;
- `package.module:factory`: imports `package.module` and calls `factory`, i.e. runs arbitrary
  code. Refused unless the user allowed that module, either
  - for one command: `--trust-code` on the CLI, or the window's confirmation (`grant`), or
  - for good: listed in the user's allow-list `<config>/trusted_code.toml`
    (`modules = ["mylab.models"]`; a package allows its sub-modules).

Even when allowed, the module is imported only as an installed package from Python's path,
never from the bundle's own folder: a bundle cannot ship the code its card names. Nothing else
in a card names a Python object (target layers walk the network's sub-modules by name, CAM
methods and resize policies come from fixed tables, weights are tensors only), and
`[model_kwargs]` for timm/torchvision may not load files or fetch pretrained weights.
This module imports neither torch nor the named module, so the window can ask first.
"""

from __future__ import annotations

import importlib.util
import threading
import tomllib
from pathlib import Path

from fundus_review.errors import BundleError, FundusReviewError
from fundus_review.inference.card import split_architecture
from fundus_review.paths import config_home

ALLOW_LIST_FILE = "trusted_code.toml"
# Library builders the app calls itself, by the source prefix of `architecture`.
SAFE_SOURCES = {
    "timm": "timm",
    "timm.models": "timm",
    "torchvision": "torchvision",
    "torchvision.models": "torchvision",
    "fewshot": "fewshot",  # built-in few-shot wrappers over a timm/torchvision backbone
}
# model_kwargs words that make timm/torchvision read a file or download weights.
_LOADING_WORDS = ("pretrained", "checkpoint", "weights", "cache_dir", "hub", "url")

_lock = threading.Lock()
_granted: set[str] = set()


class UntrustedCodeError(BundleError):
    """A bundle needs Python code the user has not allowed; nothing was imported."""

    def __init__(self, message: str, module: str) -> None:
        self.module = module
        super().__init__(message)


def allow_list_path() -> Path:
    return config_home() / ALLOW_LIST_FILE


def split_source(architecture: str) -> tuple[str, str]:
    """('timm' | 'torchvision' | a module name, the model or factory name)."""
    source, name = split_architecture(architecture)
    return SAFE_SOURCES.get(source, source), name


def code_module(architecture: str) -> str | None:
    """The module a card's architecture would import, or None for a timm/torchvision name."""
    source, _name = split_source(architecture)
    return None if source in ("timm", "torchvision", "fewshot") else source


def allowed_modules() -> list[str]:
    """The user's allow-list (empty when the file does not exist)."""
    path = allow_list_path()
    if not path.is_file():
        return []
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise FundusReviewError(f"{path}: invalid TOML ({exc}); fix or delete the file") from exc
    modules = doc.get("modules", [])
    if not isinstance(modules, list) or not all(isinstance(m, str) for m in modules):
        raise FundusReviewError(f"{path}: `modules` must be a list of module names")
    return [m.strip() for m in modules if m.strip()]


def _covers(entry: str, module: str) -> bool:
    return module == entry or module.startswith(entry + ".")


def is_trusted(module: str) -> bool:
    with _lock:
        if any(_covers(m, module) for m in _granted):
            return True
    return any(_covers(m, module) for m in allowed_modules())


def grant(module: str) -> None:
    """Allow `module` for the rest of this process (what --trust-code / the dialog confirm)."""
    with _lock:
        _granted.add(module)


def revoke_all() -> None:
    with _lock:
        _granted.clear()


def refusal(architecture: str, module: str, where: object) -> str:
    return (
        f"{where}: architecture {architecture!r} would import and run Python code from module "
        f"{module!r}; refused (nothing was imported). Only if you trust that code: run again with "
        f"--trust-code, confirm it in the window, or add {module!r} to `modules` in "
        f"{allow_list_path()}"
    )


def require_trusted(architecture: str, where: object, trust_code: bool = False) -> None:
    """Raise UntrustedCodeError unless the architecture is safe or its module is allowed."""
    module = code_module(architecture)
    if module is None or trust_code or is_trusted(module):
        return
    raise UntrustedCodeError(refusal(architecture, module, where), module)


def check_location(module: str, bundle_dir: Path | None) -> None:
    """Refuse a module whose package lies inside the bundle folder (found without running it:
    the spec of a top-level package is located, not executed)."""
    if bundle_dir is None:
        return
    top = module.split(".", 1)[0]
    try:
        spec = importlib.util.find_spec(top)
    except (ImportError, ValueError):
        return  # not importable at all: the import itself reports it
    if spec is None:
        return
    places = [spec.origin] if spec.origin else []
    places += list(spec.submodule_search_locations or [])
    root = Path(bundle_dir).resolve()
    for place in places:
        try:
            inside = Path(place).resolve().is_relative_to(root)
        except (OSError, ValueError):
            continue
        if inside:
            raise UntrustedCodeError(
                f"bundle {bundle_dir}: module {module!r} would be imported from the bundle's own "
                f"folder ({place}); refused. Install the package that provides it instead",
                module,
            )


def check_builder_kwargs(architecture: str, kwargs: dict) -> None:
    """timm/torchvision constructors may not be told to load a file or download weights."""
    bad = [k for k in kwargs if any(word in str(k).lower() for word in _LOADING_WORDS)]
    if bad:
        raise ValueError(
            f"[model_kwargs] {', '.join(map(repr, bad))} would make {architecture!r} load a file "
            "or download weights; a bundle's weights come from its own weights file only"
        )
