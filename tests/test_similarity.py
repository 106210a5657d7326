"""Similarity matrices: the paper's mean-pooled cosine and its properties."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from tpv import TaskPromptVector, TPVError
from tpv.core.similarity import POOLINGS, prompt_cosine, similarity_matrix


def _vectors(seed=0, count=4, shape=(5, 8)):
    generator = torch.Generator().manual_seed(seed)
    return {
        f"task{i}": TaskPromptVector(torch.randn(*shape, generator=generator), tasks={f"task{i}": 1.0})
        for i in range(count)
    }


@pytest.mark.parametrize("pooling", POOLINGS)
def test_matrix_is_symmetric_with_unit_diagonal(pooling):
    names, matrix = similarity_matrix(_vectors(), pooling)
    assert names == ["task0", "task1", "task2", "task3"]
    assert matrix.shape == (4, 4) and matrix.dtype == torch.float32
    torch.testing.assert_close(matrix, matrix.T)
    torch.testing.assert_close(matrix.diagonal(), torch.ones(4))
    assert (matrix.abs() <= 1 + 1e-6).all()


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 10_000), factor=st.floats(0.01, 100.0), pooling=st.sampled_from(POOLINGS))
def test_matrix_is_invariant_to_positive_scaling(seed, factor, pooling):
    vectors = _vectors(seed, count=3)
    scaled = dict(vectors, task1=vectors["task1"] * factor)
    torch.testing.assert_close(
        similarity_matrix(scaled, pooling)[1], similarity_matrix(vectors, pooling)[1], atol=1e-5, rtol=1e-5
    )


def test_mean_pooling_matches_a_hand_computation():
    a = torch.tensor([[1.0, 2.0], [3.0, 0.0]])  # token mean (2, 1)
    b = torch.tensor([[0.0, 1.0], [2.0, 1.0]])  # token mean (1, 1)
    expected = (2 * 1 + 1 * 1) / ((5**0.5) * (2**0.5))
    assert prompt_cosine(a, b, "mean") == pytest.approx(expected, abs=1e-6)
    _, matrix = similarity_matrix([a, b])
    assert float(matrix[0, 1]) == pytest.approx(expected, abs=1e-6)


def test_accepts_raw_tensors_and_lists_and_names_them():
    tensors = [v.tensor for v in _vectors(count=2).values()]
    names, matrix = similarity_matrix(tensors)
    assert names == ["0", "1"] and matrix.shape == (2, 2)
    names, _ = similarity_matrix(list(_vectors(count=2).values()))
    assert names == ["1·task0", "1·task1"]


def test_bad_input_is_refused_with_the_fix():
    with pytest.raises(TPVError, match="no vectors"):
        similarity_matrix([])
    with pytest.raises(TPVError, match="unknown pooling 'max'"):
        similarity_matrix(_vectors(count=2), "max")
    with pytest.raises(TPVError, match="all zeros"):
        similarity_matrix([torch.zeros(2, 3), torch.ones(2, 3)])
