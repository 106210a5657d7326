"""Part 2 of the transfer study: what decides whether a vector start beats the origin, each factor a 0-shot
table on test (the origin the vectors are applied to, vector quality, template, λ, how the family is combined)."""

from __future__ import annotations

from tpv.data import get_task
from tpv.experiments.studies.left_out.starts import (
    Zoo,
    best_single,
    candidates,
    combination,
    family_members,
    start_prompt,
    test_score,
    validation_fields,
)


def factors(lab, zoo: Zoo, target: str, rows: list) -> dict:
    config, settings = lab.config, lab.config.left_out
    members = family_members(zoo, target)
    # Without another vector of its family in the zoo, the factors are measured on the best single source.
    names = members or [best_single(lab, zoo, target)]
    base = "family sum" if members else f"best single source ({names[0]})"
    vector = combination(zoo, names)
    key = f"family_sum:{'+'.join(names)}" if members else f"single:{names[0]}"
    out: dict = {"on": base}

    def score(tag, origin, vec, scale=1.0, origin_tag="zoo"):
        value = test_score(
            lab, target, f"{tag}@{origin_tag}" + (f"x{scale:g}" if scale != 1 else ""), start_prompt(origin, vec, scale)
        )
        rows.append(
            {
                "target": target,
                "start": f"factor:{tag}",
                "shots": 0,
                "seed": None,
                "score": value,
                "scale": scale,
                "origin": origin_tag,
            }
        )
        return value

    if "origin" in settings.factors:
        out["origin"] = {
            "zoo": score(key, zoo.origin, vector),
            "fresh": [score(key, lab.origin(s), vector, origin_tag=str(s)) for s in config.seeds],
        }
    if "scale" in settings.factors:
        out["scale"] = {f"{x:g}": score(key, zoo.origin, vector, x) for x in settings.scales}
    if "merge" in settings.factors and len(names) > 1:
        out["merge"] = {
            m: score(f"{m}:{'+'.join(names)}", zoo.origin, combination(zoo, names, m)) for m in settings.merges
        }
    if "quality" in settings.factors and zoo.at_chance:
        n = settings.selection_examples
        val = {
            c: validation_fields(lab, target, f"single:{c}@zoo", start_prompt(zoo.origin, zoo.vectors[c]), n)["score"]
            for c in candidates(zoo, target)
        }
        groups = {
            "learned": [c for c in val if c not in zoo.at_chance],
            "at chance": [c for c in val if c in zoo.at_chance],
        }
        out["quality"] = {}
        for group, names_in in groups.items():
            if names_in:
                pick = max(sorted(names_in), key=lambda c: val[c])
                out["quality"][group] = {
                    "source": pick,
                    "validation": val[pick],
                    "test": score(f"single:{pick}", zoo.origin, zoo.vectors[pick]),
                }
    if "template" in settings.factors:
        out["template"] = _template_factor(lab, zoo, target, best_single(lab, zoo, target), rows)
    return out


def in_template_of(task, source):
    """``task`` with ``source``'s template, its fields renamed in order to ``task``'s; the label words stay the
    target's (only the input's wording changes). None when the two tasks have different numbers of fields."""
    import dataclasses

    if len(task.fields) != len(source.fields):
        return None
    template = source.template
    # Through placeholders no template uses, so that renaming a→b and b→a cannot collide.
    for i, name in enumerate(source.fields):
        template = template.replace("{" + name + "}", "{\0" + str(i) + "}")
    for i, name in enumerate(task.fields):
        template = template.replace("{\0" + str(i) + "}", "{" + name + "}")
    return dataclasses.replace(task, name=f"{task.name}_in_{source.name}_template", template=template, fields=())


def _template_factor(lab, zoo: Zoo, target: str, source: str, rows: list) -> dict:
    # The best single source's vector and the zoo origin alone, each scored in the target's own template and in
    # the source's: does a vector carry over better when the input reads as its own task's did?
    variant = in_template_of(get_task(target), get_task(source))
    if variant is None:
        return {"source": source, "skipped": f"{target} and {source} have different numbers of input fields"}
    found: dict = {"source": source, "template": variant.template}
    for tag, vector in (("zoo_origin", None), (f"single:{source}", zoo.vectors[source])):
        own = test_score(
            lab, target, f"{tag}@zoo" if vector is not None else "zoo_origin", start_prompt(zoo.origin, vector)
        )

        def run(method, vector=vector):
            from tpv.engine.evaluation import evaluate

            protocol = lab.config.protocol
            return evaluate(
                lab.eval_model,
                lab.tokenizer,
                variant,
                lab.data(target, "test"),
                prompt=start_prompt(zoo.origin, vector)(),
                method=method,
                batch_size=lab.config.prompt.eval_batch_size,
                max_length=lab.config.prompt.max_length,
                max_new_tokens=protocol.max_new_tokens,
                answer_match=protocol.answer_match,
            )

        theirs = lab.evaluated(target, f"transfer:{tag}@zoo/template:{source}", run)["score"]
        found[tag] = {"target_template": own, "source_template": theirs}
        rows.append(
            {
                "target": target,
                "start": f"factor:template:{tag}",
                "shots": 0,
                "seed": None,
                "score": theirs,
                "template": source,
            }
        )
    return found
