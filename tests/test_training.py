"""train_prompt on transformers.Trainer: learns, touches only the prompt, resumes, caches, records origins."""

import pytest
import torch
from transformers import Trainer, TrainerCallback, TrainingArguments

from conftest import toy_examples
from tpv import TaskPromptVector, TPVError, init_prompt_tuning, make_origin
from tpv.engine.training import OriginCallback, train_prompt


def _losses(history):
    return [h["loss"] for h in history if "loss" in h]


def _mean_loss(peft_model, tokenizer, task, data, prompt):
    from tpv.bridge.peft_io import set_prompt
    from tpv.data.encoding import collate, encode_examples, is_seq2seq_model
    from tpv.engine.scoring import prompt_tuning_loss

    seq2seq = is_seq2seq_model(peft_model)
    set_prompt(peft_model, prompt)
    batch = collate(encode_examples(tokenizer, task, data, seq2seq=seq2seq), 0, seq2seq=seq2seq)
    with torch.no_grad():
        return prompt_tuning_loss(peft_model.eval(), batch).item()


@pytest.mark.parametrize("kind", ["llama", "t5"])
def test_training_lowers_loss_and_changes_only_the_prompt(kind, make_tiny_model, word_tokenizer, toy_task, tmp_path):
    model = make_tiny_model(kind)
    before = {n: p.clone() for n, p in model.named_parameters()}
    origin = make_origin(model, 4, seed=0)
    data = toy_examples(64)
    result = train_prompt(
        model,
        word_tokenizer,
        toy_task,
        data,
        origin=origin,
        output_dir=tmp_path / "run",
        eval_dataset=toy_examples(16, seed=9),
        max_steps=30,
        batch_size=8,
        learning_rate=0.3,
        num_virtual_tokens=4,
        progress=False,
        args={"logging_steps": 5},
    )
    assert len(_losses(result.history)) == 6
    # The logged losses are single noisy batches (T5 trains with dropout); the whole set, without dropout, is not.
    peft_model = init_prompt_tuning(make_tiny_model(kind), origin=origin)
    assert _mean_loss(peft_model, word_tokenizer, toy_task, data, result.vector.apply_to(origin)) < _mean_loss(
        peft_model, word_tokenizer, toy_task, data, origin.tensor
    )
    for name, param in model.named_parameters():
        assert torch.equal(param, before[name]), f"{name} changed"
    assert result.vector.norm() > 0 and result.vector.tasks == {"toy": 1.0}
    assert "eval_macro_f1" in result.metrics
    loaded = TaskPromptVector.from_peft(result.adapter_dir)
    assert torch.equal(loaded.tensor, result.vector.tensor)
    assert torch.equal(TaskPromptVector.load(result.vector_path).tensor, result.vector.tensor)


class _Crash(TrainerCallback):
    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step == 3:
            raise KeyboardInterrupt("simulated kill")


def test_a_killed_run_resumes_from_its_last_checkpoint(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    kwargs = dict(
        output_dir=tmp_path / "run",
        max_steps=6,
        batch_size=4,
        num_virtual_tokens=3,
        progress=False,
        args={"save_steps": 2, "logging_steps": 1},
    )
    data = toy_examples(32)
    with pytest.raises(KeyboardInterrupt):
        train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, data, origin=0, callbacks=[_Crash()], **kwargs)
    assert (tmp_path / "run" / "checkpoint-2" / "tpv_origin.safetensors").is_file()
    result = train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, data, origin=0, **kwargs)
    steps = [h["step"] for h in result.history if "loss" in h]
    assert steps[-1] == 6 and 3 in steps  # step 3 was lost with the kill and redone
    assert result.metrics.get("train_runtime") is not None

    # A third call finds the finished run and trains nothing.
    again = train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, data, origin=0, **kwargs)
    assert torch.equal(again.vector.tensor, result.vector.tensor)
    with pytest.raises(TPVError, match="holds a finished run with other settings"):
        train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, data[:-1], origin=0, **kwargs)


def test_origin_callback_makes_plain_trainer_checkpoints_readable(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    from peft import PromptTuningConfig, get_peft_model

    from tpv.data.encoding import collate, encode_examples

    model = get_peft_model(make_tiny_model("gpt2"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3))
    start = model.prompt_encoder["default"].embedding.weight.detach().clone()
    encoded = encode_examples(word_tokenizer, toy_task, toy_examples(16), seq2seq=False)
    dataset = [{"encoded": e} for e in encoded]
    trainer = Trainer(
        model=model,
        train_dataset=dataset,
        data_collator=lambda items: collate([i["encoded"] for i in items], 0, seq2seq=False),
        args=TrainingArguments(
            output_dir=str(tmp_path / "plain"),
            max_steps=2,
            save_steps=2,
            per_device_train_batch_size=4,
            learning_rate=0.1,
            report_to=[],
            remove_unused_columns=False,
            use_cpu=True,
            disable_tqdm=True,
        ),
        callbacks=[OriginCallback()],
    )
    trainer.train()
    vector = TaskPromptVector.from_peft(tmp_path / "plain" / "checkpoint-2")
    torch.testing.assert_close(vector.tensor, model.prompt_encoder["default"].embedding.weight.detach() - start)
    assert vector.norm() > 0


def test_errors(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    model = make_tiny_model("llama")
    with pytest.raises(TPVError, match="no training examples for task 'toy'"):
        train_prompt(model, word_tokenizer, toy_task, [], origin=0, output_dir=tmp_path)
    with pytest.raises(TPVError, match="needs an origin"):
        train_prompt(model, word_tokenizer, toy_task, toy_examples(4), origin=None, output_dir=tmp_path)
    with pytest.raises(TPVError, match="label 7 is outside the label set"):
        train_prompt(
            model,
            word_tokenizer,
            toy_task,
            [{"text": "good", "label": 7}],
            origin=make_origin(model, 2),
            output_dir=tmp_path,
            max_steps=1,
        )


def test_both_engines_train_the_same_prompt_and_say_which_ran(
    make_tiny_model, word_tokenizer, toy_task, tmp_path, caplog
):
    from peft import PeftModel

    kwargs = dict(
        max_steps=4,
        batch_size=4,
        num_virtual_tokens=3,
        progress=False,
        args={"gradient_accumulation_steps": 2, "save_strategy": "no"},
    )
    with caplog.at_level("INFO", logger="tpv.engine.training"):
        shared = train_prompt(
            make_tiny_model("llama"),
            word_tokenizer,
            toy_task,
            toy_examples(32),
            origin=0,
            output_dir=tmp_path / "shared",
            **kwargs,
        )
    assert shared.engine == "shared_prefix" and "engine: shared_prefix" in caplog.text
    full = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        toy_examples(32),
        origin=0,
        output_dir=tmp_path / "full",
        shared_prefix=False,
        **kwargs,
    )
    assert full.engine == "full"
    torch.testing.assert_close(shared.vector.tensor, full.vector.tensor, rtol=1e-3, atol=1e-5)
    # The saved adapter is a plain PEFT prompt-tuning adapter.
    loaded = PeftModel.from_pretrained(make_tiny_model("llama"), str(shared.adapter_dir))
    assert loaded.peft_config["default"].peft_type.value == "PROMPT_TUNING"


def test_bf16_training_runs_on_the_shared_prefix(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    result = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        toy_examples(16),
        origin=0,
        output_dir=tmp_path / "bf16",
        max_steps=2,
        batch_size=4,
        num_virtual_tokens=3,
        progress=False,
        args={"bf16": True, "save_strategy": "no"},
    )
    assert result.engine == "shared_prefix" and torch.isfinite(result.vector.tensor).all()
    assert result.vector.norm() > 0


def test_encoder_decoder_training_falls_back_to_the_full_forward(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    result = train_prompt(
        make_tiny_model("t5"),
        word_tokenizer,
        toy_task,
        toy_examples(8),
        origin=0,
        output_dir=tmp_path / "t5",
        max_steps=1,
        batch_size=4,
        num_virtual_tokens=3,
        progress=False,
        args={"save_strategy": "no"},
    )
    assert result.engine == "full"


def test_result_evaluates_its_ready_model_and_reports_one_line(
    make_tiny_model, word_tokenizer, toy_task, tmp_path, capfd
):
    from tpv.engine.evaluation import evaluate
    from tpv.engine.training import TrainResult

    test = toy_examples(12, seed=5)
    result = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        toy_examples(32),
        origin=0,
        output_dir=tmp_path / "run",
        eval_dataset=toy_examples(8, seed=9),
        max_steps=6,
        batch_size=8,
        num_virtual_tokens=4,
        progress=True,
        max_length=48,
    )
    out, err = capfd.readouterr()
    assert "{'loss'" not in out + err and "{'train_runtime'" not in out + err  # no raw Trainer dicts
    assert "train toy" in err  # the step bar, named after the task
    [summary] = [line for line in err.splitlines() if line.startswith("trained toy: 6 steps")]
    assert f"validation macro_f1 {result.metrics['eval_macro_f1']:.3f}, accuracy " in summary
    assert "runtime" not in summary and str(result.vector_path) in summary
    assert result.history and "loss" in result.history[0]  # the records are kept, only not printed

    score = result.evaluate(test)
    # The same score as rebuilding the model from the saved vector by hand.
    by_hand = tpv_init(make_tiny_model("llama"), result)
    assert score == evaluate(by_hand, word_tokenizer, toy_task, test, max_length=48)
    assert result.evaluate(test, method="generate")["method"] == "generate"

    again = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        toy_examples(32),
        origin=0,
        output_dir=tmp_path / "run",
        eval_dataset=toy_examples(8, seed=9),
        max_steps=6,
        batch_size=8,
        num_virtual_tokens=4,
        progress=True,
        max_length=48,
    )
    assert "reused the finished run" in capfd.readouterr().err
    assert again.evaluate(test) == score
    with pytest.raises(TPVError, match="holds no model"):
        TrainResult(vector=result.vector, adapter_dir=result.adapter_dir).evaluate(test)


def tpv_init(model, result):
    from tpv import init_prompt_tuning

    return init_prompt_tuning(model, result.vector, origin=result.origin)


def test_log_records_prints_trainer_dicts(make_tiny_model, word_tokenizer, toy_task, tmp_path, capfd):
    train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        toy_examples(16),
        origin=0,
        output_dir=tmp_path / "run",
        max_steps=2,
        batch_size=8,
        num_virtual_tokens=4,
        progress=False,
        log_records=True,
        args={"logging_steps": 1},
    )
    out, err = capfd.readouterr()
    assert "{'loss'" in out + err


@pytest.mark.parametrize(
    "settings, message",
    [
        ({"max_steps": 10.0}, r"max_steps must be a whole number ≥ 1, got 10.0; pass an int"),
        ({"max_steps": True}, r"max_steps must be a whole number ≥ 1, got True"),
        ({"batch_size": 0}, r"batch_size must be a whole number ≥ 1, got 0"),
        ({"learning_rate": float("nan")}, r"learning_rate must be a positive number such as 0.3, got nan"),
        ({"learning_rate": -0.1}, r"learning_rate must be a positive number such as 0.3, got -0.1"),
        ({"learning_rate": "0.3"}, r"learning_rate must be a positive number such as 0.3, got '0.3'"),
        ({"weight_decay": float("inf")}, r"weight_decay must be a number ≥ 0 such as 1e-5, got inf"),
        ({"warmup_ratio": 1.5}, r"warmup_ratio must be a fraction in \[0, 1\] such as 0.1, got 1.5"),
        ({"init_scale": float("nan")}, r"init_scale must be a finite number such as 1.0, got nan"),
        ({"eval_steps": 0}, r"eval_steps must be a whole number ≥ 1, got 0"),
        ({"eval_method": "vote"}, r"unknown eval_method 'vote'; use one of \['rank', 'generate'\]"),
        ({"seed": -1}, r"seed must be a whole number between 0 and 4294967295, got -1"),
        ({"num_virtual_tokens": 2.5}, r"num_virtual_tokens must be a whole number ≥ 1, got 2.5"),
        (
            {"args": {"learning_rte": 0.1}},
            r"args has 'learning_rte', which is not a TrainingArguments field; did you mean 'learning_rate'",
        ),
        (
            {"args": {"output_dir": "elsewhere"}},
            r"train_prompt got output_dir='.*run' and args.output_dir='elsewhere'; set it in one place",
        ),
        (
            {"args": ["save_steps"]},
            r"args must be a transformers.TrainingArguments or a dict of its fields, got list",
        ),
        (
            {"args": {"lr_scheduler_type": "wobbly"}},
            r"transformers.TrainingArguments rejected the settings: .*wobbly.*fix the value passed in args",
        ),
        ({"args": {"learning_rate": 0.1}, "learning_rate": 0.2}, r"learning_rate=0.2 and args.learning_rate=0.1"),
        ({"args": {"per_device_train_batch_size": 4}}, r"batch_size=2 and args.per_device_train_batch_size=4"),
        ({"args": {"warmup_steps": 3}, "warmup_ratio": 0.5}, r"warmup_ratio=0.5 and args.warmup_steps=3"),
        ({"args": {"num_train_epochs": 2}}, r"counts optimizer steps, so args.num_train_epochs=2 would be ignored"),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(
    settings, message, make_tiny_model, word_tokenizer, toy_task, tmp_path
):
    with pytest.raises(TPVError, match=message):
        train_prompt(
            make_tiny_model("llama"),
            word_tokenizer,
            toy_task,
            toy_examples(4),
            origin=0,
            output_dir=tmp_path / "run",
            progress=False,
            **{"max_steps": 1, "batch_size": 2, "num_virtual_tokens": 2} | settings,
        )
    assert not (tmp_path / "run").exists()


def _fingerprint(result):
    import json

    return json.loads((result.adapter_dir / "tpv_train.json").read_text())["fingerprint"]


def test_training_arguments_and_a_dataset_run_the_same_run_as_the_keywords(
    make_tiny_model, word_tokenizer, toy_task, tmp_path
):
    from datasets import Dataset

    data = toy_examples(16)
    by_keywords = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        data,
        origin=0,
        output_dir=tmp_path / "keywords",
        max_steps=3,
        learning_rate=0.1,
        batch_size=4,
        seed=3,
        num_virtual_tokens=3,
        progress=False,
        args={"logging_steps": 1},
    )
    arguments = TrainingArguments(
        output_dir=str(tmp_path / "args"),
        max_steps=3,
        learning_rate=0.1,
        per_device_train_batch_size=4,
        seed=3,
        logging_steps=1,
    )
    by_args = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        Dataset.from_list(data),
        origin=0,
        args=arguments,
        num_virtual_tokens=3,
        progress=False,
    )
    assert by_args.adapter_dir == tmp_path / "args"
    assert _fingerprint(by_args) == _fingerprint(by_keywords)  # the same settings on record
    assert torch.equal(by_args.vector.tensor, by_keywords.vector.tensor)
    # A keyword that agrees with args is no conflict; fields args leaves at transformers' defaults take tpv's.
    again = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        data,
        origin=0,
        args=arguments,
        max_steps=3,
        output_dir=tmp_path / "args",
        num_virtual_tokens=3,
        progress=False,
    )
    assert torch.equal(again.vector.tensor, by_args.vector.tensor)
    with pytest.raises(TPVError, match=r"max_steps=4 and args.max_steps=3; set it in one place"):
        train_prompt(make_tiny_model("llama"), word_tokenizer, toy_task, data, origin=0, args=arguments, max_steps=4)


def test_the_previous_call_form_warns_and_is_the_same_run(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    settings = dict(output_dir=tmp_path / "run", max_steps=2, batch_size=4, num_virtual_tokens=3, progress=False)
    data, validation = toy_examples(8), toy_examples(4, seed=9)
    with pytest.warns(DeprecationWarning, match=r"origin as 4th positional argument.*eval_data=.*training_args=") as w:
        old = train_prompt(
            make_tiny_model("llama"),
            word_tokenizer,
            toy_task,
            0,
            data,
            eval_data=validation,
            training_args={"logging_steps": 1},
            **settings,
        )
    assert w[0].filename == __file__  # the warning points at the caller's line
    with pytest.warns(DeprecationWarning, match=r"train_data= \(pass train_dataset=...\)"):
        by_keyword = train_prompt(
            make_tiny_model("llama"),
            word_tokenizer,
            toy_task,
            0,
            train_data=data,
            eval_data=validation,
            training_args={"logging_steps": 1},
            **settings,
        )
    new = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        data,
        origin=0,
        eval_dataset=validation,
        args={"logging_steps": 1},
        **settings,
    )
    # Both later calls found the first one's finished run: the forms mean the same settings.
    assert new.history == by_keyword.history == old.history
    assert torch.equal(new.vector.tensor, old.vector.tensor)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda t, m, w, d: t(m, w, "toy", 0, output_dir="x"), r"4th argument is the training data, got int 0"),
        (lambda t, m, w, d: t(m, w, "toy", 0, d, d), r"at most 5 positional arguments, got 6"),
        (lambda t, m, w, d: t(m, w, "toy", 0, d, origin=1), r"origin both as its 4th argument and as origin="),
        (lambda t, m, w, d: t(m, w, "toy", d, train_data=d, origin=0), r"both train_data= and train_dataset="),
        (
            lambda t, m, w, d: t(m, w, "toy", {"train": d}, origin=0, output_dir="x"),
            r"dict of splits \['train'\]; pass one split",
        ),
        (lambda t, m, w, d: t(m, w, "toy", "imdb", origin=0, output_dir="x"), r"must hold examples .*got 'imdb'"),
        (lambda t, m, w, d: t(m, w, "toy", d, origin=0), r"needs output_dir=\.\.\."),
    ],
)
def test_call_forms_that_cannot_be_read_are_refused(call, message, make_tiny_model, word_tokenizer, toy_task):
    with pytest.raises(TPVError, match=message):
        call(train_prompt, make_tiny_model("llama"), word_tokenizer, toy_examples(4))


def test_a_users_own_peft_model_trains_from_the_origin_given(make_tiny_model, word_tokenizer, toy_task, tmp_path):
    from peft import PromptTuningConfig, get_peft_model

    from tpv.bridge.peft_io import get_prompt

    settings = dict(max_steps=3, batch_size=4, num_virtual_tokens=3, progress=False, args={"save_strategy": "no"})
    origin = make_origin(make_tiny_model("llama"), 3, seed=4)
    peft_model = get_peft_model(
        make_tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=3)
    )
    assert not torch.equal(get_prompt(peft_model), origin.tensor)  # PEFT's own random start
    mine = train_prompt(
        peft_model, word_tokenizer, toy_task, toy_examples(16), origin=origin, output_dir=tmp_path / "a", **settings
    )
    from_base = train_prompt(
        make_tiny_model("llama"),
        word_tokenizer,
        toy_task,
        toy_examples(16),
        origin=origin,
        output_dir=tmp_path / "b",
        **settings,
    )
    assert mine.origin is origin and mine.peft_model is peft_model
    torch.testing.assert_close(mine.vector.tensor, from_base.vector.tensor)
    torch.testing.assert_close(get_prompt(peft_model), origin.tensor + mine.vector.tensor)

    other = get_peft_model(make_tiny_model("llama"), PromptTuningConfig(task_type="CAUSAL_LM", num_virtual_tokens=5))
    with pytest.raises(TPVError, match=r"origin has 3 virtual tokens but adapter 'default' has 5"):
        train_prompt(other, word_tokenizer, toy_task, toy_examples(4), origin=origin, output_dir=tmp_path / "c")
    with pytest.raises(TPVError, match=r"PeftModel that records no origin; pass origin=\.\.\."):
        train_prompt(other, word_tokenizer, toy_task, toy_examples(4), output_dir=tmp_path / "c")
