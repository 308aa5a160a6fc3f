#!/usr/bin/env python3
"""Export what scripts/demo/train.py trained into models/persona-demo/ and check it.

    python scripts/demo/export.py --work /tmp/persona-demo            # from the repository root

Writes models/persona-demo/: model.onnx (torch.onnx legacy exporter, KV cache, weights inline, f32),
config.json, generation_config.json, tokenizer.json, tokenizer_config.json, adapters/<10 experts>/,
router-tfidf/{model.onnx, router.json, tokenizer.json} (the encoder router train.py trained), router/ (the default
router: `personafuse router train` run in Node on the exported base, so build the package first: npm run build),
eval.json, README.md.

Checks (recorded in eval.json): ONNX vs PyTorch logits (left-padded batch prefill, one decode step with the
cache, and the no-cache path), tf-idf router ONNX vs PyTorch, and greedy continuations of fixed prompts for several persona
mixes, computed in PyTorch on base weights merged in float64 straight from the adapter files:
W' = W + sum_i w_i * scale_i * B_i A_i (our runtime's semantics).
Report, on the TEST split of data/situations (never used in training): the default router's top-2 / top-1 per
situation (and on data/situations/everyday.jsonl);
sampled replies of each expert alone (share in the expert's style, judged by the pole's unique template phrases)
and of the routed mix (persona "auto"; share in the style of a routed expert); for both, the share of replies that
address the message's situation, judged by which situation's tip phrases the reply contains; twenty sampled test
messages with their routed mix and reply.
"""
from __future__ import annotations

import json
import math
import os
import shutil
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import torch
from safetensors.torch import load_file, save_file

sys.dont_write_bytecode = True  # no __pycache__ beside the committed scripts
sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus as C  # noqa: E402
import train as T  # noqa: E402
from make_tiny_models import export_class  # noqa: E402  (scripts/fixtures, put on the path by train)

warnings.filterwarnings("ignore")

REPO = Path(__file__).resolve().parents[2]
OUT_REL = Path("models/persona-demo")

# fixed prompts (phrasings in no split of data/situations) and the persona mixes recorded for them
PROMPTS = [
    "I am afraid I will blank on the chemistry exam tomorrow.",
    "Be honest: how is my cover letter?",
    "My grandmother passed away last night and I can't stop crying.",
]
MIXES = [
    ("base", {}),
    ("extraversion_high", {"extraversion_high": 1.0}),
    ("extraversion_low", {"extraversion_low": 1.0}),
    ("agreeableness_high", {"agreeableness_high": 1.0}),
    ("agreeableness_low", {"agreeableness_low": 1.0}),
    ("conscientiousness_high", {"conscientiousness_high": 1.0}),
    ("conscientiousness_low", {"conscientiousness_low": 1.0}),
    ("openness_high", {"openness_high": 1.0}),
    ("openness_low", {"openness_low": 1.0}),
    ("neuroticism_high", {"neuroticism_high": 1.0}),
    ("neuroticism_low", {"neuroticism_low": 1.0}),
    ("calm_structured", {"neuroticism_low": 0.6, "conscientiousness_high": 0.4}),
    ("warm_social", {"agreeableness_high": 0.5, "extraversion_high": 0.5}),
]
# mixes whose greedy tokens the Node test checks (all recorded ones are in eval.json)
MAX_NEW = 48


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Decoder export: make_tiny_models.export_class (a LlamaForCausalLM subclass, so module paths stay
# model.layers.N...; the past as flat tensors), with position_ids and a past.


def export_decoder(hf_dir: Path, path: Path) -> None:
    from transformers import LlamaForCausalLM

    base = LlamaForCausalLM.from_pretrained(hf_dir).eval()
    cfg = base.config
    L, kvh, hd = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads
    model = export_class(L, True, True)(cfg).eval()
    model.load_state_dict(base.state_dict())
    B, S, P = 2, 3, 4
    g = torch.Generator().manual_seed(1)
    ids = torch.randint(0, cfg.vocab_size, (B, S), generator=g)
    mask = torch.ones(B, P + S, dtype=torch.long)
    pos = torch.arange(P, P + S).unsqueeze(0).expand(B, S).contiguous()
    past = [torch.randn(B, kvh, P, hd, generator=g) for _ in range(2 * L)]
    in_names = ["input_ids", "attention_mask", "position_ids"]
    out_names = ["logits"]
    dyn = {"input_ids": {0: "batch_size", 1: "sequence_length"},
           "attention_mask": {0: "batch_size", 1: "total_sequence_length"},
           "position_ids": {0: "batch_size", 1: "sequence_length"},
           "logits": {0: "batch_size", 1: "sequence_length"}}
    for i in range(L):
        for t in ("key", "value"):
            in_names.append(f"past_key_values.{i}.{t}")
            dyn[in_names[-1]] = {0: "batch_size", 2: "past_sequence_length"}
            out_names.append(f"present.{i}.{t}")
            dyn[out_names[-1]] = {0: "batch_size", 2: "total_sequence_length"}
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask, pos, *past), str(path), input_names=in_names, output_names=out_names,
                          dynamic_axes=dyn, dynamo=False)


def torch_logits(model, ids: list[int]) -> np.ndarray:
    with torch.no_grad():
        t = torch.tensor([ids])
        return model(input_ids=t, attention_mask=torch.ones_like(t), position_ids=torch.arange(len(ids))[None]
                     ).logits[0].double().numpy()


def check_decoder(path: Path, model, sequences: list[list[int]], next_tokens: list[int]) -> dict:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    cfg = model.config
    L, kvh, hd = cfg.num_hidden_layers, cfg.num_key_value_heads, cfg.hidden_size // cfg.num_attention_heads

    def empty_past(B):
        return {f"past_key_values.{i}.{t}": np.zeros((B, kvh, 0, hd), np.float32)
                for i in range(L) for t in ("key", "value")}

    # 1. each sequence alone, no past (empty cache), all positions
    alone = 0.0
    for s in sequences:
        o = sess.run(["logits"], {"input_ids": np.array([s], np.int64), "attention_mask": np.ones((1, len(s)), np.int64),
                                  "position_ids": np.arange(len(s))[None].astype(np.int64), **empty_past(1)})[0][0]
        alone = max(alone, float(np.abs(o - torch_logits(model, s)).max()))
    # 2. left-padded batch, then one decode step with the cache
    B, S = len(sequences), max(len(s) for s in sequences)
    ids = np.zeros((B, S), np.int64)
    mask = np.zeros((B, S), np.int64)
    for b, s in enumerate(sequences):
        ids[b, S - len(s):] = s
        mask[b, S - len(s):] = 1
    pos = np.clip(np.cumsum(mask, 1) - 1, 0, None)
    outs = sess.run(None, {"input_ids": ids, "attention_mask": mask, "position_ids": pos, **empty_past(B)})
    prefill = 0.0
    for b, s in enumerate(sequences):
        prefill = max(prefill, float(np.abs(outs[0][b, S - len(s):] - torch_logits(model, s)).max()))
    feeds2 = {"input_ids": np.array(next_tokens, np.int64)[:, None],
              "attention_mask": np.concatenate([mask, np.ones((B, 1), np.int64)], 1),
              "position_ids": pos[:, -1:] + 1}
    for i in range(L):
        for j, t in enumerate(("key", "value")):
            feeds2[f"past_key_values.{i}.{t}"] = outs[1 + 2 * i + j]
    outs2 = sess.run(None, feeds2)
    step = 0.0
    for b, s in enumerate(sequences):
        ref = torch_logits(model, s + [next_tokens[b]])[-1]
        step = max(step, float(np.abs(outs2[0][b, 0] - ref).max()))
    # 3. greedy decoding with the cache in ONNX vs full recompute in PyTorch
    s0 = list(sequences[0])
    o = sess.run(None, {"input_ids": np.array([s0], np.int64), "attention_mask": np.ones((1, len(s0)), np.int64),
                        "position_ids": np.arange(len(s0))[None].astype(np.int64), **empty_past(1)})
    onnx_greedy, cur = [], list(s0)
    for _ in range(16):
        nxt = int(o[0][0, -1].argmax())
        onnx_greedy.append(nxt)
        cur.append(nxt)
        f = {"input_ids": np.array([[nxt]], np.int64), "attention_mask": np.ones((1, len(cur)), np.int64),
             "position_ids": np.array([[len(cur) - 1]], np.int64)}
        for i in range(L):
            for j, t in enumerate(("key", "value")):
                f[f"past_key_values.{i}.{t}"] = o[1 + 2 * i + j]
        o = sess.run(None, f)
    torch_greedy = greedy(model, s0, 16, eos=None)["ids"]
    return dict(sequences=len(sequences), sequence_lengths=[len(s) for s in sequences],
                no_cache_single_max_abs_diff=alone, prefill_left_padded_max_abs_diff=prefill,
                decode_step_with_cache_max_abs_diff=step,
                greedy_16_tokens_onnx_kv_cache_equals_pytorch=onnx_greedy == torch_greedy)


# ---------------------------------------------------------------------------------------------
# Persona mixes, merged in float64 from the files


def merged_model_f64(hf_dir: Path, adapters_root: Path, mix: dict):
    from transformers import LlamaForCausalLM

    model = LlamaForCausalLM.from_pretrained(hf_dir).eval().double()
    sd = model.state_dict()
    for name, w in mix.items():
        d = adapters_root / name
        conf = json.loads((d / "adapter_config.json").read_text())
        assert not conf.get("alpha_pattern") and not conf.get("rank_pattern") and not conf.get("use_rslora")
        tensors = load_file(str(d / "adapter_model.safetensors"))
        for key, a in tensors.items():
            if not key.endswith(".lora_A.weight"):
                continue
            module = key[len("base_model.model."):-len(".lora_A.weight")]
            b = tensors[key.replace("lora_A", "lora_B")].double()
            scale = conf["lora_alpha"] / a.shape[0]
            sd[module + ".weight"] += w * scale * (b @ a.double())
    model.load_state_dict(sd)
    return model


def greedy(model, prompt: list[int], max_new: int, eos: int | None) -> dict:
    """Greedy by full recompute (no cache), as the Node test does with PersonaModel.forward."""
    ids, margins = list(prompt), []
    with torch.no_grad():
        for _ in range(max_new):
            t = torch.tensor([ids])
            logits = model(input_ids=t, attention_mask=torch.ones_like(t)).logits[0, -1].double()
            top = logits.topk(2)
            margins.append(float(top.values[0] - top.values[1]))
            nxt = int(top.indices[0])
            ids.append(nxt)
            if eos is not None and nxt == eos:
                break
    return dict(ids=ids[len(prompt):], min_margin=min(margins), margins=[float(f"{m:.4g}") for m in margins])


class Merger:
    """Persona mixes merged in float64 from the shipped adapter files (as merged_model_f64), fast: the base weights
    and every expert's scale * B A are read once; model(mix) loads base + sum w * delta into one reused model."""

    def __init__(self, hf: Path, adapters_root: Path):
        from transformers import LlamaForCausalLM
        self.model = LlamaForCausalLM.from_pretrained(hf).eval()
        self.base = {k: v.double() for k, v in self.model.state_dict().items()}
        self.deltas = {}
        for name in C.EXPERTS:
            d = adapters_root / name
            conf = json.loads((d / "adapter_config.json").read_text())
            tensors = load_file(str(d / "adapter_model.safetensors"))
            self.deltas[name] = {
                key[len("base_model.model."):-len(".lora_A.weight")] + ".weight":
                    conf["lora_alpha"] / a.shape[0] * (tensors[key.replace("lora_A", "lora_B")].double() @ a.double())
                for key, a in tensors.items() if key.endswith(".lora_A.weight")}

    def __call__(self, mix: dict):
        sd = {k: v.clone() for k, v in self.base.items()}
        for name, w in mix.items():
            for k, d in self.deltas[name].items():
                sd[k] += w * d
        self.model.load_state_dict({k: v.float() for k, v in sd.items()})
        return self.model


def classify_style(text: str, frags: dict) -> str | None:
    """The pole whose unique template phrases (corpus.style_fragments) occur most in the reply; None on a tie or none."""
    scores = {p: sum(f in text for f in fr) for p, fr in frags.items()}
    best = max(scores.values())
    top = [p for p, v in scores.items() if v == best]
    return top[0] if best > 0 and len(top) == 1 else None


TIPS = {sit: [t.lower() for t in s["tips"]] for sit, s in C.SITUATIONS.items()}


def classify_situation(text: str) -> str | None:
    """The situation whose tip phrases (corpus.SITUATIONS, unique to one situation) occur most in the reply, case
    ignored; None when the reply has no tip or two situations tie."""
    low = text.lower()
    scores = {sit: sum(t in low for t in tips) for sit, tips in TIPS.items()}
    best = max(scores.values())
    top = [s for s, v in scores.items() if v == best]
    return top[0] if best > 0 and len(top) == 1 else None


def chat_ids(tok, text: str) -> list[int]:
    r = tok.apply_chat_template([{"role": "user", "content": text}], add_generation_prompt=True, tokenize=True,
                                return_dict=False)
    return list(r["input_ids"]) if isinstance(r, dict) else list(r)


def sample(model, tok, ids: list[int], seed: int) -> str:
    """generation_config's sampling: temperature 0.7, top-p 0.9, top-k 50."""
    torch.manual_seed(seed)
    t = torch.tensor([ids])
    with torch.no_grad():
        out = model.generate(input_ids=t, attention_mask=torch.ones_like(t), max_new_tokens=80, do_sample=True,
                             temperature=0.7, top_p=0.9, top_k=50)
    return tok.decode(out[0, len(ids):], skip_special_tokens=True)


def per_situation(rows: list[dict], key: str) -> dict:
    acc = {}
    for r in rows:
        a = acc.setdefault(r["situation"], [0, 0])
        a[0] += bool(r[key])
        a[1] += 1
    return {s: round(h / n, 4) for s, (h, n) in acc.items()}


def test_replies(merger: Merger, tok, route_of, test: list[dict], per_expert_per_situation: int = 4,
                 routed_per_situation: int = 1000) -> dict:
    """Sampled replies to TEST-split messages (data/situations/test.jsonl, never trained on):
    - each expert alone at weight 1, per_expert_per_situation messages of every situation (one sample each): the
      share of replies in that expert's style, and the share that address the message's situation;
    - the router's mix (persona 'auto'), up to routed_per_situation messages of every situation: the share in the
      style of one of the two routed experts, and the share that address the message's situation."""
    frags = C.style_fragments()
    rng = __import__("random").Random(5)
    by_sit = {}
    for e in test:
        by_sit.setdefault(e["situation"], []).append(e)
    single_msgs = [e for sit in C.SITUATIONS for e in rng.sample(by_sit[sit], min(per_expert_per_situation, len(by_sit[sit])))]
    routed_msgs = [e for sit in C.SITUATIONS for e in rng.sample(by_sit[sit], min(routed_per_situation, len(by_sit[sit])))]
    enc = {e["text"]: chat_ids(tok, e["text"]) for e in single_msgs + routed_msgs}
    single, single_rows = {}, []
    for k, name in enumerate(C.EXPERTS):
        m = merger({name: 1.0})
        rows = []
        for i, e in enumerate(single_msgs):
            text = sample(m, tok, enc[e["text"]], seed=1000 * k + i)
            rows.append(dict(situation=e["situation"], user=e["text"], reply=text, style=classify_style(text, frags),
                             addressed=classify_situation(text)))
        single[name] = dict(in_style=sum(r["style"] == name for r in rows) / len(rows),
                            addresses_situation=sum(r["addressed"] == r["situation"] for r in rows) / len(rows),
                            n=len(rows), styles_seen={s: sum(str(r["style"]) == s for r in rows)
                                                      for s in sorted({str(r["style"]) for r in rows})})
        single_rows += [dict(r, expert=name) for r in rows]
        log(f"  {name}: in style {single[name]['in_style']:.2f}, addresses the situation "
            f"{single[name]['addresses_situation']:.2f}")
    base = merger({})
    base_styles, base_addr = {}, 0
    for i, e in enumerate(single_msgs):
        text = sample(base, tok, enc[e["text"]], seed=i)
        st = classify_style(text, frags) or "unclassified"
        base_styles[st] = base_styles.get(st, 0) + 1
        base_addr += classify_situation(text) == e["situation"]
    routed = []
    for i, e in enumerate(routed_msgs):
        mix = route_of[e["text"]]
        text = sample(merger(mix), tok, enc[e["text"]], seed=i)
        st = classify_style(text, frags)
        routed.append(dict(situation=e["situation"], user=e["text"], mix=mix, reply=text, style=st,
                           style_is_routed=st in mix, addressed=classify_situation(text),
                           router_pair_right=set(mix) == set(C.ROUTING[e["situation"]])))
    for r in routed:
        r["addresses_situation"] = r["addressed"] == r["situation"]
    for r in single_rows:
        r["addresses_situation"] = r["addressed"] == r["situation"]
    right = [r for r in routed if r["router_pair_right"]]
    samples = __import__("random").Random(20).sample(routed, min(20, len(routed)))
    return dict(
        split="test",
        method=("sampled replies (temperature 0.7, top-p 0.9, top-k 50, at most 80 tokens) to test-split messages; "
                "style = the pole whose template phrases (unique to it) occur most in the reply; a reply addresses "
                "the message's situation when that situation's tip phrases (unique to it) occur in it more than any "
                "other situation's"),
        single_expert_weight_1=single,
        single_expert_messages=len(single_msgs),
        mean_single_expert_in_style=sum(v["in_style"] for v in single.values()) / len(single),
        single_expert_addresses_situation=sum(r["addresses_situation"] for r in single_rows) / len(single_rows),
        single_expert_addresses_situation_per_situation=per_situation(single_rows, "addresses_situation"),
        base_model_style_counts=base_styles,
        base_model_addresses_situation=base_addr / len(single_msgs),
        routed_messages=len(routed),
        routed_per_situation=routed_per_situation,
        routed_in_style_of_a_routed_expert=sum(r["style_is_routed"] for r in routed) / len(routed),
        routed_addresses_situation=sum(r["addresses_situation"] for r in routed) / len(routed),
        routed_addresses_situation_when_router_right=(sum(r["addresses_situation"] for r in right) / len(right)
                                                      if right else None),
        routed_addresses_situation_per_situation=per_situation(routed, "addresses_situation"),
        routed_samples=[dict(situation=r["situation"], user=r["user"], mix=r["mix"], reply=r["reply"],
                             style=r["style"], addressed=r["addressed"]) for r in samples],
    )


def f9(a) -> list:
    return [float(f"{x:.9g}") for x in np.asarray(a, dtype=np.float64).ravel()]


# ---------------------------------------------------------------------------------------------
# Router


def export_router(work: Path, vocab: int, path: Path) -> T.Router:
    model = T.Router(vocab)
    model.load_state_dict(torch.load(work / "router" / "router.pt"))
    model.eval()
    ids = torch.tensor([[5, 6, 7, 8], [9, 10, 0, 0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0]])
    with torch.no_grad():
        torch.onnx.export(model, (ids, mask), str(path), input_names=["input_ids", "attention_mask"],
                          output_names=["logits"], dynamo=False, opset_version=17,
                          dynamic_axes={"input_ids": {0: "batch", 1: "sequence"},
                                        "attention_mask": {0: "batch", 1: "sequence"}, "logits": {0: "batch"}})
    return model


def check_router(path: Path, model, tok, test: list[dict]) -> dict:
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    texts = [e["user"] for e in test]
    ids, mask = T.router_batch(tok, texts)  # right-padded batch
    onnx_logits = sess.run(["logits"], {"input_ids": ids.numpy(), "attention_mask": mask.numpy()})[0]
    with torch.no_grad():
        ref = model(ids, mask).numpy()
    batch_diff = float(np.abs(onnx_logits - ref).max())
    single = 0.0
    for t in texts[:20]:
        i1, m1 = T.router_batch(tok, [t])
        o = sess.run(["logits"], {"input_ids": i1.numpy(), "attention_mask": m1.numpy()})[0]
        single = max(single, float(np.abs(o - ref[texts.index(t)]).max()))
    top2 = np.argsort(-onnx_logits, 1)[:, :2]
    cases = [dict(situation=e["situation"], user=e["user"], expected=e["experts"],
                  predicted=[C.EXPERTS[int(j)] for j in t],
                  top2_gap=float(np.sort(onnx_logits[i])[-2] - np.sort(onnx_logits[i])[-3]))
             for i, (t, e) in enumerate(zip(top2, test))]
    ok = [set(C.EXPERTS[j] for j in t) == set(e["experts"]) for t, e in zip(top2, test)]
    in_pair = [C.EXPERTS[t[0]] in e["experts"] for t, e in zip(top2, test)]
    with torch.no_grad():
        sit = model.situation_logits(ids, mask).argmax(-1).tolist()
    per, per1, confused = {}, {}, {}
    for o, o1, s_, e in zip(ok, in_pair, sit, test):
        for d, v in ((per, o), (per1, o1)):
            a = d.setdefault(e["situation"], [0, 0])
            a[0] += int(v)
            a[1] += 1
        if T.SITUATIONS[s_] != e["situation"]:
            c = confused.setdefault(e["situation"], {})
            c[T.SITUATIONS[s_]] = c.get(T.SITUATIONS[s_], 0) + 1
    return dict(split="test (data/situations/test.jsonl)",
                onnx_vs_pytorch_padded_batch_max_abs_diff=batch_diff,
                onnx_single_unpadded_vs_padded_batch_max_abs_diff=single,
                heldout_top2_set_accuracy_onnx=sum(ok) / len(ok),
                heldout_top1_in_expected_pair_onnx=float(np.mean(in_pair)),
                situation_accuracy=float(np.mean([T.SITUATIONS[s_] == e["situation"] for s_, e in zip(sit, test)])),
                heldout_per_situation_top2={k: v[0] / v[1] for k, v in per.items()},
                heldout_per_situation_top1_in_pair={k: v[0] / v[1] for k, v in per1.items()},
                mistaken_for={k: dict(sorted(v.items(), key=lambda kv: -kv[1])[:3]) for k, v in confused.items()},
                heldout_examples=len(test), **capped_cases(cases))


# test/demo_model.test.ts routes these through Node's encoder router; all 3,311 of them would be 1 MB of eval.json
CASES_PER_SITUATION = 40


def capped_cases(cases: list[dict]) -> dict:
    """The first CASES_PER_SITUATION test messages of every situation (test order) and the ONNX top-2 accuracy on them."""
    seen: dict[str, int] = {}
    kept = []
    for c in cases:
        if seen.get(c["situation"], 0) < CASES_PER_SITUATION:
            seen[c["situation"]] = seen.get(c["situation"], 0) + 1
            kept.append(c)
    return dict(heldout_cases=kept,
                heldout_cases_top2_set_accuracy_onnx=sum(set(c["predicted"]) == set(c["expected"]) for c in kept) / len(kept))


def node(*args: str, stdin: str | None = None) -> str:
    """Runs a personafuse step in Node (the package must be built: npm run build) and returns its stdout."""
    import subprocess
    r = subprocess.run(["node", *args], cwd=REPO, input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        raise RuntimeError(f"node {' '.join(args)} failed:\n{r.stderr[-4000:]}")
    return r.stdout


# `router train` settings beyond its defaults, picked on the validation split: with the dataset's third round,
# 16,384 buckets per n-gram block gave 80.6% top-2 there against 78.9% for the default 8,192 (the earlier base);
# float16 weights keep the larger head (25 x 33,280) at 1.7 MB, inside the folder's 25 MB
ROUTER_FLAGS = ["--ngram-buckets", "16384", "--head-dtype", "float16"]


def train_node_router(out: Path, cache: str) -> dict:
    """The demo's default router: `personafuse router train` on the exported base (hidden states + n-grams, seed 0),
    its report on the test split and on the independent everyday messages. Compiles the TypeScript first, so the
    router is what the sources train (a stale dist/ would write an older format)."""
    import subprocess
    subprocess.run(["npm", "run", "build:ts"], cwd=REPO, check=True, capture_output=True)
    cli = "dist/lib/cli/main.js"
    train = ["router", "train", "--model", str(out), "--data", "data/situations", "--out", str(out / "router"), "--seed", "0", *ROUTER_FLAGS]
    t0 = time.time()
    report = json.loads(node(cli, *train, "--cache-dir", cache, "--json"))
    seconds = time.time() - t0
    everyday = json.loads(node(cli, "router", "eval", "--model", str(out), "--data", "data/situations", "--split", "everyday",
                               "--router", str(out / "router"), "--cache-dir", cache, "--json"))
    return dict(test=report, everyday=everyday, seconds=seconds, command="npx personafuse " + " ".join(train))


def node_routes(out: Path, cache: str, texts: list[str]) -> dict:
    """text -> the mix the default router picks (scripts/demo/route_texts.js)."""
    mixes = json.loads(node("scripts/demo/route_texts.js", str(out), cache, stdin=json.dumps(texts)))
    return {t: {k: round(float(v), 4) for k, v in m.items()} for t, m in zip(texts, mixes)}


# ---------------------------------------------------------------------------------------------


def test_messages(work: Path) -> list[dict]:
    return [dict(text=e["user"], situation=e["situation"]) for e in T.read_jsonl(work / "corpus" / "router_test.jsonl")]


def dir_size(p: Path) -> int:
    """Bytes of the shipped folder: not the injected models the runtime caches beside model.onnx (*.persona-*,
    git-ignored), which a run of the package leaves there."""
    return sum(f.stat().st_size for f in p.rglob("*") if f.is_file() and ".persona-" not in f.name)


def main() -> None:
    import argparse
    if "--readme-only" in sys.argv:  # rewrite README.md from eval.json
        os.chdir(REPO)
        write_readme(OUT_REL, json.loads((OUT_REL / "eval.json").read_text()))
        return

    from transformers import LlamaForCausalLM, PreTrainedTokenizerFast

    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/persona-demo"))
    ap.add_argument("--out", type=Path, default=OUT_REL, help="output folder (default models/persona-demo)")
    ap.add_argument("--per-expert", type=int, default=4, help="test messages per situation for each expert alone")
    ap.add_argument("--routed", type=int, default=1000, help="test messages per situation with the router's mix (default: all)")
    ap.add_argument("--threads", type=int, default=1, help="torch threads (default 1: the machine is shared)")
    a = ap.parse_args()
    work = a.work.resolve()
    out = a.out.resolve() if a.out != OUT_REL else OUT_REL
    os.chdir(REPO)
    torch.set_num_threads(a.threads)
    # replace what this script writes (router-hidden/ is an earlier build's hidden-state router, which router/ replaces)
    for f in ("model.onnx", "config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json",
              "eval.json", "adapters", "router", "router-tfidf", "router-hidden"):  # README.md keeps its hand-written tail
        p = out / f
        if p.is_dir():
            shutil.rmtree(p)
        elif p.exists():
            p.unlink()
    (out / "router-tfidf").mkdir(parents=True)
    hf = work / "hf"
    tok = PreTrainedTokenizerFast.from_pretrained(hf)
    report = json.loads((work / "train_report.json").read_text())

    log("files")
    for f in ("config.json", "generation_config.json", "tokenizer.json", "tokenizer_config.json"):
        shutil.copy(hf / f, out / f)
    shutil.copy(work / "router" / "tokenizer.json", out / "router-tfidf" / "tokenizer.json")  # the router's own (lower case)
    # transformers 5 writes tokenizer_class "TokenizersBackend"; the older name loads in transformers 4 and 5
    # and in transformers.js alike
    tc = json.loads((out / "tokenizer_config.json").read_text())
    tc["tokenizer_class"] = "PreTrainedTokenizerFast"
    (out / "tokenizer_config.json").write_text(json.dumps(tc, indent=2) + "\n")
    for name in C.EXPERTS:
        d = out / "adapters" / name
        d.mkdir(parents=True)
        conf = json.loads((work / "adapters" / name / "adapter_config.json").read_text())
        conf["base_model_name_or_path"] = str(OUT_REL)  # relative to the repository root
        conf["target_modules"] = sorted(conf["target_modules"])
        (d / "adapter_config.json").write_text(json.dumps(conf, indent=2, sort_keys=True) + "\n")
        # stored as float16 (a format PEFT and our loader read): with lm_head adapted the experts are 20% larger,
        # and float32 would take the folder past 25 MB; every reference and report below uses these files
        weights = load_file(str(work / "adapters" / name / "adapter_model.safetensors"))
        save_file({k: v.to(torch.float16).contiguous() for k, v in weights.items()}, str(d / "adapter_model.safetensors"),
                  metadata={"format": "pt"})

    log("decoder export")
    export_decoder(hf, out / "model.onnx")
    model = LlamaForCausalLM.from_pretrained(hf).eval()
    eos = tok.eos_token_id
    sequences = [tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True,
                                         tokenize=True, return_dict=False) for p in PROMPTS]
    sequences = [list(s["input_ids"]) if isinstance(s, dict) else list(s) for s in sequences]
    nxt = [tok.encode(" Okay", add_special_tokens=False)[0]] * len(sequences)
    dec = check_decoder(out / "model.onnx", model, sequences, nxt)
    log(f"  {dec}")
    for k, v in dec.items():
        if k.endswith("diff"):
            assert v < 1e-3, (k, v)

    log("tf-idf router export (router-tfidf/)")
    from tokenizers import Tokenizer
    rtok = Tokenizer.from_file(str(out / "router-tfidf" / "tokenizer.json"))
    router = export_router(work, rtok.get_vocab_size(), out / "router-tfidf" / "model.onnx")
    (out / "router-tfidf" / "router.json").write_text(json.dumps(
        {"experts": C.EXPERTS, "topK": 2, "renormalize": True, "input": "last_user", "maxLength": 128},
        indent=2) + "\n")
    test = T.read_jsonl(work / "corpus" / "router_test.jsonl")
    rt = check_router(out / "router-tfidf" / "model.onnx", router, rtok, test)
    log("  tf-idf router " + str({k: v for k, v in rt.items() if k != "heldout_cases"}))

    log("default router (router/): personafuse router train, in Node")
    import tempfile
    cache = tempfile.mkdtemp(prefix="pf-demo-cache-")
    node_router = train_node_router(out, cache)
    log(f"  test top-2 {node_router['test']['top2']:.3f} top-1 in pair {node_router['test']['top1InPair']:.3f}; "
        f"everyday {node_router['everyday']['top2']:.3f} / {node_router['everyday']['top1InPair']:.3f}")
    example_prompts = PROMPTS + ["We just won the championship!", "I need to organise a team offsite next month.",
                                 "hey, just made some coffee, how's your day going?",
                                 "Tonight I am quitting my job with no savings, wish me luck.",
                                 "The parcel never arrived and the shop says it was delivered.",
                                 "My boss took credit for my report in front of everyone."]
    route_of = node_routes(out, cache, example_prompts + [e["text"] for e in test_messages(work)])

    log("persona references (float64 merged weights)")
    adapters_root = out / "adapters"
    base_last = [torch_logits(model, s)[-1] for s in sequences]
    cases = []
    for name, mix in MIXES:
        m = merged_model_f64(hf, adapters_root, mix)
        per_prompt = []
        for pi, s in enumerate(sequences):
            g = greedy(m, s, MAX_NEW, eos)
            last = torch_logits(m, s)[-1]
            per_prompt.append(dict(prompt=pi, greedy_ids=g["ids"], min_margin=g["min_margin"], margins=g["margins"],
                                   text=tok.decode(g["ids"], skip_special_tokens=True),
                                   last_logits_max_abs_change_vs_base=float(np.abs(last - base_last[pi]).max())))
            log(f"  {name:24s} [{pi}] {per_prompt[-1]['text']!r}")
        cases.append(dict(name=name, mix=mix, outputs=per_prompt))
    first_logits = {name: f9(torch_logits(merged_model_f64(hf, adapters_root, mix), sequences[0])[-1][:16])
                    for name, mix in MIXES[:3]}

    routed = []
    for p in example_prompts:
        mix = route_of[p]
        ids = tok.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True,
                                      return_dict=False)
        ids = list(ids["input_ids"]) if isinstance(ids, dict) else list(ids)
        g = greedy(merged_model_f64(hf, adapters_root, mix), ids, MAX_NEW, eos)
        routed.append(dict(user=p, routed_mix=mix, greedy_text=tok.decode(g["ids"], skip_special_tokens=True)))
        log(f"  auto {mix} {p!r} -> {routed[-1]['greedy_text']!r}")

    log("sampled replies to test-split messages")
    replies = test_replies(Merger(hf, adapters_root), tok, route_of, test_messages(work), a.per_expert, a.routed)
    log(f"  experts in style {replies['mean_single_expert_in_style']:.3f}, address the situation "
        f"{replies['single_expert_addresses_situation']:.3f}; auto: in a routed style "
        f"{replies['routed_in_style_of_a_routed_expert']:.3f}, address the situation {replies['routed_addresses_situation']:.3f}")

    sizes = {str(p.relative_to(out)): p.stat().st_size for p in sorted(out.rglob("*"))
             if p.is_file() and ".persona-" not in p.name}  # not the runtime's cached injected models (dir_size)
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    n_lora = sum(t.numel() for t in load_file(str(adapters_root / C.EXPERTS[0] / "adapter_model.safetensors")).values())
    eval_json = dict(
        about="Small demonstration model of personafuse, trained by scripts/demo on hand-written user messages "
              "(data/situations, train split) answered from templates; regenerate with scripts/demo/README.md. "
              "Every report number is on the test split.",
        versions=dict(torch=torch.__version__, onnx=onnx.__version__, onnxruntime=ort.__version__,
                      transformers=__import__("transformers").__version__, peft=__import__("peft").__version__),
        model=dict(architecture="LlamaForCausalLM", parameters=n_params, hidden_size=cfg.hidden_size,
                   layers=cfg.num_hidden_layers, heads=cfg.num_attention_heads, kv_heads=cfg.num_key_value_heads,
                   intermediate_size=cfg.intermediate_size, vocab_size=cfg.vocab_size, dtype="float32",
                   lora=dict(r=8, lora_alpha=16, scale=2.0, targets=json.loads((adapters_root / C.EXPERTS[0] / "adapter_config.json").read_text())["target_modules"],
                             parameters_per_expert=n_lora, dtype="float16")),
        training=report,
        onnx_vs_pytorch=dec,
        replies=replies,
        router=dict(config=json.loads((out / "router" / "router.json").read_text()), routing_table=C.ROUTING,
                    trained_by=node_router["command"], training_seconds=round(node_router["seconds"], 1),
                    heldout_top2_set_accuracy=node_router["test"]["top2"],
                    heldout_top1_in_expected_pair=node_router["test"]["top1InPair"],
                    everyday_top2_set_accuracy=node_router["everyday"]["top2"],
                    everyday_top1_in_expected_pair=node_router["everyday"]["top1InPair"],
                    definition="top-2 set accuracy: the router's two highest experts are exactly the message's "
                               "situation's two experts (data/situations/table.json); top-1 in pair: the highest is "
                               "one of them; 'heldout' = the test split of data/situations, never used in training; "
                               "'everyday' = data/situations/everyday.jsonl, written apart from the dataset",
                    test_report=node_router["test"], everyday_report=node_router["everyday"], examples=routed),
        router_tfidf=dict(config=json.loads((out / "router-tfidf" / "router.json").read_text()),
                          about="the first demo's router (its own lower-case BPE tokenizer, tf-idf, logistic "
                                "regression over situations, trained in PyTorch by scripts/demo/train.py), kept as "
                                "the example of an encoder router folder",
                          heldout_top2_set_accuracy=rt["heldout_top2_set_accuracy_onnx"],
                          heldout_top1_in_expected_pair=rt["heldout_top1_in_expected_pair_onnx"], checks=rt),
        persona_references=dict(
            semantics="mix {name: w}: W' = W + sum w * (lora_alpha / r) * B A for every adapted module, merged in "
                      "float64 from the shipped files; greedy decoding by full recompute (no cache), stop at "
                      "<|im_end|>, at most %d new tokens; min_margin = smallest top-1 minus top-2 logit gap over "
                      "the steps (float64)" % MAX_NEW,
            eos_token_id=eos, prompts=[dict(text=p, input_ids=s) for p, s in zip(PROMPTS, sequences)],
            first_16_last_logits_prompt0=first_logits, cases=cases),
        sizes_bytes=sizes, total_bytes=sum(sizes.values()),
    )
    (out / "eval.json").write_text(json.dumps(eval_json, indent=1) + "\n")
    write_readme(out, eval_json)
    total = dir_size(out)
    log(f"{out}: {total} bytes")
    assert total <= 25 * 1024 * 1024, total


def pct(x) -> str:
    return "n/a" if x is None else f"{x * 100:.0f}%"


def md(text: str) -> str:
    """A message or reply inside a Markdown table cell."""
    return " ".join(str(text).split()).replace("|", "\\|")


def write_readme(out: Path, ev: dict) -> None:
    m = ev["model"]
    tr = ev["training"]
    secs = tr.get("stage_seconds", {})
    r = ev["router"]
    rtest, rday = r["test_report"], r["everyday_report"]
    rc = ev["router_tfidf"]["checks"]
    rp = ev["replies"]
    single = rp["single_expert_weight_1"]
    threads = tr.get("threads", 1)
    n_sit = len(r["routing_table"])
    ad = tr["adapters"]
    lines = [
        "# persona-demo — the embedded demonstration model",
        "",
        "**This is a small demonstration model, not a useful assistant.** It exists so that `npx personafuse chat` /",
        "`generate` show PersonaFuse working out of the box with no download: a router reads the situation, picks",
        "two Big Five persona experts, and the reply changes style. The user side of its training data is real-looking,",
        f"hand-written messages ({n_sit} situations, `data/situations`, train split only); the answers are made from",
        "templates (10 persona styles x canned, situation-specific advice), so it only gives that canned advice, and",
        "a message about anything else gets the advice of whichever situation it resembles.",
        "",
        "## What is here",
        f"- `model.onnx`: LlamaForCausalLM, {m['parameters']:,} parameters (hidden {m['hidden_size']}, "
        f"{m['layers']} layers, {m['heads']} heads / {m['kv_heads']} KV heads, intermediate {m['intermediate_size']}, "
        f"vocab {m['vocab_size']}), f32, exported by torch.onnx (legacy exporter) with KV cache in the stock layout "
        "(`input_ids`, `attention_mask`, `position_ids`, `past_key_values.N.key/value` -> `logits`, `present.N.key/value`).",
        f"- `config.json`, `generation_config.json`, `tokenizer.json` (byte-level BPE, {m['vocab_size']} tokens, trained "
        "on the train messages and the answers),",
        "  `tokenizer_config.json` (ChatML `chat_template`, eos `<|im_end|>`, pad `<|endoftext|>`, no bos).",
        f"- `adapters/<pole>/`: ten PEFT LoRA experts (r={m['lora']['r']}, alpha={m['lora']['lora_alpha']}, "
        f"on {', '.join(m['lora']['targets'])} (lm_head once, the others in every layer), {m['lora']['parameters_per_expert']:,} parameters each, "
        f"stored as {m['lora'].get('dtype', 'float32')}), trained by `scripts/experts/train_experts.py` (peft), each trained on",
        "  its pole's answers only: openness (high: imaginative, curious; low: conventional, practical),",
        "  conscientiousness (high: step-by-step plans; low: casual, loose), extraversion (high: energetic, social;",
        "  low: brief, reserved), agreeableness (high: warm, accommodating; low: blunt, critical), neuroticism",
        "  (high: anxious, worried; low: calm, steady).",
        "- `router/` (the default): trained in Node by `personafuse router train --model models/persona-demo --data",
        f"  data/situations --seed 0 {' '.join(ROUTER_FLAGS)}`. It reads the last user message twice: the base model's own final hidden states",
        "  over it (mean and last position, one prefill with no persona) and its hashed word 1-2-grams and character",
        f"  2-5-grams (tf-idf, {r['config']['features']['ngrams']['buckets']} buckets each); a linear head gives the "
        f"probabilities of the {n_sit} situations, which the routing table below maps to",
        f"  experts (probabilities ^{r['config']['situations']['sharpen']:g}, renormalised, times each situation's "
        "(0.6, 0.4) pair); `router.json` takes the top 2 and renormalises them.",
        f"- `router-tfidf/`: the first demo's router, kept as an example of an encoder router folder: its own tokenizer "
        f"(byte-level BPE, lower case, {tr['router']['vocab']} tokens) -> tf-idf -> logistic regression over the situations,",
        f"  trained in PyTorch by `scripts/demo/train.py`, exported to ONNX (`--router models/persona-demo/router-tfidf`).",
        "- `eval.json`: every number below, ONNX-vs-PyTorch checks, and greedy reference outputs of fixed prompts",
        "  for persona mixes (used by test/demo_model.test.ts).",
        f"- Total size: {ev['total_bytes'] / 1e6:.1f} MB.",
        "",
        "## Training",
        f"Base decoder: {tr['base']['steps']} steps of batch {tr['base'].get('batch', 32)} on the train split's "
        f"{tr.get('corpus', {}).get('messages', {}).get('train', 0):,} messages x 10 styles x "
        f"{tr.get('corpus', {}).get('answers_per_pair', 2)} answers "
        f"(so it speaks a neutral mix), {secs.get('base', 0) / 60:.1f} min; adapters "
        f"({', '.join(sorted({str(v['steps']) for v in ad.values()}))} steps of batch "
        f"{', '.join(sorted({str(v['batch']) for v in ad.values()}))} each, see the table): "
        f"{secs.get('adapters', sum(v['seconds'] for v in ad.values())) / 60:.1f} min for all ten; tf-idf router: "
        f"{secs.get('router', 0):.0f} s. {threads} CPU thread{'s' if threads > 1 else ''} on a shared 2-core machine "
        f"(other engineers' tests ran beside it). The default router: {len(rtest['curve'])} epochs in Node, "
        f"{r.get('training_seconds', 0):.0f} s with its features.",
        "",
        "Test split, sampled replies (temperature 0.7, top-p 0.9, top-k 50): each expert alone at weight 1 on "
        f"{rp['single_expert_messages']} test messages ({rp['single_expert_messages'] // n_sit} per situation). "
        "*In style*: the pole whose",
        "template phrases (unique to it) occur most in the reply is the expert's. *Addresses the situation*: the",
        "situation whose tip phrases (each tip belongs to one situation, `scripts/demo/corpus.py`) occur most in the",
        "reply is the message's. Held-out loss: on the validation split's messages answered in the pole's style, base ->",
        "with the expert.",
        "",
        "| expert | steps | lr | held-out loss base | with expert | replies in its style | replies on the message's situation |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for name in C.EXPERTS:
        info = ad[name]
        lines.append(f"| {name} | {info['steps']} | {info['lr']:g} | {info.get('heldout_loss_base', float('nan')):.3f} | "
                     f"{info.get('heldout_loss_adapter', float('nan')):.3f} | {pct(single[name]['in_style'])} | "
                     f"{pct(single[name]['addresses_situation'])} |")
    weak = [n for n in C.EXPERTS if single[n]["in_style"] < 0.8]
    weak_text = ", ".join(f"{n} {pct(single[n]['in_style'])}" for n in weak)
    per_sit = {p_["situation"]: p_ for p_ in rtest["perSituation"]}
    worst = sorted(((k, v["top2"]) for k, v in per_sit.items()), key=lambda kv: kv[1])[:3]
    lines += [
        "",
        f"A single expert gives its style in **{pct(rp['mean_single_expert_in_style'])}** of replies on average"
        + (f" (below 80%: {weak_text})" if weak else "")
        + f"; {pct(rp['single_expert_addresses_situation'])} of those replies address the message's situation.",
        f"With the router's mix (persona \"auto\", {rp['routed_messages']} test messages"
        + (f", up to {rp['routed_per_situation']} per situation" if rp["routed_messages"] < rc["heldout_examples"] else ", all of them")
        + "): "
        f"**{pct(rp['routed_addresses_situation'])}** of replies address the message's situation "
        f"({pct(rp['routed_addresses_situation_when_router_right'])} of those whose routed pair was right), and "
        f"{pct(rp['routed_in_style_of_a_routed_expert'])} are in the style of one of the two routed experts.",
        f"The base model alone (no expert) on the same messages as the single experts: style counts "
        f"{json.dumps(rp['base_model_style_counts'])}; {pct(rp['base_model_addresses_situation'])} address the situation.",
        "",
        f"**Known weaknesses.** (1) {pct(1 - rp['routed_addresses_situation'])} of the replies to unseen messages do not "
        "carry their situation's advice (another situation's, or none that can be told): a",
        f"{m['parameters'] / 1e6:.1f} M-parameter model trained from scratch on "
        f"{tr.get('corpus', {}).get('messages', {}).get('train', 0):,} messages recognises the situation of a new "
        "message only so well (the tf-idf router, a classifier on the same data,",
        f"gets the situation right in {pct(rc['situation_accuracy'])}). (2) The router's top-2 is the situation's pair in "
        f"{pct(r['heldout_top2_set_accuracy'])} of test messages; weakest: "
        + ", ".join(f"{k} {pct(v)}" for k, v in worst) + ". (3) Experts below 80% style: "
        + (weak_text or "none (the experts adapt lm_head too: without it, an expert's first token, which decides the "
                        "style, could not be made likely enough, scripts/demo/README.md)") + ". "
        "(4) Replies repeat a tip at times (\"First, X. Second, X.\").",
        "",
        "## Router",
        f"Test split ({rtest['n']} messages never used in training): top-2 accuracy "
        f"**{pct(r['heldout_top2_set_accuracy'])}** (the two chosen experts are exactly the situation's pair), the top-1",
        f"expert is one of the pair in **{pct(r['heldout_top1_in_expected_pair'])}**. On the {rday['n']} everyday messages "
        "(`data/situations/everyday`, written apart from the dataset by someone who saw only the table): "
        f"**{pct(r['everyday_top2_set_accuracy'])}** / **{pct(r['everyday_top1_in_expected_pair'])}**.",
        f"Validation split (early stopping): top-2 {pct(min(rtest['curve'], key=lambda c: c['validationLoss'])['validationTop2'])}. "
        f"Routing one message takes {rtest['routeMs']:.1f} ms here (one prefill of it on the base, plus the n-grams).",
        f"The tf-idf router (`router-tfidf/`) on the same splits: test {pct(ev['router_tfidf']['heldout_top2_set_accuracy'])} / "
        f"{pct(ev['router_tfidf']['heldout_top1_in_expected_pair'])}.",
        "Several situations share a pair (e.g. small_talk, loneliness and positive_review), so mistaking one for the",
        "other costs nothing at routing.",
        "",
        "| situation | experts (first = stronger) | test: router top-2 | top-1 in pair | auto replies on the situation | picked instead most |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for sit, ex in r["routing_table"].items():
        ps = per_sit.get(sit, {})
        right = " + ".join(sorted(ex))  # report.ts's pair key: the names sorted
        instead = ", ".join([f"{k['pair']} ({k['count']})" for k in ps.get("picked", []) if k["pair"] != right][:2])
        lines.append(f"| {sit} | {', '.join(ex)} | {pct(ps.get('top2'))} | {pct(ps.get('top1InPair'))} | "
                     f"{pct(rp['routed_addresses_situation_per_situation'].get(sit))} | {instead} |")
    lines += ["", "## Sample outputs (greedy, PyTorch, merged float64)", "",
              f"Prompt: \"{ev['persona_references']['prompts'][0]['text']}\"", "",
              "| persona mix | reply |", "| --- | --- |"]
    for c in ev["persona_references"]["cases"]:
        lines.append(f"| `{json.dumps(c['mix'])}` | {md(c['outputs'][0]['text'])} |")
    lines += ["", "With the router (`persona: \"auto\"`), greedy:", "", "| user | routed mix | reply |", "| --- | --- | --- |"]
    for e in r["examples"]:
        lines.append(f"| {md(e['user'])} | `{json.dumps(e['routed_mix'])}` | {md(e['greedy_text'])} |")
    lines += ["", "Twenty test-split messages (drawn at random), persona \"auto\", sampled:", "",
              "| situation | message | routed mix | reply | reply's tips are from |", "| --- | --- | --- | --- | --- |"]
    for e in rp["routed_samples"]:
        lines.append(f"| {e['situation']} | {md(e['user'])} | `{json.dumps(e['mix'])}` | {md(e['reply'])} | "
                     f"{e['addressed'] or '-'} |")
    d = ev["onnx_vs_pytorch"]
    lines += ["", "## ONNX checks", "",
              f"Max |ONNX − PyTorch| logits: {d['no_cache_single_max_abs_diff']:.2e} (no past), "
              f"{d['prefill_left_padded_max_abs_diff']:.2e} (left-padded batch), "
              f"{d['decode_step_with_cache_max_abs_diff']:.2e} (decode step with the KV cache); greedy with the cache "
              f"equals PyTorch: {d['greedy_16_tokens_onnx_kv_cache_equals_pytorch']}. tf-idf router ONNX vs PyTorch: "
              f"{rc['onnx_vs_pytorch_padded_batch_max_abs_diff']:.2e}.",
              "", "## Regenerate", "",
              README_LAST_LINE]
    text = "\n".join(lines) + "\n"
    # sections written by hand after the generated part (e.g. the one on how the default router was chosen) are kept
    old = (out / "README.md").read_text() if (out / "README.md").exists() else ""
    if README_LAST_LINE in old:
        tail = old[old.index(README_LAST_LINE) + len(README_LAST_LINE):].lstrip("\n")
        if tail.strip():
            text += "\n" + tail
    (out / "README.md").write_text(text)


README_LAST_LINE = "See `scripts/demo/README.md` (Python only for making these files; the package never needs it)."


if __name__ == "__main__":
    main()
