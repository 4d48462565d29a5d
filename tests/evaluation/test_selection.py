"""Choosing the checkpoint on the validation split: the bookkeeping, without training."""

from __future__ import annotations

import json

from svllreid.evaluation.selection import Selection


def _summary(map_: float) -> dict[str, float]:
    return {"mAP": map_, "rank1": map_}


def test_a_later_epoch_must_beat_every_earlier_one_strictly():
    selection = Selection(every=2, patience=0)
    assert selection.record(0, _summary(0.40))  # the start is the first best
    assert not selection.record(2, _summary(0.40))  # a tie keeps the earlier (the start)
    assert selection.record(4, _summary(0.45)) and selection.best_epoch == 4
    assert not selection.record(6, _summary(0.44)) and selection.stale == 1
    assert selection.summary(4) == _summary(0.45) and selection.last_epoch == 6
    assert "stage-2 epoch 4 (mAP 45.00, +5.00 on the start)" in selection.verdict()


def test_nothing_beats_the_start_and_the_run_says_so():
    selection = Selection(every=1)
    selection.record(0, _summary(0.30))
    for epoch in (1, 2, 3):
        selection.record(epoch, _summary(0.10 * epoch / 4))
    assert selection.start_is_best and selection.best_epoch == 0
    assert selection.verdict().startswith("no stage-2 epoch beat the start on the validation split (mAP 30.00)")
    assert "the delivered model is the start" in selection.verdict()


def test_patience_counts_evaluations_without_a_new_best():
    selection = Selection(every=1, patience=2)
    selection.record(0, _summary(0.3))
    selection.record(1, _summary(0.4))
    selection.record(2, _summary(0.35))
    assert not selection.should_stop()
    selection.record(3, _summary(0.39))
    assert selection.should_stop()
    assert not Selection(every=1, patience=0).should_stop()


def test_evaluations_are_due_every_n_epochs_and_after_the_last():
    selection = Selection(every=3)
    assert [e for e in range(1, 11) if selection.due(e, 10)] == [3, 6, 9, 10]
    assert [e for e in range(1, 5) if Selection(every=0).due(e, 4)] == [4]


def test_the_state_survives_a_checkpoint_as_json():
    selection = Selection(every=1, patience=3)
    for epoch, value in enumerate((0.2, 0.5, 0.4)):
        selection.record(epoch, _summary(value))
    selection.stopped_at = None
    restored = Selection.from_state(json.loads(json.dumps(selection.state())), every=1, patience=3)
    assert restored == selection
