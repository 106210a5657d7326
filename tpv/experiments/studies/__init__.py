"""The paper's studies; each module has ``run(lab, progress) -> StudyResult``."""

from tpv.experiments.studies import few_shot, initialisation, origin_independence, pairwise_sums, similarity

STUDY_MODULES = {
    "origin_independence": origin_independence,
    "similarity": similarity,
    "pairwise_sums": pairwise_sums,
    "initialisation": initialisation,
    "few_shot": few_shot,
}

__all__ = ["STUDY_MODULES"]
