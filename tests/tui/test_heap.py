"""The dashboard's collector policy (tui/dashboard/heap.py), on the real collector of this process."""

from __future__ import annotations

import gc
import weakref

import pytest

from tui.dashboard import heap


class Cycle:
    def __init__(self) -> None:
        self.itself = self


@pytest.fixture(autouse=True)
def unfrozen():
    gc.unfreeze()
    yield
    gc.unfreeze()
    gc.enable()


def dead_cycle() -> weakref.ref[Cycle]:
    """A cycle nobody holds any more: only a collection frees it."""
    return weakref.ref(Cycle())


def test_a_first_build_collects_what_came_before_it_then_freezes_and_never_collects_meanwhile():
    earlier = dead_cycle()  # (a screen closed before this one opened)
    with heap.building(rebuilding=False, kept=lambda: True):
        assert earlier() is None  # collected first, not frozen with what is built
        assert not gc.isenabled()
        built = Cycle()
    assert gc.isenabled() and gc.get_freeze_count() > 0
    assert built.itself is built


def test_a_rebuild_collects_the_tree_it_replaced():
    old = Cycle()
    gc.freeze()  # the tree the screen built before
    gone = weakref.ref(old)
    with heap.building(rebuilding=True, kept=lambda: True):
        del old  # replaced while it rebuilt
    assert gone() is None


def test_settle_collects_what_died_frozen_and_keeps_the_rest_frozen():
    kept, dying = Cycle(), Cycle()
    gc.freeze()
    gone = weakref.ref(dying)
    del dying
    heap.settle()
    assert gone() is None and gc.get_freeze_count() > 0 and kept.itself is kept


def test_release_leaves_nothing_frozen():
    gc.freeze()
    heap.release()
    assert gc.get_freeze_count() == 0


def test_a_build_that_fails_leaves_the_collector_on():
    with pytest.raises(RuntimeError), heap.building(rebuilding=False, kept=lambda: True):
        raise RuntimeError("the store went away")
    assert gc.isenabled()


def test_a_rebuild_collects_the_tree_it_replaced_even_when_something_froze_meanwhile():
    old = Cycle()
    gc.freeze()
    gone = weakref.ref(old)
    with heap.building(rebuilding=True, kept=lambda: True):
        del old
        gc.freeze()  # (another screen's build, or a settle, while this one awaited the store)
    assert gone() is None


def test_a_build_whose_screen_went_meanwhile_freezes_nothing():
    with heap.building(rebuilding=False, kept=lambda: False):
        Cycle()
    assert gc.get_freeze_count() == 0 and gc.isenabled()
