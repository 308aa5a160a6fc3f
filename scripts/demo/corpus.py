#!/usr/bin/env python3
"""Synthetic persona corpus for the embedded demonstration model (models/persona-demo).

Situations (what the user says) x Big Five poles (how the assistant answers). Everything is made from
templates with slots, from a fixed seed, so the whole corpus is reproducible:

    python scripts/demo/corpus.py --out /tmp/persona-demo/corpus   # corpus.jsonl, router_train/test.jsonl
(train.py's `corpus` stage writes the same files; this entry point is for looking at the data.)

Each situation has user-message templates; the last HELDOUT_PER_SITUATION of them are held out (never used to
train the language model, the adapters or the router) and are the router's test set.

ROUTING says which two experts suit each situation (first = stronger); the router learns it.
"""
from __future__ import annotations

import argparse
import json
import random
import re
from pathlib import Path

EXPERTS = [
    "openness_high", "openness_low",
    "conscientiousness_high", "conscientiousness_low",
    "extraversion_high", "extraversion_low",
    "agreeableness_high", "agreeableness_low",
    "neuroticism_high", "neuroticism_low",
]

SYSTEM = "You are a helpful assistant."
HELDOUT_PER_SITUATION = 3

# ---------------------------------------------------------------------------------------------
# Slot fillers shared by many situations

FILL = {
    "friend": ["my friend", "my best friend", "my sister", "my brother", "my cousin", "my neighbour", "my partner",
               "my roommate", "an old friend", "my colleague"],
    "person": ["my grandmother", "my grandfather", "my dad", "my mom", "my uncle", "my aunt", "my dog", "my cat",
               "my best friend", "my old teacher", "my mentor"],
    "subject": ["math", "chemistry", "history", "biology", "physics", "statistics", "law", "economics", "French",
                "programming", "accounting", "philosophy"],
    "when": ["tomorrow", "next week", "on Monday", "on Friday", "in two days", "this weekend", "next month"],
    "device": ["laptop", "phone", "printer", "router", "tablet", "computer", "keyboard", "monitor", "smartwatch"],
    "app": ["email app", "banking app", "calendar", "music app", "video call app", "photo app", "password manager"],
    "problem": ["keeps crashing", "will not turn on", "is really slow", "keeps freezing", "lost all my settings",
                "shows an error", "will not connect", "drains the battery"],
    "achievement": ["got the promotion", "passed my driving test", "finished my first marathon", "got into university",
                    "got engaged", "got the job", "published my first article", "finished my thesis",
                    "won the competition", "bought my first house"],
    "trip": ["a trip to Japan", "a weekend in the mountains", "a road trip", "a camping trip", "a family holiday",
             "a week in Rome", "a beach vacation", "a visit to my parents"],
    "project": ["a birthday party", "a team offsite", "a move to a new flat", "a small wedding", "a garden project",
                "a product launch", "a charity run", "a kitchen renovation"],
    "coworker": ["a coworker", "my manager", "my roommate", "my neighbour", "my brother", "a teammate",
                 "my business partner", "my landlord"],
    "conflict_about": ["the dishes", "credit for the project", "noise at night", "money", "the deadline",
                       "who does the chores", "a comment in a meeting", "the schedule"],
    "work": ["essay", "cover letter", "short story", "presentation", "code", "business plan", "poem", "report",
             "resume", "design"],
    "idea_for": ["a new app", "a short film", "a small business", "a birthday gift", "a community event",
                 "a board game", "a school project", "a blog"],
    "mistake": ["sent the wrong file to a client", "missed an important deadline", "deleted a shared folder",
                "forgot a meeting with my boss", "made an error in the budget", "broke the build",
                "double booked the meeting room"],
    "city": ["a new city", "Berlin", "a small town", "London", "Toronto", "a city where I know nobody", "Madrid"],
    "offer": ["a job offer in another city", "two job offers", "an offer to start a business with a friend",
              "a chance to go back to school", "an offer to lead a new team", "a transfer abroad"],
    "risk": ["quit my job tomorrow with no savings", "put all my savings into one stock",
             "drive through the night without sleep", "lend all my money to a stranger online",
             "sign the contract without reading it", "go hiking alone in a storm"],
    "smalltalk": ["the weather is lovely today", "I just made some coffee", "it is finally the weekend",
                  "I watched a good movie yesterday", "my plants are growing", "I had a quiet day"],
}

# ---------------------------------------------------------------------------------------------
# Situations: user templates (last HELDOUT_PER_SITUATION held out), a topic phrase for answers, tips.

SITUATIONS = {
    "support_request": dict(
        user=["My {device} {problem}. Can you help?",
              "Help, my {device} {problem} and I do not know what to do.",
              "Can you help me fix my {app}? It {problem}.",
              "Since the update my {device} {problem}.",
              "I need technical help: the {app} {problem}.",
              "Hi, my {device} {problem} again. Any idea how to fix it?",
              "Quick question, my {app} {problem} every morning.",
              "I am stuck, the {device} at work {problem}.",
              "Something is wrong with my {device}, it {problem}.",
              "How do I repair my {app}? It {problem} all the time.",
              "Tech support please, my {device} {problem}."],
        topic=["the broken {device}", "this {device} problem", "the {app} issue", "a glitchy {device}"],
        tips=["restart the device", "install the latest update", "check the cables and the power",
              "back up your files first", "reset the settings", "write down the exact error message",
              "try it in safe mode", "contact the manufacturer if it keeps happening"]),
    "grief": dict(
        user=["{person} passed away last week.", "I lost {person} yesterday and I cannot stop crying.",
              "We had to say goodbye to {person} today.", "It has been a month since {person} died and it still hurts.",
              "I just came back from the funeral of {person}.", "{person} died and I feel empty.",
              "I keep thinking about {person}, who passed away recently.",
              "My heart is broken, {person} is gone.",
              "Today is the anniversary of losing {person}.",
              "I found out this morning that {person} has died.",
              "I miss {person} so much since the funeral."],
        topic=["your loss", "losing someone you love", "this grief", "such a painful goodbye"],
        tips=["let yourself cry", "talk about the good memories", "eat something small and rest",
              "lean on the people close to you", "write a letter to them", "keep a photo nearby",
              "take one day at a time", "ask for help with daily tasks"]),
    "celebration": dict(
        user=["Guess what, I {achievement}!", "I am so happy, I {achievement} today!",
              "Big news: I {achievement}.", "I finally {achievement} after years of trying!",
              "We are celebrating tonight because I {achievement}.", "I cannot believe it, I {achievement}!",
              "Good news, I {achievement} this morning.",
              "You will not believe it, I {achievement}.",
              "I just {achievement} and wanted to share it!",
              "Yesterday I {achievement}, what a day!",
              "Today is a great day, I {achievement}."],
        topic=["your big news", "this success", "such a win", "this milestone"],
        tips=["celebrate with the people you love", "take a photo of this moment", "treat yourself to a nice dinner",
              "write down how you feel today", "thank the people who helped you", "share the news",
              "plan a small party", "enjoy every minute of it"]),
    "planning": dict(
        user=["I need to plan {trip}.", "Can you help me organise {project}?",
              "I am planning {trip} for {when}, where do I start?", "Help me make a plan for {project}.",
              "I have to prepare {project} by {when}.", "How should I plan {trip}?",
              "We want to organise {project}, any advice?",
              "What is the best way to plan {trip}?",
              "I want to get ready for {project} and need a schedule.",
              "I must organise {trip} and I have no plan yet.",
              "Could you help me schedule {project}?"],
        topic=["the plan", "this project", "the trip", "your schedule"],
        tips=["set a budget", "make a list of every task", "pick the dates", "book the important things early",
              "put deadlines in a calendar", "ask who can help", "keep a checklist", "leave some buffer time"]),
    "conflict": dict(
        user=["I had a big fight with {coworker} about {conflict_about}.",
              "{coworker} and I keep arguing about {conflict_about}.",
              "I am angry at {coworker} because of {conflict_about}.",
              "How do I handle {coworker}? We argue about {conflict_about} all the time.",
              "There is tension with {coworker} over {conflict_about}.",
              "{coworker} yelled at me about {conflict_about}.",
              "I do not know how to talk to {coworker} after our fight about {conflict_about}.",
              "We had an argument, {coworker} and me, about {conflict_about}.",
              "I feel hurt, {coworker} blamed me for {conflict_about}.",
              "Another fight with {coworker} today, again about {conflict_about}.",
              "{coworker} will not speak to me since we argued about {conflict_about}."],
        topic=["this conflict", "the argument", "the tension between you", "this fight"],
        tips=["listen to their side first", "talk when you both feel calm", "say how you feel without blaming",
              "look for one small agreement", "take a break before you reply", "write down what matters to you",
              "ask a neutral person to help", "apologise for your part"]),
    "small_talk": dict(
        user=["Hi! {smalltalk}.", "Hello there, {smalltalk}.", "Hey, how are you? {smalltalk}.",
              "Good morning! {smalltalk}.", "Just wanted to chat, {smalltalk}.", "Hi, nothing special, {smalltalk}.",
              "Hey there, {smalltalk}, how is your day?",
              "Hello! How is it going? {smalltalk}.",
              "Hi friend, {smalltalk}.",
              "Good evening, {smalltalk}.",
              "Hey, {smalltalk}, what about you?"],
        topic=["your day", "a nice day", "this moment", "our chat"],
        tips=["enjoy the rest of the day", "go for a short walk", "call someone you like", "listen to some music",
              "have a cup of tea", "read a few pages of a book", "take a moment to relax", "share a good story"]),
    "feedback": dict(
        user=["Can you give me feedback on my {work}?", "Here is my {work}, what do you think?",
              "Please review my {work} before I send it.", "Is my {work} good enough?",
              "I finished my {work}, be honest with me.", "What should I improve in my {work}?",
              "I wrote a {work}, can you critique it?",
              "Could you check my {work} and tell me what is wrong?",
              "Be honest: how is my {work}?",
              "I need a review of my {work} today.",
              "Would you look at my {work} and give notes?"],
        topic=["your {work}", "this draft", "the {work}", "your work"],
        tips=["cut the weak parts", "make the first line stronger", "fix the structure", "check every detail twice",
              "ask a second reader", "remove the repetition", "make the main point clear", "read it out loud"]),
    "exam_anxiety": dict(
        user=["I have a {subject} exam {when} and I am so nervous.", "I am scared of failing my {subject} exam.",
              "My {subject} exam is {when} and I cannot focus.", "I am panicking about the {subject} test {when}.",
              "What if I fail the {subject} exam {when}?", "I cannot sleep because of my {subject} exam.",
              "The {subject} exam {when} is stressing me out.",
              "I am worried about my {subject} final {when}.",
              "My hands shake when I think about the {subject} exam.",
              "I feel anxious, the {subject} test is {when}.",
              "I am afraid I will blank on the {subject} exam {when}."],
        topic=["the exam", "your {subject} exam", "the test", "this exam"],
        tips=["review your notes in short blocks", "sleep well the night before", "do one practice test",
              "eat a good breakfast", "focus on the topics you know", "breathe slowly when you feel tense",
              "make a study schedule", "take short breaks"]),
    "brainstorm": dict(
        user=["I need ideas for {idea_for}.", "Can you brainstorm {idea_for} with me?",
              "Give me some ideas for {idea_for}.", "I want to create {idea_for} but I have no ideas.",
              "Help me think of {idea_for}.", "What could I do for {idea_for}?",
              "I am looking for fresh ideas for {idea_for}.",
              "Any creative ideas for {idea_for}?",
              "Let us brainstorm {idea_for} together.",
              "I am stuck on {idea_for}, any ideas?",
              "Inspire me, I am making {idea_for}."],
        topic=["your idea", "this project", "the brainstorm", "{idea_for}"],
        tips=["mix two ideas that do not belong together", "start with a question", "draw it on paper",
              "ask what people really need", "try the opposite approach", "make a rough version today",
              "collect ten ideas before judging any", "borrow an idea from nature"]),
    "mistake": dict(
        user=["I {mistake} and I feel terrible.", "At work I {mistake}. What should I do?",
              "I messed up, I {mistake}.", "Today I {mistake} and my boss is upset.",
              "I think I {mistake}, how do I fix this?", "I {mistake} and now everyone knows.",
              "Oops, I {mistake} this morning.",
              "I made a mistake: I {mistake}.",
              "I feel so stupid, I {mistake}.",
              "Yesterday I {mistake}. How do I make it right?",
              "I cannot believe I {mistake}."],
        topic=["the mistake", "this error", "what happened", "the situation"],
        tips=["tell the people affected right away", "apologise clearly", "fix what you can today",
              "write down what went wrong", "ask for help to repair it", "set a reminder so it does not happen again",
              "learn one lesson from it", "forgive yourself"]),
    "loneliness": dict(
        user=["I moved to {city} and I feel lonely.", "I do not know anyone in {city}.",
              "Since I moved to {city} I spend every evening alone.", "I feel isolated in {city}.",
              "How do I make friends in {city}?", "I am lonely after moving to {city}.",
              "Everyone in {city} seems to have friends except me.",
              "I just started a new life in {city} and I am alone.",
              "It is hard to meet people in {city}.",
              "My weekends in {city} are so lonely.",
              "I miss home, {city} feels empty without friends."],
        topic=["feeling lonely", "your new life", "this lonely time", "moving to a new place"],
        tips=["join a club or a class", "say yes to small invitations", "call your old friends",
              "volunteer on weekends", "visit the same cafe often", "try a sports team", "explore the neighbourhood",
              "invite a neighbour for coffee"]),
    "decision": dict(
        user=["I got {offer} and I cannot decide.", "Should I take {offer}?",
              "I need to choose about {offer} by {when}.", "Help me decide: {offer}.",
              "I am torn about {offer}.", "What would you do with {offer}?",
              "I have {offer} and do not know what to choose.",
              "Please help me weigh {offer}.",
              "I keep changing my mind about {offer}.",
              "Is it wise to accept {offer}?",
              "My family disagrees about {offer}."],
        topic=["this decision", "the offer", "your choice", "this big choice"],
        tips=["list the pros and cons", "compare the money honestly", "sleep on it one night",
              "ask someone who made a similar choice", "think about where you want to be in five years",
              "check the details of the offer", "choose the safer option if in doubt", "trust the facts"]),
    "risky_plan": dict(
        user=["I am going to {risk}.", "I have decided to {risk}.", "Tomorrow I will {risk}, good idea?",
              "I think I should {risk}.", "Is it fine if I {risk}?", "My plan is to {risk}.",
              "I want to {risk} this week.",
              "Tonight I am planning to {risk}.",
              "Everyone says no, but I will {risk}.",
              "Why not just {risk}?",
              "I am about to {risk}."],
        topic=["this plan", "such a risk", "your plan", "this idea"],
        tips=["wait a few days before acting", "check the risks carefully", "keep some money aside",
              "tell someone you trust", "read everything first", "have a backup plan", "ask an expert",
              "think about the worst case"]),
}

# More user phrasings used only to train the router (the language model never sees them; the held-out
# templates above stay held out of everything).
ROUTER_EXTRA = {
    "support_request": ["The {app} on my {device} {problem}, what should I try?", "Why does my {device} act up? It {problem}.",
                        "Troubleshooting question: my {device} {problem}.", "Any fix for a {device} that {problem}?",
                        "Error again! My {app} {problem}.", "My new {device} {problem} since yesterday."],
    "grief": ["We buried {person} on Sunday.", "I am mourning {person}.", "{person} is no longer with us.",
              "How do I cope with losing {person}?", "Grief is crushing me since {person} died.",
              "I still cannot accept that {person} is dead."],
    "celebration": ["Celebrate with me, I {achievement}!", "Hooray, I {achievement}!", "Amazing day: I {achievement}.",
                    "So proud right now, I {achievement}.", "It happened, I {achievement}!", "Woohoo! I {achievement} at last."],
    "planning": ["I need a timeline for {project}.", "Where do I begin with {trip}?", "What steps do I need for {project}?",
                 "Organising {trip}, help me prepare.", "I want a checklist for {project}.", "Let us plan {trip} together."],
    "conflict": ["{coworker} is upset with me over {conflict_about}.", "We had a disagreement, {coworker} and I, about {conflict_about}.",
                 "Things are tense with {coworker}, it started with {conflict_about}.", "How do I resolve a dispute with {coworker}?",
                 "{coworker} insulted me during an argument about {conflict_about}.", "I want to make peace with {coworker} after the quarrel."],
    "small_talk": ["Morning! {smalltalk}.", "Hiya, {smalltalk}.", "Hey, just saying hi, {smalltalk}.",
                   "Hello, {smalltalk}. How are you doing?", "Howdy! {smalltalk}.", "Hey hey, {smalltalk}."],
    "feedback": ["Critique my {work} please.", "Rate my {work} honestly.", "Give me notes on this {work}.",
                 "Is this {work} any good?", "Tear my {work} apart, I want the truth.", "How can I make my {work} better?"],
    "exam_anxiety": ["I am terrified of the {subject} exam {when}.", "Exam stress: {subject} {when}.",
                     "I will fail {subject} {when}, I just know it.", "My {subject} test {when} gives me panic attacks.",
                     "Nervous about the {subject} exam, please help.", "Studying for {subject} and freaking out about {when}."],
    "brainstorm": ["Throw some ideas at me for {idea_for}.", "I want something original for {idea_for}.",
                   "Need creative concepts for {idea_for}.", "Help me come up with {idea_for}.",
                   "What are some unusual ideas for {idea_for}?", "Let us dream up {idea_for}."],
    "mistake": ["I screwed up: I {mistake}.", "Big error at work, I {mistake}.", "My fault, I {mistake}.",
                "I {mistake}, how bad is this?", "I need to fix my mistake, I {mistake}.", "Ugh, I {mistake} again."],
    "loneliness": ["I have no friends in {city}.", "Living alone in {city} is hard.", "I feel so alone since moving to {city}.",
                   "Nobody to talk to in {city}.", "How do people meet friends in {city}?", "Loneliness is getting to me in {city}."],
    "decision": ["Should I accept {offer}?", "Pros and cons of {offer}?", "I must decide about {offer} soon.",
                 "Which way should I go with {offer}?", "Accept or decline {offer}?", "Big choice ahead: {offer}."],
    "risky_plan": ["I will {risk}, what could go wrong?", "Thinking of doing something bold: {risk}.",
                   "I am ready to {risk}.", "Is it crazy to {risk}?", "Next week I plan to {risk}.",
                   "I have made up my mind to {risk}."],
}

# which experts suit which situation (first = stronger). Every expert appears at least once.
ROUTING = {
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
        open=["I see.", "Okay.", "Understood.", "Hm."],
        body=["{T1}.", "{T1}. Maybe {t2}.", "Just {t1}.", "{T1}, quietly."],
        close=["That is all.", "", "Take your time.", "Nothing more to add."]),
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


def cap(s: str) -> str:
    return s[:1].upper() + s[1:]


def fill(template: str, rng: random.Random, slots: dict) -> str:
    def rep(m):
        k = m.group(1)
        if k not in slots:
            slots[k] = rng.choice(FILL[k])
        return slots[k]
    return re.sub(r"\{(\w+)\}", rep, template)


def user_message(situation: str, template_index: int, rng: random.Random, extra: bool = False) -> tuple[str, dict]:
    """template_index into SITUATIONS[situation]["user"], or into ROUTER_EXTRA[situation] when extra."""
    slots: dict = {}
    templates = ROUTER_EXTRA[situation] if extra else SITUATIONS[situation]["user"]
    text = fill(templates[template_index], rng, slots)
    return cap(text), slots


def answer(situation: str, pole: str, slots: dict, rng: random.Random) -> str:
    s = SITUATIONS[situation]
    topic = fill(rng.choice(s["topic"]), rng, dict(slots))
    t1, t2, t3 = rng.sample(s["tips"], 3)
    st = STYLE[pole]
    vals = dict(topic=topic, t1=t1, t2=t2, t3=t3, T1=cap(t1), T2=cap(t2), T3=cap(t3), m=rng.choice(METAPHOR))
    parts = [rng.choice(st["open"]), rng.choice(st["body"]), rng.choice(st["close"])]
    text = " ".join(p for p in parts if p).format(**vals)
    # a sentence that starts with the topic gets a capital letter
    text = re.sub(r"(^|[.!?] )([a-z])", lambda m: m.group(1) + m.group(2).upper(), text)
    return text


def split_templates(situation: str) -> tuple[list[int], list[int]]:
    n = len(SITUATIONS[situation]["user"])
    return list(range(n - HELDOUT_PER_SITUATION)), list(range(n - HELDOUT_PER_SITUATION, n))


def make_dialogues(n_per_pair: int, seed: int, held_out: bool = False) -> list[dict]:
    """n_per_pair conversations for every (situation, pole): {situation, pole, user, assistant}."""
    rng = random.Random(seed)
    out = []
    for sit in SITUATIONS:
        train_t, test_t = split_templates(sit)
        templates = test_t if held_out else train_t
        for pole in EXPERTS:
            for _ in range(n_per_pair):
                user, slots = user_message(sit, rng.choice(templates), rng)
                out.append(dict(situation=sit, pole=pole, user=user, assistant=answer(sit, pole, slots, rng)))
    rng.shuffle(out)
    return out


def router_examples(n_per_situation: int, seed: int, held_out: bool) -> list[dict]:
    rng = random.Random(seed)
    out = []
    for sit in SITUATIONS:
        train_t, test_t = split_templates(sit)
        templates = [(i, False) for i in (test_t if held_out else train_t)]
        if not held_out:
            templates += [(i, True) for i in range(len(ROUTER_EXTRA[sit]))]
        for _ in range(n_per_situation):
            i, extra = rng.choice(templates)
            user, _ = user_message(sit, i, rng, extra)
            out.append(dict(situation=sit, user=user, experts=ROUTING[sit]))
    rng.shuffle(out)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--per-pair", type=int, default=150, help="conversations per (situation, pole)")
    a = ap.parse_args()
    a.out.mkdir(parents=True, exist_ok=True)
    dialogues = make_dialogues(a.per_pair, seed=1)
    with open(a.out / "corpus.jsonl", "w") as f:
        for d in dialogues:
            f.write(json.dumps(d) + "\n")
    for name, held in (("router_train", False), ("router_test", True)):
        with open(a.out / f"{name}.jsonl", "w") as f:
            for d in router_examples(300 if not held else 40, seed=2 if not held else 3, held_out=held):
                f.write(json.dumps(d) + "\n")
    print(f"{len(dialogues)} dialogues in {a.out}")


if __name__ == "__main__":
    main()
