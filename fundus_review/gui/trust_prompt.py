"""Ask before a bundle's architecture imports and runs Python code (rules: inference/trust.py).

Called on the UI thread before the analysis job starts, so the question comes before any import;
reading the card is a small TOML file and imports no torch.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtWidgets import QMessageBox, QWidget


def allow_bundle_code(parent: QWidget | None, bundle: Path) -> None:
    """Return when the bundle runs no code or the user allows its module for this session;
    raise UntrustedCodeError (shown by the caller) when they decline."""
    from fundus_review.errors import BundleError
    from fundus_review.inference import trust
    from fundus_review.inference.card import read_card

    try:
        folder, card = read_card(bundle)
    except BundleError:
        return  # a broken card is reported where it is used (card read-out, the job)
    module = trust.code_module(card.architecture)
    if module is None or trust.is_trusted(module):
        return
    text = (
        f"The model bundle {folder} is built by Python code: its architecture "
        f"{card.architecture!r} imports the installed module '{module}' and runs it with your "
        "permissions.\n\nAllow it only if you trust where that module comes from. "
        f"Yes allows '{module}' until the window closes; to allow it for good, add it to "
        f"`modules` in {trust.allow_list_path()}."
    )
    answer = QMessageBox.question(
        parent,
        "Run code from this bundle?",
        text,
        QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
        QMessageBox.StandardButton.No,
    )
    if answer != QMessageBox.StandardButton.Yes:
        raise trust.UntrustedCodeError(trust.refusal(card.architecture, module, folder), module)
    trust.grant(module)
