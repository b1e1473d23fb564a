"""Promote asks first when the version has no validation Dice to judge it by."""

from __future__ import annotations

import pytest

from tests.train_helpers import tiny_model

SCORED = {"val_cases": 3, "val_mean_dice": 0.81, "val_dice": {"anterior": 0.8, "posterior": 0.82}}
ONE_CASE = {"val_cases": 1, "val_mean_dice": 0.9, "val_dice": {"anterior": 0.9, "posterior": 0.9}}


@pytest.fixture
def versions(segloop_app):
    """Two fine-tuned versions in the open project: one scored on 3 validation cases, one on 1."""
    parts = segloop_app
    reg = parts.session.registry
    model, card = tiny_model(seed=1)
    scored = reg.add_version(model, card, metrics=SCORED).version
    unscored = reg.add_version(model, card, metrics=ONE_CASE).version
    parts.session.registry_changed.emit()
    return parts, scored, unscored


def _click_promote(qtbot, parts, version):
    vp = parts.versions.panel
    vp.select(version)
    assert vp.promote_button.isEnabled()
    vp.promote_button.click()


def test_promoting_a_version_without_validation_dice_asks_first(qtbot, versions):
    parts, _scored, unscored = versions
    reg, vc = parts.session.registry, parts.versions
    before = reg.active
    asked: list[tuple[str, str]] = []
    vc.ctx.ask_yes_no = lambda title, text: asked.append((title, text)) or False  # No
    _click_promote(qtbot, parts, unscored)
    assert asked == [("Promote without validation",
                      f"{unscored} has no validation Dice (fewer than 2 validation cases) — promote anyway?")]
    assert vc.registry_worker is None and reg.active == before  # nothing started, nothing changed
    assert "not promoted" in parts.window.statusBar().currentMessage()
    vc.ctx.ask_yes_no = lambda title, text: asked.append((title, text)) or True  # Yes
    _click_promote(qtbot, parts, unscored)
    qtbot.waitUntil(lambda: vc.registry_worker is None, timeout=20_000)
    assert len(asked) == 2 and reg.active == unscored
    assert vc.panel.table.item(vc.panel.row_of(unscored), 0).text() == "●"


def test_promoting_a_validated_version_does_not_ask(qtbot, versions):
    parts, scored, _unscored = versions
    vc = parts.versions
    asked: list = []
    vc.ctx.ask_yes_no = lambda title, text: asked.append(text) or False
    _click_promote(qtbot, parts, scored)
    qtbot.waitUntil(lambda: vc.registry_worker is None, timeout=20_000)
    assert asked == [] and parts.session.registry.active == scored
