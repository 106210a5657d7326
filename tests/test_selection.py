"""Source selection ranks a library by similarity to a target vector."""

import pytest
import torch

from tpv import TaskPromptVector, TPVError
from tpv.compose.selection import select_sources


def _library(seed=0, count=6, shape=(8, 16)):
    generator = torch.Generator().manual_seed(seed)
    return {
        f"task{i}": TaskPromptVector(torch.randn(*shape, generator=generator), tasks={f"task{i}": 1.0})
        for i in range(count)
    }


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("pooling", ["mean", "flat", "per_token"])
def test_a_planted_near_duplicate_ranks_first(seed, pooling):
    library = _library(seed)
    generator = torch.Generator().manual_seed(seed + 100)
    target = TaskPromptVector(
        library["task3"].tensor + 0.05 * torch.randn(8, 16, generator=generator), tasks={"target": 1.0}
    )
    ranked = select_sources(target, library, k=2, pooling=pooling)
    assert len(ranked) == 2 and ranked[0][0] == "task3" and ranked[0][1] > 0.99
    assert ranked[0][1] >= ranked[1][1]


def test_k_none_returns_all_sorted_and_folders_work(tmp_path):
    library = _library()
    for name, vector in library.items():
        vector.save(tmp_path / f"{name}.tpv.safetensors")
    target = library["task1"] * 2.0
    from_folder = select_sources(target, tmp_path, k=None)
    assert [name for name, _ in from_folder] == [name for name, _ in select_sources(target, library, k=None)]
    assert len(from_folder) == 6 and from_folder[0] == ("task1", pytest.approx(1.0))
    assert [score for _, score in from_folder] == sorted((score for _, score in from_folder), reverse=True)


def test_bad_input_is_refused(tmp_path):
    target = _library(count=1)["task0"]
    with pytest.raises(TPVError, match="k must be a positive int or None"):
        select_sources(target, _library(), k=0)
    with pytest.raises(TPVError, match="library is empty"):
        select_sources(target, {})
    with pytest.raises(TPVError, match=r"no \*.tpv.safetensors files in"):
        select_sources(target, tmp_path)
    with pytest.raises(TPVError, match="target must be a TaskPromptVector"):
        select_sources(target.tensor, _library())
    with pytest.raises(TPVError, match=r"cannot compare vectors of shape \(8, 16\) and \(4, 16\)"):
        select_sources(target, _library(shape=(4, 16)))
