"""The Qt-free display model the views observe."""

from __future__ import annotations

from desktop_app.state.display import DisplayOptions


def test_options_announce_changes_once_and_convert_values():
    opts, seen = DisplayOptions(), []
    opts.changed.connect(seen.append)
    opts.outline = True
    opts.outline = True  # same value: no event
    opts.opacity = 1.7  # clamped to 0..1
    opts.uncertainty_visible = 1  # stored as a bool
    assert seen == ["outline", "opacity", "uncertainty_visible"]
    assert opts.opacity == 1.0 and opts.uncertainty_visible is True and opts.outline is True
    assert set(DisplayOptions.NAMES) == {"overlay_visible", "opacity", "outline", "uncertainty_visible",
                                         "crosshair_visible"}


def test_each_instance_has_its_own_values():
    a, b = DisplayOptions(), DisplayOptions()
    a.opacity = 0.2
    assert b.opacity == 0.5 and a.opacity == 0.2
