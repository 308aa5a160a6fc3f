#!/usr/bin/env python3
"""Train the embedded demonstration model: tokenizer, base decoder, ten LoRA persona experts, router.

    python scripts/demo/train.py --work /tmp/persona-demo            # everything (see README for timings)
    python scripts/demo/train.py --work /tmp/persona-demo --stage adapters   # one stage again

Stages (each reads what the previous ones wrote under --work):
  corpus     scripts/demo/corpus.py data -> work/corpus/*.jsonl
  tokenizer  byte-level BPE (HF tokenizers) -> work/hf/tokenizer.json, tokenizer_config.json
  base       LlamaForCausalLM trained on every (situation, pole) conversation -> work/hf/
  adapters   peft LoRA r=8 on q,k,v,o,gate,up,down, one per pole, trained on that pole's answers
             -> work/adapters/<name>/ (save_pretrained)
  router     token-embedding bag + MLP: last user message -> 10 expert logits -> work/router/router.pt
One thread (torch.set_num_threads(1)); fixed seeds.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

sys.dont_write_bytecode = True  # no __pycache__ beside the committed scripts
sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus as C  # noqa: E402

# the special tokens, ChatML template and LoRA targets of the test fixtures, shared
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "fixtures"))
from make_tiny_models import CHAT_TEMPLATE, SPECIALS, TARGETS  # noqa: E402

warnings.filterwarnings("ignore")

VOCAB = 2048
# Adapters that need more than --adapter-steps to show their style (100 steps gave blunt replies in ~60% of
# sampled agreeableness_low answers, 300 give 96%); part of the defaults so one run reproduces the shipped files.
ADAPTER_STEPS = {"agreeableness_low": 300}
MODEL = dict(hidden_size=256, intermediate_size=512, num_hidden_layers=4, num_attention_heads=4,
             num_key_value_heads=2, max_position_embeddings=512)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def prompt_text(user: str) -> str:
    return (f"<|im_start|>system\n{C.SYSTEM}<|im_end|>\n<|im_start|>user\n{user}<|im_end|>\n"
            f"<|im_start|>assistant\n")


def read_jsonl(p: Path) -> list[dict]:
    return [json.loads(line) for line in p.read_text().splitlines() if line]


# ---------------------------------------------------------------------------------------------


def stage_corpus(work: Path, per_pair: int) -> None:
    out = work / "corpus"
    out.mkdir(parents=True, exist_ok=True)
    dialogues = C.make_dialogues(per_pair, seed=1)
    with open(out / "corpus.jsonl", "w") as f:
        for d in dialogues:
            f.write(json.dumps(d) + "\n")
    for name, held, n, seed in (("router_train", False, 300, 2), ("router_test", True, 40, 3)):  # per situation
        with open(out / f"{name}.jsonl", "w") as f:
            for d in C.router_examples(n, seed=seed, held_out=held):
                f.write(json.dumps(d) + "\n")
    log(f"corpus: {len(dialogues)} dialogues")


def stage_tokenizer(work: Path) -> None:
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    dialogues = read_jsonl(work / "corpus" / "corpus.jsonl")
    texts = [d["user"] for d in dialogues] + [d["assistant"] for d in dialogues]
    texts += ["system user assistant " + C.SYSTEM]
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(vocab_size=VOCAB, special_tokens=SPECIALS, show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator(texts, trainer)
    log(f"tokenizer: vocab {tok.get_vocab_size()}")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, bos_token=None, eos_token="<|im_end|>",
                                   pad_token="<|endoftext|>", unk_token=None, model_max_length=512)
    fast.chat_template = CHAT_TEMPLATE
    out = work / "hf"
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out, save_jinja_files=False)
    # the manual ChatML rendering used for training equals the chat template's
    msgs = [{"role": "user", "content": "Hello there."}]
    assert fast.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True) == prompt_text("Hello there.")


def load_tokenizer(work: Path):
    from transformers import PreTrainedTokenizerFast
    return PreTrainedTokenizerFast.from_pretrained(work / "hf")


def encode_dialogues(tok, dialogues: list[dict]) -> list[tuple[list[int], int]]:
    """(ids, n_prompt): prompt + answer + <|im_end|>; loss only on the answer and <|im_end|>."""
    eos = tok.convert_tokens_to_ids("<|im_end|>")
    prompts = tok([prompt_text(d["user"]) for d in dialogues], add_special_tokens=False)["input_ids"]
    answers = tok([d["assistant"] for d in dialogues], add_special_tokens=False)["input_ids"]
    return [(p + a + [eos], len(p)) for p, a in zip(prompts, answers)]


def batches(encoded, batch_size: int, rng: random.Random, first_weight: float = 1.0):
    """Endless shuffled batches; sorted within chunks by length to keep padding low."""
    while True:
        idx = list(range(len(encoded)))
        rng.shuffle(idx)
        chunk = batch_size * 16
        for c in range(0, len(idx), chunk):
            part = sorted(idx[c:c + chunk], key=lambda i: len(encoded[i][0]))
            bl = [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
            rng.shuffle(bl)
            for b in bl:
                yield collate([encoded[i] for i in b], first_weight)


FIRST_TOKENS = 4  # the answer's first tokens pick its style (the opener): adapters weight them up


def collate(items, first_weight: float = 1.0):
    S = max(len(ids) for ids, _ in items)
    ids = torch.zeros(len(items), S, dtype=torch.long)
    mask = torch.zeros(len(items), S, dtype=torch.long)
    labels = torch.full((len(items), S), -100, dtype=torch.long)
    weights = torch.zeros(len(items), S)
    for b, (seq, n_prompt) in enumerate(items):
        ids[b, :len(seq)] = torch.tensor(seq)
        mask[b, :len(seq)] = 1
        labels[b, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
        weights[b, n_prompt:len(seq)] = 1.0
        weights[b, n_prompt:n_prompt + FIRST_TOKENS] = first_weight
    return ids, mask, labels, weights


def lm_loss(model, ids, mask, labels, weights=None):
    """Mean cross-entropy over the answer tokens (weights=None), or weighted by `weights`."""
    logits = model(input_ids=ids, attention_mask=mask).logits
    ce = F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), labels[:, 1:].reshape(-1),
                         ignore_index=-100, reduction="none")
    if weights is None:
        return ce.sum() / (labels[:, 1:] != -100).sum()
    w = weights[:, 1:].reshape(-1)
    return (ce * w).sum() / w.sum()


def train_loop(model, params, data, steps: int, lr: float, name: str, warmup: int = 50, wd: float = 0.0):
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=(0.9, 0.98))
    model.train()
    t0 = time.time()
    ema = None
    for step in range(steps):
        cur = lr * min(1.0, (step + 1) / warmup) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for g in opt.param_groups:
            g["lr"] = cur
        ids, mask, labels, weights = next(data)
        loss = lm_loss(model, ids, mask, labels, weights)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % 50 == 0 or step == steps - 1:
            log(f"  {name} step {step}/{steps} loss {ema:.3f} ({time.time() - t0:.0f}s)")
    model.eval()
    return dict(steps=steps, final_loss_ema=ema, seconds=round(time.time() - t0, 1))


def eval_loss(model, encoded, batch_size=64) -> float:
    tot, n = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            ids, mask, labels, _ = collate(encoded[i:i + batch_size])
            k = int((labels[:, 1:] != -100).sum())
            tot += lm_loss(model, ids, mask, labels).item() * k
            n += k
    return tot / n


def stage_base(work: Path, steps: int, batch_size: int) -> dict:
    from transformers import GenerationConfig, LlamaConfig, LlamaForCausalLM

    tok = load_tokenizer(work)
    dialogues = read_jsonl(work / "corpus" / "corpus.jsonl")
    encoded = encode_dialogues(tok, dialogues)
    log(f"base: {len(encoded)} sequences, mean length {sum(len(e[0]) for e in encoded) / len(encoded):.1f}")
    cfg = LlamaConfig(vocab_size=len(tok), rms_norm_eps=1e-5, tie_word_embeddings=False, initializer_range=0.02,
                      bos_token_id=None, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, **MODEL)
    torch.manual_seed(0)
    model = LlamaForCausalLM(cfg)
    log(f"base: {sum(p.numel() for p in model.parameters())} parameters")
    info = train_loop(model, list(model.parameters()), batches(encoded, batch_size, random.Random(0)), steps,
                      lr=2e-3, name="base", warmup=100, wd=0.01)
    model.generation_config = GenerationConfig(eos_token_id=[tok.eos_token_id], pad_token_id=tok.pad_token_id,
                                               do_sample=True, temperature=0.7, top_p=0.9, top_k=50,
                                               max_new_tokens=96)
    model.save_pretrained(work / "hf")
    held = encode_dialogues(tok, C.make_dialogues(4, seed=11, held_out=True))
    info["heldout_loss"] = eval_loss(model, held)
    log(f"base: held-out situation loss {info['heldout_loss']:.3f}")
    return info


def stage_adapters(work: Path, steps: int, batch_size: int, only: list[str] | None, first_weight: float,
                   lr: float, use_overrides: bool) -> dict:
    from peft import LoraConfig, get_peft_model
    from transformers import LlamaForCausalLM

    tok = load_tokenizer(work)
    dialogues = read_jsonl(work / "corpus" / "corpus.jsonl")
    held = C.make_dialogues(3, seed=12, held_out=True)
    out = {}
    for k, name in enumerate(C.EXPERTS):
        if only and name not in only:
            continue
        torch.manual_seed(100 + k)
        base = LlamaForCausalLM.from_pretrained(work / "hf").eval()
        cfg = LoraConfig(task_type="CAUSAL_LM", r=8, lora_alpha=16, lora_dropout=0.0, bias="none",
                         target_modules=TARGETS)
        pm = get_peft_model(base, cfg)
        mine = encode_dialogues(tok, [d for d in dialogues if d["pole"] == name])
        params = [p for p in pm.parameters() if p.requires_grad]
        n_steps = ADAPTER_STEPS.get(name, steps) if use_overrides else steps
        info = train_loop(pm, params, batches(mine, batch_size, random.Random(k), first_weight), n_steps, lr=lr,
                          name=name, warmup=20)
        info.update(first_token_weight=first_weight, lr=lr)
        held_mine = encode_dialogues(tok, [d for d in held if d["pole"] == name])
        info["heldout_loss_adapter"] = eval_loss(pm, held_mine)
        with pm.disable_adapter():
            info["heldout_loss_base"] = eval_loss(pm, held_mine)
        log(f"  {name}: held-out loss on its style {info['heldout_loss_base']:.3f} (base) -> "
            f"{info['heldout_loss_adapter']:.3f} (adapter)")
        pm.save_pretrained(work / "adapters" / name)
        out[name] = info
    return out


SITUATIONS = list(C.SITUATIONS)


def routing_matrix() -> torch.Tensor:
    """[situations, experts]: 0.6 on a situation's first expert, 0.4 on its second (corpus.ROUTING)."""
    m = torch.zeros(len(SITUATIONS), len(C.EXPERTS))
    for i, sit in enumerate(SITUATIONS):
        first, second = C.ROUTING[sit]
        m[i, C.EXPERTS.index(first)] = 0.6
        m[i, C.EXPERTS.index(second)] = 0.4
    return m


class Router(nn.Module):
    """Token embeddings -> attention pooling over the mask -> MLP -> situation probabilities p;
    expert logits = log(p @ ROUTING + 1e-4), so softmax(logits) is the situation-weighted expert mix
    and the top 2 are the pair of the most likely situation when the router is sure."""

    def __init__(self, vocab: int, dim: int = 64, hidden: int = 64):
        super().__init__()
        self.emb = nn.Embedding(vocab, dim)
        self.score = nn.Linear(dim, 1)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, len(SITUATIONS)))
        self.register_buffer("routing", routing_matrix())

    def situation_logits(self, input_ids, attention_mask):
        e = self.emb(input_ids)
        m = attention_mask.unsqueeze(-1).to(e.dtype)
        a = (self.score(e) + (m - 1.0) * 1e4).softmax(1)
        return self.mlp((a * e).sum(1))

    def forward(self, input_ids, attention_mask):
        p = self.situation_logits(input_ids, attention_mask).softmax(-1)
        return torch.log(p @ self.routing + 1e-4)


def router_batch(tok, texts, max_len=128):
    enc = tok(texts, add_special_tokens=False, truncation=True, max_length=max_len)["input_ids"]
    S = max(len(e) for e in enc)
    ids = torch.zeros(len(enc), S, dtype=torch.long)
    mask = torch.zeros(len(enc), S, dtype=torch.long)
    for i, e in enumerate(enc):
        ids[i, :len(e)] = torch.tensor(e)
        mask[i, :len(e)] = 1
    return ids, mask


def router_accuracy(model, tok, examples) -> dict:
    with torch.no_grad():
        ids, mask = router_batch(tok, [e["user"] for e in examples])
        logits = model(ids, mask)
    top2 = logits.topk(2, -1).indices.tolist()
    exact = sum(set(C.EXPERTS[j] for j in t) == set(e["experts"]) for t, e in zip(top2, examples))
    top1 = sum(C.EXPERTS[t[0]] == e["experts"][0] for t, e in zip(top2, examples))
    per = {}
    for t, e in zip(top2, examples):
        ok = set(C.EXPERTS[j] for j in t) == set(e["experts"])
        a = per.setdefault(e["situation"], [0, 0])
        a[0] += ok
        a[1] += 1
    return dict(top2_set_accuracy=exact / len(examples), top1_accuracy=top1 / len(examples), n=len(examples),
                per_situation={k: v[0] / v[1] for k, v in per.items()})


def stage_router(work: Path, steps: int) -> dict:
    tok = load_tokenizer(work)
    train = read_jsonl(work / "corpus" / "router_train.jsonl")
    test = read_jsonl(work / "corpus" / "router_test.jsonl")
    torch.manual_seed(7)
    model = Router(len(tok))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.1)
    rng = random.Random(7)
    t0 = time.time()
    for step in range(steps):
        b = rng.sample(train, 64)
        ids, mask = router_batch(tok, [e["user"] for e in b])
        # token dropout: the router must not lean on one word
        keep = (torch.rand(mask.shape) > 0.3).long()
        mask2 = mask * keep
        mask2[:, 0] = mask[:, 0]
        y = torch.tensor([SITUATIONS.index(e["situation"]) for e in b])
        loss = F.cross_entropy(model.situation_logits(ids, mask2), y, label_smoothing=0.1)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 200 == 0:
            log(f"  router step {step} loss {loss.item():.3f}")
    model.eval()
    res = dict(steps=steps, seconds=round(time.time() - t0, 1),
               train=router_accuracy(model, tok, train), heldout=router_accuracy(model, tok, test))
    log(f"router: train top-2 {res['train']['top2_set_accuracy']:.3f}, held-out top-2 "
        f"{res['heldout']['top2_set_accuracy']:.3f}, held-out top-1 {res['heldout']['top1_accuracy']:.3f}")
    (work / "router").mkdir(parents=True, exist_ok=True)
    torch.save(model.state_dict(), work / "router" / "router.pt")
    return res


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, default=Path("/tmp/persona-demo"))
    ap.add_argument("--stage", choices=["all", "corpus", "tokenizer", "base", "adapters", "router"], default="all")
    ap.add_argument("--per-pair", type=int, default=150)
    ap.add_argument("--base-steps", type=int, default=1000)
    ap.add_argument("--adapter-steps", type=int, default=None,
                    help="adapters: steps for every expert (default 100, and ADAPTER_STEPS's overrides)")
    ap.add_argument("--router-steps", type=int, default=1000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--only", nargs="*", help="adapters: train only these")
    ap.add_argument("--first-weight", type=float, default=1.0,
                    help="adapters: loss weight of the answer's first %d tokens (the style's opener)" % FIRST_TOKENS)
    ap.add_argument("--adapter-lr", type=float, default=3e-3)
    a = ap.parse_args()
    torch.set_num_threads(1)
    a.work.mkdir(parents=True, exist_ok=True)
    report_path = a.work / "train_report.json"
    report = json.loads(report_path.read_text()) if report_path.exists() else {}
    stages = ["corpus", "tokenizer", "base", "adapters", "router"] if a.stage == "all" else [a.stage]
    for s in stages:
        t0 = time.time()
        if s == "corpus":
            stage_corpus(a.work, a.per_pair)
            report["corpus"] = dict(per_pair=a.per_pair)
        elif s == "tokenizer":
            stage_tokenizer(a.work)
        elif s == "base":
            report["base"] = stage_base(a.work, a.base_steps, a.batch)
        elif s == "adapters":
            report.setdefault("adapters", {}).update(stage_adapters(a.work, a.adapter_steps or 100, a.batch, a.only, a.first_weight,
                                                                  a.adapter_lr, a.adapter_steps is None))
        elif s == "router":
            report["router"] = stage_router(a.work, a.router_steps)
        report.setdefault("stage_seconds", {})[s] = round(time.time() - t0, 1)
        report_path.write_text(json.dumps(report, indent=1))
        log(f"stage {s} done in {time.time() - t0:.0f}s")


if __name__ == "__main__":
    main()
