"""The distillation benchmark's people: photos map to persons, and held-out people never train."""

from __future__ import annotations

import pytest

from benchmarks.people import by_person, person_of, shared_photos, split_people, training_people

FACE_RECOGNITION = "/assets/faces/face_recognition"


def test_shipped_portraits_and_face_recognition_photos_of_one_person_share_an_id():
    assert person_of("toonfactory:barack-obama.jpg") == "obama"
    assert person_of(f"{FACE_RECOGNITION}/train/obama/obama2.jpg") == "obama"
    assert person_of(f"{FACE_RECOGNITION}/test/obama1.jpg") == "obama"
    assert person_of("toonfactory:joe-biden.jpg") == person_of(f"{FACE_RECOGNITION}/train/biden/biden.jpg") == "biden"
    assert person_of(f"{FACE_RECOGNITION}/test/johnsnow_test1.jpg") == "kit_harington"


def test_photos_of_several_people_and_edge_cases_have_no_person():
    for name in ("test/obama_and_biden.jpg", "test/kit_with_rose.jpg", "two_people.jpg", "edge_cases/obama_small.jpg"):
        assert person_of(f"{FACE_RECOGNITION}/{name}") is None


def test_the_split_is_disjoint_covers_everyone_and_depends_only_on_the_seed():
    people = [f"p{i:02d}" for i in range(21)]
    train, heldout = split_people(people, seed=3, heldout_fraction=0.4)
    assert not set(train) & set(heldout) and set(train) | set(heldout) == set(people)
    assert len(heldout) == 8
    assert split_people(list(reversed(people)), seed=3, heldout_fraction=0.4) == (train, heldout)
    assert split_people(people, seed=4, heldout_fraction=0.4) != (train, heldout)
    assert split_people(people[:2], heldout_fraction=0.99)[1] and split_people(people[:2], heldout_fraction=0.0)[1]


def test_an_explicit_held_out_list_is_checked():
    assert split_people(["a", "b", "c"], heldout=["b"]) == (["a", "c"], ["b"])
    with pytest.raises(ValueError, match="unknown people x"):
        split_people(["a", "b"], heldout=["x"])
    with pytest.raises(ValueError, match="one person on each side"):
        split_people(["a", "b"], heldout=["a", "b"])


def test_no_shared_person_is_on_both_sides(assets):
    groups = by_person(shared_photos(assets))
    assert len(groups) == 21 and len(groups["obama"]) == 4 and len(groups["person00"]) == 8
    train, heldout = split_people(list(groups), seed=0)
    items = {side: {item for person in people for item in groups[person]} for side, people in
             (("train", train), ("heldout", heldout))}
    assert not items["train"] & items["heldout"]
    assert not {person_of(i) for i in items["train"]} & {person_of(i) for i in items["heldout"]}


def test_a_scaling_curve_learns_from_nested_subsets_of_the_training_people_only():
    train, heldout = split_people([f"p{i:02d}" for i in range(21)], seed=0)
    subsets = [training_people(train, str(n)) for n in (1, 5, 9, len(train))]
    assert subsets[-1] == train
    for smaller, larger in zip(subsets, subsets[1:]):
        assert set(smaller) < set(larger)
    assert all(not set(subset) & set(heldout) for subset in subsets)
    assert training_people(train, f"{train[3]},{train[0]}") == [train[0], train[3]]
    with pytest.raises(ValueError, match=f"{heldout[0]} not among the training people"):
        training_people(train, f"{train[0]},{heldout[0]}")
    with pytest.raises(ValueError, match="not between 1 and the 13"):
        training_people(train, "14")
