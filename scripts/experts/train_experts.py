#!/usr/bin/env python3
"""Train persona experts (one PEFT LoRA adapter per expert) for any Hugging Face causal LM.

    python scripts/experts/train_experts.py --base path/to/hf-model --data persona.jsonl --out experts/

--data: one JSON object per line,
    {"messages": [{"role": "user", "content": "..."}, ...], "response": "...", "expert": "extraversion_high"}
`messages` is the conversation so far (system / user / assistant turns, rendered with the model's chat
template), `response` the assistant reply in the expert's style, `expert` the adapter it trains. The loss is on
the response (and the end-of-turn token after it) only.

--out/<expert>/ gets adapter_config.json + adapter_model.safetensors (peft save_pretrained), which
`personafuse --model <ONNX export of the same base> --adapters OUT` loads, each folder an expert named after
it; --out/train_report.json has the settings, losses and timings. See scripts/experts/README.md.

The functions here (encoding with the chat template, batching, the loss on the response only, the training
loop) are also what scripts/demo/train.py uses for the demo model's base decoder and its experts.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import sys
import time
import warnings
from pathlib import Path

import torch
import torch.nn.functional as F

sys.dont_write_bytecode = True
warnings.filterwarnings("ignore")

# q/k/v/o and the MLP of Llama, Mistral, Qwen, Gemma, Phi-3 style models; only the names a model has are used
DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


# ---------------------------------------------------------------------------------------------
# Data


def read_records(path: Path) -> list[dict]:
    """The --data file, checked: messages (a list of {role, content}), response (a string), expert (a string)."""
    out = []
    for n, line in enumerate(Path(path).read_text().splitlines(), 1):
        if not line.strip():
            continue
        r = json.loads(line)
        ok = (isinstance(r, dict) and isinstance(r.get("messages"), list) and isinstance(r.get("response"), str)
              and isinstance(r.get("expert"), str) and r["expert"]
              and all(isinstance(m, dict) and isinstance(m.get("role"), str) and isinstance(m.get("content"), str)
                      for m in r["messages"]))
        if not ok:
            raise SystemExit(f"{path}:{n}: expected {{\"messages\": [{{\"role\", \"content\"}}...], "
                             f"\"response\": str, \"expert\": str}}, got {line[:200]}")
        if "/" in r["expert"] or r["expert"].startswith("."):
            raise SystemExit(f"{path}:{n}: expert {r['expert']!r} is not a usable folder name")
        out.append(r)
    if not out:
        raise SystemExit(f"{path} has no records")
    return out


def _ids(x) -> list[int]:
    if isinstance(x, dict) or hasattr(x, "keys"):
        x = x["input_ids"]
    return list(x)


def encode_record(tok, messages: list[dict], response: str, max_len: int = 512) -> tuple[list[int], int]:
    """(ids, n_prompt): the prompt as the model sees it at generation time (chat template with the generation
    prompt), then the response and the end of the assistant's turn as the template writes it (up to and with the
    eos token). The loss covers ids[n_prompt:]. Without a chat template: the contents one per line, then the
    response and eos."""
    if getattr(tok, "chat_template", None):
        prompt = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        full = tok.apply_chat_template(messages + [{"role": "assistant", "content": response}], tokenize=False)
        if not full.startswith(prompt):
            raise SystemExit("the chat template's rendering of the conversation with the reply does not start with "
                             "its generation prompt; this trainer needs a template where it does")
        tail = full[len(prompt):]
        if tok.eos_token and tok.eos_token in tail:  # stop after the end-of-turn token (ChatML's "\n" after it is not trained)
            tail = tail[:tail.index(tok.eos_token) + len(tok.eos_token)]
    else:
        prompt = "".join(m["content"] + "\n" for m in messages)
        tail = response + (tok.eos_token or "")
    p = _ids(tok(prompt, add_special_tokens=False))
    r = _ids(tok(tail, add_special_tokens=False))
    if tok.eos_token_id is not None and tok.eos_token_id not in r:
        r.append(tok.eos_token_id)
    if len(p) + len(r) > max_len:  # keep the response; cut the conversation from the left
        p = p[len(p) + len(r) - max_len:]
    return p + r, len(p)


def encode_records(tok, records: list[dict], max_len: int = 512) -> list[tuple[list[int], int]]:
    """encode_record for every record; a conversation's prompt is rendered and tokenized once however many
    responses it has (the response part is rendered with a placeholder, checked against a direct rendering)."""
    SENT = "\u2063RESPONSE\u2063"
    cache: dict[str, tuple] = {}
    out = []
    for r in records:
        key = json.dumps(r["messages"])
        if key not in cache:
            cache[key] = None
            if getattr(tok, "chat_template", None):
                ids, n_prompt = encode_record(tok, r["messages"], SENT, max_len=10**9)
                before_after = tok.decode(ids[n_prompt:]).split(SENT)
                if len(before_after) == 2 and encode_record(tok, r["messages"], r["response"], max_len=10**9) == \
                        _with_response(tok, ids[:n_prompt], before_after, r["response"]):
                    cache[key] = (ids[:n_prompt], before_after)
        c = cache[key]
        if c is None:
            out.append(encode_record(tok, r["messages"], r["response"], max_len))
            continue
        ids = _with_response(tok, c[0], c[1], r["response"])
        p = len(c[0])
        if len(ids[0]) > max_len:
            cut = len(ids[0]) - max_len
            ids = (ids[0][cut:], p - cut)
        out.append(ids if len(ids[0]) <= max_len else encode_record(tok, r["messages"], r["response"], max_len))
    return out


def _with_response(tok, prompt_ids: list[int], before_after: list[str], response: str) -> tuple[list[int], int]:
    r = _ids(tok(before_after[0] + response + before_after[1], add_special_tokens=False))
    if tok.eos_token_id is not None and tok.eos_token_id not in r:
        r.append(tok.eos_token_id)
    return list(prompt_ids) + r, len(prompt_ids)


def collate(items, pad_id: int = 0):
    """Right-padded ids, mask, labels (-100 outside the responses)."""
    S = max(len(ids) for ids, _ in items)
    ids = torch.full((len(items), S), pad_id, dtype=torch.long)
    mask = torch.zeros(len(items), S, dtype=torch.long)
    labels = torch.full((len(items), S), -100, dtype=torch.long)
    for b, (seq, n_prompt) in enumerate(items):
        ids[b, :len(seq)] = torch.tensor(seq)
        mask[b, :len(seq)] = 1
        labels[b, n_prompt:len(seq)] = torch.tensor(seq[n_prompt:])
    return ids, mask, labels


def batches(encoded, batch_size: int, rng: random.Random, pad_id: int = 0):
    """Endless shuffled batches; sorted by length within chunks of 16 batches to keep padding low."""
    while True:
        idx = list(range(len(encoded)))
        rng.shuffle(idx)
        chunk = batch_size * 16
        for c in range(0, len(idx), chunk):
            part = sorted(idx[c:c + chunk], key=lambda i: len(encoded[i][0]))
            bl = [part[i:i + batch_size] for i in range(0, len(part), batch_size)]
            rng.shuffle(bl)
            for b in bl:
                yield collate([encoded[i] for i in b], pad_id)


# ---------------------------------------------------------------------------------------------
# Training


def lm_loss(model, ids, mask, labels):
    """Mean cross-entropy over the labelled (response) tokens. The LM head runs only from the first position
    that predicts a label (transformers' logits_to_keep), not over the whole prompt."""
    S = ids.shape[1]
    first = int((labels != -100).float().argmax(1).min()) if (labels != -100).any() else 1
    keep = S - first + 1
    logits = model(input_ids=ids, attention_mask=mask, logits_to_keep=keep).logits
    lab = labels[:, S - keep + 1:]
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]).float(), lab.reshape(-1), ignore_index=-100)


def train_loop(model, params, data, steps: int, lr: float, name: str, warmup: int = 20, wd: float = 0.0,
               log_every: int = 50) -> dict:
    """AdamW (betas 0.9/0.98), linear warmup, cosine decay to 10% of lr, gradient clipping at 1."""
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=wd, betas=(0.9, 0.98))
    device = next(model.parameters()).device
    model.train()
    t0 = time.time()
    ema = None
    for step in range(steps):
        cur = lr * min(1.0, (step + 1) / max(1, warmup)) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * step / steps)))
        for g in opt.param_groups:
            g["lr"] = cur
        ids, mask, labels = (t.to(device) for t in next(data))
        loss = lm_loss(model, ids, mask, labels)
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        ema = loss.item() if ema is None else 0.95 * ema + 0.05 * loss.item()
        if step % log_every == 0 or step == steps - 1:
            log(f"  {name} step {step}/{steps} loss {ema:.3f} ({time.time() - t0:.0f}s)")
    model.eval()
    return dict(steps=steps, lr=lr, final_loss_ema=ema, seconds=round(time.time() - t0, 1),
                seconds_per_step=round((time.time() - t0) / max(1, steps), 3))


def eval_loss(model, encoded, batch_size: int = 32, pad_id: int = 0) -> float:
    """Mean loss per response token."""
    tot, n = 0.0, 0
    device = next(model.parameters()).device
    with torch.no_grad():
        for i in range(0, len(encoded), batch_size):
            ids, mask, labels = (t.to(device) for t in collate(encoded[i:i + batch_size], pad_id))
            k = int((labels[:, 1:] != -100).sum())
            tot += lm_loss(model, ids, mask, labels).item() * k
            n += k
    return tot / max(1, n)


def resolve_targets(model, targets: list[str] | None) -> list[str]:
    """The requested module names (default DEFAULT_TARGETS) that the model has; refuses when none is there."""
    have = {n.rsplit(".", 1)[-1] for n, m in model.named_modules() if isinstance(m, torch.nn.Linear)}
    want = targets or DEFAULT_TARGETS
    got = [t for t in want if t in have]
    if not got:
        raise SystemExit(f"none of the target modules {want} is a linear layer of this model; its linear layers are "
                         f"{sorted(have)}: pass --targets")
    if targets and len(got) < len(targets):
        raise SystemExit(f"--targets {sorted(set(targets) - set(got))}: not linear layers of this model ({sorted(have)})")
    return got


def load_base(base: Path, dtype: str = "float32"):
    from transformers import AutoModelForCausalLM
    return AutoModelForCausalLM.from_pretrained(base, dtype=getattr(torch, dtype)).eval()


def train_experts(base: Path, records: list[dict], out: Path, *, experts: list[str] | None = None, r: int = 8,
                  alpha: float = 16, dropout: float = 0.0, targets: list[str] | None = None, steps: int = 100,
                  steps_for: dict | None = None, lr: float = 3e-3, lr_for: dict | None = None, batch: int = 16,
                  warmup: int = 20, max_len: int = 512, seed: int = 0, held_out: list[dict] | None = None,
                  val_fraction: float = 0.0, dtype: str = "float32", tokenizer=None, device: str = "cpu",
                  only: list[str] | None = None) -> dict:
    """One LoRA adapter per expert in `records` (or in `experts`), each trained on that expert's records only,
    written with save_pretrained to out/<expert>/. `only` trains a subset with the seeds the full run gives them
    (an expert's seed is its position in `experts`), so retraining one reproduces it. held_out (records) or val_fraction (a share of each expert's
    records kept out of training) gives the held-out loss of the base and of the adapter on that expert's replies."""
    from peft import LoraConfig, get_peft_model
    from transformers import AutoTokenizer

    tok = tokenizer or AutoTokenizer.from_pretrained(base)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    names = experts or sorted({rec["expert"] for rec in records}, key=[rec["expert"] for rec in records].index)
    report = {}
    for k, name in enumerate(names):
        if only and name not in only:
            continue
        mine = [rec for rec in records if rec["expert"] == name]
        if not mine:
            raise SystemExit(f"no records for expert {name}")
        held = [rec for rec in (held_out or []) if rec["expert"] == name]
        if val_fraction and not held_out:
            mine = list(mine)
            random.Random(seed + k).shuffle(mine)
            n_val = max(1, int(len(mine) * val_fraction))
            held, mine = mine[:n_val], mine[n_val:]
        torch.manual_seed(seed + 100 + k)
        model = load_base(base, dtype).to(device)
        tgt = resolve_targets(model, targets)
        cfg = LoraConfig(task_type="CAUSAL_LM", r=r, lora_alpha=alpha, lora_dropout=dropout, bias="none",
                         target_modules=tgt)
        pm = get_peft_model(model, cfg)
        enc = encode_records(tok, mine, max_len)
        params = [p for p in pm.parameters() if p.requires_grad]
        n_steps = (steps_for or {}).get(name, steps)
        n_lr = (lr_for or {}).get(name, lr)
        log(f"{name}: {len(enc)} replies, {sum(p.numel() for p in params)} LoRA parameters, {n_steps} steps, lr {n_lr}")
        info = train_loop(pm, params, batches(enc, batch, random.Random(seed + k), pad_id), n_steps, lr=n_lr,
                          name=name, warmup=warmup)
        info.update(records=len(enc), r=r, lora_alpha=alpha, targets=tgt, batch=batch)
        if held:
            he = encode_records(tok, held, max_len)
            info["heldout_records"] = len(he)
            info["heldout_loss_adapter"] = eval_loss(pm, he, pad_id=pad_id)
            with pm.disable_adapter():
                info["heldout_loss_base"] = eval_loss(pm, he, pad_id=pad_id)
            log(f"  {name}: held-out loss on its replies {info['heldout_loss_base']:.3f} (base) -> "
                f"{info['heldout_loss_adapter']:.3f} (adapter)")
        # the LoRA weights only: with lm_head or embed_tokens among the targets peft would also save those
        # layers' full base weights ("save_embedding_layers"), which the adapter does not change
        pm.to("cpu").save_pretrained(out / name, save_embedding_layers=False)
        report[name] = info
    return report


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", type=Path, required=True, help="a Hugging Face causal LM folder (config, weights, tokenizer)")
    ap.add_argument("--data", type=Path, required=True, help="JSONL: {messages, response, expert} per line")
    ap.add_argument("--out", type=Path, required=True, help="writes OUT/<expert>/ (PEFT folders) and OUT/train_report.json")
    ap.add_argument("--experts", nargs="*", help="train only these experts (default: every expert in --data)")
    ap.add_argument("--r", type=int, default=8, help="LoRA rank (default 8)")
    ap.add_argument("--alpha", type=float, default=16, help="lora_alpha (default 16: scale alpha/r = 2)")
    ap.add_argument("--dropout", type=float, default=0.0, help="lora_dropout (default 0)")
    ap.add_argument("--targets", default=None,
                    help="comma-separated module names (default: those of %s the model has)" % ",".join(DEFAULT_TARGETS))
    ap.add_argument("--steps", type=int, default=100, help="optimizer steps per expert (default 100)")
    ap.add_argument("--steps-for", nargs="*", default=[], metavar="EXPERT=N", help="per-expert step counts")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate (default 3e-3; cosine to 10%%)")
    ap.add_argument("--lr-for", nargs="*", default=[], metavar="EXPERT=LR", help="per-expert learning rates")
    ap.add_argument("--batch", type=int, default=16, help="conversations per step (default 16)")
    ap.add_argument("--warmup", type=int, default=20, help="linear warmup steps (default 20)")
    ap.add_argument("--max-len", type=int, default=512, help="tokens per conversation, cut from the left (default 512)")
    ap.add_argument("--val-fraction", type=float, default=0.05,
                    help="share of each expert's records held out to report base vs adapter loss (default 0.05; 0: off)")
    ap.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"],
                    help="dtype of the frozen base while training (default float32; adapters are saved in float32)")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1)")
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu",
                    help="cpu, cuda, cuda:1, mps... (default cuda when available, else cpu)")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    records = read_records(a.data)
    kv = lambda xs, f: {x.split("=", 1)[0]: f(x.split("=", 1)[1]) for x in xs}  # noqa: E731
    a.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    report = train_experts(a.base, records, a.out, only=a.experts, r=a.r, alpha=a.alpha, dropout=a.dropout,
                           targets=a.targets.split(",") if a.targets else None, steps=a.steps,
                           steps_for=kv(a.steps_for, int), lr=a.lr, lr_for=kv(a.lr_for, float), batch=a.batch,
                           warmup=a.warmup, max_len=a.max_len, seed=a.seed, val_fraction=a.val_fraction, dtype=a.dtype,
                           device=a.device)
    (a.out / "train_report.json").write_text(json.dumps(dict(base=str(a.base), data=str(a.data), threads=a.threads,
                                                             seconds=round(time.time() - t0, 1), experts=report),
                                                        indent=1) + "\n")
    log(f"{len(report)} experts in {a.out} ({time.time() - t0:.0f}s)")


if __name__ == "__main__":
    main()
