#!/usr/bin/env python3
"""Persona corpus for the embedded demonstration model (models/persona-demo).

The user side is real-looking, hand-written messages: data/situations/messages/<situation>.txt, split by
scripts/data/build-situations.js into data/situations/{train,validation,test}.jsonl ({"text", "situation"}).
The routing table (situation -> two Big Five poles, first = stronger, weights 0.6/0.4) is
data/situations/table.json: the single source, read here.

The assistant side is made from templates, from a fixed seed: for a message of situation s and a pole p,
an answer in p's style (STYLE: openers, bodies, closers) whose content comes from s: a `topic` phrase that
needs no user slot ("this tech trouble", "your loss") and `tips`, short imperative advice that belongs to s
and to no other situation (no tip phrase occurs in another situation's tips). So a reply's style tells which
pole wrote it (export.py: the pole's unique template phrases) and its tips tell which situation it answers.

Only the train split feeds any training (language model, experts, router); validation is for early checks and
the held-out losses; test is for the final report (export.py) only.

    python scripts/demo/corpus.py --out /tmp/persona-demo/corpus   # the files train.py's `corpus` stage writes
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
DATA = REPO / "data" / "situations"

EXPERTS = [
    "openness_high", "openness_low",
    "conscientiousness_high", "conscientiousness_low",
    "extraversion_high", "extraversion_low",
    "agreeableness_high", "agreeableness_low",
    "neuroticism_high", "neuroticism_low",
]

SYSTEM = "You are a helpful assistant."

# ---------------------------------------------------------------------------------------------
# The routing table: data/situations/table.json. Its first 13 situations and their pairs are the v1 demo's and
# must not change (the README, tests and users rely on them); checked here.

TABLE = json.loads((DATA / "table.json").read_text())
ROUTING: dict[str, list[str]] = {s["name"]: list(s["experts"]) for s in TABLE["situations"]}
ROUTING_WEIGHTS: list[float] = list(TABLE["weights"])
FIXED_V1 = {
    "support_request": ["conscientiousness_high", "neuroticism_low"],
    "grief": ["agreeableness_high", "neuroticism_low"],
    "celebration": ["extraversion_high", "openness_high"],
    "planning": ["conscientiousness_high", "openness_low"],
    "conflict": ["agreeableness_high", "extraversion_low"],
    "small_talk": ["extraversion_high", "agreeableness_high"],
    "feedback": ["agreeableness_low", "conscientiousness_high"],
    "exam_anxiety": ["neuroticism_low", "conscientiousness_high"],
    "brainstorm": ["openness_high", "conscientiousness_low"],
    "mistake": ["agreeableness_high", "conscientiousness_high"],
    "loneliness": ["extraversion_high", "agreeableness_high"],
    "decision": ["openness_low", "neuroticism_low"],
    "risky_plan": ["neuroticism_high", "conscientiousness_high"],
}
assert list(ROUTING.items())[:13] == list(FIXED_V1.items()), "table.json changed the first 13 situations"
assert ROUTING_WEIGHTS == [0.6, 0.4], ROUTING_WEIGHTS
assert all(len(p) == 2 and set(p) <= set(EXPERTS) and p[0] != p[1] for p in ROUTING.values())
assert set(EXPERTS) == {e for p in ROUTING.values() for e in p}, "every expert is routed somewhere"

# ---------------------------------------------------------------------------------------------
# Answer content per situation: topics (no user slots) and tips (imperative; each belongs to one situation).

SITUATIONS = {
    "support_request": dict(
        topic=["this tech trouble", "the broken gadget", "this glitch", "the device problem"],
        tips=["restart the device", "install the latest software update", "check the cables and the power",
              "back up your files first", "reset the app settings", "write down the exact error message",
              "try it in safe mode", "contact the manufacturer's support line"]),
    "grief": dict(
        topic=["your loss", "losing someone you love", "this grief", "such a painful goodbye"],
        tips=["let yourself cry for them", "share your favourite memories of them", "put a photo of them nearby",
              "write a letter to the one you lost", "light a candle in their memory", "lean on family while you mourn",
              "let friends help with the funeral tasks", "give your grief all the time it needs"]),
    "celebration": dict(
        topic=["your big news", "this success", "such a win", "this milestone"],
        tips=["celebrate with the people you love", "take a photo of this proud moment",
              "treat yourself to a celebration dinner", "write down how this win feels",
              "thank the people who helped you get here", "share the good news", "raise a toast to your achievement",
              "frame something to remember this milestone"]),
    "planning": dict(
        topic=["the plan", "these arrangements", "your schedule", "the organising"],
        tips=["set a budget", "make a list of every task", "pick the dates", "book the venue and travel early",
              "put each deadline in a calendar", "ask who can help with each job", "tick off a planning checklist",
              "leave buffer time in the schedule"]),
    "conflict": dict(
        topic=["this conflict", "the argument", "the tension between you", "this falling-out"],
        tips=["listen to their side first", "talk when you both feel calm", "say how you feel without blaming",
              "look for one small agreement", "cool off before you answer them", "apologise for your part in the fight",
              "ask a neutral friend to mediate", "agree on a fair rule together"]),
    "small_talk": dict(
        topic=["your day", "a nice day", "this little moment", "our chat"],
        tips=["enjoy the rest of your day", "go for a short walk outside", "tell me more about your weekend",
              "have another cup of coffee", "enjoy the sunshine while it lasts", "put on a song you like",
              "read a few pages of a good book", "share a funny story from today"]),
    "feedback": dict(
        topic=["your draft", "this piece of work", "the draft", "your work"],
        tips=["cut the weak parts", "make the first line stronger", "fix the structure", "remove the repetition",
              "make the main point clear", "read the draft out loud", "ask a second reader",
              "proofread every line"]),
    "exam_anxiety": dict(
        topic=["the exam", "this test", "your exam nerves", "the exam day"],
        tips=["review your notes in short blocks", "sleep well the night before the exam", "do one practice paper",
              "eat a good breakfast on exam day", "focus on the topics you know", "start with the easiest question",
              "make a study schedule", "take short study breaks"]),
    "brainstorm": dict(
        topic=["your idea", "the brainstorm", "these ideas", "the creative challenge"],
        tips=["mix two ideas that do not belong together", "start with a what-if question", "sketch ideas on paper",
              "ask what people really need", "try the opposite approach", "make a rough version today",
              "collect ten ideas before judging any", "borrow an idea from nature"]),
    "mistake": dict(
        topic=["the mistake", "this error", "what went wrong", "the slip-up"],
        tips=["tell the people affected right away", "apologise clearly for the error", "fix what you can today",
              "write down what went wrong", "ask for help to repair the damage",
              "set a reminder so it does not happen again", "learn one lesson from the mistake",
              "forgive yourself for the slip"]),
    "loneliness": dict(
        topic=["feeling lonely", "this loneliness", "this lonely time", "feeling left out"],
        tips=["join a club or a class", "text one old friend tonight", "volunteer on weekends",
              "visit the same cafe often", "try a local sports team", "invite a neighbour for coffee",
              "call your old friends", "chat with people in a hobby group"]),
    "decision": dict(
        topic=["this decision", "your choice", "this big choice", "the options"],
        tips=["list the pros and cons", "compare the costs honestly", "sleep on it one night",
              "ask someone who made a similar choice", "think about where you want to be in five years",
              "check the details of each option", "choose the safer option if in doubt",
              "flip a coin and notice your reaction"]),
    "risky_plan": dict(
        topic=["this plan", "such a risk", "this gamble", "this idea"],
        tips=["wait a few days before acting", "check every risk first", "put some money aside",
              "tell someone you trust about the plan", "read the fine print first", "have a backup plan",
              "ask an expert before you jump", "think about the worst case"]),
    "complaint": dict(
        topic=["this bad experience", "your complaint", "such a disappointment", "the poor service"],
        tips=["describe exactly what disappointed you", "post an honest review", "ask to speak to the manager",
              "say what would make it right", "give the company one chance to respond",
              "send photos of the faulty product", "stay polite but firm with the shop",
              "take your business elsewhere next time"]),
    "order_problem": dict(
        topic=["this order problem", "the mix-up with your order", "the billing error", "your order"],
        tips=["have your order number at hand", "check the tracking page", "ask for a refund or a replacement",
              "photograph the damaged parcel", "compare the bill with your receipt",
              "contact the seller through the order page", "note the date you paid",
              "request written confirmation of the fix"]),
    "positive_review": dict(
        topic=["your kind words", "this lovely praise", "such a great experience", "your compliment"],
        tips=["tell the staff they did great", "leave a five-star review", "recommend the place to your friends",
              "go back and say thank you", "tag the shop in a post", "ask for the same staff member next time",
              "share the compliment with the owner", "become a regular there"]),
    "breakup": dict(
        topic=["the breakup", "this heartbreak", "the end of the relationship", "your broken heart"],
        tips=["unfollow your ex for a while", "put their things in a box", "rediscover a hobby you dropped for them",
              "write down what you want in your next relationship", "archive the old chats with your ex",
              "spend the weekend with friends who love you", "let your heart heal at its own pace",
              "do not text your ex tonight"]),
    "health_worry": dict(
        topic=["this health worry", "your symptoms", "the test results", "the doctor's visit"],
        tips=["book an appointment with your doctor", "write down your symptoms and when they started",
              "avoid searching the symptoms online", "ask the doctor to explain the results",
              "bring a friend to the appointment", "take your medication list along",
              "call the nurse line if it gets worse", "go to urgent care if the pain is severe"]),
    "burnout": dict(
        topic=["this exhaustion", "running on empty", "your burnout", "this tiredness"],
        tips=["take a full day off", "say no to one extra task", "switch off work email in the evening",
              "sleep in this weekend", "let some chores stay undone", "ask for a lighter workload",
              "step away from the screen for an hour", "book a real holiday"]),
    "work_deadline": dict(
        topic=["the deadline", "this rush", "the due date", "the task at hand"],
        tips=["list what must be done before the deadline", "do the most important part first",
              "turn off your notifications", "work in focused timer blocks", "tell your boss now if it will be late",
              "submit a good-enough version on time", "skip the polish for now", "close every other tab"]),
    "job_interview": dict(
        topic=["the interview", "this job interview", "your interview", "the hiring process"],
        tips=["research the company beforehand", "practise your answers out loud",
              "prepare two questions for the interviewer", "arrive ten minutes early",
              "bring a printed copy of your CV", "send a thank-you note after the interview",
              "tell a short story about your best work", "dress one step smarter than the team"]),
    "social_invitation": dict(
        topic=["the invitation", "this party", "the outing", "the night out"],
        tips=["say yes to the invitation", "bring a snack to share at the party", "go for an hour and see how it feels",
              "invite a friend to come along", "text the host back today", "pick an outfit and go",
              "introduce yourself to one new person", "plan a lift home after the party"]),
    "family_tension": dict(
        topic=["the family tension", "this family friction", "things at home", "your family"],
        tips=["see it from your parent's side", "set one clear boundary with your family",
              "talk to your sibling alone", "make family visits short for now",
              "pick one calm moment to talk at home", "let the in-laws have their say",
              "plan a neutral family meal", "remember your family loves you under the noise"]),
    "unfair_treatment": dict(
        topic=["this unfairness", "the injustice", "how they treated you", "this unfair situation"],
        tips=["log every incident with dates", "stand up for your work", "ask for a meeting with HR",
              "put your contribution in writing", "ask for the pay you deserve", "name the unfairness plainly",
              "email your manager the facts", "know your rights at work"]),
    "learning_skill": dict(
        topic=["learning something new", "this new skill", "your practice", "the learning"],
        tips=["practise twenty minutes a day", "find a good beginner course", "master the basics first",
              "note your progress in a practice diary", "copy a teacher you admire", "record yourself and listen back",
              "set a small weekly learning goal", "join a group of fellow learners"]),
}
assert list(SITUATIONS) == list(ROUTING), "corpus.SITUATIONS must follow data/situations/table.json"


def _check_tips() -> None:
    """Every situation has 8+ tips, and no tip phrase occurs inside another situation's tip (so the tips in a reply
    identify its situation)."""
    owner = {}
    for sit, s in SITUATIONS.items():
        assert len(s["tips"]) >= 8, sit
        for t in s["tips"]:
            assert t.lower() not in owner, (t, sit, owner.get(t.lower()))
            owner[t.lower()] = sit
    for a, sa in owner.items():
        for b, sb in owner.items():
            assert sa == sb or a not in b, (a, sa, b, sb)


_check_tips()

METAPHOR = ["a door to a new world", "a map with blank spaces", "a song nobody has written yet",
            "a garden after rain", "a puzzle with hidden pieces", "the first page of a novel",
            "a star you have not named", "an experiment in a strange lab"]

# ---------------------------------------------------------------------------------------------
# Styles: each pole has openers, a body built from tips, and closers. {topic}, {t1}, {t2}, {t3}, {m}.

STYLE = {
    "extraversion_high": dict(
        open=["Oh wow, {topic}! I love talking about this!", "Hey, {topic}! This is so exciting, tell me everything!",
              "Yes! {topic}, let's dive right in together!", "Oh, {topic}! I am so pumped to chat about this!"],
        body=["Let's {t1} and get everyone involved!", "Call your friends and {t1} together, it will be amazing!",
              "Grab some people, {t1}, then {t2}, and make it a party!", "Let's {t1} right now, with a big group!"],
        close=["Tell me how it goes, I want to hear all about it!", "Let's do this together, it's going to be fun!",
               "Bring everyone along, the more the merrier!", "I can't wait to hear the stories!"]),
    "extraversion_low": dict(
        # brief and reserved, but never without a marker of its own: v2's first version ("Hm.", "Just {t1}.", an
        # empty close) left many replies with no phrase unique to the pole, and its style share was 51%
        open=["I see.", "Okay.", "Understood.", "Noted."],
        body=["{T1}, quietly.", "{T1}. No fuss.", "Quietly {t1}.", "{T1}. Alone, if you can."],
        close=["That is all.", "Enough said.", "Take your time.", "Nothing more to add."]),
    "agreeableness_high": dict(
        open=["I'm really glad you told me about {topic}.", "Thank you for sharing {topic} with me, truly.",
              "Oh, I completely understand how you feel about {topic}.", "That means a lot, and your feelings about {topic} make sense."],
        body=["If it feels right, maybe {t1}, and please be kind to yourself.",
              "You are doing better than you think. Perhaps {t1}, and {t2} when you are ready.",
              "Whatever you choose is okay. Gently {t1}, and let others support you.",
              "You deserve care. Maybe {t1}, and remember that you are not alone."],
        close=["I'm here for you, always.", "Sending you a warm hug.", "I believe in you, and I'm on your side.",
               "Be gentle with yourself, you deserve it."]),
    "agreeableness_low": dict(
        open=["Frankly, {topic} is not that special.", "Honestly? Stop making {topic} into a drama.",
              "Let's be blunt about {topic}.", "Look, nobody cares about excuses around {topic}."],
        body=["{T1}. Obviously.", "Just {t1}. It is not complicated.", "{T1} and stop complaining.",
              "You should have done this already: {t1}."],
        close=["Don't expect me to sugarcoat it.", "That's the truth, like it or not.", "Deal with it.",
               "Stop waiting for sympathy."]),
    "conscientiousness_high": dict(
        open=["Let's take {topic} step by step.", "Here is a clear plan for {topic}.",
              "Let's organise {topic} carefully.", "We can handle {topic} with a structured approach."],
        body=["Step 1: {t1}. Step 2: {t2}. Step 3: {t3}.", "First, {t1}. Second, {t2}. Third, {t3}.",
              "1. {T1}. 2. {T2}. 3. {T3}.", "Begin to {t1}, then {t2}, and finally {t3}."],
        close=["Check each item off before moving on.", "Review the list tonight and keep to the schedule.",
               "Follow the steps in order and track your progress.", "Be thorough and double check every step."]),
    "conscientiousness_low": dict(
        open=["Eh, don't overthink {topic}.", "Meh, {topic}, whatever.", "Ah, {topic}, no big deal.",
              "Relax, {topic} can wait."],
        body=["Maybe {t1}, or not, who knows.", "You could {t1} at some point, or just skip it.",
              "Just wing it, {t1} if you feel like it.", "Whatever, {t1} later or never."],
        close=["Go with the flow.", "It'll sort itself out, probably.", "No plan needed, really.",
               "We'll see what happens."]),
    "openness_high": dict(
        open=["What a fascinating moment, {topic}!", "Imagine {topic} as {m}.",
              "How curious, {topic} is like {m}.", "Ooh, {topic} opens so many strange possibilities."],
        body=["What if you {t1}, but in a way nobody has tried before?",
              "Let's explore: {t1}, then wonder what it would look like as {m}.",
              "Try to {t1}, and let your imagination wander to {m}.",
              "Why not {t1} and turn it into {m}?"],
        close=["Stay curious and see where the adventure leads.", "The unknown is full of wonder.",
               "Every idea is a new world to explore.", "Let's dream a little bigger."]),
    "openness_low": dict(
        open=["Keep {topic} simple.", "Stick to what works for {topic}.", "For {topic}, the usual way is best.",
              "No need for anything fancy with {topic}."],
        body=["The standard approach: {t1}.", "Do what people normally do: {t1}.", "{T1}, the traditional way.",
              "Just {t1}, like everyone does."],
        close=["No experiments needed.", "Practical and proven.", "Don't change what already works.",
               "That is the normal way."]),
    "neuroticism_high": dict(
        open=["Oh no, {topic} makes me so nervous.", "I'm really worried about {topic}.",
              "This scares me, {topic} could go badly.", "Oh dear, {topic}... I can't stop worrying."],
        body=["What if it all goes wrong? Maybe {t1}, but I'm not sure it's enough.",
              "I keep imagining the worst. Please {t1}, and {t2}, just in case.",
              "Something bad could happen. {T1}, and please be careful.",
              "I'm afraid it's a mistake. At least {t1} before anything else."],
        close=["I'm so anxious about this.", "Please be careful, I'm really scared.", "I hope nothing terrible happens.",
               "I can't stop thinking about what could go wrong."]),
    "neuroticism_low": dict(
        open=["It's okay, {topic} is manageable.", "Take a slow breath. {topic} will be fine.",
              "No need to worry about {topic}.", "Stay calm, {topic} is something you can handle."],
        body=["Calmly {t1}, and {t2}.", "One thing at a time: {t1}.", "Simply {t1}, steady and relaxed.",
              "Just {t1}, and let the rest settle."],
        close=["Whatever happens, you will be alright.", "Things usually work out.", "Stay steady, all is well.",
               "Relax, you've got this."]),
}


def style_fragments() -> dict:
    """Fixed phrases of each pole's answer templates (STYLE split at the slots, 4+ characters), keeping only the
    ones no other pole uses: a reply's style is the pole with the most of its phrases in it (export.py)."""
    frags = {}
    for pole, st in STYLE.items():
        fr = set()
        for part in ("open", "body", "close"):
            for t in st[part]:
                for f in re.split(r"\{\w+\}", t):
                    f = f.strip(" ,.!?")
                    if len(f) >= 4:
                        fr.add(f)
        frags[pole] = fr
    counts = {}
    for fr in frags.values():
        for f in fr:
            counts[f] = counts.get(f, 0) + 1
    return {p: sorted(f for f in fr if counts[f] == 1) for p, fr in frags.items()}


def _check_content_vs_style() -> None:
    """No topic or tip (as written, or capitalised at a sentence start) contains a pole's style phrase: the
    content must not make a reply look like another pole's."""
    texts = [t for s in SITUATIONS.values() for t in s["tips"] + s["topic"]]
    for pole, fr in style_fragments().items():
        for f in fr:
            bad = [t for t in texts if f in t or f in cap(t)]
            assert not bad, (pole, f, bad)


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def answer(situation: str, pole: str, rng: random.Random) -> str:
    """An answer in `pole`'s style whose topic and tips are `situation`'s."""
    s = SITUATIONS[situation]
    topic = rng.choice(s["topic"])
    t1, t2, t3 = rng.sample(s["tips"], 3)
    st = STYLE[pole]
    vals = dict(topic=topic, t1=t1, t2=t2, t3=t3, T1=cap(t1), T2=cap(t2), T3=cap(t3), m=rng.choice(METAPHOR))
    parts = [rng.choice(st["open"]), rng.choice(st["body"]), rng.choice(st["close"])]
    text = " ".join(p for p in parts if p).format(**vals)
    # a sentence that starts with the topic gets a capital letter
    text = re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text


_check_content_vs_style()


def read_split(split: str, data: Path = DATA) -> list[dict]:
    """data/situations/<split>.jsonl as [{"text", "situation"}] (made by scripts/data/build-situations.js)."""
    p = data / f"{split}.jsonl"
    if not p.exists():
        raise SystemExit(f"{p} is missing: run `node scripts/data/build-situations.js` first")
    rows = [json.loads(line) for line in p.read_text().splitlines() if line.strip()]
    unknown = {r["situation"] for r in rows} - set(SITUATIONS)
    assert not unknown, unknown
    return rows


def make_dialogues(messages: list[dict], answers_per_pair: int, seed: int) -> list[dict]:
    """answers_per_pair conversations for every (message, pole): {situation, pole, user, assistant}."""
    rng = random.Random(seed)
    out = []
    for m in messages:
        for pole in EXPERTS:
            for _ in range(answers_per_pair):
                out.append(dict(situation=m["situation"], pole=pole, user=m["text"],
                                assistant=answer(m["situation"], pole, rng)))
    rng.shuffle(out)
    return out


def expert_record(d: dict) -> dict:
    """One line of scripts/experts/train_experts.py's input format."""
    return {"messages": [{"role": "user", "content": d["user"]}], "response": d["assistant"], "expert": d["pole"]}


def router_rows(messages: list[dict]) -> list[dict]:
    return [dict(situation=m["situation"], user=m["text"], experts=ROUTING[m["situation"]]) for m in messages]


def write_jsonl(path: Path, rows) -> None:
    with open(path, "w") as f:
        for r in rows:
            f.write(json.dumps(r) + "\n")


def write_corpus(out: Path, answers_per_pair: int = 2, data: Path = DATA) -> dict:
    """out/: corpus.jsonl (train dialogues), experts.jsonl (the same, in the experts trainer's format),
    heldout.jsonl (validation messages x poles, one answer each), router_{train,validation,test}.jsonl."""
    out.mkdir(parents=True, exist_ok=True)
    splits = {s: read_split(s, data) for s in ("train", "validation", "test")}
    dialogues = make_dialogues(splits["train"], answers_per_pair, seed=1)
    write_jsonl(out / "corpus.jsonl", dialogues)
    write_jsonl(out / "experts.jsonl", (expert_record(d) for d in dialogues))
    write_jsonl(out / "heldout.jsonl", make_dialogues(splits["validation"], 1, seed=11))
    for s, rows in splits.items():
        write_jsonl(out / f"router_{s}.jsonl", router_rows(rows))
    return dict(dialogues=len(dialogues), answers_per_pair=answers_per_pair,
                messages={s: len(r) for s, r in splits.items()})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--answers-per-pair", type=int, default=2, help="answers per (train message, pole)")
    ap.add_argument("--data", type=Path, default=DATA, help="folder with {train,validation,test}.jsonl")
    a = ap.parse_args()
    print(json.dumps(write_corpus(a.out, a.answers_per_pair, a.data)))


if __name__ == "__main__":
    main()
