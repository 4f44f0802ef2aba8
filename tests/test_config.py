"""rpbook.config: seeds and the progress switch."""
import pytest

from rpbook.config import check_seed, check_seeds


def test_check_seeds_returns_ints():
    assert check_seeds([0, 3, 7]) == (0, 3, 7)
    assert check_seed(5) == 5


@pytest.mark.parametrize("bad, message", [
    ((), "at least one seed"),
    ((0, -1), "got -1"),
    ((0, 1.5), "got 1.5"),
    ("012", "sequence of non-negative integers"),
    (3, "sequence of non-negative integers"),
    ((True,), "got True"),
])
def test_check_seeds_names_the_bad_value(bad, message):
    with pytest.raises(ValueError, match=message):
        check_seeds(bad)


def test_repeated_seeds_are_refused():
    with pytest.raises(ValueError, match="distinct"):
        check_seeds((0, 1, 0))
