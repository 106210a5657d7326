"""Run folders survive kills and mix-ups: complete checkpoints only, settings on record, one run at a time.

The kill tests run ``tests/train_worker.py`` in a subprocess, SIGKILL it at a chosen or a (seeded) random
file-system change, rerun it, and compare the vector with an uninterrupted run's.
"""

import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import toy_examples
from tpv import TPVError
from tpv.engine.run_folder import (
    CHECKPOINT_MARKER,
    RUN_FILENAME,
    RunLock,
    is_complete,
    mark_complete,
    open_run,
    prune_checkpoints,
)
from tpv.engine.training import train_prompt

WORKER = Path(__file__).with_name("train_worker.py")
REPO = WORKER.parents[1]


def _worker(folder, *extra):
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run(
        [sys.executable, str(WORKER), str(folder), *map(str, extra)],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    result = json.loads(done.stdout.splitlines()[-1]) if done.returncode == 0 else None
    return done.returncode, result, done.stderr


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    returncode, result, stderr = _worker(tmp_path_factory.mktemp("uninterrupted") / "run")
    assert returncode == 0, stderr
    return result


def _assert_same_vector(result, uninterrupted):
    torch.testing.assert_close(torch.tensor(result["vector"]), torch.tensor(uninterrupted["vector"]), rtol=0, atol=1e-6)


@pytest.mark.processes
@pytest.mark.parametrize("kill", ["checkpoint-6/optimizer.pt", "toy.tpv.safetensors"])
def test_a_kill_in_the_middle_of_a_write_resumes_to_the_same_vector(kill, uninterrupted, tmp_path):
    run = tmp_path / "run"
    returncode, _, _ = _worker(run, "--kill-on", kill, "--torn")
    assert returncode == -signal.SIGKILL
    returncode, result, stderr = _worker(run)
    assert returncode == 0, stderr
    _assert_same_vector(result, uninterrupted)


@pytest.mark.processes
def test_kills_at_random_points_resume_to_the_same_vector(uninterrupted, tmp_path):
    run, rng = tmp_path / "run", random.Random(0)
    for _ in range(3):
        returncode, result, stderr = _worker(run, "--kill-at", rng.randint(1, uninterrupted["events"]), "--torn")
        assert returncode in (0, -signal.SIGKILL), stderr
    returncode, result, stderr = _worker(run)
    assert returncode == 0, stderr
    _assert_same_vector(result, uninterrupted)


def test_an_empty_or_torn_checkpoint_folder_is_skipped(tmp_path):
    """The issue's reproduction: ``mkdir checkpoint-5`` used to make a run that could never resume."""
    (tmp_path / "checkpoint-5").mkdir()
    assert open_run(tmp_path, {"max_steps": 4}) == {"checkpoint": None}
    assert not (tmp_path / "checkpoint-5").exists() and (tmp_path / RUN_FILENAME).is_file()

    fingerprint = json.loads((tmp_path / RUN_FILENAME).read_text())["fingerprint"]
    for step in (2, 4):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / "optimizer.pt").write_bytes(b"x" * 100)
        mark_complete(tmp_path / f"checkpoint-{step}", fingerprint)
    assert open_run(tmp_path, {"max_steps": 4}) == {"checkpoint": str(tmp_path / "checkpoint-4")}
    (tmp_path / "checkpoint-4" / "optimizer.pt").write_bytes(b"x" * 7)  # torn after it was marked
    assert not is_complete(tmp_path / "checkpoint-4", fingerprint)
    assert not is_complete(tmp_path / "checkpoint-2", "another run")
    assert open_run(tmp_path, {"max_steps": 4}) == {"checkpoint": str(tmp_path / "checkpoint-2")}
    assert not (tmp_path / "checkpoint-4").exists()


def test_checkpoints_nobody_recorded_are_refused_not_resumed(tmp_path):
    (tmp_path / "checkpoint-5").mkdir()
    (tmp_path / "checkpoint-5" / "trainer_state.json").write_text("{}")
    with pytest.raises(TPVError, match=r"holds checkpoints that no tpv run recorded \(checkpoint-5\).*overwrite"):
        open_run(tmp_path, {"max_steps": 4})
    assert open_run(tmp_path, {"max_steps": 4}, overwrite=True) == {"checkpoint": None}
    assert not (tmp_path / "checkpoint-5").exists()


def test_pruning_keeps_the_newest_and_the_best(tmp_path):
    for step in (3, 6, 9, 12):
        (tmp_path / f"checkpoint-{step}").mkdir()
        (tmp_path / f"checkpoint-{step}" / CHECKPOINT_MARKER).write_text("{}")
    prune_checkpoints(tmp_path, 2, keep=[tmp_path / "checkpoint-12", str(tmp_path / "checkpoint-3")])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-12", "checkpoint-3"]


def _killed_run(make_tiny_model, word_tokenizer, toy_task, folder, **settings):
    from transformers import TrainerCallback

    class Crash(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            if state.global_step == 3:
                raise KeyboardInterrupt("simulated kill")

    with pytest.raises(KeyboardInterrupt):
        train_prompt(
            make_tiny_model("llama"),
            word_tokenizer,
            toy_task,
            0,
            toy_examples(16),
            output_dir=folder,
            batch_size=4,
            num_virtual_tokens=2,
            progress=False,
            callbacks=[Crash()],
            training_args={"save_steps": 2},
            **settings,
        )


def test_an_unfinished_run_with_other_settings_is_refused_naming_them(
    make_tiny_model, word_tokenizer, toy_task, tmp_path
):
    """A killed 6-step run rerun with 4 steps used to return its step-4 prompt under the 4-step fingerprint."""
    run = tmp_path / "run"
    _killed_run(make_tiny_model, word_tokenizer, toy_task, run, max_steps=6)
    assert (run / "checkpoint-2" / CHECKPOINT_MARKER).is_file()
    again = dict(output_dir=run, batch_size=4, num_virtual_tokens=2, progress=False, training_args={"save_steps": 2})
    with pytest.raises(
        TPVError,
        match=r"holds an unfinished run with other settings \(max_steps 6 there, 4 now\); "
        r"train into a new output_dir, or pass overwrite=True",
    ):
        train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, 0, toy_examples(16), max_steps=4, **again)
    with pytest.raises(TPVError, match="origin .* there, .* now"):
        train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, 5, toy_examples(16), max_steps=6, **again)
    with pytest.raises(TPVError, match="train_data 16 examples, sha256 [0-9a-f]+ there, 15 examples"):
        train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, 0, toy_examples(15), max_steps=6, **again)

    result = train_prompt(
        make_tiny_model("llama"), word_tokenizer, toy_task, 0, toy_examples(16), max_steps=4, overwrite=True, **again
    )
    assert [h["step"] for h in result.history if "loss" in h][-1] == 4
    assert json.loads((run / "tpv_train.json").read_text())["settings"]["max_steps"] == 4


def test_the_fingerprint_covers_the_model_and_tpv_version(
    make_tiny_model, word_tokenizer, toy_task, tmp_path, monkeypatch
):
    settings = dict(output_dir=tmp_path, max_steps=1, batch_size=4, num_virtual_tokens=2, progress=False)
    train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, 0, toy_examples(8), **settings)
    recorded = json.loads((tmp_path / "tpv_train.json").read_text())["settings"]
    assert recorded["tpv_version"] and recorded["model_dtype"] == "torch.float32"
    other = make_tiny_model("llama")
    other.config.rms_norm_eps = 1e-3
    with pytest.raises(TPVError, match="model_config sha256"):
        train_prompt(other, word_tokenizer, toy_task, 0, toy_examples(8), **settings)
    monkeypatch.setattr("tpv.core._version.__version__", "99.0")
    with pytest.raises(TPVError, match=r"tpv_version \S+ there, 99.0 now"):
        train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, 0, toy_examples(8), **settings)


def test_a_folder_in_use_is_refused(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    with RunLock(tmp_path):
        with pytest.raises(TPVError, match=rf"is in use by another tpv run \(pid {os.getpid()} on .*\); wait for it"):
            train_prompt(
                make_tiny_model("llama"),
                word_tokenizer,
                toy_task,
                0,
                toy_examples(8),
                output_dir=tmp_path,
                max_steps=1,
                batch_size=4,
                num_virtual_tokens=2,
                progress=False,
            )
    assert not (tmp_path / RUN_FILENAME).exists()  # refused before touching the folder


def test_a_killed_holder_leaves_no_stale_lock(tmp_path):
    code = (
        f"import os, signal; from tpv.engine.run_folder import RunLock; RunLock({str(tmp_path)!r}).acquire(); "
        f"print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)"
    )
    env = os.environ | {"PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == -signal.SIGKILL and done.stdout.strip()
    assert json.loads((tmp_path / ".tpv.lock").read_text())["pid"] == int(done.stdout)  # the dead holder's id
    with RunLock(tmp_path):
        pass


# ---- two processes (torchrun, gloo on CPU) -----------------------------------------------------------------


def _torchrun(folder, *extra):
    env = os.environ | {
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "OMP_NUM_THREADS": "1",
    }
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node",
            "2",
            str(WORKER),
            str(folder),
            "--batch-size",
            "2",
            *map(str, extra),
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    return done.returncode, _results(done.stdout), done.stderr


def _results(stdout: str) -> list[dict]:
    # Both ranks print to one pipe, and an unbuffered print writes its text and its newline separately, so two
    # ranks' lines can arrive as '{…}{…}\n\n': decode objects where they start rather than line by line.
    decoder, found, start = json.JSONDecoder(), [], stdout.find('{"vector"')
    while start != -1:
        result, end = decoder.raw_decode(stdout, start)
        found.append(result)
        start = stdout.find('{"vector"', end)
    return found


@pytest.mark.processes
def test_two_processes_give_one_process_vector_and_write_each_file_once(uninterrupted, tmp_path):
    """2 processes × batch 2 against 1 × batch 4: the same global batch, so the same run, on the shared prefix
    (each process runs the prompt once per step for its micro-batch; DDP averages the prompt's gradient)."""
    logs = tmp_path / "logs"
    logs.mkdir()
    returncode, results, stderr = _torchrun(tmp_path / "run", "--log-writes", logs, "shared_prefix=true")
    assert returncode == 0, stderr[-3000:]
    assert len(results) == 2  # every process gets the result
    for result in results:
        _assert_same_vector(result, uninterrupted)
        assert result["engine"] == "shared_prefix"
    assert uninterrupted["engine"] == "shared_prefix"
    record = json.loads((tmp_path / "run" / "tpv_train.json").read_text())
    assert record["engine_per_rank"] == ["shared_prefix", "shared_prefix"]

    writes = {rank: (logs / f"writes-{rank}.txt").read_text().splitlines() for rank in (0, 1)}
    assert set(writes[0]).isdisjoint(writes[1])
    assert sorted(Path(p).name for p in writes[1]) == ["rng_state_1.pth"] * 4  # its own RNG state per checkpoint
    final = [p for p in writes[0] if not Path(p).name.startswith(".")]  # temporary files are renamed into place
    assert len(final) == len(set(final)) and str(tmp_path / "run" / "toy.tpv.safetensors") in final
    # Evaluation is split: each process scores half of the 8 validation examples at each evaluation.
    for rank in (0, 1):
        assert set((logs / f"evaluated-{rank}.txt").read_text().split()) == {"4"}


@pytest.mark.processes
def test_two_processes_resume_after_a_kill(uninterrupted, tmp_path):
    returncode, _, _ = _torchrun(tmp_path / "run", "--kill-on", "checkpoint-6/optimizer.pt", "--torn")
    assert returncode != 0
    assert not (tmp_path / "run" / "tpv_train.json").exists()
    returncode, results, stderr = _torchrun(tmp_path / "run")
    assert returncode == 0, stderr[-3000:]
    for result in results:
        _assert_same_vector(result, uninterrupted)


def test_reproduce_takes_the_same_guarantees(tmp_path):
    """tpv reproduce trains through train_prompt (so its prompts resume and refuse other settings) and locks its
    run folder, so two reproduce processes cannot interleave their scores."""
    from tpv.experiments import load_config, reproduce

    config = load_config("smoke")
    folder = tmp_path / f"smoke-{config.fingerprint()}"
    with RunLock(folder):
        with pytest.raises(TPVError, match="is in use by another tpv run"):
            reproduce(config, run_dir=tmp_path, progress=False)
    assert not (folder / "scores.json").exists()


def test_a_broken_run_record_is_refused_and_overwrite_discards_it(tmp_path):
    (tmp_path / "tpv_train.json").write_text("[1, 2")
    with pytest.raises(TPVError, match="is not valid JSON .*delete it to train again, or pass overwrite=True"):
        open_run(tmp_path, {"max_steps": 4})
    assert open_run(tmp_path, {"max_steps": 4}, overwrite=True) == {"checkpoint": None}
    assert not (tmp_path / "tpv_train.json").exists()


@pytest.mark.processes
def test_a_tampered_checkpoint_is_one_tpv_error_and_nothing_in_it_runs(uninterrupted, tmp_path):
    run = tmp_path / "run"
    returncode, _, _ = _worker(run, "--kill-on", "toy.tpv.safetensors")  # every checkpoint complete, no result yet
    assert returncode == -signal.SIGKILL
    checkpoint = max(run.glob("checkpoint-*"), key=lambda p: int(p.name.split("-")[1]))
    target, witness = checkpoint / "rng_state.pth", tmp_path / "payload-ran"
    # A pickle that would create a file if it were ever unpickled unsafely, padded to the recorded size so the
    # checkpoint still counts as complete.
    payload = b"cbuiltins\nopen\n(" + repr(str(witness)).encode() + b"\nVw\ntR."
    target.write_bytes(payload.ljust(target.stat().st_size, b" "))
    returncode, _, stderr = _worker(run)
    assert returncode != 0 and not witness.exists()
    last = stderr.strip().splitlines()[-1]
    assert last.startswith("tpv.core.errors.TPVError: refused to unpickle") and checkpoint.name in last, last
    assert "--overwrite" in last


def test_an_early_stop_is_part_of_the_run(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    """A finished run without early stopping is not returned for a call that stops early, nor the reverse."""
    from transformers import EarlyStoppingCallback

    settings = dict(
        output_dir=tmp_path,
        max_steps=2,
        batch_size=4,
        num_virtual_tokens=2,
        progress=False,
        eval_data=toy_examples(4),
        eval_steps=1,
    )
    train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, 0, toy_examples(8), **settings)
    with pytest.raises(TPVError, match=r"callbacks .* now"):
        train_prompt(
            make_tiny_model("llama"),
            word_tokenizer,
            toy_task,
            0,
            toy_examples(8),
            callbacks=[EarlyStoppingCallback(early_stopping_patience=1)],
            **settings,
        )
    # A callback that changes nothing kept (logging, progress) leaves the run what it was: the cache answers.
    from transformers import TrainerCallback

    again = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        0,
        toy_examples(8),
        callbacks=[TrainerCallback()],
        **settings,
    )
    assert "callbacks" not in json.loads((tmp_path / "tpv_train.json").read_text())["settings"]
    assert again.vector_path.is_file()
    stopping = dict(settings, output_dir=tmp_path / "stopping")
    train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        0,
        toy_examples(8),
        callbacks=[EarlyStoppingCallback(early_stopping_patience=1)],
        **stopping,
    )
    recorded = json.loads((tmp_path / "stopping" / "tpv_train.json").read_text())["settings"]["callbacks"]
    assert recorded == [
        {"class": "transformers.trainer_callback.EarlyStoppingCallback", "patience": 1, "threshold": 0.0}
    ]
    with pytest.raises(TPVError, match=r"callbacks .* now"):
        train_prompt(
            make_tiny_model("llama"),
            word_tokenizer,
            toy_task,
            0,
            toy_examples(8),
            callbacks=[EarlyStoppingCallback(early_stopping_patience=2)],
            **stopping,
        )
