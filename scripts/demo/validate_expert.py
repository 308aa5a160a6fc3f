"""How one expert does on the VALIDATION split (for choosing an expert's settings; the test split stays for the
report): its sampled replies, alone at weight 1, to `--per` validation messages of every situation, judged as
export.py judges the test split (style: the pole whose unique template phrases occur most; situation: whose tip
phrases occur most).

  python scripts/demo/validate_expert.py --work W --expert extraversion_low [--per 8]   (W: train.py's --work)
"""
from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import torch  # noqa: E402
from transformers import PreTrainedTokenizerFast  # noqa: E402

import corpus as C  # noqa: E402
import export as X  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--work", type=Path, required=True, help="train.py's --work folder (hf/, adapters/)")
    ap.add_argument("--expert", required=True, choices=C.EXPERTS)
    ap.add_argument("--per", type=int, default=8, help="validation messages per situation")
    ap.add_argument("--threads", type=int, default=1)
    a = ap.parse_args()
    torch.set_num_threads(a.threads)
    tok = PreTrainedTokenizerFast.from_pretrained(a.work / "hf")
    model = X.Merger(a.work / "hf", a.work / "adapters")({a.expert: 1.0})
    val = [json.loads(line) for line in (HERE.parent.parent / "data" / "situations" / "validation.jsonl").open() if line.strip()]
    by: dict[str, list[dict]] = {}
    for e in val:
        by.setdefault(e["situation"], []).append(e)
    rng = random.Random(11)
    msgs = [e for s in C.SITUATIONS for e in rng.sample(by[s], min(a.per, len(by[s])))]
    frags = C.style_fragments()
    style = situation = 0
    for i, e in enumerate(msgs):
        text = X.sample(model, tok, X.chat_ids(tok, e["text"]), seed=i)
        style += X.classify_style(text, frags) == a.expert
        situation += X.classify_situation(text) == e["situation"]
    print(json.dumps(dict(expert=a.expert, work=str(a.work), messages=len(msgs), in_style=round(style / len(msgs), 3),
                          addresses_situation=round(situation / len(msgs), 3))))


if __name__ == "__main__":
    main()
