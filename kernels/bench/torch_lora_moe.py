#!/usr/bin/env python3
"""PyTorch reference for lora_moe, timed like pf_bench_gpu, so our CUDA kernels have a peer to beat.

    python3 kernels/bench/torch_lora_moe.py --ours bench/results/gpu-<device>-<stamp>.json
    python3 kernels/bench/torch_lora_moe.py --device cpu --quick --out /tmp/t.json   # smoke test, no GPU

npm run bench:gpu (scripts/bench-gpu.js) runs it after pf_bench_gpu when python3 has CUDA torch;
scripts/gpu-compare.js sets the two JSON files side by side. Issue 4's target: our lora_moe at
T = 4096 at least 2x faster than this.

The maths (personafuse.h's lora_moe; banks in PEFT layout):
    x [T, d] f32, A [E, r, d] and B [E, d, r] f16 or bf16, s [E] f32, ids [T, k], w [T, k] f32
    for t, j: e = ids[t, j]
        y[t] += w[t, j] * s[e] * B[e] @ (A[e] @ x[t])          # y [T, d] f32, accumulated into

written the way a PyTorch user without a fused kernel writes it, gather + bmm:
    Ag = A[ids.flatten()]                        # [T*k, r, d]   one copy of an expert per slot
    h  = bmm(Ag, x.to(bank dtype) per slot)      # [T*k, r, 1]
    h *= w * s[ids]                              # gate, in the bank dtype
    Bg = B[ids.flatten()]                        # [T*k, d, r]
    o  = bmm(Bg, h).view(T, k, d).sum(1)         # [T, d]
    y += o.float()
The gathers materialise T*k copies of the experts' weights (2 GiB each at T 4096, d 8192): that
traffic, not the arithmetic, is what a fused kernel avoids, and why the reference is this and not
a per-expert loop (which would be the grouped path, in Python).

Timing mirrors kernels/bench/bench_gpu.cc: 5 warm-up calls, then a CUDA event pair per call, at
least 30 calls and until ~0.2 s, at most 400; median, p10, p90. Inputs rotate over several sets
(banks; x, ids, w, y) of >= 128 MiB together, so the L2 cache is not what is measured. The events
also see the GPU idle while Python launches the next of its dozen small kernels: a PyTorch user
pays that too.
bytes is the same fewest-bytes count as bench_gpu.cc's (x read, y read + written, ids and w, each
distinct expert's A and B once), so GB/s compare across the two files.

Before timing each shape, the reference runs once on the first 4 tokens against a float64
computation of the same maths from the same rounded bank bits; it aborts if
max|got - ref| / max|ref - y0| exceeds TOLERANCE (bmm, the gate and the sum over k run in the
bank dtype: f16 has 2^-11 relative rounding, bf16 2^-8).
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[2]
DTYPES = {"f16": torch.float16, "bf16": torch.bfloat16}
TOLERANCE = {"f16": 1e-2, "bf16": 5e-2}
ROTATE_BYTES = 128 << 20
CHECK_TOKENS = 4
# The grid (bench_gpu.cc's defaults): d, r, E, k, T, dtypes.
GRID_D = (4096, 8192)
GRID_E = (10, 64)
GRID_T = (1, 16, 64, 512, 4096)
GRID_R, GRID_K = 16, 2
QUICK_T = (1, 512)


def sets_for(bytes_per_set: int, max_sets: int) -> int:
    """As bench_gpu.cc's: enough sets to pass ROTATE_BYTES, at least 2, at most max_sets."""
    return max(2, min(max_sets, -(-ROTATE_BYTES // bytes_per_set)))


def lora_moe_gather_bmm(x, A, B, s, ids, w, y):
    """y += Σ_j w[:, j] s[e] B_e (A_e x), e = ids[:, j]; the straightforward gather + bmm."""
    T, k = ids.shape
    d = x.shape[1]
    flat = ids.reshape(-1)                                          # [T*k]
    xs = x.to(A.dtype).repeat_interleave(k, dim=0).unsqueeze(-1)    # [T*k, d, 1]
    h = torch.bmm(A[flat], xs)                                      # [T*k, r, 1]
    h = h * (w.reshape(-1) * s[flat]).to(A.dtype).view(-1, 1, 1)
    o = torch.bmm(B[flat], h)                                       # [T*k, d, 1]
    y += o.view(T, k, d).sum(dim=1).float()


def reference_f64(x, A, B, s, ids, w, y0):
    """The same maths in float64 from the same bank bits, token by token."""
    out = y0.double().clone()
    for t in range(ids.shape[0]):
        for j in range(ids.shape[1]):
            e = int(ids[t, j])
            h = A[e].double() @ x[t].double()
            out[t] += float(w[t, j]) * float(s[e]) * (B[e].double() @ h)
    return out


class Timer:
    """Per-call timings in µs: CUDA events on a GPU, perf_counter after a sync on the CPU."""

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        if self.cuda:
            self.e0 = torch.cuda.Event(enable_timing=True)
            self.e1 = torch.cuda.Event(enable_timing=True)

    def sync(self):
        if self.cuda:
            torch.cuda.synchronize()

    def once(self, fn) -> float:
        if self.cuda:
            self.e0.record()
            fn()
            self.e1.record()
            self.e1.synchronize()
            return self.e0.elapsed_time(self.e1) * 1e3
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e6

    def time_calls(self, fn):
        """fn(i), i the call index for rotation; as bench_gpu.cc's time_calls."""
        for i in range(5):
            fn(i)
        self.sync()
        us: list[float] = []
        total = 0.0
        i = 0
        while (i < 30 or total < 2e5) and i < 400:  # at least 30 calls, up to ~0.2 s
            t = self.once(lambda: fn(i))
            us.append(t)
            total += t
            i += 1
        us.sort()
        n = len(us)
        q = lambda v: round(v, 3)  # noqa: E731
        return {"median_us": q(us[n // 2]), "p10_us": q(us[n // 10]), "p90_us": q(us[n * 9 // 10]), "runs": n}


def make_bank(E, r, d, dtype, device, gen):
    A = (torch.randn(E, r, d, generator=gen, device=device) / math.sqrt(d)).to(dtype)   # [E, r, d]
    B = (torch.randn(E, d, r, generator=gen, device=device) * 0.5).to(dtype)            # [E, d, r]
    s = torch.full((E,), 2.0, device=device)                                             # [E]
    return A, B, s


def route(T, k, E, device, gen):
    """Each row: the first k of a random permutation of the E experts (k distinct)."""
    return torch.rand(T, E, generator=gen, device=device).argsort(dim=1)[:, :k].contiguous()  # [T, k] int64


def bench_shape(dtype_name, d, E, r, k, T, device, timer, seed):
    dtype = DTYPES[dtype_name]
    gen = torch.Generator(device=device)
    gen.manual_seed(seed)
    nbanks = sets_for(E * r * 2 * d * 2, 16)
    nsets = sets_for(T * d * 8 + T * k * 8, 8)
    banks = [make_bank(E, r, d, dtype, device, gen) for _ in range(nbanks)]
    sets = []
    nbytes = 0.0
    for _ in range(nsets):
        ids = route(T, k, E, device, gen)
        x = torch.randn(T, d, generator=gen, device=device)     # [T, d] f32
        y = torch.randn(T, d, generator=gen, device=device)     # [T, d] f32
        w = torch.full((T, k), 0.5, device=device)               # [T, k] f32
        sets.append((x, ids, w, y))
        distinct = int(torch.unique(ids).numel())
        nbytes += T * d * 4 + T * d * 8 + T * k * 8 + distinct * r * 2 * d * 2
    nbytes /= nsets

    # Correctness once, before timing: the first tokens of the first set.
    A, B, s = banks[0]
    x, ids, w, y = sets[0]
    n = min(CHECK_TOKENS, T)
    y0 = y[:n].clone()
    got = y0.clone()
    lora_moe_gather_bmm(x[:n], A, B, s, ids[:n], w[:n], got)
    ref = reference_f64(x[:n].cpu(), A.cpu(), B.cpu(), s.cpu(), ids[:n].cpu(), w[:n].cpu(), y0.cpu())
    rel = float((got.cpu().double() - ref).abs().max() / (ref - y0.cpu().double()).abs().max())
    if not rel <= TOLERANCE[dtype_name]:
        sys.exit(
            f"torch_lora_moe: the gather + bmm reference disagrees with float64 for {dtype_name} d={d} E={E} "
            f"T={T}: relative error {rel:.3g} > tolerance {TOLERANCE[dtype_name]:g}; not timing a wrong computation"
        )

    def call(i):
        A, B, s = banks[i % nbanks]
        x, ids, w, y = sets[i % nsets]
        lora_moe_gather_bmm(x, A, B, s, ids, w, y)

    t = timer.time_calls(call)
    gbps = nbytes / (t["median_us"] * 1e3)
    return {**t, "bytes": round(nbytes), "gbps": round(gbps, 2), "check_rel_err": float(f"{rel:.3g}")}


def slug(name: str) -> str:
    return "".join(c.lower() if c.isalnum() else "-" for c in name)


def parse_ts(text: str) -> list[int]:
    try:
        ts = [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected token counts like 1,16,512 but received '{text}'")
    if not ts or any(v <= 0 for v in ts):
        raise argparse.ArgumentTypeError(f"expected positive token counts like 1,16,512 but received '{text}'")
    return ts


def shapes_from_ours(path: Path):
    """Every distinct (dtype, d, E, r, k, T) of our bench's lora_moe rows (the checks-on row excluded)."""
    try:
        ours = json.loads(path.read_text())
        rows = ours["results"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        sys.exit(f"torch_lora_moe: cannot read lora_moe results from --ours {path}: {e}")
    seen = []
    for row in rows:
        if row.get("op") == "lora_moe" and not row.get("note"):
            key = (row["dtype"], row["d"], row["E"], row["r"], row["k"], row["T"])
            if key not in seen:
                seen.append(key)
    return seen


def to_json(doc) -> str:
    """Like pf_bench_gpu's files: the header fields one per line, then one line per result."""
    head = ",\n".join(f"  {json.dumps(k)}: {json.dumps(v)}" for k, v in doc.items() if k != "results")
    rows = ",\n".join("    " + json.dumps(r) for r in doc["results"])
    return "{\n" + head + ',\n  "results": [\n' + rows + "\n  ]\n}\n"


def grid(ts):
    return [(dt_, d, E, GRID_R, GRID_K, T) for dt_ in DTYPES for d in GRID_D for E in GRID_E for T in ts]


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--ours", type=Path, help="pf_bench_gpu's JSON: time the lora_moe shapes it holds")
    p.add_argument("--out", type=Path, help="where to write (default: <ours>-torch.json, else bench/results/)")
    p.add_argument("--device", choices=["cuda", "cpu"], default="cuda", help="cpu: a smoke test only")
    p.add_argument("--quick", action="store_true", help="T in {1, 512}, d 4096 only")
    p.add_argument("--ts", type=parse_ts, help="these token counts, e.g. 1,16,512")
    p.add_argument("--seed", type=int, default=12345)
    args = p.parse_args()

    if args.device == "cuda" and not torch.cuda.is_available():
        sys.exit("torch_lora_moe: torch.cuda.is_available() is false (use --device cpu for a smoke test)")
    device = torch.device(args.device)
    if args.ours:
        shapes = shapes_from_ours(args.ours)
        if args.ts:
            shapes = [s for s in shapes if s[5] in args.ts]
    else:
        shapes = grid(args.ts or (QUICK_T if args.quick else GRID_T))
    if args.quick:  # d 4096 only; T in QUICK_T unless --ts names the T
        shapes = [s for s in shapes if s[1] == 4096 and (s[5] in QUICK_T or args.ts is not None)]
    if not shapes:
        sys.exit("torch_lora_moe: no lora_moe shapes to time" + (f" in --ours {args.ours}" if args.ours else ""))

    name = torch.cuda.get_device_name(device) if device.type == "cuda" else (platform.processor() or platform.machine() or "cpu")
    stamp = dt.datetime.now(dt.timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = args.out or (args.ours.with_name(args.ours.stem + "-torch.json") if args.ours
                       else ROOT / "bench" / "results" / f"gpu-torch-{slug(name if device.type == 'cuda' else 'cpu')}-{stamp}.json")
    print(f"{name}; torch {torch.__version__}" + (f", CUDA {torch.version.cuda}" if device.type == "cuda" else " (CPU: a smoke test, not a reference timing)"))
    sys.stdout.flush()

    timer = Timer(device)
    results = []
    with torch.inference_mode():
        for dtype_name, d, E, r, k, T in shapes:
            row = {"op": "lora_moe_torch", "dtype": dtype_name, "path": "gather+bmm", "d": d, "E": E, "r": r, "k": k, "T": T}
            label = f"lora_moe_torch {dtype_name:<4} gather+bmm d={d:<5} E={E:<3} T={T:<5}"
            if dtype_name not in DTYPES:
                row["skipped"] = f"bank dtype {dtype_name} is not one of {', '.join(DTYPES)}"
                print(f"{label} skipped ({row['skipped']})")
                results.append(row)
                continue
            try:
                row.update(bench_shape(dtype_name, d, E, r, k, T, device, timer, args.seed))
                print(f"{label} {row['median_us']:10.2f} us  {row['gbps']:7.1f} GB/s  (check: rel err {row['check_rel_err']:.1e})")
            except (torch.cuda.OutOfMemoryError, MemoryError) as e:
                row["skipped"] = "out of memory: " + str(e).split("\n")[0]
                print(f"{label} skipped ({row['skipped']})")
            sys.stdout.flush()
            results.append(row)
            if device.type == "cuda":
                torch.cuda.empty_cache()  # the next shape's sets start from free memory

    method = (
        ("CUDA events per call" if device.type == "cuda" else "CPU SMOKE TEST, time.perf_counter per call (not a GPU timing)")
        + ", median of >= 30 calls after 5 warm-up calls; inputs rotated over >= 128 MiB; PyTorch gather + bmm "
        "(A[ids] bmm x, gate w*s, B[ids] bmm h, sum over k, y += .float()) in the bank dtype; "
        "GB/s over the same fewest bytes as pf_bench_gpu; checked against float64 on the first 4 tokens"
    )
    doc = {
        "device": name,
        "device_type": device.type,
        "torch": torch.__version__,
        "cuda": torch.version.cuda if device.type == "cuda" else None,
        "date": stamp,
        "ours": str(args.ours) if args.ours else None,
        "method": method,
        "tolerance": TOLERANCE,
        "results": results,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(to_json(doc))
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
