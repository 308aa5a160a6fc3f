"""How far can a linear reader of the words go on data/situations? (models/persona-demo/README.md,
"Would more of the words, or a thesaurus, close the gap?").

Logistic regression over the router's n-grams (word 1-2, character 2-5 within words, sublinear tf-idf), on
the validation split only (the test split is for the final report). Three feature sets:
  full       every n-gram of the train split, unhashed
  hashed     the same n-grams hashed into --buckets per block, as lib/router/ngrams.ts does
  wordnet    full, plus each word's WordNet senses as tokens beside the n-grams (weights 0.5 and 1)
Top-2 = the situation pair with the most probability summed over the situations that share it, the
rule that is optimal for top-2 given calibrated probabilities.

For measuring only; nothing here is shipped. Needs scikit-learn, and for `wordnet` nltk plus WordNet's
database files: `apt-get install wordnet-base wordnet-sense-index`, then --wordnet-dir names a folder this
script fills with a copy of them (nltk reads only from its own data folders).

    python scripts/demo/ngram_ceiling.py --wordnet-dir /tmp/wn
"""
import argparse
import json
import re
import shutil
from pathlib import Path

import numpy as np
from scipy.sparse import hstack
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer, TfidfVectorizer
from sklearn.linear_model import LogisticRegression

ROOT = Path(__file__).resolve().parents[2]
WORD = r"[\w']+"

# WordNet 3.0's lexicographer files, by number (the database stores the number; nltk wants the names).
LEXNAMES = ("adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
            "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
            "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
            "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
            "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
            "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather "
            "adj.ppl").split()


def load(data: Path, split: str):
    rows = [json.loads(line) for line in open(data / f"{split}.jsonl")]
    return [r["text"] for r in rows], [r["situation"] for r in rows]


def ngram_blocks(train, others, buckets):
    """tf-idf word and character blocks for train (fitted) and each of others."""
    vecs = ([TfidfVectorizer(ngram_range=(1, 2), token_pattern=WORD, sublinear_tf=True),
             TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 5), sublinear_tf=True)] if not buckets else
            [HashingVectorizer(ngram_range=(1, 2), token_pattern=WORD, alternate_sign=False, norm=None, n_features=buckets),
             HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), alternate_sign=False, norm=None, n_features=buckets)])
    out = [[] for _ in range(1 + len(others))]
    for v in vecs:
        if buckets:
            t = TfidfTransformer(sublinear_tf=True)
            out[0].append(t.fit_transform(v.transform(train)))
            for i, o in enumerate(others): out[i + 1].append(t.transform(v.transform(o)))
        else:
            out[0].append(v.fit_transform(train))
            for i, o in enumerate(others): out[i + 1].append(v.transform(o))
    return out


def wordnet_reader(folder: Path):
    """nltk's WordNet over Debian's database files, copied into an nltk data folder."""
    import nltk
    target = folder / "corpora" / "wordnet"
    target.mkdir(parents=True, exist_ok=True)
    for f in Path("/usr/share/wordnet").iterdir():
        if f.is_file(): shutil.copy(f, target / f.name)
    (target / "lexnames").write_text("".join(f"{i:02d}\t{n}\t{i // 100}\n" for i, n in enumerate(LEXNAMES)))
    nltk.data.path.insert(0, str(folder))
    from nltk.corpus import wordnet
    return wordnet


def sense_tokens(wn, text, cache):
    """Per word of 3+ letters: its first noun, verb and adjective sense, that sense's lexicographer file,
    and every hypernym above it."""
    out = []
    for w in re.findall(r"[a-z]+", text.lower()):
        if len(w) < 3: continue
        if w not in cache:
            toks = []
            for pos in ("n", "v", "a"):
                for s in wn.synsets(w, pos=pos)[:1]:
                    toks += ["L" + s.lexname(), "S" + s.name()]
                    toks += ["H" + h.name() for h in s.closure(lambda x: x.hypernyms() + x.instance_hypernyms())]
            cache[w] = toks
        out += cache[w]
    return " ".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=ROOT / "data" / "situations")
    ap.add_argument("--buckets", type=int, default=16384)
    ap.add_argument("--C", type=float, default=10.0, help="inverse L2 strength of the regression")
    ap.add_argument("--wordnet-dir", type=Path, help="fill and use this folder for WordNet (omit to skip)")
    args = ap.parse_args()

    table = json.load(open(args.data / "table.json"))
    names = [s["name"] for s in table["situations"]]
    pair_of = {s["name"]: tuple(s["experts"]) for s in table["situations"]}
    pairs = sorted(set(pair_of.values()))
    to_pair = np.zeros((len(names), len(pairs)))
    for i, n in enumerate(names): to_pair[i, pairs.index(pair_of[n])] = 1

    tr_x, tr_y = load(args.data, "train")
    va_x, va_y = load(args.data, "validation")

    def score(tag, blocks_tr, blocks_va):
        model = LogisticRegression(C=args.C, max_iter=400).fit(hstack(blocks_tr).tocsr(), tr_y)
        prob = model.predict_proba(hstack(blocks_va).tocsr())
        classes = [names.index(c) for c in model.classes_]
        sit = np.mean([model.classes_[j] == y for j, y in zip(prob.argmax(1), va_y)])
        top2 = np.mean([pairs[j] == pair_of[y] for j, y in zip((prob @ to_pair[classes]).argmax(1), va_y)])
        print(f"{tag:<28} situation {100 * sit:.1f}%  top-2 {100 * top2:.1f}%", flush=True)

    full_tr, full_va = ngram_blocks(tr_x, [va_x], 0)
    score("full vocabulary", full_tr, full_va)
    hashed_tr, hashed_va = ngram_blocks(tr_x, [va_x], args.buckets)
    score(f"hashed, {args.buckets} buckets", hashed_tr, hashed_va)
    if args.wordnet_dir:
        wn, cache = wordnet_reader(args.wordnet_dir), {}
        sense = TfidfVectorizer(token_pattern=r"\S+", lowercase=False, sublinear_tf=True, min_df=2)
        s_tr = sense.fit_transform([sense_tokens(wn, t, cache) for t in tr_x])
        s_va = sense.transform([sense_tokens(wn, t, cache) for t in va_x])
        for weight in (0.5, 1.0):
            score(f"full + WordNet x {weight}", full_tr + [weight * s_tr], full_va + [weight * s_va])


if __name__ == "__main__":
    main()
