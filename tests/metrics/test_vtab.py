"""VTAB-1k task list and the two averaging conventions, with hand-computed numbers."""

import pytest

from umgkit.metrics.vtab import VTAB_GROUPS, VTAB_TASKS, vtab_summary, vtab_table


def _results():
    # natural 7 tasks all 0.7, specialized 4 all 0.8, structured 8 all 0.4
    values = {"natural": 0.7, "specialized": 0.8, "structured": 0.4}
    return {t: values[g] for g, tasks in VTAB_GROUPS.items() for t in tasks}


def test_task_list():
    assert [len(VTAB_GROUPS[g]) for g in ("natural", "specialized", "structured")] == [7, 4, 8]
    assert len(set(VTAB_TASKS)) == 19


def test_both_means_hand_computed():
    s = vtab_summary(_results())
    assert s["mean19"] == pytest.approx((7 * 0.7 + 4 * 0.8 + 8 * 0.4) / 19)  # 0.59473...
    assert s["group_mean"] == pytest.approx((0.7 + 0.8 + 0.4) / 3)  # 0.63333...
    assert s["specialized"] == pytest.approx(0.8)


def test_table_prints_both_conventions():
    text = vtab_table(_results())
    assert "cifar100" in text and "smallnorb_elevation" in text
    assert "mean (19 tasks)" in text and " 59.47" in text
    assert "group mean (3)" in text and " 63.33" in text


def test_missing_or_unknown_task_raises():
    r = _results()
    r.pop("dtd")
    r["imagenet"] = 0.5
    with pytest.raises(ValueError, match="dtd"):
        vtab_summary(r)
