"""The paper's studies; each module has ``run(lab, progress) -> StudyResult``."""

from tpv.experiments.studies import few_shot, initialisation, left_out, origin_independence, pairwise_sums, similarity

STUDY_MODULES = {
    "origin_independence": origin_independence,
    "similarity": similarity,
    "pairwise_sums": pairwise_sums,
    "initialisation": initialisation,
    "few_shot": few_shot,
    "transfer": left_out,  # tpv's own question (issue 27): starts on tasks left out of the zoo
}

__all__ = ["STUDY_MODULES"]
